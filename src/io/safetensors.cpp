// safetensors: validation follows huggingface/safetensors (safetensors/src/tensor.rs,
// read_metadata + Metadata::validate) check for check, with one message per failure.
#include "hiq/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>
#include <utility>

#include "hiq/base/error.h"   // FormatError, IoError, HIQ_CHECK
#include "hiq/base/finite.h"  // FirstNonFinite, ValueName, IndexName
#include "hiq/base/fp16.h"    // F16ToFloat, FloatToF16, BF16ToFloat, FloatToBF16
#include "hiq/base/sha256.h"  // Sha256

namespace hiq {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host would need byte swaps");

namespace {

using nlohmann::json;

constexpr std::string_view kLfsPrefix = "version https://git-lfs.github.com/spec/";
constexpr size_t kSniffBytes = 512;  // enough of the file to recognise an LFS pointer
constexpr int kMaxJsonDepth = 16;    // a valid header nests 3 deep; this only stops abuse
constexpr size_t kMaxNameInMessage = 120;

struct DTypeRow {
  DType dtype;
  const char* name;
  size_t size;
};
constexpr std::array<DTypeRow, 15> kDTypes = {{
    {DType::kF64, "F64", 8},
    {DType::kF32, "F32", 4},
    {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2},
    {DType::kF8E4M3, "F8_E4M3", 1},
    {DType::kF8E5M2, "F8_E5M2", 1},
    {DType::kI64, "I64", 8},
    {DType::kI32, "I32", 4},
    {DType::kI16, "I16", 2},
    {DType::kI8, "I8", 1},
    {DType::kU64, "U64", 8},
    {DType::kU32, "U32", 4},
    {DType::kU16, "U16", 2},
    {DType::kU8, "U8", 1},
    {DType::kBool, "BOOL", 1},
}};

const DTypeRow& Row(DType dtype) {
  for (const DTypeRow& row : kDTypes) {
    if (row.dtype == dtype) return row;
  }
  HIQ_CHECK(false && "DType missing from kDTypes");
  return kDTypes[0];
}

// A name from a hostile file, quoted and escaped for a message, cut if very long.
std::string Quote(std::string_view name) {
  std::string quoted = "'";
  size_t n = std::min(name.size(), kMaxNameInMessage);
  for (size_t i = 0; i < n; ++i) {
    unsigned char c = static_cast<unsigned char>(name[i]);
    if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      quoted += buf;
    } else {
      quoted += static_cast<char>(c);
    }
  }
  if (name.size() > n) quoted += "...(" + std::to_string(name.size()) + " bytes)";
  return quoted + "'";
}

// "the string \"x\"", "the number -3", ... for "found" in messages.
std::string Describe(const json& value) {
  std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return std::string(value.type_name()) + " " + text;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

[[noreturn]] void Fail(std::string_view function, const std::string& file,
                       const std::string& what) {
  throw FormatError(std::string(function) + ": " + file + ": " + what);
}

// The 8-byte prefix (and what a file that is not safetensors looks like), checked against the
// file size. `head` is the first min(file_size, kSniffBytes) bytes. Returns N.
uint64_t CheckPrefix(std::span<const std::byte> head, uint64_t file_size, const std::string& file,
                     const SafetensorsLimits& limits, std::string_view function) {
  std::string_view text(reinterpret_cast<const char*>(head.data()), head.size());
  if (text.starts_with(kLfsPrefix)) {
    std::string size_note;
    if (size_t at = text.find("\nsize "); at != std::string_view::npos) {
      std::string_view rest = text.substr(at + 6);
      size_note = " of a " + std::string(rest.substr(0, rest.find('\n'))) + "-byte file";
    }
    Fail(function, file,
         "this is a Git LFS pointer" + size_note + " (" + std::to_string(file_size) +
             " bytes of text), not the weights. HINT: run `git lfs pull` in the model "
             "repository (or download the file itself, not its pointer)");
  }
  if (file_size < 8) {
    Fail(function, file,
         "file is " + std::to_string(file_size) +
             " bytes, too short for the 8-byte header length: truncated or empty");
  }
  uint64_t n = 0;
  std::memcpy(&n, head.data(), 8);
  if (n > limits.max_header_bytes) {
    std::string hint = text.starts_with("PK\x03\x04")
                           ? " HINT: this is a zip archive (a PyTorch .bin?), not safetensors"
                           : " HINT: not a safetensors file, or raise SafetensorsLimits";
    Fail(function, file,
         "header length " + std::to_string(n) + " bytes is above the limit of " +
             std::to_string(limits.max_header_bytes) + " bytes (max_header_bytes)." + hint);
  }
  if (n > file_size - 8) {
    Fail(function, file,
         "header length " + std::to_string(n) + " bytes extends beyond the end of the file (8 + " +
             std::to_string(n) + " > " + std::to_string(file_size) +
             " bytes): the file is truncated or not safetensors");
  }
  return n;
}

// ---- header fields --------------------------------------------------------------------------

uint64_t ToUnsigned(const json& value, std::string_view function, const std::string& file,
                    const std::string& where) {
  if (value.is_number_unsigned()) return value.get<uint64_t>();
  if (value.is_number_integer() && value.get<int64_t>() >= 0) return value.get<uint64_t>();
  Fail(function, file,
       where + " is " + Describe(value) + ", expected a non-negative integer" +
           (value.is_number_integer() ? " (negative)" : ""));
}

TensorInfo ParseTensor(const std::string& name, const json& value, uint64_t data_bytes,
                       std::string_view function, const std::string& file) {
  const std::string who = "tensor " + Quote(name);
  if (!value.is_object()) {
    Fail(function, file,
         who + " is " + Describe(value) + ", expected an object {dtype, shape, data_offsets}");
  }
  auto field = [&](const char* key) -> const json& {
    auto it = value.find(key);
    if (it == value.end()) {
      Fail(function, file, who + " has no \"" + key + "\" (expected dtype, shape, data_offsets)");
    }
    return *it;
  };
  TensorInfo info;
  info.name = name;

  const json& dtype = field("dtype");
  if (!dtype.is_string()) Fail(function, file, who + ": dtype is " + Describe(dtype));
  std::optional<DType> parsed = DTypeFromName(dtype.get_ref<const std::string&>());
  if (!parsed) {
    std::string known;
    for (const DTypeRow& row : kDTypes) known += std::string(known.empty() ? "" : ", ") + row.name;
    Fail(function, file,
         who + ": unknown dtype " + Quote(dtype.get_ref<const std::string&>()) +
             ", expected one of " + known);
  }
  info.dtype = *parsed;

  const json& shape = field("shape");
  if (!shape.is_array()) Fail(function, file, who + ": shape is " + Describe(shape));
  // Overflow-checked like the reference (usize::checked_mul); also kept within int64_t so that
  // numel() and every later index computation is safe.
  uint64_t numel = 1;
  bool overflow = false;
  for (size_t i = 0; i < shape.size(); ++i) {
    const json& dim = shape[i];
    const std::string where = who + ": shape[" + std::to_string(i) + "]";
    if (!dim.is_number_integer()) {
      Fail(function, file, where + " is " + Describe(dim) + ", expected a non-negative integer");
    }
    uint64_t d = ToUnsigned(dim, function, file, where);
    if (d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      Fail(function, file, where + " = " + std::to_string(d) + " is larger than 2^63 - 1");
    }
    info.shape.push_back(static_cast<int64_t>(d));
    overflow = overflow || __builtin_mul_overflow(numel, d, &numel);
  }
  uint64_t span_bytes = 0;
  overflow = overflow || __builtin_mul_overflow(numel, Row(info.dtype).size, &span_bytes) ||
             numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  if (overflow) {
    Fail(function, file,
         who + ": shape " + ShapeString(info.shape) + " x " + DTypeName(info.dtype) +
             " overflows 64-bit byte counts");
  }

  const json& offsets = field("data_offsets");
  if (!offsets.is_array() || offsets.size() != 2) {
    Fail(function, file,
         who + ": data_offsets is " + Describe(offsets) + ", expected [begin, end]");
  }
  info.begin = ToUnsigned(offsets[0], function, file, who + ": data_offsets[0]");
  info.end = ToUnsigned(offsets[1], function, file, who + ": data_offsets[1]");
  const std::string span_text =
      "data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) + "]";
  if (info.end < info.begin) {
    Fail(function, file, who + ": " + span_text + " end before begin");
  }
  if (info.end > data_bytes) {
    Fail(function, file,
         who + ": " + span_text + " out of bounds: the data section is " +
             std::to_string(data_bytes) + " bytes");
  }
  if (info.end - info.begin != span_bytes) {
    Fail(function, file,
         who + ": shape " + ShapeString(info.shape) + " x " + DTypeName(info.dtype) + " (" +
             std::to_string(Row(info.dtype).size) + " bytes) = " + std::to_string(span_bytes) +
             " bytes, but " + span_text + " span " + std::to_string(info.end - info.begin) +
             " bytes");
  }
  return info;
}

SafetensorsHeader ParseHeader(std::string_view header_json, uint64_t data_bytes,
                              const std::string& file, const SafetensorsLimits& limits,
                              std::string_view function) {
  if (header_json.size() > limits.max_header_bytes) {
    Fail(function, file,
         "header is " + std::to_string(header_json.size()) + " bytes, above the limit of " +
             std::to_string(limits.max_header_bytes) + " (max_header_bytes)");
  }
  json root = ParseJsonStrict(header_json, std::string(function), file, "tensor name");
  if (!root.is_object()) {
    Fail(function, file,
         "header is " + Describe(root) +
             ", expected a JSON object {name: {dtype, shape, "
             "data_offsets}, ...}");
  }
  SafetensorsHeader header;
  for (const auto& [name, value] : root.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) {
        Fail(function, file, "__metadata__ is " + Describe(value) + ", expected an object");
      }
      for (const auto& [key, text] : value.items()) {
        if (!text.is_string()) {
          Fail(function, file,
               "__metadata__ key " + Quote(key) + " is " + Describe(text) +
                   ", expected a string (safetensors metadata is str -> str)");
        }
        header.metadata.emplace(key, text.get<std::string>());
      }
      continue;
    }
    header.tensors.push_back(ParseTensor(name, value, data_bytes, function, file));
  }

  std::sort(header.tensors.begin(), header.tensors.end(),
            [](const TensorInfo& a, const TensorInfo& b) {
              return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
            });
  // The tensors must tile [0, data_bytes): no gap, no overlap, nothing after the last.
  uint64_t pos = 0;
  const TensorInfo* prev = nullptr;
  for (const TensorInfo& t : header.tensors) {
    if (t.begin > pos) {
      Fail(function, file,
           "gap of " + std::to_string(t.begin - pos) + " bytes before tensor " + Quote(t.name) +
               " (begins at " + std::to_string(t.begin) + ", " +
               (prev ? "tensor " + Quote(prev->name) + " ends at " + std::to_string(pos)
                     : std::string("the data section starts at 0")) +
               "); tensors must be contiguous");
    }
    if (t.begin < pos) {
      Fail(function, file,
           "tensor " + Quote(t.name) + " [" + std::to_string(t.begin) + ", " +
               std::to_string(t.end) + "] overlaps tensor " + Quote(prev->name) + " [" +
               std::to_string(prev->begin) + ", " + std::to_string(prev->end) + "]");
    }
    pos = t.end;
    prev = &t;
  }
  if (pos != data_bytes) {
    Fail(function, file,
         std::to_string(data_bytes - pos) + " trailing bytes after " +
             (prev ? "the last tensor " + Quote(prev->name) + " (ends at " + std::to_string(pos) +
                         ")"
                   : std::string("an empty tensor list")) +
             "; the data section is " + std::to_string(data_bytes) +
             " bytes and must end with the last tensor");
  }
  return header;
}

SafetensorsLayout ParseImage(std::span<const std::byte> image, const std::string& file,
                             const SafetensorsLimits& limits, std::string_view function) {
  uint64_t n = CheckPrefix(image.first(std::min(image.size(), kSniffBytes)), image.size(), file,
                           limits, function);
  std::string_view header_json(reinterpret_cast<const char*>(image.data()) + 8, n);
  SafetensorsLayout layout;
  layout.data_begin = 8 + n;
  layout.header = ParseHeader(header_json, image.size() - 8 - n, file, limits, function);
  return layout;
}

std::string ErrnoText() { return std::strerror(errno); }

// pread until `size` bytes are read; false on a short file.
bool PreadAll(int fd, void* buf, size_t size, uint64_t offset) {
  char* out = static_cast<char*>(buf);
  while (size > 0) {
    ssize_t got = ::pread(fd, out, size, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    out += got;
    size -= static_cast<size_t>(got);
    offset += static_cast<uint64_t>(got);
  }
  return true;
}

// An open file descriptor, closed on scope exit.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// Opens a regular file read-only and returns its size.
uint64_t OpenRegular(const std::filesystem::path& path, Fd& fd, std::string_view function) {
  fd.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd.fd < 0) {
    throw IoError(std::string(function) + ": cannot open " + path.string() + ": " + ErrnoText());
  }
  struct stat st {};
  if (::fstat(fd.fd, &st) != 0) {
    throw IoError(std::string(function) + ": cannot stat " + path.string() + ": " + ErrnoText());
  }
  if (!S_ISREG(st.st_mode)) {
    throw IoError(std::string(function) + ": " + path.string() +
                  " is not a regular file (a directory?), expected a .safetensors file");
  }
  return static_cast<uint64_t>(st.st_size);
}

}  // namespace

// ---- dtypes and conversions -------------------------------------------------------------------

const char* DTypeName(DType dtype) { return Row(dtype).name; }
size_t DTypeSize(DType dtype) { return Row(dtype).size; }
std::optional<DType> DTypeFromName(std::string_view name) {
  for (const DTypeRow& row : kDTypes) {
    if (name == row.name) return row.dtype;
  }
  return std::nullopt;
}
bool IsFloatDType(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16;
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

void ConvertToFloat(DType dtype, std::span<const std::byte> src, std::span<float> dst) {
  if (!IsFloatDType(dtype) || src.size() != dst.size() * DTypeSize(dtype)) {
    throw FormatError(std::string("ConvertToFloat: ") + std::to_string(src.size()) + " bytes of " +
                      DTypeName(dtype) + " into " + std::to_string(dst.size()) +
                      " floats; expected F32/F16/BF16 and a matching size");
  }
  if (dtype == DType::kF32) {
    if (!dst.empty()) std::memcpy(dst.data(), src.data(), src.size());
    return;
  }
  const bool f16 = dtype == DType::kF16;
  for (size_t i = 0; i < dst.size(); ++i) {
    uint16_t bits;
    std::memcpy(&bits, src.data() + 2 * i, 2);  // the data section need not be 2-byte aligned
    dst[i] = f16 ? F16ToFloat(bits) : BF16ToFloat(bits);
  }
}

std::vector<std::byte> EncodeFloats(std::span<const float> values, DType dtype,
                                    std::string_view what) {
  if (!IsFloatDType(dtype)) {
    throw FormatError(std::string("EncodeFloats: dtype ") + DTypeName(dtype) +
                      " is not a float type, expected F32, F16 or BF16");
  }
  std::vector<std::byte> out(values.size() * DTypeSize(dtype));
  if (dtype == DType::kF32) {
    if (!values.empty()) std::memcpy(out.data(), values.data(), out.size());
    return out;
  }
  for (size_t i = 0; i < values.size(); ++i) {
    uint16_t bits = dtype == DType::kF16 ? FloatToF16(values[i]) : FloatToBF16(values[i]);
    // A finite value that rounds to infinity would be read back as a weight of inf.
    if (std::isfinite(values[i]) &&
        (bits & 0x7fffu) == (dtype == DType::kF16 ? 0x7c00u : 0x7f80u)) {
      char value[32];
      std::snprintf(value, sizeof value, "%.9g", static_cast<double>(values[i]));
      throw FormatError("EncodeFloats: " + std::string(what) + ": the value " + value +
                        " at flat index " + std::to_string(i) + " overflows " + DTypeName(dtype) +
                        " (largest finite " + (dtype == DType::kF16 ? "65504" : "3.39e38") + ")");
    }
    std::memcpy(out.data() + 2 * i, &bits, 2);
  }
  return out;
}

// ---- parsing ----------------------------------------------------------------------------------

nlohmann::json ParseJsonStrict(std::string_view text, const std::string& function,
                               const std::string& file_for_errors,
                               std::string_view top_level_keys) {
  if (text.starts_with("\xEF\xBB\xBF")) {
    Fail(function, file_for_errors, "JSON starts with a UTF-8 byte-order mark, which JSON forbids");
  }
  // One frame per open object: its keys so far, and the key that holds it (for messages).
  struct Frame {
    std::set<std::string, std::less<>> keys;
    std::string held_by;
  };
  std::vector<Frame> frames;
  std::string last_key;
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) -> bool {
    if (depth > kMaxJsonDepth) {
      Fail(function, file_for_errors,
           "JSON nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    }
    switch (event) {
      case json::parse_event_t::object_start:
        frames.push_back({{}, frames.empty() ? std::string() : last_key});
        break;
      case json::parse_event_t::object_end:
        if (!frames.empty()) frames.pop_back();
        break;
      case json::parse_event_t::key: {
        const std::string& key = parsed.get_ref<const std::string&>();
        if (!frames.empty() && !frames.back().keys.insert(key).second) {
          // At the top level of a safetensors header the keys are the tensor names.
          if (frames.size() == 1) {
            Fail(function, file_for_errors,
                 "duplicate " + std::string(top_level_keys) + " " + Quote(key) +
                     ": it appears twice at the top level; names must be unique");
          }
          Fail(function, file_for_errors,
               "duplicate key " + Quote(key) + " inside " + Quote(frames.back().held_by));
        }
        last_key = key;
        break;
      }
      default:
        break;
    }
    return true;
  };
  try {
    return json::parse(text.data(), text.data() + text.size(), callback,
                       /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const json::exception& e) {
    Fail(function, file_for_errors, std::string("not valid JSON: ") + e.what());
  }
}

SafetensorsHeader ParseSafetensorsHeader(std::string_view header_json, uint64_t data_bytes,
                                         const std::string& file_for_errors,
                                         const SafetensorsLimits& limits) {
  return ParseHeader(header_json, data_bytes, file_for_errors, limits, "ParseSafetensorsHeader");
}

SafetensorsLayout ParseSafetensorsImage(std::span<const std::byte> image,
                                        const std::string& file_for_errors,
                                        const SafetensorsLimits& limits) {
  return ParseImage(image, file_for_errors, limits, "ParseSafetensorsImage");
}

namespace {

// The header of an open file of `size` bytes, validated (the data section must tile the rest).
SafetensorsLayout ReadLayout(int fd, uint64_t size, const std::string& file,
                             const SafetensorsLimits& limits, std::string_view function) {
  std::vector<std::byte> head(std::min<uint64_t>(size, kSniffBytes));
  if (!PreadAll(fd, head.data(), head.size(), 0)) {
    throw IoError(std::string(function) + ": cannot read " + file + ": " + ErrnoText());
  }
  const uint64_t n = CheckPrefix(head, size, file, limits, function);
  std::string header_json(n, '\0');  // n <= max_header_bytes and <= the file size
  if (!PreadAll(fd, header_json.data(), n, 8)) {
    throw IoError(std::string(function) + ": cannot read the " + std::to_string(n) +
                  "-byte header of " + file + " (file changed while reading?)");
  }
  SafetensorsLayout layout;
  layout.data_begin = 8 + n;
  layout.header = ParseHeader(header_json, size - 8 - n, file, limits, function);
  return layout;
}

}  // namespace

SafetensorsLayout ReadSafetensorsHeader(const std::filesystem::path& path,
                                        const SafetensorsLimits& limits) {
  Fd fd;
  const uint64_t size = OpenRegular(path, fd, "ReadSafetensorsHeader");
  return ReadLayout(fd.fd, size, path.string(), limits, "ReadSafetensorsHeader");
}

// ---- SafetensorsFile --------------------------------------------------------------------------

struct SafetensorsFile::Lazy {
  struct Map {
    void* addr = nullptr;  // page-aligned start of the mapping (nullptr: not mapped)
    size_t length = 0;
    std::span<const std::byte> bytes;  // the tensor inside it
  };
  std::mutex mu;
  std::vector<Map> maps;      // per tensor of header_.tensors
  std::vector<bool> touched;  // per tensor: read or mapped

  ~Lazy() {
    for (const Map& m : maps) {
      if (m.addr != nullptr) ::munmap(m.addr, m.length);
    }
  }
};

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path, const SafetensorsLimits& limits)
    : path_(path) {
  Fd fd;
  const uint64_t size = OpenRegular(path, fd, "SafetensorsFile");
  SafetensorsLayout layout = ReadLayout(fd.fd, size, path.string(), limits, "SafetensorsFile");
  data_begin_ = layout.data_begin;
  header_ = std::move(layout.header);
  for (size_t i = 0; i < header_.tensors.size(); ++i) index_.emplace(header_.tensors[i].name, i);
  lazy_ = std::make_unique<Lazy>();
  lazy_->maps.resize(header_.tensors.size());
  lazy_->touched.resize(header_.tensors.size(), false);
  fd_ = std::exchange(fd.fd, -1);
}

SafetensorsFile::~SafetensorsFile() {
  if (fd_ >= 0) ::close(fd_);
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept
    : path_(std::move(other.path_)),
      fd_(std::exchange(other.fd_, -1)),
      data_begin_(other.data_begin_),
      header_(std::move(other.header_)),
      index_(std::move(other.index_)),
      lazy_(std::move(other.lazy_)) {}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    data_begin_ = other.data_begin_;
    header_ = std::move(other.header_);
    index_ = std::move(other.index_);
    lazy_ = std::move(other.lazy_);
  }
  return *this;
}

const TensorInfo* SafetensorsFile::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

size_t SafetensorsFile::IndexOf(const TensorInfo& info) const {
  // Any TensorInfo of this file passed validation; one from elsewhere is a caller bug.
  HIQ_CHECK(!header_.tensors.empty() && &info >= header_.tensors.data() &&
            &info < header_.tensors.data() + header_.tensors.size());
  return static_cast<size_t>(&info - header_.tensors.data());
}

std::span<const std::byte> SafetensorsFile::Bytes(const TensorInfo& info) const {
  const size_t i = IndexOf(info);
  std::lock_guard<std::mutex> lock(lazy_->mu);
  lazy_->touched[i] = true;
  Lazy::Map& m = lazy_->maps[i];
  if (m.addr != nullptr || info.end == info.begin) return m.bytes;
  const uint64_t offset = data_begin_ + info.begin;
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t start = offset / page * page;
  const size_t length = static_cast<size_t>(offset - start + (info.end - info.begin));
  void* addr = ::mmap(nullptr, length, PROT_READ, MAP_PRIVATE, fd_, static_cast<off_t>(start));
  if (addr == MAP_FAILED) {
    throw IoError("SafetensorsFile: cannot mmap tensor " + Quote(info.name) + " of " +
                  path_.string() + " (" + std::to_string(length) + " bytes): " + ErrnoText());
  }
  m.addr = addr;
  m.length = length;
  m.bytes = {static_cast<const std::byte*>(addr) + (offset - start),
             static_cast<size_t>(info.end - info.begin)};
  return m.bytes;
}

void SafetensorsFile::ReadInPieces(
    const TensorInfo& info, size_t element, const char* function,
    const std::function<void(std::span<const std::byte>, uint64_t)>& piece) const {
  {
    std::lock_guard<std::mutex> lock(lazy_->mu);
    lazy_->touched[IndexOf(info)] = true;
  }
  // Through a small buffer, a whole number of elements at a time: a weight read once into its
  // float copy (or its hash) leaves no page of the file mapped or resident in this process.
  const uint64_t size = info.end - info.begin;
  const uint64_t chunk_bytes = (uint64_t{1} << 22) / element * element;
  std::vector<std::byte> chunk(static_cast<size_t>(std::min(chunk_bytes, size)));
  for (uint64_t done = 0; done < size;) {
    const size_t n = static_cast<size_t>(std::min(size - done, chunk_bytes));
    errno = 0;
    if (!PreadAll(fd_, chunk.data(), n, data_begin_ + info.begin + done)) {
      throw IoError(std::string(function) + ": cannot read tensor " + Quote(info.name) + " of " +
                    path_.string() + ": " + (errno != 0 ? ErrnoText() : "the file is shorter") +
                    " (file changed while reading?)");
    }
    piece(std::span<const std::byte>(chunk.data(), n), done);
    done += n;
  }
}

std::string SafetensorsFile::Sha256(const TensorInfo& info) const {
  hiq::Sha256 hash;
  ReadInPieces(info, 1, "SafetensorsFile::Sha256", [&](std::span<const std::byte> piece, uint64_t) {
    hash.Update(piece.data(), piece.size());
  });
  return hash.HexDigest();
}

std::vector<std::string> SafetensorsFile::TouchedTensors() const {
  std::lock_guard<std::mutex> lock(lazy_->mu);
  std::vector<std::string> names;
  for (size_t i = 0; i < header_.tensors.size(); ++i) {
    if (lazy_->touched[i]) names.push_back(header_.tensors[i].name);
  }
  return names;
}

const TensorInfo& SafetensorsFile::Require(std::string_view name, const char* function) const {
  const TensorInfo* info = Find(name);
  if (info == nullptr) {
    throw FormatError(std::string(function) + ": " + path_.string() + ": no tensor " + Quote(name) +
                      " in this file (" + std::to_string(index_.size()) + " tensors)");
  }
  return *info;
}

std::vector<float> SafetensorsFile::ReadFloat(std::string_view name) const {
  const TensorInfo& info = Require(name, "SafetensorsFile::ReadFloat");
  std::vector<float> out(static_cast<size_t>(info.numel()));
  ReadFloatInto(name, out);
  return out;
}

void SafetensorsFile::ReadFloatInto(std::string_view name, std::span<float> out) const {
  constexpr const char* kFunction = "SafetensorsFile::ReadFloat";
  const TensorInfo& info = Require(name, kFunction);
  if (!IsFloatDType(info.dtype)) {
    throw FormatError(std::string(kFunction) + ": " + path_.string() + ": tensor " + Quote(name) +
                      " has dtype " + DTypeName(info.dtype) + ", expected F32, F16 or BF16");
  }
  if (out.size() != static_cast<size_t>(info.numel())) {
    throw FormatError(std::string(kFunction) + ": " + path_.string() + ": tensor " + Quote(name) +
                      " has shape " + ShapeString(info.shape) + " = " +
                      std::to_string(info.numel()) + " elements, but the destination holds " +
                      std::to_string(out.size()));
  }
  const size_t element = DTypeSize(info.dtype);
  ReadInPieces(info, element, kFunction, [&](std::span<const std::byte> piece, uint64_t at) {
    ConvertToFloat(info.dtype, piece, out.subspan(at / element, piece.size() / element));
  });
  // Checked here, where every weight enters, so that no stage ever computes on a NaN.
  if (const int64_t bad = FirstNonFinite(out); bad >= 0) {
    throw FormatError(std::string(kFunction) + ": " + path_.string() + ": tensor " + Quote(name) +
                      " holds " + ValueName(out[static_cast<size_t>(bad)]) + " at index " +
                      IndexName(bad, info.shape) + " (" + DTypeName(info.dtype) +
                      "); weights must be finite");
  }
}

std::vector<int32_t> SafetensorsFile::ReadInt32(std::string_view name) const {
  constexpr const char* kFunction = "SafetensorsFile::ReadInt32";
  const TensorInfo& info = Require(name, kFunction);
  std::span<const std::byte> bytes = Bytes(info);
  std::vector<int32_t> out(static_cast<size_t>(info.numel()));
  if (info.dtype == DType::kI32) {
    if (!out.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
    return out;
  }
  if (info.dtype != DType::kI64) {
    throw FormatError(std::string(kFunction) + ": " + path_.string() + ": tensor " + Quote(name) +
                      " has dtype " + DTypeName(info.dtype) + ", expected I32 (or I64)");
  }
  for (size_t i = 0; i < out.size(); ++i) {
    int64_t v;
    std::memcpy(&v, bytes.data() + 8 * i, 8);
    if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) {
      throw FormatError(std::string(kFunction) + ": " + path_.string() + ": tensor " + Quote(name) +
                        " element " + std::to_string(i) + " = " + std::to_string(v) +
                        " does not fit in int32");
    }
    out[i] = static_cast<int32_t>(v);
  }
  return out;
}

// ---- writer -----------------------------------------------------------------------------------

void WriteSafetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  constexpr std::string_view kFunction = "WriteSafetensors";
  const std::string file = path.string();

  // Reference layout: larger element sizes first, then by name, so each tensor is aligned.
  std::vector<const TensorToWrite*> order;
  std::set<std::string_view> names;
  for (const TensorToWrite& t : tensors) {
    const std::string who = "tensor " + Quote(t.name);
    if (t.name.empty() || t.name == "__metadata__") {
      Fail(kFunction, file, who + ": the name is empty or reserved");
    }
    if (!names.insert(t.name).second) Fail(kFunction, file, who + " is given twice");
    uint64_t bytes = DTypeSize(t.dtype);
    for (int64_t d : t.shape) {
      if (d < 0) Fail(kFunction, file, who + ": negative dim in shape " + ShapeString(t.shape));
      if (__builtin_mul_overflow(bytes, static_cast<uint64_t>(d), &bytes)) {
        Fail(kFunction, file, who + ": shape " + ShapeString(t.shape) + " overflows");
      }
    }
    if (bytes != t.data.size()) {
      Fail(kFunction, file,
           who + ": shape " + ShapeString(t.shape) + " x " + DTypeName(t.dtype) + " needs " +
               std::to_string(bytes) + " bytes, data holds " + std::to_string(t.data.size()));
    }
    order.push_back(&t);
  }
  std::stable_sort(order.begin(), order.end(), [](const TensorToWrite* a, const TensorToWrite* b) {
    if (DTypeSize(a->dtype) != DTypeSize(b->dtype))
      return DTypeSize(a->dtype) > DTypeSize(b->dtype);
    return a->name < b->name;
  });

  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const TensorToWrite* t : order) {
    header[t->name] = {{"dtype", DTypeName(t->dtype)},
                       {"shape", t->shape},
                       {"data_offsets", {offset, offset + t->data.size()}}};
    offset += t->data.size();
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {  // a name or metadata string that is not UTF-8
    Fail(kFunction, file, std::string("cannot encode the header: ") + e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t n = text.size();

  std::filesystem::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  std::string temp = (dir / ("." + path.filename().string() + ".tmp-XXXXXX")).string();
  Fd fd;
  fd.fd = ::mkstemp(temp.data());
  if (fd.fd < 0) {
    throw IoError(std::string(kFunction) + ": cannot create a temporary file in " + dir.string() +
                  " for " + file + ": " + ErrnoText());
  }
  bool done = false;
  struct RemoveTemp {  // the temporary never survives a failure
    const std::string& name;
    const bool& done;
    ~RemoveTemp() {
      if (!done) ::unlink(name.c_str());
    }
  } remove_temp{temp, done};

  auto write_all = [&](const void* data, size_t size) {
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
      ssize_t put = ::write(fd.fd, p, size);
      if (put < 0 && errno == EINTR) continue;
      if (put <= 0) {
        throw IoError(std::string(kFunction) + ": cannot write " + temp + " (for " + file +
                      "): " + ErrnoText());
      }
      p += put;
      size -= static_cast<size_t>(put);
    }
  };
  write_all(&n, 8);
  write_all(text.data(), text.size());
  for (const TensorToWrite* t : order) write_all(t->data.data(), t->data.size());
  if (::fchmod(fd.fd, 0644) != 0 || ::fsync(fd.fd) != 0) {
    throw IoError(std::string(kFunction) + ": cannot sync " + temp + ": " + ErrnoText());
  }
  const int closed = ::close(std::exchange(fd.fd, -1));
  if (closed != 0) {
    throw IoError(std::string(kFunction) + ": cannot close " + temp + ": " + ErrnoText());
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    throw IoError(std::string(kFunction) + ": cannot rename " + temp + " to " + file + ": " +
                  ErrnoText());
  }
  done = true;
}

}  // namespace hiq
