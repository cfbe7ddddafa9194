// hiq/quant/learn.h - what the learned quantizers (LWC, AdaRound) share: the part of a layer one
// of them covers, and the Adam(W) optimiser that trains them.
//
// A part is a set of columns of a weight W (n_out, n_in) and their groups, laid out exactly as
// hiq/quant/quant.h stores them: the low part is the columns not in high_cols, ascending, cut g
// at a time per row; the high part is the high_cols, one group per row; the whole layer (no high
// columns) is the low part of an empty high_cols. So (row r, group k) of a part is
// QuantizedLayer::low_params[r * n_groups + k] (or high_params[r]).
// AdamW follows torch.optim.AdamW (decoupled weight decay, bias-corrected moments, eps added to
// sqrt(v_hat)); with weight_decay 0 it is torch.optim.Adam.
// Plain values and pure functions, no state beyond the arguments; thread-safe on distinct objects;
// deterministic (element order, no reductions). Errors: bad column lists throw FormatError and bad
// sizes ConfigError, as QuantizeLayer.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

namespace hiq {

// The columns of a layer one learned quantizer covers, and their group within a row.
struct ColumnPart {
  int64_t n_in = 0;                  // columns of the whole layer
  std::vector<int32_t> cols;         // (n_cols,) ascending column indices of the part
  std::vector<int64_t> group_begin;  // (n_groups + 1,) group k is cols[group_begin[k] ..
                                     //   group_begin[k + 1]) of every row
  int64_t n_groups = 0;              // groups per row
  int64_t n_cols() const { return static_cast<int64_t>(cols.size()); }
};
// The low part (columns not in high_cols, groups of group_size, 0 = one group) and the high part
// (high_cols, one group). high_cols strictly increasing in [0, n_in).
ColumnPart LowPart(int64_t n_in, std::span<const int32_t> high_cols, int64_t group_size);
ColumnPart HighPart(int64_t n_in, std::span<const int32_t> high_cols);

// Per-group extremes of a part of w (n_out, n_in): x_min, x_max (n_out * n_groups,) row-major.
void PartMinMax(const ColumnPart& part, const float* w, int64_t n_out, std::vector<float>& x_min,
                std::vector<float>& x_max);

// 2^bits - 1 for bits in 1..8; ConfigError naming `who` otherwise.
float LearnedQmax(const char* who, int bits);
// 1 / (1 + exp(-x)) in float: the one sigmoid of the learned quantizers.
inline float Sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

struct AdamOptions {
  float lr = 1e-3f;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  float weight_decay = 0.0f;  // decoupled (AdamW); 0 = Adam
};
// The moments of one parameter vector; step counts the updates made.
struct AdamState {
  std::vector<float> m, v;  // (n,)
  int64_t step = 0;
};
// One update of p (n,) with gradient g (n,); state is sized on the first call.
void AdamStep(const AdamOptions& options, std::span<float> p, std::span<const float> g,
              AdamState& state);

}  // namespace hiq
