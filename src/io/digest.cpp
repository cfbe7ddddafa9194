// The digest and the description of a quantized output (see hiq/io/digest.h).
#include "hiq/io/digest.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <map>

#include "hiq/base/error.h"      // FormatError
#include "hiq/base/fp16.h"       // FloatToF16
#include "hiq/base/sha256.h"     // Sha256
#include "hiq/io/safetensors.h"  // DTypeName

namespace hiq {
namespace {

// The serialisation is little-endian; on this host that is the memory order.
static_assert(std::endian::native == std::endian::little, "hiq assumes a little-endian host");

void AddInt64(Sha256& h, int64_t v) { h.Update(&v, sizeof v); }

template <typename T>
void AddArray(Sha256& h, const std::vector<T>& values) {
  h.Update(values.data(), values.size() * sizeof(T));
}

// Scales and FP16 weights are FP16 values (ValidateQuantizedLayer): their bit patterns are exact.
std::vector<uint16_t> HalfPatterns(const std::vector<float>& values) {
  std::vector<uint16_t> bits(values.size());
  for (size_t i = 0; i < values.size(); ++i) bits[i] = FloatToF16(values[i]);
  return bits;
}

void AddParams(Sha256& h, const std::vector<GroupParams>& params) {
  std::vector<float> scales(params.size());
  std::vector<uint8_t> zeros(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    scales[i] = params[i].scale;
    zeros[i] = static_cast<uint8_t>(params[i].zero);  // < 2^bits <= 256
  }
  AddArray(h, HalfPatterns(scales));
  AddArray(h, zeros);
}

std::string Fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string OrUnknown(const std::string& s) { return s.empty() ? "(unknown)" : s; }

}  // namespace

std::string LayerDigest(const QuantizedLayer& q) {
  Sha256 h;
  h.Update("hiq-layer-digest 1\n");
  for (const int64_t v : {q.n_out, q.n_in, int64_t{q.spec.bits_low}, int64_t{q.spec.bits_high},
                          q.spec.group_size, q.n_high()}) {
    AddInt64(h, v);
  }
  AddArray(h, std::vector<uint32_t>(q.high_cols.begin(), q.high_cols.end()));
  AddArray(h, q.low_codes);
  AddParams(h, q.low_params);
  if (q.n_high() > 0 && q.spec.high_fp16()) {
    AddArray(h, HalfPatterns(q.high_fp16));
  } else if (q.n_high() > 0) {
    AddArray(h, q.high_codes);
    AddParams(h, q.high_params);
  }
  return h.HexDigest();
}

std::string TensorDigest(const StoredTensor& t) {
  Sha256 h;
  h.Update("hiq-tensor-digest 1\n");
  h.Update(t.name + "\n" + DTypeName(t.dtype) + "\n");
  AddInt64(h, static_cast<int64_t>(t.shape.size()));
  for (const int64_t d : t.shape) AddInt64(h, d);
  h.Update(t.data.data(), t.data.size());
  return h.HexDigest();
}

std::string ModelDigest(std::span<const DigestEntry> entries) {
  std::string text;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (i > 0 && !(entries[i - 1].name < entries[i].name)) {
      throw FormatError("ModelDigest: '" + entries[i].name + "' follows '" + entries[i - 1].name +
                        "', expected names sorted and unique");
    }
    text += entries[i].sha256 + "  " + entries[i].name + "\n";
  }
  return Sha256Hex(text);
}

std::string OutputDigest::Text() const {
  std::string text;
  for (const DigestEntry& e : entries) text += e.sha256 + "  " + e.name + "\n";
  return text + model + "  model\n";
}

nlohmann::json OutputDigest::Json() const {
  nlohmann::json layers = nlohmann::json::object(), tensors = nlohmann::json::object();
  for (const DigestEntry& e : entries) {
    (e.layer ? layers : tensors)[e.name] = e.sha256;
  }
  return {{"layers", layers}, {"tensors", tensors}, {"model", model}};
}

OutputDigest DigestOutput(const std::filesystem::path& out_dir) {
  const ModelFileInfo info = ReadModelFile(out_dir / "model.h5");
  for (int r = 0; r < info.n_ranks; ++r) VerifyShard(out_dir, info, r);
  const ShardReader reader(out_dir / "model.h5");
  OutputDigest digest;
  for (const std::string& name : reader.LayerNames()) {
    digest.entries.push_back({name, LayerDigest(reader.ReadLayer(name)), true});
  }
  for (const std::string& name : reader.TensorNames()) {
    if (reader.HasLayer(name)) {
      throw FormatError("DigestOutput: " + reader.path().string() + ": '" + name +
                        "' is both a layer and a tensor");
    }
    digest.entries.push_back({name, TensorDigest(reader.ReadTensor(name)), false});
  }
  std::sort(digest.entries.begin(), digest.entries.end(),
            [](const DigestEntry& a, const DigestEntry& b) { return a.name < b.name; });
  digest.model = ModelDigest(digest.entries);
  return digest;
}

namespace {

// Layers grouped by their ratio: how many, their high-impact columns and stored bits.
struct RatioRow {
  int64_t layers = 0, n_high = 0, bits = 0;
};

std::map<double, RatioRow> ByRatio(const std::vector<PlanEntry>& plan) {
  std::map<double, RatioRow> rows;
  for (const PlanEntry& e : plan) {
    RatioRow& row = rows[e.ratio];
    ++row.layers;
    row.n_high += e.n_high;
    row.bits += e.bits;
  }
  return rows;
}

double MiB(int64_t bytes) { return static_cast<double>(bytes) / 1048576.0; }

}  // namespace

std::string DescribeOutput(const std::filesystem::path& out_dir, const ModelFileInfo& info) {
  std::string s = "quantized model " + out_dir.string() + " (hiq-model, " +
                  std::to_string(info.n_ranks) + " shards)\n";
  const bool recorded = !info.ranks.empty();
  s += "  hiq              " + (recorded ? info.hiq_version : std::string("(not recorded)")) +
       ", git " + OrUnknown(info.git_revision) + "\n";
  s += "  run config hash  " + info.run_config_hash + "\n";
  s += "  model            " + (recorded ? info.model_fingerprint : std::string("(not recorded)")) +
       "\n";
  s += "  avg_bits         " + Fixed(info.avg_bits, 6) + " (budget " +
       Fixed(info.budget_avg_bits, 6) + ")\n";
  double peak_mib = 0;
  if (recorded) {
    s += "  stage seconds    plan " + Fixed(info.seconds.plan, 1) + ", inputs " +
         Fixed(info.seconds.inputs, 1) + ", blocks " + Fixed(info.seconds.blocks, 1) + ", write " +
         Fixed(info.seconds.write, 1) + "\n";
    s += "  rank  host                  threads  blas_core    peak_rss_mib  blocks_s  "
         "sent_kib plan/inputs/blocks/write  cpu_model\n";
    for (size_t r = 0; r < info.ranks.size(); ++r) {
      const RankProvenance& p = info.ranks[r];
      char sent[128] = "(not recorded)";
      if (p.bytes_sent) {
        const auto kib = [](int64_t b) { return static_cast<double>(b) / 1024.0; };
        std::snprintf(sent, sizeof sent, "%.1f/%.1f/%.1f/%.1f", kib(p.bytes_sent->plan),
                      kib(p.bytes_sent->inputs), kib(p.bytes_sent->blocks),
                      kib(p.bytes_sent->write));
      }
      char line[640];
      std::snprintf(line, sizeof line, "  %-4zu  %-20s  %7d  %-11s  %12.1f  %8.1f  %-34s  %s\n", r,
                    OrUnknown(p.host).c_str(), p.threads, OrUnknown(p.blas_core).c_str(),
                    MiB(p.peak_rss_bytes), p.blocks_seconds, sent, OrUnknown(p.cpu_model).c_str());
      s += line;
      peak_mib = std::max(peak_mib, MiB(p.peak_rss_bytes));
    }
  } else {
    s += "  provenance       not recorded (written by a hiq before 2026-12-02)\n";
  }
  for (size_t r = 0; r < info.shard_sha256.size(); ++r) {
    s += "  shard " + std::to_string(r) + "          " + info.shard_sha256[r] + "  " +
         ShardRelativePath(static_cast<int>(r), info.n_ranks) + "\n";
  }
  s += "plan: " + std::to_string(info.plan.size()) + " layers\n";
  s += "  ratio     layers   n_high         bits\n";
  for (const auto& [ratio, row] : ByRatio(info.plan)) {
    char line[128];
    std::snprintf(line, sizeof line, "  %-8.4f  %6lld  %7lld  %11lld\n", ratio,
                  static_cast<long long>(row.layers), static_cast<long long>(row.n_high),
                  static_cast<long long>(row.bits));
    s += line;
  }
  s += "run config:\n";
  size_t begin = 0;
  while (begin < info.run_config.size()) {
    const size_t end = std::min(info.run_config.find('\n', begin), info.run_config.size());
    s += "  " + info.run_config.substr(begin, end - begin) + "\n";
    begin = end + 1;
  }
  char last[512];
  std::snprintf(last, sizeof last,
                "format=hiq-model ranks=%d layers=%zu avg_bits=%.6f budget=%.6f hiq_version=%s "
                "git_revision=%s max_peak_rss_mib=%.1f",
                info.n_ranks, info.plan.size(), info.avg_bits, info.budget_avg_bits,
                recorded ? info.hiq_version.c_str() : "unknown",
                OrUnknown(info.git_revision).c_str(), peak_mib);
  return s + last + "\n";
}

nlohmann::json DescribeOutputJson(const std::filesystem::path& out_dir, const ModelFileInfo& info) {
  nlohmann::json plan = nlohmann::json::array();
  for (const PlanEntry& e : info.plan) {
    plan.push_back({{"name", e.name}, {"ratio", e.ratio}, {"n_high", e.n_high}, {"bits", e.bits}});
  }
  nlohmann::json j = {{"output", out_dir.string()},
                      {"format", "hiq-model"},
                      {"n_ranks", info.n_ranks},
                      {"git_revision", info.git_revision},
                      {"run_config", info.run_config},
                      {"run_config_hash", info.run_config_hash},
                      {"model_config", info.model_config},
                      {"avg_bits", info.avg_bits},
                      {"budget_avg_bits", info.budget_avg_bits},
                      {"shard_sha256", info.shard_sha256},
                      {"plan", plan},
                      {"provenance", ProvenanceJson(info)}};
  return j;
}

}  // namespace hiq
