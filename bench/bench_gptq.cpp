// Benchmarks for hiq/quant/gptq.h: GPTQ of a LLaMA-7B down_proj-shaped layer (4096 x 11008,
// random weights, H from random rows), against the sgemm peak of this machine measured in the
// same program through Eigen (2048 x 4096 x 4096, the shape of a 7B projection on a batch).
//   build/bench/bench_gptq --benchmark_min_time=1x
//
// Counters: "GFLOP/s" is the matrix work of the call over its wall time. GPTQ's matrix work is
//   updates:   2 n_out sum_blocks count (n_in - i2)  ~ n_out n_in^2    float, sgemm
//   factoring: chol n^3/3 + a triangular solve against I, n^3  = 4/3 n^3  double
// (the in-block rank-1 updates, 2 n_out n_in block / 2, are counted too; the factoring is
// J chol(J H J)^-1 J since e3507f4, see gptq.h). "update_GFLOP" and "factor_GFLOP" give the two
// parts; the n_out = 64 row isolates the factoring, which is the same for every n_out. Compare
// "GFLOP/s" with BM_SgemmPeak's (double runs at about half of float's peak on AVX-512).
// Measured numbers: docs/PERFORMANCE.md, "Quantize stage".
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "hiq/model/blas.h"   // PinBlasCore, CurrentBlasInfo
#include "hiq/model/llama.h"  // Matrix
#include "hiq/quant/gptq.h"   // GptqHessian, GptqQuantize
#include "hiq/quant/quant.h"  // TopChannels, HighCount

namespace {

hiq::Matrix<float> RandomMatrix(int64_t rows, int64_t cols, uint32_t seed, float stddev) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  hiq::Matrix<float> m(rows, cols);
  for (int64_t i = 0; i < m.size(); ++i) m.data()[i] = normal(rng);
  return m;
}

double UpdateFlops(int64_t n_out, int64_t n_in, int64_t block) {
  double flops = 0;
  for (int64_t i1 = 0; i1 < n_in; i1 += block) {
    const int64_t i2 = std::min(i1 + block, n_in), count = i2 - i1;
    flops += 2.0 * static_cast<double>(n_out) * static_cast<double>(count) *
             static_cast<double>(n_in - i2);
    flops += static_cast<double>(n_out) * static_cast<double>(count * (count - 1));  // in block
  }
  return flops;
}

// Args: n_out, n_in, calibration rows. W2/3, groups of 64, 5% high-impact columns.
void BM_GptqQuantize(benchmark::State& state) {
  const int64_t n_out = state.range(0), n_in = state.range(1), rows = state.range(2);
  const hiq::Matrix<float> w = RandomMatrix(n_out, n_in, 1, 0.02f);
  hiq::GptqHessian h(n_in);
  {
    // Rows with per-channel scales spread over two decades, as real activations are; fewer
    // rows than columns leave H singular, as with a small calibration set: damping carries it.
    hiq::Matrix<float> x = RandomMatrix(rows, n_in, 2, 1.0f);
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> log_scale(-1.0f, 1.0f);
    for (int64_t j = 0; j < n_in; ++j) x.col(j) *= std::pow(10.0f, log_scale(rng));
    h.AddRows(x.data(), rows);
  }
  std::vector<double> diag(static_cast<size_t>(n_in));
  for (int64_t j = 0; j < n_in; ++j) diag[static_cast<size_t>(j)] = h.h(j, j);
  const std::vector<int32_t> high = hiq::TopChannels(diag, hiq::HighCount(0.05, n_in));
  const hiq::QuantSpec spec{2, 3, 64};
  const hiq::GptqOptions options;
  for (auto _ : state) {
    hiq::QuantizedLayer q = hiq::GptqQuantize(w.data(), n_out, n_in, h, high, spec, options);
    benchmark::DoNotOptimize(q.low_codes.data());
  }
  const double update = UpdateFlops(n_out, n_in, options.block_size);
  const double n = static_cast<double>(n_in);
  const double factor = 4.0 / 3.0 * n * n * n;
  state.counters["update_GFLOP"] = update * 1e-9;
  state.counters["factor_GFLOP"] = factor * 1e-9;
  state.counters["GFLOP/s"] =
      benchmark::Counter((update + factor) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_GptqQuantize)
    ->ArgNames({"n_out", "n_in", "rows"})
    ->Args({4096, 11008, 2048})
    ->Args({64, 11008, 2048})
    ->Args({4096, 4096, 2048})
    ->Unit(benchmark::kSecond)
    ->UseRealTime()
    ->Iterations(1);

// The peak: C (2048, 4096) = A (2048, 4096) B^T, B (4096, 4096), through Eigen -> sgemm.
void BM_SgemmPeak(benchmark::State& state) {
  constexpr int64_t kM = 2048, kK = 4096, kN = 4096;
  const hiq::Matrix<float> a = RandomMatrix(kM, kK, 4, 1.0f), b = RandomMatrix(kN, kK, 5, 1.0f);
  hiq::Matrix<float> c(kM, kN);
  for (auto _ : state) {
    c.noalias() = a * b.transpose();
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * kM * kK * kN * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  const hiq::BlasInfo blas = hiq::CurrentBlasInfo();
  state.SetLabel(blas.core + ", " + std::to_string(blas.threads) + " threads");
}
BENCHMARK(BM_SgemmPeak)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

// As hiq itself: OpenBLAS's AVX-512 kernels where the CPU has them (hiq/model/blas.h), so the
// numbers are those of the kernels hiq runs.
int main(int argc, char** argv) {
  hiq::PinBlasCore(argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
