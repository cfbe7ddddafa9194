#include "hiq/stages/fisher.h"

#include <span>

#include "hiq/base/error.h"   // NumericalError
#include "hiq/base/finite.h"  // FirstNonFinite, ValueName, IndexName

namespace hiq {

FisherBlocks ZeroFisher(const Stage<float>& stage) {
  FisherBlocks fisher(stage.blocks.size());
  for (size_t b = 0; b < stage.blocks.size(); ++b) {
    for (size_t k = 0; k < kLinears.size(); ++k) {
      const Matrix<float>& w = stage.blocks[b].linear(kLinears[k]);
      fisher[b][k] = Matrix<float>::Zero(w.rows(), w.cols());
    }
  }
  return fisher;
}

void AddSquaredGradient(const Stage<float>& grad, FisherBlocks& fisher) {
  for (size_t b = 0; b < grad.blocks.size(); ++b) {
    for (size_t k = 0; k < kLinears.size(); ++k) {
      fisher[b][k].array() += grad.blocks[b].linear(kLinears[k]).array().square();
    }
  }
}

namespace {

// A NaN in one sequence's gradient would make every later score of the layer NaN, and the
// candidates built from them arbitrary; the layer and the sequence say where it arose.
void CheckGradient(const Stage<float>& grad, int sequence) {
  for (size_t b = 0; b < grad.blocks.size(); ++b) {
    for (size_t k = 0; k < kLinears.size(); ++k) {
      const Matrix<float>& g = grad.blocks[b].linear(kLinears[k]);
      const int64_t bad = FirstNonFinite(std::span<const float>(g.data(), g.size()));
      if (bad < 0) continue;
      const int block = grad.block_begin + static_cast<int>(b);
      const int64_t shape[2] = {g.rows(), g.cols()};
      throw NumericalError("fisher: the gradient of " + LayerName(LayerIndex(block, kLinears[k])) +
                           " on sequence " + std::to_string(sequence) + " is " +
                           ValueName(g.data()[bad]) + " at " + IndexName(bad, shape));
    }
  }
}

}  // namespace

FisherBlocks ComputeFisher(Pipeline& pipeline, const std::vector<Sequence>& seqs) {
  FisherBlocks fisher = ZeroFisher(pipeline.stage());
  // Two sequences in flight keep neighbouring ranks busy; more would only cost cache memory.
  pipeline.ForwardBackward(seqs, 2, /*weights=*/nullptr, [&](int s, const Stage<float>& grad) {
    CheckGradient(grad, s);
    AddSquaredGradient(grad, fisher);
  });
  return fisher;
}

}  // namespace hiq
