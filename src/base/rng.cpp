// Seeded random streams (see hiq/base/rng.h).
#include "hiq/base/rng.h"

#include <cmath>

#include "hiq/base/error.h"  // HIQ_CHECK

namespace hiq {

uint64_t StreamSeed(uint64_t seed, std::string_view name, uint64_t index) {
  constexpr uint64_t kOffsetBasis = 0xcbf29ce484222325ULL;
  constexpr uint64_t kPrime = 0x100000001b3ULL;
  uint64_t h = kOffsetBasis;
  auto mix = [&](uint64_t v) {
    for (int i = 0; i < 8; ++i) h = (h ^ ((v >> (8 * i)) & 0xff)) * kPrime;
  };
  mix(seed);
  for (unsigned char c : name) h = (h ^ c) * kPrime;
  mix(index);
  return h;
}

uint64_t RandomStream::UniformInt(uint64_t n) {
  HIQ_CHECK(n >= 1);
  // 2^64 mod n, computed in 64 bits as (2^64 - n) mod n. The draws >= it form a whole number
  // of runs of n values, so their residues are exactly uniform.
  const uint64_t threshold = (0 - n) % n;
  for (;;) {
    const uint64_t r = Next();
    if (r >= threshold) return r % n;
  }
}

double RandomStream::Normal() {
  if (has_spare_normal_) {
    has_spare_normal_ = false;
    return spare_normal_;
  }
  double u, v, s;
  do {  // a uniform point in the unit disc, not at its centre (accepted with probability pi/4)
    u = 2.0 * Uniform01() - 1.0;
    v = 2.0 * Uniform01() - 1.0;
    s = u * u + v * v;
  } while (s >= 1.0 || s == 0.0);
  const double factor = std::sqrt(-2.0 * std::log(s) / s);
  spare_normal_ = v * factor;
  has_spare_normal_ = true;
  return u * factor;
}

}  // namespace hiq
