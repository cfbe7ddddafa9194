// libFuzzer target: the input is a whole safetensors file image (8-byte length + header + data),
// fed to ParseSafetensorsImage, the validation SafetensorsFile runs after mmap. Built and run by
// scripts/fuzz.sh (clang, -fsanitize=fuzzer,address,undefined); not part of the CMake build.
//
// A custom mutator keeps most mutants self-consistent (length prefix = header length, data as
// long as the tensors claim), so the fuzzer spends its time in the header checks rather than in
// "header length beyond the file"; one mutant in eight is mutated raw to keep those paths covered.
//
// Refusing the input with a FormatError is the expected outcome for most inputs. A crash, a
// sanitizer report, any other exception escaping, or an accepted file that breaks the reader's
// invariants (checked below, then abort) is a bug.
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <span>
#include <vector>

#include "hiq/base/error.h"      // FormatError
#include "hiq/io/safetensors.h"  // ParseSafetensorsImage, ConvertToFloat, EncodeFloats

namespace {

[[noreturn]] void Broken(const char* what, const hiq::TensorInfo* t) {
  std::fprintf(stderr, "invariant broken: %s (tensor '%s')\n", what, t ? t->name.c_str() : "");
  std::abort();
}

// What an accepted file promises to every reader of its tensors.
void CheckAccepted(std::span<const std::byte> image, const hiq::SafetensorsLayout& layout) {
  if (layout.data_begin < 8 || layout.data_begin > image.size()) Broken("data_begin", nullptr);
  const std::span<const std::byte> data = image.subspan(layout.data_begin);
  uint64_t pos = 0;
  for (const hiq::TensorInfo& t : layout.header.tensors) {
    if (t.begin != pos || t.end < t.begin || t.end > data.size()) Broken("tiling", &t);
    if (t.numel() < 0 || static_cast<uint64_t>(t.numel()) * hiq::DTypeSize(t.dtype) != t.bytes()) {
      Broken("numel * dtype size != span", &t);
    }
    pos = t.end;
    if (!hiq::IsFloatDType(t.dtype)) continue;
    // Decoding touches every byte (ASan checks the bounds); re-encoding a decoded F16/BF16 value
    // must give back its bits, NaNs aside (they come back quiet).
    const std::span<const std::byte> bytes = data.subspan(t.begin, t.bytes());
    std::vector<float> values(static_cast<size_t>(t.numel()));
    hiq::ConvertToFloat(t.dtype, bytes, values);
    const std::vector<std::byte> again = hiq::EncodeFloats(values, t.dtype, t.name);
    if (again.size() != bytes.size()) Broken("re-encoded size", &t);
    for (size_t i = 0; i < values.size(); ++i) {
      const size_t w = hiq::DTypeSize(t.dtype);
      if (values[i] != values[i]) continue;  // NaN
      if (std::memcmp(again.data() + i * w, bytes.data() + i * w, w) != 0) {
        Broken("decode/encode round trip", &t);
      }
    }
  }
  if (pos != data.size()) Broken("tensors do not end at the end of the file", nullptr);
}

}  // namespace

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned int seed) {
  std::minstd_rand rng(seed);
  if (size < 8 || max_size < 16 || rng() % 8 == 0) return LLVMFuzzerMutate(data, size, max_size);
  uint64_t n = 0;
  std::memcpy(&n, data, 8);
  n = std::min<uint64_t>(n, size - 8);
  std::vector<uint8_t> header(data + 8, data + 8 + n);
  std::vector<uint8_t> rest(data + 8 + n, data + size);
  header.resize(max_size - 8);
  header.resize(LLVMFuzzerMutate(header.data(), static_cast<size_t>(n), max_size - 8));
  // Size the data section to the largest end offset the header claims, most of the time.
  if (rng() % 4 != 0) {
    const nlohmann::json j = nlohmann::json::parse(header.begin(), header.end(), nullptr, false);
    uint64_t max_end = 0;
    if (j.is_object()) {
      for (const auto& [name, info] : j.items()) {
        if (!info.is_object() || !info.contains("data_offsets")) continue;
        const nlohmann::json& offsets = info["data_offsets"];
        if (offsets.is_array() && offsets.size() == 2 && offsets[1].is_number_unsigned()) {
          max_end = std::max(max_end, offsets[1].get<uint64_t>());
        }
      }
    }
    if (max_end <= max_size - 8 - header.size()) rest.resize(static_cast<size_t>(max_end), 0);
  }
  rest.resize(std::min(rest.size(), max_size - 8 - header.size()));
  const uint64_t new_n = header.size();
  std::memcpy(data, &new_n, 8);
  std::copy(header.begin(), header.end(), data + 8);
  std::copy(rest.begin(), rest.end(), data + 8 + header.size());
  return 8 + header.size() + rest.size();
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> image(reinterpret_cast<const std::byte*>(data), size);
  try {
    const hiq::SafetensorsLayout layout = hiq::ParseSafetensorsImage(image, "fuzz.safetensors");
    CheckAccepted(image, layout);
  } catch (const hiq::FormatError& e) {
    // A refused file; the message must still name it.
    if (std::strstr(e.what(), "fuzz.safetensors") == nullptr) Broken(e.what(), nullptr);
  }
  return 0;
}
