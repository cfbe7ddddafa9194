// Block reconstruction speed: one training step (ReconTrainer::Step: fake-quantize, the engine's
// BlockForward + BlockBackward, LWC / AdaRound backward, Adam) of a LLaMA-2-7B-shaped block,
// against the plain BlockForward + BlockBackward of the same block in the same run. The target
// is a step at most 1.25x the plain pass. Never run by ctest. Threads: one per core, for the
// products and for the per-weight passes (SetBlasThreads), as hiq runs them.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "hiq/io/synth.h"
#include "hiq/model/blas.h"
#include "hiq/model/llama.h"
#include "hiq/quant/adaround.h"
#include "hiq/quant/learn.h"
#include "hiq/quant/lwc.h"
#include "hiq/quant/recon.h"

namespace hiq {
namespace {

// Uniform in [mean - scale / 2, mean + scale / 2) from raw mt19937 outputs (fast enough for the
// 200M weights of a 7B block).
void FillUniform(Matrix<float>& m, uint32_t seed, float scale, float mean) {
  std::mt19937 rng(seed);
  for (int64_t i = 0; i < m.size(); ++i) {
    m.data()[i] = mean + scale * (static_cast<float>(rng() >> 8) * 0x1.0p-24f - 0.5f);
  }
}

struct Setup {
  LlamaConfig config = SynthConfig("llama2-7b", 1);
  BlockWeights<float> w;
  Matrix<float> x, target;
  explicit Setup(int64_t T) : w(ZeroBlock<float>(config)) {
    uint32_t seed = 100;
    ForEachBlockTensor(w, [&](const BlockTensor&, Matrix<float>& m) {
      const bool norm = m.rows() == 1;
      FillUniform(m, seed++, norm ? 0.1f : 2.0f / std::sqrt(static_cast<float>(m.cols())),
                  norm ? 1.0f : 0.0f);
    });
    x.resize(T, config.hidden_size);
    target.resize(T, config.hidden_size);
    FillUniform(x, 1, 2.0f, 0.0f);
    FillUniform(target, 2, 2.0f, 0.0f);
  }
};

// W2 plan: bits 2/3, groups of 32, every tenth column high-impact (a fixed 10%).
std::vector<ReconLayer> W2Plan(const BlockWeights<float>& w) {
  std::vector<ReconLayer> plan;
  for (Linear kind : kLinears) {
    ReconLayer l{{}, QuantSpec{.bits_low = 2, .bits_high = 3, .group_size = 32}};
    for (int32_t c = 0; c < w.linear(kind).cols(); c += 10) l.high_cols.push_back(c);
    plan.push_back(std::move(l));
  }
  return plan;
}

void BM_PlainForwardBackward(benchmark::State& state) {
  const int64_t T = state.range(0);
  const Setup s(T);
  const Rope<float> rope = MakeRope<float>(s.config, T);
  BlockWeights<float> grad = ZeroBlock<float>(s.config);
  BlockCache<float> cache;
  Matrix<float> out, dx;
  // One pass before the clock starts: first-touch page faults of the buffers are not the step.
  BlockForward(s.config, s.w, rope, T, s.x, out, &cache);
  BlockBackward(s.config, s.w, rope, T, cache, out, dx, grad);
  for (auto _ : state) {
    BlockForward(s.config, s.w, rope, T, s.x, out, &cache);
    BlockBackward(s.config, s.w, rope, T, cache, out, dx, grad);
    benchmark::DoNotOptimize(dx.data());
  }
}

void BM_ReconStep(benchmark::State& state) {
  const int64_t T = state.range(0);
  const auto method = static_cast<ReconMethod>(state.range(1));
  const Setup s(T);
  ReconTrainer trainer(s.config, s.w, T, W2Plan(s.w),
                       ReconOptions{.method = method, .steps = 1000});
  trainer.Step(s.x, s.target, 500);  // warm-up, as in BM_PlainForwardBackward
  int64_t t = 0;
  for (auto _ : state) {
    // Past the warm-up, so that AdaRound's regulariser is part of the step.
    benchmark::DoNotOptimize(trainer.Step(s.x, s.target, 500 + (t++ % 500)));
  }
  state.SetLabel(method == ReconMethod::kHybrid ? "hybrid" : "lwc");
}

// The hybrid's per-weight passes of one step over a whole block (W2Plan): LWC on the low part,
// AdaRound on the high part, each followed by Adam on its parameters, in the order of
// ReconTrainer::Step, on fixed gradients.
// kRoundBackwardWarmUp is AdaRound's backward without the regulariser (its warm-up steps).
enum Pass {
  kLwcForward,
  kAdaRoundForward,
  kLwcBackward,
  kLwcAdam,
  kAdaRoundBackward,
  kRoundAdam,
  kRoundBackwardWarmUp
};
constexpr const char* kPassNames[] = {
    "LwcForward", "AdaRoundForward",          "LwcBackward", "Adam(logits)", "AdaRoundBackward",
    "Adam(V)",    "AdaRoundBackward(warm-up)"};

struct PassSetup {
  struct Layer {
    Linear kind;
    Lwc lwc;
    LwcCache cache;
    AdaRound round;
    AdamState adam_a, adam_b, adam_v;
    std::vector<float> da, db, dv;
  };
  Setup s{1};
  BlockWeights<float> wq, grad;
  std::vector<Layer> layers;
  PassSetup() : wq(s.w), grad(ZeroBlock<float>(s.config)) {
    uint32_t seed = 200;
    ForEachBlockTensor(
        grad, [&](const BlockTensor&, Matrix<float>& m) { FillUniform(m, seed++, 1e-3f, 0.0f); });
    const std::vector<ReconLayer> plan = W2Plan(s.w);
    for (size_t i = 0; i < kNumLinears; ++i) {
      const Matrix<float>& m = s.w.linear(kLinears[i]);
      const ReconLayer& p = plan[i];
      const QuantizedLayer rtn = QuantizeLayer(m.data(), m.rows(), m.cols(), p.high_cols, p.spec);
      Layer l{kLinears[i],
              LwcInit(LowPart(m.cols(), p.high_cols, p.spec.group_size), m.data(), m.rows(),
                      p.spec.bits_low),
              {},
              AdaRoundInit(HighPart(m.cols(), p.high_cols), m.data(), m.rows(), p.spec.bits_high,
                           rtn.high_params),
              {},
              {},
              {},
              {},
              {},
              {}};
      l.da.resize(l.lwc.max_logit.size());
      l.db.resize(l.lwc.min_logit.size());
      l.dv.resize(l.round.v.size());
      layers.push_back(std::move(l));
    }
  }
  void Run(Pass pass) {
    for (Layer& l : layers) {
      const float* w = s.w.linear(l.kind).data();
      float* q = wq.linear(l.kind).data();
      const float* g = grad.linear(l.kind).data();
      switch (pass) {
        case kLwcForward:
          LwcForward(l.lwc, w, q, &l.cache);
          break;
        case kAdaRoundForward:
          AdaRoundForward(l.round, q);
          break;
        case kLwcBackward:
          LwcBackward(l.lwc, w, l.cache, g, l.da.data(), l.db.data());
          break;
        case kLwcAdam:
          AdamStep(AdamOptions{.lr = 1e-2f}, l.lwc.max_logit, l.da, l.adam_a);
          AdamStep(AdamOptions{.lr = 1e-2f}, l.lwc.min_logit, l.db, l.adam_b);
          break;
        case kAdaRoundBackward:  // beta 10: mid-anneal, the regulariser on
          AdaRoundBackward(l.round, g, 10.0f, 0.01f, l.dv.data());
          break;
        case kRoundAdam:
          AdamStep(AdamOptions{.lr = 1e-3f}, l.round.v, l.dv, l.adam_v);
          break;
        case kRoundBackwardWarmUp:
          AdaRoundBackward(l.round, g, 0.0f, 0.01f, l.dv.data());
          break;
      }
    }
  }
};

void BM_PerWeightPass(benchmark::State& state) {
  static PassSetup setup;  // 2.4 GB: built once for all passes
  const auto pass = static_cast<Pass>(state.range(0));
  for (int p = 0; p <= std::min<int>(pass, kRoundAdam); ++p) {
    setup.Run(static_cast<Pass>(p));  // the inputs of this pass
  }
  for (auto _ : state) setup.Run(pass);
  state.SetLabel(kPassNames[pass]);
}

BENCHMARK(BM_PlainForwardBackward)
    ->ArgNames({"T"})
    ->Arg(512)
    ->Arg(2048)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(20.0);
BENCHMARK(BM_ReconStep)
    ->ArgNames({"T", "method"})
    ->Args({512, static_cast<int>(ReconMethod::kHybrid)})
    ->Args({512, static_cast<int>(ReconMethod::kLwc)})
    ->Args({2048, static_cast<int>(ReconMethod::kHybrid)})
    ->Args({2048, static_cast<int>(ReconMethod::kLwc)})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(20.0);
BENCHMARK(BM_PerWeightPass)
    ->ArgNames({"pass"})
    ->DenseRange(kLwcForward, kRoundBackwardWarmUp)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(2.0);

}  // namespace
}  // namespace hiq

// OpenBLAS's AVX-512 kernels, as hiq itself runs them (hiq/model/blas.h): without the pin,
// Debian's OpenBLAS falls back to its slowest kernels on this CPU and the ratio means little.
// Freed activation buffers stay in the heap (hiq's main does the same), or page faults of the
// engine's temporaries would be part of both timings.
int main(int argc, char** argv) {
  hiq::PinBlasCore(argv);
  hiq::SetBlasThreads(0);  // a core each, for the products and the per-weight passes, as hiq
  hiq::KeepActivationMemory();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
