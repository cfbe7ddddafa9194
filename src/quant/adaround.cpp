// AdaRound with fixed group parameters, forward beside backward (see hiq/quant/adaround.h).
#include "hiq/quant/adaround.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "hiq/base/error.h"
#include "hiq/model/blas.h"  // ParallelRows

namespace hiq {
namespace {

float Qmax(int bits) { return LearnedQmax("AdaRound", bits); }

// The rectified sigmoid before its clip to [0, 1], from sigmoid(V): the one spelling of the
// stretch for every pass, so that they all compute the same u.
inline float Stretch(float sg) { return sg * (kAdaRoundZeta - kAdaRoundGamma) + kAdaRoundGamma; }
inline float Clip01(float u) { return std::min(std::max(u, 0.0f), 1.0f); }
float H(float v) { return Clip01(Stretch(Sigmoid(v))); }

void CheckSizes(const AdaRound& ar) {
  if (ar.params.size() != static_cast<size_t>(ar.n_out * ar.part.n_groups) ||
      ar.v.size() != static_cast<size_t>(ar.n_out * ar.part.n_cols()) ||
      ar.w_floor.size() != ar.v.size()) {
    throw ConfigError("AdaRound: parameter arrays do not match the part (" +
                      std::to_string(ar.n_out) + " rows, " + std::to_string(ar.part.n_cols()) +
                      " columns, " + std::to_string(ar.part.n_groups) + " groups per row)");
  }
}

// f(element index, column, group parameters) for every element of the part, rows split among
// the loop threads (ParallelRows): f must touch only its own element.
template <typename F>
void ForEachElement(const AdaRound& ar, F&& f) {
  const ColumnPart& part = ar.part;
  ParallelRows(ar.n_out, part.n_cols(), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t k = 0; k < part.n_groups; ++k) {
        const GroupParams& p = ar.params[static_cast<size_t>(r * part.n_groups + k)];
        for (int64_t i = part.group_begin[k]; i < part.group_begin[k + 1]; ++i) {
          f(r * part.n_cols() + i, r * part.n_in + part.cols[i], p);
        }
      }
    }
  });
}

}  // namespace

AdaRound AdaRoundInit(const ColumnPart& part, const float* w, int64_t n_out, int bits,
                      std::span<const GroupParams> params) {
  Qmax(bits);
  AdaRound ar;
  ar.part = part;
  ar.n_out = n_out;
  ar.bits = bits;
  ar.params.assign(params.begin(), params.end());
  const size_t n = static_cast<size_t>(n_out * part.n_cols());
  ar.w_floor.resize(n);
  ar.v.resize(n);
  CheckSizes(ar);
  ForEachElement(ar, [&](int64_t e, int64_t idx, const GroupParams& p) {
    const float t = w[idx] / p.scale;
    const float fl = std::floor(t);
    const float rest = t - fl;  // in [0, 1)
    ar.w_floor[e] = fl;
    ar.v[e] = -std::log((kAdaRoundZeta - kAdaRoundGamma) / (rest - kAdaRoundGamma) - 1.0f);
  });
  return ar;
}

// The training passes run a row at a time, the libm calls (expf, powf) in loops of their own, so
// that the arithmetic between them vectorises: the same operations in the same order per element
// as Sigmoid and H above, so the same bytes (tests/test_recon.cpp checks them against H). The
// passes capture their scalars by value: a float read through a captured reference might alias
// the buffers' stores, which keeps GCC from vectorising.
template <typename F>
void ForEachRow(const AdaRound& ar, F&& f) {
  const int64_t n = ar.part.n_cols();
  ParallelRows(ar.n_out, n, [&](int64_t r0, int64_t r1) {
    std::vector<float> a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
    for (int64_t r = r0; r < r1; ++r) f(r, a.data(), b.data());
  });
}

void AdaRoundForward(const AdaRound& ar, float* w_q) {
  CheckSizes(ar);
  const float qmax = Qmax(ar.bits);
  const ColumnPart& part = ar.part;
  const int64_t n = part.n_cols();
  ForEachRow(ar, [&, qmax](int64_t r, float* y, float*) {
    const float* v = ar.v.data() + r * n;
    const float* fl = ar.w_floor.data() + r * n;
    for (int64_t i = 0; i < n; ++i) y[i] = std::exp(-v[i]);
    for (int64_t k = 0; k < part.n_groups; ++k) {
      const GroupParams& p = ar.params[static_cast<size_t>(r * part.n_groups + k)];
      const float z = static_cast<float>(p.zero), s = p.scale;
      for (int64_t i = part.group_begin[k]; i < part.group_begin[k + 1]; ++i) {
        const float sg = 1.0f / (1.0f + y[i]);
        const float q = std::min(std::max(fl[i] + Clip01(Stretch(sg)) + z, 0.0f), qmax);
        y[i] = (q - z) * s;
      }
    }
    float* out = w_q + r * part.n_in;
    for (int64_t i = 0; i < n; ++i) out[part.cols[i]] = y[i];
  });
}

// dR/dh of one element, 0 at h = 1/2 (where |2h - 1|^(beta - 1) has no slope for beta > 1).
inline float RegularizerSlope(float h, float beta, float lambda, float* a_pow_out) {
  const float d = 2.0f * h - 1.0f;
  const float a = std::fabs(d);
  const float a_pow = a > 0.0f ? std::pow(a, beta - 1.0f) : 0.0f;  // |2h - 1|^(beta - 1)
  if (a_pow_out) *a_pow_out = a_pow * a;
  return a > 0.0f ? -lambda * beta * a_pow * (d > 0.0f ? 2.0f : -2.0f) : 0.0f;
}

void AdaRoundBackward(const AdaRound& ar, const float* dw_q, float beta, float lambda, float* dv) {
  CheckSizes(ar);
  const float qmax = Qmax(ar.bits);
  const ColumnPart& part = ar.part;
  const int64_t n = part.n_cols();
  ForEachRow(ar, [&, qmax, beta, lambda](int64_t r, float* sg, float* dh) {
    const float* v = ar.v.data() + r * n;
    const float* fl = ar.w_floor.data() + r * n;
    const float* dy = dw_q + r * part.n_in;
    float* d = dv + r * n;
    for (int64_t i = 0; i < n; ++i) {
      sg[i] = std::exp(-v[i]);
      dh[i] = dy[part.cols[i]];
    }
    // dh = dL/dh where the clamp is inactive, else 0 (then + dR/dh below).
    for (int64_t k = 0; k < part.n_groups; ++k) {
      const GroupParams& p = ar.params[static_cast<size_t>(r * part.n_groups + k)];
      const float z = static_cast<float>(p.zero), s = p.scale;
      for (int64_t i = part.group_begin[k]; i < part.group_begin[k + 1]; ++i) {
        sg[i] = 1.0f / (1.0f + sg[i]);
        const float q = fl[i] + Stretch(sg[i]) + z;
        dh[i] = q >= 0.0f && q <= qmax ? dh[i] * s : 0.0f;
      }
    }
    if (beta > 0.0f) {
      for (int64_t i = 0; i < n; ++i) {
        const float u = Stretch(sg[i]);
        if (u >= 0.0f && u <= 1.0f) dh[i] += RegularizerSlope(u, beta, lambda, nullptr);
      }
    }
    for (int64_t i = 0; i < n; ++i) {
      const float u = Stretch(sg[i]);
      // h clipped: no slope for either term
      d[i] = u < 0.0f || u > 1.0f
                 ? 0.0f
                 : dh[i] * sg[i] * (1.0f - sg[i]) * (kAdaRoundZeta - kAdaRoundGamma);
    }
  });
}

double AdaRoundRegularizer(const AdaRound& ar, float beta, float lambda, float* dv) {
  CheckSizes(ar);
  double sum = 0;
  for (size_t e = 0; e < ar.v.size(); ++e) {
    const float sg = Sigmoid(ar.v[e]);
    const float u = Stretch(sg);
    float a_beta = 0.0f;  // |2h - 1|^beta
    const float slope = RegularizerSlope(Clip01(u), beta, lambda, &a_beta);
    sum += 1.0 - static_cast<double>(a_beta);
    if (dv == nullptr || u < 0.0f || u > 1.0f) continue;
    dv[e] += slope * sg * (1.0f - sg) * (kAdaRoundZeta - kAdaRoundGamma);
  }
  return static_cast<double>(lambda) * sum;
}

std::vector<uint8_t> AdaRoundCodes(const AdaRound& ar, float* w_q) {
  CheckSizes(ar);
  const float qmax = Qmax(ar.bits);
  std::vector<uint8_t> codes(ar.v.size());
  ForEachElement(ar, [&](int64_t e, int64_t idx, const GroupParams& p) {
    const float z = static_cast<float>(p.zero);
    const float up = H(ar.v[e]) >= 0.5f ? 1.0f : 0.0f;
    const float q = std::min(std::max(ar.w_floor[e] + up + z, 0.0f), qmax);
    codes[static_cast<size_t>(e)] = static_cast<uint8_t>(q);
    if (w_q) w_q[idx] = (q - z) * p.scale;
  });
  return codes;
}

float AdaRoundBeta(int64_t t, int64_t t_max, float warmup, float start, float end) {
  // The warm-up in whole steps (0.2f * 100 is 20.0000003 in double, which should be 20).
  const double d = std::nearbyint(static_cast<double>(warmup) * static_cast<double>(t_max));
  if (static_cast<double>(t) < d) return 0.0f;
  const double rel =
      t_max > d ? (static_cast<double>(t) - d) / (static_cast<double>(t_max) - d) : 1.0;
  return static_cast<float>(static_cast<double>(end) +
                            static_cast<double>(start - end) * std::max(0.0, 1.0 - rel));
}

}  // namespace hiq
