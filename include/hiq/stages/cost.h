// hiq/stages/cost.h - candidates per layer and the measured cost terms the global solve minimises.
//
// A "layer" is one of the seven linear layers of a block; its global index is block * 7 + kind
// (hiq/model/llama.h's kLinears order). A plan gives each layer a candidate index into the ratios
// R. Candidate m of a layer keeps its top ceil(R_m * n_in) channels by Fisher score at b_H (the
// sets are nested) and the rest at b_L, quantized round-to-nearest (hiq/quant/quant.h).
//
// With UseGptqCandidates, candidate m is that layer quantized by GPTQ instead (same columns,
// same bits), on the Hessian of its full-precision inputs over the Fisher set.
//
// Cost terms (DESIGN.md 1.3), all in nats per predicted token of a fixed sequence set:
//   loss   D(l,m) = L(centre with layer l switched to m) - L(centre), measured end to end: the
//          job enters the pipeline at the rank owning l, from the cached input of l's block
//          under the centre model, and the downstream ranks run the suffix. Pairs (same block):
//          L(c + both) - L(c + l1) - L(c + l2) + L(c). The centre is a plan (the operating point,
//          default) or the full-precision model (the paper's).
//   local  the same switches scored at the block output: sum g.dY (g = dL/d(block output) under
//          the centre) plus alpha * 1/2 sum g^2 dY^2 + beta * sum dY^2, the two global
//          coefficients fitted by least squares to a few end-to-end switches.
//   fisher per-sequence projections s_n(l,m) = <dL_n/dW_l, Delta_{l,m}>, M = S^T S / N:
//          D = M_diag / 2, pairs = M off-diagonal (within a block; the solver has no cross-block
//          terms).
// Every rank measures the terms of its own layers; the pipeline broadcasts every job's result,
// so all ranks end with the same terms, whatever their number.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "hiq/config/config.h"  // CostMode
#include "hiq/dist/pipeline.h"  // Pipeline, Sequence
#include "hiq/model/llama.h"    // Linear, BlockWeights
#include "hiq/quant/gptq.h"     // GptqHessian
#include "hiq/quant/quant.h"    // QuantSpec
#include "hiq/solve/solver.h"   // PlanProblem

namespace hiq {

inline constexpr int kLinearsPerBlock = 7;
int LayerIndex(int block, Linear kind);
std::string LayerName(int layer);  // "model.layers.3.mlp.up_proj"

// A plan: one candidate index per global layer; nullopt stands for the full-precision model.
using Plan = std::vector<int>;

struct LayerCandidates {
  int64_t n_out = 0, n_in = 0;
  std::vector<std::vector<int32_t>> high_cols;  // per candidate, ascending column indices
  std::vector<double> bits;                     // per candidate, LayerBits
};

struct CostTerms {
  std::vector<std::vector<double>> diag;  // [layer][candidate]
  std::vector<PlanProblem::Pair> pairs;
  double centre_loss = 0;  // L(centre) on the set, nats/token
  int evaluations = 0;     // end-to-end loss evaluations spent
  double seconds = 0;
};

// Per local block, per kLinears entry, the n_in input-channel scores the candidates are cut
// from: what the plan keeps of the Fisher pass (and what its resume entry stores).
using ChannelScoreBlocks = std::vector<std::array<std::vector<double>, kNumLinears>>;

// The scores of this rank's layers from their accumulated Fisher diagonal (quant.score;
// hiq/quant/quant.h ChannelScores).
ChannelScoreBlocks ScoreChannels(const Stage<float>& stage,
                                 const std::vector<std::array<Matrix<float>, kNumLinears>>& fisher,
                                 ChannelScore score, const QuantSpec& spec);

// The quantization side of one rank: its layers' candidates, and the quantized blocks of any
// plan. Holds a reference to the pipeline (whose stage keeps the full-precision weights).
class CostModel {
 public:
  // `scores`: ScoreChannels of this rank's blocks.
  CostModel(Pipeline& pipeline, const QuantSpec& spec, std::vector<double> ratios,
            const ChannelScoreBlocks& scores);

  int n_layers() const { return n_layers_; }
  int n_candidates() const { return static_cast<int>(ratios_.size()); }
  const std::vector<double>& ratios() const { return ratios_; }
  const QuantSpec& spec() const { return spec_; }
  // Bits of every layer (all ranks know all shapes): [layer][candidate].
  const std::vector<std::vector<double>>& bits() const { return bits_; }
  double n_weights() const { return n_weights_; }
  // This rank's layers' candidates (global layer -> candidates; empty for other ranks' layers).
  const LayerCandidates* Local(int layer) const;

  // The largest fixed ratio whose bits fit the budget (nullopt if none fits).
  std::optional<Plan> FixedPlanWithin(double budget_bits) const;
  Plan FixedPlan(int candidate) const { return Plan(static_cast<size_t>(n_layers_), candidate); }
  double PlanBits(const Plan& plan) const;
  // Total bits if every layer kept ceil(ratio * n_in) channels (ratio need not be in R).
  double BitsAtRatio(double ratio) const;
  // (n_out, n_in) of every layer.
  const std::vector<std::pair<int64_t, int64_t>>& shapes() const { return shapes_; }

  // From here on a candidate's layer is quantized by GPTQ (hiq/quant/gptq.h, default options:
  // damping 0.01, no act-order) on the Hessian of the layer's full-precision inputs over `seqs`,
  // instead of round-to-nearest (config cost.candidates: gptq). Collective: one pipeline forward
  // at full precision. Each (layer, candidate) is quantized once, when first asked for, and kept
  // in its stored form (a byte a weight): the loss estimator asks for every candidate, which
  // then holds |R| / 4 times the rank's F32 weights.
  void UseGptqCandidates(const std::vector<Sequence>& seqs);
  // Bytes held for the GPTQ candidates: the Hessians and the layers quantized so far (0 without
  // UseGptqCandidates). The memory account predicts it (hiq/stages/memory.h GptqCandidateBytes).
  int64_t GptqBytes() const;

  // Local block `b` (0 = the rank's first) with every linear quantized as the plan says.
  BlockWeights<float> QuantizedBlock(size_t b, const Plan& plan) const;

  // Mean NLL per predicted token of each plan (nullopt = full precision) on `seqs`. Collective.
  std::vector<double> MeasurePlans(const std::vector<Sequence>& seqs,
                                   const std::vector<std::optional<Plan>>& plans);

  // Cost terms around `centre` (nullopt = full precision) on `seqs`. Collective.
  CostTerms Measure(CostMode mode, const std::vector<Sequence>& seqs,
                    const std::optional<Plan>& centre, bool pairs, int fit_switches);

 private:
  CostTerms MeasureLoss(const std::vector<Sequence>& seqs, const std::optional<Plan>& centre,
                        bool pairs);
  CostTerms MeasureLocal(const std::vector<Sequence>& seqs, const std::optional<Plan>& centre,
                         int fit_switches);
  CostTerms MeasureFisher(const std::vector<Sequence>& seqs, const std::optional<Plan>& centre,
                          bool pairs);
  std::vector<BlockWeights<float>> CentreBlocks(const std::optional<Plan>& centre) const;
  // The centre model on this rank: its blocks (empty = full precision), every local block's
  // input under it, and its summed NLL on the set.
  struct Centre {
    std::vector<BlockWeights<float>> blocks;
    BlockInputs inputs;
    double nll = 0;
    const BlockWeights<float>* Block(size_t b) const {
      return blocks.empty() ? nullptr : &blocks[b];
    }
  };
  Centre RunCentre(const std::vector<Sequence>& seqs, const std::optional<Plan>& centre);
  // A job's weights: the centre's, with the (layer, candidate) moves applied in `scratch` when
  // this rank owns their block (all moves lie in one block).
  std::vector<const BlockWeights<float>*> SwitchWeights(
      const Centre& centre, const std::vector<std::pair<int, int>>& moves,
      BlockWeights<float>& scratch) const;
  int CentreCandidate(const std::optional<Plan>& centre, int layer) const;
  void QuantizeLayerInto(int layer, int candidate, Matrix<float>& out) const;

  Pipeline& pipeline_;
  QuantSpec spec_;
  std::vector<double> ratios_;
  int n_layers_ = 0;
  std::vector<std::vector<double>> bits_;
  std::vector<std::pair<int64_t, int64_t>> shapes_;
  double n_weights_ = 0;
  std::vector<LayerCandidates> local_;  // indexed by global layer; empty outside this rank
  // With GPTQ candidates: each local layer's Hessian (indexed by global layer; n_in 0 outside
  // this rank), and the candidates quantized so far, by (layer, candidate).
  std::vector<GptqHessian> hessians_;
  mutable std::map<std::pair<int, int>, QuantizedLayer> gptq_layers_;
  static constexpr int kMicroBatch = 4;
};

}  // namespace hiq
