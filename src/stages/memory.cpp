// The expected memory of a rank (see hiq/stages/memory.h).
#include "hiq/stages/memory.h"

#include <algorithm>
#include <cstdio>

#include "hiq/model/tensors.h"  // BlockParams, EmbeddingParams, HeadParams, LinearShape
#include "hiq/quant/quant.h"    // GroupCount, HighCount, QuantizedLayer

namespace hiq {
namespace {

constexpr int64_t kFloat = 4;
// KeepActivationMemory's M_TRIM_THRESHOLD and M_TOP_PAD: glibc returns freed heap only beyond
// them, so up to this much freed memory stays resident.
constexpr int64_t kAllocatorRetention = (int64_t{1} << 30) + (int64_t{64} << 20);

double GiB(int64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0); }

}  // namespace

int64_t MemoryAccount::Caches() const {
  return std::max({fisher, cost, reconstruction}) + allocator;
}

int64_t GptqCandidateBytes(const LlamaConfig& c, int64_t n_blocks, const QuantSection& quant) {
  const int64_t params = static_cast<int64_t>(sizeof(GroupParams));
  int64_t per_block = 0;
  for (Linear kind : kLinears) {
    const auto [n_out, n_in] = LinearShape(c, kind);
    per_block += static_cast<int64_t>(sizeof(double)) * n_in * n_in;
    for (double ratio : quant.ratios) {
      const int64_t n_high = HighCount(ratio, n_in), n_low = n_in - n_high;
      per_block += n_out * n_low + n_out * GroupCount(n_low, quant.group_size) * params +
                   static_cast<int64_t>(sizeof(int32_t)) * n_high;
      if (n_high == 0) continue;
      per_block += quant.bits_high == 16 ? static_cast<int64_t>(sizeof(float)) * n_out * n_high
                                         : n_out * n_high + n_out * params;
    }
  }
  return n_blocks * per_block;
}

int64_t BlockCacheBytes(const LlamaConfig& c, int64_t tokens, int64_t seq_len) {
  const int64_t C = c.hidden_size, F = c.intermediate_size;
  const int64_t NH = c.num_attention_heads, NKV = c.num_key_value_heads, D = C / NH;
  // x, xn1, x_mid, xn2 (C each), y (NH D), q (NH D), k and v (NKV D each), gate, up, act (F
  // each), the two rstd, and the causal softmax probabilities of every head.
  const int64_t per_token = 4 * C + 2 * NH * D + 2 * NKV * D + 3 * F + 2;
  const int64_t sequences = (tokens + seq_len - 1) / seq_len;
  return kFloat * (per_token * tokens + sequences * NH * seq_len * seq_len);
}

MemoryAccount AccountMemory(const Stage<float>& stage, const RunConfig& config) {
  const LlamaConfig& c = stage.config;
  const int64_t n_local = static_cast<int64_t>(stage.blocks.size());
  const int64_t block = kFloat * BlockParams(c);
  int64_t linear = 0;  // one block's linear weights
  for (Linear kind : kLinears) {
    const auto [n_out, n_in] = LinearShape(c, kind);
    linear += kFloat * n_out * n_in;
  }
  MemoryAccount a;
  a.weights = n_local * block + (stage.has_embedding ? kFloat * EmbeddingParams(c) : 0) +
              (stage.has_head ? kFloat * HeadParams(c) : 0);
  const SampleSetConfig& fisher = config.calibration.fisher;
  a.fisher = n_local * linear + a.weights +
             2 * n_local * BlockCacheBytes(c, fisher.seq_len, fisher.seq_len);
  const SampleSetConfig& cost = config.calibration.cost;
  a.cost = (n_local + 1) * block + n_local * BlockCacheBytes(c, cost.seq_len, cost.seq_len);
  if (config.cost.candidates == CostCandidates::kGptq) {
    a.cost += GptqCandidateBytes(c, n_local, config.quant);
  }
  const SampleSetConfig& recon = config.calibration.reconstruction;
  const int64_t rows = static_cast<int64_t>(recon.n_sequences) * recon.seq_len;
  const int64_t step_tokens = config.quantize.batch * recon.seq_len;
  a.reconstruction = 2 * kFloat * rows * c.hidden_size + 2 * block +
                     BlockCacheBytes(c, step_tokens, recon.seq_len);
  a.allocator = kAllocatorRetention;
  return a;
}

std::string MemoryLine(int rank, int64_t peak_bytes, int64_t plan_peak_bytes,
                       int64_t blocks_peak_bytes, const MemoryAccount& a) {
  char blocks[64] = "";
  if (blocks_peak_bytes >= 0) {
    std::snprintf(blocks, sizeof blocks, ", %.2f GiB in the blocks", GiB(blocks_peak_bytes));
  }
  char buf[384];
  std::snprintf(buf, sizeof buf,
                "[rank %d] memory: peak %.2f GiB (%.2f GiB by the end of the plan%s) = %.2f x "
                "(weights %.2f GiB + caches %.2f GiB: fisher %.2f, cost %.2f, reconstruction "
                "%.2f, allocator %.2f)",
                rank, GiB(peak_bytes), GiB(plan_peak_bytes), blocks,
                static_cast<double>(peak_bytes) / static_cast<double>(a.weights + a.Caches()),
                GiB(a.weights), GiB(a.Caches()), GiB(a.fisher), GiB(a.cost), GiB(a.reconstruction),
                GiB(a.allocator));
  return buf;
}

}  // namespace hiq
