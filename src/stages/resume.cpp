// The resume store's plan and block entries (see hiq/stages/resume.h).
#include "hiq/stages/resume.h"

#include <cstring>
#include <nlohmann/json.hpp>

#include "hiq/base/error.h"     // ConfigError, FormatError
#include "hiq/base/log.h"       // Log
#include "hiq/base/sha256.h"    // Sha256
#include "hiq/dist/mpi.h"       // Comm
#include "hiq/io/stagestore.h"  // StoreEntry, WriteStoreEntry, ReadStoreEntry
#include "hiq/model/blas.h"     // CurrentBlasInfo
#include "hiq/quant/pack.h"     // PackCodes, UnpackCodes

#ifndef HIQ_BUILD_TYPE
#define HIQ_BUILD_TYPE "unknown"
#endif

namespace hiq {
namespace {

namespace fs = std::filesystem;

std::string Refusal(const ResumeStore& store, const fs::path& path, const std::string& difference) {
  return "--resume: " + path.string() + " was made with " + difference +
         "; it is not reused. Pass --overwrite to discard the store (" + store.dir.string() +
         ") and compute everything again";
}

// The entry at `path` if its components are `components`; ConfigError naming what differs.
std::optional<StoreEntry> ValidEntry(const ResumeStore& store, const fs::path& path,
                                     const std::string& kind, const Components& components) {
  std::optional<StoreEntry> entry = ReadStoreEntry(path);
  if (!entry) return std::nullopt;
  if (entry->kind != kind) {
    throw FormatError("resume store: " + path.string() + " is a '" + entry->kind +
                      "' entry, expected '" + kind + "'");
  }
  const std::string difference = DescribeDifference(*entry, components);
  if (!difference.empty()) throw ConfigError(Refusal(store, path, difference));
  return entry;
}

nlohmann::json RowsJson(const std::vector<PlanLayerRow>& rows) {
  nlohmann::json out = nlohmann::json::array();
  for (const PlanLayerRow& r : rows) {
    out.push_back({{"name", r.name},
                   {"candidate", r.candidate},
                   {"ratio", r.ratio},
                   {"n_out", r.n_out},
                   {"n_in", r.n_in},
                   {"channels", r.channels},
                   {"bits", r.bits},
                   {"predicted", r.predicted}});
  }
  return out;
}

std::vector<PlanLayerRow> RowsFromJson(const nlohmann::json& j) {
  std::vector<PlanLayerRow> rows;
  for (const nlohmann::json& r : j) {
    PlanLayerRow row;
    row.name = r.at("name").get<std::string>();
    row.candidate = r.at("candidate").get<int>();
    row.ratio = r.at("ratio").get<double>();
    row.n_out = r.at("n_out").get<int64_t>();
    row.n_in = r.at("n_in").get<int64_t>();
    row.channels = r.at("channels").get<std::vector<int32_t>>();
    row.bits = r.at("bits").get<double>();
    row.predicted = r.at("predicted").get<double>();
    rows.push_back(std::move(row));
  }
  return rows;
}

// Every field of the report: a resumed run prints and writes what the uninterrupted one did.
// nlohmann prints doubles in the shortest form that reads back to the same bits.
std::string PlanPayload(const PlanReport& r) {
  nlohmann::json j;
  j["spec"] = {r.spec.bits_low, r.spec.bits_high, r.spec.group_size};
  j["ratios"] = r.ratios;
  j["layers"] = RowsJson(r.layers);
  j["choice"] = r.choice;
  j["budget_avg_bits"] = r.budget_avg_bits;
  j["avg_bits"] = r.avg_bits;
  j["fixed_ratio"] = r.fixed_ratio;
  j["predicted_dloss"] = r.predicted_dloss;
  j["measured_dloss"] = r.measured_dloss;
  j["fixed_dloss"] = r.fixed_dloss;
  j["solver"] = r.solver;
  j["status"] = r.status;
  j["solve_seconds"] = r.solve_seconds;
  j["cost_seconds"] = r.cost_seconds;
  j["evaluations"] = r.evaluations;
  j["rounds"] = r.rounds;
  j["fell_back"] = r.fell_back;
  j["log"] = r.log;
  j["fingerprint"] = r.fingerprint;
  j["model_fingerprint"] = r.model_fingerprint;
  j["blas_core"] = r.blas_core;
  j["cpu_model"] = r.cpu_model;
  j["cost_mode"] = r.cost_mode;
  j["cost_center"] = r.cost_center;
  j["fixed_layers"] = RowsJson(r.fixed_layers);
  j["fixed_avg_bits"] = r.fixed_avg_bits;
  return j.dump();
}

PlanReport PlanFromPayload(const std::string& payload, const fs::path& path) {
  PlanReport r;
  try {
    const nlohmann::json j = nlohmann::json::parse(payload);
    const auto spec = j.at("spec");
    r.spec.bits_low = spec.at(0).get<int>();
    r.spec.bits_high = spec.at(1).get<int>();
    r.spec.group_size = spec.at(2).get<int64_t>();
    r.ratios = j.at("ratios").get<std::vector<double>>();
    r.layers = RowsFromJson(j.at("layers"));
    r.choice = j.at("choice").get<Plan>();
    r.budget_avg_bits = j.at("budget_avg_bits").get<double>();
    r.avg_bits = j.at("avg_bits").get<double>();
    r.fixed_ratio = j.at("fixed_ratio").get<double>();
    r.predicted_dloss = j.at("predicted_dloss").get<double>();
    r.measured_dloss = j.at("measured_dloss").get<double>();
    r.fixed_dloss = j.at("fixed_dloss").get<double>();
    r.solver = j.at("solver").get<std::string>();
    r.status = j.at("status").get<std::string>();
    r.solve_seconds = j.at("solve_seconds").get<double>();
    r.cost_seconds = j.at("cost_seconds").get<double>();
    r.evaluations = j.at("evaluations").get<int>();
    r.rounds = j.at("rounds").get<int>();
    r.fell_back = j.at("fell_back").get<bool>();
    r.log = j.at("log").get<std::string>();
    r.fingerprint = j.at("fingerprint").get<std::string>();
    r.model_fingerprint = j.at("model_fingerprint").get<std::string>();
    r.blas_core = j.at("blas_core").get<std::string>();
    r.cpu_model = j.at("cpu_model").get<std::string>();
    r.cost_mode = j.at("cost_mode").get<std::string>();
    r.cost_center = j.at("cost_center").get<std::string>();
    r.fixed_layers = RowsFromJson(j.at("fixed_layers"));
    r.fixed_avg_bits = j.at("fixed_avg_bits").get<double>();
  } catch (const nlohmann::json::exception& e) {
    throw FormatError("resume store: " + path.string() +
                      ": the plan does not read back: " + e.what());
  }
  return r;
}

// The block payload: host byte order (the entry's cpu component pins the machine kind).
struct Writer {
  std::string bytes;
  template <class T>
  void Put(const T& v) {
    bytes.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  template <class T>
  void PutVector(const std::vector<T>& v) {
    Put(static_cast<uint64_t>(v.size()));
    bytes.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
  }
  // Codes bit-packed as in the shards (hiq/quant/pack.h): an entry is no larger than its shard.
  void PutCodes(const std::vector<uint8_t>& codes, int bits) {
    Put(static_cast<uint64_t>(codes.size()));
    if (codes.empty()) return;
    PutVector(PackCodes(codes, bits));
  }
};

struct Reader {
  const std::string& bytes;
  const fs::path& path;
  size_t at = 0;
  void Need(size_t n) const {
    if (n > bytes.size() - at) {
      throw FormatError("resume store: " + path.string() + ": the payload is cut short");
    }
  }
  template <class T>
  T Get() {
    Need(sizeof(T));
    T v;
    std::memcpy(&v, bytes.data() + at, sizeof v);
    at += sizeof v;
    return v;
  }
  template <class T>
  std::vector<T> GetVector() {
    const uint64_t n = Get<uint64_t>();
    if (n > (bytes.size() - at) / sizeof(T)) Need(bytes.size() + 1);
    std::vector<T> v(static_cast<size_t>(n));
    std::memcpy(v.data(), bytes.data() + at, v.size() * sizeof(T));
    at += v.size() * sizeof(T);
    return v;
  }
  std::vector<uint8_t> GetCodes(int bits) {
    const uint64_t n = Get<uint64_t>();
    if (n == 0) return {};
    const std::vector<uint8_t> packed = GetVector<uint8_t>();
    if (bits < 1 || bits > 8 ||
        static_cast<int64_t>(packed.size()) != PackedBytes(static_cast<int64_t>(n), bits)) {
      throw FormatError("resume store: " + path.string() + ": " + std::to_string(n) + " codes of " +
                        std::to_string(bits) + " bits in " + std::to_string(packed.size()) +
                        " bytes");
    }
    std::vector<uint8_t> codes(static_cast<size_t>(n));
    UnpackCodes(packed, bits, codes);
    return codes;
  }
};

constexpr uint32_t kBlockPayloadVersion = 1;  // bump when the layout below changes

std::string BlockPayload(const BlockResult& r, int block) {
  Writer w;
  w.Put(kBlockPayloadVersion);
  w.Put(static_cast<int32_t>(block));
  w.Put(static_cast<uint32_t>(kNumLinears));
  for (const QuantizedLayer& q : r.layers) {
    w.Put(q.n_out);
    w.Put(q.n_in);
    w.Put(static_cast<int32_t>(q.spec.bits_low));
    w.Put(static_cast<int32_t>(q.spec.bits_high));
    w.Put(q.spec.group_size);
    w.PutVector(q.high_cols);
    w.PutCodes(q.low_codes, q.spec.bits_low);
    w.PutVector(q.low_params);
    w.PutCodes(q.high_codes, q.spec.bits_high);
    w.PutVector(q.high_params);
    w.PutVector(q.high_fp16);
  }
  w.Put(r.rtn_mse);
  w.Put(r.init_mse);
  w.Put(r.final_mse);
  return w.bytes;
}

BlockResult BlockFromPayload(const std::string& payload, int block, const fs::path& path) {
  Reader in{payload, path};
  if (in.Get<uint32_t>() != kBlockPayloadVersion || in.Get<int32_t>() != block ||
      in.Get<uint32_t>() != kNumLinears) {
    throw FormatError("resume store: " + path.string() + ": not a version " +
                      std::to_string(kBlockPayloadVersion) + " entry of block " +
                      std::to_string(block) + "'s " + std::to_string(kNumLinears) + " layers");
  }
  BlockResult r;
  for (QuantizedLayer& q : r.layers) {
    q.n_out = in.Get<int64_t>();
    q.n_in = in.Get<int64_t>();
    q.spec.bits_low = in.Get<int32_t>();
    q.spec.bits_high = in.Get<int32_t>();
    q.spec.group_size = in.Get<int64_t>();
    q.high_cols = in.GetVector<int32_t>();
    q.low_codes = in.GetCodes(q.spec.bits_low);
    q.low_params = in.GetVector<GroupParams>();
    q.high_codes = in.GetCodes(q.spec.bits_high);
    q.high_params = in.GetVector<GroupParams>();
    q.high_fp16 = in.GetVector<float>();
  }
  r.rtn_mse = in.Get<double>();
  r.init_mse = in.Get<double>();
  r.final_mse = in.Get<double>();
  if (in.at != payload.size()) {
    throw FormatError("resume store: " + path.string() + ": " +
                      std::to_string(payload.size() - in.at) + " bytes after the block");
  }
  return r;
}

}  // namespace

namespace {

// OUT/.resume/<dir>/<prefix><n, zero-padded to `width`>.entry: the entries that come one per
// block or round.
fs::path NumberedEntry(const ResumeStore& store, const char* dir, const char* prefix, int width,
                       int n) {
  std::string digits = std::to_string(n);
  if (static_cast<int>(digits.size()) < width) digits.insert(0, width - digits.size(), '0');
  return store.dir / dir / (prefix + digits + ".entry");
}

}  // namespace

std::string BuildKind() {
#if defined(__clang__)
  const char* compiler = "clang " __clang_version__;
#elif defined(__GNUC__)
  const char* compiler = "gcc " __VERSION__;
#else
  const char* compiler = "unknown compiler";
#endif
  return std::string("git ") + HIQ_GIT_REVISION + ", " + compiler + ", " + HIQ_BUILD_TYPE;
}

std::string CpuKind() {
  const BlasInfo blas = CurrentBlasInfo();
  return blas.cpu_model + ", OpenBLAS " + blas.core;
}

Components PlanComponents(const RunConfig& config, const std::string& model_fingerprint) {
  return {{"config", CanonicalText(config, ConfigStage::kPlan)},
          {"model", model_fingerprint},
          {"build", BuildKind()},
          {"cpu", CpuKind()}};
}

fs::path PlanEntryPath(const ResumeStore& store) { return store.dir / "plan.entry"; }

namespace {

// An error caught on one rank, to be thrown alike on every rank: kind 'C' a ConfigError (a
// refused entry), 'F' a FormatError (an unreadable one), 0 none.
struct CaughtError {
  char kind = 0;
  std::string message;
};

template <class F>
CaughtError CatchEntryError(F&& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return {'C', e.what()};
  } catch (const Error& e) {
    return {'F', e.what()};
  }
  return {};
}

// Collective: the first error of `local` in rank order, thrown on every rank, so that every rank
// ends alike whichever rank read the entry that failed.
void ThrowOnEveryRank(const CaughtError& local, const Comm& comm) {
  std::string first;
  for (const std::string& e : comm.Gather(local.kind ? local.kind + local.message : "", 0)) {
    if (first.empty()) first = e;
  }
  comm.Broadcast(first, 0);
  if (first.empty()) return;
  if (first[0] == 'C') throw ConfigError(first.substr(1));
  throw FormatError(first.substr(1));
}

// Rank 0 reads the entry at `path` and every rank gets its outcome: the payload, nullopt when
// there is none, or the same ConfigError (refused) / FormatError (unreadable) on every rank.
std::optional<std::string> PayloadFromRankZero(const ResumeStore& store, const fs::path& path,
                                               const std::string& kind,
                                               const Components& components, const Comm& comm) {
  std::string payload;
  bool found = false;
  CaughtError error;
  if (comm.rank() == 0) {
    error = CatchEntryError([&] {
      if (std::optional<StoreEntry> entry = ValidEntry(store, path, kind, components)) {
        payload = std::move(entry->payload);
        found = true;
      }
    });
  }
  ThrowOnEveryRank(error, comm);
  comm.Broadcast(found, 0);
  if (!found) return std::nullopt;
  comm.Broadcast(payload, 0);
  return payload;
}

}  // namespace

std::optional<PlanReport> ResumePlan(const ResumeStore& store, const Components& components,
                                     const Comm& comm) {
  if (!store.reuse) return std::nullopt;
  const fs::path path = PlanEntryPath(store);
  const std::optional<std::string> payload =
      PayloadFromRankZero(store, path, "plan", components, comm);
  if (!payload) return std::nullopt;
  return PlanFromPayload(*payload, path);
}

void SavePlan(const ResumeStore& store, const Components& components, const PlanReport& plan) {
  WriteStoreEntry(PlanEntryPath(store), {"plan", components, PlanPayload(plan)});
}

Components BlockComponents(const RunConfig& config, const std::string& model_fingerprint,
                           const Components& plan_components) {
  return {{"config", CanonicalText(config, ConfigStage::kQuantize)},
          {"model", model_fingerprint},
          {"upstream", ComponentsFingerprint({"plan", plan_components, ""})},
          {"build", BuildKind()},
          {"cpu", CpuKind()}};
}

fs::path BlockEntryPath(const ResumeStore& store, int block) {
  return NumberedEntry(store, "blocks", "block-", 5, block);
}

std::optional<BlockResult> ResumeBlock(const ResumeStore& store, int block,
                                       const Components& components) {
  if (!store.reuse) return std::nullopt;
  const fs::path path = BlockEntryPath(store, block);
  std::optional<StoreEntry> entry = ValidEntry(store, path, "block", components);
  if (!entry) return std::nullopt;
  return BlockFromPayload(entry->payload, block, path);
}

void SaveBlock(const ResumeStore& store, int block, const Components& components,
               const BlockResult& result) {
  WriteStoreEntry(BlockEntryPath(store, block), {"block", components, BlockPayload(result, block)});
}

namespace {

constexpr uint32_t kSetPayloadVersion = 1, kScorePayloadVersion = 1;

std::string SetPayload(const std::vector<Sequence>& seqs) {
  Writer w;
  w.Put(kSetPayloadVersion);
  w.Put(static_cast<uint64_t>(seqs.size()));
  for (const Sequence& q : seqs) {
    w.PutVector(q.tokens);
    w.PutVector(q.targets);
  }
  return w.bytes;
}

std::vector<Sequence> SetFromPayload(const std::string& payload, const SampleSetConfig& set,
                                     const fs::path& path) {
  Reader in{payload, path};
  if (in.Get<uint32_t>() != kSetPayloadVersion) {
    throw FormatError("resume store: " + path.string() + ": not a version " +
                      std::to_string(kSetPayloadVersion) + " calibration set");
  }
  const uint64_t n = in.Get<uint64_t>();
  std::vector<Sequence> seqs;
  for (uint64_t i = 0; i < n; ++i) {
    Sequence q;
    q.tokens = in.GetVector<int32_t>();
    q.targets = in.GetVector<int32_t>();
    if (q.tokens.size() != static_cast<size_t>(set.seq_len) ||
        q.targets.size() != q.tokens.size()) {
      throw FormatError("resume store: " + path.string() + ": sequence " + std::to_string(i) +
                        " has " + std::to_string(q.tokens.size()) + " tokens, expected " +
                        std::to_string(set.seq_len));
    }
    seqs.push_back(std::move(q));
  }
  if (seqs.size() != static_cast<size_t>(set.n_sequences) || in.at != payload.size()) {
    throw FormatError("resume store: " + path.string() + ": " + std::to_string(seqs.size()) +
                      " sequences and " + std::to_string(payload.size() - in.at) +
                      " bytes after them, expected " + std::to_string(set.n_sequences) +
                      " and none");
  }
  return seqs;
}

fs::path SetEntryPath(const ResumeStore& store, const std::string& name) {
  return store.dir / "calibration" / (name + ".entry");
}

std::string PlanText(const std::optional<Plan>& plan) {
  if (!plan) return "full precision";
  std::string out = "plan";
  for (int c : *plan) out += " " + std::to_string(c);
  return out;
}

}  // namespace

std::string SampleSetDigest(const std::vector<Sequence>& seqs) {
  Sha256 h;
  for (const Sequence& q : seqs) {
    const uint64_t n = q.tokens.size();
    h.Update(&n, sizeof n);
    h.Update(q.tokens.data(), q.tokens.size() * sizeof(int32_t));
    h.Update(q.targets.data(), q.targets.size() * sizeof(int32_t));
  }
  return h.HexDigest();
}

std::vector<Sequence> StoredSampleSet(const ResumeStore* store, const RunConfig& config,
                                      const SampleSetConfig& set, const std::string& name,
                                      const std::string& model_fingerprint, Pipeline& pipeline,
                                      const ModelVocab& vocab, std::FILE* log) {
  const bool stored = store != nullptr && set.source == SampleSource::kGenerate;
  const std::string section = "calibration." + name;
  const std::array<std::string_view, 2> keys = {section, "model.tokenizer"};
  const Components components = stored
                                    ? Components{{"config", CanonicalTextOf(config, section, keys)},
                                                 {"model", model_fingerprint},
                                                 {"build", BuildKind()},
                                                 {"cpu", CpuKind()}}
                                    : Components{};
  const fs::path path = stored ? SetEntryPath(*store, name) : fs::path();
  if (stored && store->reuse) {
    if (const std::optional<std::string> payload =
            PayloadFromRankZero(*store, path, "calibration", components, pipeline.comm())) {
      Log(log, "resume: calibration set %s from %s\n", name.c_str(), path.c_str());
      return SetFromPayload(*payload, set, path);
    }
  }
  std::vector<Sequence> seqs = BuildSampleSet(set, name, pipeline, config.model.tokenizer, vocab);
  if (stored && pipeline.comm().rank() == 0) {
    WriteStoreEntry(path, {"calibration", components, SetPayload(seqs)});
  }
  return seqs;
}

Components FisherComponents(const RunConfig& config, const std::string& model_fingerprint,
                            const std::string& fisher_set_digest) {
  // fisher scores columns by F alone; fisher_impact also by the b_L error of the spec.
  std::vector<std::string_view> keys = {"quant.score"};
  if (config.quant.score == ChannelScore::kFisherImpact) {
    keys.insert(keys.end(), {"quant.bits_low", "quant.bits_high", "quant.group_size"});
  }
  return {{"config", CanonicalTextOf(config, "fisher", keys)},
          {"data", fisher_set_digest},
          {"model", model_fingerprint},
          {"build", BuildKind()},
          {"cpu", CpuKind()}};
}

fs::path FisherEntryPath(const ResumeStore& store, int block) {
  return NumberedEntry(store, "fisher", "block-", 5, block);
}

std::optional<ChannelScoreBlocks> ResumeScores(const ResumeStore& store,
                                               const Components& components,
                                               const Stage<float>& stage, const Comm& comm) {
  if (!store.reuse) return std::nullopt;
  ChannelScoreBlocks scores(stage.blocks.size());
  bool all_mine = true;
  const CaughtError error = CatchEntryError([&] {
    for (size_t b = 0; b < stage.blocks.size(); ++b) {
      const int block = stage.block_begin + static_cast<int>(b);
      const fs::path path = FisherEntryPath(store, block);
      const std::optional<StoreEntry> entry = ValidEntry(store, path, "fisher", components);
      if (!entry) {
        all_mine = false;
        break;
      }
      Reader in{entry->payload, path};
      if (in.Get<uint32_t>() != kScorePayloadVersion || in.Get<int32_t>() != block) {
        throw FormatError("resume store: " + path.string() + ": not a version " +
                          std::to_string(kScorePayloadVersion) + " entry of block " +
                          std::to_string(block) + "'s channel scores");
      }
      for (size_t k = 0; k < kNumLinears; ++k) {
        scores[b][k] = in.GetVector<double>();
        const int64_t n_in = stage.blocks[b].linear(kLinears[k]).cols();
        if (static_cast<int64_t>(scores[b][k].size()) != n_in) {
          throw FormatError("resume store: " + path.string() + ": layer " +
                            LayerName(LayerIndex(block, kLinears[k])) + " has " +
                            std::to_string(scores[b][k].size()) + " channel scores, the model " +
                            std::to_string(n_in) + " input channels");
        }
      }
      if (in.at != entry->payload.size()) {
        throw FormatError("resume store: " + path.string() + ": " +
                          std::to_string(entry->payload.size() - in.at) +
                          " bytes after the scores");
      }
    }
  });
  ThrowOnEveryRank(error, comm);
  if (!comm.AllTrue(all_mine)) return std::nullopt;
  return scores;
}

void SaveScores(const ResumeStore& store, const Components& components, const Stage<float>& stage,
                const ChannelScoreBlocks& scores) {
  for (size_t b = 0; b < stage.blocks.size(); ++b) {
    const int block = stage.block_begin + static_cast<int>(b);
    Writer w;
    w.Put(kScorePayloadVersion);
    w.Put(static_cast<int32_t>(block));
    for (const std::vector<double>& layer : scores[b]) w.PutVector(layer);
    WriteStoreEntry(FisherEntryPath(store, block), {"fisher", components, w.bytes});
  }
}

Components CostComponents(const RunConfig& config, const std::string& model_fingerprint,
                          const Components& fisher_components, const std::string& cost_set_digest,
                          const std::optional<Plan>& centre) {
  static constexpr std::array<std::string_view, 8> kKeys = {
      "quant.bits_low", "quant.bits_high", "quant.group_size",        "quant.ratios",
      "cost.mode",      "cost.pairs",      "cost.local_fit_switches", "cost.candidates"};
  return {{"config", CanonicalTextOf(config, "cost", kKeys)},
          {"centre", PlanText(centre)},
          {"data", cost_set_digest},
          {"upstream", ComponentsFingerprint({"fisher", fisher_components, ""})},
          {"model", model_fingerprint},
          {"build", BuildKind()},
          {"cpu", CpuKind()}};
}

fs::path CostEntryPath(const ResumeStore& store, int round) {
  return NumberedEntry(store, "cost", "round-", 2, round);
}

std::optional<CostTerms> ResumeCostTerms(const ResumeStore& store, int round,
                                         const Components& components, const Comm& comm) {
  if (!store.reuse) return std::nullopt;
  const fs::path path = CostEntryPath(store, round);
  const std::optional<std::string> payload =
      PayloadFromRankZero(store, path, "cost", components, comm);
  if (!payload) return std::nullopt;
  CostTerms t;
  try {
    const nlohmann::json j = nlohmann::json::parse(*payload);
    t.diag = j.at("diag").get<std::vector<std::vector<double>>>();
    for (const nlohmann::json& p : j.at("pairs")) {
      t.pairs.push_back(
          {p.at("l1").get<int>(), p.at("l2").get<int>(), p.at("cost").get<std::vector<double>>()});
    }
    t.centre_loss = j.at("centre_loss").get<double>();
    t.evaluations = j.at("evaluations").get<int>();
    t.seconds = j.at("seconds").get<double>();
  } catch (const nlohmann::json::exception& e) {
    throw FormatError("resume store: " + path.string() +
                      ": the cost terms do not read back: " + e.what());
  }
  return t;
}

void SaveCostTerms(const ResumeStore& store, int round, const Components& components,
                   const CostTerms& terms) {
  nlohmann::json j;
  j["diag"] = terms.diag;
  j["pairs"] = nlohmann::json::array();
  for (const PlanProblem::Pair& p : terms.pairs) {
    j["pairs"].push_back({{"l1", p.l1}, {"l2", p.l2}, {"cost", p.cost}});
  }
  j["centre_loss"] = terms.centre_loss;
  j["evaluations"] = terms.evaluations;
  j["seconds"] = terms.seconds;
  WriteStoreEntry(CostEntryPath(store, round), {"cost", components, j.dump()});
}

}  // namespace hiq
