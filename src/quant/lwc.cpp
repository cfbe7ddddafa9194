// OmniQuant learnable weight clipping, forward beside backward (see hiq/quant/lwc.h).
#include "hiq/quant/lwc.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "hiq/base/error.h"
#include "hiq/model/blas.h"  // ParallelRows

namespace hiq {
namespace {

float Qmax(int bits) { return LearnedQmax("LWC", bits); }

void CheckSizes(const Lwc& lwc) {
  const size_t n = static_cast<size_t>(lwc.n_out * lwc.part.n_groups);
  if (lwc.x_min.size() != n || lwc.x_max.size() != n || lwc.max_logit.size() != n ||
      lwc.min_logit.size() != n) {
    throw ConfigError("LWC: parameter arrays do not hold n_out * n_groups = " + std::to_string(n) +
                      " groups");
  }
}

}  // namespace

Lwc LwcInit(const ColumnPart& part, const float* w, int64_t n_out, int bits, float init) {
  Qmax(bits);
  Lwc lwc;
  lwc.part = part;
  lwc.n_out = n_out;
  lwc.bits = bits;
  PartMinMax(part, w, n_out, lwc.x_min, lwc.x_max);
  lwc.max_logit.assign(lwc.x_min.size(), init);
  lwc.min_logit.assign(lwc.x_min.size(), init);
  return lwc;
}

namespace {

// The part's layout in whole-row coordinates, for loops that run over contiguous columns: group
// k spans columns [first[k], last[k]) of a row (the high columns between its members included),
// in[j] says whether column j belongs to the part (a 32-bit mask, as wide as the floats it selects,
// so that the vectorised selects need no widening). Groups are disjoint and in column order.
struct RowSpans {
  std::vector<int64_t> first, last;  // (n_groups,)
  std::vector<int32_t> in;           // (n_in,)
  explicit RowSpans(const ColumnPart& part)
      : first(static_cast<size_t>(part.n_groups)),
        last(static_cast<size_t>(part.n_groups)),
        in(static_cast<size_t>(part.n_in), 0) {
    for (int64_t k = 0; k < part.n_groups; ++k) {
      first[k] = part.cols[part.group_begin[k]];
      last[k] = part.cols[part.group_begin[k + 1] - 1] + 1;
    }
    for (int32_t c : part.cols) in[c] = 1;
  }
};

// Group gi's clip factors, training scale and zero (s = 0 for an all-zero group), into the cache.
inline void GroupScale(const Lwc& lwc, int64_t gi, float qmax, LwcCache& c) {
  const float c_max = Sigmoid(lwc.max_logit[gi]), c_min = Sigmoid(lwc.min_logit[gi]);
  const float hi = std::max(c_max * lwc.x_max[gi], 0.0f);
  const float lo = std::min(c_min * lwc.x_min[gi], 0.0f);
  const float s = (hi - lo) / qmax;
  c.c_max[gi] = c_max;
  c.c_min[gi] = c_min;
  c.scale[gi] = s;
  c.zero[gi] = s > 0.0f ? std::min(std::max(std::nearbyint(-lo / s), 0.0f), qmax) : 0.0f;
}

// Per column of one row: the scale and zero of its group (1 and 0 outside every group, and for
// an all-zero group, which then quantizes to 0 exactly as the formula's limit).
void SpreadRow(const RowSpans& spans, const float* scale, const float* zero, float* s_col,
               float* z_col) {
  for (size_t k = 0; k < spans.first.size(); ++k) {
    const float s = scale[k] > 0.0f ? scale[k] : 1.0f;
    std::fill(s_col + spans.first[k], s_col + spans.last[k], s);
    std::fill(z_col + spans.first[k], z_col + spans.last[k], zero[k]);
  }
}

}  // namespace

// Both passes run whole rows through straight loops over contiguous columns (vectorised, as
// quant.cpp's kernels), selecting the part's columns with a mask.
void LwcForward(const Lwc& lwc, const float* w, float* w_q, LwcCache* cache) {
  CheckSizes(lwc);
  const float qmax = Qmax(lwc.bits);
  const ColumnPart& part = lwc.part;
  const int64_t n_in = part.n_in, n_groups = part.n_groups;
  if (n_groups == 0) return;
  LwcCache local;
  LwcCache& c = cache ? *cache : local;
  for (std::vector<float>* v : {&c.scale, &c.zero, &c.c_max, &c.c_min}) v->resize(lwc.x_min.size());
  const RowSpans spans(part);
  const int64_t j0 = spans.first.front(), j1 = spans.last.back();
  const int32_t* in = spans.in.data();
  ParallelRows(lwc.n_out, lwc.part.n_in, [&](int64_t r0, int64_t r1) {
    std::vector<float> s_col(static_cast<size_t>(n_in), 1.0f);
    std::vector<float> z_col(static_cast<size_t>(n_in), 0.0f);
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = w + r * n_in;  // (n_in,)
      float* y = w_q + r * n_in;      // (n_in,)
      for (int64_t k = 0; k < n_groups; ++k) GroupScale(lwc, r * n_groups + k, qmax, c);
      SpreadRow(spans, c.scale.data() + r * n_groups, c.zero.data() + r * n_groups, s_col.data(),
                z_col.data());
      const float* sc = s_col.data();
      const float* zc = z_col.data();
      for (int64_t j = j0; j < j1; ++j) {
        const float q = std::min(std::max(std::nearbyint(x[j] / sc[j]) + zc[j], 0.0f), qmax);
        const float v = (q - zc[j]) * sc[j];
        y[j] = in[j] ? v : y[j];
      }
    }
  });
}

namespace {
// Rows [r0, r1) of LwcBackward.
void BackwardRows(const Lwc& lwc, const float* w, const LwcCache& cache, const float* dw_q,
                  float* d_max_logit, float* d_min_logit, const RowSpans& spans, int64_t r0,
                  int64_t r1) {
  const float qmax = Qmax(lwc.bits);
  const int64_t n_in = lwc.part.n_in, n_groups = lwc.part.n_groups;
  const int64_t j0 = spans.first.front(), j1 = spans.last.back();
  const int32_t* in = spans.in.data();
  std::vector<float> s_col(static_cast<size_t>(n_in), 1.0f), z_col(static_cast<size_t>(n_in), 0.0f);
  std::vector<float> contrib(static_cast<size_t>(n_in), 0.0f);  // dL/dw_q * dw_q/ds per column
  for (int64_t r = r0; r < r1; ++r) {
    const float* x = w + r * n_in;      // (n_in,)
    const float* dy = dw_q + r * n_in;  // (n_in,)
    const float* scale = cache.scale.data() + r * n_groups;
    SpreadRow(spans, scale, cache.zero.data() + r * n_groups, s_col.data(), z_col.data());
    const float* sc = s_col.data();
    const float* zc = z_col.data();
    float* ct = contrib.data();
    for (int64_t j = j0; j < j1; ++j) {
      const float t = x[j] / sc[j];
      const float rt = std::nearbyint(t);
      const float q = rt + zc[j];
      const float dyds =
          (q >= 0.0f && q <= qmax) ? rt - t : std::min(std::max(q, 0.0f), qmax) - zc[j];
      ct[j] = in[j] ? dy[j] * dyds : 0.0f;
    }
    for (int64_t k = 0; k < n_groups; ++k) {
      const int64_t gi = r * n_groups + k;
      d_max_logit[gi] = 0.0f;
      d_min_logit[gi] = 0.0f;
      if (scale[k] == 0.0f) continue;
      // dL/ds: four interleaved partial sums in double, in column order, then pairwise.
      Eigen::Array4d acc = Eigen::Array4d::Zero();  // one AVX register
      int64_t j = spans.first[k];
      for (; j + 4 <= spans.last[k]; j += 4) {
        acc += Eigen::Map<const Eigen::Array4f>(ct + j).cast<double>();
      }
      for (int l = 0; j < spans.last[k]; ++j, ++l) acc[l] += static_cast<double>(ct[j]);
      const double ds = (acc[0] + acc[1]) + (acc[2] + acc[3]);
      const float dhi = static_cast<float>(ds) / qmax, dlo = -dhi;
      const float c_max = cache.c_max[gi], c_min = cache.c_min[gi];
      if (c_max * lwc.x_max[gi] > 0.0f)
        d_max_logit[gi] = dhi * lwc.x_max[gi] * c_max * (1.0f - c_max);
      if (c_min * lwc.x_min[gi] < 0.0f)
        d_min_logit[gi] = dlo * lwc.x_min[gi] * c_min * (1.0f - c_min);
    }
  }
}

}  // namespace

void LwcBackward(const Lwc& lwc, const float* w, const LwcCache& cache, const float* dw_q,
                 float* d_max_logit, float* d_min_logit) {
  CheckSizes(lwc);
  Qmax(lwc.bits);
  const size_t n = lwc.x_min.size();
  if (cache.scale.size() != n || cache.zero.size() != n || cache.c_max.size() != n ||
      cache.c_min.size() != n) {
    throw ConfigError("LwcBackward: the cache is not from LwcForward of this LWC");
  }
  if (lwc.part.n_groups == 0) return;
  const RowSpans spans(lwc.part);
  ParallelRows(lwc.n_out, lwc.part.n_in, [&](int64_t r0, int64_t r1) {
    BackwardRows(lwc, w, cache, dw_q, d_max_logit, d_min_logit, spans, r0, r1);
  });
}

std::vector<GroupClip> LwcClip(const Lwc& lwc) {
  CheckSizes(lwc);
  std::vector<GroupClip> clip(lwc.max_logit.size());
  for (size_t i = 0; i < clip.size(); ++i) {
    clip[i] = GroupClip{Sigmoid(lwc.max_logit[i]), Sigmoid(lwc.min_logit[i])};
  }
  return clip;
}

}  // namespace hiq
