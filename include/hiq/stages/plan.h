// hiq/stages/plan.h - the plan stage: calibrate, build candidates, measure cost terms, solve under
// the bit budget, re-centre, check on held-out sequences, and write the plan (DESIGN.md 1.1-1.4,
// 2.1-2.3; `hiq plan`).
//
// Flow (collective over the pipeline's ranks; every rank ends with the same PlanReport):
//   1. Fisher on calibration.fisher -> channel scores -> nested candidates per layer.
//   2. The reference plan: the largest fixed ratio within budget (the "fixed ratio").
//   3. Cost terms on calibration.cost around the centre (cost.center: plan = the reference plan,
//      fp = the full-precision model), rank 0's solve (pareto or milp), broadcast of the choice.
//      With center: plan, up to cost.refine re-centrings: measure around the new plan, re-solve,
//      keep a plan only if its measured loss on the cost set falls.
//   4. Check: measured loss change (vs full precision) on calibration.check of the plan and of
//      the fixed ratio; a plan that measures worse than the fixed ratio is replaced by it.
// Outputs (WritePlan, rank 0, each file written to a temporary name then renamed):
//   OUT/plan.json  readable: spec, budget, results, per layer name/ratio/bits/channels/predicted
//   OUT/plan.h5    the same numbers as datasets + attributes (docs/FORMATS.md)
//   OUT/fixed/     the fixed ratio at the same budget in the same two files (the baseline)
// Both carry a fingerprint of the plan stage's config keys + the model, so a stale plan is never
// taken for a current one.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "hiq/config/config.h"  // RunConfig
#include "hiq/dist/pipeline.h"  // Pipeline
#include "hiq/io/checkpoint.h"  // Checkpoint
#include "hiq/stages/cost.h"    // Plan, CostModel

namespace hiq {

struct PlanLayerRow {
  std::string name;  // "model.layers.0.self_attn.q_proj"
  int candidate = 0;
  double ratio = 0;
  int64_t n_out = 0, n_in = 0;
  std::vector<int32_t> channels;  // high-impact input channels, ascending
  double bits = 0;                // LayerBits
  double predicted = 0;           // its cost term at the chosen candidate (nats/token)
};

struct PlanReport {
  QuantSpec spec;
  std::vector<double> ratios;
  std::vector<PlanLayerRow> layers;
  Plan choice;
  double budget_avg_bits = 0, avg_bits = 0, fixed_ratio = 0;
  // Loss changes vs the full-precision model, nats per token. predicted: on the cost set, from
  // the terms; measured and fixed: on the check set.
  double predicted_dloss = 0, measured_dloss = 0, fixed_dloss = 0;
  std::string solver;  // "pareto" | "milp"
  std::string status;  // "optimal" | "feasible..."
  double solve_seconds = 0, cost_seconds = 0;
  int evaluations = 0, rounds = 0;
  bool fell_back = false;   // the plan measured worse than the fixed ratio: the fixed ratio is kept
  std::string log;          // human-readable lines: rounds, fallback reason
  std::string fingerprint;  // PlanFingerprint
  std::string model_fingerprint;     // ModelFingerprint of the model the plan was made for
  std::string blas_core, cpu_model;  // where it ran (hiq/model/blas.h): results per kernel family
  std::string cost_mode, cost_center;
  // The fixed ratio at the same budget, as a plan of its own (written to OUT/fixed/).
  std::vector<PlanLayerRow> fixed_layers;
  double fixed_avg_bits = 0;
  bool resumed = false;  // taken from the resume store (hiq/stages/resume.h), not computed

  // "avg_bits=... budget=... predicted_dloss=... measured_dloss=... fixed_dloss=... solver=...
  //  status=optimal|feasible"
  std::string KeyValues() const;
  std::string Table() const;  // per-layer table for the terminal
  std::string Json() const;   // what plan.json holds
};

struct ResumeStore;  // hiq/stages/resume.h

// Runs the whole stage. Collective; `log` (rank 0 only, may be null) receives progress lines.
// `store` (may be null): with store->reuse a valid plan entry is returned instead of computing
// (logged "resume: plan from PATH"; another config, model, build or CPU kind is a ConfigError on
// every rank); without one, the stage takes from the store and adds to it its generated
// calibration sets, the Fisher channel scores and each round's cost terms (hiq/stages/resume.h),
// logging each one it takes. The caller stores a computed plan (SavePlan, hiq/stages/resume.h) once
// it has written its plan files, so that the published files fail first on a full disk.
PlanReport RunPlanStage(const RunConfig& config, Pipeline& pipeline, const Checkpoint& checkpoint,
                        std::FILE* log, const ResumeStore* store = nullptr);

// Pieces of the stage that studies (bench/bench_plan_study.cpp) reuse:
// the solver's problem from measured terms and the budget;
PlanProblem MakePlanProblem(const CostModel& cm, const CostTerms& terms, double budget_bits);
// the solve on rank 0 (config.solver), its choice and numbers broadcast to every rank, a solver
// error thrown on every rank alike;
PlanSolution SolveOnRankZero(const RunConfig& config, const PlanProblem& problem, const Comm& comm);
// each layer's single-layer term at the plan's candidate;
std::vector<double> TermsAt(const std::vector<std::vector<double>>& diag, const Plan& plan);
// the per-layer rows of a plan (`terms`: each layer's cost at its candidate), the channel lists
// gathered from the ranks that own them. Collective.
std::vector<PlanLayerRow> LayerRows(const CostModel& cm, const Plan& plan,
                                    const std::vector<double>& terms, const Comm& comm);

// SHA-256 over config.json and every tensor's bytes, each rank hashing only the tensors it owns
// and rank 0 combining them in name order, so the value is the same for any rank count.
std::string ModelFingerprint(const Checkpoint& checkpoint, const Pipeline& pipeline);

// SHA-256 of the canonical text of the keys the plan stage reads (CanonicalText(config,
// ConfigStage::kPlan)) and `model_fingerprint` (ModelFingerprint): what PlanReport::fingerprint
// holds.
std::string PlanFingerprint(const RunConfig& config, const std::string& model_fingerprint);

// Writes OUT/plan.json and OUT/plan.h5 atomically (rank 0 only). IoError if it cannot.
void WritePlan(const PlanReport& report, const std::filesystem::path& out_dir);

// Reads OUT/plan.json back (spec, ratios and per-layer rows). FormatError naming the file and
// the key for anything missing or inconsistent.
PlanReport ReadPlan(const std::filesystem::path& out_dir);

// A plan read from `file` is what its spec allows for the model of `config`, layer by layer:
// FormatError naming the file and the layer unless the spec is valid, the layers are the model's
// (names and shapes), each candidate indexes the plan's ratios and its ratio is that one, the
// channels are HighCount(ratio, n_in) many (as the cost model builds candidates), ascending,
// unique and in [0, n_in), and bits equal LayerBits. Needs no weights: run it before loading.
void CheckPlanAgainstSpec(const PlanReport& plan, const std::filesystem::path& file,
                          const LlamaConfig& config);
// FormatError naming the plan file and `model` unless the plan was made for the model whose
// ModelFingerprint is `model_fingerprint`.
void CheckPlanModel(const PlanReport& plan, const std::filesystem::path& file,
                    const std::string& model_fingerprint, const std::filesystem::path& model);

// What ApplyPlanRtn applied on this rank: the stored bits (LayerBits) of its layers and their
// weight count, so that the average printed is recomputed from what was applied (sum over the
// ranks), never copied from plan.json.
struct AppliedBits {
  double bits = 0, weights = 0;
};

// Round-to-nearest with the plan's channels and spec, applied in place to this stage's blocks
// (hiq eval --plan). FormatError if the plan's layers do not match the model.
AppliedBits ApplyPlanRtn(const PlanReport& plan, Stage<float>& stage);

}  // namespace hiq
