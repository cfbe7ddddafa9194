// hiq/quant/recon.h - block reconstruction (DESIGN.md 1.5): the quantization parameters of one
// transformer block's linear layers trained jointly against the full-precision block output.
//
// Methods:
//   kHybrid   the paper's: AdaRound (hiq/quant/adaround.h) on the high-impact columns at
//             bits_high on the RTN grid + LWC (hiq/quant/lwc.h) on the low columns at bits_low;
//             bits_high == 16 keeps the high columns in FP16 (then it is kLwc).
//   kLwc      LWC on the low columns; the high columns by RTN at bits_high, or FP16 at 16.
//   kAdaRound AdaRound on every column on the RTN grid: low at bits_low, high at bits_high
//             (FP16 high columns stay FP16).
// Training (ReconTrainer below) follows OmniQuant (quantize/omniquant.py: batch 1, epochs x
// samples steps, AdamW lr 1e-2 for LWC, parameters fixed after the block) and BRECQ
// (quant/block_recon.py: Adam lr 1e-3 for V, regulariser 0.01 with beta 20 -> 2 after a 20%
// warm-up without it). One step:
//   1. the fake-quantized block: learned columns from LwcForward / AdaRoundForward (soft), the
//      fixed ones (RTN or FP16 high columns) from the RTN layer, norms unchanged;
//   2. the engine's BlockForward (hiq/model/llama.h) on `batch` sequences with a BlockCache;
//   3. loss = (1/rows) sum over the rows and C of (out - target)^2 (BRECQ's lp_loss: the squared
//      error summed over a token's features, averaged over tokens) + the AdaRound regulariser;
//   4. BlockBackward gives dL/dW_q of every linear layer; LwcBackward / AdaRoundBackward chain
//      it into the logits and V; AdamStep updates them.
// Sequences are visited epoch by epoch, each epoch a Fisher-Yates shuffle of [0, S) driven by
// the one seeded stream, RandomStream(seed, "reconstruction", block) (hiq/base/rng.h), j =
// UniformInt(i + 1).
// The result is the stored form (QuantizedLayer) of each linear: LWC's part through
// QuantizeLayer with the learned clip factors (FP16 scales rounded up), AdaRound's part as its
// hard codes on the RTN grid. Deterministic: the same inputs give bit-identical layers and report
// (no threads of its own; sums in double in row order; BLAS threads are pinned by the caller).
// Owns nothing beyond its return values; thread-safe for distinct calls. Errors: ConfigError for
// bad options, specs or shapes; FormatError for bad weights or column lists (as QuantizeLayer).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "hiq/model/llama.h"
#include "hiq/quant/gptq.h"  // GptqHessian
#include "hiq/quant/quant.h"

namespace hiq {

enum class ReconMethod { kHybrid, kLwc, kAdaRound };

struct ReconOptions {
  ReconMethod method = ReconMethod::kHybrid;
  int64_t steps = 5120;  // 40 epochs x 128 samples (OmniQuant's W2 schedule)
  int64_t batch = 1;     // sequences per step
  float lwc_lr = 1e-2f;  // AdamW
  float lwc_weight_decay = 0.0f;
  float lwc_init = 4.0f;   // initial logits
  float round_lr = 1e-3f;  // Adam on V
  float round_lambda = 0.01f;
  float beta_start = 20.0f, beta_end = 2.0f;
  float warmup = 0.2f;  // fraction of steps without the regulariser
  uint64_t seed = 0;
  int block = 0;  // the block's index: with seed, picks the sequence order
};
void ValidateReconOptions(const ReconOptions& options);

// One linear layer's plan: its high-impact columns (ascending) and spec.
struct ReconLayer {
  std::vector<int32_t> high_cols;
  QuantSpec spec;
};

struct ReconReport {
  // Block output MSE (mean over rows and C of (out - target)^2) on the calibration rows:
  double rtn_mse = 0;    // every layer by QuantizeLayer (RTN)
  double init_mse = 0;   // the stored form before any step (LWC logits at init, V at frac)
  double final_mse = 0;  // the stored form after training
  // The same on the held-out rows (NaN when none were given).
  double rtn_heldout_mse = 0, init_heldout_mse = 0, final_heldout_mse = 0;
  std::vector<double> step_loss;  // (steps,) each step's reconstruction term (step 3 above)
};

struct ReconResult {
  std::array<QuantizedLayer, kNumLinears> layers;  // kLinears order
  ReconReport report;
};

// w: the block in full precision; x (S * T, C): the block's cached full-precision inputs, S
// sequences of seq_len = T tokens; layers (kNumLinears,) in kLinears order; x_heldout (S' * T, C)
// or null. The targets are BlockForward(w, x), computed once.
ReconResult ReconstructBlock(const LlamaConfig& config, const BlockWeights<float>& w,
                             int64_t seq_len, const Matrix<float>& x,
                             std::span<const ReconLayer> layers, const ReconOptions& options,
                             const Matrix<float>* x_heldout = nullptr);

// The training state of one block, for callers that drive the steps themselves (the benchmark):
// ReconstructBlock is Step over ReconOrder, then Store. Keeps references to config and w, which
// must outlive it; owns the fake-quantized block, the gradients, the engine cache and the learned
// parameters with their optimiser states. Not thread-safe; move-only.
class ReconTrainer {
 public:
  ReconTrainer(const LlamaConfig& config, const BlockWeights<float>& w, int64_t seq_len,
               std::span<const ReconLayer> layers, const ReconOptions& options);
  ~ReconTrainer();
  ReconTrainer(ReconTrainer&&) noexcept;
  ReconTrainer& operator=(ReconTrainer&&) noexcept;

  // One step (1 above) on x, target (B * T, C), t = 1..options.steps (the beta schedule).
  // Returns the reconstruction term of the loss.
  double Step(const Matrix<float>& x, const Matrix<float>& target, int64_t t);
  // The stored form of the current parameters, and of RTN (kLinears order).
  std::array<QuantizedLayer, kNumLinears> Store() const;
  std::array<QuantizedLayer, kNumLinears> Rtn() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// w with every linear replaced by Dequantize(layers[i]) (kLinears order), norms copied.
BlockWeights<float> DequantizedBlock(const BlockWeights<float>& w,
                                     std::span<const QuantizedLayer> layers);
// Mean over rows and C of (BlockForward(w, x) - target)^2, in double in row order;
// x, target (S * T, C).
double BlockOutputMse(const LlamaConfig& config, const BlockWeights<float>& w, int64_t seq_len,
                      const Matrix<float>& x, const Matrix<float>& target);

// The block's full-precision output for x (S * T, C) into `target` (resized) when given, and
// with `hessians` each linear's GptqHessian of its input rows (kLinears order, replaced): the
// cost model's GPTQ candidates need only the Hessians, not an S * T * C copy. BlockForward on
// micro_batch sequences at a time (a whole 7B block's cache would be S * NH * T * T floats of
// attention alone), each sequence added to the running mean by itself, in order, as the GPTQ
// reference adds one sample at a time.
void BlockTargetAndHessians(const LlamaConfig& config, const BlockWeights<float>& w,
                            int64_t seq_len, const Matrix<float>& x, int64_t micro_batch,
                            Matrix<float>* target, std::vector<GptqHessian>* hessians);

// The order of the sequences for `steps * batch` draws: epochs of Fisher-Yates shuffles of
// [0, n_seq) as above, concatenated. (steps * batch,)
std::vector<int64_t> ReconOrder(uint64_t seed, int block, int64_t n_seq, int64_t draws);

}  // namespace hiq
