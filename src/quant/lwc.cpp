// OmniQuant learnable weight clipping, forward beside backward (see hiq/quant/lwc.h).
#include "hiq/quant/lwc.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "hiq/base/error.h"

namespace hiq {
namespace {

float Qmax(int bits) {
  if (bits < 1 || bits > 8) {
    throw ConfigError("LWC: bits = " + std::to_string(bits) + ", expected 1..8");
  }
  return static_cast<float>((1 << bits) - 1);
}

float Sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

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

void LwcForward(const Lwc& lwc, const float* w, float* w_q, LwcCache* cache) {
  CheckSizes(lwc);
  const float qmax = Qmax(lwc.bits);
  const ColumnPart& part = lwc.part;
  const int32_t* cols = part.cols.data();
  if (cache) {
    cache->scale.resize(lwc.x_min.size());
    cache->zero.resize(lwc.x_min.size());
  }
  for (int64_t r = 0; r < lwc.n_out; ++r) {
    const float* x = w + r * part.n_in;  // (n_in,)
    float* y = w_q + r * part.n_in;      // (n_in,)
    for (int64_t k = 0; k < part.n_groups; ++k) {
      const int64_t gi = r * part.n_groups + k;
      const float hi = std::max(Sigmoid(lwc.max_logit[gi]) * lwc.x_max[gi], 0.0f);
      const float lo = std::min(Sigmoid(lwc.min_logit[gi]) * lwc.x_min[gi], 0.0f);
      const float s = (hi - lo) / qmax;
      const float z = s > 0.0f ? std::min(std::max(std::nearbyint(-lo / s), 0.0f), qmax) : 0.0f;
      if (cache) {
        cache->scale[gi] = s;
        cache->zero[gi] = z;
      }
      const int64_t begin = part.group_begin[k], end = part.group_begin[k + 1];
      if (s == 0.0f) {
        for (int64_t i = begin; i < end; ++i) y[cols[i]] = 0.0f;
        continue;
      }
      for (int64_t i = begin; i < end; ++i) {
        const float q = std::min(std::max(std::nearbyint(x[cols[i]] / s) + z, 0.0f), qmax);
        y[cols[i]] = (q - z) * s;
      }
    }
  }
}

void LwcBackward(const Lwc& lwc, const float* w, const LwcCache& cache, const float* dw_q,
                 float* d_max_logit, float* d_min_logit) {
  CheckSizes(lwc);
  const float qmax = Qmax(lwc.bits);
  const ColumnPart& part = lwc.part;
  const int32_t* cols = part.cols.data();
  if (cache.scale.size() != lwc.x_min.size() || cache.zero.size() != lwc.x_min.size()) {
    throw ConfigError("LwcBackward: the cache is not from LwcForward of this LWC");
  }
  for (int64_t r = 0; r < lwc.n_out; ++r) {
    const float* x = w + r * part.n_in;      // (n_in,)
    const float* dy = dw_q + r * part.n_in;  // (n_in,)
    for (int64_t k = 0; k < part.n_groups; ++k) {
      const int64_t gi = r * part.n_groups + k;
      const float s = cache.scale[gi], z = cache.zero[gi];
      d_max_logit[gi] = 0.0f;
      d_min_logit[gi] = 0.0f;
      if (s == 0.0f) continue;
      double ds = 0;  // dL/ds over the group, in column order
      for (int64_t i = part.group_begin[k]; i < part.group_begin[k + 1]; ++i) {
        const float t = x[cols[i]] / s;
        const float r_t = std::nearbyint(t);
        const float q = r_t + z;
        const float dyds =
            (q >= 0.0f && q <= qmax) ? r_t - t : std::min(std::max(q, 0.0f), qmax) - z;
        ds += static_cast<double>(dy[cols[i]]) * static_cast<double>(dyds);
      }
      const float dhi = static_cast<float>(ds) / qmax, dlo = -dhi;
      const float c_max = Sigmoid(lwc.max_logit[gi]), c_min = Sigmoid(lwc.min_logit[gi]);
      if (c_max * lwc.x_max[gi] > 0.0f) {
        d_max_logit[gi] = dhi * lwc.x_max[gi] * c_max * (1.0f - c_max);
      }
      if (c_min * lwc.x_min[gi] < 0.0f) {
        d_min_logit[gi] = dlo * lwc.x_min[gi] * c_min * (1.0f - c_min);
      }
    }
  }
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
