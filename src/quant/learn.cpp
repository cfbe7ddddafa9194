// Parts of a layer and Adam(W) for the learned quantizers (see hiq/quant/learn.h).
#include "hiq/quant/learn.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "hiq/base/error.h"
#include "hiq/model/blas.h"   // ParallelRows
#include "hiq/quant/quant.h"  // GroupCount

namespace hiq {
namespace {

void CheckCols(const char* fn, int64_t n_in, std::span<const int32_t> high_cols) {
  if (n_in < 0) throw ConfigError(std::string(fn) + ": n_in = " + std::to_string(n_in));
  for (size_t k = 0; k < high_cols.size(); ++k) {
    const int32_t c = high_cols[k];
    if (c < 0 || c >= n_in || (k > 0 && c <= high_cols[k - 1])) {
      throw FormatError(
          std::string(fn) + ": high_cols[" + std::to_string(k) + "] = " + std::to_string(c) +
          ", expected strictly increasing indices in [0, " + std::to_string(n_in) + ")");
    }
  }
}

}  // namespace

float LearnedQmax(const char* who, int bits) {
  if (bits < 1 || bits > 8) {
    throw ConfigError(std::string(who) + ": bits = " + std::to_string(bits) + ", expected 1..8");
  }
  return static_cast<float>((1 << bits) - 1);
}

ColumnPart LowPart(int64_t n_in, std::span<const int32_t> high_cols, int64_t group_size) {
  CheckCols("LowPart", n_in, high_cols);
  if (group_size < 0) {
    throw ConfigError("LowPart: group_size = " + std::to_string(group_size) + ", expected >= 0");
  }
  ColumnPart part;
  part.n_in = n_in;
  size_t h = 0;
  for (int32_t c = 0; c < n_in; ++c) {
    if (h < high_cols.size() && high_cols[h] == c) {
      ++h;
      continue;
    }
    part.cols.push_back(c);
  }
  const int64_t n = part.n_cols();
  part.n_groups = GroupCount(n, group_size);
  const int64_t g = group_size == 0 ? n : group_size;
  for (int64_t k = 0; k < part.n_groups; ++k) part.group_begin.push_back(k * g);
  part.group_begin.push_back(n);
  return part;
}

ColumnPart HighPart(int64_t n_in, std::span<const int32_t> high_cols) {
  CheckCols("HighPart", n_in, high_cols);
  ColumnPart part;
  part.n_in = n_in;
  part.cols.assign(high_cols.begin(), high_cols.end());
  part.n_groups = part.cols.empty() ? 0 : 1;
  part.group_begin.push_back(0);
  if (part.n_groups == 1) part.group_begin.push_back(part.n_cols());
  return part;
}

void PartMinMax(const ColumnPart& part, const float* w, int64_t n_out, std::vector<float>& x_min,
                std::vector<float>& x_max) {
  const size_t n = static_cast<size_t>(n_out * part.n_groups);
  x_min.assign(n, 0.0f);
  x_max.assign(n, 0.0f);
  for (int64_t r = 0; r < n_out; ++r) {
    const float* row = w + r * part.n_in;  // (n_in,)
    for (int64_t k = 0; k < part.n_groups; ++k) {
      const int64_t begin = part.group_begin[k], end = part.group_begin[k + 1];
      float mn = row[part.cols[begin]], mx = mn;
      for (int64_t i = begin + 1; i < end; ++i) {
        mn = std::min(mn, row[part.cols[i]]);
        mx = std::max(mx, row[part.cols[i]]);
      }
      x_min[r * part.n_groups + k] = mn;
      x_max[r * part.n_groups + k] = mx;
    }
  }
}

void AdamStep(const AdamOptions& o, std::span<float> p, std::span<const float> g,
              AdamState& state) {
  if (g.size() != p.size()) {
    throw ConfigError("AdamStep: " + std::to_string(p.size()) + " parameters but " +
                      std::to_string(g.size()) + " gradients");
  }
  if (state.m.empty()) {
    state.m.assign(p.size(), 0.0f);
    state.v.assign(p.size(), 0.0f);
  }
  ++state.step;
  const float t = static_cast<float>(state.step);
  const float bc1 = 1.0f - std::pow(o.beta1, t);
  const float bc2_sqrt = std::sqrt(1.0f - std::pow(o.beta2, t));
  const float step_size = o.lr / bc1;
  const float decay = 1.0f - o.lr * o.weight_decay;
  // Plain locals: a store through m, v or p could alias a field of o, which would keep the loop
  // from vectorising.
  const float beta1 = o.beta1, beta2 = o.beta2, eps = o.eps;
  float* m = state.m.data();
  float* v = state.v.data();
  float* x = p.data();
  const float* dx = g.data();
  ParallelRows(static_cast<int64_t>(p.size()), 1, [=](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      m[i] = beta1 * m[i] + (1.0f - beta1) * dx[i];
      v[i] = beta2 * v[i] + (1.0f - beta2) * dx[i] * dx[i];
      const float denom = std::sqrt(v[i]) / bc2_sqrt + eps;
      x[i] = x[i] * decay - step_size * m[i] / denom;
    }
  });
}

}  // namespace hiq
