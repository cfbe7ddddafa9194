// Benchmarks for hiq/quant/quant.h: QuantizeCandidate on LLaMA-7B layer shapes, and the _ref vs
// fast row kernel. Throughput is reported as GB/s of float32 weights read (n_out * n_in * 4 bytes);
// the same number of bytes is written. Single-threaded, like the function.
//   build/bench/bench_quant --benchmark_min_time=1
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "hiq/base/rng.h"     // RandomStream
#include "hiq/quant/quant.h"  // QuantizeCandidate, FakeQuantizeRowGroups(Ref), TopChannels, HighCount

namespace {

std::vector<float> RandomWeights(int64_t n, uint64_t seed) {
  hiq::RandomStream rng(seed, "weights");
  std::vector<float> w(static_cast<size_t>(n));
  for (float& v : w) v = static_cast<float>(0.02 * rng.Normal());
  return w;
}

// Args: n_out, n_in, ratio in percent, bits_high (16 = FP16 retention). b_L = 2, g = 64.
void BM_QuantizeCandidate(benchmark::State& state) {
  const int64_t n_out = state.range(0), n_in = state.range(1);
  const double ratio = static_cast<double>(state.range(2)) / 100.0;
  const hiq::QuantSpec spec{2, static_cast<int>(state.range(3)), 64};
  const std::vector<float> w = RandomWeights(n_out * n_in, 1);
  std::vector<double> scores(static_cast<size_t>(n_in));
  hiq::RandomStream rng(2, "scores");
  for (double& s : scores) s = rng.Uniform01();
  const std::vector<int32_t> high = hiq::TopChannels(scores, hiq::HighCount(ratio, n_in));
  std::vector<float> out(w.size());
  for (auto _ : state) {
    hiq::QuantizeCandidate(w.data(), n_out, n_in, high, spec, out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * n_out * n_in * int64_t{sizeof(float)});
}
BENCHMARK(BM_QuantizeCandidate)
    ->ArgNames({"n_out", "n_in", "ratio%", "b_H"})
    ->Args({4096, 4096, 0, 3})
    ->Args({4096, 4096, 5, 3})
    ->Args({4096, 4096, 20, 3})
    ->Args({4096, 4096, 1, 16})
    ->Args({11008, 4096, 0, 3})
    ->Args({11008, 4096, 5, 3})
    ->Args({4096, 11008, 5, 3})
    ->Unit(benchmark::kMillisecond);

// The row kernel alone over a 4096 x 4096 matrix, row by row; Arg: group size (0 = per row).
using RowKernel = void (*)(const float*, int64_t, int64_t, int, const hiq::GroupClip*, float*,
                           uint8_t*, hiq::GroupParams*);
void BM_RowKernel(benchmark::State& state, RowKernel kernel) {
  constexpr int64_t kN = 4096;
  const int64_t g = state.range(0);
  const std::vector<float> w = RandomWeights(kN * kN, 3);
  std::vector<float> out(w.size());
  for (auto _ : state) {
    for (int64_t r = 0; r < kN; ++r) {
      kernel(w.data() + r * kN, kN, g, 2, nullptr, out.data() + r * kN, nullptr, nullptr);
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * kN * kN * int64_t{sizeof(float)});
}
BENCHMARK_CAPTURE(BM_RowKernel, ref, &hiq::FakeQuantizeRowGroupsRef)
    ->Arg(0)
    ->Arg(64)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_RowKernel, fast, &hiq::FakeQuantizeRowGroups)
    ->Arg(0)
    ->Arg(64)
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
