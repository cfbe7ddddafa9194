// bench_plan_study - how well each cost estimator predicts the loss of whole plans, and what the
// plan it leads to is worth (the plan issue's study; docs/PLAN.md, run by scripts/bench_plan.sh).
// An MPI program with its own main, not a Google Benchmark: the thing measured is a whole
// collective stage, once.
//
//   mpirun -np P build/bench/bench_plan_study CONFIG.yaml [--set key=value]... [--plans 30]
//       [--bits-tolerance 0.10] [--seed 1] [--json OUT.json] [--plan-dir DIR]
//
// Setup exactly as RunPlanStage (include/hiq/stages/plan.h): Fisher on calibration.fisher,
// candidates, the budget, the fixed ratio within it, the cost and check sets. Then:
//  - N random plans: every layer's candidate uniform over R, kept only when the plan's total
//    bits lie within +-tolerance (relative) of the budget's, redrawn otherwise. Their loss change
//    vs full precision is measured once on calibration.check and reused for every estimator.
//  - For each estimator {loss, local, fisher} x centre {plan = the fixed ratio, fp}: the cost
//    terms on calibration.cost (evaluations and seconds as CostModel::Measure reports them), the
//    predicted change of every random plan, (L_cost(centre) - L_cost(fp)) + J(plan) (the formula
//    RunPlanStage prints), its Pearson and Spearman correlation with the measured change and the
//    mean bias (predicted - measured); then ONE SolvePareto under the budget - no re-centring
//    and no fallback to the fixed ratio, so the estimator alone decides - whose plan is measured
//    on the check set and written to DIR/<estimator>-<centre>/ (plan.json, plan.h5, fixed/) for
//    `hiq eval --plan`.
// Rank 0 prints progress and a summary and writes the JSON; every number in it is the same for
// any rank count except the seconds.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "hiq/base/error.h"          // ConfigError, SolverError
#include "hiq/base/rng.h"            // StreamSeed
#include "hiq/config/config.h"       // LoadConfig, RunConfig, Name
#include "hiq/dist/mpi.h"            // MpiSession, Comm
#include "hiq/dist/pipeline.h"       // Pipeline
#include "hiq/io/checkpoint.h"       // Checkpoint
#include "hiq/model/llama.h"         // KeepActivationMemory
#include "hiq/solve/solver.h"        // PlanProblem, Objective, SolvePareto
#include "hiq/stages/calibration.h"  // BuildSampleSet
#include "hiq/stages/cost.h"         // CostModel, CostTerms, Plan, LayerName
#include "hiq/stages/fisher.h"       // ComputeFisher
#include "hiq/stages/plan.h"         // PlanReport, PlanLayerRow, WritePlan, PlanFingerprint

extern "C" void openblas_set_num_threads(int num_threads);

namespace hiq {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Rejection sampling gives up after this many draws per wanted plan (a tolerance too tight for
// the candidate set's bit range).
constexpr int kMaxDrawsPerPlan = 10000;

struct Args {
  fs::path config;
  std::vector<std::string> sets;
  int n_plans = 30;
  double bits_tolerance = 0.10;
  uint64_t seed = 1;
  fs::path json_out = "out/bench-plan/study.json";
  fs::path plan_dir = "out/bench-plan/plans";
};

double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// As `hiq`: config.threads if set, else the node's cores shared out among its ranks.
void SetThreads(int threads) {
  if (threads <= 0) {
    const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    if (local == nullptr) return;
    threads = std::max(
        1, static_cast<int>(std::thread::hardware_concurrency()) / std::max(1, std::atoi(local)));
  }
  openblas_set_num_threads(threads);
}

double Mean(const std::vector<double>& v) {
  return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

// NaN when either side is constant (no correlation to speak of).
double Pearson(const std::vector<double>& x, const std::vector<double>& y) {
  const double mx = Mean(x), my = Mean(y);
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  return sxx > 0 && syy > 0 ? sxy / std::sqrt(sxx * syy) : std::nan("");
}

// Ranks 1..n, ties sharing their mean rank.
std::vector<double> Ranks(const std::vector<double>& v) {
  std::vector<size_t> order(v.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> rank(v.size());
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j + 1 < order.size() && v[order[j + 1]] == v[order[i]]) ++j;
    for (size_t k = i; k <= j; ++k) rank[order[k]] = 0.5 * static_cast<double>(i + j) + 1.0;
    i = j + 1;
  }
  return rank;
}

double Spearman(const std::vector<double>& x, const std::vector<double>& y) {
  return Pearson(Ranks(x), Ranks(y));
}

// JSON has no NaN: a missing correlation is null.
nlohmann::json Number(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); }

// The random plans (see the file comment). One generator, drawn in order, so every rank draws
// the same plans. It keeps std::uniform_int_distribution (libstdc++'s numbers) rather than
// RandomStream so that the random plans behind docs/PLAN.md 3.1 stay the ones measured there.
std::vector<Plan> RandomPlans(const CostModel& cm, double budget, int n, double tolerance,
                              uint64_t seed, int64_t& draws) {
  std::mt19937_64 rng(StreamSeed(seed, "random_plans"));
  std::uniform_int_distribution<int> candidate(0, cm.n_candidates() - 1);
  std::vector<Plan> plans;
  for (draws = 0; static_cast<int>(plans.size()) < n; ++draws) {
    if (draws >= int64_t{kMaxDrawsPerPlan} * n) {
      throw ConfigError("bench_plan_study: " + std::to_string(draws) + " random plans drawn, " +
                        std::to_string(plans.size()) + " within +-" + std::to_string(tolerance) +
                        " of the budget's bits, " + std::to_string(n) +
                        " wanted. HINT: raise --bits-tolerance");
    }
    Plan plan(static_cast<size_t>(cm.n_layers()));
    for (int& m : plan) m = candidate(rng);
    if (std::abs(cm.PlanBits(plan) - budget) <= tolerance * budget) plans.push_back(plan);
  }
  return plans;
}

struct Combo {
  CostMode mode;
  CostCenter center;
  std::string name() const { return std::string(Name(mode)) + "-" + std::string(Name(center)); }
};

int Run(const Comm& comm, const Args& args) {
  const auto t0 = Clock::now();
  const bool speaks = comm.rank() == 0;
  auto log = [&](const std::string& line) {
    if (!speaks) return;
    std::printf("[%6.1fs] %s\n", Since(t0), line.c_str());
    std::fflush(stdout);
  };
  const RunConfig config = LoadConfig(args.config, args.sets);
  if (args.n_plans < 3) throw ConfigError("bench_plan_study: --plans must be >= 3");
  SetThreads(config.threads);
  Checkpoint checkpoint(config.model.path);
  Pipeline pipeline = LoadPipeline(comm, checkpoint);
  const std::string model_fingerprint = ModelFingerprint(checkpoint, pipeline);
  const QuantSpec spec{config.quant.bits_low, config.quant.bits_high, config.quant.group_size};
  const fs::path& tok = config.model.tokenizer;
  const ModelVocab vocab = ReadModelVocab(config.model.path / "config.json");

  // Setup, as RunPlanStage.
  const std::vector<Sequence> fisher_set =
      BuildSampleSet(config.calibration.fisher, "fisher", pipeline, tok, vocab);
  CostModel cm(pipeline, spec, config.quant.ratios,
               ScoreChannels(pipeline.stage(), ComputeFisher(pipeline, fisher_set),
                             config.quant.score, spec));
  const double budget = config.quant.budget_ratio > 0 ? cm.BitsAtRatio(config.quant.budget_ratio)
                                                      : config.quant.budget_bits * cm.n_weights();
  const std::optional<Plan> fixed = cm.FixedPlanWithin(budget);
  if (!fixed) {
    throw ConfigError("bench_plan_study: no fixed ratio of quant.ratios fits the budget of " +
                      std::to_string(budget / cm.n_weights()) + " bits per weight");
  }
  const std::vector<Sequence> cost_set =
      BuildSampleSet(config.calibration.cost, "cost", pipeline, tok, vocab);
  const std::vector<Sequence> check_set =
      BuildSampleSet(config.calibration.check, "check", pipeline, tok, vocab);
  const double fp_cost = cm.MeasurePlans(cost_set, {std::nullopt})[0];
  log("setup: fisher " + std::to_string(fisher_set.size()) + " seqs, cost " +
      std::to_string(cost_set.size()) + ", check " + std::to_string(check_set.size()) +
      ", budget " + std::to_string(budget / cm.n_weights()) + " bits/weight");

  // The random plans, measured once on the check set with the fixed ratio and full precision.
  int64_t draws = 0;
  const std::vector<Plan> plans =
      RandomPlans(cm, budget, args.n_plans, args.bits_tolerance, args.seed, draws);
  std::vector<std::optional<Plan>> jobs(plans.begin(), plans.end());
  jobs.push_back(*fixed);
  jobs.push_back(std::nullopt);
  const auto t_measure = Clock::now();
  const std::vector<double> check_loss = cm.MeasurePlans(check_set, jobs);
  const double measure_seconds = Since(t_measure);
  const double fp_check = check_loss.back();
  const double fixed_dloss = check_loss[plans.size()] - fp_check;
  std::vector<double> measured, plan_bits;
  for (size_t i = 0; i < plans.size(); ++i) {
    measured.push_back(check_loss[i] - fp_check);
    plan_bits.push_back(cm.PlanBits(plans[i]) / cm.n_weights());
  }
  log("random plans: " + std::to_string(plans.size()) + " measured in " +
      std::to_string(measure_seconds) + " s; fixed ratio dloss " + std::to_string(fixed_dloss));

  nlohmann::json out;
  out["config"] = fs::absolute(args.config).string();
  out["sets"] = args.sets;
  out["ranks"] = comm.size();
  out["budget_avg_bits"] = budget / cm.n_weights();
  out["fixed"] = {{"ratio", cm.ratios()[static_cast<size_t>(fixed->front())]},
                  {"avg_bits", cm.PlanBits(*fixed) / cm.n_weights()},
                  {"measured_dloss", fixed_dloss},
                  {"dir", (args.plan_dir / "loss-plan" / "fixed").string()}};
  out["fp_loss"] = {{"cost", fp_cost}, {"check", fp_check}};
  out["sets_size"] = {{"fisher", fisher_set.size()},
                      {"cost", cost_set.size()},
                      {"check", check_set.size()},
                      {"seq_len", config.calibration.cost.seq_len}};
  out["random_plans"] = {{"n", plans.size()},
                         {"seed", args.seed},
                         {"bits_tolerance", args.bits_tolerance},
                         {"draws", draws},
                         {"avg_bits", plan_bits},
                         {"measured_dloss", measured},
                         {"measure_seconds", measure_seconds},
                         // How much of the measured spread the bits alone explain: the baseline
                         // any estimator has to beat.
                         {"pearson_minus_bits", Number(Pearson(plan_bits, measured) * -1.0)}};
  if (speaks) {
    std::printf("random plans: avg bits %.4f..%.4f (budget %.4f); measured dloss %.4f..%.4f\n",
                *std::min_element(plan_bits.begin(), plan_bits.end()),
                *std::max_element(plan_bits.begin(), plan_bits.end()), budget / cm.n_weights(),
                *std::min_element(measured.begin(), measured.end()),
                *std::max_element(measured.begin(), measured.end()));
  }

  // Every estimator x centre.
  const Combo combos[] = {
      {CostMode::kLoss, CostCenter::kPlan},   {CostMode::kLoss, CostCenter::kFp},
      {CostMode::kLocal, CostCenter::kPlan},  {CostMode::kLocal, CostCenter::kFp},
      {CostMode::kFisher, CostCenter::kPlan}, {CostMode::kFisher, CostCenter::kFp}};
  std::vector<std::optional<Plan>> solved;
  std::vector<nlohmann::json> rows;
  std::vector<PlanReport> reports;
  for (const Combo& combo : combos) {
    const std::optional<Plan> centre =
        combo.center == CostCenter::kPlan ? fixed : std::optional<Plan>();
    const CostTerms terms =
        cm.Measure(combo.mode, cost_set, centre, config.cost.pairs, config.cost.local_fit_switches);
    const PlanProblem problem = MakePlanProblem(cm, terms, budget);
    const double offset = terms.centre_loss - fp_cost;
    std::vector<double> predicted;
    for (const Plan& plan : plans) predicted.push_back(offset + Objective(problem, plan));
    std::vector<double> error;
    for (size_t i = 0; i < plans.size(); ++i) error.push_back(predicted[i] - measured[i]);
    double sq = 0;
    for (double e : error) sq += e * e;
    const PlanSolution sol = SolveOnRankZero(config, problem, comm);
    solved.push_back(sol.choice);

    nlohmann::json row;
    row["estimator"] = std::string(Name(combo.mode));
    row["centre"] = std::string(Name(combo.center));
    row["evaluations"] = terms.evaluations;
    row["seconds"] = terms.seconds;
    row["pairs"] = config.cost.pairs;
    row["pearson"] = Number(Pearson(predicted, measured));
    row["spearman"] = Number(Spearman(predicted, measured));
    row["bias"] = Mean(error);
    row["rmse"] = std::sqrt(sq / static_cast<double>(error.size()));
    row["predicted_dloss"] = predicted;
    row["centre_dloss_cost"] = offset;
    row["solve_seconds"] = sol.seconds;
    row["solve_status"] = sol.status;
    row["plan_predicted_dloss"] = offset + sol.objective;
    row["plan_avg_bits"] = cm.PlanBits(sol.choice) / cm.n_weights();
    row["plan_dir"] = (args.plan_dir / combo.name()).string();
    rows.push_back(row);

    PlanReport report;
    report.spec = spec;
    report.ratios = cm.ratios();
    report.choice = sol.choice;
    report.budget_avg_bits = budget / cm.n_weights();
    report.avg_bits = cm.PlanBits(sol.choice) / cm.n_weights();
    report.fixed_ratio = cm.ratios()[static_cast<size_t>(fixed->front())];
    report.predicted_dloss = offset + sol.objective;
    report.fixed_dloss = fixed_dloss;
    report.solver = "pareto";
    report.status = sol.status;
    report.solve_seconds = sol.seconds;
    report.cost_seconds = terms.seconds;
    report.evaluations = terms.evaluations;
    report.log = "bench_plan_study: one solve around the centre, no re-centring, no fallback\n";
    RunConfig as_run = config;  // the config `hiq plan` would need for these terms
    as_run.cost.mode = combo.mode;
    as_run.cost.center = combo.center;
    as_run.cost.refine = 0;
    report.fingerprint = PlanFingerprint(as_run, model_fingerprint);
    report.cost_mode = std::string(Name(combo.mode));
    report.cost_center = std::string(Name(combo.center));
    report.layers = LayerRows(cm, sol.choice, TermsAt(terms.diag, sol.choice), comm);
    report.fixed_layers = LayerRows(cm, *fixed, std::vector<double>(fixed->size(), 0.0), comm);
    report.fixed_avg_bits = cm.PlanBits(*fixed) / cm.n_weights();
    reports.push_back(std::move(report));

    char line[256];
    std::snprintf(line, sizeof line,
                  "%-6s %-4s %5d evals %7.2f s  pearson %6.3f  bias %+8.4f  solved %s in %.3f s",
                  std::string(Name(combo.mode)).c_str(), std::string(Name(combo.center)).c_str(),
                  terms.evaluations, terms.seconds, Pearson(predicted, measured), Mean(error),
                  sol.status.c_str(), sol.seconds);
    log(line);
  }

  // The solved plans on the check set, in one batch.
  const std::vector<double> solved_loss = cm.MeasurePlans(check_set, solved);
  for (size_t c = 0; c < rows.size(); ++c) {
    rows[c]["plan_measured_dloss"] = solved_loss[c] - fp_check;
    reports[c].measured_dloss = solved_loss[c] - fp_check;
  }
  out["estimators"] = rows;
  out["seconds_total"] = Since(t0);
  if (speaks) {
    for (size_t c = 0; c < reports.size(); ++c) {
      WritePlan(reports[c], rows[c]["plan_dir"].get<std::string>());
    }
    if (args.json_out.has_parent_path()) fs::create_directories(args.json_out.parent_path());
    std::ofstream json(args.json_out);
    json << out.dump(1) << "\n";
    json.close();
    if (!json) throw IoError("bench_plan_study: cannot write '" + args.json_out.string() + "'");
    std::printf("%-6s %-4s %6s %8s %8s %8s %9s %9s %9s\n", "est", "ctr", "evals", "seconds",
                "pearson", "spearman", "bias", "plan", "fixed");
    for (const auto& r : rows) {
      std::printf("%-6s %-4s %6d %8.2f %8.3f %8.3f %+9.4f %9.4f %9.4f\n",
                  r["estimator"].get<std::string>().c_str(), r["centre"].get<std::string>().c_str(),
                  r["evaluations"].get<int>(), r["seconds"].get<double>(),
                  r["pearson"].is_null() ? std::nan("") : r["pearson"].get<double>(),
                  r["spearman"].is_null() ? std::nan("") : r["spearman"].get<double>(),
                  r["bias"].get<double>(), r["plan_measured_dloss"].get<double>(), fixed_dloss);
    }
    std::printf("wrote %s and %s/*/plan.json in %.1f s\n", args.json_out.c_str(),
                args.plan_dir.c_str(), Since(t0));
  }
  comm.Barrier();  // the files are on disk before any rank reports success
  return 0;
}

}  // namespace
}  // namespace hiq

int main(int argc, char** argv) {
  hiq::KeepActivationMemory();
  hiq::MpiSession mpi(&argc, &argv);
  int rank = 0, size = 1;
  CLI::App app{"bench_plan_study: cost estimators vs measured plan losses (docs/PLAN.md)"};
  hiq::Args args;
  app.add_option("CONFIG", args.config, "YAML config (as for hiq plan)")->required();
  app.add_option("--set", args.sets, "Override a config key: --set cost.pairs=true");
  app.add_option("--plans", args.n_plans, "Number of random plans");
  app.add_option("--bits-tolerance", args.bits_tolerance,
                 "Keep random plans whose total bits are within this fraction of the budget");
  app.add_option("--seed", args.seed, "Seed of the random plans");
  app.add_option("--json", args.json_out, "Output JSON");
  app.add_option("--plan-dir", args.plan_dir, "Directory for the solved plans");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    const hiq::Comm world = hiq::Comm::World();
    rank = world.rank();
    size = world.size();
    return hiq::Run(world, args);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_plan_study: error: rank %d: %s\n", rank, e.what());
    std::fflush(stderr);
    if (size > 1) hiq::Comm::AbortWorld(1);
    return 1;
  }
}
