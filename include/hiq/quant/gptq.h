// hiq/quant/gptq.h - GPTQ (Frantar et al., "GPTQ: Accurate Post-Training Quantization for
// Generative Pre-trained Transformers", arXiv 2210.17323) for one linear layer, into hiq's stored
// form, with the high-impact columns of a candidate (hiq/quant/quant.h) at bits_high.
//
// What it does. Given W (n_out, n_in) and H = (2/N) sum_n x_n x_n^T over the layer's calibration
// inputs, GPTQ quantizes W one column at a time and spreads each column's rounding error over
// the columns not yet quantized, through the upper Cholesky factor of H^-1, minimising
// ||X W_q^T - X W^T||^2 greedily. The semantics are those of the reference, IST-DASLab/gptq
// (gptq.py GPTQ.add_batch and GPTQ.fasterquant; quant.py quantize):
//   - dead columns (H_jj == 0, an input that is always 0) get H_jj = 1 and W_j = 0;
//   - damping: percdamp x mean(diag H) is added to the diagonal;
//   - U = cholesky(cholesky_inverse(cholesky(H)), upper), computed as the reference does;
//   - lazy batch updates: columns are taken in blocks of block_size (128); inside a block each
//     column's error updates the rest of the block, and the columns after the block are updated
//     once per block by one matrix product, W[:, i2:] -= Err1 U[i1:i2, i2:];
//   - a group's parameters (scale, zero) are chosen when its first column is reached, from the
//     weights as the lazy scheme holds them then: the reference reads W[:, group] (not the block
//     copy W1), so they carry every finished block's updates but not those of the earlier
//     columns of the current block;
//   - act-order (optional): columns taken in order of descending diag H.
// hiq's differences, all forced by its stored form or its candidates:
//   - the quantizer is hiq's (ChooseGroupParams: range holding 0, FP16 scale rounded up), so the
//     result is a QuantizedLayer exactly as QuantizeLayer stores one (codes, FP16 scales, zeros)
//     and Dequantize gives the GPTQ weights bit for bit;
//   - the low columns are taken first (in increasing index order, or by act-order among
//     themselves), the high-impact columns LAST (by index or act-order among themselves), at
//     bits_high; their one per-row group's parameters are chosen when the first high column is
//     reached, from the error-updated weights of all high columns. bits_high == 16 rounds them
//     to FP16 (round to nearest even); the error is still spread over the high columns left;
//   - hiq's low groups are fixed sets of columns (low columns in index order, cut g at a time).
//     Act-order takes them out of that order, so with act-order the groups are STATIC, as the
//     reference's static_groups option makes them: every low group's parameters are chosen up
//     front from the original (dead-column-zeroed) weights. static_groups asks for that without
//     act-order too. Without either, group parameters follow the rule above;
//   - ties in act-order's sort keep the lower column first (torch.argsort is not stable);
//   - with one group per row (group_size 0) the reference chooses the parameters before it
//     zeroes the dead columns; here they are chosen after, as for every other group.
//
// Precision. H and its factorisation are double. H of real activations is ill-conditioned
// (outlier channels, as in LLaMA's down_proj inputs, and near-dependent channels), and the
// reference forms H^-1 explicitly and factors it again, which loses about twice the digits a
// single factorisation would: in float32's 7 digits the second Cholesky can fail or return a
// factor with few correct digits; in double's 16 the damping is there for the statistics, not
// for the arithmetic. hiq gets the reference's factor U = chol(H^-1, upper) without forming
// H^-1, as J chol(J H J)^-1 J (J reverses the order; the upper factor is unique): one Cholesky
// and one triangular solve against I, 4/3 n_in^3 flops in double against the reference's 8/3
// (Eigen has no trtri, so the inverse is a full solve). Factoring is O(n_in^3) once per layer,
// against O(n_out n_in^2) for the error updates, which run in float (the reference's
// precision) through Eigen, which hands the products to OpenBLAS (bench/bench_gptq.cpp).
//
// Determinism and threads: no state, no threads of its own. GptqHessian adds its rows in the
// order given, one product per call (so the same rows split into different calls give a
// slightly different H); every product goes to OpenBLAS, whose result does not depend on its
// thread count with the kernels hiq pins (hiq/model/blas.h); GptqQuantize's per-row loops run
// in a fixed order. Results are therefore the same for any thread count on one kind of CPU.
// Thread-safety: functions are reentrant; a GptqHessian is a plain value (no sharing).
//
// Errors: ConfigError for a bad spec or options; FormatError for non-finite or out-of-range
// weights, a Hessian of the wrong size or with a non-finite entry, or bad high_cols;
// NumericalError when H + damping cannot be factored even after raising the damping
// (GptqOptions::max_damp_retries times by 10 each), naming the last damping tried.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "hiq/model/llama.h"  // Matrix
#include "hiq/quant/quant.h"  // QuantSpec, QuantizedLayer

namespace hiq {

// The layer's Hessian H = (2/N) sum x x^T over the N calibration rows added so far, kept as a
// running mean exactly as the reference's add_batch: for m new rows X (m, n_in),
//   H *= N / (N + m);  N += m;  X *= sqrt(2 / N);  H += X^T X.
// (The reference counts a (batch, seq, hidden) input as `batch` samples, not batch x seq rows;
// that scales H by a constant, which GPTQ's result does not depend on.)
// The product X^T X is taken in float through sgemm, the reference's precision; the running
// mean is kept in double, so that rescaling over many calls does not accumulate rounding and
// the factorisation starts from the double matrix.
struct GptqHessian {
  Matrix<double> h;    // (n_in, n_in), symmetric
  int64_t n_rows = 0;  // N, the rows added so far

  GptqHessian() = default;
  explicit GptqHessian(int64_t n_in);  // H = 0, N = 0; ConfigError if n_in < 0
  int64_t n_in() const { return h.rows(); }

  // Adds the m rows of x (m, n_in) row-major. FormatError naming the row and column of a
  // non-finite value (nothing is added then).
  void AddRows(const float* x, int64_t m);
};

struct GptqOptions {
  double percdamp = 0.01;      // damping = percdamp x mean(diag H), >= 0
  int64_t block_size = 128;    // columns per lazy batch update, >= 1
  bool act_order = false;      // columns by descending diag H (implies static groups)
  bool static_groups = false;  // low groups' parameters from the original weights, up front
  int max_damp_retries = 3;    // on a failed Cholesky: damping x10 and retry, this many times
};

// GPTQ of one layer: high_cols at spec.bits_high, the other columns at spec.bits_low, in hiq's
// stored form (groups as in hiq/quant/quant.h).
//   w         (n_out, n_in)  row-major, finite, |w| <= kMaxAbsWeight
//   h         (n_in, n_in)   the layer's GptqHessian (only its lower triangle and diagonal are
//                            read after the dead-column fix, as by the reference's Cholesky)
//   high_cols (n_high,)      strictly increasing column indices in [0, n_in)
//   log       if given, one line is appended per damping retry ("GptqQuantize: ...\n")
// With H = identity (or any diagonal H without a zero on its diagonal) the result is
// QuantizeLayer's, bit for bit: no error is spread, and every group sees the original weights.
QuantizedLayer GptqQuantize(const float* w, int64_t n_out, int64_t n_in, const GptqHessian& h,
                            std::span<const int32_t> high_cols, const QuantSpec& spec,
                            const GptqOptions& options, std::string* log = nullptr);

}  // namespace hiq
