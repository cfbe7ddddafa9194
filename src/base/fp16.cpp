// FP16 / BF16 conversions (see hiq/base/fp16.h). Integer arithmetic on the bit patterns, so the
// result never depends on the rounding mode, on flush-to-zero or on the compiler's _Float16;
// tests/test_fp16.cpp checks every half and the roundings against IEEE 754 by its definition.
#include "hiq/base/fp16.h"

#include <bit>
#include <cmath>

namespace hiq {

float F16ToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24, exact in float (mant < 2^10).
    const float magnitude = static_cast<float>(mant) * kFp16MinSubnormal;
    return std::bit_cast<float>(std::bit_cast<uint32_t>(magnitude) | sign);
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));  // inf / NaN
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));  // rebias 15 -> 127
}

uint16_t FloatToF16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7fffffffu;
  if (abs > 0x7f800000u) {  // NaN: keep it quiet and keep the top payload bits
    return static_cast<uint16_t>(sign | 0x7e00u | ((abs >> 13) & 0x3ffu));
  }
  if (abs >= 0x47800000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 2^16 (or inf)
  if (abs < 0x38800000u) {  // below 2^-14, the smallest normal half: subnormal or zero
    if (abs < 0x33000000u) return static_cast<uint16_t>(sign);  // <= 2^-25 rounds to 0
    // Value = m * 2^(e - 150); in units of 2^-24 that is m >> (126 - e), rounded to even.
    const uint32_t e = abs >> 23;
    const uint32_t m = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 14..24
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) ++q;  // may carry into the smallest normal
    return static_cast<uint16_t>(sign | q);
  }
  // Normal: rebias the exponent, round the 13 dropped mantissa bits to even. A carry runs into
  // the exponent, and from 65504 up to infinity, which is the IEEE result.
  uint32_t h = (((abs >> 23) - 112) << 10) | ((abs >> 13) & 0x3ffu);
  const uint32_t rem = abs & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

float BF16ToFloat(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

uint16_t FloatToBF16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  // A NaN whose payload is all in the low half would truncate to infinity: force the quiet bit.
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x0040u);
  const uint32_t rounded = x + 0x7fffu + ((x >> 16) & 1u);  // ties to even; overflow -> inf
  return static_cast<uint16_t>(rounded >> 16);
}

float RoundToFp16(float x) { return F16ToFloat(FloatToF16(x)); }

float CeilToFp16(float x) {
  // Below FP16's normal range its values are the multiples of 2^-24, and x * 2^24 is exact.
  if (x < kFp16MinNormal) return std::ceil(x * 0x1p24f) * kFp16MinSubnormal;
  // In the normal range: x with its float mantissa rounded up to 10 bits (a carry into the
  // exponent is still right).
  return std::bit_cast<float>((std::bit_cast<uint32_t>(x) + 0x1fffu) & ~0x1fffu);
}

}  // namespace hiq
