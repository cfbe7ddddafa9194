// The HDF5 RAII layer: every HDF5 C call hiq makes is here, each checked where it is made.
//
// Error handling: HDF5 reports a failure as a negative return value and pushes the reason onto
// its per-process error stack (innermost function first). Check() turns a negative value into an
// exception at once, before any other HDF5 call can clear that stack, taking the innermost entry
// (the most specific reason, e.g. "file signature not found" or an errno text) into the message.
#include "hiq/io/h5.h"

#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <limits>
#include <system_error>
#include <type_traits>
#include <utility>

#include "hiq/base/error.h"  // IoError, FormatError, ConfigError, HIQ_CHECK
#include "hiq/dist/mpi.h"    // Comm

static_assert(std::is_same_v<hid_t, int64_t>, "H5Id stores a hid_t as int64_t");

namespace hiq {

// Access to the private handles, for this file only (the header declares it a friend).
struct H5Internal {
  static hid_t Get(const H5Id& id) { return id.id_; }
  static H5Id Own(hid_t raw) {
    H5Id id;
    id.id_ = raw;
    return id;
  }
  // Gives up ownership without closing (the caller closes, or deliberately leaks).
  static hid_t Release(H5Id& id) { return std::exchange(id.id_, -1); }
  static hid_t Get(const H5Group& group) { return group.id_.id_; }
  static H5Group MakeGroup(H5Id id, std::string file, std::string path,
                           std::shared_ptr<const Comm> comm) {
    return H5Group(std::move(id), std::move(file), std::move(path), std::move(comm));
  }
};

namespace {

using I = H5Internal;

// ---- errors -------------------------------------------------------------------------------

struct H5Stack {
  std::string innermost;  // "func(): description" of the entry pushed first
  bool not_hdf5 = false;  // some entry says "not an HDF5 file"
};

// A failed read or write of the file driver reads "file write failed: time = ..., filename =
// ..., errno = 28, error message = 'No space left on device', buf = ...": the cause is the
// errno text, kept without the time and addresses so that the message is the same every run.
std::string DriverCause(const std::string& desc) {
  const std::string key = "error message = '";
  const size_t at = desc.find(key);
  if (at == std::string::npos) return desc;
  const size_t end = desc.find('\'', at + key.size());
  const std::string cause = desc.substr(at + key.size(), end - at - key.size());
  return desc.substr(0, desc.find(':')) + ": " + cause;
}

herr_t CollectStackEntry(unsigned n, const H5E_error2_t* entry, void* out) {
  auto* stack = static_cast<H5Stack*>(out);
  if (n == 0) {
    stack->innermost = std::string(entry->func_name ? entry->func_name : "?") +
                       "(): " + (entry->desc ? DriverCause(entry->desc) : "(no description)");
  }
  if (entry->min_num == H5E_NOTHDF5) stack->not_hdf5 = true;
  return 0;
}

// Reads and clears HDF5's error stack; must run right after the failing call.
H5Stack TakeErrorStack() {
  H5Stack stack;
  // Upward walk: entry 0 is the innermost function, where the error was first detected.
  if (H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, CollectStackEntry, &stack) < 0 ||
      stack.innermost.empty()) {
    stack.innermost = "(HDF5 gave no reason)";
  }
  H5Eclear2(H5E_DEFAULT);
  return stack;
}

// Where a call is made, for messages: "function: cannot <action> '<object>' in '<file>'".
struct Site {
  const char* function;
  const std::string& file;
  std::string object;  // empty for file-level calls
};

std::string Describe(const Site& site, const std::string& action) {
  const std::string text = std::string(site.function) + ": cannot " + action;
  if (site.object.empty()) return text + " '" + site.file + "'";
  return text + " '" + site.object + "' in '" + site.file + "'";
}

enum class Fault { kIo, kFormat };

// Set once an HDF5 call failed with an I/O error (a write past a size limit or a full disk, at
// a dataset write or at close): HDF5 keeps that file's half-released objects, and tearing the
// library down (at MPI_Finalize, through its MPI_COMM_SELF attribute) then crashes in
// H5D_close. main() ends such a process with _exit (H5LibraryStateBroken in h5.h).
std::atomic<bool> g_close_failed{false};

[[noreturn]] void ThrowH5(const Site& site, const std::string& action, Fault fault) {
  const H5Stack stack = TakeErrorStack();
  if (fault == Fault::kIo && !stack.not_hdf5) g_close_failed = true;
  std::string message = Describe(site, action) + ": " + stack.innermost;
  if (stack.not_hdf5) {
    throw FormatError(message + " (expected an HDF5 file; HINT: is this the right file?)");
  }
  if (fault == Fault::kFormat) throw FormatError(message);
  throw IoError(message);
}

// Every HDF5 return value goes through here: hid_t, herr_t and htri_t all signal failure < 0.
template <typename R>
R Check(R result, const Site& site, const char* action, Fault fault = Fault::kIo) {
  if (result < 0) ThrowH5(site, action, fault);
  return result;
}

// True on every rank iff `ok` is true on every rank of `comm` (serial, null: ok itself).
bool AllRanksOk(const Comm* comm, bool ok) { return comm == nullptr ? ok : comm->AllTrue(ok); }

// Rank 0 leads a parallel file (writes its shared datasets, removes or renames the temporary
// file); a serial file's one process leads it.
bool Leads(const Comm* comm) { return comm == nullptr || comm->rank() == 0; }

// Switches off HDF5's automatic error printing once per process: the errors reach the user as
// exceptions instead, and any "HDF5-DIAG" text on stderr fails the MPI tests.
void EnsureLibrary() {
  static const bool silenced = [] { return H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr) >= 0; }();
  HIQ_CHECK(silenced);
}

// ---- small helpers ------------------------------------------------------------------------

std::string JoinPath(const std::string& group, const std::string& name) {
  if (name.starts_with('/')) return name;
  return group == "/" ? "/" + name : group + "/" + name;
}

// Product of dims; FormatError on overflow (a hostile header can claim anything).
uint64_t CountElements(const std::vector<uint64_t>& dims, const Site& site) {
  uint64_t count = 1;
  for (uint64_t d : dims) {
    if (d != 0 && count > std::numeric_limits<uint64_t>::max() / d) {
      throw FormatError(std::string(site.function) + ": the shape of '" + site.object + "' in '" +
                        site.file + "' overflows 64 bits");
    }
    count *= d;
  }
  return count;
}

std::string DimsText(const std::vector<uint64_t>& dims) {
  std::string text = "[";
  for (size_t i = 0; i < dims.size(); ++i) text += (i ? ", " : "") + std::to_string(dims[i]);
  return text + "]";
}

template <H5Element T>
hid_t MemoryType() {
  if constexpr (std::is_same_v<T, float>) return H5T_NATIVE_FLOAT;
  if constexpr (std::is_same_v<T, double>) return H5T_NATIVE_DOUBLE;
  if constexpr (std::is_same_v<T, int32_t>) return H5T_NATIVE_INT32;
  if constexpr (std::is_same_v<T, int64_t>) return H5T_NATIVE_INT64;
  if constexpr (std::is_same_v<T, uint8_t>) return H5T_NATIVE_UINT8;
  if constexpr (std::is_same_v<T, uint16_t>) return H5T_NATIVE_UINT16;
  if constexpr (std::is_same_v<T, uint32_t>) return H5T_NATIVE_UINT32;
  if constexpr (std::is_same_v<T, uint64_t>) return H5T_NATIVE_UINT64;
}

// Files are little-endian whatever the machine, so h5py and h5dump read them the same anywhere.
template <H5Element T>
hid_t FileType() {
  if constexpr (std::is_same_v<T, float>) return H5T_IEEE_F32LE;
  if constexpr (std::is_same_v<T, double>) return H5T_IEEE_F64LE;
  if constexpr (std::is_same_v<T, int32_t>) return H5T_STD_I32LE;
  if constexpr (std::is_same_v<T, int64_t>) return H5T_STD_I64LE;
  if constexpr (std::is_same_v<T, uint8_t>) return H5T_STD_U8LE;
  if constexpr (std::is_same_v<T, uint16_t>) return H5T_STD_U16LE;
  if constexpr (std::is_same_v<T, uint32_t>) return H5T_STD_U32LE;
  if constexpr (std::is_same_v<T, uint64_t>) return H5T_STD_U64LE;
}

template <H5Element T>
std::string TypeName() {
  if constexpr (std::is_floating_point_v<T>) return "float" + std::to_string(8 * sizeof(T));
  if constexpr (std::is_signed_v<T> && std::is_integral_v<T>) {
    return "int" + std::to_string(8 * sizeof(T));
  }
  if constexpr (std::is_unsigned_v<T>) return "uint" + std::to_string(8 * sizeof(T));
}

// "float32", "int16", "uint64", "string", ... for a stored type: the names TypeName() gives,
// so a stored type matches T exactly when the names are equal.
std::string DescribeType(hid_t type, const Site& site) {
  const H5T_class_t type_class = H5Tget_class(type);
  if (type_class == H5T_NO_CLASS) ThrowH5(site, "get the type class of", Fault::kIo);
  const size_t bytes = H5Tget_size(type);
  if (bytes == 0) ThrowH5(site, "get the type size of", Fault::kIo);
  const std::string bits = std::to_string(8 * bytes);
  switch (type_class) {
    case H5T_INTEGER: {
      const H5T_sign_t sign = H5Tget_sign(type);
      if (sign == H5T_SGN_ERROR) ThrowH5(site, "get the signedness of", Fault::kIo);
      return (sign == H5T_SGN_NONE ? "uint" : "int") + bits;
    }
    case H5T_FLOAT:
      return "float" + bits;
    case H5T_STRING:
      return "string";
    case H5T_COMPOUND:
      return "compound";
    case H5T_ENUM:
      return "enum";
    case H5T_ARRAY:
      return "array";
    case H5T_VLEN:
      return "vlen";
    default:
      return "type class " + std::to_string(static_cast<int>(type_class));
  }
}

std::vector<uint64_t> SpaceDims(hid_t space, const Site& site) {
  const int rank = Check(H5Sget_simple_extent_ndims(space), site, "get the rank of");
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  Check(H5Sget_simple_extent_dims(space, dims.data(), nullptr), site, "get the shape of");
  return std::vector<uint64_t>(dims.begin(), dims.end());
}

// A dataspace of shape dims; empty dims = a scalar.
H5Id MakeSpace(const std::vector<uint64_t>& dims, const Site& site) {
  if (dims.empty()) return I::Own(Check(H5Screate(H5S_SCALAR), site, "make a scalar space for"));
  if (dims.size() > H5S_MAX_RANK) {
    throw FormatError(Describe(site, "write") + ": rank " + std::to_string(dims.size()) +
                      " exceeds HDF5's maximum of " + std::to_string(H5S_MAX_RANK));
  }
  const std::vector<hsize_t> h5_dims(dims.begin(), dims.end());
  return I::Own(Check(H5Screate_simple(static_cast<int>(h5_dims.size()), h5_dims.data(), nullptr),
                      site, "make a dataspace for"));
}

H5Id MakePropertyList(hid_t list_class, const Site& site) {
  return I::Own(Check(H5Pcreate(list_class), site, "make a property list for"));
}

// Link creation: parents such as "layers/3" of "layers/3/scales" are created as needed.
H5Id MakeLinkCreation(const Site& site) {
  H5Id lcpl = MakePropertyList(H5P_LINK_CREATE, site);
  Check(H5Pset_create_intermediate_group(I::Get(lcpl), 1), site, "set up the parents of");
  return lcpl;
}

// Dataset and group creation without modification times in their headers: the same content
// written twice gives the same bytes, so an output can be compared by its checksum.
H5Id MakeUntimed(hid_t list_class, const Site& site) {
  H5Id list = MakePropertyList(list_class, site);
  Check(H5Pset_obj_track_times(I::Get(list), 0), site, "turn off time tracking for");
  return list;
}

// Collective transfers on a parallel file (every rank takes part), the default otherwise.
H5Id MakeTransfer(bool parallel, const Site& site) {
  H5Id dxpl = MakePropertyList(H5P_DATASET_XFER, site);
  if (parallel) {
    Check(H5Pset_dxpl_mpio(I::Get(dxpl), H5FD_MPIO_COLLECTIVE), site, "set collective I/O for");
  }
  return dxpl;
}

H5Id MakeFileAccess(const Comm* comm, const Site& site) {
  H5Id fapl = MakePropertyList(H5P_FILE_ACCESS, site);
  if (comm != nullptr) {
    // The MPI-IO driver keeps its own close degree (SEMI): Close/Commit/~H5File close the
    // file's objects first, see CloseObjectsOf. The driver needs the raw communicator.
    Check(H5Pset_fapl_mpio(I::Get(fapl), comm->native(), MPI_INFO_NULL), site,
          "set MPI-IO access for");
  } else {
    // WEAK: an H5Group keeps its file open, so `H5File::Open(p).root()` is a usable group.
    Check(H5Pset_fclose_degree(I::Get(fapl), H5F_CLOSE_WEAK), site, "set the close degree of");
  }
  return fapl;
}

// Opens `name` under `group` and checks it is a `want` (H5I_GROUP or H5I_DATASET).
H5Id OpenObject(const H5Group& group, const std::string& name, H5I_type_t want,
                const char* function) {
  const char* want_name = want == H5I_GROUP ? "group" : "dataset";
  const Site site{function, group.file_name(), JoinPath(group.path(), name)};
  if (!group.Has(name)) {
    throw FormatError(std::string(function) + ": no " + want_name + " '" + site.object + "' in '" +
                      site.file + "'");
  }
  H5Id object = I::Own(Check(H5Oopen(I::Get(group), name.c_str(), H5P_DEFAULT), site, "open"));
  const H5I_type_t found = H5Iget_type(I::Get(object));
  if (found == H5I_BADID) ThrowH5(site, "identify", Fault::kIo);
  if (found != want) {
    throw FormatError(std::string(function) + ": '" + site.object + "' in '" + site.file +
                      "' is not a " + want_name);
  }
  return object;
}

void RequireAbsent(const H5Group& group, const std::string& name, const Site& site) {
  if (group.Has(name)) {
    throw FormatError(std::string(site.function) + ": '" + site.object + "' already exists in '" +
                      site.file + "'");
  }
}

// ---- attribute helpers ----------------------------------------------------------------------

void WriteAttribute(const H5Group& group, const std::string& name, hid_t file_type,
                    hid_t memory_type, const std::vector<uint64_t>& dims, const void* data,
                    const char* function) {
  const Site site{function, group.file_name(), group.path() + "@" + name};
  const hid_t gid = I::Get(group);
  if (Check(H5Aexists(gid, name.c_str()), site, "look up attribute")) {
    Check(H5Adelete(gid, name.c_str()), site, "replace attribute");
  }
  H5Id space = MakeSpace(dims, site);
  H5Id attr = I::Own(
      Check(H5Acreate2(gid, name.c_str(), file_type, I::Get(space), H5P_DEFAULT, H5P_DEFAULT), site,
            "create attribute"));
  Check(H5Awrite(I::Get(attr), memory_type, data), site, "write attribute");
}

struct OpenedAttribute {
  H5Id attr;
  H5Id type;
  uint64_t count;    // number of elements
  std::string what;  // "<group>@<name>" for messages
};

// Opens attribute `name` and checks its type class ("integer", "float", "string").
OpenedAttribute OpenAttribute(const H5Group& group, const std::string& name, H5T_class_t want,
                              const char* want_name, const char* function) {
  const Site site{function, group.file_name(), group.path() + "@" + name};
  const hid_t gid = I::Get(group);
  if (!Check(H5Aexists(gid, name.c_str()), site, "look up attribute")) {
    throw FormatError(std::string(function) + ": no attribute '" + name + "' on '" + group.path() +
                      "' in '" + site.file + "'");
  }
  OpenedAttribute opened{
      I::Own(Check(H5Aopen(gid, name.c_str(), H5P_DEFAULT), site, "open attribute")), H5Id(), 0,
      site.object};
  opened.type = I::Own(Check(H5Aget_type(I::Get(opened.attr)), site, "get the type of"));
  const H5T_class_t found = H5Tget_class(I::Get(opened.type));
  if (found == H5T_NO_CLASS) ThrowH5(site, "get the type class of", Fault::kIo);
  if (found != want) {
    throw FormatError(std::string(function) + ": attribute '" + name + "' on '" + group.path() +
                      "' in '" + site.file + "' is " + DescribeType(I::Get(opened.type), site) +
                      ", expected " + want_name);
  }
  H5Id space = I::Own(Check(H5Aget_space(I::Get(opened.attr)), site, "get the space of"));
  opened.count = static_cast<uint64_t>(
      Check(H5Sget_simple_extent_npoints(I::Get(space)), site, "count the elements of"));
  return opened;
}

void RequireOneElement(const OpenedAttribute& opened, const std::string& file,
                       const char* function) {
  if (opened.count != 1) {
    throw FormatError(std::string(function) + ": attribute '" + opened.what + "' in '" + file +
                      "' has " + std::to_string(opened.count) + " elements, expected 1");
  }
}

// Closes every object (group, dataset, attribute, type) still open through `file`, e.g. by an
// H5Group the caller kept: an explicit Close/Commit must really close the file (so that the
// renamed file is complete and no later write can reach it), and the MPI-IO driver refuses to
// close a file with open objects. The H5Group handles become invalid and are skipped by ~H5Id.
// Returns false if some object could not be closed.
bool CloseObjectsOf(hid_t file) {
  constexpr unsigned kTypes =
      H5F_OBJ_DATASET | H5F_OBJ_GROUP | H5F_OBJ_DATATYPE | H5F_OBJ_ATTR | H5F_OBJ_LOCAL;
  const ssize_t count = H5Fget_obj_count(file, kTypes);
  if (count <= 0) return count == 0;
  std::vector<hid_t> ids(static_cast<size_t>(count));
  const ssize_t listed = H5Fget_obj_ids(file, kTypes, ids.size(), ids.data());
  if (listed < 0) return false;
  bool ok = true;
  for (ssize_t i = 0; i < listed; ++i) {
    if (H5Idec_ref(ids[static_cast<size_t>(i)]) < 0) ok = false;
  }
  return ok;
}

// Closes a file for real (objects first); on failure returns HDF5's reason, else "".
std::string CloseFile(hid_t file) {
  if (!CloseObjectsOf(file)) {
    const std::string reason = TakeErrorStack().innermost;
    H5Fclose(file);
    H5Eclear2(H5E_DEFAULT);
    g_close_failed = true;
    return "cannot close its open objects: " + reason;
  }
  if (H5Fclose(file) < 0) {
    g_close_failed = true;
    return TakeErrorStack().innermost;
  }
  return "";
}

herr_t CollectLinkName(hid_t, const char* name, const H5L_info_t*, void* out) {
  static_cast<std::vector<std::string>*>(out)->emplace_back(name);
  return 0;
}

}  // namespace

// ---- H5Id -----------------------------------------------------------------------------------

bool H5LibraryStateBroken() { return g_close_failed.load(); }

H5Id::~H5Id() {
  // A handle whose file was closed explicitly (CloseObjectsOf) is already invalid: skip it.
  if (id_ >= 0 && H5Iis_valid(id_) > 0) H5Idec_ref(id_);
  if (id_ >= 0) H5Eclear2(H5E_DEFAULT);
}

H5Id::H5Id(H5Id&& other) noexcept : id_(std::exchange(other.id_, -1)) {}

H5Id& H5Id::operator=(H5Id&& other) noexcept {
  if (this != &other) {
    H5Id doomed(std::move(*this));
    id_ = std::exchange(other.id_, -1);
  }
  return *this;
}

// ---- H5File ---------------------------------------------------------------------------------

namespace {

std::filesystem::path TempPathFor(const std::filesystem::path& path, int pid) {
  return std::filesystem::path(path.string() + ".tmp-" + std::to_string(pid));
}

H5Id OpenOrCreate(const std::filesystem::path& on_disk, bool create, H5Mode mode, const Comm* comm,
                  const char* function) {
  EnsureLibrary();
  const std::string name = on_disk.string();
  const Site site{function, name, ""};
  H5Id fapl = MakeFileAccess(comm, site);
  if (create) {
    return I::Own(Check(H5Fcreate(name.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, I::Get(fapl)), site,
                        "create file"));
  }
  const unsigned flags = mode == H5Mode::kReadOnly ? H5F_ACC_RDONLY : H5F_ACC_RDWR;
  return I::Own(Check(H5Fopen(name.c_str(), flags, I::Get(fapl)), site, "open file"));
}

}  // namespace

H5File H5File::Create(const std::filesystem::path& path) {
  H5File file;
  file.path_ = path;
  file.temp_path_ = TempPathFor(path, static_cast<int>(getpid()));
  file.id_ = OpenOrCreate(file.temp_path_, true, H5Mode::kReadWrite, nullptr, "H5File::Create");
  file.uncaught_at_open_ = std::uncaught_exceptions();
  return file;
}

H5File H5File::Open(const std::filesystem::path& path, H5Mode mode) {
  H5File file;
  file.path_ = path;
  file.id_ = OpenOrCreate(path, false, mode, nullptr, "H5File::Open");
  file.uncaught_at_open_ = std::uncaught_exceptions();
  return file;
}

H5File H5File::CreateParallel(const std::filesystem::path& path, const Comm& comm) {
  // One temporary name for all ranks: rank 0's pid.
  int pid = static_cast<int>(getpid());
  comm.Broadcast(pid, 0);
  H5File file;
  file.path_ = path;
  file.temp_path_ = TempPathFor(path, pid);
  file.comm_ = std::make_shared<const Comm>(comm);
  file.id_ = OpenOrCreate(file.temp_path_, true, H5Mode::kReadWrite, file.comm_.get(),
                          "H5File::CreateParallel");
  file.uncaught_at_open_ = std::uncaught_exceptions();
  return file;
}

H5File H5File::OpenParallel(const std::filesystem::path& path, const Comm& comm, H5Mode mode) {
  H5File file;
  file.path_ = path;
  file.comm_ = std::make_shared<const Comm>(comm);
  file.id_ = OpenOrCreate(path, false, mode, file.comm_.get(), "H5File::OpenParallel");
  file.uncaught_at_open_ = std::uncaught_exceptions();
  return file;
}

H5File::H5File(H5File&& other) noexcept
    : id_(std::move(other.id_)),
      path_(std::move(other.path_)),
      temp_path_(std::exchange(other.temp_path_, {})),
      comm_(std::move(other.comm_)),
      uncaught_at_open_(other.uncaught_at_open_) {}

H5File& H5File::operator=(H5File&& other) noexcept {
  if (this != &other) {
    H5File doomed(std::move(*this));
    id_ = std::move(other.id_);
    path_ = std::move(other.path_);
    temp_path_ = std::exchange(other.temp_path_, {});
    comm_ = std::move(other.comm_);
    uncaught_at_open_ = other.uncaught_at_open_;
  }
  return *this;
}

H5File::~H5File() {
  if (!is_open()) return;
  const bool parallel = comm_ != nullptr;
  const hid_t id = I::Release(id_);
  if (!parallel) {
    H5Fclose(id);  // WEAK: stays open for any H5Group still alive
  } else if (std::uncaught_exceptions() <= uncaught_at_open_) {
    CloseFile(id);
  }
  H5Eclear2(H5E_DEFAULT);
  if (!temp_path_.empty()) {
    std::error_code ignored;
    if (Leads(comm_.get())) std::filesystem::remove(temp_path_, ignored);
  }
}

bool H5File::is_open() const { return I::Get(id_) >= 0; }

H5Group H5File::root() const {
  const std::string file = path_.string();
  if (!is_open()) throw IoError("H5File::root: '" + file + "' is closed");
  const Site site{"H5File::root", file, "/"};
  H5Id group = I::Own(Check(H5Gopen2(I::Get(id_), "/", H5P_DEFAULT), site, "open group"));
  return I::MakeGroup(std::move(group), file, "/", comm_);
}

void H5File::Close() {
  if (!is_open()) return;
  const std::string file = path_.string();
  const Site site{"H5File::Close", file, ""};
  const std::string failure = CloseFile(I::Release(id_));
  if (!temp_path_.empty()) {
    std::error_code ignored;
    if (Leads(comm_.get())) std::filesystem::remove(temp_path_, ignored);
    temp_path_.clear();
  }
  if (!failure.empty()) throw IoError(Describe(site, "close file") + ": " + failure);
}

void H5File::Commit() {
  const std::string file = path_.string();
  if (!is_open()) throw IoError("H5File::Commit: '" + file + "' is not open");
  if (temp_path_.empty()) {
    Close();
    return;
  }
  const bool leader = Leads(comm_.get());
  const std::filesystem::path temp = std::exchange(temp_path_, {});
  std::error_code ignored;

  // Closing flushes everything (collective on a parallel file); every rank must have succeeded
  // before rank 0 may publish the file under its final name.
  const std::string failure = CloseFile(I::Release(id_));
  if (!AllRanksOk(comm_.get(), failure.empty())) {
    if (leader) std::filesystem::remove(temp, ignored);
    throw IoError("H5File::Commit: cannot close '" + temp.string() +
                  "': " + (failure.empty() ? "the close failed on another rank" : failure));
  }
  std::error_code renamed;
  if (leader) std::filesystem::rename(temp, path_, renamed);
  int rename_error = renamed.value();
  if (comm_ != nullptr) comm_->Broadcast(rename_error, 0);
  if (rename_error != 0) {
    if (leader) std::filesystem::remove(temp, ignored);
    throw IoError("H5File::Commit: cannot rename '" + temp.string() + "' to '" + file +
                  "': " + std::system_category().message(rename_error));
  }
}

// ---- H5Group: structure ----------------------------------------------------------------------

H5Group::H5Group(H5Id id, std::string file, std::string path, std::shared_ptr<const Comm> comm)
    : id_(std::move(id)), file_(std::move(file)), path_(std::move(path)), comm_(std::move(comm)) {}

H5Group H5Group::CreateGroup(const std::string& name) {
  const Site site{"H5Group::CreateGroup", file_, JoinPath(path_, name)};
  RequireAbsent(*this, name, site);
  H5Id lcpl = MakeLinkCreation(site);
  H5Id gcpl = MakeUntimed(H5P_GROUP_CREATE, site);
  H5Id group =
      I::Own(Check(H5Gcreate2(I::Get(id_), name.c_str(), I::Get(lcpl), I::Get(gcpl), H5P_DEFAULT),
                   site, "create group"));
  return H5Group(std::move(group), file_, site.object, comm_);
}

H5Group H5Group::OpenGroup(const std::string& name) const {
  H5Id group = OpenObject(*this, name, H5I_GROUP, "H5Group::OpenGroup");
  return H5Group(std::move(group), file_, JoinPath(path_, name), comm_);
}

bool H5Group::Has(const std::string& name) const {
  // H5Lexists fails, rather than answering false, when a parent in the path is missing or is not
  // a group, so the path is checked one component at a time and such a failure means "no".
  std::string prefix = name.starts_with('/') ? "/" : "";
  size_t begin = 0;
  bool any = false;
  while (begin <= name.size()) {
    size_t end = name.find('/', begin);
    if (end == std::string::npos) end = name.size();
    if (end > begin) {
      if (!prefix.empty() && prefix.back() != '/') prefix += '/';
      prefix += name.substr(begin, end - begin);
      const htri_t exists = H5Lexists(I::Get(id_), prefix.c_str(), H5P_DEFAULT);
      if (exists <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return false;
      }
      any = true;
    }
    begin = end + 1;
  }
  return any;
}

std::vector<std::string> H5Group::ListNames() const {
  const Site site{"H5Group::ListNames", file_, path_};
  std::vector<std::string> names;
  Check(H5Literate(I::Get(id_), H5_INDEX_NAME, H5_ITER_INC, nullptr, CollectLinkName, &names), site,
        "list the links of");
  return names;
}

void H5Group::CreateExternalLink(const std::string& name, const std::string& target_file,
                                 const std::string& target_object) {
  const Site site{"H5Group::CreateExternalLink", file_, JoinPath(path_, name)};
  RequireAbsent(*this, name, site);
  H5Id lcpl = MakeLinkCreation(site);
  Check(H5Lcreate_external(target_file.c_str(), target_object.c_str(), I::Get(id_), name.c_str(),
                           I::Get(lcpl), H5P_DEFAULT),
        site, "create external link");
}

// ---- H5Group: datasets -----------------------------------------------------------------------

template <H5Element T>
void H5Group::WriteDataset(const std::string& name, std::span<const T> data,
                           const std::vector<uint64_t>& dims, const H5WriteOptions& options) {
  const Site site{"H5Group::WriteDataset", file_, JoinPath(path_, name)};
  const uint64_t count = CountElements(dims, site);
  if (data.size() != count) {
    throw FormatError(Describe(site, "write") + ": " + std::to_string(data.size()) +
                      " elements given for shape " + DimsText(dims) + " (" + std::to_string(count) +
                      " elements)");
  }
  if (options.deflate_level < 0 || options.deflate_level > 9) {
    throw ConfigError(Describe(site, "write") + ": deflate level " +
                      std::to_string(options.deflate_level) + " is outside 0..9");
  }
  const bool parallel = comm_ != nullptr;
  if (options.deflate_level > 0 && parallel) {
    throw ConfigError(Describe(site, "write") +
                      ": compression is not supported on a parallel file (deflate level " +
                      std::to_string(options.deflate_level) + "); HINT: use deflate_level 0");
  }
  RequireAbsent(*this, name, site);

  H5Id space = MakeSpace(dims, site);
  H5Id dcpl = MakeUntimed(H5P_DATASET_CREATE, site);
  const bool all_positive = std::all_of(dims.begin(), dims.end(), [](uint64_t d) { return d > 0; });
  if (options.deflate_level > 0 && !dims.empty() && all_positive) {
    if (Check(H5Zfilter_avail(H5Z_FILTER_DEFLATE), site, "query the deflate filter for") <= 0) {
      throw IoError(Describe(site, "compress") + ": this HDF5 has no deflate filter");
    }
    // Chunks of whole rows, about 1 MiB each: big enough for deflate, small enough to read back
    // a few rows cheaply.
    constexpr uint64_t kChunkBytes = uint64_t{1} << 20;
    const uint64_t row_bytes = count / dims[0] * sizeof(T);
    std::vector<hsize_t> chunk(dims.begin(), dims.end());
    chunk[0] = std::clamp<uint64_t>(kChunkBytes / row_bytes, 1, dims[0]);
    const hid_t dcpl_id = I::Get(dcpl);
    Check(H5Pset_chunk(dcpl_id, static_cast<int>(chunk.size()), chunk.data()), site,
          "set the chunks of");
    Check(H5Pset_shuffle(dcpl_id), site, "set the shuffle filter of");
    Check(H5Pset_deflate(dcpl_id, static_cast<unsigned>(options.deflate_level)), site,
          "set the deflate filter of");
  }
  H5Id lcpl = MakeLinkCreation(site);
  H5Id dataset = I::Own(Check(H5Dcreate2(I::Get(id_), name.c_str(), FileType<T>(), I::Get(space),
                                         I::Get(lcpl), I::Get(dcpl), H5P_DEFAULT),
                              site, "create dataset"));
  // On a parallel file every rank holds the same data; rank 0 writes it, the others select
  // nothing but still take part in the collective write.
  H5Id file_space = I::Own(Check(H5Dget_space(I::Get(dataset)), site, "get the space of"));
  H5Id memory_space = MakeSpace(dims, site);
  if (!Leads(comm_.get())) {
    Check(H5Sselect_none(I::Get(file_space)), site, "select nothing in");
    Check(H5Sselect_none(I::Get(memory_space)), site, "select nothing in");
  }
  const T placeholder{};  // HDF5 wants a non-null buffer even for zero elements
  H5Id dxpl = MakeTransfer(comm_ != nullptr, site);
  Check(H5Dwrite(I::Get(dataset), MemoryType<T>(), I::Get(memory_space), I::Get(file_space),
                 I::Get(dxpl), data.empty() ? &placeholder : data.data()),
        site, "write dataset");
}

template <H5Element T>
void H5Group::WriteDatasetSlab(const std::string& name, std::span<const T> data,
                               const std::vector<uint64_t>& dims, uint64_t first_row) {
  const Site site{"H5Group::WriteDatasetSlab", file_, JoinPath(path_, name)};
  // Validate locally, then agree: a rank that throws alone would leave the others waiting in
  // the collective create or write below.
  std::string problem;
  uint64_t rows = 0;
  std::vector<uint64_t> row_dims;
  if (dims.empty()) {
    problem = "a slab needs a shape of rank >= 1";
  } else {
    row_dims.assign(dims.begin() + 1, dims.end());
    const uint64_t row_size = CountElements(row_dims, site);
    (void)CountElements(dims, site);
    if (row_size == 0 ? !data.empty() : data.size() % row_size != 0) {
      problem = std::to_string(data.size()) + " elements are not whole rows of " +
                std::to_string(row_size);
    } else {
      rows = row_size == 0 ? 0 : data.size() / row_size;
      if (first_row > dims[0] || rows > dims[0] - first_row) {
        problem = "rows [" + std::to_string(first_row) + ", " + std::to_string(first_row + rows) +
                  ") exceed the " + std::to_string(dims[0]) + " rows of shape " + DimsText(dims);
      }
    }
  }
  if (!AllRanksOk(comm_.get(), problem.empty())) {
    throw FormatError(Describe(site, "write") + ": " +
                      (problem.empty() ? "another rank passed an invalid slab" : problem));
  }

  H5Id dataset;
  if (Has(name)) {
    dataset = OpenObject(*this, name, H5I_DATASET, site.function);
    H5Id type = I::Own(Check(H5Dget_type(I::Get(dataset)), site, "get the type of"));
    H5Id space = I::Own(Check(H5Dget_space(I::Get(dataset)), site, "get the space of"));
    const std::vector<uint64_t> found = SpaceDims(I::Get(space), site);
    const std::string found_type = DescribeType(I::Get(type), site);
    if (found != dims || found_type != TypeName<T>()) {
      throw FormatError(Describe(site, "write") + ": it exists as " + found_type + " " +
                        DimsText(found) + ", the slab expects " + TypeName<T>() + " " +
                        DimsText(dims));
    }
  } else {
    H5Id space = MakeSpace(dims, site);
    H5Id lcpl = MakeLinkCreation(site);
    H5Id dcpl = MakeUntimed(H5P_DATASET_CREATE, site);
    dataset = I::Own(Check(H5Dcreate2(I::Get(id_), name.c_str(), FileType<T>(), I::Get(space),
                                      I::Get(lcpl), I::Get(dcpl), H5P_DEFAULT),
                           site, "create dataset"));
  }
  H5Id file_space = I::Own(Check(H5Dget_space(I::Get(dataset)), site, "get the space of"));
  std::vector<uint64_t> slab_dims = dims;
  slab_dims[0] = rows;
  H5Id memory_space = MakeSpace(slab_dims, site);
  if (rows == 0) {
    Check(H5Sselect_none(I::Get(file_space)), site, "select nothing in");
    Check(H5Sselect_none(I::Get(memory_space)), site, "select nothing in");
  } else {
    std::vector<hsize_t> start(dims.size(), 0), count(slab_dims.begin(), slab_dims.end());
    start[0] = first_row;
    Check(H5Sselect_hyperslab(I::Get(file_space), H5S_SELECT_SET, start.data(), nullptr,
                              count.data(), nullptr),
          site, "select the slab of");
  }
  const T placeholder{};
  H5Id dxpl = MakeTransfer(comm_ != nullptr, site);
  Check(H5Dwrite(I::Get(dataset), MemoryType<T>(), I::Get(memory_space), I::Get(file_space),
                 I::Get(dxpl), data.empty() ? &placeholder : data.data()),
        site, "write a slab of dataset");
}

template <H5Element T>
H5Array<T> H5Group::ReadDataset(const std::string& name) const {
  const Site site{"H5Group::ReadDataset", file_, JoinPath(path_, name)};
  H5Id dataset = OpenObject(*this, name, H5I_DATASET, site.function);
  H5Id type = I::Own(Check(H5Dget_type(I::Get(dataset)), site, "get the type of"));
  const std::string found_type = DescribeType(I::Get(type), site);
  if (found_type != TypeName<T>()) {
    throw FormatError(std::string(site.function) + ": dataset '" + site.object + "' in '" +
                      site.file + "' holds " + found_type + ", expected " + TypeName<T>());
  }
  H5Id space = I::Own(Check(H5Dget_space(I::Get(dataset)), site, "get the space of"));
  H5Array<T> array;
  array.dims = SpaceDims(I::Get(space), site);
  const uint64_t count = CountElements(array.dims, site);
  array.data.resize(count);
  if (count > 0) {
    Check(
        H5Dread(I::Get(dataset), MemoryType<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, array.data.data()),
        site, "read dataset");
  }
  return array;
}

std::vector<uint64_t> H5Group::DatasetDims(const std::string& name) const {
  const Site site{"H5Group::DatasetDims", file_, JoinPath(path_, name)};
  H5Id dataset = OpenObject(*this, name, H5I_DATASET, site.function);
  H5Id space = I::Own(Check(H5Dget_space(I::Get(dataset)), site, "get the space of"));
  return SpaceDims(I::Get(space), site);
}

std::string H5Group::DatasetTypeName(const std::string& name) const {
  const Site site{"H5Group::DatasetTypeName", file_, JoinPath(path_, name)};
  H5Id dataset = OpenObject(*this, name, H5I_DATASET, site.function);
  H5Id type = I::Own(Check(H5Dget_type(I::Get(dataset)), site, "get the type of"));
  return DescribeType(I::Get(type), site);
}

#define HIQ_H5_INSTANTIATE(T)                                                                  \
  template void H5Group::WriteDataset<T>(const std::string&, std::span<const T>,               \
                                         const std::vector<uint64_t>&, const H5WriteOptions&); \
  template void H5Group::WriteDatasetSlab<T>(const std::string&, std::span<const T>,           \
                                             const std::vector<uint64_t>&, uint64_t);          \
  template H5Array<T> H5Group::ReadDataset<T>(const std::string&) const;
HIQ_H5_INSTANTIATE(float)
HIQ_H5_INSTANTIATE(double)
HIQ_H5_INSTANTIATE(int32_t)
HIQ_H5_INSTANTIATE(int64_t)
HIQ_H5_INSTANTIATE(uint8_t)
HIQ_H5_INSTANTIATE(uint16_t)
HIQ_H5_INSTANTIATE(uint32_t)
HIQ_H5_INSTANTIATE(uint64_t)
#undef HIQ_H5_INSTANTIATE

// ---- H5Group: attributes ---------------------------------------------------------------------

void H5Group::SetAttribute(const std::string& name, std::string_view value) {
  const Site site{"H5Group::SetAttribute", file_, path_ + "@" + name};
  // Variable-length UTF-8, the form h5py writes and reads back as str.
  H5Id type = I::Own(Check(H5Tcopy(H5T_C_S1), site, "make a string type for"));
  Check(H5Tset_size(I::Get(type), H5T_VARIABLE), site, "size the string type of");
  Check(H5Tset_cset(I::Get(type), H5T_CSET_UTF8), site, "set the encoding of");
  const std::string copy(value);  // null-terminated
  const char* text = copy.c_str();
  WriteAttribute(*this, name, I::Get(type), I::Get(type), {}, &text, site.function);
}

void H5Group::SetAttribute(const std::string& name, int64_t value) {
  WriteAttribute(*this, name, H5T_STD_I64LE, H5T_NATIVE_INT64, {}, &value, "H5Group::SetAttribute");
}

void H5Group::SetAttribute(const std::string& name, double value) {
  WriteAttribute(*this, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {}, &value,
                 "H5Group::SetAttribute");
}

void H5Group::SetAttribute(const std::string& name, std::span<const int64_t> values) {
  const int64_t placeholder = 0;
  WriteAttribute(*this, name, H5T_STD_I64LE, H5T_NATIVE_INT64, {values.size()},
                 values.empty() ? &placeholder : values.data(), "H5Group::SetAttribute");
}

void H5Group::SetAttribute(const std::string& name, std::span<const double> values) {
  const double placeholder = 0;
  WriteAttribute(*this, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {values.size()},
                 values.empty() ? &placeholder : values.data(), "H5Group::SetAttribute");
}

bool H5Group::HasAttribute(const std::string& name) const {
  const Site site{"H5Group::HasAttribute", file_, path_ + "@" + name};
  return Check(H5Aexists(I::Get(id_), name.c_str()), site, "look up attribute") > 0;
}

std::string H5Group::GetAttributeString(const std::string& name) const {
  const char* function = "H5Group::GetAttributeString";
  OpenedAttribute opened = OpenAttribute(*this, name, H5T_STRING, "a string", function);
  RequireOneElement(opened, file_, function);
  const Site site{function, file_, opened.what};
  const htri_t variable = Check(H5Tis_variable_str(I::Get(opened.type)), site, "inspect");
  H5Id memory_type = I::Own(Check(H5Tcopy(H5T_C_S1), site, "make a string type for"));
  // HDF5 converts neither way between ASCII and UTF-8: read in the stored encoding.
  const H5T_cset_t cset = H5Tget_cset(I::Get(opened.type));
  if (cset == H5T_CSET_ERROR) ThrowH5(site, "get the encoding of", Fault::kIo);
  Check(H5Tset_cset(I::Get(memory_type), cset), site, "set the encoding of");
  if (variable) {
    Check(H5Tset_size(I::Get(memory_type), H5T_VARIABLE), site, "size the string type of");
    char* text = nullptr;
    Check(H5Aread(I::Get(opened.attr), I::Get(memory_type), &text), site, "read attribute");
    std::string value = text ? text : "";
    Check(H5free_memory(text), site, "free the string of");
    return value;
  }
  // Fixed length (what h5py writes for numpy bytes), up to the first NUL. The memory type is
  // NULLTERM, which needs one byte more than a NULLPAD/SPACEPAD stored string of the same size.
  const size_t size = H5Tget_size(I::Get(opened.type));
  if (size == 0) ThrowH5(site, "get the string size of", Fault::kIo);
  Check(H5Tset_size(I::Get(memory_type), size + 1), site, "size the string type of");
  std::string value(size + 1, '\0');
  Check(H5Aread(I::Get(opened.attr), I::Get(memory_type), value.data()), site, "read attribute");
  value.resize(std::min(value.find('\0'), value.size()));
  return value;
}

int64_t H5Group::GetAttributeInt(const std::string& name) const {
  const char* function = "H5Group::GetAttributeInt";
  OpenedAttribute opened = OpenAttribute(*this, name, H5T_INTEGER, "an integer", function);
  RequireOneElement(opened, file_, function);
  int64_t value = 0;
  Check(H5Aread(I::Get(opened.attr), H5T_NATIVE_INT64, &value), Site{function, file_, opened.what},
        "read attribute");
  return value;
}

double H5Group::GetAttributeDouble(const std::string& name) const {
  const char* function = "H5Group::GetAttributeDouble";
  OpenedAttribute opened = OpenAttribute(*this, name, H5T_FLOAT, "a float", function);
  RequireOneElement(opened, file_, function);
  double value = 0;
  Check(H5Aread(I::Get(opened.attr), H5T_NATIVE_DOUBLE, &value), Site{function, file_, opened.what},
        "read attribute");
  return value;
}

std::vector<int64_t> H5Group::GetAttributeInts(const std::string& name) const {
  const char* function = "H5Group::GetAttributeInts";
  OpenedAttribute opened = OpenAttribute(*this, name, H5T_INTEGER, "an integer", function);
  std::vector<int64_t> values(opened.count);
  if (!values.empty()) {
    Check(H5Aread(I::Get(opened.attr), H5T_NATIVE_INT64, values.data()),
          Site{function, file_, opened.what}, "read attribute");
  }
  return values;
}

std::vector<double> H5Group::GetAttributeDoubles(const std::string& name) const {
  const char* function = "H5Group::GetAttributeDoubles";
  OpenedAttribute opened = OpenAttribute(*this, name, H5T_FLOAT, "a float", function);
  std::vector<double> values(opened.count);
  if (!values.empty()) {
    Check(H5Aread(I::Get(opened.attr), H5T_NATIVE_DOUBLE, values.data()),
          Site{function, file_, opened.what}, "read attribute");
  }
  return values;
}

}  // namespace hiq
