// The quantize stage and the readers of its output (see hiq/stages/quantize.h).
#include "hiq/stages/quantize.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "hiq/base/error.h"          // FormatError, IoError, NumericalError
#include "hiq/base/finite.h"         // FirstNonFinite, ValueName
#include "hiq/base/interrupt.h"      // SetStage
#include "hiq/base/log.h"            // Log
#include "hiq/base/sysinfo.h"        // HostName, PeakRssBytes, ResetPeakRss
#include "hiq/io/output.h"           // WriteWholeFile
#include "hiq/io/safetensors.h"      // ConvertToFloat, EncodeFloats, WriteSafetensors
#include "hiq/model/blas.h"          // CurrentBlasInfo
#include "hiq/model/tensors.h"       // ModelTensors, LayerIndex, LayerName
#include "hiq/quant/gptq.h"          // GptqHessian, GptqQuantize
#include "hiq/quant/quant.h"         // QuantizeLayer, Dequantize, StoredBits
#include "hiq/quant/recon.h"         // ReconstructBlock
#include "hiq/stages/calibration.h"  // BuildSampleSet
#include "hiq/stages/memory.h"       // AccountMemory, MemoryLine
#include "hiq/stages/resume.h"       // ResumeBlock, SaveBlock, BlockResult

namespace hiq {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Sequences per pipeline message when caching block inputs (a parameter, never derived from P).
constexpr int kMicroBatch = 4;

std::string ReadBinaryFile(const fs::path& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(std::string("quantize: cannot read ") + what + " '" + path.string() + "'");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

ReconMethod ReconMethodOf(QuantizeMethod method) {
  switch (method) {
    case QuantizeMethod::kHiq:
    case QuantizeMethod::kFixedRatio:
      return ReconMethod::kHybrid;
    case QuantizeMethod::kLwc:
      return ReconMethod::kLwc;
    case QuantizeMethod::kAdaRound:
      return ReconMethod::kAdaRound;
    case QuantizeMethod::kGptq:
    case QuantizeMethod::kRtn:
      break;
  }
  HIQ_CHECK(false);
  return ReconMethod::kHybrid;
}

// One block by the configured method. x (S * T, C): the block's inputs.
BlockResult QuantizeBlock(const RunConfig& config, const LlamaConfig& model,
                          const BlockWeights<float>& w, int block, int64_t seq_len,
                          const Matrix<float>& x, const std::vector<PlanLayerRow>& rows) {
  const QuantSpec spec{config.quant.bits_low, config.quant.bits_high, config.quant.group_size};
  std::vector<ReconLayer> layers;
  for (Linear kind : kLinears) {
    layers.push_back({rows[static_cast<size_t>(LayerIndex(block, kind))].channels, spec});
  }
  const QuantizeMethod method = config.quantize.method;
  BlockResult result;
  if (method == QuantizeMethod::kRtn || method == QuantizeMethod::kGptq) {
    // The RTN layers are the reference of every method's MSE, and rtn's own result.
    std::array<QuantizedLayer, kNumLinears> rtn;
    for (size_t k = 0; k < kNumLinears; ++k) {
      const Matrix<float>& wl = w.linear(kLinears[k]);
      rtn[k] = QuantizeLayer(wl.data(), wl.rows(), wl.cols(), layers[k].high_cols, spec);
    }
    Matrix<float> target;
    std::vector<GptqHessian> hessians;
    BlockTargetAndHessians(model, w, seq_len, x, kMicroBatch, &target,
                           method == QuantizeMethod::kGptq ? &hessians : nullptr);
    for (size_t k = 0; k < kNumLinears; ++k) {
      if (method == QuantizeMethod::kRtn) {
        result.layers[k] = rtn[k];
        continue;
      }
      const Matrix<float>& wl = w.linear(kLinears[k]);
      GptqOptions options;
      options.percdamp = config.quantize.gptq_damp;
      options.act_order = config.quantize.gptq_act_order;
      std::string log;
      result.layers[k] = GptqQuantize(wl.data(), wl.rows(), wl.cols(), hessians[k],
                                      layers[k].high_cols, spec, options, &log);
      if (!log.empty()) std::fprintf(stderr, "%s", log.c_str());
    }
    result.rtn_mse = BlockOutputMse(model, DequantizedBlock(w, rtn), seq_len, x, target);
    result.init_mse = result.rtn_mse;
    result.final_mse =
        BlockOutputMse(model, DequantizedBlock(w, result.layers), seq_len, x, target);
    return result;
  }
  ReconOptions options;
  options.method = ReconMethodOf(method);
  options.steps = config.quantize.steps;
  options.batch = config.quantize.batch;
  options.lwc_lr = static_cast<float>(config.quantize.lwc_lr);
  options.lwc_init = static_cast<float>(config.quantize.lwc_init);
  options.round_lr = static_cast<float>(config.quantize.round_lr);
  options.round_lambda = static_cast<float>(config.quantize.round_lambda);
  options.beta_start = static_cast<float>(config.quantize.beta_start);
  options.beta_end = static_cast<float>(config.quantize.beta_end);
  options.warmup = static_cast<float>(config.quantize.warmup);
  options.seed = config.quantize.seed;
  options.block = block;
  ReconResult r = ReconstructBlock(model, w, seq_len, x, layers, options);
  result.layers = std::move(r.layers);
  result.rtn_mse = r.report.rtn_mse;
  result.init_mse = r.report.init_mse;
  result.final_mse = r.report.final_mse;
  return result;
}

// Every layer's (name, ratio, n_high, LayerBits) row, for the root file.
std::vector<PlanEntry> PlanEntries(const std::vector<PlanLayerRow>& rows, const QuantSpec& spec) {
  std::vector<PlanEntry> entries;
  for (const PlanLayerRow& r : rows) {
    const int64_t n_high = static_cast<int64_t>(r.channels.size());
    entries.push_back({r.name, r.ratio, n_high, LayerBits(r.n_out, r.n_in, n_high, spec)});
  }
  return entries;
}

// The unquantized tensors this rank owns, as stored in the checkpoint.
std::vector<TensorToWrite> OwnUnquantizedTensors(const Stage<float>& stage,
                                                 const Checkpoint& checkpoint) {
  std::vector<TensorToWrite> tensors;
  for (const ModelTensor& t : ModelTensors(stage.config, {stage.block_begin, stage.block_end,
                                                          stage.has_embedding, stage.has_head})) {
    if (t.spec != nullptr && t.spec->quantized) continue;
    const TensorInfo& info = checkpoint.Info(t.name);
    tensors.push_back({t.name, info.dtype, info.shape, checkpoint.Bytes(t.name)});
  }
  return tensors;
}

// Every rank's machine, threads, peak memory and blocks time, on rank 0 (empty elsewhere).
// Collective.
std::vector<RankProvenance> GatherProvenance(const Comm& comm, double blocks_seconds,
                                             int64_t peak_bytes, const StageBytes& sent) {
  const BlasInfo blas = CurrentBlasInfo();
  const std::vector<std::string> hosts = comm.Gather(HostName(), 0);
  const std::vector<std::string> cpus = comm.Gather(blas.cpu_model, 0);
  const std::vector<std::string> cores = comm.Gather(blas.core, 0);
  // Counts below 2^53 travel exactly as doubles.
  const std::vector<double> numbers = comm.AllGather(std::vector<double>{
      static_cast<double>(blas.threads), static_cast<double>(peak_bytes), blocks_seconds,
      static_cast<double>(sent.plan), static_cast<double>(sent.inputs),
      static_cast<double>(sent.blocks), static_cast<double>(sent.write)});
  constexpr size_t kPerRank = 7;
  std::vector<RankProvenance> ranks;
  if (comm.rank() != 0) return ranks;
  for (size_t r = 0; r < hosts.size(); ++r) {
    const double* n = &numbers[kPerRank * r];
    const auto count = [](double v) { return static_cast<int64_t>(v); };
    ranks.push_back({hosts[r], cpus[r], cores[r], static_cast<int>(n[0]), count(n[1]), n[2],
                     StageBytes{count(n[3]), count(n[4]), count(n[5]), count(n[6])}});
  }
  return ranks;
}

}  // namespace

std::string QuantizeReport::KeyValues(const fs::path& output) const {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "avg_bits=%.6f budget=%.6f method=%s rtn_mse=%.9g final_mse=%.9g plan_s=%.1f "
                "quantize_s=%.1f output=%s",
                avg_bits, budget_avg_bits, method.c_str(), rtn_mse, final_mse, plan_seconds,
                quantize_seconds, output.c_str());
  return buf;
}

QuantizeReport RunQuantizeStage(const RunConfig& config, Pipeline& pipeline,
                                const Checkpoint& checkpoint, const fs::path& write_dir,
                                std::FILE* log, std::FILE* rank_log, const ResumeStore* store) {
  const Comm& comm = pipeline.comm();
  const Stage<float>& stage = pipeline.stage();
  const LlamaConfig& model = stage.config;
  QuantizeReport report;
  report.method = std::string(Name(config.quantize.method));

  // The bytes this rank has sent to the others so far, for the stages' traffic (provenance).
  const auto sent = [&comm] {
    return static_cast<int64_t>(comm.bytes_sent() + comm.collective_bytes());
  };
  StageBytes stage_bytes;
  int64_t sent0 = sent();
  const auto end_stage = [&](int64_t& bytes) {
    const int64_t now = sent();
    bytes = now - sent0;
    sent0 = now;
  };

  // 1. The plan; every method but hiq takes the fixed ratio's channels at the same budget.
  auto t0 = Clock::now();
  report.plan = RunPlanStage(config, pipeline, checkpoint, log, store);
  SetStage("quantize: write plan");
  if (comm.rank() == 0) WritePlan(report.plan, write_dir);
  const Components plan_components = PlanComponents(config, report.plan.model_fingerprint);
  if (store != nullptr && !report.plan.resumed && comm.rank() == 0) {
    SetStage("quantize: store plan");
    SavePlan(*store, plan_components, report.plan);
  }
  report.plan_seconds = Since(t0);
  end_stage(stage_bytes.plan);
  const int64_t plan_peak = PeakRssBytes();
  // From here the peak is the blocks stage's own: its inputs and training, apart from the plan.
  const bool blocks_measured = ResetPeakRss();
  const bool optimised = config.quantize.method == QuantizeMethod::kHiq;
  const std::vector<PlanLayerRow>& rows = optimised ? report.plan.layers : report.plan.fixed_layers;
  report.budget_avg_bits = report.plan.budget_avg_bits;
  Log(log, "[%.1fs] plan: %s channels, %s, avg_bits %.6f\n", report.plan_seconds,
      optimised ? "the plan's" : "the fixed ratio's", report.method.c_str(),
      optimised ? report.plan.avg_bits : report.plan.fixed_avg_bits);

  // The blocks already in the store (--resume), each read by the rank that owns it now.
  SetStage("quantize: resume blocks");
  const size_t n_local = stage.blocks.size();
  const Components block_components =
      BlockComponents(config, report.plan.model_fingerprint, plan_components);
  std::vector<std::optional<BlockResult>> stored(n_local);
  bool local_all_stored = true;
  for (size_t b = 0; b < n_local; ++b) {
    const int block = stage.block_begin + static_cast<int>(b);
    if (store != nullptr) stored[b] = ResumeBlock(*store, block, block_components);
    if (!stored[b]) {
      local_all_stored = false;
      continue;
    }
    for (size_t k = 0; k < kNumLinears; ++k) {
      const Matrix<float>& wl = stage.blocks[b].linear(kLinears[k]);
      const QuantizedLayer& q = stored[b]->layers[k];
      if (q.n_out != wl.rows() || q.n_in != wl.cols()) {
        throw FormatError("resume store: " + BlockEntryPath(*store, block).string() + ": layer " +
                          LayerName(LayerIndex(block, kLinears[k])) + " is [" +
                          std::to_string(q.n_out) + ", " + std::to_string(q.n_in) +
                          "], the model's [" + std::to_string(wl.rows()) + ", " +
                          std::to_string(wl.cols()) + "]");
      }
    }
  }
  const bool all_stored = comm.AllTrue(local_all_stored);

  // 2. Block inputs. The pipeline forward keeps each rank's first block input only; the rank
  // runs its later blocks' inputs itself, a block forward at the pipeline's micro-batch
  // (BlockForwardRows), so that it holds two blocks' rows (an input and the next), never its
  // slice's, and the rows are the pipeline's bit for bit wherever the rank boundaries fall. With
  // quantized inputs the next input is under the block's quantized weights, and rank r's first
  // input needs every earlier rank's blocks: one pipeline forward per rank that has a block to
  // compute, not one per block.
  SetStage("quantize: block inputs");
  t0 = Clock::now();
  std::vector<Sequence> seqs;
  int64_t seq_len = 0;
  if (!all_stored) {
    seqs = StoredSampleSet(store, config, config.calibration.reconstruction, "reconstruction",
                           report.plan.model_fingerprint, pipeline,
                           ReadModelVocab(checkpoint.dir() / "config.json"), log);
    seq_len = static_cast<int64_t>(seqs.front().tokens.size());
  }
  std::vector<BlockWeights<float>> quantized(n_local);  // dequantized, for quantized inputs
  std::vector<bool> done(n_local, false);
  const bool sequential = config.quantize.inputs == ReconInputs::kQuantized;
  if (sequential) {
    // A stored block feeds the later blocks' inputs as a computed one would.
    for (size_t b = 0; b < n_local; ++b) {
      if (!stored[b]) continue;
      quantized[b] = DequantizedBlock(stage.blocks[b], stored[b]->layers);
      done[b] = true;
    }
  }
  const JobWeights weights = [&](int) {
    std::vector<const BlockWeights<float>*> w(n_local, nullptr);
    for (size_t b = 0; b < n_local; ++b) {
      if (done[b]) w[b] = &quantized[b];
    }
    return w;
  };
  BlockInputs inputs;
  inputs.first_only = true;
  if (!all_stored && !sequential) {
    pipeline.ForwardJobs(seqs, {0}, weights, nullptr, &inputs, kMicroBatch);
  }
  report.inputs_seconds = Since(t0);
  end_stage(stage_bytes.inputs);
  if (all_stored) {
    Log(log, "[%.1fs] resume: every block is in %s, no block inputs computed\n",
        report.plan_seconds + report.inputs_seconds, (store->dir / "blocks").c_str());
  } else {
    Log(log,
        "[%.1fs] reconstruction set %zu x %lld tokens, block inputs (%s) from one pipeline "
        "forward%s\n",
        report.plan_seconds + report.inputs_seconds, seqs.size(), static_cast<long long>(seq_len),
        std::string(Name(config.quantize.inputs)).c_str(), sequential ? " per rank" : "");
  }

  // 3. Every rank its own blocks, in block order, each block's input computed from the one
  // before it; none past the last block that is not stored.
  SetStage("quantize: blocks");
  t0 = Clock::now();
  std::vector<ShardLayer> shard_layers;
  double rtn_mse = 0, final_mse = 0;
  const Rope<float> rope = all_stored ? Rope<float>() : MakeRope<float>(model, seq_len);
  const auto quantize_local_blocks = [&] {
    Matrix<float> x;
    if (!inputs.per_block.empty()) x = std::move(inputs.per_block.front());
    inputs.per_block.clear();
    size_t last_computed = 0;  // one past the last local block to compute
    for (size_t b = 0; b < n_local; ++b) {
      if (!stored[b]) last_computed = b + 1;
    }
    for (size_t b = 0; b < n_local; ++b) {
      const int block = stage.block_begin + static_cast<int>(b);
      const auto tb = Clock::now();
      BlockResult r;
      if (stored[b]) {
        const std::string step = "quantize: resume block " + std::to_string(block);
        SetStage(step.c_str());
        r = std::move(*stored[b]);
        if (rank_log != nullptr) {
          std::fprintf(
              rank_log,
              "[rank %d] resume: block %d from %s (%s mse rtn=%.6g init=%.6g final=%.6g)\n",
              comm.rank(), block, BlockEntryPath(*store, block).c_str(), report.method.c_str(),
              r.rtn_mse, r.init_mse, r.final_mse);
          std::fflush(rank_log);
        }
      } else {
        const std::string step = "quantize: block " + std::to_string(block);
        SetStage(step.c_str());
        r = QuantizeBlock(config, model, stage.blocks[b], block, seq_len, x, rows);
        if (store != nullptr) SaveBlock(*store, block, block_components, r);
        if (rank_log != nullptr) {
          std::fprintf(rank_log,
                       "[rank %d] block %d: %s mse rtn=%.6g init=%.6g final=%.6g (%.1fs)\n",
                       comm.rank(), block, report.method.c_str(), r.rtn_mse, r.init_mse,
                       r.final_mse, Since(tb));
          std::fflush(rank_log);
        }
        if (sequential) {
          quantized[b] = DequantizedBlock(stage.blocks[b], r.layers);
          done[b] = true;
        }
      }
      if (b + 1 < last_computed) {
        const std::string step = "quantize: inputs of block " + std::to_string(block + 1);
        SetStage(step.c_str());
        Matrix<float> next;
        BlockForwardRows(model, sequential ? quantized[b] : stage.blocks[b], rope, seq_len, x, next,
                         kMicroBatch);
        const int64_t bad = FirstNonFinite(std::span<const float>(next.data(), next.size()));
        if (bad >= 0) {
          throw NumericalError("quantize: the output of block " + std::to_string(block) +
                               (sequential ? " under its quantized weights" : "") + " is " +
                               ValueName(next.data()[bad]) + " on sequence " +
                               std::to_string(bad / next.cols() / seq_len) +
                               ": an activation overflowed");
        }
        x = std::move(next);
      }
      rtn_mse += r.rtn_mse;
      final_mse += r.final_mse;
      for (size_t k = 0; k < kNumLinears; ++k) {
        shard_layers.push_back({LayerName(LayerIndex(block, kLinears[k])), std::move(r.layers[k])});
      }
    }
  };
  if (!sequential) {
    quantize_local_blocks();
  } else {
    const std::vector<double> computes =
        comm.AllGather(std::vector<double>{local_all_stored ? 0.0 : 1.0});
    for (int r = 0; r < comm.size(); ++r) {
      if (computes[static_cast<size_t>(r)] == 0) continue;
      pipeline.ForwardJobs(seqs, {0}, weights, nullptr, &inputs, kMicroBatch);
      if (comm.rank() == r) quantize_local_blocks();
    }
    if (local_all_stored) quantize_local_blocks();
  }
  report.quantize_seconds = Since(t0);
  end_stage(stage_bytes.blocks);
  const int64_t blocks_peak = blocks_measured ? PeakRssBytes() : -1;

  // 4. Shards, then the root file. The stored bits are exact integers, summed in rank order.
  SetStage("quantize: shards");
  t0 = Clock::now();
  double local_bits = 0, local_weights = 0;
  for (const ShardLayer& l : shard_layers) {
    local_bits += static_cast<double>(StoredBits(l.layer));
    local_weights += static_cast<double>(l.layer.n_out * l.layer.n_in);
  }
  const std::vector<double> all =
      comm.AllGather(std::vector<double>{local_bits, local_weights, rtn_mse, final_mse});
  double bits = 0, n_weights = 0;
  for (size_t r = 0; r < all.size(); r += 4) {
    bits += all[r];
    n_weights += all[r + 1];
    report.rtn_mse += all[r + 2];
    report.final_mse += all[r + 3];
  }
  report.avg_bits = bits / n_weights;
  const fs::path shard_path = write_dir / ShardRelativePath(comm.rank(), comm.size());
  std::error_code ec;
  fs::create_directories(shard_path.parent_path(), ec);
  if (ec)
    throw IoError("quantize: cannot create '" + shard_path.parent_path().string() +
                  "': " + ec.message());
  WriteShard(shard_path, comm.rank(), comm.size(), shard_layers,
             OwnUnquantizedTensors(stage, checkpoint));
  // Every shard is complete before the root file that links them exists.
  if (!comm.AllTrue(true)) throw MpiError("quantize: a rank failed to write its shard");
  const double shards_seconds = Since(t0);
  SetStage("quantize: model file");
  // The job's peak: the larger of the plan's and of what came after the reset.
  const int64_t job_peak = std::max(plan_peak, PeakRssBytes());
  if (rank_log != nullptr) {
    std::fprintf(
        rank_log, "%s\n",
        MemoryLine(comm.rank(), job_peak, plan_peak, blocks_peak, AccountMemory(stage, config))
            .c_str());
    std::fflush(rank_log);
  }
  end_stage(stage_bytes.write);  // the shards' stage, up to the provenance's own gather
  const std::vector<RankProvenance> ranks =
      GatherProvenance(comm, report.quantize_seconds, job_peak, stage_bytes);
  if (comm.rank() == 0) {
    ModelFileInfo info;
    info.n_ranks = comm.size();
    info.model_config = ReadBinaryFile(checkpoint.dir() / "config.json", "config.json");
    info.run_config = ToYaml(config);
    info.run_config_hash =
        Fingerprint(config, ConfigStage::kQuantize) + " plan " + report.plan.fingerprint;
    info.git_revision = HIQ_GIT_REVISION;
    info.budget_avg_bits = report.budget_avg_bits;
    info.avg_bits = report.avg_bits;
    info.plan = PlanEntries(rows, report.plan.spec);
    const std::string tok = ReadBinaryFile(config.model.tokenizer, "tokenizer");
    info.tokenizer_model.assign(tok.begin(), tok.end());
    info.hiq_version = HIQ_VERSION;
    info.model_fingerprint = report.plan.model_fingerprint;
    info.seconds = {report.plan_seconds, report.inputs_seconds, report.quantize_seconds,
                    shards_seconds};
    info.ranks = ranks;
    WriteModelFile(write_dir, info);
  }
  comm.Barrier();
  report.write_seconds = Since(t0);
  Log(log, "[%.1fs] wrote %s: %d shards, avg_bits %.6f (budget %.6f)\n",
      report.plan_seconds + report.inputs_seconds + report.quantize_seconds + report.write_seconds,
      (config.output / "model.h5").c_str(), comm.size(), report.avg_bits, report.budget_avg_bits);
  return report;
}

namespace {

Matrix<float> TensorMatrix(const StoredTensor& t, int64_t rows, int64_t cols,
                           const std::string& where) {
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  if (n != rows * cols) {
    throw FormatError(where + ": tensor '" + t.name + "' has " + std::to_string(n) +
                      " elements, expected " + std::to_string(rows * cols) + " from config.json");
  }
  Matrix<float> m(rows, cols);
  ConvertToFloat(t.dtype, t.data, std::span<float>(m.data(), static_cast<size_t>(m.size())));
  return m;
}

Matrix<float> LayerMatrix(const QuantizedLayer& q) {
  Matrix<float> m(q.n_out, q.n_in);
  Dequantize(q, m.data());
  return m;
}

}  // namespace

Pipeline LoadQuantizedPipeline(const Comm& comm, const fs::path& out_dir, ModelFileInfo* info) {
  const fs::path root = out_dir / "model.h5";
  ModelFileInfo read = ReadModelFile(root);
  // The ranks share the hashing: shard i is checked by rank i mod P, before any link is followed.
  for (int i = comm.rank(); i < read.n_ranks; i += comm.size()) VerifyShard(out_dir, read, i);
  comm.Barrier();
  const LlamaConfig model = LlamaConfigFromJson(nlohmann::json::parse(read.model_config),
                                                root.string() + " model_config");
  Partition partition = PartitionBlocks(model, comm.size());
  const size_t r = static_cast<size_t>(comm.rank());
  Stage<float> stage;
  stage.config = model;
  stage.block_begin = partition.first_block[r];
  stage.block_end = partition.first_block[r + 1];
  stage.has_embedding = r == 0;
  stage.has_head = comm.rank() == comm.size() - 1;
  const ShardReader reader(root);
  const std::string where = "LoadQuantizedPipeline: " + root.string();
  const int64_t V = model.vocab_size, C = model.hidden_size;
  if (stage.has_embedding) {
    stage.embedding = TensorMatrix(reader.ReadTensor("model.embed_tokens.weight"), V, C, where);
  }
  for (int b = stage.block_begin; b < stage.block_end; ++b) {
    BlockWeights<float> w = ZeroBlock<float>(model);
    ForEachBlockTensor(w, [&](const BlockTensor& t, Matrix<float>& m) {
      const std::string name = BlockTensorName(b, t.suffix);
      if (!t.quantized) {
        m = TensorMatrix(reader.ReadTensor(name), m.rows(), m.cols(), where);
        return;
      }
      const QuantizedLayer q = reader.ReadLayer(LayerName(LayerIndex(b, t.linear)));
      if (q.n_out != m.rows() || q.n_in != m.cols()) {
        throw FormatError(where + ": layer '" + name + "' is [" + std::to_string(q.n_out) + ", " +
                          std::to_string(q.n_in) + "], config.json implies [" +
                          std::to_string(m.rows()) + ", " + std::to_string(m.cols()) + "]");
      }
      m = LayerMatrix(q);
    });
    stage.blocks.push_back(std::move(w));
  }
  if (stage.has_head) {
    stage.final_norm = TensorMatrix(reader.ReadTensor("model.norm.weight"), 1, C, where);
    stage.lm_head =
        TensorMatrix(reader.ReadTensor(model.tie_word_embeddings ? "model.embed_tokens.weight"
                                                                 : "lm_head.weight"),
                     V, C, where);
  }
  if (info != nullptr) *info = std::move(read);
  return Pipeline(comm, std::move(stage), std::move(partition));
}

double StoredAverageBits(const fs::path& out_dir) {
  const ShardReader reader(out_dir / "model.h5");
  double bits = 0, weights = 0;
  for (const std::string& name : reader.LayerNames()) {
    const QuantizedLayer q = reader.ReadLayer(name);
    bits += static_cast<double>(StoredBits(q));
    weights += static_cast<double>(q.n_out * q.n_in);
  }
  return bits / weights;
}

int ExportQuantized(const fs::path& out_dir, const fs::path& dir, DType dtype,
                    uint64_t max_shard_bytes) {
  const fs::path root = out_dir / "model.h5";
  const ModelFileInfo info = ReadModelFile(root);
  for (int i = 0; i < info.n_ranks; ++i) VerifyShard(out_dir, info, i);
  const LlamaConfig model = LlamaConfigFromJson(nlohmann::json::parse(info.model_config),
                                                root.string() + " model_config");
  const ShardReader reader(root);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw IoError("export: cannot create '" + dir.string() + "': " + ec.message());

  // Every tensor of the model in checkpoint order, dequantized and encoded in `dtype`.
  std::vector<std::string> names;
  std::vector<std::vector<int64_t>> shapes;
  std::vector<std::vector<std::byte>> data;
  for (const ModelTensor& t : ModelTensors(model)) {
    std::vector<float> values;
    if (t.spec != nullptr && t.spec->quantized) {
      const QuantizedLayer q = reader.ReadLayer(LayerName(LayerIndex(t.block, t.spec->linear)));
      values.resize(static_cast<size_t>(q.n_out * q.n_in));
      Dequantize(q, values.data());
    } else {
      const StoredTensor s = reader.ReadTensor(t.name);
      values.resize(s.data.size() / DTypeSize(s.dtype));
      ConvertToFloat(s.dtype, s.data, values);
    }
    names.push_back(t.name);
    shapes.push_back(t.shape);
    data.push_back(EncodeFloats(values, dtype, t.name));
  }

  // Cut into files of at most max_shard_bytes (a tensor larger than that gets a file alone).
  std::vector<std::vector<size_t>> files(1);
  uint64_t in_file = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    if (!files.back().empty() && in_file + data[i].size() > max_shard_bytes) {
      files.emplace_back();
      in_file = 0;
    }
    files.back().push_back(i);
    in_file += data[i].size();
  }
  const int n_files = static_cast<int>(files.size());
  nlohmann::json weight_map = nlohmann::json::object();
  uint64_t total = 0;
  for (int f = 0; f < n_files; ++f) {
    char file_name[64];
    std::snprintf(file_name, sizeof file_name, "model-%05d-of-%05d.safetensors", f + 1, n_files);
    const std::string name = n_files == 1 ? "model.safetensors" : file_name;
    std::vector<TensorToWrite> tensors;
    for (size_t i : files[static_cast<size_t>(f)]) {
      tensors.push_back({names[i], dtype, shapes[i], data[i]});
      weight_map[names[i]] = name;
      total += data[i].size();
    }
    WriteSafetensors(dir / name, tensors, {{"format", "pt"}, {"generator", "hiq export"}});
  }
  // `dir` is the staging directory of hiq/io/output.h: nothing here is visible before the commit.
  if (n_files > 1) {
    nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    WriteWholeFile(dir / "model.safetensors.index.json", index.dump(2) + "\n", "export");
  }
  nlohmann::json config = nlohmann::json::parse(info.model_config);
  config["torch_dtype"] = dtype == DType::kF32   ? "float32"
                          : dtype == DType::kF16 ? "float16"
                                                 : "bfloat16";
  if (!info.tokenizer_model.empty()) {
    WriteWholeFile(dir / "tokenizer.model",
                   std::string(info.tokenizer_model.begin(), info.tokenizer_model.end()), "export");
  }
  WriteWholeFile(dir / "config.json", config.dump(2) + "\n", "export");
  return n_files;
}

}  // namespace hiq
