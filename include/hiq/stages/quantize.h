// hiq/stages/quantize.h - the quantize stage: plan -> block inputs -> every rank reconstructs
// its own blocks at once -> its own HDF5 shard -> rank 0's root file (DESIGN.md 1.5, 2.4, 3;
// `hiq quantize`), and the readers of its output (`hiq eval --quantized`, `hiq export`).
//
// Flow (collective over the pipeline's ranks):
//   1. The plan stage (hiq/stages/plan.h), written to OUT/plan.json, plan.h5 and OUT/fixed/. The
//      method picks the channels: `hiq` the plan's, every other method the fixed ratio's at the
//      same budget, so that all methods compare at matched bits.
//   2. calibration.reconstruction's sequences; one pipeline forward gives each rank its first
//      block's full-precision input (quantize.inputs: fp), and the rank runs each block's
//      output as the next block's input itself, so a rank holds two blocks' inputs whatever its
//      slice. With quantize.inputs: quantized the next input is under the quantized block, and
//      rank r's first input comes from one pipeline forward through the quantized blocks of the
//      ranks before it, so the ranks go one after the other.
//   3. Each rank quantizes its blocks in block order: rtn (QuantizeLayer), gptq (GptqQuantize on
//      the Hessian of each layer's input rows under the block's inputs, one sequence at a time
//      into the running mean), or a reconstruction
//      (ReconstructBlock: hybrid for hiq and fixed_ratio, lwc, adaround). One log line per block
//      on every rank: "[rank r] block b: <method> mse rtn=... init=... final=...".
//   4. Each rank writes OUT/shards/rank-RRRRR-of-NNNNN.h5 (its layers, and the unquantized
//      tensors it owns in their stored dtype), atomically; after all have committed, rank 0
//      writes OUT/model.h5 last (hiq/io/shard.h), so a model.h5 under its final name always
//      links complete shards. avg_bits is recomputed from what was stored (StoredBits).
// Every rank ends with the same QuantizeReport. Results are bit-identical for any rank count.
#pragma once

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "hiq/config/config.h"  // RunConfig
#include "hiq/dist/pipeline.h"  // Pipeline
#include "hiq/io/checkpoint.h"  // Checkpoint
#include "hiq/io/shard.h"       // ModelFileInfo
#include "hiq/stages/plan.h"    // PlanReport, ResumeStore

namespace hiq {

struct QuantizeReport {
  PlanReport plan;
  std::string method;
  double budget_avg_bits = 0, avg_bits = 0;  // avg_bits from the stored layers
  // Sums over the blocks of the block-output MSE on the reconstruction rows (RTN, before and
  // after training; equal for rtn and gptq's "init").
  double rtn_mse = 0, final_mse = 0;
  double plan_seconds = 0, inputs_seconds = 0, quantize_seconds = 0, write_seconds = 0;
  // "avg_bits=... budget=... method=... rtn_mse=... final_mse=... output=..."
  std::string KeyValues(const std::filesystem::path& output) const;
};

// Runs the whole stage and writes the output of config.output (plan files, shards, model.h5)
// into `write_dir`: the staging directory of an OutputDir (hiq/io/output.h), which publishes
// it. `log` (rank 0 only, may be null) receives the stage lines, `rank_log` (every rank, may be
// null) the per-block lines. `store` (may be null, hiq/stages/resume.h): the plan and every block
// computed are written to it; with store->reuse, the ones it holds are taken instead of computed
// ("[rank r] resume: block b from PATH"), and when it holds every block no block input is
// computed.
QuantizeReport RunQuantizeStage(const RunConfig& config, Pipeline& pipeline,
                                const Checkpoint& checkpoint,
                                const std::filesystem::path& write_dir, std::FILE* log,
                                std::FILE* rank_log, const ResumeStore* store = nullptr);

// The quantized model of OUT pipelined over `comm`'s ranks: each rank reads and dequantizes only
// its own slice from OUT/model.h5's links. `info` receives the root file's contents.
// FormatError naming the file for anything missing or inconsistent.
Pipeline LoadQuantizedPipeline(const Comm& comm, const std::filesystem::path& out_dir,
                               ModelFileInfo* info);

// Average bits of OUT's stored layers (StoredBits over n_out * n_in), read back from the shards.
double StoredAverageBits(const std::filesystem::path& out_dir);

// `hiq export`: OUT dequantized into a Hugging Face directory `dir` (config.json,
// tokenizer.model, model.safetensors, or model-0000k-of-0000n.safetensors with
// model.safetensors.index.json when the tensors exceed max_shard_bytes), weights in `dtype`
// (F32, F16 or BF16). Serial. `dir` is written in place: `hiq export` passes an OutputDir's
// staging directory and commits it (hiq/io/output.h), config.json last. Returns the number of
// safetensors files written.
int ExportQuantized(const std::filesystem::path& out_dir, const std::filesystem::path& dir,
                    DType dtype, uint64_t max_shard_bytes);

}  // namespace hiq
