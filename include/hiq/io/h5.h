// hiq/io/h5.h - a thin RAII layer over the HDF5 C API: files (serial or MPI-IO), groups, typed
// n-dimensional datasets, attributes and external links. Every hiq output file goes through it.
//
// Design goals: each HDF5 C call is wrapped once in src/io/h5.cpp and its return code checked; a
// raw hid_t never leaves that file. HDF5's error stack becomes an IoError (cannot open/read/write)
// or a FormatError (not HDF5, missing object, wrong dtype/shape) naming the function, the file, the
// object and HDF5's innermost message. HDF5's own error printing is switched off at first use:
// no "HDF5-DIAG" text ever reaches stderr. Why HDF5: h5py/h5dump read our outputs, MPI-IO lets all
// ranks write one file, external links join per-rank shards into one model file.
// Non-goals: compound, variable-length or string datasets, resizable datasets, partial reads.
//
// Writing is atomic (the stage-output rule): Create/CreateParallel write to "<path>.tmp-<pid>"
// and Commit() closes and renames it to <path>, so a file under its final name is complete.
// A created file that is closed or destroyed without Commit() is deleted.
//
// Parallel files (MPI-IO driver): every call that creates or changes something (Create*, Open*,
// CreateGroup, WriteDataset*, SetAttribute, CreateExternalLink, Commit, Close) is collective: all
// ranks make it in the same order with the same arguments. Any rank may read alone. The layer
// talks to MPI only through a Comm (hiq/dist/mpi.h); a file and its groups keep a copy of it.
// Thread-safety: Debian's HDF5 is not built thread-safe: one thread at a time for the whole layer.
#pragma once

#include <concepts>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace hiq {

class Comm;  // hiq/dist/mpi.h

// The element types a dataset may hold (stored little-endian: f32, f64, i32, i64, u8..u64).
template <typename T>
concept H5Element = std::same_as<T, float> || std::same_as<T, double> || std::same_as<T, int32_t> ||
    std::same_as<T, int64_t> || std::same_as<T, uint8_t> || std::same_as<T, uint16_t> ||
    std::same_as<T, uint32_t> || std::same_as<T, uint64_t>;

template <H5Element T>
struct H5Array {               // a dataset read back whole
  std::vector<T> data;         // row-major
  std::vector<uint64_t> dims;  // empty for a scalar
};

enum class H5Mode { kReadOnly, kReadWrite };

struct H5WriteOptions {
  // 0 = contiguous; 1..9 = chunked (~1 MiB of whole rows) + shuffle + deflate at this level.
  int deflate_level = 0;  // serial files only (ConfigError on a parallel file)
};

// An owned HDF5 identifier (file, group, dataset, dataspace, ...). Move-only; releasing it never
// throws. Opaque outside src/io/h5.cpp.
class H5Id {
 public:
  H5Id() = default;
  ~H5Id();
  H5Id(H5Id&& other) noexcept;
  H5Id& operator=(H5Id&& other) noexcept;  // (copying is implicitly deleted)

 private:
  friend struct H5Internal;  // src/io/h5.cpp
  int64_t id_ = -1;          // hid_t (static_assert'ed in the .cpp)
};

// An open group ("/" or a subgroup) of an H5File. Names are relative to it and may be paths
// ("layers/3/scales"); external links are followed. Owns its handle (move-only). On a serial
// file it keeps the file open after the H5File is destroyed (`H5File::Open(p).root()` works);
// an explicit Commit()/Close() closes it for good, after which its calls throw IoError. Throws
// IoError/FormatError naming the file and object on any failure.
class H5Group {
 public:
  H5Group CreateGroup(const std::string& name);      // FormatError if the name is taken
  H5Group OpenGroup(const std::string& name) const;  // FormatError if missing / not a group
  bool Has(const std::string& name) const;           // a link of that name exists
  std::vector<std::string> ListNames() const;        // the group's link names, sorted

  // Writes data (row-major, data.size() == product of dims) as a new dataset.
  template <H5Element T>
  void WriteDataset(const std::string& name, std::span<const T> data,
                    const std::vector<uint64_t>& dims, const H5WriteOptions& options = {});
  // Collective on a parallel file: writes rows [first_row, first_row + rows) of a dataset of
  // shape `dims` (created by the first call, contiguous), rows = data.size() / row size. Each
  // rank passes its own slab; a rank with no rows passes an empty span. Serial files too.
  template <H5Element T>
  void WriteDatasetSlab(const std::string& name, std::span<const T> data,
                        const std::vector<uint64_t>& dims, uint64_t first_row);
  // Reads a whole dataset; FormatError if its stored type is not exactly T.
  template <H5Element T>
  H5Array<T> ReadDataset(const std::string& name) const;
  std::vector<uint64_t> DatasetDims(const std::string& name) const;
  std::string DatasetTypeName(const std::string& name) const;  // "float32", "uint8", ...

  // Attributes of this group; Set overwrites. Get* throw FormatError if missing or of another
  // type (integers of any width read as int64).
  void SetAttribute(const std::string& name, std::string_view value);  // UTF-8, variable length
  void SetAttribute(const std::string& name, int64_t value);
  template <std::integral I>
  void SetAttribute(const std::string& name, I value) {
    SetAttribute(name, static_cast<int64_t>(value));
  }
  void SetAttribute(const std::string& name, double value);
  void SetAttribute(const std::string& name, std::span<const int64_t> values);
  void SetAttribute(const std::string& name, std::span<const double> values);
  bool HasAttribute(const std::string& name) const;
  std::string GetAttributeString(const std::string& name) const;
  int64_t GetAttributeInt(const std::string& name) const;
  double GetAttributeDouble(const std::string& name) const;
  std::vector<int64_t> GetAttributeInts(const std::string& name) const;
  std::vector<double> GetAttributeDoubles(const std::string& name) const;

  // A link `name` -> object `target_object` in file `target_file`. A relative target_file is
  // resolved by HDF5 against the linking file's directory, so "shards/x.h5" travels with it.
  void CreateExternalLink(const std::string& name, const std::string& target_file,
                          const std::string& target_object);

  const std::string& path() const { return path_; }       // in the file, e.g. "/layers/3"
  const std::string& file_name() const { return file_; }  // for messages

 private:
  friend struct H5Internal;
  H5Group(H5Id id, std::string file, std::string path, std::shared_ptr<const Comm> comm);
  H5Id id_;
  std::string file_;
  std::string path_;
  std::shared_ptr<const Comm> comm_;  // the file's communicator, null for a serial file
};

// An open HDF5 file. Owns the handle and, for Create*, the temporary file. Move-only.
// Open: IoError if the file cannot be opened, FormatError if it is not HDF5.
class H5File {
 public:
  static H5File Create(const std::filesystem::path& path);
  static H5File Open(const std::filesystem::path& path, H5Mode mode = H5Mode::kReadOnly);
  // MPI-IO driver over `comm` (collective over its ranks; the file keeps a copy of the Comm).
  // The temporary name uses rank 0's pid.
  static H5File CreateParallel(const std::filesystem::path& path, const Comm& comm);
  static H5File OpenParallel(const std::filesystem::path& path, const Comm& comm,
                             H5Mode mode = H5Mode::kReadOnly);

  H5File(H5File&& other) noexcept;
  H5File& operator=(H5File&& other) noexcept;
  // Closes quietly (deleting an uncommitted temp file). On a parallel file destroyed while an
  // exception unwinds, the collective close is skipped: the other ranks are not in it and
  // would hang; the job is about to abort anyway.
  ~H5File();

  H5Group root() const;
  const std::filesystem::path& path() const { return path_; }  // the final name
  bool is_open() const;

  // Files from Create*: flush, close and rename the temp file to path(); all ranks learn of a
  // failure (IoError). Files from Open*: same as Close().
  void Commit();
  // Closes; a created file that was not committed is discarded. IoError on failure.
  void Close();

 private:
  friend struct H5Internal;
  H5File() = default;
  H5Id id_;
  std::filesystem::path path_;
  std::filesystem::path temp_path_;   // empty unless created and not yet committed
  std::shared_ptr<const Comm> comm_;  // null for a serial file
  int uncaught_at_open_ = 0;          // std::uncaught_exceptions() when opened
};

// True once an HDF5 call of this process failed with an I/O error (a write error such as
// ENOSPC or EFBIG, at a dataset write or at close): HDF5 cannot then be torn down safely, and a
// failing process ends with _exit, skipping MPI_Finalize, which would run HDF5's termination
// over the half-released file and crash.
bool H5LibraryStateBroken();

}  // namespace hiq
