// hiq/base/sha256.h - SHA-256 digests (FIPS 180-4) of bytes and files, as lowercase hex.
//
// Used for provenance: the fingerprints of the model, tokenizer, text and config that every
// stage writes next to its results, and that --resume compares. A plain scalar implementation:
// hashing is never on a hot path (the largest input is a model file read once per run).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace hiq {

// Incremental SHA-256. Owns 104 bytes of state; not thread-safe (one object per stream).
// Update() may be called any number of times; HexDigest() finishes the stream and returns the
// digest; afterwards the object is reset and can hash a new stream.
class Sha256 {
 public:
  Sha256() { Reset(); }
  void Update(const void* data, size_t size);
  void Update(std::string_view bytes) { Update(bytes.data(), bytes.size()); }
  // 64 lowercase hex characters; resets the object.
  std::string HexDigest();

 private:
  void Reset();
  void Compress(const uint8_t* block);  // one 64-byte block into state_

  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_;  // a partial block waiting for more input
  size_t buffer_size_ = 0;
  uint64_t total_bytes_ = 0;
};

// SHA-256 of `bytes` as 64 lowercase hex characters.
std::string Sha256Hex(std::string_view bytes);

// SHA-256 of a file's contents, streamed in 1 MiB pieces (a file of any size).
// Throws IoError naming the file if it cannot be opened or read.
std::string Sha256HexOfFile(const std::filesystem::path& file);

}  // namespace hiq
