// Tests of the GLPK wrapper (include/hiq/solve/glpk.h): known answers, warm starts, status mapping,
// silence, and every argument check by its message.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "hiq/solve/glpk.h"
#include "test_util.h"

namespace hiq::glpk {
namespace {

constexpr double kTol = 1e-9;

// max 10a + 13b + 7c + 8d  s.t.  5a + 6b + 4c + 5d <= 10, binary; written as a minimisation.
// The feasible pairs are {a,c} 17, {a,d} 18, {b,c} 20, {c,d} 15: the optimum is b + c = 20.
Problem TinyKnapsack() {
  Problem p;
  const double value[] = {10, 13, 7, 8};
  const double weight[] = {5, 6, 4, 5};
  std::vector<int> cols;
  for (double v : value) cols.push_back(p.AddColumn(ColKind::kBinary, 0, 1, -v));
  p.AddRow(cols, weight, -kInf, 10);
  return p;
}

// 2 x_1 + ... + 2 x_n = n with n odd has no integer solution, but every LP relaxation with
// fewer than n/2 variables fixed is feasible: branch and bound without presolve must explore
// an exponential tree (a classic hard instance for LP-based branch and bound).
Problem ParityTrap(int n) {
  Problem p;
  std::vector<int> cols;
  for (int j = 0; j < n; ++j) cols.push_back(p.AddColumn(ColKind::kBinary, 0, 1, 1.0));
  p.AddRow(cols, std::vector<double>(n, 2.0), n, n);
  return p;
}

TEST(GlpkTest, TinyKnapsackHasTheKnownOptimum) {
  for (bool presolve : {true, false}) {
    Problem p = TinyKnapsack();
    MipOptions options;
    options.presolve = presolve;
    const MipResult r = p.SolveMip(options);
    EXPECT_EQ(r.status, MipStatus::kOptimal) << "presolve " << presolve;
    EXPECT_FALSE(r.time_limit_hit);
    EXPECT_NEAR(r.objective, -20, kTol);
    EXPECT_EQ(r.bound, r.objective);
    EXPECT_EQ(r.gap, 0);
    EXPECT_EQ(r.x, (std::vector<double>{0, 1, 1, 0}));
  }
}

TEST(GlpkTest, ObjectiveConstantAndContinuousColumns) {
  Problem p;
  const int x = p.AddColumn(ColKind::kContinuous, 2, kInf, 1.0);         // x >= 2
  const int y = p.AddColumn(ColKind::kContinuous, -kInf, 3, -1.0);       // y <= 3
  p.AddRow(std::vector<int>{x, y}, std::vector<double>{1, 1}, 4, kInf);  // x + y >= 4
  p.SetObjectiveConstant(5);
  const MipResult r = p.SolveMip({});
  ASSERT_EQ(r.status, MipStatus::kOptimal);
  EXPECT_NEAR(r.objective, 5 + 2 - 3, kTol);
  EXPECT_NEAR(r.x[0], 2, kTol);
  EXPECT_NEAR(r.x[1], 3, kTol);
}

TEST(GlpkTest, WarmStartIsAcceptedAndImprovedOn) {
  Problem p = TinyKnapsack();
  const std::vector<double> start{1, 0, 0, 1};  // value 18, feasible
  MipOptions options;
  options.warm_start = start;
  const MipResult r = p.SolveMip(options);
  EXPECT_TRUE(r.warm_start_used);
  EXPECT_EQ(r.status, MipStatus::kOptimal);
  EXPECT_NEAR(r.objective, -20, kTol);
}

TEST(GlpkTest, OptimalWarmStartIsKept) {
  Problem p = TinyKnapsack();
  const std::vector<double> start{0, 1, 1, 0};
  MipOptions options;
  options.warm_start = start;
  const MipResult r = p.SolveMip(options);
  EXPECT_EQ(r.status, MipStatus::kOptimal);
  EXPECT_EQ(r.x, start);
}

TEST(GlpkTest, WarmStartIsCheckedBeforeGlpkTrustsIt) {
  Problem p = TinyKnapsack();
  MipOptions options;
  const std::vector<double> over_budget{0, 1, 0, 1};  // weight 11 > 10
  options.warm_start = over_budget;
  EXPECT_THROW_MSG(p.SolveMip(options), SolverError,
                   "glpk::Problem::SolveMip: warm start violates row 0: activity 11, expected "
                   "within [-inf, 10]");
  const std::vector<double> fractional{0.5, 0, 0, 0};
  options.warm_start = fractional;
  EXPECT_THROW_MSG(p.SolveMip(options), SolverError,
                   "glpk::Problem::SolveMip: warm start gives column 0 the value 0.5; expected 0 "
                   "or 1 (binary column)");
  const std::vector<double> short_start{0, 1};
  options.warm_start = short_start;
  EXPECT_THROW_MSG(p.SolveMip(options), SolverError,
                   "glpk::Problem::SolveMip: warm start has 2 values; expected one per column "
                   "(4)");
}

TEST(GlpkTest, InfeasibleIsAStatusNotAnError) {
  for (bool presolve : {true, false}) {
    Problem p;
    const int x = p.AddColumn(ColKind::kBinary, 0, 1, 1.0);
    p.AddRow(std::vector<int>{x}, std::vector<double>{1}, 2, kInf);  // x >= 2
    MipOptions options;
    options.presolve = presolve;
    const MipResult r = p.SolveMip(options);
    EXPECT_EQ(r.status, MipStatus::kInfeasible) << "presolve " << presolve;
    EXPECT_TRUE(r.x.empty());
  }
}

TEST(GlpkTest, UnboundedIsAnErrorNamingTheCode) {
  Problem p;
  p.AddColumn(ColKind::kContinuous, 0, kInf, -1.0);
  p.AddColumn(ColKind::kBinary, 0, 1, 0.0);
  EXPECT_THROW_WITH(p.SolveMip({}), SolverError, "GLP_ENODFS");
}

TEST(GlpkTest, TimeLimitStopsTheSearchAndSaysSo) {
  Problem p = ParityTrap(41);
  MipOptions options;
  options.presolve = false;
  options.time_limit_s = 0.3;
  const MipResult r = p.SolveMip(options);
  EXPECT_TRUE(r.time_limit_hit);
  EXPECT_EQ(r.status, MipStatus::kNoSolution);
  EXPECT_LT(r.seconds, 5.0);
}

TEST(GlpkTest, RowsCanBeAddedBetweenSolves) {
  Problem p = TinyKnapsack();
  ASSERT_NEAR(p.SolveMip({}).objective, -20, kTol);
  // Forbid {b, c}: the next best is {a, d} = 18.
  p.AddRow(std::vector<int>{1, 2}, std::vector<double>{1, 1}, -kInf, 1);
  const MipResult r = p.SolveMip({});
  EXPECT_NEAR(r.objective, -18, kTol);
  EXPECT_EQ(r.x, (std::vector<double>{1, 0, 0, 1}));
}

TEST(GlpkTest, SilentUnlessVerbose) {
  for (bool verbose : {false, true}) {
    Problem p = TinyKnapsack();
    MipOptions options;
    options.verbose = verbose;
    options.presolve = false;  // also runs glp_simplex, which prints on its own
    testing::internal::CaptureStdout();
    p.SolveMip(options);
    const std::string out = testing::internal::GetCapturedStdout();
    if (verbose) {
      EXPECT_NE(out.find("tree is empty"), std::string::npos) << out;  // GLPK's last B&B line
    } else {
      EXPECT_EQ(out, "");
    }
  }
}

TEST(GlpkTest, MovedProblemStillSolves) {
  Problem a = TinyKnapsack();
  Problem b = std::move(a);
  EXPECT_EQ(b.num_columns(), 4);
  EXPECT_EQ(b.num_rows(), 1);
  EXPECT_NEAR(b.SolveMip({}).objective, -20, kTol);
}

TEST(GlpkTest, BadColumnsAreRefusedByMessage) {
  Problem p;
  EXPECT_THROW_MSG(p.AddColumn(ColKind::kBinary, 0, 1, kInf), SolverError,
                   "glpk::Problem::AddColumn: column 0 has cost inf; expected a finite number");
  EXPECT_THROW_MSG(p.AddColumn(ColKind::kContinuous, 2, 1, 0), SolverError,
                   "glpk::Problem::AddColumn: column 0 has bounds [2, 1]; expected lb <= ub, "
                   "lb < inf, ub > -inf, no NaN");
  EXPECT_EQ(p.num_columns(), 0);
}

TEST(GlpkTest, BadRowsAreRefusedByMessage) {
  Problem p;
  p.AddColumn(ColKind::kBinary, 0, 1, 1);
  p.AddColumn(ColKind::kBinary, 0, 1, 1);
  const std::vector<double> one{1}, two{1, 1};
  EXPECT_THROW_MSG(p.AddRow(std::vector<int>{2}, one, 0, 1), SolverError,
                   "glpk::Problem::AddRow: row 0 refers to column 2; expected 0..1");
  EXPECT_THROW_MSG(p.AddRow(std::vector<int>{1, 1}, two, 0, 1), SolverError,
                   "glpk::Problem::AddRow: row 0 lists column 1 twice; expected each column at "
                   "most once");
  EXPECT_THROW_MSG(p.AddRow(std::vector<int>{0, 1}, one, 0, 1), SolverError,
                   "glpk::Problem::AddRow: row 0 has 2 columns and 1 coefficients; expected the "
                   "same number");
  EXPECT_THROW_MSG(p.AddRow(std::vector<int>{0}, std::vector<double>{kInf}, 0, 1), SolverError,
                   "glpk::Problem::AddRow: row 0 has coefficient inf for column 0; expected a "
                   "finite number");
  EXPECT_THROW_MSG(p.AddRow(std::vector<int>{0}, one, 1, 0), SolverError,
                   "glpk::Problem::AddRow: row 0 has bounds [1, 0]; expected lb <= ub, lb < inf, "
                   "ub > -inf, no NaN");
  EXPECT_EQ(p.num_rows(), 0);
  EXPECT_THROW_MSG(p.SetObjectiveConstant(std::nan("")), SolverError,
                   "glpk::Problem::SetObjectiveConstant: got nan; expected a finite number");
}

TEST(GlpkTest, BadOptionsAndEmptyProblemsAreRefusedByMessage) {
  Problem empty;
  EXPECT_THROW_MSG(empty.SolveMip({}), SolverError,
                   "glpk::Problem::SolveMip: the problem has no columns; expected at least one");
  Problem p = TinyKnapsack();
  MipOptions options;
  options.time_limit_s = 0;
  EXPECT_THROW_MSG(p.SolveMip(options), SolverError,
                   "glpk::Problem::SolveMip: time_limit_s is 0; expected a positive number of "
                   "seconds (or infinity)");
  options = {};
  options.mip_gap = -1;
  EXPECT_THROW_MSG(p.SolveMip(options), SolverError,
                   "glpk::Problem::SolveMip: mip_gap is -1; expected a finite number >= 0");
  options = {};
  options.tol_obj = 1;
  EXPECT_THROW_MSG(p.SolveMip(options), SolverError,
                   "glpk::Problem::SolveMip: tol_obj is 1; expected a number in (0, 1)");
}

}  // namespace
}  // namespace hiq::glpk
