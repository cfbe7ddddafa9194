// hiq/stages/resume.h - what `hiq quantize --resume` and `hiq plan --resume` reuse: the plan
// stage's result and each block's quantized layers, kept in OUT/.resume/ (docs/OPERATIONS.md
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

#include "hiq/config/config.h"  // RunConfig
#include "hiq/model/tensors.h"  // kNumLinears
#include "hiq/quant/quant.h"    // QuantizedLayer
#include "hiq/stages/plan.h"    // PlanReport

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
