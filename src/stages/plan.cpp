#include "hiq/stages/plan.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "hiq/base/error.h"          // FormatError, IoError
#include "hiq/base/interrupt.h"      // SetStage
#include "hiq/base/log.h"            // Log
#include "hiq/base/sha256.h"         // Sha256Hex
#include "hiq/io/h5.h"               // H5File
#include "hiq/io/output.h"           // WriteWholeFile
#include "hiq/model/blas.h"          // CurrentBlasInfo
#include "hiq/solve/solver.h"        // SolvePareto, SolveMilp
#include "hiq/stages/calibration.h"  // BuildSampleSet
#include "hiq/stages/fisher.h"       // ComputeFisher
#include "hiq/stages/resume.h"       // ResumePlan

namespace hiq {
namespace {

using Clock = std::chrono::steady_clock;

PlanSolution Solve(const RunConfig& config, const PlanProblem& problem) {
  SolverOptions options;
  options.time_limit_s = config.solver.time_limit;
  options.mip_gap = config.solver.mip_gap;
  return config.solver.method == SolverMethod::kPareto ? SolvePareto(problem, options)
                                                       : SolveMilp(problem, options);
}

// Loss changes print with 6 decimals everywhere (nats per token).
std::string Fixed6(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6f", v);
  return buf;
}

// The shortest text that reads back as the same double (ratios and bits in messages).
std::string FormatG(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  for (int precision = 1; precision <= 17; ++precision) {
    char shorter[64];
    std::snprintf(shorter, sizeof shorter, "%.*g", precision, v);
    if (std::strtod(shorter, nullptr) == v) return shorter;
  }
  return buf;
}

}  // namespace

// Rank 0 solves; every rank receives its choice, status and numbers.
PlanSolution SolveOnRankZero(const RunConfig& config, const PlanProblem& problem,
                             const Comm& comm) {
  PlanSolution sol;
  std::string error;
  if (comm.rank() == 0) {
    try {
      sol = Solve(config, problem);
    } catch (const SolverError& e) {
      error = e.what();
    }
  }
  // A solver error is every rank's error: share it so that all throw the same message.
  comm.Broadcast(error, 0);
  if (!error.empty()) throw SolverError(error);
  comm.Broadcast(sol.status, 0);
  comm.Broadcast(sol.method, 0);
  comm.Broadcast(sol.choice, 0);
  comm.Broadcast(sol.objective, 0);
  comm.Broadcast(sol.bits, 0);
  comm.Broadcast(sol.seconds, 0);
  comm.Broadcast(sol.gap, 0);
  return sol;
}

std::vector<double> TermsAt(const std::vector<std::vector<double>>& diag, const Plan& plan) {
  std::vector<double> terms;
  for (size_t l = 0; l < plan.size(); ++l) terms.push_back(diag[l][static_cast<size_t>(plan[l])]);
  return terms;
}

PlanProblem MakePlanProblem(const CostModel& cm, const CostTerms& terms, double budget_bits) {
  PlanProblem p;
  for (int l = 0; l < cm.n_layers(); ++l) p.block_of_layer.push_back(BlockOfLayer(l));
  p.bits = cm.bits();
  p.cost = terms.diag;
  p.pairs = terms.pairs;
  p.budget_bits = budget_bits;
  p.n_weights = cm.n_weights();
  return p;
}

// The per-layer rows of a plan; the channel lists live on the owning ranks and are gathered.
std::vector<PlanLayerRow> LayerRows(const CostModel& cm, const Plan& plan,
                                    const std::vector<double>& terms, const Comm& comm) {
  std::vector<std::vector<int32_t>> mine;
  for (int l = 0; l < cm.n_layers(); ++l) {
    if (const LayerCandidates* c = cm.Local(l)) {
      mine.push_back(c->high_cols[static_cast<size_t>(plan[static_cast<size_t>(l)])]);
    }
  }
  // Ranks own contiguous layers in rank order, so the concatenation is in global layer order.
  const std::vector<std::vector<int32_t>> channels = comm.AllGather(mine);
  HIQ_CHECK(channels.size() == static_cast<size_t>(cm.n_layers()));
  std::vector<PlanLayerRow> rows;
  for (int l = 0; l < cm.n_layers(); ++l) {
    PlanLayerRow row;
    row.name = LayerName(l);
    row.candidate = plan[static_cast<size_t>(l)];
    row.ratio = cm.ratios()[static_cast<size_t>(row.candidate)];
    row.n_out = cm.shapes()[static_cast<size_t>(l)].first;
    row.n_in = cm.shapes()[static_cast<size_t>(l)].second;
    row.channels = channels[static_cast<size_t>(l)];
    row.bits = cm.bits()[static_cast<size_t>(l)][static_cast<size_t>(row.candidate)];
    row.predicted = terms[static_cast<size_t>(l)];
    rows.push_back(std::move(row));
  }
  return rows;
}

std::string PlanReport::KeyValues() const {
  std::ostringstream out;
  out << "avg_bits=" << Fixed6(avg_bits) << " budget=" << Fixed6(budget_avg_bits)
      << " predicted_dloss=" << Fixed6(predicted_dloss)
      << " measured_dloss=" << Fixed6(measured_dloss) << " fixed_dloss=" << Fixed6(fixed_dloss)
      << " fixed_ratio=" << fixed_ratio << " solver=" << solver
      << " status=" << (status.rfind("optimal", 0) == 0 ? "optimal" : "feasible")
      << " cost=" << cost_mode << "/" << cost_center << " evaluations=" << evaluations
      << " rounds=" << rounds << " fell_back=" << (fell_back ? "true" : "false");
  return out.str();
}

std::string PlanReport::Table() const {
  std::ostringstream out;
  char line[256];
  std::snprintf(line, sizeof line, "%-36s %7s %6s %12s %12s\n", "layer", "ratio", "n_high",
                "bits/weight", "predicted");
  out << line;
  for (const PlanLayerRow& r : layers) {
    std::snprintf(line, sizeof line, "%-36s %7.3f %6zu %12.4f %12.6f\n", r.name.c_str(), r.ratio,
                  r.channels.size(), r.bits / static_cast<double>(r.n_out * r.n_in), r.predicted);
    out << line;
  }
  return out.str();
}

std::string ModelFingerprint(const Checkpoint& checkpoint, const Pipeline& pipeline) {
  const Stage<float>& stage = pipeline.stage();
  std::vector<std::string> lines;
  for (const ModelTensor& t : ModelTensors(stage.config, {stage.block_begin, stage.block_end,
                                                          stage.has_embedding, stage.has_head})) {
    lines.push_back(t.name + " " + checkpoint.Sha256(t.name));
  }
  std::string result;
  std::vector<std::string> all = pipeline.comm().GatherStrings(lines, 0);
  if (pipeline.comm().rank() == 0) {
    std::sort(all.begin(), all.end());
    all.erase(std::unique(all.begin(), all.end()), all.end());
    std::string text = Sha256HexOfFile(checkpoint.dir() / "config.json") + "\n";
    for (const std::string& l : all) text += l + "\n";
    result = Sha256Hex(text);
  }
  pipeline.comm().Broadcast(result, 0);
  return result;
}

std::string PlanFingerprint(const RunConfig& config, const std::string& model_fingerprint) {
  return Sha256Hex(CanonicalText(config, ConfigStage::kPlan) + "\nmodel " + model_fingerprint);
}

namespace {

// Seconds since the stage started, for its progress lines.
struct StageClock {
  Clock::time_point t0 = Clock::now();
  double operator()() const { return std::chrono::duration<double>(Clock::now() - t0).count(); }
};

// The report's fields that the config, the machine and the model fix before anything runs.
PlanReport NewReport(const RunConfig& config, const Pipeline& pipeline,
                     const Checkpoint& checkpoint) {
  PlanReport report;
  report.spec = {config.quant.bits_low, config.quant.bits_high, config.quant.group_size};
  report.ratios = config.quant.ratios;
  const BlasInfo blas = CurrentBlasInfo();  // results are reproducible per kernel family
  report.blas_core = blas.core;
  report.cpu_model = blas.cpu_model;
  report.solver = std::string(Name(config.solver.method));
  report.cost_mode = std::string(Name(config.cost.mode));
  report.cost_center = std::string(Name(config.cost.center));
  report.model_fingerprint = ModelFingerprint(checkpoint, pipeline);
  report.fingerprint = PlanFingerprint(config, report.model_fingerprint);
  return report;
}

// The largest fixed ratio within `budget` bits. When none fits, the solver is asked with zero
// costs so that its error states the achievable range, the same on every rank.
Plan FixedPlanOrThrow(const RunConfig& config, const CostModel& cm, double budget,
                      const Comm& comm) {
  const std::optional<Plan> fixed = cm.FixedPlanWithin(budget);
  if (!fixed) {
    CostTerms zero;
    zero.diag.assign(static_cast<size_t>(cm.n_layers()),
                     std::vector<double>(static_cast<size_t>(cm.n_candidates()), 0.0));
    SolveOnRankZero(config, MakePlanProblem(cm, zero, budget), comm);
  }
  HIQ_CHECK(fixed.has_value());  // the solve above throws when no plan fits the budget
  return *fixed;
}

// The best plan found so far and what it measured on the cost set.
struct Search {
  Plan best;
  double best_loss = 0;
  std::vector<double> best_terms;
  PlanSolution best_sol;
  bool have_solution = false;
  void Keep(const PlanSolution& sol) {
    if (!have_solution) best_sol = sol, have_solution = true;
  }
};

// What the sets and the loss of the full-precision model on the cost set are, for every round,
// and where each round's terms are stored (store null: nowhere).
struct Rounds {
  const RunConfig& config;
  CostModel& cm;
  const Comm& comm;
  const std::vector<Sequence>& cost_set;
  const std::string& cost_set_digest;  // SampleSetDigest(cost_set)
  double fp_cost, budget;
  const StageClock& since;
  std::FILE* log;
  const ResumeStore* store;
  const Components& fisher_components;
  const std::string& model_fingerprint;
};

// One round's cost terms: from the store when it holds them for this centre, else measured
// (and stored).
CostTerms RoundTerms(const Rounds& r, int round, const std::optional<Plan>& centre) {
  // Round 0 is the first measurement: it keeps the name of the step before it (the
  // full-precision loss on the same set), and the re-centring rounds are told apart.
  const std::string stage =
      round == 0 ? "plan: cost terms" : "plan: cost terms, round " + std::to_string(round);
  SetStage(stage.c_str());
  Components components;
  if (r.store != nullptr) {
    components = CostComponents(r.config, r.model_fingerprint, r.fisher_components,
                                r.cost_set_digest, centre);
    if (std::optional<CostTerms> stored = ResumeCostTerms(*r.store, round, components, r.comm)) {
      Log(r.log, "[%.1fs] resume: cost terms of round %d from %s\n", r.since(), round,
          CostEntryPath(*r.store, round).c_str());
      return *stored;
    }
  }
  CostTerms terms = r.cm.Measure(r.config.cost.mode, r.cost_set, centre, r.config.cost.pairs,
                                 r.config.cost.local_fit_switches);
  if (r.store != nullptr && r.comm.rank() == 0) SaveCostTerms(*r.store, round, components, terms);
  return terms;
}

// One round around `centre`: measure, solve, and keep the new plan if it measures better.
// Returns whether to go on re-centring.
bool Round(const Rounds& r, int round, std::optional<Plan>& centre, Search& s, PlanReport& report) {
  const bool around_plan = r.config.cost.center == CostCenter::kPlan;
  const CostTerms terms = RoundTerms(r, round, centre);
  report.evaluations += terms.evaluations;
  report.cost_seconds += terms.seconds;
  if (round == 0) {
    s.best_loss = around_plan ? terms.centre_loss : r.cm.MeasurePlans(r.cost_set, {s.best})[0];
    report.predicted_dloss = s.best_loss - r.fp_cost;
  }
  SetStage("plan: solve");
  const PlanSolution sol =
      SolveOnRankZero(r.config, MakePlanProblem(r.cm, terms, r.budget), r.comm);
  report.solve_seconds += sol.seconds;
  const double predicted = (terms.centre_loss - r.fp_cost) + sol.objective;
  Log(r.log, "[%.1fs] round %d: %d evaluations in %.1fs, solve %s in %.3fs, predicted %.6f\n",
      r.since(), round, terms.evaluations, terms.seconds, sol.status.c_str(), sol.seconds,
      predicted);
  auto take = [&] {
    s.best = sol.choice;
    s.best_sol = sol;
    s.have_solution = true;
    report.predicted_dloss = predicted;
    s.best_terms = TermsAt(terms.diag, s.best);
  };
  if (!around_plan) {  // the paper's: one solve around full precision
    take();
    return false;
  }
  if (sol.choice == *centre) {
    report.log += "round " + std::to_string(round) + ": the solve kept the centre; converged\n";
    s.Keep(sol);
    return false;
  }
  SetStage("plan: re-centre");
  const double loss = r.cm.MeasurePlans(r.cost_set, {sol.choice})[0];
  Log(r.log, "[%.1fs] round %d: new plan measures %.6f on the cost set (centre %.6f)\n", r.since(),
      round, loss - r.fp_cost, s.best_loss - r.fp_cost);
  if (!(loss < s.best_loss)) {
    report.log += "round " + std::to_string(round) + ": new plan measured " +
                  Fixed6(loss - r.fp_cost) + " >= " + Fixed6(s.best_loss - r.fp_cost) +
                  " on the cost set; kept the previous plan\n";
    s.Keep(sol);
    return false;
  }
  take();
  s.best_loss = loss;
  report.rounds = round + 1;
  centre = s.best;
  return true;
}

// Cost terms, solve and re-centring (step 3), starting from the fixed ratio.
Search SolveAndRecentre(const Rounds& r, const Plan& fixed, PlanReport& report) {
  const bool around_plan = r.config.cost.center == CostCenter::kPlan;
  Search s;
  s.best = fixed;
  s.best_terms.assign(static_cast<size_t>(r.cm.n_layers()), 0.0);
  // When the budget covers the largest ratio in every layer there is nothing to trade: more
  // high-impact channels are never meant to cost loss, and measured terms could only add noise.
  if (fixed.front() == r.cm.n_candidates() - 1) {
    report.log += "the budget covers the largest ratio in every layer: nothing to trade\n";
    s.best_loss = r.cm.MeasurePlans(r.cost_set, {s.best})[0];
    report.predicted_dloss = s.best_loss - r.fp_cost;
    s.best_sol.status = "optimal";
    return s;
  }
  std::optional<Plan> centre = around_plan ? std::optional<Plan>(fixed) : std::nullopt;
  const int last = around_plan ? r.config.cost.refine : 0;
  for (int round = 0; round <= last && Round(r, round, centre, s, report); ++round) {
  }
  return s;
}

// Step 4: the measured loss of the plan and of the fixed ratio on held-out sequences; a plan
// that measures worse than the fixed ratio is replaced by it.
void CheckAgainstFixed(CostModel& cm, const std::vector<Sequence>& check_set, const Plan& fixed,
                       Search& s, PlanReport& report, const StageClock& since, std::FILE* log) {
  const std::vector<double> check = cm.MeasurePlans(check_set, {s.best, fixed, std::nullopt});
  report.measured_dloss = check[0] - check[2];
  report.fixed_dloss = check[1] - check[2];
  Log(log, "[%.1fs] check: plan %.6f, fixed ratio %.3f %.6f (nats/token vs full precision)\n",
      since(), report.measured_dloss, report.fixed_ratio, report.fixed_dloss);
  if (report.measured_dloss > report.fixed_dloss) {
    report.fell_back = true;
    report.log += "the plan measured " + Fixed6(report.measured_dloss) +
                  " on the check set, worse than the fixed ratio's " + Fixed6(report.fixed_dloss) +
                  ": writing the fixed ratio instead\n";
    s.best = fixed;
    report.measured_dloss = report.fixed_dloss;
    std::fill(s.best_terms.begin(), s.best_terms.end(), 0.0);
  }
}

}  // namespace

PlanReport RunPlanStage(const RunConfig& config, Pipeline& pipeline, const Checkpoint& checkpoint,
                        std::FILE* log, const ResumeStore* store) {
  const Comm& comm = pipeline.comm();
  const StageClock since;
  SetStage("plan: model fingerprint");
  PlanReport report = NewReport(config, pipeline, checkpoint);
  if (store != nullptr) {
    SetStage("plan: resume");
    const Components components = PlanComponents(config, report.model_fingerprint);
    if (std::optional<PlanReport> stored = ResumePlan(*store, components, comm)) {
      Log(log, "[%.1fs] resume: plan from %s\n", since(), PlanEntryPath(*store).c_str());
      stored->resumed = true;
      return *stored;
    }
  }
  const ModelVocab vocab = ReadModelVocab(checkpoint.dir() / "config.json");

  // 1. Fisher and candidates. The sets the model generates, the channel scores and each round's
  // cost terms are kept in the store as they are made (hiq/stages/resume.h).
  const std::string& model_fp = report.model_fingerprint;
  auto sample_set = [&](const SampleSetConfig& set, const char* name) {
    return StoredSampleSet(store, config, set, name, model_fp, pipeline, vocab, log);
  };
  SetStage("plan: fisher");
  const std::vector<Sequence> fisher_set = sample_set(config.calibration.fisher, "fisher");
  const Components fisher_components =
      FisherComponents(config, model_fp, SampleSetDigest(fisher_set));
  std::optional<ChannelScoreBlocks> scores;
  if (store != nullptr) scores = ResumeScores(*store, fisher_components, pipeline.stage(), comm);
  if (scores) {
    Log(log, "[%.1fs] resume: fisher channel scores from %s\n", since(),
        (store->dir / "fisher").c_str());
  } else {
    // The scores are what the stages after this need of F: its n_out x n_in accumulators, as
    // large as the rank's weights, go before the cost terms allocate their own.
    scores = ScoreChannels(pipeline.stage(), ComputeFisher(pipeline, fisher_set),
                           config.quant.score, report.spec);
    if (store != nullptr) {
      SetStage("plan: store fisher");
      SaveScores(*store, fisher_components, pipeline.stage(), *scores);
      comm.Barrier();  // the line below says that every rank's entries are there
    }
    Log(log, "[%.1fs] fisher: %zu sequences of %d tokens\n", since(), fisher_set.size(),
        config.calibration.fisher.seq_len);
  }
  CostModel cm(pipeline, report.spec, config.quant.ratios, *scores);
  if (config.cost.candidates == CostCandidates::kGptq) {
    SetStage("plan: gptq candidates");
    cm.UseGptqCandidates(fisher_set);
    Log(log, "[%.1fs] candidates: GPTQ on the Hessians of the %zu fisher sequences\n", since(),
        fisher_set.size());
  }

  // 2. Budget and the reference plan.
  SetStage("plan: budget");
  const double budget = config.quant.budget_ratio > 0 ? cm.BitsAtRatio(config.quant.budget_ratio)
                                                      : config.quant.budget_bits * cm.n_weights();
  report.budget_avg_bits = budget / cm.n_weights();
  const Plan fixed = FixedPlanOrThrow(config, cm, budget, comm);
  report.fixed_ratio = cm.ratios()[static_cast<size_t>(fixed.front())];

  // 3. Cost terms, solve, re-centre.
  SetStage("plan: calibration sets");
  const std::vector<Sequence> cost_set = sample_set(config.calibration.cost, "cost");
  const std::vector<Sequence> check_set = sample_set(config.calibration.check, "check");
  Log(log, "[%.1fs] cost set %zu x %d, check set %zu x %d\n", since(), cost_set.size(),
      config.calibration.cost.seq_len, check_set.size(), config.calibration.check.seq_len);
  SetStage("plan: cost terms");
  const double fp_cost = cm.MeasurePlans(cost_set, {std::nullopt})[0];
  const std::string cost_set_digest = SampleSetDigest(cost_set);
  Search s = SolveAndRecentre({config, cm, comm, cost_set, cost_set_digest, fp_cost, budget, since,
                               log, store, fisher_components, model_fp},
                              fixed, report);
  report.status = s.best_sol.status;

  // 4. Check on held-out sequences, then the rows of the plan and of the fixed ratio.
  SetStage("plan: check");
  CheckAgainstFixed(cm, check_set, fixed, s, report, since, log);
  report.choice = s.best;
  report.avg_bits = cm.PlanBits(s.best) / cm.n_weights();
  report.layers = LayerRows(cm, s.best, s.best_terms, comm);
  report.fixed_layers = LayerRows(cm, fixed, std::vector<double>(s.best_terms.size(), 0.0), comm);
  report.fixed_avg_bits = cm.PlanBits(fixed) / cm.n_weights();
  return report;
}

namespace {

nlohmann::json ToJson(const PlanReport& r) {
  nlohmann::json j;
  j["format"] = "hiq-plan";
  j["format_version"] = 1;
  j["fingerprint"] = r.fingerprint;
  j["model_fingerprint"] = r.model_fingerprint;
  j["blas_core"] = r.blas_core;
  j["cpu_model"] = r.cpu_model;
  j["spec"] = {{"bits_low", r.spec.bits_low},
               {"bits_high", r.spec.bits_high},
               {"group_size", r.spec.group_size}};
  j["ratios"] = r.ratios;
  j["budget_avg_bits"] = r.budget_avg_bits;
  j["avg_bits"] = r.avg_bits;
  j["fixed_ratio"] = r.fixed_ratio;
  j["predicted_dloss"] = r.predicted_dloss;
  j["measured_dloss"] = r.measured_dloss;
  j["fixed_dloss"] = r.fixed_dloss;
  j["solver"] = r.solver;
  j["status"] = r.status;
  j["cost"] = {{"mode", r.cost_mode}, {"center", r.cost_center}};
  j["evaluations"] = r.evaluations;
  j["rounds"] = r.rounds;
  j["fell_back"] = r.fell_back;
  j["log"] = r.log;
  j["layers"] = nlohmann::json::array();
  for (const PlanLayerRow& row : r.layers) {
    j["layers"].push_back({{"name", row.name},
                           {"candidate", row.candidate},
                           {"ratio", row.ratio},
                           {"shape", {row.n_out, row.n_in}},
                           {"bits", row.bits},
                           {"predicted_dloss", row.predicted},
                           {"channels", row.channels}});
  }
  return j;
}

}  // namespace

std::string PlanReport::Json() const { return ToJson(*this).dump(1); }

namespace {

void WritePlanFiles(const PlanReport& r, const std::filesystem::path& out_dir) {
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) throw IoError("WritePlan: cannot create '" + out_dir.string() + "': " + ec.message());
  const std::filesystem::path json_path = out_dir / "plan.json";
  const std::filesystem::path tmp = out_dir / "plan.json.tmp";
  WriteWholeFile(tmp, r.Json() + "\n", "WritePlan");
  H5File h5 = H5File::Create(out_dir / "plan.h5");
  H5Group root = h5.root();
  root.SetAttribute("format", std::string_view("hiq-plan"));
  root.SetAttribute("format_version", int64_t{1});
  root.SetAttribute("fingerprint", std::string_view(r.fingerprint));
  root.SetAttribute("model_fingerprint", std::string_view(r.model_fingerprint));
  root.SetAttribute("blas_core", std::string_view(r.blas_core));
  root.SetAttribute("cpu_model", std::string_view(r.cpu_model));
  root.SetAttribute("bits_low", int64_t{r.spec.bits_low});
  root.SetAttribute("bits_high", int64_t{r.spec.bits_high});
  root.SetAttribute("group_size", r.spec.group_size);
  root.SetAttribute("ratios", std::span<const double>(r.ratios));
  root.SetAttribute("budget_avg_bits", r.budget_avg_bits);
  root.SetAttribute("avg_bits", r.avg_bits);
  root.SetAttribute("predicted_dloss", r.predicted_dloss);
  root.SetAttribute("measured_dloss", r.measured_dloss);
  root.SetAttribute("fixed_dloss", r.fixed_dloss);
  root.SetAttribute("solver", std::string_view(r.solver));
  root.SetAttribute("status", std::string_view(r.status));
  std::vector<int32_t> candidate;
  std::vector<double> ratio, bits, predicted;
  for (const PlanLayerRow& row : r.layers) {
    candidate.push_back(row.candidate);
    ratio.push_back(row.ratio);
    bits.push_back(row.bits);
    predicted.push_back(row.predicted);
  }
  const uint64_t n = r.layers.size();
  root.WriteDataset<int32_t>("candidate", candidate, {n});
  root.WriteDataset<double>("ratio", ratio, {n});
  root.WriteDataset<double>("bits", bits, {n});
  root.WriteDataset<double>("predicted_dloss", predicted, {n});
  H5Group channels = root.CreateGroup("channels");
  for (const PlanLayerRow& row : r.layers) {
    channels.WriteDataset<int32_t>(row.name, row.channels, {row.channels.size()});
  }
  h5.Commit();
  std::filesystem::rename(tmp, json_path, ec);
  if (ec)
    throw IoError("WritePlan: cannot rename to '" + json_path.string() + "': " + ec.message());
}

}  // namespace

void WritePlan(const PlanReport& report, const std::filesystem::path& out_dir) {
  PlanReport fixed = report;
  fixed.layers = report.fixed_layers;
  fixed.avg_bits = report.fixed_avg_bits;
  fixed.predicted_dloss = 0;
  fixed.measured_dloss = report.fixed_dloss;
  fixed.solver = "fixed";
  fixed.status = "fixed ratio " + std::to_string(report.fixed_ratio);
  fixed.log.clear();
  WritePlanFiles(fixed, out_dir / "fixed");
  WritePlanFiles(report, out_dir);
}

PlanReport ReadPlan(const std::filesystem::path& out_dir) {
  const std::filesystem::path path = out_dir / "plan.json";
  std::ifstream in(path);
  if (!in) throw IoError("ReadPlan: cannot open '" + path.string() + "'");
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& e) {
    throw FormatError("ReadPlan: " + path.string() + " is not JSON: " + e.what());
  }
  auto need = [&](const nlohmann::json& obj, const char* key) -> const nlohmann::json& {
    if (!obj.is_object() || !obj.contains(key)) {
      throw FormatError("ReadPlan: " + path.string() + ": missing key '" + key + "'");
    }
    return obj.at(key);
  };
  if (need(j, "format") != "hiq-plan" || need(j, "format_version") != 1) {
    throw FormatError("ReadPlan: " + path.string() + " is not a hiq-plan version 1 file");
  }
  PlanReport r;
  try {
    r.fingerprint = need(j, "fingerprint").get<std::string>();
    if (!j.contains("model_fingerprint")) {
      throw FormatError("ReadPlan: " + path.string() +
                        ": missing key 'model_fingerprint', so the plan cannot be checked "
                        "against the model (written before hiq recorded it). HINT: re-run `hiq "
                        "plan`");
    }
    r.model_fingerprint = j.at("model_fingerprint").get<std::string>();
    const auto& spec = need(j, "spec");
    r.spec.bits_low = need(spec, "bits_low").get<int>();
    r.spec.bits_high = need(spec, "bits_high").get<int>();
    r.spec.group_size = need(spec, "group_size").get<int64_t>();
    r.ratios = need(j, "ratios").get<std::vector<double>>();
    r.avg_bits = need(j, "avg_bits").get<double>();
    r.budget_avg_bits = need(j, "budget_avg_bits").get<double>();
    for (const auto& layer : need(j, "layers")) {
      PlanLayerRow row;
      row.name = need(layer, "name").get<std::string>();
      row.candidate = need(layer, "candidate").get<int>();
      row.ratio = need(layer, "ratio").get<double>();
      const auto shape = need(layer, "shape").get<std::vector<int64_t>>();
      if (shape.size() != 2)
        throw FormatError("ReadPlan: " + path.string() + ": layer '" + row.name +
                          "' shape must have 2 entries");
      row.n_out = shape[0];
      row.n_in = shape[1];
      row.bits = need(layer, "bits").get<double>();
      row.channels = need(layer, "channels").get<std::vector<int32_t>>();
      r.layers.push_back(std::move(row));
    }
  } catch (const nlohmann::json::exception& e) {
    throw FormatError("ReadPlan: " + path.string() + ": " + e.what());
  }
  return r;
}

void CheckPlanAgainstSpec(const PlanReport& plan, const std::filesystem::path& file,
                          const LlamaConfig& config) {
  const std::string where = "plan " + file.string() + ": ";
  try {
    ValidateQuantSpec(plan.spec);
  } catch (const Error& e) {
    throw FormatError(where + "spec: " + e.what());
  }
  const size_t expected = static_cast<size_t>(NumLayers(config));
  if (plan.layers.size() != expected) {
    throw FormatError(where + "has " + std::to_string(plan.layers.size()) + " layers, the model " +
                      std::to_string(expected));
  }
  for (int l = 0; l < static_cast<int>(expected); ++l) {
    const PlanLayerRow& row = plan.layers[static_cast<size_t>(l)];
    const auto [n_out, n_in] = LinearShape(config, kLinears[static_cast<size_t>(l) % kNumLinears]);
    const std::string layer = where + "layer " + std::to_string(l) + " '" + row.name + "' ";
    if (row.name != LayerName(l) || row.n_out != n_out || row.n_in != n_in) {
      throw FormatError(layer + "[" + std::to_string(row.n_out) + ", " + std::to_string(row.n_in) +
                        "] is not the model's '" + LayerName(l) + "' [" + std::to_string(n_out) +
                        ", " + std::to_string(n_in) + "]");
    }
    if (row.candidate < 0 || static_cast<size_t>(row.candidate) >= plan.ratios.size()) {
      throw FormatError(layer + "has candidate " + std::to_string(row.candidate) +
                        ", expected one of the plan's " + std::to_string(plan.ratios.size()) +
                        " ratios, 0.." + std::to_string(plan.ratios.size() - 1));
    }
    const double ratio = plan.ratios[static_cast<size_t>(row.candidate)];
    if (row.ratio != ratio) {
      throw FormatError(layer + "has ratio " + FormatG(row.ratio) + " but its candidate " +
                        std::to_string(row.candidate) + " is ratio " + FormatG(ratio));
    }
    const int64_t n_high = HighCount(ratio, n_in);
    if (static_cast<int64_t>(row.channels.size()) != n_high) {
      throw FormatError(layer + "has " + std::to_string(row.channels.size()) +
                        " channels, expected ceil(" + FormatG(ratio) + " * " +
                        std::to_string(n_in) + ") = " + std::to_string(n_high));
    }
    for (size_t i = 0; i < row.channels.size(); ++i) {
      const int32_t c = row.channels[i];
      if (c < 0 || c >= n_in || (i > 0 && c <= row.channels[i - 1])) {
        throw FormatError(
            layer + "channel " + std::to_string(c) + " at position " + std::to_string(i) +
            " breaks the rule: channels ascending, unique, in [0, " + std::to_string(n_in) + ")");
      }
    }
    const int64_t bits = LayerBits(n_out, n_in, n_high, plan.spec);
    if (row.bits != static_cast<double>(bits)) {
      throw FormatError(layer + "has bits " + FormatG(row.bits) +
                        ", expected LayerBits = " + std::to_string(bits) + " for " +
                        std::to_string(n_high) + " channels at the plan's spec");
    }
  }
}

void CheckPlanModel(const PlanReport& plan, const std::filesystem::path& file,
                    const std::string& model_fingerprint, const std::filesystem::path& model) {
  if (plan.model_fingerprint != model_fingerprint) {
    throw FormatError("plan " + file.string() + " was made for the model with fingerprint " +
                      plan.model_fingerprint + ", not for " + model.string() + " (fingerprint " +
                      model_fingerprint + ")");
  }
}

AppliedBits ApplyPlanRtn(const PlanReport& plan, Stage<float>& stage) {
  ValidateQuantSpec(plan.spec);
  const size_t expected = static_cast<size_t>(NumLayers(stage.config));
  if (plan.layers.size() != expected) {
    throw FormatError("ApplyPlanRtn: the plan has " + std::to_string(plan.layers.size()) +
                      " layers, the model " + std::to_string(expected));
  }
  AppliedBits applied;
  for (size_t b = 0; b < stage.blocks.size(); ++b) {
    for (Linear kind : kLinears) {
      const int l = LayerIndex(stage.block_begin + static_cast<int>(b), kind);
      const PlanLayerRow& row = plan.layers[static_cast<size_t>(l)];
      Matrix<float>& w = stage.blocks[b].linear(kind);
      if (row.name != LayerName(l) || row.n_out != w.rows() || row.n_in != w.cols()) {
        throw FormatError("ApplyPlanRtn: plan layer " + std::to_string(l) + " is '" + row.name +
                          "' [" + std::to_string(row.n_out) + ", " + std::to_string(row.n_in) +
                          "], the model's is '" + LayerName(l) + "' [" + std::to_string(w.rows()) +
                          ", " + std::to_string(w.cols()) + "]");
      }
      QuantizeCandidate(w.data(), w.rows(), w.cols(), row.channels, plan.spec, w.data());
      applied.bits += static_cast<double>(
          LayerBits(w.rows(), w.cols(), static_cast<int64_t>(row.channels.size()), plan.spec));
      applied.weights += static_cast<double>(w.rows() * w.cols());
    }
  }
  return applied;
}

}  // namespace hiq
