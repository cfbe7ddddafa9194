// GLPK wrapper (see include/hiq/solve/glpk.h). Every argument is checked before it reaches GLPK,
// because GLPK answers API misuse with abort(); every return code becomes a SolverError.
#include "hiq/solve/glpk.h"

#include <glpk.h>

#include <algorithm>
#include <cfloat>
#include <chrono>
#include <climits>
#include <cmath>
#include <string>
#include <vector>

namespace hiq::glpk {
namespace {

using Clock = std::chrono::steady_clock;

// Slack for checking a warm start against rows and bounds: loose enough for values the caller
// computed in double, far tighter than GLPK's own 1e-7 feasibility tolerance.
constexpr double kWarmStartTol = 1e-9;

std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

const char* ReturnCodeName(int code) {
  switch (code) {
    case 0:
      return "0 (success)";
    case GLP_EBADB:
      return "GLP_EBADB (invalid basis)";
    case GLP_ESING:
      return "GLP_ESING (singular basis matrix)";
    case GLP_ECOND:
      return "GLP_ECOND (ill-conditioned basis matrix)";
    case GLP_EBOUND:
      return "GLP_EBOUND (invalid bounds)";
    case GLP_EFAIL:
      return "GLP_EFAIL (solver failed)";
    case GLP_EOBJLL:
      return "GLP_EOBJLL (objective lower limit reached)";
    case GLP_EOBJUL:
      return "GLP_EOBJUL (objective upper limit reached)";
    case GLP_EITLIM:
      return "GLP_EITLIM (iteration limit exceeded)";
    case GLP_ETMLIM:
      return "GLP_ETMLIM (time limit exceeded)";
    case GLP_ENOPFS:
      return "GLP_ENOPFS (no primal feasible solution)";
    case GLP_ENODFS:
      return "GLP_ENODFS (no dual feasible solution)";
    case GLP_EROOT:
      return "GLP_EROOT (root LP optimum not provided)";
    case GLP_ESTOP:
      return "GLP_ESTOP (search terminated by application)";
    case GLP_EMIPGAP:
      return "GLP_EMIPGAP (relative mip gap tolerance reached)";
    default:
      return "unknown GLPK return code";
  }
}

// Switches GLPK's terminal output on or off for one scope and restores it after.
class TermOutScope {
 public:
  explicit TermOutScope(bool on) : previous_(glp_term_out(on ? GLP_ON : GLP_OFF)) {}
  ~TermOutScope() { glp_term_out(previous_); }
  TermOutScope(const TermOutScope&) = delete;
  TermOutScope& operator=(const TermOutScope&) = delete;

 private:
  int previous_;
};

// What the branch-and-bound callback reads and records. The callback runs inside GLPK's C
// frames, so it must not throw; it only copies numbers.
struct CallbackState {
  std::vector<double> warm_start_1based;  // empty: no warm start
  bool offered = false;
  bool accepted = false;
  double bound = -kInf;  // best valid lower bound seen so far
};

void Callback(glp_tree* tree, void* info) noexcept {
  auto* state = static_cast<CallbackState*>(info);
  if (glp_ios_reason(tree) == GLP_IHEUR && !state->offered && !state->warm_start_1based.empty()) {
    state->offered = true;
    state->accepted = glp_ios_heur_sol(tree, state->warm_start_1based.data()) == 0;
  }
  // A valid global lower bound is the smallest of: the best active node's bound, the current
  // node's bound (it may already have left the active list) and the incumbent (nodes that
  // cannot beat it were pruned, so the active list alone can overstate the bound).
  double bound = kInf;
  if (int best = glp_ios_best_node(tree); best != 0) {
    bound = std::min(bound, glp_ios_node_bound(tree, best));
  }
  if (int curr = glp_ios_curr_node(tree); curr != 0) {
    bound = std::min(bound, glp_ios_node_bound(tree, curr));
  }
  glp_prob* mip = glp_ios_get_prob(tree);
  if (glp_mip_status(mip) == GLP_FEAS) bound = std::min(bound, glp_mip_obj_val(mip));
  if (bound < kInf) state->bound = std::max(state->bound, bound);
}

int RemainingMs(Clock::time_point deadline) {
  if (deadline == Clock::time_point::max()) return INT_MAX;
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::clamp<long long>(left.count(), 1, INT_MAX));
}

void SetBounds(glp_prob* prob, bool is_row, int index_1based, double lb, double ub) {
  int type;
  if (lb == -kInf && ub == kInf) {
    type = GLP_FR;
  } else if (lb == -kInf) {
    type = GLP_UP;
  } else if (ub == kInf) {
    type = GLP_LO;
  } else if (lb == ub) {
    type = GLP_FX;
  } else {
    type = GLP_DB;
  }
  double glp_lb = std::isfinite(lb) ? lb : 0.0;
  double glp_ub = std::isfinite(ub) ? ub : 0.0;
  if (is_row) {
    glp_set_row_bnds(prob, index_1based, type, glp_lb, glp_ub);
  } else {
    glp_set_col_bnds(prob, index_1based, type, glp_lb, glp_ub);
  }
}

void CheckBounds(const char* function, const std::string& what, double lb, double ub) {
  if (std::isnan(lb) || std::isnan(ub) || lb > ub || lb == kInf || ub == -kInf) {
    throw SolverError(std::string(function) + ": " + what + " has bounds [" + Num(lb) + ", " +
                      Num(ub) + "]; expected lb <= ub, lb < inf, ub > -inf, no NaN");
  }
}

}  // namespace

const char* MipStatusName(MipStatus status) {
  switch (status) {
    case MipStatus::kOptimal:
      return "optimal";
    case MipStatus::kFeasible:
      return "feasible";
    case MipStatus::kNoSolution:
      return "no solution";
    case MipStatus::kInfeasible:
      return "infeasible";
  }
  return "unknown";
}

void Problem::Deleter::operator()(glp_prob* prob) const { glp_delete_prob(prob); }

Problem::Problem() : prob_(glp_create_prob()) { glp_set_obj_dir(prob_.get(), GLP_MIN); }
Problem::~Problem() = default;
Problem::Problem(Problem&& other) noexcept = default;
Problem& Problem::operator=(Problem&& other) noexcept = default;

int Problem::AddColumn(ColKind kind, double lb, double ub, double cost) {
  const std::string what = "column " + std::to_string(num_columns_);
  if (!std::isfinite(cost)) {
    throw SolverError("glpk::Problem::AddColumn: " + what + " has cost " + Num(cost) +
                      "; expected a finite number");
  }
  if (kind == ColKind::kContinuous) CheckBounds("glpk::Problem::AddColumn", what, lb, ub);
  const int j = glp_add_cols(prob_.get(), 1);
  if (kind == ColKind::kBinary) {
    glp_set_col_kind(prob_.get(), j, GLP_BV);  // also sets the bounds to [0, 1]
  } else {
    SetBounds(prob_.get(), /*is_row=*/false, j, lb, ub);
  }
  glp_set_obj_coef(prob_.get(), j, cost);
  kinds_.push_back(kind);
  return num_columns_++;
}

int Problem::AddRow(std::span<const int> cols, std::span<const double> coefs, double lb,
                    double ub) {
  const std::string what = "row " + std::to_string(num_rows_);
  if (cols.size() != coefs.size()) {
    throw SolverError("glpk::Problem::AddRow: " + what + " has " + std::to_string(cols.size()) +
                      " columns and " + std::to_string(coefs.size()) +
                      " coefficients; expected the same number");
  }
  CheckBounds("glpk::Problem::AddRow", what, lb, ub);
  std::vector<char> seen(num_columns_, 0);
  // GLPK's arrays are 1-based: element 0 is unused.
  std::vector<int> ind(cols.size() + 1, 0);
  std::vector<double> val(cols.size() + 1, 0.0);
  for (size_t k = 0; k < cols.size(); ++k) {
    const int j = cols[k];
    if (j < 0 || j >= num_columns_) {
      throw SolverError("glpk::Problem::AddRow: " + what + " refers to column " +
                        std::to_string(j) + "; expected 0.." + std::to_string(num_columns_ - 1));
    }
    if (seen[j]) {
      throw SolverError("glpk::Problem::AddRow: " + what + " lists column " + std::to_string(j) +
                        " twice; expected each column at most once");
    }
    if (!std::isfinite(coefs[k])) {
      throw SolverError("glpk::Problem::AddRow: " + what + " has coefficient " + Num(coefs[k]) +
                        " for column " + std::to_string(j) + "; expected a finite number");
    }
    seen[j] = 1;
    ind[k + 1] = j + 1;
    val[k + 1] = coefs[k];
  }
  const int i = glp_add_rows(prob_.get(), 1);
  glp_set_mat_row(prob_.get(), i, static_cast<int>(cols.size()), ind.data(), val.data());
  SetBounds(prob_.get(), /*is_row=*/true, i, lb, ub);
  return num_rows_++;
}

void Problem::SetObjectiveConstant(double constant) {
  if (!std::isfinite(constant)) {
    throw SolverError("glpk::Problem::SetObjectiveConstant: got " + Num(constant) +
                      "; expected a finite number");
  }
  glp_set_obj_coef(prob_.get(), 0, constant);
}

void Problem::CheckWarmStart(std::span<const double> x) const {
  glp_prob* prob = prob_.get();
  if (static_cast<int>(x.size()) != num_columns_) {
    throw SolverError("glpk::Problem::SolveMip: warm start has " + std::to_string(x.size()) +
                      " values; expected one per column (" + std::to_string(num_columns_) + ")");
  }
  for (int j = 0; j < num_columns_; ++j) {
    const double v = x[j];
    const double lb = glp_get_col_lb(prob, j + 1);  // -DBL_MAX when unbounded below
    const double ub = glp_get_col_ub(prob, j + 1);
    const bool bad_kind = kinds_[j] == ColKind::kBinary && v != 0.0 && v != 1.0;
    const bool bad_bound = !std::isfinite(v) || v < lb - kWarmStartTol * (1 + std::fabs(lb)) ||
                           v > ub + kWarmStartTol * (1 + std::fabs(ub));
    if (bad_kind || bad_bound) {
      throw SolverError("glpk::Problem::SolveMip: warm start gives column " + std::to_string(j) +
                        " the value " + Num(v) + "; expected " +
                        (bad_kind ? std::string("0 or 1 (binary column)")
                                  : "a value in [" + Num(lb) + ", " + Num(ub) + "]"));
    }
  }
  std::vector<int> ind(num_columns_ + 1);
  std::vector<double> val(num_columns_ + 1);
  for (int i = 0; i < num_rows_; ++i) {
    const int len = glp_get_mat_row(prob, i + 1, ind.data(), val.data());
    double activity = 0;
    for (int k = 1; k <= len; ++k) activity += val[k] * x[ind[k] - 1];
    const int type = glp_get_row_type(prob, i + 1);
    const double lb = glp_get_row_lb(prob, i + 1);
    const double ub = glp_get_row_ub(prob, i + 1);
    const bool has_lb = type == GLP_LO || type == GLP_DB || type == GLP_FX;
    const bool has_ub = type == GLP_UP || type == GLP_DB || type == GLP_FX;
    if ((has_lb && activity < lb - kWarmStartTol * (1 + std::fabs(lb))) ||
        (has_ub && activity > ub + kWarmStartTol * (1 + std::fabs(ub)))) {
      throw SolverError("glpk::Problem::SolveMip: warm start violates row " + std::to_string(i) +
                        ": activity " + Num(activity) + ", expected within [" +
                        (has_lb ? Num(lb) : "-inf") + ", " + (has_ub ? Num(ub) : "inf") + "]");
    }
  }
}

MipResult Problem::SolveMip(const MipOptions& options) {
  const auto start = Clock::now();
  if (!(options.time_limit_s > 0)) {
    throw SolverError("glpk::Problem::SolveMip: time_limit_s is " + Num(options.time_limit_s) +
                      "; expected a positive number of seconds (or infinity)");
  }
  if (!(options.mip_gap >= 0) || !std::isfinite(options.mip_gap)) {
    throw SolverError("glpk::Problem::SolveMip: mip_gap is " + Num(options.mip_gap) +
                      "; expected a finite number >= 0");
  }
  if (!(options.tol_obj > 0 && options.tol_obj < 1)) {
    throw SolverError("glpk::Problem::SolveMip: tol_obj is " + Num(options.tol_obj) +
                      "; expected a number in (0, 1)");
  }
  if (num_columns_ == 0) {
    throw SolverError("glpk::Problem::SolveMip: the problem has no columns; expected at least one");
  }
  const bool warm = !options.warm_start.empty();
  if (warm) CheckWarmStart(options.warm_start);

  TermOutScope term_out(options.verbose);
  glp_prob* prob = prob_.get();
  const auto deadline =
      std::isfinite(options.time_limit_s) && options.time_limit_s < INT_MAX / 1000.0
          ? start + std::chrono::duration_cast<Clock::duration>(
                        std::chrono::duration<double>(options.time_limit_s))
          : Clock::time_point::max();

  MipResult result;
  auto finish = [&](MipResult& r) -> MipResult& {
    r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return r;
  };

  CallbackState state;
  const bool presolve = options.presolve && !warm;
  if (!presolve) {
    // glp_intopt without its presolver needs the optimal basis of the LP relaxation first.
    glp_scale_prob(prob, GLP_SF_AUTO);
    glp_smcp smcp;
    glp_init_smcp(&smcp);
    smcp.msg_lev = options.verbose ? GLP_MSG_ON : GLP_MSG_OFF;
    smcp.tm_lim = RemainingMs(deadline);
    const int ret = glp_simplex(prob, &smcp);
    if (ret == GLP_ETMLIM) {
      result.time_limit_hit = true;
      return finish(result);
    }
    if (ret != 0) {
      throw SolverError(std::string("glpk::Problem::SolveMip: glp_simplex (LP relaxation) "
                                    "returned ") +
                        ReturnCodeName(ret));
    }
    const int lp_status = glp_get_status(prob);
    if (lp_status == GLP_NOFEAS) {
      result.status = MipStatus::kInfeasible;
      return finish(result);
    }
    if (lp_status != GLP_OPT) {
      throw SolverError("glpk::Problem::SolveMip: the LP relaxation has status " +
                        std::to_string(lp_status) +
                        " (unbounded or undefined); expected a bounded problem");
    }
    state.bound = glp_get_obj_val(prob);  // the root relaxation bounds every integer point
    if (warm) {
      state.warm_start_1based.assign(1, 0.0);
      state.warm_start_1based.insert(state.warm_start_1based.end(), options.warm_start.begin(),
                                     options.warm_start.end());
    }
  }

  glp_iocp iocp;
  glp_init_iocp(&iocp);
  iocp.msg_lev = options.verbose ? GLP_MSG_ON : GLP_MSG_OFF;
  iocp.presolve = presolve ? GLP_ON : GLP_OFF;
  iocp.tm_lim = RemainingMs(deadline);
  iocp.mip_gap = options.mip_gap;
  iocp.tol_obj = options.tol_obj;
  iocp.cb_func = Callback;
  iocp.cb_info = &state;
  const int ret = glp_intopt(prob, &iocp);
  result.warm_start_used = state.accepted;
  switch (ret) {
    case 0:
    case GLP_EMIPGAP:
      break;
    case GLP_ETMLIM:
      result.time_limit_hit = true;
      break;
    case GLP_ENOPFS:
      result.status = MipStatus::kInfeasible;
      return finish(result);
    default:
      throw SolverError(std::string("glpk::Problem::SolveMip: glp_intopt returned ") +
                        ReturnCodeName(ret));
  }

  const int mip_status = glp_mip_status(prob);
  if (mip_status == GLP_NOFEAS) {
    result.status = MipStatus::kInfeasible;
    return finish(result);
  }
  if (mip_status != GLP_OPT && mip_status != GLP_FEAS) {
    HIQ_CHECK(result.time_limit_hit);  // only a time limit stops GLPK without an incumbent
    result.status = MipStatus::kNoSolution;
    result.bound = state.bound;
    return finish(result);
  }
  result.objective = glp_mip_obj_val(prob);
  result.x.resize(num_columns_);
  for (int j = 0; j < num_columns_; ++j) result.x[j] = glp_mip_col_val(prob, j + 1);
  if (mip_status == GLP_OPT && ret == 0) {
    result.status = MipStatus::kOptimal;
    result.bound = result.objective;
    result.gap = 0;
  } else {
    result.status = MipStatus::kFeasible;
    result.bound = std::min(state.bound, result.objective);
    result.gap = result.bound == -kInf ? kInf
                                       : (result.objective - result.bound) /
                                             std::max(std::fabs(result.objective), DBL_EPSILON);
  }
  return finish(result);
}

}  // namespace hiq::glpk
