// Benchmarks of the global solve (include/hiq/solve/solver.h) on seeded synthetic plan problems of
// LLaMA-2-7B and LLaMA-2-70B size. scripts/bench_solver.sh runs this and prints the table in
// docs/SOLVER.md.
//
// The synthetic problem: per block the seven linear layers of a LLaMA block with their real
// shapes (out x in; GQA k/v for 70B), candidates R = {0.02, 0.05, 0.10, 0.15, 0.20}, and the
// exact bits of each (hiq::LayerBits at b_L = 2, b_H = 3, groups of 64: docs/BITS.md). Costs
// fall with the ratio, with a per-layer scale (log-normal) and 3% noise; every pair of layers of
// a block gets a pair term: a random coupling in [-0.3, 0.3] of sqrt(d1 d2) plus noise, 5% of
// sqrt(d1 d2) ("mild") or 20% ("noisy", the regime of DESIGN.md 1.4's measurement). The budget is
// the fixed ratio 0.10 everywhere.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "hiq/base/error.h"    // SolverError
#include "hiq/quant/quant.h"   // LayerBits, HighCount, QuantSpec
#include "hiq/solve/solver.h"  // PlanProblem, SolvePareto, SolveMilp

namespace {

struct Shape {
  const char* name;
  int n_block;
  int hidden;
  int intermediate;
  int kv_dim;  // n_kv_heads * head_dim (GQA)
};
constexpr Shape kLlama7B{"7B", 32, 4096, 11008, 4096};
constexpr Shape kLlama70B{"70B", 80, 8192, 28672, 1024};
constexpr double kRatios[] = {0.02, 0.05, 0.10, 0.15, 0.20};
constexpr hiq::QuantSpec kSpec{2, 3, 64};
constexpr int kBudgetCandidate = 2;  // the fixed ratio 0.10 sets the budget

double LayerBits(int64_t out, int64_t in, double ratio) {
  return static_cast<double>(hiq::LayerBits(out, in, hiq::HighCount(ratio, in), kSpec));
}

constexpr double kPairNoise[] = {0.05, 0.2};
constexpr const char* kPairNoiseName[] = {"mild", "noisy"};

// Keeps its std:: distributions (libstdc++'s numbers) rather than hiq::RandomStream so that the
// instances behind docs/SOLVER.md section 6 stay the ones measured there.
hiq::PlanProblem MakeProblem(const Shape& shape, int64_t noise, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> uniform(-0.3, 0.3);
  const int64_t h = shape.hidden, f = shape.intermediate, kv = shape.kv_dim;
  const int64_t shapes[7][2] = {{h, h}, {kv, h}, {kv, h}, {h, h}, {f, h}, {f, h}, {h, f}};
  const int n_cand = static_cast<int>(std::size(kRatios));
  hiq::PlanProblem p;
  for (int b = 0; b < shape.n_block; ++b) {
    const int first = static_cast<int>(p.bits.size());
    for (const auto& s : shapes) {
      const double scale = 1e-3 * std::exp(normal(rng));
      std::vector<double> bits, cost;
      for (double r : kRatios) {
        bits.push_back(LayerBits(s[0], s[1], r));
        cost.push_back(scale * (1.0 - 0.6 * std::pow(r / 0.2, 0.7)) * (1.0 + 0.03 * normal(rng)));
      }
      p.n_weights += static_cast<double>(s[0] * s[1]);
      p.block_of_layer.push_back(b);
      p.bits.push_back(bits);
      p.cost.push_back(cost);
    }
    for (int l1 = first; l1 < first + 7; ++l1) {
      for (int l2 = l1 + 1; l2 < first + 7; ++l2) {
        hiq::PlanProblem::Pair pair{l1, l2, {}};
        const double coupling = uniform(rng);
        for (int m1 = 0; m1 < n_cand; ++m1) {
          for (int m2 = 0; m2 < n_cand; ++m2) {
            const double d1 = std::fabs(p.cost[l1][m1]), d2 = std::fabs(p.cost[l2][m2]);
            pair.cost.push_back(coupling * std::sqrt(d1 * d2) +
                                kPairNoise[noise] * std::sqrt(d1 * d2) * normal(rng));
          }
        }
        p.pairs.push_back(std::move(pair));
      }
    }
  }
  for (const auto& b : p.bits) p.budget_bits += b[kBudgetCandidate];
  return p;
}

const Shape& ShapeOf(int64_t index) { return index == 0 ? kLlama7B : kLlama70B; }

void Report(benchmark::State& state, const Shape& shape, int64_t noise, const hiq::PlanProblem& p,
            const hiq::PlanSolution& s) {
  state.counters["objective"] = s.objective;
  state.counters["gap"] = std::isfinite(s.gap) ? s.gap : -1;  // JSON has no inf
  state.counters["solve_s"] = s.seconds;
  state.counters["avg_bits"] = s.bits / p.n_weights;
  state.counters["layers"] = static_cast<double>(p.bits.size());
  state.SetLabel(s.method + "|" + shape.name + ", " + kPairNoiseName[noise] + " pairs|" + s.status +
                 "|" + s.detail);
}

// SolvePareto end to end: enumeration, frontiers, bound, knapsack.
void BM_Pareto(benchmark::State& state) {
  const Shape& shape = ShapeOf(state.range(0));
  const hiq::PlanProblem p = MakeProblem(shape, state.range(1), 1234 + state.range(2));
  hiq::PlanSolution s;
  for (auto _ : state) {
    s = hiq::SolvePareto(p);
    benchmark::DoNotOptimize(s.choice.data());
  }
  Report(state, shape, state.range(1), p, s);
}
BENCHMARK(BM_Pareto)
    ->ArgsProduct({{0, 1}, {0, 1}, {0, 1, 2}})
    ->ArgNames({"shape", "noise", "seed"})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3);

// SolveMilp (the direct linearisation) with a time limit, cold or warm-started from
// SolvePareto's plan. Arguments: shape, pair noise, time limit in seconds, warm (0/1).
void BM_Milp(benchmark::State& state) {
  const Shape& shape = ShapeOf(state.range(0));
  const hiq::PlanProblem p = MakeProblem(shape, state.range(1), 1234);
  hiq::SolverOptions options;
  options.time_limit_s = static_cast<double>(state.range(2));
  const hiq::PlanSolution pareto = hiq::SolvePareto(p);
  hiq::PlanSolution s;
  for (auto _ : state) {
    try {
      s = hiq::SolveMilp(p, options, state.range(3) ? &pareto : nullptr);
    } catch (const hiq::SolverError& e) {
      // A cold MILP may find no plan at all within its limit (70B size): that is the result.
      state.SkipWithError(e.what());
      return;
    }
    benchmark::DoNotOptimize(s.choice.data());
  }
  Report(state, shape, state.range(1), p, s);
  state.counters["pareto_objective"] = pareto.objective;
}
// 7B cold at DESIGN.md's 100 s and warm at 60 s, and 70B cold at 100 s: about 7 minutes.
BENCHMARK(BM_Milp)
    ->Args({0, 0, 100, 0})
    ->Args({0, 0, 60, 1})
    ->Args({0, 1, 100, 0})
    ->Args({0, 1, 60, 1})
    ->Args({1, 1, 100, 0})
    ->ArgNames({"shape", "noise", "limit_s", "warm"})
    ->Unit(benchmark::kSecond)
    ->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
