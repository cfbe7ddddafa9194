// hiq/quant/lwc.h - OmniQuant's learnable weight clipping (LWC) of one part of a layer: forward
// (the fake-quantized weight) beside backward (dL/dw_q -> dL/d logits).
//
// Reference: OmniQuant (Shao et al., ICLR 2024), OpenGVLab/OmniQuant quantize/quantizer.py
// (UniformAffineQuantizer with lwc=True) and quantize/omniquant.py. Per group of the part
// (hiq/quant/learn.h), two logits a (max) and b (min), initialised to `init` (4.0 as OmniQuant):
//   c_max = sigmoid(a), c_min = sigmoid(b)
//   hi = max(c_max * max(x), 0), lo = min(c_min * min(x), 0)
//   s  = (hi - lo) / qmax, z = clamp(rne(-lo / s), 0, qmax)            (z carries no gradient)
//   q  = clamp(rne(x / s) + z, 0, qmax), w_q = (q - z) * s            (STE on rne(x / s) only)
// The stored layer is QuantizeLayer(w, ..., LayerClip{LwcClip(lwc)}) (hiq/quant/quant.h), and the
// forward above is that quantizer as far as it is differentiable. It differs in two places only:
//   1. the stored scale is s rounded UP to an FP16 value (and z is computed from that scale); the
//      training forward uses s unrounded (rounding would make dL/ds zero almost everywhere). The
//      relative difference in s is below 2^-10.
//   2. a constant group (min == max) is stored as fp16(c) whatever the clip; training treats it
//      like any other group (an all-zero group has s = 0: w_q = 0, no gradient).
// Where OmniQuant differs from hiq: it does not widen the range to hold 0, and clamps s to
// [1e-5, 1e4]; hiq's quantizer keeps 0 in the range (as GPTQ), so the training forward does too.
// Backward, with r = rne(x / s) and z fixed: dw_q/ds = r - x / s where rne(x / s) + z lies in
// [0, qmax] (torch.clamp passes the gradient at the bounds), else q - z; ds/dhi = 1 / qmax,
// ds/dlo = -1 / qmax; dhi/da = max(x) c_max (1 - c_max) where c_max max(x) > 0, else 0 (likewise
// lo and b). Per-group sums are in double (four interleaved partial sums in column order,
// added pairwise), so the result is fixed for given inputs.
// Plain value, owns its arrays; functions are pure and thread-safe on distinct outputs;
// deterministic. Errors: ConfigError for bits outside 1..8 or mismatched sizes.
#pragma once

#include <cstdint>
#include <vector>

#include "hiq/quant/learn.h"
#include "hiq/quant/quant.h"

namespace hiq {

// LWC of one part of a layer (n_out, n_in): group (r, k) at index r * part.n_groups + k.
struct Lwc {
  ColumnPart part;
  int64_t n_out = 0;
  int bits = 2;
  std::vector<float> x_min, x_max;          // (n_out * n_groups,) unclipped extremes, fixed
  std::vector<float> max_logit, min_logit;  // (n_out * n_groups,) a and b: what is learned
};
// w (n_out, n_in) row-major.
Lwc LwcInit(const ColumnPart& part, const float* w, int64_t n_out, int bits, float init = 4.0f);

// What the forward keeps for the backward: each group's s and z (s = 0 for an all-zero group),
// and c_max, c_min, so that the backward computes no sigmoid of its own.
struct LwcCache {
  std::vector<float> scale, zero;   // (n_out * n_groups,)
  std::vector<float> c_max, c_min;  // (n_out * n_groups,)
};
// w (n_out, n_in) -> w_q (n_out, n_in): writes the part's columns only. cache may be null.
void LwcForward(const Lwc& lwc, const float* w, float* w_q, LwcCache* cache);
// dw_q (n_out, n_in) = dL/dw_q (only the part's columns are read) ->
// d_max_logit, d_min_logit (n_out * n_groups,) = dL/da, dL/db, overwritten.
void LwcBackward(const Lwc& lwc, const float* w, const LwcCache& cache, const float* dw_q,
                 float* d_max_logit, float* d_min_logit);
// The learned factors for QuantizeLayer: (n_out * n_groups,) {sigmoid(a), sigmoid(b)}.
std::vector<GroupClip> LwcClip(const Lwc& lwc);

}  // namespace hiq
