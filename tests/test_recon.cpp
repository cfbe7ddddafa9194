// Block reconstruction (LWC, AdaRound, the hybrid) on real stories260K blocks, and the gradients
// of LWC and AdaRound against central finite differences.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <tuple>

#include "hiq/base/error.h"  // NumericalError
#include "hiq/io/checkpoint.h"
#include "hiq/io/tokenizer.h"
#include "hiq/model/blas.h"  // ParallelRows, SetBlasThreads
#include "hiq/quant/adaround.h"
#include "hiq/quant/learn.h"
#include "hiq/quant/lwc.h"
#include "hiq/quant/recon.h"
#include "test_util.h"

namespace hiq {
namespace {

// Relative error allowed between a float backward and central differences (in double for LWC's
// surrogate; of the float forward, with a step of kRoundFdStep in V, for AdaRound).
constexpr double kGradRelTol = 1e-3;
constexpr double kLwcFdStep = 1e-5;
constexpr float kRoundFdStep = 1e-2f;
constexpr int64_t kSeqLen = 64;
constexpr int64_t kCalibSeqs = 32, kHeldoutSeqs = 16;
constexpr int64_t kSteps = 300;

std::vector<float> RandomVector(size_t n, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

double Sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// --- LWC ---------------------------------------------------------------------------------

// The function whose gradient the straight-through estimator is, written in double apart from
// lwc.cpp: around the logits (a0, b0) with rounding r_i = rne(x_i / s0), zero z and the clamp
// decisions of the forward frozen, w_q(a, b) = x + (r - x / s0) s(a, b) inside the clamp and
// (clamp(r + z) - z) s(a, b) outside it. Returns sum_i g_i w_q,i.
double LwcSurrogate(const Lwc& lwc, const LwcCache& at, const float* w, const float* g,
                    const std::vector<double>& a, const std::vector<double>& b) {
  const double qmax = (1 << lwc.bits) - 1;
  const ColumnPart& part = lwc.part;
  double sum = 0;
  for (int64_t r = 0; r < lwc.n_out; ++r) {
    for (int64_t k = 0; k < part.n_groups; ++k) {
      const size_t gi = static_cast<size_t>(r * part.n_groups + k);
      const double hi = std::max(Sigmoid(a[gi]) * static_cast<double>(lwc.x_max[gi]), 0.0);
      const double lo = std::min(Sigmoid(b[gi]) * static_cast<double>(lwc.x_min[gi]), 0.0);
      const double s = (hi - lo) / qmax;
      const double s0 = static_cast<double>(at.scale[gi]), z = static_cast<double>(at.zero[gi]);
      for (int64_t i = part.group_begin[k]; i < part.group_begin[k + 1]; ++i) {
        const int64_t idx = r * part.n_in + part.cols[i];
        const double x = static_cast<double>(w[idx]);
        const double rr = static_cast<double>(std::nearbyint(w[idx] / at.scale[gi]));
        const double q = rr + z;
        const double wq = (q >= 0 && q <= qmax) ? x + (rr - x / s0) * s
                                                : (std::min(std::max(q, 0.0), qmax) - z) * s;
        sum += static_cast<double>(g[idx]) * wq;
      }
    }
  }
  return sum;
}

TEST(Lwc, BackwardMatchesFiniteDifferencesOfTheStraightThroughSurrogate) {
  const int64_t n_out = 3, n_in = 11;
  const std::vector<int32_t> high = {2, 7};
  const std::vector<float> w = RandomVector(n_out * n_in, 1, 1.0f);
  const std::vector<float> g = RandomVector(n_out * n_in, 2, 1.0f);
  for (int bits : {2, 3}) {
    Lwc lwc = LwcInit(LowPart(n_in, high, 4), w.data(), n_out, bits);
    ASSERT_EQ(lwc.part.n_groups, 3);  // 9 low columns: 4 + 4 + 1
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> logit(-0.5f, 3.0f);  // factors 0.38 .. 0.95: clipping
    for (float& a : lwc.max_logit) a = logit(rng);
    for (float& b : lwc.min_logit) b = logit(rng);
    std::vector<float> wq(w.size(), 0.0f);
    LwcCache cache;
    LwcForward(lwc, w.data(), wq.data(), &cache);
    std::vector<float> da(lwc.max_logit.size()), db(da.size());
    LwcBackward(lwc, w.data(), cache, g.data(), da.data(), db.data());
    std::vector<double> a0(lwc.max_logit.begin(), lwc.max_logit.end());
    std::vector<double> b0(lwc.min_logit.begin(), lwc.min_logit.end());
    // At the point itself the surrogate is the forward.
    double at = 0;
    for (int64_t r = 0; r < n_out; ++r) {
      for (int32_t c : lwc.part.cols) {
        at += static_cast<double>(g[r * n_in + c]) * static_cast<double>(wq[r * n_in + c]);
      }
    }
    EXPECT_NEAR(LwcSurrogate(lwc, cache, w.data(), g.data(), a0, b0), at, 1e-5);
    for (size_t i = 0; i < a0.size(); ++i) {
      for (int which = 0; which < 2; ++which) {
        std::vector<double> ap = a0, am = a0, bp = b0, bm = b0;
        (which == 0 ? ap : bp)[i] += kLwcFdStep;
        (which == 0 ? am : bm)[i] -= kLwcFdStep;
        const double fd = (LwcSurrogate(lwc, cache, w.data(), g.data(), ap, bp) -
                           LwcSurrogate(lwc, cache, w.data(), g.data(), am, bm)) /
                          (2 * kLwcFdStep);
        const double got = static_cast<double>(which == 0 ? da[i] : db[i]);
        EXPECT_NEAR(got, fd, kGradRelTol * std::max(1.0, std::fabs(fd)))
            << "bits " << bits << (which == 0 ? " d max_logit[" : " d min_logit[") << i << "]";
      }
    }
  }
}

TEST(Lwc, ForwardIsTheStoredQuantizerUpToTheFp16Scale) {
  const int64_t n_out = 16, n_in = 96;
  const std::vector<int32_t> high = {0, 5, 50, 95};
  const std::vector<float> w = RandomVector(n_out * n_in, 4, 0.05f);
  const QuantSpec spec{.bits_low = 2, .bits_high = 3, .group_size = 32};
  Lwc lwc = LwcInit(LowPart(n_in, high, spec.group_size), w.data(), n_out, spec.bits_low);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> logit(0.0f, 4.0f);
  for (float& a : lwc.max_logit) a = logit(rng);
  for (float& b : lwc.min_logit) b = logit(rng);
  std::vector<float> wq(w.size(), 0.0f), stored(w.size());
  LwcCache cache;
  LwcForward(lwc, w.data(), wq.data(), &cache);
  const std::vector<GroupClip> clip = LwcClip(lwc);
  const QuantizedLayer q = QuantizeLayer(w.data(), n_out, n_in, high, spec, LayerClip{clip.data()});
  Dequantize(q, stored.data());
  int64_t same = 0, n = 0;
  for (int64_t r = 0; r < n_out; ++r) {
    for (int64_t k = 0; k < lwc.part.n_groups; ++k) {
      const float s = q.low_params[r * lwc.part.n_groups + k].scale;
      EXPECT_GE(s, cache.scale[r * lwc.part.n_groups + k]);
      EXPECT_LE(s, cache.scale[r * lwc.part.n_groups + k] * (1 + 0x1p-10f));
      for (int64_t i = lwc.part.group_begin[k]; i < lwc.part.group_begin[k + 1]; ++i) {
        const int64_t idx = r * n_in + lwc.part.cols[i];
        const float d = std::fabs(wq[idx] - stored[idx]);
        EXPECT_LE(d, 1.01f * s);  // at most one grid step apart
        same += d <= 1e-3f * s;
        ++n;
      }
    }
  }
  std::printf("LWC training forward equal to the stored layer (within 1e-3 step) on %lld of %lld\n",
              static_cast<long long>(same), static_cast<long long>(n));
  EXPECT_GE(same, n * 95 / 100);
}

// hiq_quant is built to vectorise (src/CMakeLists.txt: -fno-trapping-math -fno-math-errno); the
// header's formula, evaluated here one element at a time in plain float (and the per-group sums
// as four interleaved double partial sums, added pairwise), must give the same bytes. The width
// is no multiple of a vector, high columns split groups, and the logits clip both ends.
TEST(Lwc, VectorisedPassesAreTheFormulaElementByElementBitForBit) {
  const int64_t n_out = 7, n_in = 101;
  const std::vector<int32_t> high = {0, 9, 10, 33, 64, 100};
  const std::vector<float> w = RandomVector(n_out * n_in, 21, 0.05f);
  const std::vector<float> g = RandomVector(n_out * n_in, 22, 1.0f);
  for (int bits : {2, 3}) {
    Lwc lwc = LwcInit(LowPart(n_in, high, 32), w.data(), n_out, bits);
    std::mt19937 rng(23);
    std::uniform_real_distribution<float> logit(-1.0f, 4.0f);
    for (float& a : lwc.max_logit) a = logit(rng);
    for (float& b : lwc.min_logit) b = logit(rng);
    std::vector<float> wq(w.size(), -7.0f);  // columns outside the part must stay -7
    LwcCache cache;
    LwcForward(lwc, w.data(), wq.data(), &cache);
    std::vector<float> da(lwc.max_logit.size()), db(da.size());
    LwcBackward(lwc, w.data(), cache, g.data(), da.data(), db.data());

    const float qmax = static_cast<float>((1 << bits) - 1);
    const ColumnPart& part = lwc.part;
    std::vector<float> want_wq(w.size(), -7.0f);
    int64_t clamped = 0;
    for (int64_t r = 0; r < n_out; ++r) {
      for (int64_t k = 0; k < part.n_groups; ++k) {
        const size_t gi = static_cast<size_t>(r * part.n_groups + k);
        const float c_max = 1.0f / (1.0f + std::exp(-lwc.max_logit[gi]));
        const float c_min = 1.0f / (1.0f + std::exp(-lwc.min_logit[gi]));
        const float hi = std::max(c_max * lwc.x_max[gi], 0.0f);
        const float lo = std::min(c_min * lwc.x_min[gi], 0.0f);
        const float sc = (hi - lo) / qmax;
        ASSERT_GT(sc, 0.0f);
        const float z = std::min(std::max(std::nearbyint(-lo / sc), 0.0f), qmax);
        double acc[4] = {0, 0, 0, 0};
        for (int64_t i = part.group_begin[k]; i < part.group_begin[k + 1]; ++i) {
          const int64_t idx = r * n_in + part.cols[i];
          const float t = w[idx] / sc;
          const float rt = std::nearbyint(t);
          const float q = rt + z;
          want_wq[idx] = (std::min(std::max(q, 0.0f), qmax) - z) * sc;
          const bool inside = q >= 0.0f && q <= qmax;
          clamped += !inside;
          const float dyds = inside ? rt - t : std::min(std::max(q, 0.0f), qmax) - z;
          acc[(i - part.group_begin[k]) % 4] += static_cast<double>(g[idx] * dyds);
        }
        const float ds = static_cast<float>((acc[0] + acc[1]) + (acc[2] + acc[3]));
        const float want_da = c_max * lwc.x_max[gi] > 0.0f
                                  ? ds / qmax * lwc.x_max[gi] * c_max * (1.0f - c_max)
                                  : 0.0f;
        const float want_db = c_min * lwc.x_min[gi] < 0.0f
                                  ? -(ds / qmax) * lwc.x_min[gi] * c_min * (1.0f - c_min)
                                  : 0.0f;
        EXPECT_EQ(da[gi], want_da) << "bits " << bits << " group " << gi;
        EXPECT_EQ(db[gi], want_db) << "bits " << bits << " group " << gi;
      }
    }
    EXPECT_GT(clamped, 0);  // the outside-the-clamp branch is exercised
    EXPECT_TRUE(wq == want_wq) << "bits " << bits;
  }
}

TEST(Adam, VectorisedStepIsTheFormulaElementByElementBitForBit) {
  const AdamOptions o{.lr = 1e-2f, .weight_decay = 0.1f};
  std::vector<float> p = RandomVector(1001, 24, 1.0f), want = p;
  std::vector<float> m(p.size(), 0.0f), v(p.size(), 0.0f);
  AdamState state;
  for (int t = 1; t <= 3; ++t) {
    const std::vector<float> g = RandomVector(p.size(), 25 + t, 1.0f);
    AdamStep(o, p, g, state);
    const float bc1 = 1.0f - std::pow(o.beta1, static_cast<float>(t));
    const float bc2_sqrt = std::sqrt(1.0f - std::pow(o.beta2, static_cast<float>(t)));
    for (size_t i = 0; i < p.size(); ++i) {
      m[i] = o.beta1 * m[i] + (1.0f - o.beta1) * g[i];
      v[i] = o.beta2 * v[i] + (1.0f - o.beta2) * g[i] * g[i];
      const float denom = std::sqrt(v[i]) / bc2_sqrt + o.eps;
      want[i] = want[i] * (1.0f - o.lr * o.weight_decay) - o.lr / bc1 * m[i] / denom;
    }
    EXPECT_TRUE(p == want) << "step " << t;
  }
}

// --- AdaRound ----------------------------------------------------------------------------

double RoundObjective(const AdaRound& ar, const std::vector<float>& g, float beta, float lambda) {
  std::vector<float> wq(g.size(), 0.0f);
  AdaRoundForward(ar, wq.data());
  double sum = 0;
  for (size_t i = 0; i < g.size(); ++i)
    sum += static_cast<double>(g[i]) * static_cast<double>(wq[i]);
  return sum + (beta > 0 ? AdaRoundRegularizer(ar, beta, lambda, nullptr) : 0.0);
}

// AdaRound on the low part (kind 0) or the high part (kind 1) of w (n_out, n_in), on RTN's grid.
AdaRound RoundPart(int kind, const std::vector<float>& w, int64_t n_out, int64_t n_in,
                   const std::vector<int32_t>& high, const QuantSpec& spec,
                   const QuantizedLayer& rtn) {
  return kind == 0
             ? AdaRoundInit(LowPart(n_in, high, spec.group_size), w.data(), n_out, spec.bits_low,
                            rtn.low_params)
             : AdaRoundInit(HighPart(n_in, high), w.data(), n_out, spec.bits_high, rtn.high_params);
}

TEST(AdaRound, BackwardAndRegulariserMatchFiniteDifferences) {
  const int64_t n_out = 3, n_in = 10;
  const std::vector<int32_t> high = {1, 4, 8};
  const std::vector<float> w = RandomVector(n_out * n_in, 6, 1.0f);
  const std::vector<float> g = RandomVector(n_out * n_in, 7, 1.0f);
  const QuantSpec spec{.bits_low = 2, .bits_high = 3, .group_size = 4};
  const QuantizedLayer rtn = QuantizeLayer(w.data(), n_out, n_in, high, spec);
  for (int part_kind = 0; part_kind < 2; ++part_kind) {
    AdaRound ar = RoundPart(part_kind, w, n_out, n_in, high, spec, rtn);
    std::mt19937 rng(8);
    std::uniform_real_distribution<float> v(-2.0f, 2.0f);  // h in (0.04, 0.96): no clip
    for (float& x : ar.v) x = v(rng);
    for (float beta : {0.0f, 5.0f}) {
      const float lambda = 0.3f;
      std::vector<float> dv(ar.v.size());
      AdaRoundBackward(ar, g.data(), beta, lambda, dv.data());
      // The regulariser's own gradient, added to the reconstruction part alone, agrees.
      std::vector<float> split(ar.v.size());
      AdaRoundBackward(ar, g.data(), 0.0f, lambda, split.data());
      if (beta > 0) AdaRoundRegularizer(ar, beta, lambda, split.data());
      for (size_t e = 0; e < ar.v.size(); ++e) {
        EXPECT_NEAR(static_cast<double>(split[e]), static_cast<double>(dv[e]), 1e-6);
      }
      for (size_t e = 0; e < ar.v.size(); ++e) {
        AdaRound p = ar, m = ar;
        p.v[e] += kRoundFdStep;
        m.v[e] -= kRoundFdStep;
        const double fd =
            (RoundObjective(p, g, beta, lambda) - RoundObjective(m, g, beta, lambda)) /
            (static_cast<double>(p.v[e]) - static_cast<double>(m.v[e]));
        EXPECT_NEAR(static_cast<double>(dv[e]), fd,
                    kGradRelTol * std::max(1.0, std::fabs(fd)) + 2e-4)
            << "part " << part_kind << " beta " << beta << " element " << e;
      }
    }
  }
}

// As for LWC above: the row-wise, vectorised passes against the header's formula one element at
// a time (Sigmoid of learn.h, the clip, the clamp; the regulariser's slope as AdaRoundRegularizer
// has it), bit for bit, on both parts, with and without the regulariser, V wide enough that h
// clips at both ends and the clamp acts.
TEST(AdaRound, VectorisedPassesAreTheFormulaElementByElementBitForBit) {
  const int64_t n_out = 5, n_in = 75;
  const std::vector<int32_t> high = {0, 7, 8, 30, 74};
  const std::vector<float> w = RandomVector(n_out * n_in, 31, 1.0f);
  const std::vector<float> g = RandomVector(n_out * n_in, 32, 1.0f);
  const QuantSpec spec{.bits_low = 2, .bits_high = 3, .group_size = 16};
  const QuantizedLayer rtn = QuantizeLayer(w.data(), n_out, n_in, high, spec);
  for (int part_kind = 0; part_kind < 2; ++part_kind) {
    AdaRound ar = RoundPart(part_kind, w, n_out, n_in, high, spec, rtn);
    std::mt19937 rng(33);
    std::uniform_real_distribution<float> v(-6.0f, 6.0f);
    for (float& x : ar.v) x = v(rng);
    const float qmax = static_cast<float>((1 << ar.bits) - 1);
    const ColumnPart& part = ar.part;
    std::vector<float> wq(w.size(), -7.0f), want_wq(w.size(), -7.0f);
    AdaRoundForward(ar, wq.data());
    for (float beta : {0.0f, 5.0f}) {
      const float lambda = 0.3f;
      std::vector<float> dv(ar.v.size()), want_dv(ar.v.size());
      AdaRoundBackward(ar, g.data(), beta, lambda, dv.data());
      int64_t clipped = 0, clamped = 0;
      for (int64_t r = 0; r < n_out; ++r) {
        for (int64_t k = 0; k < part.n_groups; ++k) {
          const GroupParams& p = ar.params[static_cast<size_t>(r * part.n_groups + k)];
          const float z = static_cast<float>(p.zero);
          for (int64_t i = part.group_begin[k]; i < part.group_begin[k + 1]; ++i) {
            const size_t e = static_cast<size_t>(r * part.n_cols() + i);
            const int64_t idx = r * n_in + part.cols[i];
            const float sg = hiq::Sigmoid(ar.v[e]);  // learn.h's float one, not this file's
            const float u = sg * (kAdaRoundZeta - kAdaRoundGamma) + kAdaRoundGamma;
            const float h = std::min(std::max(u, 0.0f), 1.0f);
            want_wq[idx] = (std::min(std::max(ar.w_floor[e] + h + z, 0.0f), qmax) - z) * p.scale;
            const float q = ar.w_floor[e] + u + z;
            clipped += u < 0.0f || u > 1.0f;
            clamped += q < 0.0f || q > qmax;
            if (u < 0.0f || u > 1.0f) {
              want_dv[e] = 0.0f;
              continue;
            }
            float dh = q >= 0.0f && q <= qmax ? g[idx] * p.scale : 0.0f;
            if (beta > 0.0f) {
              const float d = 2.0f * u - 1.0f, a = std::fabs(d);
              dh += a > 0.0f ? -lambda * beta * std::pow(a, beta - 1.0f) * (d > 0 ? 2.0f : -2.0f)
                             : 0.0f;
            }
            want_dv[e] = dh * sg * (1.0f - sg) * (kAdaRoundZeta - kAdaRoundGamma);
          }
        }
      }
      EXPECT_GT(clipped, 0);
      EXPECT_GT(clamped, 0);
      EXPECT_TRUE(dv == want_dv) << "part " << part_kind << " beta " << beta;
    }
    EXPECT_TRUE(wq == want_wq) << "part " << part_kind;
  }
}

TEST(AdaRound, StartsAtTheWeightAndItsHardCodesAreRtn) {
  const int64_t n_out = 32, n_in = 128;
  const std::vector<float> w = RandomVector(n_out * n_in, 9, 0.05f);
  const QuantSpec spec{.bits_low = 3, .bits_high = 4, .group_size = 32};
  const QuantizedLayer rtn = QuantizeLayer(w.data(), n_out, n_in, {}, spec);
  const AdaRound ar = AdaRoundInit(LowPart(n_in, {}, 32), w.data(), n_out, 3, rtn.low_params);
  std::vector<float> soft(w.size());
  AdaRoundForward(ar, soft.data());
  // Inside the grid's range the soft weight is w; below it (rne(-lo / s) can leave up to half a
  // step of the range under code 0) it is clamped, as RTN.
  int64_t clamped = 0;
  const int64_t n_groups = n_in / 32;
  for (size_t i = 0; i < w.size(); ++i) {
    const GroupParams& p = rtn.low_params[i / 128 * n_groups + i % 128 / 32];
    const float t = w[i] / p.scale + static_cast<float>(p.zero);
    if (t < 0.0f || t > 7.0f) {
      ++clamped;
      continue;
    }
    EXPECT_NEAR(static_cast<double>(soft[i]), static_cast<double>(w[i]), 1e-6) << i;
  }
  EXPECT_LE(clamped, n_out * n_in / 10);
  const std::vector<uint8_t> codes = AdaRoundCodes(ar, nullptr);
  int64_t differ = 0;
  for (size_t i = 0; i < codes.size(); ++i) differ += codes[i] != rtn.low_codes[i];
  EXPECT_LE(differ, 2) << "of " << codes.size();  // only near-ties may round the other way
}

TEST(ParallelRows, CoversEveryRowOnceInContiguousPartsAndKeepsSmallWorkOnTheCaller) {
  SetBlasThreads(2);
  std::vector<int> seen(1000, 0);
  std::vector<std::pair<int64_t, int64_t>> parts(2, {-1, -1});
  std::atomic<int> n_parts{0};
  ParallelRows(1000, kMinRowWork, [&](int64_t r0, int64_t r1) {
    parts[static_cast<size_t>(n_parts++)] = {r0, r1};
    for (int64_t r = r0; r < r1; ++r) ++seen[static_cast<size_t>(r)];
  });
  EXPECT_EQ(n_parts.load(), 2);
  std::sort(parts.begin(), parts.end());
  EXPECT_EQ(parts[0], std::make_pair(int64_t{0}, int64_t{500}));
  EXPECT_EQ(parts[1], std::make_pair(int64_t{500}, int64_t{1000}));
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), 1000);
  int calls = 0;
  ParallelRows(64, 64, [&](int64_t r0, int64_t r1) {  // 4096 elements: one part
    ++calls;
    EXPECT_EQ(r0, 0);
    EXPECT_EQ(r1, 64);
  });
  EXPECT_EQ(calls, 1);
  SetBlasThreads(1);
}

// The per-weight passes split rows among the loop threads; every output is the same bytes for 1
// and 2 threads (a layer large enough to be split: 512 x 512).
TEST(ParallelRows, LwcAdaRoundAndAdamGiveTheSameBytesOnOneAndTwoThreads) {
  const int64_t n_out = 512, n_in = 512;
  const std::vector<float> w = RandomVector(n_out * n_in, 11, 0.05f);
  const std::vector<float> g = RandomVector(n_out * n_in, 12, 1.0f);
  std::vector<int32_t> high;
  for (int32_t c = 3; c < n_in; c += 10) high.push_back(c);
  const QuantSpec spec{.bits_low = 2, .bits_high = 3, .group_size = 32};
  const QuantizedLayer rtn = QuantizeLayer(w.data(), n_out, n_in, high, spec);
  auto run = [&](int threads) {
    SetBlasThreads(threads);
    std::vector<float> out(w.size(), 0.0f), da, db, dv;
    Lwc lwc = LwcInit(LowPart(n_in, high, 32), w.data(), n_out, 2, 4.0f);
    for (size_t i = 0; i < lwc.max_logit.size(); ++i) lwc.max_logit[i] -= 0.001f * (i % 7);
    LwcCache cache;
    LwcForward(lwc, w.data(), out.data(), &cache);
    da.resize(lwc.max_logit.size());
    db.resize(lwc.min_logit.size());
    LwcBackward(lwc, w.data(), cache, g.data(), da.data(), db.data());
    AdaRound ar = AdaRoundInit(HighPart(n_in, high), w.data(), n_out, 3, rtn.high_params);
    AdaRoundForward(ar, out.data());
    dv.resize(ar.v.size());
    AdaRoundBackward(ar, g.data(), 5.0f, 0.01f, dv.data());
    AdamState state;
    AdamStep(AdamOptions{.lr = 1e-3f}, ar.v, dv, state);
    std::vector<uint8_t> codes = AdaRoundCodes(ar, nullptr);
    SetBlasThreads(1);
    return std::make_tuple(out, da, db, dv, ar.v, codes);
  };
  EXPECT_TRUE(run(1) == run(2));
}

TEST(AdaRound, BetaFollowsBrecqSchedule) {
  EXPECT_EQ(AdaRoundBeta(1, 100, 0.2f), 0.0f);
  EXPECT_EQ(AdaRoundBeta(19, 100, 0.2f), 0.0f);
  EXPECT_FLOAT_EQ(AdaRoundBeta(20, 100, 0.2f), 20.0f);
  EXPECT_FLOAT_EQ(AdaRoundBeta(60, 100, 0.2f), 11.0f);
  EXPECT_FLOAT_EQ(AdaRoundBeta(100, 100, 0.2f), 2.0f);
}

TEST(ReconOrder, IsEpochsOfPermutationsFixedBySeedAndBlock) {
  const std::vector<int64_t> a = ReconOrder(7, 2, 5, 12);
  EXPECT_EQ(a, ReconOrder(7, 2, 5, 12));
  EXPECT_NE(a, ReconOrder(7, 3, 5, 12));
  EXPECT_NE(a, ReconOrder(8, 2, 5, 12));
  for (int epoch = 0; epoch < 2; ++epoch) {
    std::vector<int64_t> seen(a.begin() + epoch * 5, a.begin() + epoch * 5 + 5);
    std::sort(seen.begin(), seen.end());
    EXPECT_EQ(seen, (std::vector<int64_t>{0, 1, 2, 3, 4}));
  }
}

// --- real stories260K blocks -------------------------------------------------------------

// The model, and the inputs of every block on real TinyStories windows (calibration and held-out,
// non-overlapping windows of kSeqLen tokens).
class RealBlocks : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::filesystem::path data = test::DataDir();
    const Checkpoint checkpoint(data / "stories260K");
    const LlamaConfig& c = checkpoint.config();
    stage_ = new Stage<float>(
        LoadStage(checkpoint, 0, static_cast<int>(c.num_hidden_layers), true, true));
    const Tokenizer tokenizer(data / "stories260K" / "tokenizer.model");
    const std::vector<int32_t> tokens = TokenizeFile(
        tokenizer, data / "text" / "tinystories" / "valid-head30KB.txt", Newlines::kKeep);
    ASSERT_GE(static_cast<int64_t>(tokens.size()), (kCalibSeqs + kHeldoutSeqs) * kSeqLen);
    inputs_ = new std::vector<Matrix<float>>[2];
    for (int set = 0; set < 2; ++set) {
      const int64_t first = set == 0 ? 0 : kCalibSeqs, n = set == 0 ? kCalibSeqs : kHeldoutSeqs;
      const std::span<const int32_t> window(tokens.data() + first * kSeqLen,
                                            static_cast<size_t>(n * kSeqLen));
      Matrix<float> h;
      EmbeddingForward(stage_->embedding, window, h);
      const Rope<float> rope = MakeRope<float>(c, kSeqLen);
      for (const BlockWeights<float>& block : stage_->blocks) {
        inputs_[set].push_back(h);
        Matrix<float> out;
        BlockForward<float>(c, block, rope, kSeqLen, h, out, nullptr);
        h = out;
      }
    }
  }
  static void TearDownTestSuite() {
    delete stage_;
    delete[] inputs_;
  }

  // W2: bits 2/3, groups of 32, the top 10% columns by sum_i W_ij^2 (a fixed score).
  static std::vector<ReconLayer> W2Plan(const BlockWeights<float>& w) {
    std::vector<ReconLayer> plan;
    for (Linear kind : kLinears) {
      const Matrix<float>& m = w.linear(kind);
      std::vector<double> score(static_cast<size_t>(m.cols()), 0.0);
      for (int64_t r = 0; r < m.rows(); ++r) {
        for (int64_t j = 0; j < m.cols(); ++j) {
          score[static_cast<size_t>(j)] += static_cast<double>(m(r, j) * m(r, j));
        }
      }
      plan.push_back(ReconLayer{TopChannels(score, HighCount(0.10, m.cols())),
                                QuantSpec{.bits_low = 2, .bits_high = 3, .group_size = 32}});
    }
    return plan;
  }

  static ReconResult Run(int block, ReconMethod method, int64_t steps = kSteps) {
    const ReconOptions options{.method = method, .steps = steps, .seed = 1, .block = block};
    const BlockWeights<float>& w = stage_->blocks[static_cast<size_t>(block)];
    return ReconstructBlock(stage_->config, w, kSeqLen, inputs_[0][static_cast<size_t>(block)],
                            W2Plan(w), options, &inputs_[1][static_cast<size_t>(block)]);
  }

  static void CheckStored(const ReconResult& r, const std::vector<ReconLayer>& plan) {
    for (size_t i = 0; i < kNumLinears; ++i) {
      const QuantizedLayer& q = r.layers[i];
      ValidateQuantizedLayer(q, std::string(LinearName(kLinears[i])));
      EXPECT_EQ(q.high_cols, plan[i].high_cols);
      EXPECT_EQ(StoredBits(q), LayerBits(q.n_out, q.n_in, q.n_high(), q.spec));
    }
  }

  static Stage<float>* stage_;
  static std::vector<Matrix<float>>* inputs_;  // [calibration, held-out][block] (S * T, C)
};
Stage<float>* RealBlocks::stage_ = nullptr;
std::vector<Matrix<float>>* RealBlocks::inputs_ = nullptr;

const char* MethodName(ReconMethod m) {
  return m == ReconMethod::kHybrid ? "hybrid" : m == ReconMethod::kLwc ? "LWC" : "AdaRound";
}

TEST_F(RealBlocks, EveryMethodLowersTheBlockErrorBelowRtnAtW2) {
  for (int block : {0, 2}) {
    const std::vector<ReconLayer> plan = W2Plan(stage_->blocks[static_cast<size_t>(block)]);
    for (ReconMethod method : {ReconMethod::kLwc, ReconMethod::kAdaRound, ReconMethod::kHybrid}) {
      const ReconResult r = Run(block, method);
      const ReconReport& rep = r.report;
      std::printf(
          "block %d %-8s MSE calib: RTN %.4g  init %.4g  final %.4g | held-out: RTN %.4g"
          "  init %.4g  final %.4g  (%lld steps, loss %.4g -> %.4g)\n",
          block, MethodName(method), rep.rtn_mse, rep.init_mse, rep.final_mse, rep.rtn_heldout_mse,
          rep.init_heldout_mse, rep.final_heldout_mse, static_cast<long long>(kSteps),
          rep.step_loss.front(), rep.step_loss.back());
      CheckStored(r, plan);
      EXPECT_LT(rep.final_mse, rep.rtn_mse) << "block " << block << " " << MethodName(method);
      EXPECT_LT(rep.final_heldout_mse, rep.rtn_heldout_mse)
          << "block " << block << " " << MethodName(method);
    }
  }
}

TEST_F(RealBlocks, TwoRunsAreBitIdentical) {
  for (ReconMethod method : {ReconMethod::kHybrid, ReconMethod::kAdaRound}) {
    const ReconResult a = Run(2, method, 40), b = Run(2, method, 40);
    for (size_t i = 0; i < kNumLinears; ++i) {
      EXPECT_EQ(a.layers[i].low_codes, b.layers[i].low_codes);
      EXPECT_EQ(a.layers[i].high_codes, b.layers[i].high_codes);
      ASSERT_EQ(a.layers[i].low_params.size(), b.layers[i].low_params.size());
      for (size_t k = 0; k < a.layers[i].low_params.size(); ++k) {
        EXPECT_EQ(a.layers[i].low_params[k].scale, b.layers[i].low_params[k].scale);
        EXPECT_EQ(a.layers[i].low_params[k].zero, b.layers[i].low_params[k].zero);
      }
    }
    EXPECT_EQ(a.report.step_loss, b.report.step_loss);
    EXPECT_EQ(a.report.final_mse, b.report.final_mse);
  }
}

TEST_F(RealBlocks, ANonFiniteLossStopsTheBlockNamingTheStepAndItsSequences) {
  // One NaN in the input rows of one sequence: the first step that draws it must stop the
  // training rather than carry NaN into the learned clipping and rounding.
  const int block = 2;
  const BlockWeights<float>& w = stage_->blocks[static_cast<size_t>(block)];
  Matrix<float> x = inputs_[0][static_cast<size_t>(block)];
  const int64_t bad_sequence = 3;
  x(bad_sequence * kSeqLen + 5, 7) = std::numeric_limits<float>::quiet_NaN();
  const ReconOptions options{.steps = 64, .seed = 1, .block = block};
  const std::vector<int64_t> order = ReconOrder(1, block, x.rows() / kSeqLen, 64);
  const int64_t step = std::find(order.begin(), order.end(), bad_sequence) - order.begin() + 1;
  ASSERT_LE(step, 64);
  EXPECT_THROW_MSG(ReconstructBlock(stage_->config, w, kSeqLen, x, W2Plan(w), options, nullptr),
                   NumericalError,
                   "ReconstructBlock: block 2: the loss of step " + std::to_string(step) +
                       " (sequences 3) is nan");
}

TEST_F(RealBlocks, ZeroStepsStoresTheInitialParameters) {
  const ReconResult r = Run(0, ReconMethod::kAdaRound, 0);
  EXPECT_EQ(r.report.init_mse, r.report.final_mse);
  EXPECT_TRUE(r.report.step_loss.empty());
}

}  // namespace
}  // namespace hiq
