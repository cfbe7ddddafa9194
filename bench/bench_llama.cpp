// Engine speed: sgemm peak of this machine, then forward and forward+backward of real-shaped
// blocks, as tokens/s and achieved GFLOP/s. scripts/bench_engine.sh turns the JSON into the
// table of docs/PERFORMANCE.md.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>

#include "hiq/io/checkpoint.h"
#include "hiq/io/synth.h"
#include "hiq/model/llama.h"

namespace hiq {
namespace {

// Cheap deterministic fill: generating 200M normals would dominate the set-up.
void Fill(Matrix<float>& m, uint32_t seed, float scale, float mean = 0) {
  uint32_t x = seed * 2654435761u + 1;
  for (int64_t i = 0; i < m.size(); ++i) {
    x = x * 1664525u + 1013904223u;
    m.data()[i] = mean + scale * (static_cast<float>(x >> 8) * 0x1.0p-24f - 0.5f);
  }
}

// Matrix FLOPs one block performs for B*T tokens: every linear layer, plus the two T x T
// attention products per head (computed in full, causal mask applied afterwards).
double BlockForwardFlops(const LlamaConfig& c, int64_t tokens, int64_t T) {
  const double C = static_cast<double>(c.hidden_size), F = static_cast<double>(c.intermediate_size);
  const double kv = static_cast<double>(c.num_key_value_heads * c.head_dim());
  const double linear = 2.0 * static_cast<double>(tokens) * (2 * C * C + 2 * C * kv + 3 * C * F);
  const double attention = 4.0 * static_cast<double>(tokens) * static_cast<double>(T) * C;
  return linear + attention;
}

void BM_SgemmPeak(benchmark::State& state) {
  const int64_t M = 2048, K = 4096, N = 4096;
  Matrix<float> a(M, K), b(N, K), c(M, N);
  Fill(a, 1, 1.0f);
  Fill(b, 2, 1.0f);
  for (auto _ : state) {
    c.noalias() = a * b.transpose();
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["GFLOPs"] = benchmark::Counter(
      2.0 * M * N * K, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}
BENCHMARK(BM_SgemmPeak)->Unit(benchmark::kMillisecond)->MinTime(2.0)->UseRealTime();

struct BlockSetup {
  LlamaConfig config;
  BlockWeights<float> w;
  Rope<float> rope;
  Matrix<float> x;
};

BlockSetup MakeBlock(const LlamaConfig& config, int64_t T) {
  BlockSetup s{config, ZeroBlock<float>(config), MakeRope<float>(config, T),
               Matrix<float>(T, config.hidden_size)};
  uint32_t seed = 10;
  ForEachBlockTensor(s.w, [&](const BlockTensor&, Matrix<float>& m) {
    if (m.rows() == 1) {
      Fill(m, seed++, 0.1f, 1.0f);
    } else {
      Fill(m, seed++, 2.0f / std::sqrt(static_cast<float>(m.cols())));
    }
  });
  Fill(s.x, 99, 2.0f);
  return s;
}

void BM_Llama2_7bBlock(benchmark::State& state) {
  const int64_t T = state.range(0);
  const bool backward = state.range(1) != 0;
  BlockSetup s = MakeBlock(SynthConfig("llama2-7b", 1), T);
  Matrix<float> out, dx;
  BlockCache<float> cache;
  BlockWeights<float> grad = ZeroBlock<float>(s.config);
  for (auto _ : state) {
    BlockForward(s.config, s.w, s.rope, T, s.x, out, backward ? &cache : nullptr);
    if (backward) BlockBackward(s.config, s.w, s.rope, T, cache, out, dx, grad);
    benchmark::DoNotOptimize(out.data());
  }
  const double flops = BlockForwardFlops(s.config, T, T) * (backward ? 3.0 : 1.0);
  state.counters["GFLOPs"] = benchmark::Counter(
      flops, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(T), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Llama2_7bBlock)
    ->ArgNames({"T", "backward"})
    ->Args({512, 0})
    ->Args({512, 1})
    ->Args({2048, 0})
    ->Args({2048, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(1.0);

// The real stories260K, whole model, one sequence of its full context.
void BM_Stories260K(benchmark::State& state) {
  const char* data = std::getenv("HIQ_DATA");
  const std::filesystem::path dir =
      std::filesystem::path(data ? data : HIQ_SOURCE_DIR "/../shared/data") / "stories260K";
  Checkpoint checkpoint(dir);
  const Stage<float> stage = LoadStage(checkpoint, 0, 5, true, true);
  const int64_t T = state.range(0);
  const bool backward = state.range(1) != 0;
  std::vector<int32_t> tokens(static_cast<size_t>(T)), targets(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    tokens[static_cast<size_t>(t)] = static_cast<int32_t>((t * 37 + 1) % 512);
    targets[static_cast<size_t>(t)] = static_cast<int32_t>((t * 37 + 38) % 512);
  }
  Stage<float> grad = ZeroGradients(stage);
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        ModelForwardBackward<float>(stage, tokens, targets, backward ? &grad : nullptr, nullptr));
  }
  const LlamaConfig& c = stage.config;
  const double head =
      2.0 * static_cast<double>(T) * static_cast<double>(c.vocab_size * c.hidden_size);
  const double flops =
      (BlockForwardFlops(c, T, T) * static_cast<double>(c.num_hidden_layers) + head) *
      (backward ? 3.0 : 1.0);
  state.counters["GFLOPs"] = benchmark::Counter(
      flops, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(T), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Stories260K)
    ->ArgNames({"T", "backward"})
    ->Args({256, 0})
    ->Args({256, 1})
    ->Args({512, 0})
    ->Args({512, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(1.0);

}  // namespace
}  // namespace hiq

BENCHMARK_MAIN();
