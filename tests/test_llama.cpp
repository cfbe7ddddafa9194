// The engine against an independent PyTorch oracle (llm.c's test_gpt2 manner) and against
// central finite differences in double for every layer type.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "hiq/base/error.h"
#include "hiq/base/rng.h"  // RandomStream
#include "hiq/dist/pipeline.h"
#include "hiq/io/checkpoint.h"
#include "hiq/io/safetensors.h"
#include "hiq/model/llama.h"
#include "test_util.h"

namespace hiq {
namespace {

constexpr double kLogitsAbsTol = 1e-4;  // issue: logits within 1e-4 absolute
constexpr double kLossAbsTol = 1e-5;    // loss within 1e-5
constexpr double kGradRelTol = 1e-3;    // every weight gradient within 1e-3 relative (norm)
constexpr double kFiniteDiffStep = 1e-6;
constexpr double kFiniteDiffRelTol = 1e-5;

std::filesystem::path ModelDir() { return test::DataDir() / "stories260K"; }
std::filesystem::path OraclePath() {
  return test::DataDir() / "reference" / "stories260K-sample64.safetensors";
}

template <typename T>
double ModelForwardBackward(const Stage<T>& stage, const Sequence& seq, Stage<T>* grad,
                            Matrix<T>* logits) {
  return hiq::ModelForwardBackward<T>(stage, seq.tokens, seq.targets, grad, logits);
}

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

class OracleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    checkpoint_ = std::make_unique<Checkpoint>(ModelDir());
    oracle_ = std::make_unique<SafetensorsFile>(OraclePath());
    const LlamaConfig& c = checkpoint_->config();
    stage_ = LoadStage(*checkpoint_, 0, static_cast<int>(c.num_hidden_layers), true, true);
    tokens_ = oracle_->ReadInt32("tokens");
    ASSERT_EQ(tokens_.size(), 65u);
  }
  std::unique_ptr<Checkpoint> checkpoint_;
  std::unique_ptr<SafetensorsFile> oracle_;
  Stage<float> stage_;
  std::vector<int32_t> tokens_;
};

TEST_F(OracleTest, ForwardMatchesOracleLogitsAndLoss) {
  const Sequence seq = NextTokenSequence(tokens_);
  Matrix<float> logits;
  const double nll = ModelForwardBackward<float>(stage_, seq, nullptr, &logits);
  const std::vector<float> want = oracle_->ReadFloat("logits");
  ASSERT_EQ(static_cast<size_t>(logits.size()), want.size());
  double maxdiff = 0;
  for (int64_t i = 0; i < logits.size(); ++i) {
    maxdiff = std::max(maxdiff, std::abs(static_cast<double>(logits.data()[i]) -
                                         static_cast<double>(want[static_cast<size_t>(i)])));
  }
  std::printf("logits: OK if below %g, maxdiff = %.3g\n", kLogitsAbsTol, maxdiff);
  EXPECT_LT(maxdiff, kLogitsAbsTol);
  const double loss = nll / 64.0;
  const double want_loss = static_cast<double>(oracle_->ReadFloat("loss").at(0));
  std::printf("loss: %.7f oracle %.7f\n", loss, want_loss);
  EXPECT_NEAR(loss, want_loss, kLossAbsTol);
}

TEST_F(OracleTest, BackwardMatchesOracleGradientOfEveryWeight) {
  const Sequence seq = NextTokenSequence(tokens_);
  Stage<float> grad = ZeroGradients(stage_);
  ModelForwardBackward<float>(stage_, seq, &grad, nullptr);
  int checked = 0;
  auto check = [&](const std::string& name, const Matrix<float>& g) {
    const double rel = RelativeError(g, oracle_->ReadFloat("grad." + name));
    EXPECT_LT(rel, kGradRelTol) << name;
    std::printf("grad %-45s rel err %.3g\n", name.c_str(), rel);
    ++checked;
  };
  // Tied embeddings: the table's gradient is the sum of its two uses.
  check("model.embed_tokens.weight", grad.embedding + grad.lm_head);
  for (size_t b = 0; b < grad.blocks.size(); ++b) {
    ForEachBlockTensor(grad.blocks[b], [&](const BlockTensor& t, Matrix<float>& g) {
      check(BlockTensorName(static_cast<int>(b), t.suffix), g);
    });
  }
  check("model.norm.weight", grad.final_norm);
  EXPECT_EQ(checked, 1 + 9 * 5 + 1);
}

// --- finite differences in double --------------------------------------------------------

LlamaConfig TinyGqaConfig() {
  LlamaConfig c;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.num_hidden_layers = 2;
  c.vocab_size = 11;
  c.max_position_embeddings = 32;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000;
  c.tie_word_embeddings = false;
  return c;
}

Matrix<double> RandomMatrix(int64_t rows, int64_t cols, RandomStream& rng, double std = 1) {
  Matrix<double> m(rows, cols);
  for (int64_t i = 0; i < m.size(); ++i) m.data()[i] = std * rng.Normal();
  return m;
}

// Checks d(objective)/d(x) at every coordinate of x against a central difference.
// `objective` recomputes the scalar from the current contents of x.
template <typename Func>
void ExpectGradientMatches(const char* what, Matrix<double>& x, const Matrix<double>& analytic,
                           Func&& objective) {
  ASSERT_EQ(x.size(), analytic.size()) << what;
  double worst = 0;
  for (int64_t i = 0; i < x.size(); ++i) {
    const double saved = x.data()[i];
    x.data()[i] = saved + kFiniteDiffStep;
    const double up = objective();
    x.data()[i] = saved - kFiniteDiffStep;
    const double down = objective();
    x.data()[i] = saved;
    const double numeric = (up - down) / (2 * kFiniteDiffStep);
    const double err = std::abs(numeric - analytic.data()[i]) /
                       std::max(1.0, std::abs(numeric) + std::abs(analytic.data()[i]));
    worst = std::max(worst, err);
  }
  EXPECT_LT(worst, kFiniteDiffRelTol) << what;
}

// Scalar probe: L = sum(out o R) for a fixed random R, so dL/dout = R.
double Probe(const Matrix<double>& out, const Matrix<double>& r) {
  return out.cwiseProduct(r).sum();
}

TEST(FiniteDifference, RmsNormBackwardMatches) {
  RandomStream rng(1, "test_llama");
  Matrix<double> x = RandomMatrix(5, 8, rng), w = RandomMatrix(1, 8, rng),
                 r = RandomMatrix(5, 8, rng);
  Matrix<double> out, rstd, dx, dw = Matrix<double>::Zero(1, 8);
  RmsNormForward(x, w, 1e-5, out, &rstd);
  RmsNormBackward(r, x, w, rstd, dx, dw);
  auto f = [&] {
    RmsNormForward<double>(x, w, 1e-5, out, nullptr);
    return Probe(out, r);
  };
  ExpectGradientMatches("dx", x, dx, f);
  ExpectGradientMatches("dw", w, dw, f);
}

TEST(FiniteDifference, RopeBackwardIsTheTransposeRotation) {
  const LlamaConfig c = TinyGqaConfig();
  RandomStream rng(2, "test_llama");
  const int64_t T = 6, D = c.head_dim();
  const Rope<double> rope = MakeRope<double>(c, T);
  Matrix<double> x = RandomMatrix(2 * T, 3 * D, rng), r = RandomMatrix(2 * T, 3 * D, rng);
  Matrix<double> dx = r;
  RopeApply(rope, T, D, /*inverse=*/true, dx);
  auto f = [&] {
    Matrix<double> y = x;
    RopeApply(rope, T, D, false, y);
    return Probe(y, r);
  };
  ExpectGradientMatches("dx", x, dx, f);
}

TEST(FiniteDifference, GroupedQueryAttentionBackwardMatches) {
  const LlamaConfig c = TinyGqaConfig();
  RandomStream rng(3, "test_llama");
  const int64_t T = 5, B = 2, D = c.head_dim();
  Matrix<double> q = RandomMatrix(B * T, 4 * D, rng), k = RandomMatrix(B * T, 2 * D, rng),
                 v = RandomMatrix(B * T, 2 * D, rng), r = RandomMatrix(B * T, 4 * D, rng);
  Matrix<double> att, y, dq, dk, dv;
  AttentionForward(c, T, q, k, v, att, y);
  AttentionBackward(c, T, q, k, v, att, r, dq, dk, dv);
  auto f = [&] {
    AttentionForward(c, T, q, k, v, att, y);
    return Probe(y, r);
  };
  ExpectGradientMatches("dq", q, dq, f);
  ExpectGradientMatches("dk", k, dk, f);
  ExpectGradientMatches("dv", v, dv, f);
}

TEST(FiniteDifference, SwiGluBackwardMatches) {
  RandomStream rng(4, "test_llama");
  Matrix<double> g = RandomMatrix(4, 7, rng), u = RandomMatrix(4, 7, rng),
                 r = RandomMatrix(4, 7, rng);
  Matrix<double> act, dg, du;
  SwiGluBackward(g, u, r, dg, du);
  auto f = [&] {
    SwiGluForward(g, u, act);
    return Probe(act, r);
  };
  ExpectGradientMatches("dgate", g, dg, f);
  ExpectGradientMatches("dup", u, du, f);
}

TEST(FiniteDifference, CrossEntropyBackwardMatchesAndSkipsUnpredictedRows) {
  RandomStream rng(5, "test_llama");
  Matrix<double> logits = RandomMatrix(4, 11, rng, 3.0), dlogits;
  const std::vector<int32_t> targets = {3, 0, -1, 10};
  CrossEntropyForward<double>(logits, targets, &dlogits, 0.25);
  EXPECT_EQ(dlogits.row(2).cwiseAbs().sum(), 0.0);
  ExpectGradientMatches("dlogits", logits, dlogits, [&] {
    return 0.25 * CrossEntropyForward<double>(logits, targets, nullptr, 1);
  });
}

TEST(FiniteDifference, EmbeddingBackwardAccumulatesRepeatedTokens) {
  RandomStream rng(6, "test_llama");
  Matrix<double> table = RandomMatrix(11, 4, rng), r = RandomMatrix(5, 4, rng), out;
  const std::vector<int32_t> tokens = {1, 7, 1, 0, 10};
  Matrix<double> dtable = Matrix<double>::Zero(11, 4);
  EmbeddingBackward(r, tokens, dtable);
  ExpectGradientMatches("dtable", table, dtable, [&] {
    EmbeddingForward(table, tokens, out);
    return Probe(out, r);
  });
}

TEST(FiniteDifference, BlockBackwardMatchesForEveryWeightAndInput) {
  const LlamaConfig c = TinyGqaConfig();
  Stage<double> stage = RandomStage<double>(c, 7);
  RandomStream rng(8, "test_llama");
  const int64_t T = 6, B = 2;
  const Rope<double> rope = MakeRope<double>(c, T);
  Matrix<double> x = RandomMatrix(B * T, c.hidden_size, rng),
                 r = RandomMatrix(B * T, c.hidden_size, rng);
  BlockWeights<double>& w = stage.blocks[0];
  BlockCache<double> cache;
  Matrix<double> out, dx;
  BlockWeights<double> grad = ZeroBlock<double>(c);
  BlockForward(c, w, rope, T, x, out, &cache);
  BlockBackward(c, w, rope, T, cache, r, dx, grad);
  auto f = [&] {
    BlockForward<double>(c, w, rope, T, x, out, nullptr);
    return Probe(out, r);
  };
  ExpectGradientMatches("dx", x, dx, f);
  ForEachBlockTensor(w, [&](const BlockTensor& t, Matrix<double>& m) {
    Matrix<double>* g = nullptr;
    ForEachBlockTensor(grad, [&](const BlockTensor& gt, Matrix<double>& gm) {
      if (&gt == &t) g = &gm;
    });
    ExpectGradientMatches(std::string(t.suffix).c_str(), m, *g, f);
  });
}

TEST(FiniteDifference, WholeModelWithUntiedHeadMatches) {
  const LlamaConfig c = TinyGqaConfig();
  Stage<double> stage = RandomStage<double>(c, 9);
  const std::vector<int32_t> ids = {1, 4, 9, 2, 2, 7, 10, 3};
  const Sequence seq = NextTokenSequence(ids);
  Stage<double> grad = ZeroGradients(stage);
  ModelForwardBackward<double>(stage, seq, &grad, nullptr);
  auto f = [&] { return ModelForwardBackward<double>(stage, seq, nullptr, nullptr) / 7.0; };
  ExpectGradientMatches("lm_head", stage.lm_head, grad.lm_head, f);
  ExpectGradientMatches("final_norm", stage.final_norm, grad.final_norm, f);
  ExpectGradientMatches("embedding", stage.embedding, grad.embedding, f);
  ExpectGradientMatches("block1.wk", stage.blocks[1].wk, grad.blocks[1].wk, f);
  ExpectGradientMatches("block0.w_down", stage.blocks[0].w_down, grad.blocks[0].w_down, f);
}

TEST(Decode, KvCachedStepsMatchTheFullForwardOfEveryPrefix) {
  const LlamaConfig c = TinyGqaConfig();
  const Stage<double> stage = RandomStage<double>(c, 12);
  RandomStream rng(13, "test_llama");
  const int64_t T = 9, B = 2;
  const Rope<double> rope = MakeRope<double>(c, T);
  const Matrix<double> x = RandomMatrix(B * T, c.hidden_size, rng);
  Matrix<double> full;
  BlockForward<double>(c, stage.blocks[0], rope, T, x, full, nullptr);
  KvCache<double> cache;
  for (int64_t pos = 0; pos < T; ++pos) {
    Matrix<double> step_in(B, c.hidden_size), step_out;
    for (int64_t b = 0; b < B; ++b) step_in.row(b) = x.row(b * T + pos);
    BlockDecodeStep(c, stage.blocks[0], rope, pos, step_in, step_out, cache);
    for (int64_t b = 0; b < B; ++b) {
      EXPECT_LT((step_out.row(b) - full.row(b * T + pos)).cwiseAbs().maxCoeff(), 1e-12)
          << "sequence " << b << " position " << pos;
    }
  }
}

// --- partition ----------------------------------------------------------------------------

TEST(PartitionBlocks, SlicesAreContiguousAndCoverEveryBlock) {
  Checkpoint checkpoint(ModelDir());
  for (int P = 1; P <= 5; ++P) {
    const Partition p = PartitionBlocks(checkpoint.config(), P);
    ASSERT_EQ(p.n_ranks(), P);
    EXPECT_EQ(p.first_block.front(), 0);
    EXPECT_EQ(p.first_block.back(), 5);
    for (int r = 0; r < P; ++r) EXPECT_LT(p.first_block[r], p.first_block[r + 1]);
  }
}

TEST(PartitionBlocks, MoreRanksThanBlocksIsAClearError) {
  Checkpoint checkpoint(ModelDir());
  EXPECT_THROW_MSG(PartitionBlocks(checkpoint.config(), 6), ConfigError,
                   "PartitionBlocks: 6 ranks for a model of 5 blocks; every rank must own at "
                   "least one block. HINT: run with at most 5 ranks");
}

}  // namespace
}  // namespace hiq
