// hiq/stages/fisher.h - the empirical Fisher diagonal of the linear weights (DESIGN.md 1.1).
//
// F += (dL_n/dW)^2 for every calibration sequence n, L_n its mean next-token cross-entropy. The
// pipeline computes each sequence's gradient on the rank owning the layer, and the squares are
// added in sample order, so F is bit-identical for any rank count. F scores input channels:
// hiq/quant/quant.h ChannelScores turns it into the candidates' high-impact sets.
#pragma once

#include <array>
#include <vector>

#include "hiq/dist/pipeline.h"  // Pipeline, Sequence
#include "hiq/model/llama.h"    // BlockWeights, Matrix, kLinears

namespace hiq {

// Per local block, per kLinears entry, F (n_out, n_in).
using FisherBlocks = std::vector<std::array<Matrix<float>, kNumLinears>>;

// Zeroed accumulators shaped like the stage's linear weights.
FisherBlocks ZeroFisher(const Stage<float>& stage);

// fisher += grad^2 for every linear weight of every local block.
void AddSquaredGradient(const Stage<float>& grad, FisherBlocks& fisher);

// Forward + backward over `seqs` (collective), accumulating this rank's Fisher diagonal.
FisherBlocks ComputeFisher(Pipeline& pipeline, const std::vector<Sequence>& seqs);

}  // namespace hiq
