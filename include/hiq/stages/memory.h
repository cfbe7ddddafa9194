// hiq/stages/memory.h - what a rank's memory should be, from the shapes alone, next to what the
// kernel measured: the per-rank memory line of `hiq quantize` and the memory test
// (docs/OPERATIONS.md, "Memory").
//
// A rank holds its slice's weights in float32 for the whole job; on top of them each stage holds
// one working set, freed when the stage ends, so the expected peak is the weights plus the
// largest of them:
//   fisher          F accumulators (one float per linear weight of the slice) + one gradient of
//                   the whole slice + the activation caches of the two sequences in flight
//   cost            the centre plan's dequantized blocks (a copy of the slice's blocks) + one
//                   scratch block + one sequence's activation caches per block; with
//                   cost.candidates gptq also every local layer's Hessian and every candidate's
//                   GPTQ layer in stored form (GptqCandidateBytes)
//   reconstruction  two blocks' inputs (S x T x C floats each: the block's, and its target,
//                   which is the next block's input) + the trained block's fake-quantized
//                   weights and their gradient + a step's activations, whatever the slice
// plus `allocator`: the freed heap glibc may keep by design (hiq/model/llama.h
// KeepActivationMemory: trim threshold and top pad), which the resident set counts.
// Plain functions; no state.
#pragma once

#include <cstdint>
#include <string>

#include "hiq/config/config.h"  // RunConfig
#include "hiq/model/llama.h"    // Stage

namespace hiq {

struct MemoryAccount {
  int64_t weights = 0;  // bytes
  int64_t fisher = 0, cost = 0, reconstruction = 0, allocator = 0;
  // The largest stage working set plus the allocator's retention: "its caches".
  int64_t Caches() const;
};

// The account of `stage` (this rank's slice) under `config`'s calibration sets.
MemoryAccount AccountMemory(const Stage<float>& stage, const RunConfig& config);

// What CostModel::UseGptqCandidates and the cost estimator's requests make a rank hold for
// `n_blocks` local blocks: per linear layer an (n_in, n_in) double Hessian, and per candidate
// ratio the layer's QuantizedLayer (its codes a byte a weight, group parameters, high columns).
// Equals CostModel::GptqBytes() once every local candidate has been asked for.
int64_t GptqCandidateBytes(const LlamaConfig& config, int64_t n_blocks, const QuantSection& quant);

// Activation-cache bytes of one block's forward over `tokens` tokens (BlockCache, float32), with
// `seq_len` tokens per sequence for the attention probabilities.
int64_t BlockCacheBytes(const LlamaConfig& config, int64_t tokens, int64_t seq_len);

// "[rank r] memory: peak 5.12 GiB (2.70 GiB by the end of the plan, 2.31 GiB in the blocks) =
// 0.87 x (weights 1.51 GiB + caches 4.37 GiB: fisher 3.03, cost 2.27, reconstruction 1.52,
// allocator 1.06)"; blocks_peak_bytes < 0 (not measured apart) leaves out "in the blocks".
std::string MemoryLine(int rank, int64_t peak_bytes, int64_t plan_peak_bytes,
                       int64_t blocks_peak_bytes, const MemoryAccount& account);

}  // namespace hiq
