// hiq/stages/resume.h - what `hiq quantize --resume` and `hiq plan --resume` reuse: the plan
// stage's parts (generated calibration sets, Fisher scores, cost terms) and result, and each
// block's quantized layers, kept in OUT/.resume/ (docs/OPERATIONS.md
// "Resume", the entry format in hiq/io/stagestore.h and docs/FORMATS.md).
//
//  - OUT/.resume/plan.entry      the whole PlanReport (JSON), written by rank 0 after the plan
//                                stage; components: config (plan keys), model, build, cpu.
//  - OUT/.resume/blocks/block-BBBBB.entry   one block's seven QuantizedLayers and its three MSE
//                                numbers, written by the rank that quantized it; components:
//                                config (quantize keys), model, upstream (the plan entry's
//                                components), build, cpu. No rank count anywhere: a block's
//                                result is the same bytes on any rank count, so a resume on
//                                another one reads the same entries.
//  - OUT/.resume/calibration/<name>.entry   a generated calibration set (source generate: the
//                                model samples it token by token), written by rank 0; components:
//                                config (the set's keys, model.tokenizer), model, build, cpu. Sets
//                                cut from a text or token file are cut again (cheaper than a read
//                                of their entry); what they hold enters the entries below as
//                                their digest.
//  - OUT/.resume/fisher/block-BBBBB.entry   one block's channel scores (ScoreChannels), written
//                                by the rank that owns it; components: config (quant.score, and
//                                the spec for fisher_impact), data (SampleSetDigest of the Fisher
//                                set), model, build, cpu.
//  - OUT/.resume/cost/round-RR.entry   one round's cost terms, written by rank 0; components:
//                                config (the keys the terms read), centre (the plan they are
//                                measured around), data (the cost set's digest), upstream (the
//                                Fisher entries' components), model, build, cpu.
//  - With `reuse` (--resume) an entry whose components all equal this run's is taken; one that
//    differs in anything is refused with a ConfigError naming the entry and what differs. A
//    missing entry is computed and written. Without `reuse` entries are only written.
// Errors are thrown alike on every rank where the decision is collective (the plan); a block's
// entry is read by its owner only, whose error ends the job naming the rank (hiq/app).
#pragma once

#include <array>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include "hiq/config/config.h"       // RunConfig
#include "hiq/dist/pipeline.h"       // Pipeline, Sequence, Stage
#include "hiq/model/tensors.h"       // kNumLinears
#include "hiq/quant/quant.h"         // QuantizedLayer
#include "hiq/stages/calibration.h"  // ModelVocab
#include "hiq/stages/cost.h"         // ChannelScoreBlocks, CostTerms, Plan
#include "hiq/stages/plan.h"         // PlanReport

namespace hiq {

class Comm;

struct ResumeStore {
  std::filesystem::path dir;  // OUT/.resume
  bool reuse = false;         // --resume
};
inline constexpr const char* kResumeDirName = ".resume";

using Components = std::map<std::string, std::string>;

// "git <revision>, <compiler> <version>, <build type>": results are bit-identical per build.
std::string BuildKind();
// "<cpu model name>, OpenBLAS <core>": results are bit-identical per kernel family.
std::string CpuKind();

// The plan stage's components: CanonicalText(config, kPlan), the model fingerprint, build, cpu.
Components PlanComponents(const RunConfig& config, const std::string& model_fingerprint);
std::filesystem::path PlanEntryPath(const ResumeStore& store);
// Collective. With store.reuse, rank 0 reads the plan entry and every rank gets the same answer:
// the stored plan, nullopt when there is none, or the same ConfigError (another config, model,
// build or CPU kind) / FormatError (not a complete entry). Without reuse: nullopt.
std::optional<PlanReport> ResumePlan(const ResumeStore& store, const Components& components,
                                     const Comm& comm);
// Rank 0: the plan entry. IoError if it cannot be written.
void SavePlan(const ResumeStore& store, const Components& components, const PlanReport& plan);

// SHA-256 over a set's sequences (tokens and targets, in order): what a stage fed by the set
// records as its "data" component.
std::string SampleSetDigest(const std::vector<Sequence>& seqs);

// BuildSampleSet (hiq/stages/calibration.h) through the store: with store->reuse a generated
// set whose entry is valid is read (rank 0) and broadcast, logged "resume: calibration set NAME
// from PATH"; otherwise built, and a generated one stored by rank 0. `store` may be null.
// Collective; a refused entry is the same ConfigError on every rank.
std::vector<Sequence> StoredSampleSet(const ResumeStore* store, const RunConfig& config,
                                      const SampleSetConfig& set, const std::string& name,
                                      const std::string& model_fingerprint, Pipeline& pipeline,
                                      const ModelVocab& vocab, std::FILE* log);

// The Fisher entries' components (the same for every block).
Components FisherComponents(const RunConfig& config, const std::string& model_fingerprint,
                            const std::string& fisher_set_digest);
std::filesystem::path FisherEntryPath(const ResumeStore& store, int block);
// Collective. With store.reuse, every rank reads its own blocks' entries: the scores when every
// rank has all of its blocks', nullopt when any rank misses one (the Fisher pass is collective),
// and when any rank's entry is refused or unreadable, that rank's error thrown on every rank.
std::optional<ChannelScoreBlocks> ResumeScores(const ResumeStore& store,
                                               const Components& components,
                                               const Stage<float>& stage, const Comm& comm);
// This rank's blocks' entries. IoError if one cannot be written.
void SaveScores(const ResumeStore& store, const Components& components, const Stage<float>& stage,
                const ChannelScoreBlocks& scores);

// One round's components: `centre` nullopt is the full-precision model.
Components CostComponents(const RunConfig& config, const std::string& model_fingerprint,
                          const Components& fisher_components, const std::string& cost_set_digest,
                          const std::optional<Plan>& centre);
std::filesystem::path CostEntryPath(const ResumeStore& store, int round);
// Collective, as ResumePlan: rank 0 reads the round's entry, every rank gets the same answer.
std::optional<CostTerms> ResumeCostTerms(const ResumeStore& store, int round,
                                         const Components& components, const Comm& comm);
// Rank 0: the round's entry. IoError if it cannot be written.
void SaveCostTerms(const ResumeStore& store, int round, const Components& components,
                   const CostTerms& terms);

// One block's result: what the shard stores and what the log reports.
struct BlockResult {
  std::array<QuantizedLayer, kNumLinears> layers;
  double rtn_mse = 0, init_mse = 0, final_mse = 0;
};

// A block's components: CanonicalText(config, kQuantize), the model fingerprint, the plan
// entry's ComponentsFingerprint (the upstream), build, cpu.
Components BlockComponents(const RunConfig& config, const std::string& model_fingerprint,
                           const Components& plan_components);
std::filesystem::path BlockEntryPath(const ResumeStore& store, int block);
// This rank: the stored result of `block` if store.reuse and its entry is there and valid;
// nullopt if there is none (or without reuse); ConfigError naming the entry and what differs,
// FormatError if it is not a complete entry or not `block`'s seven layers.
std::optional<BlockResult> ResumeBlock(const ResumeStore& store, int block,
                                       const Components& components);
void SaveBlock(const ResumeStore& store, int block, const Components& components,
               const BlockResult& result);

}  // namespace hiq
