// hiq/io/safetensors.h - read, validate and write safetensors files (Hugging Face's weight format).
//
// File format (https://github.com/huggingface/safetensors), little-endian throughout:
//   1. N: u64, the length of the header in bytes (8 bytes).
//   2. The header: N bytes of UTF-8 JSON, one object
//        {"<tensor name>": {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]},
//         ...,
//         "__metadata__": {"<key>": "<string>", ...}}              <- optional, strings only
//      Writers pad it with trailing spaces so that N is a multiple of 8 (the data then starts
//      8-byte aligned).
//   3. The data section, from byte 8 + N to the end of the file: each tensor's elements,
//      row-major, little-endian, at [begin, end) relative to the start of the data section.
// A file is valid (checked as the reference Rust reader does) when the tensors tile the data
// section exactly: sorted by begin, the first starts at 0, each starts where the previous ends,
// the last ends at the end of the file, end - begin = prod(shape) * DTypeSize(dtype) (computed
// without overflow), and names are unique. The file is hostile: every violation is a FormatError
// "<function>: <file>: tensor '<name>': what was found, what was expected"; a Git LFS pointer
// left in place of the weights says so, with a HINT. Nothing is read before it is validated.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace hiq {

// Element types, spelled in files as "F32", "BF16", ... Sub-byte types (F4, F6_*) are not
// supported and are rejected as unknown.
// clang-format off
enum class DType { kF64, kF32, kF16, kBF16, kF8E4M3, kF8E5M2, kI64, kI32, kI16, kI8, kU64, kU32,
                   kU16, kU8, kBool };
// clang-format on
const char* DTypeName(DType dtype);                         // "F32"
size_t DTypeSize(DType dtype);                              // bytes per element
std::optional<DType> DTypeFromName(std::string_view name);  // nullopt if unknown
bool IsFloatDType(DType dtype);                             // F32, F16, BF16: readable as float

// One tensor of a file: where its bytes are, relative to the data section.
struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // [] is a scalar
  uint64_t begin = 0, end = 0;
  int64_t numel() const;  // product of shape (1 for a scalar)
  uint64_t bytes() const { return end - begin; }
};

struct SafetensorsLimits {
  uint64_t max_header_bytes = uint64_t{100} << 20;  // larger N is refused before allocating
};

// A validated header: tensors sorted by begin (ties by end, then name).
struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;
  std::map<std::string, std::string> metadata;
};

// Validates the JSON header against a data section of `data_bytes` bytes. Pure (no I/O); throws
// FormatError naming `file_for_errors` and the tensor.
SafetensorsHeader ParseSafetensorsHeader(std::string_view header_json, uint64_t data_bytes,
                                         const std::string& file_for_errors,
                                         const SafetensorsLimits& limits = {});

// A validated whole file; its data section is image[data_begin, image.size()).
struct SafetensorsLayout {
  SafetensorsHeader header;
  uint64_t data_begin = 0;  // 8 + N
};
// Validates a whole file image in memory: the path SafetensorsFile takes after mmap, and the one
// the fuzzer (tests/fuzz/fuzz_safetensors_header.cpp) drives.
SafetensorsLayout ParseSafetensorsImage(std::span<const std::byte> image,
                                        const std::string& file_for_errors,
                                        const SafetensorsLimits& limits = {});
// Reads and validates only the header of a file (pread of 8 + N bytes, no mmap), against the
// file's size. IoError if it cannot be opened/read, FormatError as above.
SafetensorsLayout ReadSafetensorsHeader(const std::filesystem::path& path,
                                        const SafetensorsLimits& limits = {});

// JSON text -> object, refusing what nlohmann's plain parse accepts silently: a key repeated in
// an object, a byte-order mark, nesting deeper than 16. FormatError "<function>: <file>: ...".
// `top_level_keys` names the top-level keys in the duplicate message ("tensor name").
nlohmann::json ParseJsonStrict(std::string_view text, const std::string& function,
                               const std::string& file_for_errors,
                               std::string_view top_level_keys = "key");

// src holds dst.size() elements of a float dtype (F32/F16/BF16), little-endian, any alignment.
// FormatError for another dtype or a size mismatch.
void ConvertToFloat(DType dtype, std::span<const std::byte> src, std::span<float> dst);
// The little-endian bytes of `values` stored as dtype (F32, F16 or BF16), for writing; F16 and
// BF16 round to nearest even (hiq/base/fp16.h). A finite value that overflows to infinity is a
// FormatError naming `what` (the tensor) and the index; NaN and infinity pass through as they are.
std::vector<std::byte> EncodeFloats(std::span<const float> values, DType dtype,
                                    std::string_view what);

// A safetensors file, validated at open, whose tensors are read on demand: ReadFloatInto reads
// with pread (nothing of the file stays resident in this process), Bytes maps just the pages of
// that one tensor (MAP_PRIVATE, read-only, kept until destruction). A rank of the pipeline thus
// reads and maps only the tensors it owns, never the whole file (TouchedTensors lists them).
// Owns its descriptor and mappings. Movable, not copyable. All methods are const and safe to call
// concurrently. The file must not be truncated while mapped (that is SIGBUS, as for any mmap
// reader).
class SafetensorsFile {
 public:
  // IoError if the file cannot be opened or read; FormatError if it is not a valid file.
  explicit SafetensorsFile(const std::filesystem::path& path, const SafetensorsLimits& limits = {});
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  const TensorInfo* Find(std::string_view name) const;  // nullptr if absent
  // The raw bytes of a tensor of this file (any alignment), mapped on first use. IoError if the
  // mapping fails.
  std::span<const std::byte> Bytes(const TensorInfo& info) const;
  // F32/F16/BF16 -> float. FormatError naming file and tensor if absent or not a float dtype,
  // (Into) if out.size() != numel, or if a value is NaN or infinite (naming the first's index);
  // IoError if the file is shorter than its header says.
  std::vector<float> ReadFloat(std::string_view name) const;
  void ReadFloatInto(std::string_view name, std::span<float> out) const;
  // I32 (or I64 whose values fit) -> int32. FormatError as above.
  std::vector<int32_t> ReadInt32(std::string_view name) const;
  // SHA-256 (hex) of a tensor's raw bytes, read with pread like ReadFloatInto (nothing mapped).
  std::string Sha256(const TensorInfo& info) const;
  // The tensors read or mapped so far, in file order.
  std::vector<std::string> TouchedTensors() const;

 private:
  const TensorInfo& Require(std::string_view name, const char* function) const;
  size_t IndexOf(const TensorInfo& info) const;
  // pread of a tensor's bytes in pieces of whole elements: piece(bytes, offset in the tensor).
  void ReadInPieces(const TensorInfo& info, size_t element, const char* function,
                    const std::function<void(std::span<const std::byte>, uint64_t)>& piece) const;

  struct Lazy;  // the mappings and the touched flags, under a mutex
  std::filesystem::path path_;
  int fd_ = -1;
  uint64_t data_begin_ = 0;  // file offset of the data section
  SafetensorsHeader header_;
  std::map<std::string, size_t, std::less<>> index_;  // name -> position in header_.tensors
  std::unique_ptr<Lazy> lazy_;
};

// One tensor to write; `data` (numel * DTypeSize bytes, little-endian) must outlive the call.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::span<const std::byte> data;
};
// Writes a safetensors file atomically: a temporary file in the same directory, fsync, rename.
// Data is laid out as the reference writer does (larger dtypes first, then by name) so every
// tensor starts aligned to its element size. FormatError for bad input (duplicate or reserved
// name, negative dim, data size != numel * dtype size); IoError if writing fails (nothing is
// left behind under `path` or the temporary name).
void WriteSafetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace hiq
