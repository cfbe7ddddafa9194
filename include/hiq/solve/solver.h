// hiq/solve/solver.h - the global solve (DESIGN.md 1.4): one candidate per layer, minimising the
// quadratic cost model under a budget on total bits. Pure numerics: no MPI, no model, no I/O.
//
// Objective of an assignment m = (m_0, ..., m_{L-1}), m_l in [0, K_l):
//   J(m) = sum_l cost[l][m_l] + sum_{pairs (l1 < l2)} pair.cost[m_l1 * K_l2 + m_l2]
// which is DESIGN.md's 1/2 delta^T M delta (delta one-hot per layer) under the mapping
//   M[(l,m),(l,m)]        = 2 * cost[l][m]          (so cost is the single-layer loss change)
//   M[(l1,m1),(l2,m2)]    = M[(l2,m2),(l1,m1)] = pair.cost[m1 * K_l2 + m2]
// (the off-diagonal entry appears twice in the quadratic form, which the 1/2 cancels).
// Constraint: Bits(m) = sum_l bits[l][m_l] <= budget_bits. Either term may be negative.
//
// Design goals: exact (a plan is "optimal" only when proven; no plan is ever over budget, which
// is checked in double on the final plan), deterministic (same problem, same plan: no hash
// order, no threads; only a time-limit stop depends on timing, and the status says so), and
// fast at LLaMA-70B size. Non-goals: pair terms across blocks (the block-diagonal Hessian of
// DESIGN.md 1.3; the pareto path relies on it), more than one budget row.
//
// The three solvers (docs/SOLVER.md has the derivations and measurements):
//  - SolvePareto (the default): per block, enumerate every combination of its layers'
//    candidates, keep the Pareto frontier in (bits, cost), then solve the multiple-choice
//    knapsack over blocks exactly (Lagrangian bound + greedy incumbent to fix points, GLPK for
//    the rest). Layers of a block that share no pair term are enumerated separately.
//  - SolveMilp: GLPK on the exact linearisation (binary x per candidate, continuous y per
//    same-block candidate pair tied to x by transport rows). The cross-check; slow at scale.
//  - SolveBruteForce: every assignment; the test oracle (refuses > kBruteForceMaxAssignments).
//
// Errors: all throw SolverError. Bad shapes or numbers name the layer/pair; a budget below the
// cheapest assignment says the achievable range of average bits; GLPK failures name the code.
// Thread-safety: the functions are reentrant; one solve per thread at a time.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "hiq/base/error.h"  // SolverError

namespace hiq {

struct PlanProblem {
  std::vector<int> block_of_layer;        // [L] transformer block id (any ints >= 0)
  std::vector<std::vector<double>> bits;  // [L][K_l] exact total bits of layer l at candidate m
  std::vector<std::vector<double>> cost;  // [L][K_l] single-layer cost (loss change)
  struct Pair {
    int l1 = 0, l2 = 0;        // l1 < l2, same block
    std::vector<double> cost;  // K_l1 x K_l2, row-major: cost[m1 * K_l2 + m2]
  };
  std::vector<Pair> pairs;  // optional; at most one per layer pair
  double budget_bits = 0;   // total bits allowed (avg bits * n_weights)
  double n_weights = 0;     // number of quantized weights, for bits/weight in messages
};

struct SolverOptions {
  double time_limit_s = 60;  // whole solve, > 0 (may be inf); hitting it is reported in status
  double mip_gap = 0;        // relative gap at which GLPK may stop (0: prove optimality)
  bool verbose = false;      // GLPK's own progress output
};

struct PlanSolution {
  std::vector<int> choice;  // [L] candidate index per layer
  double objective = 0;     // Objective(problem, choice)
  double bits = 0;          // Bits(problem, choice) <= budget_bits, always
  // "optimal" (proven, up to GLPK's 1e-7 relative pruning tolerance where GLPK is involved),
  // "feasible" (stopped at options.mip_gap) or "feasible (time limit)".
  std::string status;
  double bound = 0;    // proven lower bound on the optimum (== objective when optimal)
  double gap = 0;      // (objective - bound) / |objective|; 0 when optimal, inf if unknown
  double seconds = 0;  // wall time of the solve
  std::string method;  // "pareto", "milp" or "brute_force"
  std::string detail;  // one human-readable line: sizes, what was pruned, GLPK's part
};

// Candidate combinations one block's frontier enumeration accepts (5^9 fits).
inline constexpr int64_t kParetoMaxBlockCombinations = int64_t{1} << 21;
inline constexpr double kBruteForceMaxAssignments = 1e7;

// SolverError naming the first problem found: no layers, a shape mismatch, a non-finite or
// negative bits entry, a non-finite cost, a pair across blocks / out of range / l1 >= l2 /
// repeated, a non-finite budget, n_weights <= 0.
void ValidatePlanProblem(const PlanProblem& problem);

// J(choice) and Bits(choice), summed in layer order (pairs in vector order). These are the
// definitions every solver's answer is checked against. SolverError on a bad choice.
double Objective(const PlanProblem& problem, const std::vector<int>& choice);
double Bits(const PlanProblem& problem, const std::vector<int>& choice);

PlanSolution SolvePareto(const PlanProblem& problem, const SolverOptions& options = {});
// warm_start (optional): a plan within budget (e.g. SolvePareto's) given to GLPK as its first
// incumbent, so a time-limited run returns at least that good a plan.
PlanSolution SolveMilp(const PlanProblem& problem, const SolverOptions& options = {},
                       const PlanSolution* warm_start = nullptr);
// Ties go to the lexicographically smallest choice (layer 0 most significant).
PlanSolution SolveBruteForce(const PlanProblem& problem);

}  // namespace hiq
