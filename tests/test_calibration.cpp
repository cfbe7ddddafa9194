// Calibration sets: seeded, rank-free randomness and the sampling rule.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <random>

#include "hiq/base/error.h"
#include "hiq/base/rng.h"       // StreamSeed
#include "hiq/io/checkpoint.h"  // ReadModelVocab
#include "hiq/stages/calibration.h"
#include "test_util.h"

namespace hiq {
namespace {

std::vector<int32_t> Ramp(int n) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) v[static_cast<size_t>(i)] = i;
  return v;
}

TEST(RandomWindows, AreContiguousInBoundsAndTheSameForTheSameSeed) {
  const std::vector<int32_t> tokens = Ramp(1000);
  const auto a = RandomWindows(tokens, 50, 65, 7, "fisher", "ramp");
  const auto b = RandomWindows(tokens, 50, 65, 7, "fisher", "ramp");
  EXPECT_EQ(a, b);
  for (const auto& w : a) {
    ASSERT_EQ(w.size(), 65u);
    for (size_t i = 1; i < w.size(); ++i) EXPECT_EQ(w[i], w[i - 1] + 1);
    EXPECT_LE(w.back(), 999);
  }
}

TEST(RandomWindows, DependOnTheSeedAndTheSetName) {
  const std::vector<int32_t> tokens = Ramp(100000);
  const auto base = RandomWindows(tokens, 8, 10, 1, "cost", "ramp");
  EXPECT_NE(base, RandomWindows(tokens, 8, 10, 2, "cost", "ramp"));
  EXPECT_NE(base, RandomWindows(tokens, 8, 10, 1, "check", "ramp"));
}

// The starts are mt19937_64(StreamSeed(seed, name)) draws modulo the number of starts, as they
// have been since the first plans: a change here changes every plan's calibration windows.
TEST(RandomWindows, StartsAreTheSetStreamsDrawsModuloTheStartCount) {
  const std::vector<int32_t> tokens = Ramp(30001);
  const int64_t length = 257;
  const auto windows = RandomWindows(tokens, 64, length, 3, "fisher", "ramp");
  std::mt19937_64 engine(StreamSeed(3, "fisher"));
  const uint64_t starts = tokens.size() - static_cast<uint64_t>(length) + 1;
  for (const auto& w : windows) EXPECT_EQ(static_cast<uint64_t>(w.front()), engine() % starts);
}

TEST(RandomWindows, ATextShorterThanOneWindowIsAClearError) {
  EXPECT_THROW_MSG(RandomWindows(Ramp(10), 1, 65, 1, "fisher", "tiny.txt"), ConfigError,
                   "calibration.fisher: tiny.txt holds 10 tokens, fewer than one window of "
                   "seq_len + 1 = 65. HINT: lower calibration.fisher.seq_len");
}

TEST(RandomWindows, MoreSequencesThanDistinctStartsAreRefused) {
  EXPECT_EQ(RandomWindows(Ramp(70), 6, 65, 1, "cost", "t.txt").size(), 6u);  // 6 starts: enough
  EXPECT_THROW_MSG(RandomWindows(Ramp(70), 7, 65, 1, "cost", "t.txt"), ConfigError,
                   "calibration.cost: t.txt holds 70 tokens, which give 6 distinct windows of "
                   "seq_len + 1 = 65, fewer than n_sequences = 7. HINT: lower "
                   "calibration.cost.n_sequences or use a longer text");
}

std::filesystem::path Stories() { return test::DataDir() / "stories260K"; }

SampleSetConfig TextSet(const std::filesystem::path& path, int n, int seq_len) {
  SampleSetConfig set;
  set.source = SampleSource::kText;
  set.path = path;
  set.n_sequences = n;
  set.seq_len = seq_len;
  return set;
}

TEST(CheckSampleSet, SeqLenBeyondTheContextNamesTheKeyAndBothNumbers) {
  const ModelVocab vocab = ReadModelVocab(Stories() / "config.json");
  SampleSetConfig set;
  set.n_sequences = 4;
  set.seq_len = 513;
  EXPECT_THROW_MSG(CheckSampleSet(set, "check", Stories() / "tokenizer.model", vocab, 512),
                   ConfigError,
                   "calibration.check.seq_len = 513 is longer than the model's context, "
                   "max_position_embeddings = 512 in '" +
                       vocab.config_file + "'");
  set.seq_len = 512;
  CheckSampleSet(set, "check", Stories() / "tokenizer.model", vocab, 512);
}

TEST(CheckSampleSet, ReadsTheTextAsTheSetWillAndCountsItsWindows) {
  test::TempDir dir;
  const ModelVocab vocab = ReadModelVocab(Stories() / "config.json");
  const auto tok = Stories() / "tokenizer.model";
  const auto sample = test::DataDir() / "text/tinystories/sample.txt";
  CheckSampleSet(TextSet(sample, 16, 128), "fisher", tok, vocab, 512);
  EXPECT_THROW_WITH(CheckSampleSet(TextSet(sample, 100000, 128), "fisher", tok, vocab, 512),
                    ConfigError, "fewer than n_sequences = 100000");
  std::ofstream(dir / "bad.txt", std::ios::binary) << "ok\n\xff";
  EXPECT_THROW_WITH(CheckSampleSet(TextSet(dir / "bad.txt", 1, 1), "fisher", tok, vocab, 512),
                    FormatError, "at byte offset 3");
  ModelVocab other = vocab;
  other.vocab_size = 32000;
  EXPECT_THROW_WITH(CheckSampleSet(TextSet(sample, 1, 8), "fisher", tok, other, 512), FormatError,
                    "it has 512 pieces but vocab_size is 32000");
}

TEST(SampleToken, InvertsTheCumulativeSoftmax) {
  const std::vector<float> logits = {0.0f, std::log(3.0f), -INFINITY,
                                     0.0f};  // p = 1/5, 3/5, 0, 1/5
  EXPECT_EQ(SampleToken(logits, 1.0, 0.0), 0);
  EXPECT_EQ(SampleToken(logits, 1.0, 0.19), 0);
  EXPECT_EQ(SampleToken(logits, 1.0, 0.21), 1);
  EXPECT_EQ(SampleToken(logits, 1.0, 0.79), 1);
  EXPECT_EQ(SampleToken(logits, 1.0, 0.81), 3);
  EXPECT_EQ(SampleToken(logits, 1.0, 0.999999), 3);
}

TEST(SampleToken, LowTemperatureTakesTheLargestLogit) {
  const std::vector<float> logits = {1.0f, 2.0f, 1.9f};
  for (double u : {0.0, 0.3, 0.9}) EXPECT_EQ(SampleToken(logits, 1e-3, u), 1);
}

}  // namespace
}  // namespace hiq
