// hiq/solve/glpk.h - the one place hiq talks to GLPK: a thin RAII wrapper for minimising a
// mixed-integer linear program with glp_intopt.
//
// Why GLPK: it is in Debian's archive (GLPK 5), exact enough for the plan solve (DESIGN.md 1.4)
// once the caller scales its rows, and has the branch-and-bound callbacks a warm start needs.
// Non-goals: maximisation (negate the costs), quadratic objectives (linearise first), editing
// a problem after a solve other than adding rows.
//
// Errors: GLPK aborts the process on API misuse (bad index, duplicate entry, bad bounds), so
// every argument is checked here first and refused with a SolverError naming the column/row;
// every GLPK return code is checked and a failure becomes a SolverError naming the call and
// the code. Infeasibility and early stops are answers, not errors: see MipStatus.
// Output: GLPK's terminal output is switched off for the duration of each call unless
// MipOptions::verbose is set (and restored afterwards).
#pragma once

#include <limits>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "hiq/base/error.h"  // SolverError

struct glp_prob;  // GLPK's problem object; only src/solve/glpk.cpp ever dereferences it

namespace hiq::glpk {

inline constexpr double kInf = std::numeric_limits<double>::infinity();

enum class ColKind { kContinuous, kBinary };

struct MipOptions {
  double time_limit_s = 60;  // whole call (LP relaxation + branch and bound); > 0, may be kInf
  double mip_gap = 0;        // stop when (incumbent - bound) / |incumbent| <= mip_gap
  bool presolve = true;      // GLPK's MIP presolver; forced off when warm_start is given,
                             // because GLPK can only take a heuristic solution for the
                             // original (unpresolved) columns
  double tol_obj = 1e-7;     // GLPK's relative tolerance for pruning a node against the
                             // incumbent, in (0, 1); smaller = closer to exact, slower
  bool verbose = false;      // GLPK's own progress messages on stdout
  // One value per column, an integer-feasible point offered to GLPK as its first incumbent
  // (glp_ios_heur_sol at the first GLP_IHEUR callback). GLPK trusts what it is given, so it is
  // checked here against every bound and row first (SolverError if it violates one).
  std::span<const double> warm_start;
};

enum class MipStatus {
  kOptimal,     // proven optimal (up to tol_obj)
  kFeasible,    // stopped early (time limit or mip_gap) with an incumbent: x is feasible
  kNoSolution,  // stopped by the time limit before any integer-feasible point was found
  kInfeasible,  // proven to have no integer-feasible point
};
const char* MipStatusName(MipStatus status);  // "optimal", "feasible", ...

struct MipResult {
  MipStatus status = MipStatus::kNoSolution;
  bool time_limit_hit = false;
  double objective = kInf;  // of x, including the objective constant
  double bound = -kInf;     // best proven lower bound on the optimum (-kInf if none)
  double gap = kInf;        // (objective - bound) / max(|objective|, DBL_EPSILON); 0 if optimal
  std::vector<double> x;    // one value per column (binary columns exactly 0 or 1); empty
                            // unless status is kOptimal or kFeasible
  bool warm_start_used = false;  // GLPK accepted the warm start as an incumbent
  double seconds = 0;            // wall time of the call
};

// A minimisation problem: columns (variables) with bounds, kind and objective coefficient,
// rows lb <= a.x <= ub, an objective constant. Owns its glp_prob; move-only. Not thread-safe:
// one Problem per thread (GLPK's environment, including the terminal switch, is per thread).
// Indices are 0-based here (GLPK's are 1-based; the wrapper translates). A moved-from Problem
// may only be destroyed or assigned to.
class Problem {
 public:
  Problem();
  ~Problem();
  Problem(Problem&& other) noexcept;
  Problem& operator=(Problem&& other) noexcept;
  Problem(const Problem&) = delete;
  Problem& operator=(const Problem&) = delete;

  // Adds a column and returns its index. A binary column ignores lb/ub (it is 0 or 1). For a
  // continuous column lb may be -kInf and ub kInf. SolverError on NaN, an infinite cost or
  // lb > ub.
  int AddColumn(ColKind kind, double lb, double ub, double cost);
  // Adds the row lb <= sum_k coefs[k] * x[cols[k]] <= ub (lb may be -kInf, ub kInf; lb == ub is
  // an equality) and returns its index. SolverError on a column out of range or repeated, a
  // size mismatch, a non-finite coefficient, NaN or crossed bounds.
  int AddRow(std::span<const int> cols, std::span<const double> coefs, double lb, double ub);
  void SetObjectiveConstant(double constant);  // SolverError if not finite

  int num_columns() const { return num_columns_; }
  int num_rows() const { return num_rows_; }

  // Minimises. SolverError on bad options or a GLPK failure (the code is named); an empty
  // problem (no column) is refused. The problem can be solved again after adding rows.
  MipResult SolveMip(const MipOptions& options);

 private:
  struct Deleter {
    void operator()(glp_prob* prob) const;
  };
  void CheckWarmStart(std::span<const double> x) const;

  std::unique_ptr<glp_prob, Deleter> prob_;
  int num_columns_ = 0;
  int num_rows_ = 0;
  std::vector<ColKind> kinds_;  // per column, for warm-start and result checks
};

}  // namespace hiq::glpk
