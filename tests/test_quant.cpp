// Tests for hiq/quant/quant.h: the quantizer's definition and bounds, _ref vs fast kernels,
// candidates, channel scores, top-k channels, HighCount and the bit count (including docs/BITS.md's
// numbers).
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "hiq/base/error.h"   // ConfigError, FormatError
#include "hiq/base/fp16.h"    // RoundToFp16
#include "hiq/base/rng.h"     // RandomStream
#include "hiq/quant/quant.h"  // the module under test
#include "test_util.h"        // SourceDir, EXPECT_THROW_WITH, EXPECT_THROW_MSG

namespace hiq {
namespace {

// |x - Q(x)| may exceed scale / 2 only by the rounding of x / scale in float.
constexpr float kBoundRelSlack = 1e-6f;
constexpr double kScoreTol = 1e-12;

std::vector<float> RandomMatrix(int64_t n_out, int64_t n_in, uint64_t seed, float sigma = 0.02f) {
  RandomStream rng(seed, "test_quant");
  std::vector<float> w(static_cast<size_t>(n_out * n_in));
  for (float& v : w) v = sigma * static_cast<float>(rng.Normal());
  return w;
}

// Every FP16 value >= 0 that is finite, decoded independently of hiq/base/fp16.h.
std::vector<float> AllNonNegativeHalves() {
  std::vector<float> v;
  for (int e = 0; e < 31; ++e) {
    for (int m = 0; m < 1024; ++m) {
      v.push_back(e == 0 ? std::ldexp(static_cast<float>(m), -24)
                         : std::ldexp(1.0f + static_cast<float>(m) / 1024.0f, e - 15));
    }
  }
  return v;
}

TEST(ChooseGroupParams, ScaleIsFp16RoundedUpAndZeroFitsInBits) {
  RandomStream rng(7, "test_quant");
  // Widths from 1e-9 to 4 reach FP16's subnormal scales as well as its normal ones.
  auto log_width = [&] { return static_cast<float>(-9.0 + 9.6 * rng.Uniform01()); };
  auto offset = [&] { return static_cast<float>(-1.0 + 1.2 * rng.Uniform01()); };
  const std::vector<float> halves = AllNonNegativeHalves();
  for (int t = 0; t < 20000; ++t) {
    const int bits = 1 + t % 8;
    const float width = std::pow(10.0f, log_width());
    const float x_min = width * offset(), x_max = x_min + width;
    const GroupParams p = ChooseGroupParams(x_min, x_max, bits);
    const float qmax = static_cast<float>((1 << bits) - 1);
    const float lo = std::min(x_min, 0.0f), hi = std::max(x_max, 0.0f);
    // The smallest FP16 value >= (hi - lo) / qmax (never 0: the smallest subnormal at least).
    const float step = (hi - lo) / qmax;
    const float want = *std::lower_bound(halves.begin() + 1, halves.end(), step);
    ASSERT_EQ(p.scale, want) << "bits " << bits << " range [" << lo << ", " << hi << "]";
    ASSERT_GE(p.zero, 0);
    ASSERT_LE(p.zero, (1 << bits) - 1);
  }
}

TEST(ChooseGroupParams, ConstantGroupsReproduceTheirFp16Value) {
  for (const float c : {0.0f, -0.0f, 0.5f, -0.75f, 3.0f, -1024.0f, 0x1p-24f}) {
    const GroupParams p = ChooseGroupParams(c, c, 2);
    const float code = std::nearbyint(c / p.scale) + static_cast<float>(p.zero);
    EXPECT_EQ((code - static_cast<float>(p.zero)) * p.scale, c) << c;
  }
  const GroupParams p = ChooseGroupParams(0.1f, 0.1f, 3);  // not an FP16 value
  EXPECT_EQ(p.scale, RoundToFp16(0.1f));
  EXPECT_EQ(p.zero, 0);
}

TEST(ChooseGroupParams, RejectsBadBitsClipAndRangesBeyondFp16) {
  EXPECT_THROW_MSG(ChooseGroupParams(-1, 1, 9), ConfigError,
                   "ChooseGroupParams: bits = 9, expected an integer width in 1..8");
  EXPECT_THROW_MSG(ChooseGroupParams(-1, 1, 2, GroupClip{1.5f, 1.0f}), ConfigError,
                   "ChooseGroupParams: clip factors (max 1.5, min 1), expected both in [0, 1]");
  EXPECT_THROW_WITH(ChooseGroupParams(-1, 1, 2, GroupClip{NAN, 1.0f}), ConfigError,
                    "expected both in [0, 1]");
  EXPECT_THROW_WITH(ChooseGroupParams(-1e5f, 1e5f, 1), FormatError,
                    "FP16 scales stop at 65504; HINT: weights must satisfy |w| <= 32752");
}

TEST(ChooseGroupParams, ClippingShrinksTheRange) {
  const GroupParams full = ChooseGroupParams(-1.0f, 2.0f, 2);
  const GroupParams clipped = ChooseGroupParams(-1.0f, 2.0f, 2, GroupClip{0.5f, 1.0f});
  EXPECT_EQ(full.scale, 1.0f);              // (2 - -1) / 3
  EXPECT_EQ(clipped.scale, 0.6669921875f);  // (1 - -1) / 3 rounded up to FP16
  EXPECT_LT(clipped.scale, full.scale);
}

// One row segment through both kernels; every output must agree bit for bit.
void ExpectKernelsAgree(const std::vector<float>& x, int64_t g, int bits, const GroupClip* clip) {
  const int64_t n = static_cast<int64_t>(x.size());
  const int64_t n_groups = GroupCount(n, g);
  std::vector<float> y_ref(n), y_fast(n);
  std::vector<uint8_t> c_ref(n), c_fast(n);
  std::vector<GroupParams> p_ref(n_groups), p_fast(n_groups);
  FakeQuantizeRowGroupsRef(x.data(), n, g, bits, clip, y_ref.data(), c_ref.data(), p_ref.data());
  FakeQuantizeRowGroups(x.data(), n, g, bits, clip, y_fast.data(), c_fast.data(), p_fast.data());
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(std::bit_cast<uint32_t>(y_ref[i]), std::bit_cast<uint32_t>(y_fast[i]))
        << "element " << i << " n=" << n << " g=" << g << " bits=" << bits;
    ASSERT_EQ(c_ref[i], c_fast[i]) << "element " << i;
  }
  for (int64_t k = 0; k < n_groups; ++k) {
    ASSERT_EQ(p_ref[k].scale, p_fast[k].scale) << "group " << k;
    ASSERT_EQ(p_ref[k].zero, p_fast[k].zero) << "group " << k;
  }
  // Without codes/params the fast path takes its other loop; y must not change.
  std::vector<float> y_plain(n);
  FakeQuantizeRowGroups(x.data(), n, g, bits, clip, y_plain.data(), nullptr, nullptr);
  ASSERT_EQ(y_plain, y_fast);
}

TEST(FakeQuantizeRowGroups, FastPathMatchesReferenceBitForBit) {
  RandomStream rng(11, "test_quant");
  auto factor = [&] { return static_cast<float>(0.3 + 0.7 * rng.Uniform01()); };
  for (const int64_t n : {1, 5, 16, 17, 100, 640, 4096}) {
    std::vector<float> x = RandomMatrix(1, n, static_cast<uint32_t>(n));
    // Repeated values, negative zeros and a constant run stress the edge cases.
    for (int64_t i = 0; i < n; i += 7) x[i] = 0.005f * static_cast<float>(i % 5) + 0.0025f;
    for (int64_t i = 3; i < n; i += 11) x[i] = -0.0f;
    for (int64_t i = n / 2; i < std::min(n, n / 2 + 40); ++i) x[i] = 0.0125f;
    for (const int64_t g : {0, 1, 7, 32, 64, 128, 5000}) {
      for (int bits = 1; bits <= 8; ++bits) {
        ExpectKernelsAgree(x, g, bits, nullptr);
        std::vector<GroupClip> clip(GroupCount(n, g));
        for (GroupClip& c : clip) c = GroupClip{factor(), factor()};
        ExpectKernelsAgree(x, g, bits, clip.data());
      }
    }
  }
}

TEST(FakeQuantizeRowGroups, ErrorWithinHalfScaleAndCodesInRange) {
  const int64_t n = 1000;
  const std::vector<float> x = RandomMatrix(1, n, 3, 1.0f);
  for (const int64_t g : {0, 32, 64, 333}) {
    for (int bits = 1; bits <= 8; ++bits) {
      std::vector<float> y(n);
      std::vector<uint8_t> codes(n);
      std::vector<GroupParams> params(GroupCount(n, g));
      FakeQuantizeRowGroupsRef(x.data(), n, g, bits, nullptr, y.data(), codes.data(),
                               params.data());
      for (int64_t i = 0; i < n; ++i) {
        const GroupParams& p = params[g == 0 ? 0 : i / g];
        ASSERT_LE(codes[i], (1 << bits) - 1);
        ASSERT_EQ(y[i], static_cast<float>(codes[i] - p.zero) * p.scale);
        ASSERT_LE(std::fabs(x[i] - y[i]), p.scale / 2 * (1 + kBoundRelSlack))
            << "element " << i << " g=" << g << " bits=" << bits;
      }
    }
  }
}

TEST(FakeQuantizeRowGroups, ConstantGroupsAreExact) {
  // Groups of 4: constant 0, 0.3125, -2.5 (FP16 values), then a constant last group of 2.
  const std::vector<float> x = {0,       0,     0,     0,     0.3125f, 0.3125f, 0.3125f,
                                0.3125f, -2.5f, -2.5f, -2.5f, -2.5f,   7,       7};
  for (int bits = 1; bits <= 8; ++bits) {
    std::vector<float> y(x.size());
    FakeQuantizeRowGroups(x.data(), static_cast<int64_t>(x.size()), 4, bits, nullptr, y.data(),
                          nullptr, nullptr);
    EXPECT_EQ(y, x) << "bits=" << bits;
  }
}

TEST(FakeQuantizeRowGroups, TiesRoundHalfToEven) {
  // lo = -1, hi = 2 at 2 bits: scale 1, zero 1. 0.5 and -0.5 fall on ties and round to 0.
  const std::vector<float> x = {-1.0f, 2.0f, 0.5f, 1.5f, -0.5f};
  std::vector<float> y(x.size());
  std::vector<uint8_t> codes(x.size());
  GroupParams p;
  FakeQuantizeRowGroupsRef(x.data(), 5, 0, 2, nullptr, y.data(), codes.data(), &p);
  EXPECT_EQ(p.scale, 1.0f);
  EXPECT_EQ(p.zero, 1);
  EXPECT_EQ(codes, (std::vector<uint8_t>{0, 3, 1, 3, 1}));
  EXPECT_EQ(y, (std::vector<float>{-1.0f, 2.0f, 0.0f, 2.0f, 0.0f}));
}

// Per element an extra bit can move a value off a grid point, but over a row of hundreds of
// values the squared error must fall: this catches a bit width that is ignored or misapplied.
TEST(FakeQuantizeRowGroups, MoreBitsNeverIncreaseRowError) {
  const int64_t n_out = 16, n_in = 512;
  const std::vector<float> w = RandomMatrix(n_out, n_in, 5);
  for (const int64_t g : {0, 64}) {
    for (int64_t r = 0; r < n_out; ++r) {
      const float* row = w.data() + r * n_in;
      double previous = INFINITY;
      for (int bits = 1; bits <= 8; ++bits) {
        std::vector<float> y(n_in);
        FakeQuantizeRowGroups(row, n_in, g, bits, nullptr, y.data(), nullptr, nullptr);
        double sse = 0;
        for (int64_t j = 0; j < n_in; ++j) sse += std::pow(double(row[j]) - double(y[j]), 2);
        EXPECT_LT(sse, previous) << "row " << r << " g=" << g << " bits=" << bits;
        previous = sse;
      }
    }
  }
}

TEST(FakeQuantizeRowGroups, RejectsBadArguments) {
  float x = 1, y;
  EXPECT_THROW_MSG(FakeQuantizeRowGroups(&x, 1, 0, 0, nullptr, &y, nullptr, nullptr), ConfigError,
                   "FakeQuantizeRowGroups: bits = 0, expected an integer width in 1..8");
  EXPECT_THROW_MSG(FakeQuantizeRowGroupsRef(&x, 1, -2, 2, nullptr, &y, nullptr, nullptr),
                   ConfigError,
                   "FakeQuantizeRowGroupsRef: n = 1, group_size = -2, expected both >= 0");
}

// The candidate assembled independently: gather, run the _ref kernel, scatter.
std::vector<float> CandidateByHand(const std::vector<float>& w, int64_t n_out, int64_t n_in,
                                   const std::vector<int32_t>& high, const QuantSpec& spec) {
  std::vector<float> out(w.size());
  const std::set<int32_t> high_set(high.begin(), high.end());
  for (int64_t r = 0; r < n_out; ++r) {
    std::vector<float> low_x, high_x;
    std::vector<int32_t> low_cols;
    for (int32_t j = 0; j < n_in; ++j) {
      if (high_set.count(j)) {
        high_x.push_back(w[r * n_in + j]);
      } else {
        low_x.push_back(w[r * n_in + j]);
        low_cols.push_back(j);
      }
    }
    std::vector<float> low_y(low_x.size()), high_y(high_x.size());
    FakeQuantizeRowGroupsRef(low_x.data(), int64_t(low_x.size()), spec.group_size, spec.bits_low,
                             nullptr, low_y.data(), nullptr, nullptr);
    if (spec.high_fp16()) {
      for (size_t k = 0; k < high_x.size(); ++k) high_y[k] = RoundToFp16(high_x[k]);
    } else {
      FakeQuantizeRowGroupsRef(high_x.data(), int64_t(high_x.size()), 0, spec.bits_high, nullptr,
                               high_y.data(), nullptr, nullptr);
    }
    for (size_t k = 0; k < low_cols.size(); ++k) out[r * n_in + low_cols[k]] = low_y[k];
    for (size_t k = 0; k < high.size(); ++k) out[r * n_in + high[k]] = high_y[k];
  }
  return out;
}

TEST(QuantizeCandidate, RatioZeroIsThePlainLowBitQuantizer) {
  const int64_t n_out = 24, n_in = 200;
  const std::vector<float> w = RandomMatrix(n_out, n_in, 21);
  const QuantSpec spec{2, 3, 64};
  std::vector<float> got(w.size());
  QuantizeCandidate(w.data(), n_out, n_in, {}, spec, got.data());
  for (int64_t r = 0; r < n_out; ++r) {
    std::vector<float> want(n_in);
    FakeQuantizeRowGroupsRef(w.data() + r * n_in, n_in, 64, 2, nullptr, want.data(), nullptr,
                             nullptr);
    ASSERT_TRUE(std::equal(want.begin(), want.end(), got.begin() + r * n_in)) << "row " << r;
  }
}

TEST(QuantizeCandidate, HighColumnsUseHighBitsAndLowGroupsFollowRemainingColumns) {
  const int64_t n_out = 32, n_in = 300;
  const std::vector<float> w = RandomMatrix(n_out, n_in, 31);
  std::vector<double> scores(n_in);
  for (int64_t j = 0; j < n_in; ++j) scores[j] = std::sin(0.37 * double(j));
  const std::vector<int32_t> high = TopChannels(scores, HighCount(0.10, n_in));
  for (const QuantSpec spec : {QuantSpec{2, 3, 64}, QuantSpec{3, 4, 0}, QuantSpec{2, 16, 32}}) {
    std::vector<float> got(w.size());
    QuantizeCandidate(w.data(), n_out, n_in, high, spec, got.data());
    EXPECT_EQ(got, CandidateByHand(w, n_out, n_in, high, spec)) << "bits_high " << spec.bits_high;
    if (spec.high_fp16()) continue;
    for (int64_t r = 0; r < n_out; ++r) {  // one b_H grid per row over the high columns
      std::set<float> levels;
      for (const int32_t j : high) levels.insert(got[r * n_in + j]);
      EXPECT_LE(levels.size(), size_t{1} << spec.bits_high) << "row " << r;
    }
  }
}

TEST(QuantizeCandidate, LowColumnRunsOfEveryLengthAreGatheredAndScattered) {
  // High columns separated by 0, 1, 2, ..., 40 low columns: the copy of each run takes a
  // different path through whole vectors and 8/4/2/1-float chunks.
  std::vector<int32_t> high;
  int32_t col = 0;
  for (int32_t gap = 0; gap <= 40; ++gap) {
    high.push_back(col);
    col += gap + 1;
  }
  const int64_t n_out = 3, n_in = col + 5;
  const std::vector<float> w = RandomMatrix(n_out, n_in, 51);
  const QuantSpec spec{3, 4, 16};
  std::vector<float> got(w.size());
  QuantizeCandidate(w.data(), n_out, n_in, high, spec, got.data());
  EXPECT_EQ(got, CandidateByHand(w, n_out, n_in, high, spec));
}

TEST(QuantizeCandidate, GroupsAreCutAfterRemovingHighColumns) {
  // Columns 1 and 4 are high; low columns {0, 2, 3, 5} make groups {0, 2} and {3, 5}, each
  // constant, hence exact. Grouping by original position ({0, 1}, {2, 3}, ...) would mix values.
  const std::vector<float> w = {0.25f, 900.0f, 0.25f, -0.375f, -3.0f, -0.375f};
  const std::vector<int32_t> high = {1, 4};
  std::vector<float> got(6);
  QuantizeCandidate(w.data(), 1, 6, high, QuantSpec{2, 3, 2}, got.data());
  EXPECT_EQ(got[0], 0.25f);
  EXPECT_EQ(got[2], 0.25f);
  EXPECT_EQ(got[3], -0.375f);
  EXPECT_EQ(got[5], -0.375f);
}

TEST(QuantizeCandidate, InPlaceEqualsOutOfPlace) {
  const int64_t n_out = 8, n_in = 96;
  std::vector<float> w = RandomMatrix(n_out, n_in, 41);
  const std::vector<int32_t> high = {0, 5, 50, 95};
  for (const std::vector<int32_t>& cols : {high, std::vector<int32_t>{}}) {
    std::vector<float> out(w.size()), in_place = w;
    QuantizeCandidate(w.data(), n_out, n_in, cols, QuantSpec{2, 3, 32}, out.data());
    QuantizeCandidate(in_place.data(), n_out, n_in, cols, QuantSpec{2, 3, 32}, in_place.data());
    EXPECT_EQ(in_place, out);
  }
}

TEST(QuantizeCandidate, RejectsBadColumnsWeightsAndSpecs) {
  std::vector<float> w(2 * 8, 0.5f), out(w.size());
  const std::vector<int32_t> dup = {1, 3, 3}, outside = {2, 8};
  EXPECT_THROW_MSG(QuantizeCandidate(w.data(), 2, 8, dup, QuantSpec{}, out.data()), FormatError,
                   "QuantizeLayer: high_cols[2] = 3 does not exceed high_cols[1] = 3, "
                   "expected strictly increasing column indices");
  EXPECT_THROW_MSG(QuantizeCandidate(w.data(), 2, 8, outside, QuantSpec{}, out.data()), FormatError,
                   "QuantizeLayer: high_cols[1] = 8 is outside [0, 8)");
  EXPECT_THROW_MSG(QuantizeCandidate(w.data(), 2, 8, {}, QuantSpec{2, 12, 64}, out.data()),
                   ConfigError,
                   "QuantSpec.bits_high = 12, expected 1..8, or 16 to keep high-impact channels "
                   "in FP16");
  w[1 * 8 + 6] = NAN;
  EXPECT_THROW_MSG(QuantizeCandidate(w.data(), 2, 8, {}, QuantSpec{}, out.data()), FormatError,
                   "QuantizeLayer: weight (row 1, column 6) is nan, expected a finite value "
                   "with |w| <= 32752");
  w[1 * 8 + 6] = 40000.0f;
  EXPECT_THROW_WITH(QuantizeCandidate(w.data(), 2, 8, {}, QuantSpec{}, out.data()), FormatError,
                    "weight (row 1, column 6) is 40000");
}

// The stored form: every element of a layer dequantizes to what the candidate weight holds, the
// arrays count exactly LayerBits, and a damaged array is refused by name.
TEST(QuantizedLayer, DequantizedStoredFormIsTheCandidateAndCountsLayerBits) {
  const int64_t n_out = 24, n_in = 200;
  const std::vector<float> w = RandomMatrix(n_out, n_in, 77);
  std::vector<double> scores(n_in);
  for (int64_t j = 0; j < n_in; ++j) scores[j] = std::cos(0.11 * double(j));
  for (const int64_t n_high : {int64_t{0}, int64_t{1}, int64_t{20}, n_in}) {
    const std::vector<int32_t> high = TopChannels(scores, n_high);
    for (const QuantSpec spec :
         {QuantSpec{2, 3, 64}, QuantSpec{3, 4, 0}, QuantSpec{2, 16, 32}, QuantSpec{1, 8, 7}}) {
      const QuantizedLayer q = QuantizeLayer(w.data(), n_out, n_in, high, spec);
      ValidateQuantizedLayer(q, "test");
      EXPECT_EQ(StoredBits(q), LayerBits(n_out, n_in, n_high, spec))
          << "n_high " << n_high << " bits_high " << spec.bits_high;
      std::vector<float> deq(w.size());
      Dequantize(q, deq.data());
      EXPECT_EQ(deq, CandidateByHand(w, n_out, n_in, high, spec)) << "n_high " << n_high;
    }
  }
}

TEST(QuantizedLayer, ClippingNarrowsTheLowGridOnly) {
  const int64_t n_out = 4, n_in = 64;
  const std::vector<float> w = RandomMatrix(n_out, n_in, 5);
  const std::vector<int32_t> high = {3, 40};
  const QuantSpec spec{2, 3, 32};
  const int64_t n_groups = GroupCount(n_in - 2, spec.group_size);
  std::vector<GroupClip> low(static_cast<size_t>(n_out * n_groups), GroupClip{0.5f, 0.5f});
  const QuantizedLayer plain = QuantizeLayer(w.data(), n_out, n_in, high, spec);
  const QuantizedLayer clipped = QuantizeLayer(w.data(), n_out, n_in, high, spec, {low.data()});
  for (size_t k = 0; k < plain.low_params.size(); ++k) {
    EXPECT_LT(clipped.low_params[k].scale, plain.low_params[k].scale) << "group " << k;
  }
  EXPECT_EQ(clipped.high_codes, plain.high_codes);
}

TEST(QuantizedLayer, ValidateNamesTheDamagedArray) {
  const std::vector<float> w = RandomMatrix(2, 16, 9);
  const std::vector<int32_t> high = {5};
  QuantizedLayer q = QuantizeLayer(w.data(), 2, 16, high, QuantSpec{2, 3, 8});
  QuantizedLayer bad = q;
  bad.low_codes[4] = 4;
  EXPECT_THROW_MSG(ValidateQuantizedLayer(bad, "layer x"), FormatError,
                   "layer x: low_codes[4] = 4, expected < 2^2");
  bad = q;
  bad.high_params.pop_back();
  EXPECT_THROW_MSG(ValidateQuantizedLayer(bad, "layer x"), FormatError,
                   "layer x: high_params holds 1 elements, expected 2");
  bad = q;
  bad.low_params[1].scale = 0.1f;  // not an FP16 value
  EXPECT_THROW_WITH(ValidateQuantizedLayer(bad, "layer x"), FormatError,
                    "layer x: low_params[1] has scale 0.1");
}

TEST(ChannelScores, HandExample) {
  // Row 0: lo -1, hi 2 -> scale 1, zero 1: 0.5 -> 0 and 1.5 -> 2, both off by 0.5.
  // Row 1: lo -2, hi 4 -> scale 2, zero 1: 1 -> 0 and 3 -> 4, both off by 1.
  const std::vector<float> w = {-1, 2, 0.5f, 1.5f, -2, 4, 1, 3};
  const std::vector<float> f = {1, 2, 3, 4, 10, 20, 30, 40};
  const QuantSpec spec{2, 3, 0};
  EXPECT_EQ(ChannelScores(f.data(), nullptr, 2, 4, ScoreKind::kFisher, spec),
            (std::vector<double>{11, 22, 33, 44}));
  const std::vector<double> impact =
      ChannelScores(f.data(), w.data(), 2, 4, ScoreKind::kFisherImpact, spec);
  const std::vector<double> want = {0, 0, 3 * 0.25 + 30 * 1.0, 4 * 0.25 + 40 * 1.0};
  for (int j = 0; j < 4; ++j) EXPECT_NEAR(impact[j], want[j], kScoreTol) << "column " << j;
}

TEST(ChannelScores, RejectsNegativeOrNonFiniteFisher) {
  const std::vector<float> w(6, 0.1f);
  std::vector<float> f(6, 1.0f);
  f[4] = -1.0f;
  EXPECT_THROW_MSG(ChannelScores(f.data(), w.data(), 2, 3, ScoreKind::kFisher, QuantSpec{}),
                   FormatError,
                   "ChannelScores: Fisher (row 1, column 1) is -1, expected a finite value >= 0 "
                   "(a sum of squared gradients)");
  f[4] = INFINITY;
  EXPECT_THROW_WITH(ChannelScores(f.data(), w.data(), 2, 3, ScoreKind::kFisher, QuantSpec{}),
                    FormatError, "Fisher (row 1, column 1) is inf");
}

TEST(TopChannels, TiesGoToTheLowerIndexAndResultIsSorted) {
  const std::vector<double> scores = {1, 3, 3, 2, 3, -1};
  EXPECT_EQ(TopChannels(scores, 0), (std::vector<int32_t>{}));
  EXPECT_EQ(TopChannels(scores, 2), (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(TopChannels(scores, 3), (std::vector<int32_t>{1, 2, 4}));
  EXPECT_EQ(TopChannels(scores, 4), (std::vector<int32_t>{1, 2, 3, 4}));
  EXPECT_EQ(TopChannels(scores, 6), (std::vector<int32_t>{0, 1, 2, 3, 4, 5}));
}

TEST(TopChannels, SetsForIncreasingRatiosAreNested) {
  const int64_t n_in = 640;
  RandomStream rng(9, "test_quant");
  std::vector<double> scores(n_in);
  for (double& s : scores) s = static_cast<double>(rng.UniformInt(21));  // 0..20: many ties
  std::vector<int32_t> previous;
  for (const double ratio : {0.0, 0.02, 0.05, 0.10, 0.15, 0.20, 1.0}) {
    const std::vector<int32_t> top = TopChannels(scores, HighCount(ratio, n_in));
    ASSERT_EQ(static_cast<int64_t>(top.size()), HighCount(ratio, n_in));
    ASSERT_TRUE(std::is_sorted(top.begin(), top.end()));
    ASSERT_TRUE(std::includes(top.begin(), top.end(), previous.begin(), previous.end()))
        << "ratio " << ratio;
    // Every kept channel scores at least as high as every dropped one.
    const std::set<int32_t> kept(top.begin(), top.end());
    double min_kept = INFINITY, max_dropped = -INFINITY;
    for (int32_t j = 0; j < n_in; ++j) {
      if (kept.count(j)) {
        min_kept = std::min(min_kept, scores[j]);
      } else {
        max_dropped = std::max(max_dropped, scores[j]);
      }
    }
    ASSERT_GE(min_kept, max_dropped);
    previous = top;
  }
}

TEST(TopChannels, RejectsBadKAndNanScores) {
  const std::vector<double> scores = {1, NAN, 2};
  EXPECT_THROW_MSG(TopChannels(scores, 4), ConfigError,
                   "TopChannels: k = 4, expected 0..the number of channels, 3");
  EXPECT_THROW_MSG(TopChannels(scores, 1), FormatError,
                   "TopChannels: score of channel 1 is nan, expected a number");
}

TEST(HighCount, CeilingRobustToRatioRounding) {
  EXPECT_EQ(HighCount(0.1, 640), 64);
  EXPECT_EQ(HighCount(0.07, 100), 7);  // 0.07 * 100 = 7.000000000000001 in double
  EXPECT_EQ(HighCount(0.05, 4096), 205);
  EXPECT_EQ(HighCount(0.02, 4096), 82);
  EXPECT_EQ(HighCount(0.10, 64), 7);
  EXPECT_EQ(HighCount(0.0, 4096), 0);
  EXPECT_EQ(HighCount(1.0, 4096), 4096);
  EXPECT_EQ(HighCount(0.5, 0), 0);
  EXPECT_EQ(HighCount(1e-6, 4096), 1);
  EXPECT_THROW_MSG(HighCount(1.5, 64), ConfigError,
                   "HighCount: ratio = 1.5 for 64 channels, expected a ratio in [0, 1] and a "
                   "channel count >= 0");
  EXPECT_THROW_WITH(HighCount(NAN, 64), ConfigError, "ratio = nan");
}

TEST(LayerBits, HandComputedSmallCases) {
  // n_out 2, n_in 10, n_high 3, b_L 2, b_H 3, g 4: n_low 7 -> 2 groups per row.
  const LayerBitsTerms t = LayerBitsBreakdown(2, 10, 3, QuantSpec{2, 3, 4});
  EXPECT_EQ(t.low_codes, 2 * 7 * 2);
  EXPECT_EQ(t.low_params, 2 * 2 * (16 + 2));
  EXPECT_EQ(t.high_codes, 2 * 3 * 3);
  EXPECT_EQ(t.high_params, 2 * (16 + 3));
  EXPECT_EQ(t.indices, 3 * 16);
  EXPECT_EQ(LayerBits(2, 10, 3, QuantSpec{2, 3, 4}), 204);
  EXPECT_EQ(LayerBits(2, 10, 3, QuantSpec{2, 3, 0}), 204 - 2 * 18);        // one low group per row
  EXPECT_EQ(LayerBits(2, 10, 3, QuantSpec{2, 16, 4}), 28 + 72 + 96 + 48);  // FP16, no scale
  EXPECT_EQ(LayerBits(2, 10, 0, QuantSpec{2, 3, 4}), 2 * 10 * 2 + 2 * 3 * 18);  // no high part
  EXPECT_EQ(LayerBits(2, 10, 10, QuantSpec{2, 3, 4}), 2 * 10 * 3 + 2 * 19 + 10 * 16);
  EXPECT_EQ(LayerBits(1, 70000, 1, QuantSpec{2, 3, 0}), 69999 * 2 + 18 + 3 + 19 + 32);
  EXPECT_EQ(IndexBits(65536), 16);
  EXPECT_EQ(IndexBits(65537), 32);
}

TEST(LayerBits, AverageIsTotalBitsOverTotalWeights) {
  const QuantSpec spec{2, 3, 4};
  const std::vector<LayerSize> layers = {{2, 10, 3}, {4, 8, 0}};
  const double want = double(204 + LayerBits(4, 8, 0, spec)) / double(20 + 32);
  EXPECT_DOUBLE_EQ(AverageBits(layers, spec), want);
  EXPECT_THROW_MSG(AverageBits({}, spec), ConfigError,
                   "AverageBits: 0 layers hold no weights, expected at least one weight");
  EXPECT_THROW_MSG(LayerBits(2, 10, 11, spec), ConfigError,
                   "LayerBits: n_out = 2, n_in = 10, n_high = 11, expected n_out, n_in >= 0 and "
                   "0 <= n_high <= n_in");
}

// docs/BITS.md's worked examples are checked here so the doc cannot drift from the code. Each
// example starts with `<!-- bits-example key=value ... -->`, followed by a table whose rows are
// "| `term` | formula | value |". Every number in a formula must be one of the example's own
// quantities, and every value must equal what LayerBitsBreakdown computes.
TEST(BitsDoc, WorkedExamplesEqualLayerBits) {
  std::ifstream in(test::SourceDir() / "docs" / "BITS.md");
  ASSERT_TRUE(in) << "cannot open docs/BITS.md";
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  const std::regex header(R"(<!-- bits-example (.*) -->)"), kv(R"((\w+)=([0-9.]+))");
  const std::regex row(R"(^\| `(\w+)` \|([^|]*)\| *\**([0-9.,]+)\** *\|$)");
  const std::regex number(R"([0-9][0-9,]*(\.[0-9]+)?)");
  std::set<std::string> seen;
  for (size_t i = 0; i < lines.size(); ++i) {
    std::smatch m;
    if (!std::regex_search(lines[i], m, header)) continue;
    std::map<std::string, double> a;
    const std::string args = m[1];
    for (std::sregex_iterator it(args.begin(), args.end(), kv), end; it != end; ++it) {
      a[(*it)[1]] = std::stod((*it)[2]);
    }
    const QuantSpec spec{int(a["bits_low"]), int(a["bits_high"]), int64_t(a["group_size"])};
    const auto n_out = int64_t(a["n_out"]), n_in = int64_t(a["n_in"]);
    const int64_t n_high = HighCount(a["ratio"], n_in), n_low = n_in - n_high;
    const LayerBitsTerms t = LayerBitsBreakdown(n_out, n_in, n_high, spec);
    char average[32];
    std::snprintf(average, sizeof average, "%.4f", double(t.total()) / double(n_out * n_in));
    const std::map<std::string, std::string> want = {{"n_high", std::to_string(n_high)},
                                                     {"low_codes", std::to_string(t.low_codes)},
                                                     {"low_params", std::to_string(t.low_params)},
                                                     {"high_codes", std::to_string(t.high_codes)},
                                                     {"high_params", std::to_string(t.high_params)},
                                                     {"indices", std::to_string(t.indices)},
                                                     {"total", std::to_string(t.total())},
                                                     {"average", average}};
    const std::set<double> known = {double(n_out),
                                    double(n_in),
                                    double(n_high),
                                    double(n_low),
                                    double(GroupCount(n_low, spec.group_size)),
                                    double(spec.bits_low),
                                    double(spec.bits_high),
                                    double(spec.group_size),
                                    16.0,
                                    double(IndexBits(n_in)),
                                    a["ratio"],
                                    double(t.total()),
                                    double(n_out * n_in)};
    std::set<std::string> terms;
    for (size_t j = i + 1; j < lines.size() && !lines[j].empty() && lines[j][0] == '|'; ++j) {
      std::smatch r;
      if (!std::regex_match(lines[j], r, row)) continue;  // the table's head and rule
      const std::string term = r[1];
      std::string value = r[3];
      value.erase(std::remove(value.begin(), value.end(), ','), value.end());
      ASSERT_TRUE(want.count(term)) << "unknown term `" << term << "` in: " << lines[j];
      EXPECT_EQ(value, want.at(term)) << args << ": " << lines[j];
      const std::string formula = r[2];
      for (std::sregex_iterator it(formula.begin(), formula.end(), number), end; it != end; ++it) {
        std::string s = it->str();
        s.erase(std::remove(s.begin(), s.end(), ','), s.end());
        EXPECT_TRUE(known.count(std::stod(s))) << "number " << s << " in: " << lines[j];
      }
      terms.insert(term);
    }
    EXPECT_EQ(terms.size(), want.size()) << "example " << args << " lacks some terms";
    seen.insert(args);
  }
  EXPECT_TRUE(seen.count("n_out=4096 n_in=4096 bits_low=2 bits_high=3 group_size=64 ratio=0.05"));
  EXPECT_TRUE(seen.count("n_out=64 n_in=64 bits_low=2 bits_high=3 group_size=32 ratio=0.10"));
}

}  // namespace
}  // namespace hiq
