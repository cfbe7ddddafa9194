// The pipelined model under mpiexec (2, 3 and 4 ranks): gradients against the PyTorch oracle,
// and results bit-identical to the same model run whole in one process.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "hiq/base/rng.h"  // RandomStream
#include "hiq/dist/mpi.h"
#include "hiq/dist/pipeline.h"
#include "hiq/io/checkpoint.h"
#include "hiq/io/safetensors.h"
#include "hiq/model/llama.h"
#include "hiq/model/tensors.h"  // ModelTensors
#include "hiq/stages/eval.h"
#include "test_util.h"

namespace hiq {
namespace {

constexpr double kLossAbsTol = 1e-5;
constexpr double kGradRelTol = 1e-3;

std::filesystem::path ModelDir() { return test::DataDir() / "stories260K"; }

double RelativeError(const Matrix<float>& got, const std::vector<float>& want) {
  double diff = 0, norm = 0;
  for (int64_t i = 0; i < got.size(); ++i) {
    const double w = want[static_cast<size_t>(i)];
    const double d = static_cast<double>(got.data()[i]) - w;
    diff += d * d;
    norm += w * w;
  }
  return std::sqrt(diff / norm);
}

std::vector<Sequence> RandomSequences(int n, int64_t len, int32_t vocab, uint64_t seed) {
  RandomStream rng(seed, "RandomSequences");
  std::vector<Sequence> seqs;
  for (int s = 0; s < n; ++s) {
    std::vector<int32_t> ids(static_cast<size_t>(len) + 1);
    for (auto& t : ids) t = static_cast<int32_t>(rng.UniformInt(static_cast<uint64_t>(vocab)));
    seqs.push_back(NextTokenSequence(ids));
  }
  return seqs;
}

bool BitEqual(const Matrix<float>& a, const Matrix<float>& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         std::equal(a.data(), a.data() + a.size(), b.data());
}

TEST(Pipeline, GradientsMatchTheOracleOnEveryRank) {
  const Comm comm = Comm::World();
  Checkpoint checkpoint(ModelDir());
  SafetensorsFile oracle(test::DataDir() / "reference" / "stories260K-sample64.safetensors");
  Pipeline pipeline = LoadPipeline(comm, checkpoint);
  const std::vector<Sequence> seqs = {NextTokenSequence(oracle.ReadInt32("tokens"))};
  Matrix<float> embedding_grad, head_grad;
  int checked = 0;
  const std::vector<double> loss =
      pipeline.ForwardBackward(seqs, 1, /*weights=*/nullptr, [&](int, const Stage<float>& grad) {
        for (size_t b = 0; b < grad.blocks.size(); ++b) {
          BlockWeights<float> g = grad.blocks[b];
          ForEachBlockTensor(g, [&](const BlockTensor& t, Matrix<float>& m) {
            const std::string name =
                BlockTensorName(grad.block_begin + static_cast<int>(b), t.suffix);
            EXPECT_LT(RelativeError(m, oracle.ReadFloat("grad." + name)), kGradRelTol)
                << name << " on rank " << comm.rank();
            ++checked;
          });
        }
        if (pipeline.is_last()) {
          EXPECT_LT(RelativeError(grad.final_norm, oracle.ReadFloat("grad.model.norm.weight")),
                    kGradRelTol);
          head_grad = grad.lm_head;
        }
        if (pipeline.is_first()) embedding_grad = grad.embedding;
      });
  EXPECT_NEAR(loss[0], static_cast<double>(oracle.ReadFloat("loss").at(0)), kLossAbsTol);
  EXPECT_EQ(checked, 9 * (pipeline.stage().block_end - pipeline.stage().block_begin));
  // Tied embeddings: the table's gradient is its use as embedding plus its use as the head,
  // which live on the first and the last rank.
  if (comm.size() > 1 && pipeline.is_last()) {
    comm.Send(std::span<const float>(head_grad.data(), static_cast<size_t>(head_grad.size())), 0,
              99);
  }
  if (pipeline.is_first()) {
    if (comm.size() > 1) {
      head_grad.resize(embedding_grad.rows(), embedding_grad.cols());
      comm.Recv(std::span<float>(head_grad.data(), static_cast<size_t>(head_grad.size())),
                comm.size() - 1, 99);
    }
    EXPECT_LT(RelativeError(embedding_grad + head_grad,
                            oracle.ReadFloat("grad.model.embed_tokens.weight")),
              kGradRelTol);
  }
}

TEST(Pipeline, EachRankReadsOnlyTheTensorsOfItsOwnSlice) {
  const Comm comm = Comm::World();
  Checkpoint checkpoint(ModelDir());
  Pipeline pipeline = LoadPipeline(comm, checkpoint);
  const Stage<float>& stage = pipeline.stage();
  std::vector<std::string> own;
  for (const ModelTensor& t : ModelTensors(stage.config, {stage.block_begin, stage.block_end,
                                                          stage.has_embedding, stage.has_head})) {
    own.push_back(t.name);
  }
  // Tied embeddings: the last rank's head is its copy of the embedding table.
  if (stage.has_head && stage.config.tie_word_embeddings)
    own.push_back("model.embed_tokens.weight");
  std::sort(own.begin(), own.end());
  own.erase(std::unique(own.begin(), own.end()), own.end());
  EXPECT_EQ(checkpoint.TouchedTensors(), own) << "rank " << comm.rank() << " of " << comm.size();
}

TEST(Pipeline, PerplexityIsBitIdenticalToTheWholeModelInOneProcess) {
  const Comm comm = Comm::World();
  Checkpoint checkpoint(ModelDir());
  Pipeline pipeline = LoadPipeline(comm, checkpoint);
  std::vector<int32_t> stream(7 * 96 + 5);
  RandomStream rng(11, "stream");
  for (auto& t : stream) t = static_cast<int32_t>(rng.UniformInt(512));
  const std::vector<Sequence> windows = PerplexityWindows(stream, 96, 0, "random");
  ASSERT_EQ(windows.size(), 7u);
  const PerplexityResult piped = Perplexity(pipeline, windows, 2);

  const Stage<float> whole = LoadStage(checkpoint, 0, 5, true, true);
  double nll_sum = 0;
  for (const Sequence& w : windows) {
    nll_sum += ModelForwardBackward<float>(whole, w.tokens, w.targets, nullptr, nullptr);
  }
  EXPECT_EQ(piped.nll_sum, nll_sum) << "ranks=" << comm.size();
  EXPECT_EQ(piped.tokens, 7 * 95);
}

// The quantize stage keeps only each rank's first block input and runs the later ones itself:
// BlockForwardRows at the pass's micro-batch must give the rows the pipeline stores, bit for bit,
// or the shards would depend on where the rank boundaries fall. 7 sequences: the last
// micro-batch of 3 is short.
TEST(Pipeline, TheFirstBlockInputAndBlockForwardRowsGiveEveryBlockInputBitForBit) {
  const Comm comm = Comm::World();
  Checkpoint checkpoint(ModelDir());
  Pipeline pipeline = LoadPipeline(comm, checkpoint);
  const std::vector<Sequence> seqs = RandomSequences(7, 48, 512, 9);
  constexpr int kMicroBatch = 3;
  BlockInputs every, first;
  first.first_only = true;
  pipeline.ForwardJobs(seqs, {0}, JobWeights(), nullptr, &every, kMicroBatch);
  pipeline.ForwardJobs(seqs, {0}, JobWeights(), nullptr, &first, kMicroBatch);
  const Stage<float>& stage = pipeline.stage();
  ASSERT_EQ(every.per_block.size(), stage.blocks.size());
  ASSERT_EQ(first.per_block.size(), 1u);
  ASSERT_TRUE(BitEqual(first.per_block[0], every.per_block[0]));
  const Rope<float> rope = MakeRope<float>(stage.config, 48);
  Matrix<float> x = first.per_block[0], next;
  for (size_t b = 0; b + 1 < stage.blocks.size(); ++b) {
    BlockForwardRows(stage.config, stage.blocks[b], rope, 48, x, next, kMicroBatch);
    EXPECT_TRUE(BitEqual(next, every.per_block[b + 1]))
        << "block " << stage.block_begin + static_cast<int>(b) + 1 << ", ranks=" << comm.size();
    x = next;
  }
}

// The first tensor in which two blocks differ in any bit ("" when none).
std::string FirstDifference(BlockWeights<float> a, BlockWeights<float> b) {
  std::vector<Matrix<float>*> b_list;
  ForEachBlockTensor(b, [&](const BlockTensor&, Matrix<float>& m) { b_list.push_back(&m); });
  std::string first;
  size_t i = 0;
  ForEachBlockTensor(a, [&](const BlockTensor& t, Matrix<float>& m) {
    if (first.empty() && !BitEqual(m, *b_list[i])) first = t.suffix;
    ++i;
  });
  return first;
}

// Runs `pipeline` at `weights` (this rank's blocks) and expects every sequence's loss and
// gradients to equal, bit for bit, those of `whole` (the whole model at the same weights) in
// one process.
void ExpectGradientsOfTheWholeModel(Pipeline& pipeline, const Stage<float>& whole,
                                    const JobWeights& weights) {
  const std::vector<Sequence> seqs = RandomSequences(3, 40, 512, 5);
  std::vector<Stage<float>> want;
  std::vector<double> want_loss;
  for (const Sequence& s : seqs) {
    Stage<float> g = ZeroGradients(whole);
    want_loss.push_back(ModelForwardBackward<float>(whole, s.tokens, s.targets, &g, nullptr) /
                        static_cast<double>(s.n_predictions()));
    want.push_back(std::move(g));
  }
  int calls = 0;
  auto check = [&](int s, const Stage<float>& grad) {
    EXPECT_EQ(s, calls++) << "gradients must arrive in sample order";
    for (size_t b = 0; b < grad.blocks.size(); ++b) {
      const Stage<float>& exp = want[static_cast<size_t>(s)];
      EXPECT_EQ(
          FirstDifference(grad.blocks[b], exp.blocks[static_cast<size_t>(grad.block_begin) + b]),
          "")
          << "block " << grad.block_begin + b;
    }
  };
  const std::vector<double> loss = pipeline.ForwardBackward(seqs, 2, weights, check);
  EXPECT_EQ(calls, 3);
  for (size_t s = 0; s < seqs.size(); ++s) EXPECT_EQ(loss[s], want_loss[s]);
}

TEST(Pipeline, PerSequenceGradientsAreBitIdenticalToTheWholeModel) {
  const Comm comm = Comm::World();
  Checkpoint checkpoint(ModelDir());
  Pipeline pipeline = LoadPipeline(comm, checkpoint);
  ExpectGradientsOfTheWholeModel(pipeline, LoadStage(checkpoint, 0, 5, true, true), nullptr);
}

// Gradients at other weights (as around a quantized centre) come from the weights passed in,
// forward and backward, and leave the stage's own untouched.
TEST(Pipeline, GradientsAtGivenWeightsAreThoseOfTheWholeModelAtThem) {
  const Comm comm = Comm::World();
  Checkpoint checkpoint(ModelDir());
  Pipeline pipeline = LoadPipeline(comm, checkpoint);
  const BlockWeights<float> own_first = pipeline.stage().blocks[0];
  Stage<float> whole = LoadStage(checkpoint, 0, 5, true, true);
  for (size_t b = 0; b < whole.blocks.size(); ++b) {
    const float scale = 0.75f + 0.125f * static_cast<float>(b);
    ForEachBlockTensor(whole.blocks[b], [&](const BlockTensor&, Matrix<float>& m) { m *= scale; });
  }
  const Stage<float>& stage = pipeline.stage();
  const std::vector<BlockWeights<float>> local(whole.blocks.begin() + stage.block_begin,
                                               whole.blocks.begin() + stage.block_end);
  ExpectGradientsOfTheWholeModel(pipeline, whole, [&](int job) {
    EXPECT_EQ(job, 0);
    std::vector<const BlockWeights<float>*> w;
    for (const BlockWeights<float>& block : local) w.push_back(&block);
    return w;
  });
  EXPECT_EQ(FirstDifference(pipeline.stage().blocks[0], own_first), "");
}

}  // namespace
}  // namespace hiq
