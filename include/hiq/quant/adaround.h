// hiq/quant/adaround.h - AdaRound on one part of a layer with fixed (scale, zero) per group:
// forward (the soft-rounded weight) beside backward, the rounding regulariser, hard codes.
//
// Reference: Nagel et al., "Up or Down? Adaptive Rounding for Post-Training Quantization" (ICML
// 2020), as yhhhli/BRECQ implements it: quant/adaptive_rounding.py (AdaRoundQuantizer,
// 'learned_hard_sigmoid') and quant/block_recon.py (LossFunction, LinearTempDecay).
// Per element, with s, z the group's parameters (from QuantizeLayer / ChooseGroupParams: the RTN
// grid, FP16 scales) and one learned V:
//   h(V) = clip(sigmoid(V) (zeta - gamma) + gamma, 0, 1),  zeta = 1.1, gamma = -0.1
//   w_q  = (clamp(floor(w / s) + h(V) + z, 0, qmax) - z) * s          (soft, while training)
//   code = clamp(floor(w / s) + [h(V) >= 0.5] + z, 0, qmax)           (hard, at the end)
// V starts where h(V) = frac(w / s) (BRECQ: V = -log((zeta - gamma) / (rest - gamma) - 1)), so the
// soft weight starts at w wherever w lies on the grid's range. Backward: dw_q/dh = s where the
// clamp is inactive (bounds included, as torch.clamp), dh/dV = sigmoid'(V) (zeta - gamma) where
// the clip is inactive. Regulariser R = lambda * sum(1 - |2h - 1|^beta); beta follows BRECQ's
// LinearTempDecay (AdaRoundBeta). Hard codes differ from RTN's rne only where h ends on the other
// side of 0.5 (and at exact ties, which floor + [h >= 0.5] rounds up).
// Plain value, owns its arrays; functions pure, thread-safe on distinct outputs, deterministic
// (R is summed in double in element order). Errors: ConfigError for bits outside 1..8 or
// mismatched sizes.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "hiq/quant/learn.h"
#include "hiq/quant/quant.h"

namespace hiq {

inline constexpr float kAdaRoundZeta = 1.1f;
inline constexpr float kAdaRoundGamma = -0.1f;

// AdaRound of one part of a layer (n_out, n_in); element (r, i) of the part, i < part.n_cols(),
// at index r * part.n_cols() + i (the order of QuantizedLayer's codes).
struct AdaRound {
  ColumnPart part;
  int64_t n_out = 0;
  int bits = 2;
  std::vector<GroupParams> params;  // (n_out * n_groups,) fixed
  std::vector<float> w_floor;       // (n_out * n_cols,) floor(w / s), fixed
  std::vector<float> v;             // (n_out * n_cols,) V: what is learned
};
// w (n_out, n_in) row-major; params (n_out * part.n_groups,), e.g. QuantizeLayer's low_params
// for LowPart or high_params for HighPart.
AdaRound AdaRoundInit(const ColumnPart& part, const float* w, int64_t n_out, int bits,
                      std::span<const GroupParams> params);

// Soft forward: writes the part's columns of w_q (n_out, n_in).
void AdaRoundForward(const AdaRound& ar, float* w_q);
// dw_q (n_out, n_in) (the part's columns are read) -> dv (n_out * n_cols,) = dL/dV + dR/dV,
// overwritten; beta == 0 leaves R out (the warm-up). One pass: sigmoid(V) is computed once.
void AdaRoundBackward(const AdaRound& ar, const float* dw_q, float beta, float lambda, float* dv);
// R = lambda * sum(1 - |2 h - 1|^beta) over the part; when dv is given, ADDS dR/dV into it.
double AdaRoundRegularizer(const AdaRound& ar, float beta, float lambda, float* dv);
// Hard codes (n_out * n_cols,), each < 2^bits, and their weight: writes the part's columns of
// w_q (n_out, n_in) when w_q is not null.
std::vector<uint8_t> AdaRoundCodes(const AdaRound& ar, float* w_q);

// BRECQ's schedule at step t of t_max (t counted from 1), with d = rne(warmup * t_max) warm-up
// steps: no regulariser (returns 0) while t < d; then
// beta = end + (start - end) * max(0, 1 - (t - d) / (t_max - d))  (BRECQ's decay_start = 0).
float AdaRoundBeta(int64_t t, int64_t t_max, float warmup, float start = 20.0f, float end = 2.0f);

}  // namespace hiq
