// Tests for hiq/base/fp16.h: every half decoded by the IEEE 754 definition and round-tripped,
// float -> half against a nearest-by-bisection oracle (ties to even, subnormals, overflow, NaN),
// bfloat16 both ways, and the FP16 roundings the quantizer's scales use.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "hiq/base/fp16.h"
#include "hiq/base/rng.h"  // RandomStream

namespace hiq {
namespace {

constexpr uint16_t kHalfInf = 0x7c00;
constexpr uint16_t kHalfMaxFinite = 0x7bff;
constexpr int kRandomFloats = 1000000;

bool IsHalfNan(uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0; }

// IEEE 754 binary16 by its definition, in double: the reference the bit tricks are checked
// against (and the compiler's _Float16 too, where the compiler has one: GCC 12 does, clang 14
// on x86 does not).
double HalfByFormula(uint16_t bits) {
  const int exp = (bits >> 10) & 0x1f, mant = bits & 0x3ff;
  const double sign = (bits & 0x8000) ? -1.0 : 1.0;
  if (exp == 0) return sign * std::ldexp(mant, -24);
  if (exp == 31) {
    return mant ? std::numeric_limits<double>::quiet_NaN()
                : sign * std::numeric_limits<double>::infinity();
  }
  return sign * std::ldexp(1024 + mant, exp - 25);
}

// The nearest half to f, ties to the even encoding, by bisection over the finite halves
// (0x0000..0x7bff increase with their bits); 65520 and beyond round to infinity.
uint16_t NearestHalf(float f) {
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  const double a = std::fabs(static_cast<double>(f));
  if (a >= 65520.0) return sign | kHalfInf;
  uint32_t lo = 0, hi = kHalfMaxFinite;
  while (lo < hi) {
    const uint32_t mid = (lo + hi + 1) / 2;
    if (HalfByFormula(static_cast<uint16_t>(mid)) <= a) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  if (lo == kHalfMaxFinite) return sign | kHalfMaxFinite;
  // 2a and below + above are exact in double, so the midpoint test is exact.
  const double twice = 2 * a;
  const double sum =
      HalfByFormula(static_cast<uint16_t>(lo)) + HalfByFormula(static_cast<uint16_t>(lo + 1));
  const bool up = twice > sum || (twice == sum && (lo & 1));
  return static_cast<uint16_t>(sign | (up ? lo + 1 : lo));
}

// The finite halves >= 0 in increasing order, as floats (by the formula, not by fp16.cpp).
std::vector<float> NonNegativeHalves() {
  std::vector<float> v;
  for (uint32_t bits = 0; bits <= kHalfMaxFinite; ++bits) {
    v.push_back(static_cast<float>(HalfByFormula(static_cast<uint16_t>(bits))));
  }
  return v;
}

TEST(F16, DecodesEveryBitPatternByTheIeeeDefinition) {
  for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
    const double want = HalfByFormula(static_cast<uint16_t>(bits));
    const float got = F16ToFloat(static_cast<uint16_t>(bits));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << std::hex << bits;
      continue;
    }
    EXPECT_EQ(static_cast<double>(got), want) << std::hex << bits;
    EXPECT_EQ(std::signbit(got), std::signbit(want)) << std::hex << bits;
#ifdef __FLT16_MAX__
    const float compiler = static_cast<float>(std::bit_cast<_Float16>(static_cast<uint16_t>(bits)));
    EXPECT_EQ(std::bit_cast<uint32_t>(got), std::bit_cast<uint32_t>(compiler)) << std::hex << bits;
#endif
  }
}

TEST(F16, EveryHalfRoundTripsThroughFloatExactly) {
  for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
    const auto h = static_cast<uint16_t>(bits);
    const float f = F16ToFloat(h);
    const uint16_t back = FloatToF16(f);
    if (IsHalfNan(h)) {
      // A quiet NaN comes back as itself; a signalling one comes back quiet, sign and payload
      // kept (F16ToFloat puts the payload in the float's top mantissa bits).
      ASSERT_EQ(back, h | 0x0200) << std::hex << bits;
    } else {
      ASSERT_EQ(back, h) << std::hex << bits;
      ASSERT_EQ(RoundToFp16(f), f) << std::hex << bits;
    }
  }
}

TEST(F16, EncodesToTheNearestHalfTiesToEven) {
  RandomStream rng(7, "test_fp16");
  std::vector<uint32_t> patterns = {0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u,
                                    0x477fe000u, 0x477fefffu, 0x477ff000u, 0x47800000u,
                                    0x33000000u, 0x33000001u, 0x33800000u, 0x387fc000u,
                                    0x387fe000u, 0x38800000u, 0x3f801000u, 0x3f803000u};
  for (int i = 0; i < kRandomFloats; ++i) patterns.push_back(static_cast<uint32_t>(rng.Next()));
  // Dense around the subnormal/normal boundary, where rounding carries between encodings.
  for (uint32_t x = 0x38000000u; x < 0x38900000u; x += 0x101u) patterns.push_back(x);
  for (uint32_t bits : patterns) {
    const float f = std::bit_cast<float>(bits);
    const uint16_t got = FloatToF16(f);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(F16ToFloat(got))) << std::hex << bits;
      continue;
    }
    ASSERT_EQ(got, NearestHalf(f)) << "float bits " << std::hex << bits;
#ifdef __FLT16_MAX__
    ASSERT_EQ(got, std::bit_cast<uint16_t>(static_cast<_Float16>(f))) << std::hex << bits;
#endif
  }
}

// Between every two neighbouring finite halves: the midpoint goes to the even one, the floats
// just above and below it to the nearer one; both signs.
TEST(F16, EveryMidpointRoundsToEvenAndItsNeighboursToTheNearer) {
  const std::vector<float> halves = NonNegativeHalves();
  for (size_t k = 0; k + 1 < halves.size(); ++k) {
    const float mid = (halves[k] + halves[k + 1]) / 2;  // exact in float
    const float even = (k % 2 == 0) ? halves[k] : halves[k + 1];
    ASSERT_EQ(RoundToFp16(mid), even) << "midpoint after half #" << k;
    ASSERT_EQ(RoundToFp16(-mid), -even) << "midpoint after half #" << k;
    ASSERT_EQ(RoundToFp16(std::nextafter(mid, 1e9f)), halves[k + 1]) << "above mid #" << k;
    ASSERT_EQ(RoundToFp16(std::nextafter(mid, 0.0f)), halves[k]) << "below mid #" << k;
  }
}

TEST(F16, SpecialValues) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(F16ToFloat(0x0001), std::ldexp(1.0f, -24));     // smallest subnormal
  EXPECT_EQ(F16ToFloat(0x03ff), std::ldexp(1023.0f, -24));  // largest subnormal
  EXPECT_EQ(F16ToFloat(0x0400), std::ldexp(1.0f, -14));     // smallest normal
  EXPECT_EQ(F16ToFloat(kHalfMaxFinite), kFp16Max);
  EXPECT_EQ(F16ToFloat(kHalfInf), kInf);
  EXPECT_EQ(F16ToFloat(0xfc00), -kInf);
  EXPECT_TRUE(std::signbit(F16ToFloat(0x8000)));
  EXPECT_EQ(F16ToFloat(0x0001), kFp16MinSubnormal);
  EXPECT_EQ(F16ToFloat(0x0400), kFp16MinNormal);
  // Overflow: 65520 is the midpoint between 65504 and the next (absent) half, 65536.
  EXPECT_EQ(FloatToF16(65519.0f), kHalfMaxFinite);
  EXPECT_EQ(FloatToF16(65520.0f), kHalfInf);  // the midpoint rounds to even: infinity
  EXPECT_EQ(FloatToF16(-65520.0f), 0xfc00);
  EXPECT_EQ(FloatToF16(std::numeric_limits<float>::max()), kHalfInf);
  EXPECT_EQ(FloatToF16(kInf), kHalfInf);
  EXPECT_EQ(FloatToF16(-kInf), 0xfc00);
  EXPECT_TRUE(std::isinf(RoundToFp16(65520.0f)));
  EXPECT_EQ(RoundToFp16(65519.0f), 65504.0f);
  // Ties to even in the normal range.
  EXPECT_EQ(FloatToF16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie -> even (1.0)
  EXPECT_EQ(FloatToF16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie -> even (up)
  // Subnormals and underflow: halves below 2^-14 are multiples of 2^-24.
  EXPECT_EQ(FloatToF16(std::ldexp(1.0f, -25)), 0x0000);   // tie -> even (zero)
  EXPECT_EQ(FloatToF16(-std::ldexp(1.0f, -25)), 0x8000);  // ... keeping the sign
  EXPECT_EQ(FloatToF16(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(FloatToF16(std::ldexp(3.0f, -25)), 0x0002);     // 1.5 units: tie -> even (up)
  EXPECT_EQ(FloatToF16(std::ldexp(1023.5f, -24)), 0x0400);  // carries into the smallest normal
  EXPECT_EQ(FloatToF16(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(RoundToFp16(0x1p-25f), 0.0f);
  EXPECT_EQ(RoundToFp16(0.1f), 0.0999755859375f);
  // NaN stays NaN, quiet, with its sign.
  const float qnan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(FloatToF16(qnan), 0x7e00);
  EXPECT_EQ(FloatToF16(-qnan), 0xfe00);
  EXPECT_TRUE(IsHalfNan(FloatToF16(std::bit_cast<float>(0x7f800001u))));  // payload below 13 bits
  EXPECT_TRUE(std::isnan(RoundToFp16(qnan)));
}

TEST(CeilToFp16, IsTheSmallestHalfAtOrAboveX) {
  const std::vector<float> halves = NonNegativeHalves();
  for (size_t k = 0; k < halves.size(); ++k) {
    ASSERT_EQ(CeilToFp16(halves[k]), halves[k]) << "half #" << k;
    if (k + 1 == halves.size()) break;
    // Just above a half, the midpoint and just below the next one all go up to the next one.
    const float mid = (halves[k] + halves[k + 1]) / 2;
    ASSERT_EQ(CeilToFp16(std::nextafter(halves[k], 1e9f)), halves[k + 1]) << "half #" << k;
    ASSERT_EQ(CeilToFp16(mid), halves[k + 1]) << "half #" << k;
    ASSERT_EQ(CeilToFp16(std::nextafter(halves[k + 1], 0.0f)), halves[k + 1]) << "half #" << k;
  }
  EXPECT_EQ(CeilToFp16(0.0f), 0.0f);
  EXPECT_EQ(CeilToFp16(std::numeric_limits<float>::denorm_min()), kFp16MinSubnormal);
}

TEST(BF16, IsTheTopHalfOfF32AndRoundsToNearestEven) {
  EXPECT_EQ(BF16ToFloat(0x3f80), 1.0f);
  EXPECT_EQ(FloatToBF16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);        // tie -> even
  EXPECT_EQ(FloatToBF16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);    // tie -> even (up)
  EXPECT_EQ(FloatToBF16(std::numeric_limits<float>::max()), 0x7f80);  // overflow -> inf
  EXPECT_EQ(FloatToBF16(-std::numeric_limits<float>::infinity()), 0xff80);
  EXPECT_TRUE(std::isnan(BF16ToFloat(FloatToBF16(std::numeric_limits<float>::quiet_NaN()))));
  // A NaN whose payload is only in the low half must not become infinity.
  EXPECT_TRUE(std::isnan(BF16ToFloat(FloatToBF16(std::bit_cast<float>(0x7f800001u)))));
  // Subnormal floats keep their top bits like any other.
  EXPECT_EQ(FloatToBF16(std::bit_cast<float>(0x00018000u)), 0x0002);  // tie -> even (up)
  for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
    const float f = BF16ToFloat(static_cast<uint16_t>(bits));
    EXPECT_EQ(std::bit_cast<uint32_t>(f), bits << 16);
    if (!std::isnan(f)) {
      EXPECT_EQ(FloatToBF16(f), bits);
    }
  }
}

}  // namespace
}  // namespace hiq
