// hiq/quant/quant.h - round-to-nearest quantizer, high-impact candidates, exact bit accounting.
//
// The numerics every later stage shares (DESIGN.md 1.1-1.2): an asymmetric uniform quantizer,
// a candidate Q_{l,m}(W) that keeps a set of high-impact input channels (columns of a weight
// W (n_out, n_in), row-major, HF layout) at b_H bits and the rest at b_L bits, Fisher channel
// scores, and the one bit count used wherever bits are reported. docs/BITS.md has the why.
// Pure functions: no MPI, no model, no state; thread-safe and deterministic (row-order sums,
// fixed rounding; hiq never changes the FE_TONEAREST rounding mode). Errors: a bad spec, ratio or
// count throws ConfigError; non-finite or out-of-range data, bad column lists throw FormatError.
//
// The quantizer, one group x of values at b bits, qmax = 2^b - 1:
//   1. lo = min(clip.min_factor * min(x), 0), hi = max(clip.max_factor * max(x), 0). The range
//      holds 0 (as in GPTQ), so the zero point fits in b bits and the grid covers the group.
//   2. scale = (hi - lo) / qmax rounded UP to an FP16 value: shards store FP16 scales, so the
//      weights made here are bit for bit what a shard dequantizes to, and rounding up keeps the
//      grid spanning [lo, hi]: |x - Q(x)| <= scale / 2 inside it. zero = clamp(rne(-lo / scale),
//      0, qmax). Constant group (min == max == c): scale = |c| rounded to nearest FP16 (1 if
//      that is 0), zero = (c < 0 ? 1 : 0), so Q(x) = fp16(c), exact when c is an FP16 value.
//   3. code = clamp(rne(x / scale) + zero, 0, qmax), Q(x) = (code - zero) * scale, in float.
//      rne = std::nearbyint = round half to even (as torch.round): one instruction when
//      vectorised, and the same answer as the PyTorch quantizers hiq is compared against.
//
// Groups of a candidate, per row (the packed shard stores codes and scales in this order):
//   low part:  the columns NOT in high_cols, in increasing index order, cut g at a time (the last
//              group may be shorter; g = 0: one group) -> GroupCount(n_low, g) groups per row.
//   high part: the columns in high_cols (ascending) form one group -> one scale/zero per row;
//              bits_high == 16 keeps them as FP16 (RoundToFp16 of hiq/base/fp16.h, nearest
//              even), no scale/zero.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace hiq {

// Largest |w| accepted: then hi - lo <= 65504, so every scale and FP16 value stays finite.
inline constexpr float kMaxAbsWeight = 32752.0f;

// How one linear layer is quantized. Plain value; ValidateQuantSpec throws ConfigError naming
// the field ("QuantSpec.bits_low = 9, expected 1..8").
struct QuantSpec {
  int bits_low = 2;         // b_L, 1..8
  int bits_high = 3;        // b_H, 1..8, or 16: keep the high-impact columns in FP16
  int64_t group_size = 64;  // g >= 0 along the low columns of a row; 0 = one group per row
  bool high_fp16() const { return bits_high == 16; }
};
void ValidateQuantSpec(const QuantSpec& spec);

// One group's quantization parameters. scale is an FP16 value > 0; zero is in [0, 2^b - 1].
struct GroupParams {
  float scale = 1.0f;
  int32_t zero = 0;
  bool operator==(const GroupParams&) const = default;  // exact: scales are FP16 values
};
// Clipping of a group's range (OmniQuant LWC: xmax = max_factor * max, xmin = min_factor * min).
// Factors in [0, 1]; {1, 1} is plain min/max. Ignored for a constant group.
struct GroupClip {
  float max_factor = 1.0f;
  float min_factor = 1.0f;
};

// Parameters for a group whose (unclipped) extremes are x_min <= x_max, finite (steps 1-2 above).
// Throws ConfigError for bits outside 1..8 or a factor outside [0, 1]; FormatError when the
// clipped range needs a scale beyond FP16's 65504.
GroupParams ChooseGroupParams(float x_min, float x_max, int bits, GroupClip clip = {});

// Groups in a segment of n values cut g at a time: ceil(n / g); g = 0 -> 1 (0 when n == 0).
int64_t GroupCount(int64_t n, int64_t group_size);

// Quantize-dequantize one contiguous row segment in groups of group_size (ggml-style pair: the
// _ref scalar path is the specification, the other is the fast path; identical bit for bit).
//   x       (n,)          input, finite with |x| <= kMaxAbsWeight (else output is unspecified)
//   clip    (n_groups,)   per-group clipping, or nullptr for none; n_groups = GroupCount(n, g)
//   y       (n,)          Q(x); may alias x
//   codes   (n,)          optional (nullptr): codes in [0, 2^bits - 1]
//   params  (n_groups,)   optional (nullptr): each group's scale and zero
// Throws ConfigError for bits outside 1..8 or group_size < 0 (and as ChooseGroupParams).
void FakeQuantizeRowGroupsRef(const float* x, int64_t n, int64_t group_size, int bits,
                              const GroupClip* clip, float* y, uint8_t* codes, GroupParams* params);
void FakeQuantizeRowGroups(const float* x, int64_t n, int64_t group_size, int bits,
                           const GroupClip* clip, float* y, uint8_t* codes, GroupParams* params);

// One linear layer in its stored form: what a shard holds, and what every quantizer (RTN here;
// GPTQ, LWC and AdaRound choose codes or clipping their own way) produces. Groups as above.
struct QuantizedLayer {
  int64_t n_out = 0, n_in = 0;
  QuantSpec spec;
  std::vector<int32_t> high_cols;        // (n_high,) ascending column indices
  std::vector<uint8_t> low_codes;        // (n_out, n_low) row-major, each < 2^bits_low
  std::vector<GroupParams> low_params;   // (n_out, GroupCount(n_low, g))
  std::vector<uint8_t> high_codes;       // (n_out, n_high), each < 2^bits_high (bits_high <= 8)
  std::vector<GroupParams> high_params;  // (n_out,) (bits_high <= 8 and n_high > 0)
  std::vector<float> high_fp16;          // (n_out, n_high) FP16 values (bits_high == 16)
  int64_t n_high() const { return static_cast<int64_t>(high_cols.size()); }
  int64_t n_low() const { return n_in - n_high(); }
};

// Per-group clipping (LWC's factors), or nullptr for plain min/max:
//   low   (n_out, GroupCount(n_low, g))   high  (n_out,)   (ignored for bits_high == 16)
struct LayerClip {
  const GroupClip* low = nullptr;
  const GroupClip* high = nullptr;
};

// Round-to-nearest: high_cols at spec.bits_high, the other columns at spec.bits_low.
//   w         (n_out, n_in)  row-major, finite, |w| <= kMaxAbsWeight
//   high_cols (n_high,)      strictly increasing column indices in [0, n_in); empty = plain b_L
// Throws FormatError naming the row/column of a bad weight or the bad index, ConfigError for a
// bad spec. Single-threaded: callers parallelise over layers.
QuantizedLayer QuantizeLayer(const float* w, int64_t n_out, int64_t n_in,
                             std::span<const int32_t> high_cols, const QuantSpec& spec,
                             const LayerClip& clip = {});
// The fake-quantized weight of a stored layer: (code - zero) * scale per element, in float.
//   w_out (n_out, n_in) row-major
void Dequantize(const QuantizedLayer& q, float* w_out);
// Every array has its size, every code and zero its range, every scale is a positive FP16 value,
// every FP16 value is one; FormatError naming `where`, the array and the first bad element.
void ValidateQuantizedLayer(const QuantizedLayer& q, const std::string& where);
// Bits of what is stored, counted from the arrays (LayerBits must equal it; tests check that).
int64_t StoredBits(const QuantizedLayer& q);

// The candidate Q_{l,m}(W) as a weight: Dequantize(QuantizeLayer(w, ...)), in place allowed.
//   w_q_out   (n_out, n_in)  row-major; may be w itself
void QuantizeCandidate(const float* w, int64_t n_out, int64_t n_in,
                       std::span<const int32_t> high_cols, const QuantSpec& spec, float* w_q_out);

// Channel scores s_j (n_in,), summed in double over rows in increasing order:
//   kFisher:       s_j = sum_i F_ij
//   kFisherImpact: s_j = sum_i F_ij * (W_ij - Q_bL(W)_ij)^2, Q_bL = the plain b_L quantizer on all
//                  columns with spec.group_size (no high part).
//   fisher (n_out, n_in) finite and >= 0;  w (n_out, n_in), read only for kFisherImpact.
enum class ScoreKind { kFisher, kFisherImpact };
std::vector<double> ChannelScores(const float* fisher, const float* w, int64_t n_out, int64_t n_in,
                                  ScoreKind kind, const QuantSpec& spec);

// The k highest-scoring channels (ties: lower index first), returned in ascending index order.
// One total order serves every k, so the sets for increasing k are nested. Throws ConfigError
// for k outside [0, scores.size()], FormatError for a NaN score.
std::vector<int32_t> TopChannels(std::span<const double> scores, int64_t k);

// ceil(ratio * n_in) for ratio in [0, 1]; a product within 1e-9 above an integer counts as that
// integer, so 0.1 * 640 gives 64 whatever the rounding of 0.1. Throws ConfigError otherwise.
int64_t HighCount(double ratio, int64_t n_in);

// Exact storage of one quantized layer, in bits, term by term (docs/BITS.md):
//   low_codes   n_out * n_low * b_L                         (n_low = n_in - n_high)
//   low_params  n_out * GroupCount(n_low, g) * (16 + b_L)   FP16 scale + b_L-bit zero per group
//   high_codes  n_out * n_high * b_H                        (b_H = 16: FP16 values)
//   high_params n_out * (16 + b_H) if n_high > 0 and b_H != 16, else 0
//   indices     n_high * IndexBits(n_in)                    uint16 or uint32 column indices
// Per-layer metadata (shape, spec, n_high) is O(1) per layer and not counted.
struct LayerBitsTerms {
  int64_t low_codes = 0, low_params = 0, high_codes = 0, high_params = 0, indices = 0;
  int64_t total() const { return low_codes + low_params + high_codes + high_params + indices; }
};
LayerBitsTerms LayerBitsBreakdown(int64_t n_out, int64_t n_in, int64_t n_high,
                                  const QuantSpec& spec);
// The one bit count used wherever bits are reported: LayerBitsBreakdown(...).total().
int64_t LayerBits(int64_t n_out, int64_t n_in, int64_t n_high, const QuantSpec& spec);
// Width of one stored channel index: 16 if n_in <= 65536, else 32.
int IndexBits(int64_t n_in);

// Average bits per weight over layers: sum of LayerBits / sum of n_out * n_in. ConfigError when
// there are no weights or a layer's counts are invalid.
struct LayerSize {
  int64_t n_out = 0, n_in = 0, n_high = 0;
};
double AverageBits(std::span<const LayerSize> layers, const QuantSpec& spec);

}  // namespace hiq
