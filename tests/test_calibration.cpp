// Calibration sets: seeded, rank-free randomness and the sampling rule.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "hiq/base/error.h"
#include "hiq/base/rng.h"  // StreamSeed
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
