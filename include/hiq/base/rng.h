// hiq/base/rng.h - seeded random streams: every random number hiq draws comes from here.
//
// A stream is named by (seed, name[, index]): StreamSeed hashes the three (FNV-1a) and seeds a
// std::mt19937_64, whose output sequence the C++ standard fixes bit for bit. Everything drawn
// from it is computed here with our own arithmetic, never with the std:: distribution classes
// (whose output is implementation-defined): 53-bit uniform doubles, unbiased integers by
// rejection, standard normals by Marsaglia's polar method in double. So a stream is the same on
// every platform and compiler (normals up to the last bits of the C library's std::log), and
// it never depends on call order, rank count or thread count: give each independent consumer
// (a calibration set, a sequence, a tensor) its own name or index instead of sharing a stream.
//
// Thread-safety: a RandomStream is a plain value (about 2.5 KB of engine state), not safe to
// share between threads; independent streams may be used concurrently. StreamSeed is pure.
// Errors: none from input; UniformInt(0) is a caller bug and aborts through HIQ_CHECK.
#pragma once

#include <cstdint>
#include <random>
#include <string_view>

namespace hiq {

// FNV-1a (64-bit) over the 8 little-endian bytes of seed, the bytes of name, then the 8
// little-endian bytes of index: distinct (seed, name, index) give unrelated streams.
uint64_t StreamSeed(uint64_t seed, std::string_view name, uint64_t index = 0);

class RandomStream {
 public:
  // The stream named (seed, name, index): std::mt19937_64 seeded with StreamSeed(...).
  RandomStream(uint64_t seed, std::string_view name, uint64_t index = 0)
      : engine_(StreamSeed(seed, name, index)) {}

  // The next 64 raw bits of the engine.
  uint64_t Next() { return engine_(); }

  // Uniform on [0, 1): the top 53 bits of one Next(), times 2^-53 (every value a multiple of
  // 2^-53, exact in double).
  double Uniform01() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

  // Uniform on [0, n), n >= 1, without modulo bias: Next() % n, except that the draws below
  // 2^64 mod n (which would make small results more likely) are rejected and drawn again.
  // The rejection has probability below n / 2^64, so for any n hiq uses this is Next() % n.
  uint64_t UniformInt(uint64_t n);

  // Standard normal (mean 0, variance 1), Marsaglia's polar method in double: each accepted
  // pair of uniforms gives two values; the second is kept for the next call.
  double Normal();

 private:
  std::mt19937_64 engine_;
  double spare_normal_ = 0;
  bool has_spare_normal_ = false;
};

}  // namespace hiq
