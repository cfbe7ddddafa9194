// Tests of the global solve (include/hiq/solve/solver.h): the pareto and milp paths against brute
// force on hundreds of seeded random instances, the budget edge cases, the error messages,
// determinism and warm starts.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "hiq/base/rng.h"  // RandomStream
#include "hiq/solve/solver.h"
#include "test_util.h"

namespace hiq {
namespace {

// Solvers must agree with brute force to this relative tolerance (of max(1, |optimum|); the
// random costs are O(1)). GLPK prunes at 1e-7 relative, so a disagreement here means a near-tie
// closer than that, which the random instances do not produce, or a real bug.
constexpr double kObjectiveRelTol = 1e-9;
constexpr int kRandomInstances = 1000;
constexpr int kLargeRandomInstances = 100;

bool SameObjective(double a, double b) {
  return std::fabs(a - b) <= kObjectiveRelTol * std::max(1.0, std::fabs(b));
}

std::vector<int> FewestBits(const PlanProblem& p) {
  std::vector<int> choice;
  for (const auto& b : p.bits) {
    choice.push_back(static_cast<int>(std::min_element(b.begin(), b.end()) - b.begin()));
  }
  return choice;
}
std::vector<int> MostBits(const PlanProblem& p) {
  std::vector<int> choice;
  for (const auto& b : p.bits) {
    choice.push_back(static_cast<int>(std::max_element(b.begin(), b.end()) - b.begin()));
  }
  return choice;
}

enum class BudgetKind { kAtRandomAssignment, kAtMinimum, kBetween, kAboveAll };

// 2-3 blocks (ids 0, 7, 14, layers assigned at random so blocks interleave), 1-3 layers per
// block on average, 2-4 candidates, negative and positive diagonal and pair entries, integer
// bits on even seeds and fractional bits on odd ones. `large`: 3-4 blocks, up to 16 layers and
// 5 candidates (too many assignments for brute force).
PlanProblem RandomProblem(uint64_t seed, BudgetKind budget, bool large = false) {
  RandomStream rng(seed, "RandomProblem");
  auto uniform = [&](double lo, double hi) { return lo + (hi - lo) * rng.Uniform01(); };
  auto integer = [&](int lo, int hi) {
    return lo + static_cast<int>(rng.UniformInt(static_cast<uint64_t>(hi - lo + 1)));
  };
  const int n_block = large ? integer(3, 4) : integer(2, 3);
  const int n_layer = large ? integer(10, 16) : integer(n_block, std::min(3 * n_block, 8));
  const int max_cand = large ? 5 : 4;
  const bool integer_bits = seed % 2 == 0;
  PlanProblem p;
  for (int l = 0; l < n_layer; ++l) {
    p.block_of_layer.push_back(7 * (l < n_block ? l : integer(0, n_block - 1)));
    const int n_cand = integer(2, max_cand);
    std::vector<double> bits, cost;
    for (int m = 0; m < n_cand; ++m) {
      bits.push_back(integer_bits ? integer(8, 64) : uniform(8, 64));
      cost.push_back(uniform(-1, 1));
    }
    p.bits.push_back(bits);
    p.cost.push_back(cost);
  }
  for (int l1 = 0; l1 < n_layer; ++l1) {
    for (int l2 = l1 + 1; l2 < n_layer; ++l2) {
      if (p.block_of_layer[l1] != p.block_of_layer[l2] || uniform(0, 1) > 0.7) continue;
      PlanProblem::Pair pair{l1, l2, {}};
      for (size_t k = 0; k < p.bits[l1].size() * p.bits[l2].size(); ++k) {
        pair.cost.push_back(uniform(-0.5, 0.5));
      }
      p.pairs.push_back(pair);
    }
  }
  p.n_weights = 10 * n_layer;
  const double lo = Bits(p, FewestBits(p)), hi = Bits(p, MostBits(p));
  switch (budget) {
    case BudgetKind::kAtRandomAssignment: {
      std::vector<int> choice;
      for (const auto& b : p.bits) choice.push_back(integer(0, static_cast<int>(b.size()) - 1));
      p.budget_bits = Bits(p, choice);
      break;
    }
    case BudgetKind::kAtMinimum:
      p.budget_bits = lo;
      break;
    case BudgetKind::kBetween:
      p.budget_bits = uniform(lo, hi);
      break;
    case BudgetKind::kAboveAll:
      p.budget_bits = hi + 10;
      break;
  }
  return p;
}

// A small LLaMA-like instance: n_block blocks of 7 layers, 5 nested candidates with bits rising
// and costs falling, every same-block pair coupled with noise.
PlanProblem BlockProblem(int n_block, uint64_t seed) {
  RandomStream rng(seed, "BlockProblem");
  PlanProblem p;
  for (int b = 0; b < n_block; ++b) {
    const int first = static_cast<int>(p.bits.size());
    for (int k = 0; k < 7; ++k) {
      const double size = (k < 4 ? 16 : 43) * 4096.0;
      const double scale = 1e-3 * std::exp(rng.Normal());
      std::vector<double> bits, cost;
      for (double r : {0.02, 0.05, 0.10, 0.15, 0.20}) {
        bits.push_back(std::round(size * (2.5 + r)));
        cost.push_back(scale * (1 - 2.5 * r) * (1 + 0.05 * rng.Normal()));
      }
      p.block_of_layer.push_back(b);
      p.bits.push_back(bits);
      p.cost.push_back(cost);
      p.n_weights += size;
    }
    for (int l1 = first; l1 < first + 7; ++l1) {
      for (int l2 = l1 + 1; l2 < first + 7; ++l2) {
        PlanProblem::Pair pair{l1, l2, {}};
        for (int k = 0; k < 25; ++k) pair.cost.push_back(2e-4 * rng.Normal());
        p.pairs.push_back(pair);
      }
    }
  }
  p.budget_bits = Bits(p, std::vector<int>(p.bits.size(), 2));
  return p;
}

void ExpectConsistent(const PlanProblem& p, const PlanSolution& s) {
  EXPECT_LE(s.bits, p.budget_bits) << s.method;
  EXPECT_EQ(s.bits, Bits(p, s.choice)) << s.method;
  EXPECT_EQ(s.objective, Objective(p, s.choice)) << s.method;
  EXPECT_LE(s.bound, s.objective) << s.method;
}

TEST(SolverTest, ParetoAndMilpAgreeWithBruteForceOnRandomInstances) {
  int n_with_pairs = 0, n_fractional = 0;
  for (int seed = 0; seed < kRandomInstances; ++seed) {
    const auto kind = static_cast<BudgetKind>(seed % 4);
    const PlanProblem p = RandomProblem(seed, kind);
    n_with_pairs += !p.pairs.empty();
    n_fractional += seed % 2;
    const PlanSolution brute = SolveBruteForce(p);
    const PlanSolution pareto = SolvePareto(p);
    const PlanSolution milp = SolveMilp(p);
    SCOPED_TRACE("seed " + std::to_string(seed) + ", pareto: " + pareto.detail +
                 ", milp: " + milp.detail);
    for (const PlanSolution* s : {&brute, &pareto, &milp}) {
      ExpectConsistent(p, *s);
      EXPECT_EQ(s->status, "optimal") << s->method;
      EXPECT_EQ(s->gap, 0) << s->method;
      EXPECT_TRUE(SameObjective(s->objective, brute.objective))
          << s->method << " " << s->objective << " vs brute force " << brute.objective;
    }
  }
  EXPECT_GT(n_with_pairs, kRandomInstances / 2);  // the generator really couples layers
  EXPECT_EQ(n_fractional, kRandomInstances / 2);
}

TEST(SolverTest, ParetoAndMilpAgreeOnLargerRandomInstances) {
  for (int seed = 0; seed < kLargeRandomInstances; ++seed) {
    const PlanProblem p = RandomProblem(seed, static_cast<BudgetKind>(seed % 4), /*large=*/true);
    const PlanSolution pareto = SolvePareto(p);
    const PlanSolution milp = SolveMilp(p);
    SCOPED_TRACE("seed " + std::to_string(seed) + ", pareto: " + pareto.detail +
                 ", milp: " + milp.detail);
    ExpectConsistent(p, pareto);
    ExpectConsistent(p, milp);
    EXPECT_EQ(pareto.status, "optimal");
    EXPECT_EQ(milp.status, "optimal");
    EXPECT_TRUE(SameObjective(pareto.objective, milp.objective))
        << pareto.objective << " vs milp " << milp.objective;
  }
}

TEST(SolverTest, ObjectiveIsHalfDeltaMDelta) {
  // The header's mapping: M diag = 2 * cost, M off-diagonal (both triangles) = pair cost.
  const PlanProblem p = RandomProblem(3, BudgetKind::kAboveAll);
  std::vector<int> offset;
  int n = 0;
  for (const auto& b : p.bits) {
    offset.push_back(n);
    n += static_cast<int>(b.size());
  }
  std::vector<double> m(static_cast<size_t>(n) * n, 0.0);
  for (size_t l = 0; l < p.cost.size(); ++l) {
    for (size_t k = 0; k < p.cost[l].size(); ++k) {
      m[(offset[l] + k) * n + offset[l] + k] = 2 * p.cost[l][k];
    }
  }
  for (const auto& pair : p.pairs) {
    const size_t k2 = p.bits[pair.l2].size();
    for (size_t i = 0; i < pair.cost.size(); ++i) {
      const size_t r = offset[pair.l1] + i / k2, c = offset[pair.l2] + i % k2;
      m[r * n + c] = m[c * n + r] = pair.cost[i];
    }
  }
  RandomStream rng(11, "choices");
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<int> choice, hot;
    for (size_t l = 0; l < p.bits.size(); ++l) {
      choice.push_back(static_cast<int>(rng.UniformInt(p.bits[l].size())));
      hot.push_back(offset[l] + choice.back());
    }
    double quad = 0;
    for (int r : hot) {
      for (int c : hot) quad += m[static_cast<size_t>(r) * n + c];
    }
    EXPECT_NEAR(0.5 * quad, Objective(p, choice), 1e-12);
  }
}

TEST(SolverTest, InfeasibleBudgetStatesTheAchievableRange) {
  PlanProblem p;
  p.block_of_layer = {0, 0};
  p.bits = {{16, 20}, {17, 21}};  // 33..41 bits over 16 weights: 2.0625..2.5625 bits/weight
  p.cost = {{1, 0}, {1, 0}};
  p.n_weights = 16;
  p.budget_bits = 2.01 * 16;
  const std::string range =
      " budget 2.01 bits/weight is infeasible: achievable average bits range from 2.0625 to "
      "2.5625. HINT: raise the budget to at least 2.0625 bits/weight";
  EXPECT_THROW_MSG(SolvePareto(p), SolverError, "SolvePareto:" + range);
  EXPECT_THROW_MSG(SolveMilp(p), SolverError, "SolveMilp:" + range);
  EXPECT_THROW_MSG(SolveBruteForce(p), SolverError, "SolveBruteForce:" + range);
  // A miss too small for 6 digits is printed with all 17.
  p.budget_bits = 33 - 1e-9;
  EXPECT_THROW_MSG(SolvePareto(p), SolverError,
                   "SolvePareto: budget 2.0624999999375002 bits/weight is infeasible: achievable "
                   "average bits range from 2.0625 to 2.5625. HINT: raise the budget to at least "
                   "2.0625 bits/weight");
  // Exactly the minimum is feasible.
  p.budget_bits = 33;
  EXPECT_EQ(SolvePareto(p).choice, (std::vector<int>{0, 0}));
}

TEST(SolverTest, OverGenerousBudgetPicksTheCheapestCandidates) {
  PlanProblem p = BlockProblem(2, 5);
  p.budget_bits = 1e3 * Bits(p, MostBits(p));
  // Costs falling with the ratio and no pair terms: the largest ratio everywhere.
  for (size_t l = 0; l < p.cost.size(); ++l) {
    for (int m = 0; m < 5; ++m) p.cost[l][m] = 0.1 * (5 - m) * (1.0 + l);
  }
  p.pairs.clear();
  for (const PlanSolution& s : {SolvePareto(p), SolveMilp(p)}) {
    EXPECT_EQ(s.status, "optimal") << s.method;
    EXPECT_EQ(s.choice, std::vector<int>(p.bits.size(), 4)) << s.method;
    ExpectConsistent(p, s);
  }
  EXPECT_NE(SolvePareto(p).detail.find("budget not binding"), std::string::npos);
  // With pair terms the best plan is whatever brute force says (one block: 5^7 plans).
  PlanProblem one = BlockProblem(1, 5);
  one.budget_bits = 1e3 * Bits(one, MostBits(one));
  const PlanSolution brute = SolveBruteForce(one);
  EXPECT_EQ(SolvePareto(one).choice, brute.choice);
  EXPECT_EQ(SolveMilp(one).choice, brute.choice);
}

TEST(SolverTest, NoPairsIsSeparableAndSplitsIntoOneGroupPerLayer) {
  PlanProblem p = RandomProblem(8, BudgetKind::kBetween);
  p.pairs.clear();
  const PlanSolution brute = SolveBruteForce(p);
  const PlanSolution pareto = SolvePareto(p);
  EXPECT_TRUE(SameObjective(pareto.objective, brute.objective));
  EXPECT_TRUE(SameObjective(SolveMilp(p).objective, brute.objective));
  EXPECT_EQ(pareto.detail.rfind(std::to_string(p.bits.size()) + " groups,", 0), 0u)
      << pareto.detail;
}

TEST(SolverTest, ParetoAndMilpAgreeOnLlamaLikeBlocks) {
  const PlanProblem p = BlockProblem(3, 21);  // 21 layers: 5^21 assignments, no brute force
  const PlanSolution pareto = SolvePareto(p);
  const PlanSolution milp = SolveMilp(p);
  EXPECT_EQ(pareto.status, "optimal");
  EXPECT_EQ(milp.status, "optimal");
  EXPECT_TRUE(SameObjective(milp.objective, pareto.objective))
      << milp.objective << " vs " << pareto.objective;
  ExpectConsistent(p, pareto);
  ExpectConsistent(p, milp);
  // The fixed ratio that set the budget is feasible, so the plan is at least as good.
  EXPECT_LE(pareto.objective, Objective(p, std::vector<int>(p.bits.size(), 2)));
}

TEST(SolverTest, NeverOverBudgetWhereGlpkToleranceWouldAllowIt) {
  // Two groups whose expensive points each fit but not together: one bit over budget is
  // invisible at GLPK's 1e-7 relative row tolerance when a layer holds ~8.6e9 bits.
  constexpr double kBig = 8589934592.0;  // 2^33
  PlanProblem p;
  p.block_of_layer = {0, 1, 2};
  p.bits = {{0, kBig}, {0, kBig}, {0, 1}};
  p.cost = {{0, -1}, {0, -1}, {0, -1e-3}};
  p.n_weights = 3 * kBig;
  p.budget_bits = 2 * kBig;  // the two big layers fit, the third's one extra bit does not
  const PlanSolution brute = SolveBruteForce(p);
  EXPECT_EQ(brute.choice, (std::vector<int>{1, 1, 0}));
  for (const PlanSolution& s : {SolvePareto(p), SolveMilp(p)}) {
    ExpectConsistent(p, s);
    EXPECT_EQ(s.choice, brute.choice) << s.method << ": " << s.detail;
    // The point of the test: GLPK did take the over-budget plan, and the check caught it.
    EXPECT_NE(s.detail.find("1 budget cuts"), std::string::npos) << s.method << ": " << s.detail;
  }
  p.budget_bits = 2 * kBig - 1;  // now only one big layer (and the 1-bit one) fits
  const PlanSolution brute_tight = SolveBruteForce(p);
  EXPECT_EQ(brute_tight.choice, (std::vector<int>{0, 1, 1}));  // ties {1, 0, 1}
  for (const PlanSolution& s : {SolvePareto(p), SolveMilp(p)}) {
    ExpectConsistent(p, s);
    EXPECT_TRUE(SameObjective(s.objective, brute_tight.objective)) << s.method << ": " << s.detail;
  }
}

TEST(SolverTest, SameProblemSameChoiceEvenWithTies) {
  PlanProblem p = BlockProblem(2, 9);
  for (auto& c : p.cost) std::fill(c.begin(), c.end(), 0.25);  // many equally good plans
  for (auto& pair : p.pairs) std::fill(pair.cost.begin(), pair.cost.end(), 0.0);
  for (int run = 0; run < 3; ++run) {
    EXPECT_EQ(SolvePareto(p).choice, SolvePareto(p).choice);
    EXPECT_EQ(SolveMilp(p).choice, SolveMilp(p).choice);
  }
  const PlanProblem q = BlockProblem(3, 4);
  const PlanSolution first = SolvePareto(q);
  for (int run = 0; run < 3; ++run) EXPECT_EQ(SolvePareto(q).choice, first.choice);
  EXPECT_EQ(SolveBruteForce(RandomProblem(1, BudgetKind::kBetween)).choice,
            SolveBruteForce(RandomProblem(1, BudgetKind::kBetween)).choice);
}

TEST(SolverTest, BruteForceBreaksTiesLexicographically) {
  PlanProblem p;
  p.block_of_layer = {0, 1};
  p.bits = {{1, 1, 1}, {1, 1}};
  p.cost = {{0, -1, -1}, {-1, -1}};
  p.n_weights = 2;
  p.budget_bits = 2;
  EXPECT_EQ(SolveBruteForce(p).choice, (std::vector<int>{1, 0}));
}

TEST(SolverTest, MilpWarmStartBoundsTheAnswerUnderATimeLimit) {
  const PlanProblem p = BlockProblem(8, 3);
  const PlanSolution pareto = SolvePareto(p);
  SolverOptions options;
  options.time_limit_s = 0.01;  // far too short for the LP relaxation of 8 blocks
  const PlanSolution milp = SolveMilp(p, options, &pareto);
  EXPECT_EQ(milp.status, "feasible (time limit)");
  EXPECT_LE(milp.objective, pareto.objective);
  ExpectConsistent(p, milp);
  PlanSolution over = pareto;
  over.choice.assign(p.bits.size(), 4);
  EXPECT_THROW_WITH(SolveMilp(p, options, &over), SolverError,
                    "SolveMilp: the warm start plan has ");
  EXPECT_THROW_WITH(SolveMilp(p, options), SolverError,
                    "SolveMilp: GLPK found no plan within the budget (no solution, time limit "
                    "0.01 s). HINT:");
}

TEST(SolverTest, InvalidProblemsAreRefusedByMessage) {
  // The first even seed's problem (integer bits) with a coupled pair, which the checks edit.
  PlanProblem good;
  for (uint64_t seed = 2; good.pairs.empty() && seed < 100; seed += 2) {
    good = RandomProblem(seed, BudgetKind::kBetween);
  }
  ASSERT_GE(good.pairs.size(), 1u);
  auto expect = [](PlanProblem p, const std::string& message) {
    EXPECT_THROW_MSG(ValidatePlanProblem(p), SolverError, "ValidatePlanProblem: " + message);
    EXPECT_THROW_MSG(SolvePareto(p), SolverError, "ValidatePlanProblem: " + message);
  };
  PlanProblem p;
  expect(p, "the problem has no layers");
  p = good;
  p.cost.pop_back();
  expect(p, "bits has " + std::to_string(good.bits.size()) + " layers, cost " +
                std::to_string(good.bits.size() - 1) + ", block_of_layer " +
                std::to_string(good.bits.size()) + "; expected the same number");
  p = good;
  p.bits[1].clear();
  p.cost[1].clear();
  expect(p, "layer 1 has no candidates");
  p = good;
  p.cost[1].push_back(0);
  expect(p, "layer 1 has " + std::to_string(good.bits[1].size()) + " bits and " +
                std::to_string(good.bits[1].size() + 1) +
                " costs; expected one of each per candidate");
  p = good;
  p.block_of_layer[0] = -1;
  expect(p, "layer 0 is in block -1; expected a block id >= 0");
  p = good;
  p.bits[0][1] = std::nan("");
  expect(p, "bits[0][1] is nan; expected a finite number >= 0");
  p = good;
  p.bits[0][0] = -3;
  expect(p, "bits[0][0] is -3; expected a finite number >= 0");
  p = good;
  p.cost[1][0] = -INFINITY;
  expect(p, "cost[1][0] is -inf; expected a finite number");

  PlanProblem::Pair pair = good.pairs[0];
  const std::string name =
      "pair 0 (layers " + std::to_string(pair.l1) + ", " + std::to_string(pair.l2) + ")";
  p = good;
  std::swap(p.pairs[0].l1, p.pairs[0].l2);
  expect(p, "pair 0 (layers " + std::to_string(pair.l2) + ", " + std::to_string(pair.l1) +
                ") is invalid; expected two layers 0 <= l1 < l2 < " +
                std::to_string(good.bits.size()));
  p = good;
  p.pairs.push_back(pair);
  expect(p, "pair " + std::to_string(good.pairs.size()) + " (layers " + std::to_string(pair.l1) +
                ", " + std::to_string(pair.l2) +
                ") repeats pair 0; expected at most one pair "
                "per two layers");
  p = good;
  p.block_of_layer[pair.l2] = 99;
  expect(p, name + " joins blocks " + std::to_string(good.block_of_layer[pair.l1]) +
                " and 99; pair terms exist only within a block (DESIGN.md 1.3)");
  p = good;
  p.pairs[0].cost.pop_back();
  const size_t k1 = good.bits[pair.l1].size(), k2 = good.bits[pair.l2].size();
  expect(p, name + " has " + std::to_string(k1 * k2 - 1) + " costs; expected " +
                std::to_string(k1) + " x " + std::to_string(k2) + " = " + std::to_string(k1 * k2));
  p = good;
  p.pairs[0].cost[2] = NAN;
  expect(p, name + " cost[2] is nan; expected a finite number");
  p = good;
  p.budget_bits = INFINITY;
  expect(p, "budget_bits is inf; expected a finite number of bits");
  p = good;
  p.n_weights = 0;
  expect(p, "n_weights is 0; expected the (positive) number of quantized weights");
}

TEST(SolverTest, BadOptionsAreRefusedByMessage) {
  const PlanProblem p = RandomProblem(4, BudgetKind::kBetween);
  SolverOptions options;
  options.time_limit_s = 0;
  EXPECT_THROW_MSG(SolvePareto(p, options), SolverError,
                   "SolvePareto: time_limit_s is 0; expected a positive number of seconds (or "
                   "infinity)");
  options = {};
  options.mip_gap = NAN;
  EXPECT_THROW_MSG(SolveMilp(p, options), SolverError,
                   "SolveMilp: mip_gap is nan; expected a finite number >= 0");
  options = {};
  options.time_limit_s = INFINITY;
  EXPECT_EQ(SolvePareto(p, options).status, "optimal");
}

TEST(SolverTest, BadChoicesAndOversizedProblemsAreRefusedByMessage) {
  const PlanProblem p = RandomProblem(4, BudgetKind::kBetween);
  EXPECT_THROW_MSG(Objective(p, {}), SolverError,
                   "Objective: choice has 0 entries; expected one per layer (" +
                       std::to_string(p.bits.size()) + ")");
  std::vector<int> choice(p.bits.size(), 0);
  choice[1] = static_cast<int>(p.bits[1].size());
  EXPECT_THROW_MSG(Bits(p, choice), SolverError,
                   "Bits: choice[1] is " + std::to_string(p.bits[1].size()) +
                       "; expected a candidate index in 0.." +
                       std::to_string(p.bits[1].size() - 1));

  PlanProblem big = BlockProblem(2, 1);  // 5^14 assignments
  EXPECT_THROW_MSG(SolveBruteForce(big), SolverError,
                   "SolveBruteForce: the problem has 6103515625 assignments; expected at most "
                   "10000000. HINT: use SolvePareto, which is exact at any size");
  // One block of 10 layers chained by pairs: 5^10 combinations in one group.
  PlanProblem chain = BlockProblem(2, 1);
  std::fill(chain.block_of_layer.begin(), chain.block_of_layer.end(), 0);
  chain.pairs.clear();
  for (int l = 0; l + 1 < 10; ++l) {
    chain.pairs.push_back({l, l + 1, std::vector<double>(25, 0.0)});
  }
  EXPECT_THROW_MSG(SolvePareto(chain), SolverError,
                   "SolvePareto: block 0 has 10 layers coupled by pair terms with more than "
                   "2097152 candidate combinations; expected at most that many. HINT: use "
                   "SolveMilp, or drop pair terms so that the block splits");
}

}  // namespace
}  // namespace hiq
