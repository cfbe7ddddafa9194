// GPTQ (hiq/quant/gptq.h): the Hessian's running mean, RTN bit for bit on an identity Hessian,
// a lower held-out output error than RTN on every linear layer of the real stories260K block 0,
// dead columns, act-order, the stored form, and the damping retry and its failure.
#include <gtest/gtest.h>

#include <Eigen/Cholesky>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "hiq/base/error.h"
#include "hiq/io/checkpoint.h"
#include "hiq/io/tokenizer.h"
#include "hiq/model/llama.h"
#include "hiq/quant/gptq.h"
#include "hiq/quant/quant.h"
#include "test_util.h"

namespace hiq {
namespace {

// H from several AddRows calls against (2/N) X^T X in double: float products of 100 rows.
constexpr double kHessianRelTol = 1e-6;
// GPTQ must beat RTN: its held-out output error over RTN's stays below this.
constexpr double kMaxErrorRatio = 1.0;
// Real calibration: windows of the held-out TinyStories text through block 0; the first half
// accumulates H, the second half measures the output error.
constexpr int64_t kSeqLen = 64;
constexpr int64_t kWindowsPerHalf = 32;
constexpr double kHighRatio = 0.10;
constexpr int64_t kGroupSize = 32;
// The lazy, float GPTQ against a textbook one in double (no lazy batches): the share of weights
// that come out identical, and the relative gap of their held-out output errors. Not bit for
// bit: float and double round differently, and one flipped code changes what follows it.
constexpr double kOracleMinSameWeights = 0.99;
constexpr double kOracleErrorRelTol = 0.01;

Matrix<float> RandomMatrix(int64_t rows, int64_t cols, uint32_t seed, float stddev) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  Matrix<float> m(rows, cols);
  for (int64_t i = 0; i < m.size(); ++i) m.data()[i] = normal(rng);
  return m;
}

GptqHessian HessianOf(const Matrix<float>& x) {
  GptqHessian h(x.cols());
  h.AddRows(x.data(), x.rows());
  return h;
}

// ||X W_q^T - X W^T||^2 in double, X (N, n_in), W and W_q (n_out, n_in).
double OutputError(const Matrix<float>& x, const Matrix<float>& w, const QuantizedLayer& q) {
  Matrix<float> wq(w.rows(), w.cols());
  Dequantize(q, wq.data());
  const Matrix<double> d = (wq.cast<double>() - w.cast<double>());
  return (x.cast<double>() * d.transpose()).squaredNorm();
}

void ExpectSameLayer(const QuantizedLayer& a, const QuantizedLayer& b, const std::string& what) {
  SCOPED_TRACE(what);
  EXPECT_EQ(a.high_cols, b.high_cols);
  EXPECT_EQ(a.low_codes, b.low_codes);
  EXPECT_EQ(a.high_codes, b.high_codes);
  EXPECT_EQ(a.high_fp16, b.high_fp16);
  EXPECT_TRUE(a.low_params == b.low_params);
  EXPECT_TRUE(a.high_params == b.high_params);
}

// The stored form is valid and counts LayerBits.
void ExpectValidStoredForm(const QuantizedLayer& q, const std::string& what) {
  EXPECT_NO_THROW(ValidateQuantizedLayer(q, what));
  EXPECT_EQ(StoredBits(q), LayerBits(q.n_out, q.n_in, q.n_high(), q.spec)) << what;
}

std::vector<int32_t> HighColsByDiag(const GptqHessian& h, double ratio) {
  std::vector<double> diag(static_cast<size_t>(h.n_in()));
  for (int64_t j = 0; j < h.n_in(); ++j) diag[static_cast<size_t>(j)] = h.h(j, j);
  return TopChannels(diag, HighCount(ratio, h.n_in()));
}

TEST(GptqHessian, IsTheRunningMeanOfTwoOverNTimesXtX) {
  const Matrix<float> x = RandomMatrix(100, 16, 1, 1.0f);
  GptqHessian h(16);
  int64_t row = 0;
  for (int64_t m : {7, 30, 63}) {
    h.AddRows(x.data() + row * 16, m);
    row += m;
  }
  ASSERT_EQ(h.n_rows, 100);
  const Matrix<double> want = (2.0 / 100.0) * x.cast<double>().transpose() * x.cast<double>();
  EXPECT_LT((h.h - want).norm() / want.norm(), kHessianRelTol);
}

TEST(GptqHessian, RejectsANonFiniteRowAndKeepsItsState) {
  Matrix<float> x = RandomMatrix(4, 3, 2, 1.0f);
  x(2, 1) = std::numeric_limits<float>::quiet_NaN();
  GptqHessian h(3);
  EXPECT_THROW_MSG(h.AddRows(x.data(), 4), FormatError,
                   "GptqHessian::AddRows: x (row 2, column 1) is nan, expected finite");
  EXPECT_EQ(h.n_rows, 0);
  EXPECT_EQ(h.h.squaredNorm(), 0.0);
}

// With H = I no error is spread (U is diagonal) and every group sees the original weights.
TEST(Gptq, IdentityHessianGivesRtnBitForBit) {
  constexpr int64_t kOut = 12, kIn = 300;  // n_in > 128: three lazy blocks
  const Matrix<float> w = RandomMatrix(kOut, kIn, 3, 0.02f);
  GptqHessian h(kIn);
  h.h.setIdentity();
  const std::vector<int32_t> none, some = {0, 5, 6, 127, 128, 200, 299};
  for (const QuantSpec& spec : {QuantSpec{2, 3, 32}, QuantSpec{3, 4, 0}, QuantSpec{2, 16, 64},
                                QuantSpec{4, 8, 7}, QuantSpec{1, 2, 300}}) {
    for (const std::vector<int32_t>* high : {&none, &some}) {
      const QuantizedLayer rtn = QuantizeLayer(w.data(), kOut, kIn, *high, spec);
      for (bool act_order : {false, true}) {
        for (int64_t block : {128, 5}) {
          GptqOptions options;
          options.act_order = act_order;
          options.block_size = block;
          const std::string what =
              "b" + std::to_string(spec.bits_low) + "/" + std::to_string(spec.bits_high) + " g" +
              std::to_string(spec.group_size) + " high " + std::to_string(high->size()) + " act " +
              std::to_string(act_order) + " block " + std::to_string(block);
          ExpectSameLayer(GptqQuantize(w.data(), kOut, kIn, h, *high, spec, options), rtn, what);
        }
      }
    }
  }
}

// Block 0 of the real stories260K model on real text: the inputs of each linear layer, for the
// calibration half and the held-out half of the windows.
class GptqRealBlock : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const Checkpoint checkpoint(test::DataDir() / "stories260K");
    stage_ = new Stage<float>(LoadStage(checkpoint, 0, 1, true, false));
    const Tokenizer tokenizer(test::DataDir() / "stories260K" / "tokenizer.model");
    const std::vector<int32_t> tokens =
        TokenizeFile(tokenizer, test::DataDir() / "text" / "tinystories" / "valid-head30KB.txt",
                     Newlines::kKeep);
    ASSERT_GE(static_cast<int64_t>(tokens.size()), 2 * kWindowsPerHalf * kSeqLen);
    const Rope<float> rope = MakeRope<float>(stage_->config, kSeqLen);
    for (int half = 0; half < 2; ++half) {
      const int64_t n = kWindowsPerHalf * kSeqLen;
      const std::span<const int32_t> window(tokens.data() + half * n, static_cast<size_t>(n));
      Matrix<float> x, out;
      EmbeddingForward(stage_->embedding, window, x);
      BlockForward(stage_->config, stage_->blocks[0], rope, kSeqLen, x, out, &cache_[half]);
    }
  }
  static void TearDownTestSuite() {
    delete stage_;
    stage_ = nullptr;
  }
  // The input of `kind`'s linear layer: half 0 calibrates, half 1 is held out.
  static const Matrix<float>& Input(Linear kind, int half) {
    return LinearInput(cache_[half], kind);
  }
  static const Matrix<float>& Weight(Linear kind) { return stage_->blocks[0].linear(kind); }

  static Stage<float>* stage_;
  static BlockCache<float> cache_[2];
};
Stage<float>* GptqRealBlock::stage_ = nullptr;
BlockCache<float> GptqRealBlock::cache_[2];

struct Comparison {
  double gptq = 0, rtn = 0;
  double ratio() const { return gptq / rtn; }
};

// GPTQ and RTN of one layer with the high columns chosen by diag H, measured on x_held.
Comparison Compare(const Matrix<float>& w, const Matrix<float>& x_calib,
                   const Matrix<float>& x_held, const QuantSpec& spec, const GptqOptions& options,
                   const std::string& what) {
  const GptqHessian h = HessianOf(x_calib);
  const std::vector<int32_t> high = HighColsByDiag(h, kHighRatio);
  const QuantizedLayer gptq = GptqQuantize(w.data(), w.rows(), w.cols(), h, high, spec, options);
  const QuantizedLayer rtn = QuantizeLayer(w.data(), w.rows(), w.cols(), high, spec);
  ExpectValidStoredForm(gptq, what);
  return Comparison{OutputError(x_held, w, gptq), OutputError(x_held, w, rtn)};
}

std::string SpecName(const QuantSpec& spec) {
  return "W" + std::to_string(spec.bits_low) + "/" + std::to_string(spec.bits_high) + " g" +
         std::to_string(spec.group_size);
}

TEST_F(GptqRealBlock, GptqBeatsRtnOnEveryLinearLayerAtW2AndW3) {
  for (int bits : {2, 3}) {
    const QuantSpec spec{bits, bits + 1, kGroupSize};
    for (Linear kind : kLinears) {
      const std::string what = SpecName(spec) + " " + std::string(LinearName(kind));
      const Comparison c = Compare(Weight(kind), Input(kind, 0), Input(kind, 1), spec, {}, what);
      std::printf("%-24s held-out output error: gptq %.6g rtn %.6g ratio %.4f\n", what.c_str(),
                  c.gptq, c.rtn, c.ratio());
      EXPECT_LT(c.ratio(), kMaxErrorRatio) << what;
    }
  }
}

// Textbook GPTQ (the paper's Algorithm 1, every later column updated after each column) in
// double, low columns then high ones in `order` (positions), low groups static (RTN's
// parameters: the original weights), the high group chosen on the updated weights when reached.
Matrix<float> TextbookGptq(const Matrix<float>& w, const Matrix<double>& h,
                           const std::vector<int32_t>& order, const QuantizedLayer& rtn) {
  const int64_t n_out = w.rows(), n = w.cols(), n_high = rtn.n_high(), n_low = rtn.n_low();
  const int64_t g = rtn.spec.group_size, n_groups = GroupCount(n_low, g);
  std::vector<int64_t> slot(static_cast<size_t>(n));
  for (int64_t j = 0, low = 0, high = 0; j < n; ++j) {
    const bool is_high = std::binary_search(rtn.high_cols.begin(), rtn.high_cols.end(), j);
    slot[static_cast<size_t>(j)] = is_high ? high++ : low++;
  }
  Eigen::MatrixXd hp(n, n);
  Matrix<double> wd(n_out, n);
  for (int64_t a = 0; a < n; ++a) {
    for (int64_t b = 0; b < n; ++b) hp(a, b) = h(order[a], order[b]);
    for (int64_t r = 0; r < n_out; ++r) wd(r, a) = w(r, order[a]);
  }
  hp.diagonal().array() += 0.01 * hp.diagonal().mean();
  const Eigen::MatrixXd h_inv = hp.llt().solve(Eigen::MatrixXd::Identity(n, n));
  const Eigen::MatrixXd u = h_inv.llt().matrixU();
  Matrix<float> out(n_out, n);
  for (int64_t r = 0; r < n_out; ++r) {
    GroupParams high_params;
    for (int64_t p = 0; p < n; ++p) {
      const int64_t s = slot[static_cast<size_t>(order[p])];
      const float x = static_cast<float>(wd(r, p));
      GroupParams gp;
      int bits = rtn.spec.bits_low;
      if (p < n_low) {
        gp = rtn.low_params[static_cast<size_t>(r * n_groups + (g == 0 ? 0 : s / g))];
      } else {
        if (p == n_low) {
          const Eigen::VectorXd rest = wd.row(r).tail(n_high).transpose();
          high_params = ChooseGroupParams(static_cast<float>(rest.minCoeff()),
                                          static_cast<float>(rest.maxCoeff()), rtn.spec.bits_high);
        }
        gp = high_params;
        bits = rtn.spec.bits_high;
      }
      const float qmax = static_cast<float>((1 << bits) - 1), zero = static_cast<float>(gp.zero);
      const float code = std::min(std::max(std::nearbyint(x / gp.scale) + zero, 0.0f), qmax);
      const float q = (code - zero) * gp.scale;
      out(r, order[p]) = q;
      const double e = (wd(r, p) - static_cast<double>(q)) / u(p, p);
      for (int64_t k = p + 1; k < n; ++k) wd(r, k) -= e * u(p, k);
    }
  }
  return out;
}

// The lazy scheme is the textbook algorithm rearranged: with static low groups and the lazy
// block ending where the high columns begin (so that the high group is chosen on fully updated
// weights there too), both must give nearly the same weights, with and without act-order.
TEST_F(GptqRealBlock, LazyBatchesAgreeWithTextbookGptqInDouble) {
  const QuantSpec spec{3, 4, kGroupSize};
  for (Linear kind : kLinears) {
    for (bool act_order : {false, true}) {
      const Matrix<float>& w = Weight(kind);
      const GptqHessian h = HessianOf(Input(kind, 0));
      const std::vector<int32_t> high = HighColsByDiag(h, kHighRatio);
      const QuantizedLayer rtn = QuantizeLayer(w.data(), w.rows(), w.cols(), high, spec);
      GptqOptions options;
      options.act_order = act_order;
      options.static_groups = true;
      options.block_size = rtn.n_low();
      const QuantizedLayer q = GptqQuantize(w.data(), w.rows(), w.cols(), h, high, spec, options);
      Matrix<float> wq(w.rows(), w.cols());
      Dequantize(q, wq.data());
      // The processing order: low columns, then high, each by index or by descending diag H.
      std::vector<int32_t> order;
      for (bool part_high : {false, true}) {
        std::vector<int32_t> part;
        for (int32_t j = 0; j < w.cols(); ++j) {
          if (std::binary_search(high.begin(), high.end(), j) == part_high) part.push_back(j);
        }
        if (act_order) {
          std::stable_sort(part.begin(), part.end(),
                           [&](int32_t a, int32_t b) { return h.h(a, a) > h.h(b, b); });
        }
        order.insert(order.end(), part.begin(), part.end());
      }
      const Matrix<float> want = TextbookGptq(w, h.h, order, rtn);
      const double same = (wq.array() == want.array()).cast<double>().mean();
      const Matrix<double> x = Input(kind, 1).cast<double>();
      const double err = (x * (wq.cast<double>() - w.cast<double>()).transpose()).squaredNorm();
      const double err_want =
          (x * (want.cast<double>() - w.cast<double>()).transpose()).squaredNorm();
      const std::string what =
          std::string(LinearName(kind)) + " act-order " + std::to_string(act_order);
      std::printf("%-28s vs textbook: %.4f of weights equal, output error %.6g vs %.6g\n",
                  what.c_str(), same, err, err_want);
      EXPECT_GE(same, kOracleMinSameWeights) << what;
      EXPECT_LT(std::abs(err - err_want) / err_want, kOracleErrorRelTol) << what;
    }
  }
}

TEST_F(GptqRealBlock, ActOrderStaticGroupsAndFp16HighColumnsAllBeatRtn) {
  struct Variant {
    const char* name;
    bool act_order, static_groups;
    int bits_high;
  };
  for (const Variant& v :
       {Variant{"act-order", true, false, 3}, Variant{"static groups", false, true, 3},
        Variant{"fp16 high", false, false, 16}, Variant{"act-order fp16 high", true, false, 16}}) {
    const QuantSpec spec{2, v.bits_high, kGroupSize};
    GptqOptions options;
    options.act_order = v.act_order;
    options.static_groups = v.static_groups;
    for (Linear kind : kLinears) {
      const std::string what =
          std::string(v.name) + " " + SpecName(spec) + " " + std::string(LinearName(kind));
      const Comparison c =
          Compare(Weight(kind), Input(kind, 0), Input(kind, 1), spec, options, what);
      std::printf("%-40s ratio %.4f\n", what.c_str(), c.ratio());
      EXPECT_LT(c.ratio(), kMaxErrorRatio) << what;
    }
  }
}

// Inputs that are always 0 (here: three zeroed channels of q_proj's input) give H_jj == 0: the
// column is quantized as 0, and the rest of the layer still beats RTN.
TEST_F(GptqRealBlock, DeadColumnsBecomeZeroAndTheLayerStillBeatsRtn) {
  const std::vector<int64_t> dead = {3, 17, 40};
  Matrix<float> x_calib = Input(Linear::kQ, 0), x_held = Input(Linear::kQ, 1);
  for (int64_t j : dead) {
    x_calib.col(j).setZero();
    x_held.col(j).setZero();
  }
  const Matrix<float>& w = Weight(Linear::kQ);
  for (bool act_order : {false, true}) {
    const QuantSpec spec{2, 3, kGroupSize};
    GptqOptions options;
    options.act_order = act_order;
    const GptqHessian h = HessianOf(x_calib);
    for (int64_t j : dead) ASSERT_EQ(h.h(j, j), 0.0);
    const std::vector<int32_t> high = HighColsByDiag(h, kHighRatio);
    const QuantizedLayer q = GptqQuantize(w.data(), w.rows(), w.cols(), h, high, spec, options);
    ExpectValidStoredForm(q, "dead columns");
    Matrix<float> wq(w.rows(), w.cols());
    Dequantize(q, wq.data());
    for (int64_t j : dead) EXPECT_EQ(wq.col(j).cwiseAbs().maxCoeff(), 0.0f) << "column " << j;
    const QuantizedLayer rtn = QuantizeLayer(w.data(), w.rows(), w.cols(), high, spec);
    const double ratio = OutputError(x_held, w, q) / OutputError(x_held, w, rtn);
    std::printf("dead columns, act-order %d: ratio %.4f\n", act_order, ratio);
    EXPECT_LT(ratio, kMaxErrorRatio);
  }
}

// An indefinite H: [[1, 3], [3, 1]] (eigenvalues -2, 4) factors only once the damping exceeds
// 2, i.e. at 0.01 x 10^3; [[1, 1e6], [1e6, 1]] needs more than 3 retries can give.
TEST(Gptq, RaisesTheDampingTenfoldAndLogsEachRetry) {
  const std::vector<float> w = {0.1f, -0.2f, 0.3f, 0.05f};
  GptqHessian h(2);
  h.h << 1.0, 3.0, 3.0, 1.0;
  std::string log;
  const QuantizedLayer q = GptqQuantize(w.data(), 2, 2, h, {}, QuantSpec{2, 3, 0}, {}, &log);
  ExpectValidStoredForm(q, "after retries");
  EXPECT_EQ(log,
            "GptqQuantize: Cholesky failed with damping 0.01; retrying with 0.1\n"
            "GptqQuantize: Cholesky failed with damping 0.1; retrying with 1\n"
            "GptqQuantize: Cholesky failed with damping 1; retrying with 10\n");
}

TEST(Gptq, AHessianThatCannotBeFactoredIsAClearError) {
  const std::vector<float> w = {0.1f, -0.2f, 0.3f, 0.05f};
  GptqHessian h(2);
  h.h << 1.0, 1e6, 1e6, 1.0;
  std::string log;
  EXPECT_THROW_MSG(GptqQuantize(w.data(), 2, 2, h, {}, QuantSpec{2, 3, 0}, {}, &log),
                   NumericalError,
                   "GptqQuantize: the Hessian (2 x 2) is not positive definite even with "
                   "damping 10 (percdamp 0.01 x mean diag 1 x 10^3) after 3 retries; HINT: add "
                   "calibration rows, or raise GptqOptions.percdamp");
}

TEST(Gptq, RejectsAHessianOfTheWrongSizeOrWithANonFiniteEntry) {
  const std::vector<float> w(6, 0.1f);
  GptqHessian h(2);
  EXPECT_THROW_MSG(GptqQuantize(w.data(), 2, 3, h, {}, QuantSpec{}, {}), FormatError,
                   "GptqQuantize: the Hessian is (2, 2), expected (3, 3) for n_in = 3");
  GptqHessian bad(3);
  bad.h.setIdentity();
  bad.h(1, 2) = std::numeric_limits<double>::infinity();
  EXPECT_THROW_MSG(GptqQuantize(w.data(), 2, 3, bad, {}, QuantSpec{}, {}), FormatError,
                   "GptqQuantize: Hessian (1, 2) is inf, expected a finite value");
}

}  // namespace
}  // namespace hiq
