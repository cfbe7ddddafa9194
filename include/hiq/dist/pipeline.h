// hiq/dist/pipeline.h - the model strung across MPI ranks: who owns which blocks, and how hidden
// states flow forward and their gradients back.
//
// Ranks own contiguous slices of transformer blocks, balanced by parameter count; the first
// rank also owns the embedding and the last the final norm and head. Each rank reads only its
// own tensors. Hidden states (N, C) travel rank to rank by point-to-point messages; several
// micro-batches are in flight so neighbouring ranks overlap.
//
// Rank-count invariance: every block runs the same kernels on the same rows whatever P is, the
// micro-batch size is a parameter (never derived from P), and per-sequence results are produced
// by the last rank in sequence order and broadcast. So results are bit-identical for P = 1..4.
//
// Errors: more ranks than blocks is a ConfigError; MPI failures are MpiError. A throwing rank
// is taken down by main()'s MPI_Abort, so the others never wait forever.
#pragma once

#include <functional>
#include <vector>

#include "hiq/dist/mpi.h"     // Comm
#include "hiq/model/llama.h"  // Stage, Matrix, Rope, LlamaConfig

namespace hiq {

// first_block[r] .. first_block[r+1]-1 are rank r's blocks.
struct Partition {
  std::vector<int> first_block;  // size P + 1, first_block[0] = 0, last = n_layer
  int n_ranks() const { return static_cast<int>(first_block.size()) - 1; }
  int Owner(int block) const;
};

// Contiguous slices minimising the largest per-rank parameter count (embedding counted on the
// first rank, final norm + head on the last); ties go to the earliest split. Deterministic.
Partition PartitionBlocks(const LlamaConfig& config, int n_ranks);

// One sequence as the model sees it: T input tokens and the T next tokens (-1 = no prediction).
struct Sequence {
  std::vector<int32_t> tokens, targets;
  int64_t n_predictions() const;
};
// GPTQ perplexity window: inputs = window, targets = window shifted left, last target none.
Sequence WindowSequence(std::span<const int32_t> window);
// T+1 ids -> T inputs and T targets (every position predicts), as in training and the oracle.
Sequence NextTokenSequence(std::span<const int32_t> ids);

// Per local block, the (S*T, C) input rows of every sequence (in sequence order) under some
// model; index 0 is the rank's first block. With first_only (set before the pass that fills
// it), only the first block's rows are kept: a caller that runs the later blocks itself
// (BlockForwardRows at the pass's micro-batch gives the same rows) holds one block's rows, not
// the slice's.
struct BlockInputs {
  std::vector<Matrix<float>> per_block;
  bool first_only = false;
};

// The weights a job runs with, per local block (index 0 = the rank's first block); a null entry,
// or an empty JobWeights, means the stage's own weights. Called once per job on every rank that
// takes part in it. The weights must stay alive until the call that asked for them returns. The
// passes never change the stage, so a pass at other weights needs no swapping in and out.
using JobWeights = std::function<std::vector<const BlockWeights<float>*>(int job)>;

class Pipeline {
 public:
  // `stage` is this rank's slice of `partition` (LoadPipeline in hiq/io/checkpoint.h reads it
  // from a checkpoint; tests build one).
  Pipeline(const Comm& comm, Stage<float> stage, Partition partition);

  const Comm& comm() const { return comm_; }
  const Partition& partition() const { return partition_; }
  const Stage<float>& stage() const { return stage_; }
  // For a lasting change of the weights (`hiq eval --plan` applies a plan); a pass at other
  // weights takes JobWeights instead.
  Stage<float>& mutable_stage() { return stage_; }
  bool is_first() const { return comm_.rank() == 0; }
  bool is_last() const { return comm_.rank() == comm_.size() - 1; }

  // Forward only. Sequences must share one length; `micro_batch` sequences travel per message.
  // Returns the summed NLL of every sequence, in order, on every rank.
  std::vector<double> Nll(const std::vector<Sequence>& sequences, int micro_batch);

  // Forward jobs: job j runs every sequence from the input of block start_block[j] to the
  // loss, with this rank's blocks taking their weights from `weights(j)`. The owner of the start
  // block reads that block's input from `inputs_from` (the embedding output when it is null and
  // the job starts at block 0); ranks before it take no part. When `inputs_to` is given (one job
  // only), every rank stores its blocks' inputs there (its first block's only, if first_only). Jobs
  // flow through the ranks in order, so a rank starts job j+1 while the next one runs job j.
  // Returns the summed NLL of every job over all sequences (sequence order, double), on every rank.
  std::vector<double> ForwardJobs(const std::vector<Sequence>& sequences,
                                  const std::vector<int>& start_block, const JobWeights& weights,
                                  const BlockInputs* inputs_from, BlockInputs* inputs_to,
                                  int micro_batch);

  // Incremental decoding: one token per sequence at position `pos`, every local block keeping
  // its keys and values in `caches` (one per local block, empty at pos 0). Returns the logits
  // (B, V) on the last rank (empty elsewhere).
  Matrix<float> DecodeStep(const std::vector<int32_t>& tokens, int64_t pos,
                           std::vector<KvCache<float>>& caches);

  // Forward + backward of L_s = mean NLL of sequence s, one sequence per micro-batch with up to
  // `in_flight` sequences in the pipe, the blocks running forward and backward at `weights(0)`
  // (the pass is job 0), so that gradients can be taken at another point, e.g. a quantized
  // centre. For every s in order, after its backward has passed this rank, on_gradient(s, grad)
  // is called with this rank's dL_s/dW at those weights (zeroed per sequence; lm_head's gradient
  // is kept apart from the embedding's even when tied).
  // When `on_output_grad` is given it is called, for every sequence and local block b (index
  // 0 = the rank's first block), with dL_s/d(output of block b), before that block's backward.
  // Returns every L_s on every rank.
  std::vector<double> ForwardBackward(
      const std::vector<Sequence>& sequences, int in_flight, const JobWeights& weights,
      const std::function<void(int, const Stage<float>&)>& on_gradient,
      const std::function<void(int, size_t, const Matrix<float>&)>& on_output_grad = nullptr);

 private:
  const Rope<float>& RopeFor(int64_t seq_len);

  Comm comm_;
  Partition partition_;
  Stage<float> stage_;
  Rope<float> rope_;
};

}  // namespace hiq
