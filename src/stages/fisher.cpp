#include "hiq/stages/fisher.h"

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

FisherBlocks ComputeFisher(Pipeline& pipeline, const std::vector<Sequence>& seqs) {
  FisherBlocks fisher = ZeroFisher(pipeline.stage());
  // Two sequences in flight keep neighbouring ranks busy; more would only cost cache memory.
  pipeline.ForwardBackward(seqs, 2, /*weights=*/nullptr, [&](int, const Stage<float>& grad) {
    AddSquaredGradient(grad, fisher);
  });
  return fisher;
}

}  // namespace hiq
