#include "hiq/dist/pipeline.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <list>

#include "hiq/base/error.h"     // ConfigError, NumericalError, HIQ_CHECK
#include "hiq/base/finite.h"    // FirstNonFinite, ValueName
#include "hiq/base/watchdog.h"  // NoteProgress

namespace hiq {
namespace {

template <typename Func>
void ForEachStageTensor(Stage<float>& s, Func&& f) {
  f(s.embedding);
  for (auto& b : s.blocks)
    ForEachBlockTensor(b, [&](const BlockTensor&, Matrix<float>& m) { f(m); });
  f(s.final_norm);
  f(s.lm_head);
}

std::span<float> Span(Matrix<float>& m) { return {m.data(), static_cast<size_t>(m.size())}; }

// Concatenation of the inputs (or targets) of sequences [s0, s1).
std::vector<int32_t> Concat(const std::vector<Sequence>& seqs, size_t s0, size_t s1, bool targets) {
  std::vector<int32_t> out;
  for (size_t s = s0; s < s1; ++s) {
    const auto& v = targets ? seqs[s].targets : seqs[s].tokens;
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

// Non-blocking sends of matrices that this queue keeps alive until they complete. With a
// bound, Send first waits for the oldest ones, so a fast rank cannot run unboundedly ahead.
class SendQueue {
 public:
  explicit SendQueue(size_t max_in_flight = SIZE_MAX) : max_(max_in_flight) {}
  void Send(const Comm& comm, Matrix<float>&& m, int dest, int tag) {
    while (pending_.size() >= max_) pending_.pop_front();  // waits in the destructor
    pending_.emplace_back(std::move(m), SendRequest());
    pending_.back().second = comm.Isend(Span(pending_.back().first), dest, tag);
  }
  void WaitAll() { pending_.clear(); }

 private:
  size_t max_;
  std::list<std::pair<Matrix<float>, SendRequest>> pending_;
};

// MPI guarantees tags up to 32767; messages between two ranks do not overtake each other, so a
// wrapped tag still matches the right message.
int Tag(size_t index) { return static_cast<int>(index % 32768); }

// A job's weights per local block, null entries (and an empty `weights`) meaning the stage's own.
std::vector<const BlockWeights<float>*> LocalWeights(const JobWeights& weights, int job,
                                                     size_t n_local) {
  if (!weights) return std::vector<const BlockWeights<float>*>(n_local, nullptr);
  std::vector<const BlockWeights<float>*> w = weights(job);
  HIQ_CHECK(w.size() == n_local);
  return w;
}

const BlockWeights<float>& BlockOf(const Stage<float>& stage,
                                   const std::vector<const BlockWeights<float>*>& w, size_t b) {
  return w[b] ? *w[b] : stage.blocks[b];
}

// What one pass keeps fixed: the ranks, this rank's stage and weights, the sequences.
struct Pass {
  const Comm& comm;
  const Stage<float>& stage;
  const std::vector<const BlockWeights<float>*>& weights;
  const Rope<float>& rope;
  const std::vector<Sequence>& seqs;
  int64_t T;
};

// One micro-batch of a pass: the rows of sequences [s0, s1).
struct MicroBatch {
  size_t s0 = 0, s1 = 0;
  size_t first_block = 0;                 // local index of the first block to run
  const Matrix<float>* cached = nullptr;  // holds the first block's input rows, when given
  int recv_tag = 0, send_tag = 0;
  std::vector<BlockCache<float>>* caches = nullptr;  // per local block, for a backward pass
  BlockInputs* inputs_to = nullptr;                  // stores every block's input rows
};

// A block whose output overflowed is where a NaN starts; past it every later block, the loss and
// every gradient are NaN too, so the first one is named: block, sequence and position.
void CheckBlockOutput(const Pass& pass, const MicroBatch& mb, size_t b, const Matrix<float>& h) {
  const int64_t bad = FirstNonFinite(std::span<const float>(h.data(), h.size()));
  if (bad < 0) return;
  const int64_t row = bad / h.cols();  // row-major: rows are the sequences' positions
  const int block = pass.stage.block_begin + static_cast<int>(b);
  throw NumericalError("forward: the output of block " + std::to_string(block) + " (model.layers." +
                       std::to_string(block) + ") is " + ValueName(h.data()[bad]) +
                       " on sequence " + std::to_string(mb.s0 + static_cast<size_t>(row / pass.T)) +
                       ", position " + std::to_string(row % pass.T) +
                       ": an activation overflowed (weights far beyond the usual scale?)");
}

// The forward loop of Nll, ForwardJobs and ForwardBackward, written once: the micro-batch's input
// (its cached rows, else the embedding on the first rank, else a message from the previous rank)
// through this rank's blocks from `first_block`, then sent to the next rank (an empty matrix is
// returned) or, on the last rank, returned for the head.
Matrix<float> ForwardMicroBatch(const Pass& pass, const MicroBatch& mb, SendQueue& sends) {
  NoteProgress();
  const Comm& comm = pass.comm;
  const int64_t rows = static_cast<int64_t>(mb.s1 - mb.s0) * pass.T;
  const int64_t row0 = static_cast<int64_t>(mb.s0) * pass.T;
  Matrix<float> h, next;
  if (mb.cached != nullptr) {
    h = mb.cached->middleRows(row0, rows);
  } else if (comm.rank() == 0) {
    EmbeddingForward(pass.stage.embedding, Concat(pass.seqs, mb.s0, mb.s1, false), h);
  } else {
    h.resize(rows, pass.stage.config.hidden_size);
    comm.Recv(Span(h), comm.rank() - 1, mb.recv_tag);
  }
  for (size_t b = mb.first_block; b < pass.stage.blocks.size(); ++b) {
    if (mb.inputs_to && b < mb.inputs_to->per_block.size())
      mb.inputs_to->per_block[b].middleRows(row0, rows) = h;
    BlockForward<float>(pass.stage.config, BlockOf(pass.stage, pass.weights, b), pass.rope, pass.T,
                        h, next, mb.caches ? &(*mb.caches)[b] : nullptr);
    std::swap(h, next);
    CheckBlockOutput(pass, mb, b, h);
  }
  if (comm.rank() + 1 < comm.size()) {
    sends.Send(comm, std::move(h), comm.rank() + 1, mb.send_tag);
    return Matrix<float>();
  }
  return h;
}

int64_t CommonLength(const std::vector<Sequence>& seqs) {
  HIQ_CHECK(!seqs.empty());
  const size_t T = seqs[0].tokens.size();
  for (const auto& s : seqs) {
    if (s.tokens.size() != T || s.targets.size() != T) {
      throw Error("Pipeline: sequences must share one length (found " +
                  std::to_string(s.tokens.size()) + " and " + std::to_string(T) + ")");
    }
  }
  return static_cast<int64_t>(T);
}

}  // namespace

int Partition::Owner(int block) const {
  for (int r = 0; r < n_ranks(); ++r) {
    if (block < first_block[static_cast<size_t>(r) + 1]) return r;
  }
  HIQ_CHECK(false);
  return -1;
}

Partition PartitionBlocks(const LlamaConfig& config, int n_ranks) {
  const int L = static_cast<int>(config.num_hidden_layers);
  if (n_ranks < 1 || n_ranks > L) {
    throw ConfigError("PartitionBlocks: " + std::to_string(n_ranks) + " ranks for a model of " +
                      std::to_string(L) +
                      " blocks; every rank must own at least one block. HINT: run with at most " +
                      std::to_string(L) + " ranks");
  }
  const int64_t block = BlockParams(config);
  const int64_t embed = EmbeddingParams(config);
  const int64_t head = HeadParams(config);
  // load(j, i): blocks [j, i) on one rank, plus the ends' extras.
  auto load = [&](int j, int i, int r) {
    int64_t p = (i - j) * block;
    if (r == 0) p += embed;
    if (r == n_ranks - 1) p += head;
    return p;
  };
  constexpr int64_t kInf = std::numeric_limits<int64_t>::max();
  // best[r][i]: smallest max-load placing blocks [0, i) on ranks 0..r-1; cut[r][i] the split.
  std::vector<std::vector<int64_t>> best(n_ranks + 1, std::vector<int64_t>(L + 1, kInf));
  std::vector<std::vector<int>> cut(n_ranks + 1, std::vector<int>(L + 1, -1));
  best[0][0] = 0;
  for (int r = 1; r <= n_ranks; ++r) {
    for (int i = r; i <= L; ++i) {
      for (int j = r - 1; j < i; ++j) {
        if (best[r - 1][j] == kInf) continue;
        const int64_t m = std::max(best[r - 1][j], load(j, i, r - 1));
        if (m < best[r][i]) {
          best[r][i] = m;
          cut[r][i] = j;
        }
      }
    }
  }
  Partition p;
  p.first_block.assign(static_cast<size_t>(n_ranks) + 1, 0);
  p.first_block[static_cast<size_t>(n_ranks)] = L;
  for (int r = n_ranks, i = L; r > 0; --r) {
    i = cut[r][i];
    p.first_block[static_cast<size_t>(r) - 1] = i;
  }
  return p;
}

int64_t Sequence::n_predictions() const {
  return std::count_if(targets.begin(), targets.end(), [](int32_t t) { return t >= 0; });
}

Sequence WindowSequence(std::span<const int32_t> window) {
  Sequence s;
  s.tokens.assign(window.begin(), window.end());
  s.targets.assign(window.begin() + 1, window.end());
  s.targets.push_back(-1);
  return s;
}

Sequence NextTokenSequence(std::span<const int32_t> ids) {
  HIQ_CHECK(ids.size() >= 2);
  Sequence s;
  s.tokens.assign(ids.begin(), ids.end() - 1);
  s.targets.assign(ids.begin() + 1, ids.end());
  return s;
}

Pipeline::Pipeline(const Comm& comm, Stage<float> stage, Partition partition)
    : comm_(comm), partition_(std::move(partition)), stage_(std::move(stage)) {
  const size_t r = static_cast<size_t>(comm_.rank());
  HIQ_CHECK(partition_.n_ranks() == comm_.size());
  HIQ_CHECK(stage_.block_begin == partition_.first_block[r]);
  HIQ_CHECK(stage_.block_end == partition_.first_block[r + 1]);
}

const Rope<float>& Pipeline::RopeFor(int64_t seq_len) {
  if (rope_.cos.rows() < seq_len) rope_ = MakeRope<float>(stage_.config, seq_len);
  return rope_;
}

// The last rank's loss of one sequence, refused when it is not finite: from here on a NaN would
// only spread (into a plan solved on garbage, or `ppl=nan` with exit 0).
namespace {

double FiniteLoss(double nll, size_t sequence, const char* pass) {
  if (!std::isfinite(nll)) {
    throw NumericalError(std::string(pass) + ": the loss of sequence " + std::to_string(sequence) +
                         " is " + ValueName(nll) +
                         ": an activation overflowed (weights far beyond the usual scale?)");
  }
  return nll;
}

}  // namespace

std::vector<double> Pipeline::Nll(const std::vector<Sequence>& seqs, int micro_batch) {
  HIQ_CHECK(micro_batch >= 1);
  const int64_t T = CommonLength(seqs);
  const std::vector<const BlockWeights<float>*> own(stage_.blocks.size(), nullptr);
  const Pass pass{comm_, stage_, own, RopeFor(T), seqs, T};
  const size_t S = seqs.size(), mb_size = static_cast<size_t>(micro_batch);
  std::vector<double> nll(S, 0.0);
  SendQueue sends(2);
  for (size_t s0 = 0, mb = 0; s0 < S; s0 += mb_size, ++mb) {
    const size_t s1 = std::min(S, s0 + mb_size);
    const MicroBatch batch{.s0 = s0, .s1 = s1, .recv_tag = Tag(mb), .send_tag = Tag(mb)};
    const Matrix<float> h = ForwardMicroBatch(pass, batch, sends);
    if (!is_last()) continue;
    for (size_t s = s0; s < s1; ++s) {
      const Matrix<float> hs = h.middleRows(static_cast<int64_t>(s - s0) * T, T);
      nll[s] = FiniteLoss(
          HeadForwardBackward<float>(stage_, hs, seqs[s].targets, 1.0, nullptr, nullptr, nullptr),
          s, "forward");
    }
  }
  sends.WaitAll();
  comm_.Broadcast(std::span<double>(nll), comm_.size() - 1);
  return nll;
}

std::vector<double> Pipeline::ForwardJobs(const std::vector<Sequence>& seqs,
                                          const std::vector<int>& start_block,
                                          const JobWeights& weights, const BlockInputs* inputs_from,
                                          BlockInputs* inputs_to, int micro_batch) {
  HIQ_CHECK(micro_batch >= 1);
  HIQ_CHECK(inputs_to == nullptr || start_block.size() == 1);
  const int64_t T = CommonLength(seqs), C = stage_.config.hidden_size;
  const Rope<float>& rope = RopeFor(T);
  const size_t S = seqs.size(), mb_size = static_cast<size_t>(micro_batch);
  const int begin = stage_.block_begin, end = stage_.block_end;
  const size_t n_local = stage_.blocks.size();
  if (inputs_to) {
    inputs_to->per_block.assign(inputs_to->first_only ? std::min<size_t>(n_local, 1) : n_local,
                                Matrix<float>(static_cast<int64_t>(S) * T, C));
  }
  std::vector<double> nll(start_block.size(), 0.0);
  SendQueue sends(2);
  size_t message = 0;  // messages to the next rank, in order (tags only need to be distinct)
  size_t received = 0;
  for (size_t j = 0; j < start_block.size(); ++j) {
    const int start = start_block[j];
    if (start >= end) continue;  // the job starts after this rank's slice
    const bool starts_here = start >= begin;
    const std::vector<const BlockWeights<float>*> w =
        LocalWeights(weights, static_cast<int>(j), n_local);
    const Pass pass{comm_, stage_, w, rope, seqs, T};
    MicroBatch batch{.first_block = starts_here ? static_cast<size_t>(start - begin) : 0,
                     .inputs_to = inputs_to};
    if (starts_here && inputs_from != nullptr) {
      HIQ_CHECK(inputs_from->per_block.size() == n_local);
      batch.cached = &inputs_from->per_block[batch.first_block];
    } else if (starts_here) {
      HIQ_CHECK(start == 0 && is_first());  // the embedding is the input
    }
    for (size_t s0 = 0; s0 < S; s0 += mb_size) {
      batch.s0 = s0;
      batch.s1 = std::min(S, s0 + mb_size);
      if (!starts_here) batch.recv_tag = Tag(received++);
      if (!is_last()) batch.send_tag = Tag(message++);
      const Matrix<float> h = ForwardMicroBatch(pass, batch, sends);
      if (!is_last()) continue;
      for (size_t s = batch.s0; s < batch.s1; ++s) {
        const Matrix<float> hs = h.middleRows(static_cast<int64_t>(s - batch.s0) * T, T);
        nll[j] += FiniteLoss(
            HeadForwardBackward<float>(stage_, hs, seqs[s].targets, 1.0, nullptr, nullptr, nullptr),
            s, "forward");
      }
    }
  }
  sends.WaitAll();
  comm_.Broadcast(std::span<double>(nll), comm_.size() - 1);
  return nll;
}

Matrix<float> Pipeline::DecodeStep(const std::vector<int32_t>& tokens, int64_t pos,
                                   std::vector<KvCache<float>>& caches) {
  const int64_t B = static_cast<int64_t>(tokens.size()), C = stage_.config.hidden_size;
  const Rope<float>& rope = RopeFor(pos + 1);
  caches.resize(stage_.blocks.size());
  Matrix<float> h, next;
  if (is_first()) {
    EmbeddingForward(stage_.embedding, tokens, h);
  } else {
    h.resize(B, C);
    comm_.Recv(Span(h), comm_.rank() - 1, Tag(static_cast<size_t>(pos)));
  }
  for (size_t b = 0; b < stage_.blocks.size(); ++b) {
    BlockDecodeStep(stage_.config, stage_.blocks[b], rope, pos, h, next, caches[b]);
    std::swap(h, next);
  }
  Matrix<float> logits;
  if (!is_last()) {
    comm_.Send(Span(h), comm_.rank() + 1, Tag(static_cast<size_t>(pos)));
    return logits;
  }
  HeadForwardBackward<float>(stage_, h, std::vector<int32_t>(static_cast<size_t>(B), -1), 1.0,
                             nullptr, nullptr, &logits);
  return logits;
}

std::vector<double> Pipeline::ForwardBackward(
    const std::vector<Sequence>& seqs, int in_flight_max, const JobWeights& weights,
    const std::function<void(int, const Stage<float>&)>& on_gradient,
    const std::function<void(int, size_t, const Matrix<float>&)>& on_output_grad) {
  HIQ_CHECK(in_flight_max >= 1);
  const int64_t T = CommonLength(seqs), C = stage_.config.hidden_size;
  const Rope<float>& rope = RopeFor(T);
  const size_t S = seqs.size(), G = static_cast<size_t>(in_flight_max);
  const size_t n_blocks = stage_.blocks.size();
  const std::vector<const BlockWeights<float>*> w = LocalWeights(weights, 0, n_blocks);
  const Pass pass{comm_, stage_, w, rope, seqs, T};
  std::vector<double> loss(S, 0.0);
  Stage<float> grad = ZeroGradients(stage_);
  for (size_t g0 = 0; g0 < S; g0 += G) {
    const size_t g1 = std::min(S, g0 + G);
    std::vector<std::vector<BlockCache<float>>> caches(g1 - g0,
                                                       std::vector<BlockCache<float>>(n_blocks));
    std::vector<Matrix<float>> outputs(g1 - g0);
    SendQueue sends;  // unbounded: the whole group is sent before any backward arrives
    // Forward every sequence of the group; the next rank starts as soon as one arrives.
    for (size_t s = g0; s < g1; ++s) {
      const MicroBatch one{.s0 = s,
                           .s1 = s + 1,
                           .recv_tag = Tag(2 * s),
                           .send_tag = Tag(2 * s),
                           .caches = &caches[s - g0]};
      outputs[s - g0] = ForwardMicroBatch(pass, one, sends);
    }
    // Backward in sequence order, so per-sequence statistics accumulate in sample order.
    for (size_t s = g0; s < g1; ++s) {
      ForEachStageTensor(grad, [](Matrix<float>& m) { m.setZero(); });
      Matrix<float> dh, dx;
      if (is_last()) {
        const double count = static_cast<double>(seqs[s].n_predictions());
        const double nll = HeadForwardBackward<float>(stage_, outputs[s - g0], seqs[s].targets,
                                                      1.0 / count, &dh, &grad, nullptr);
        loss[s] = FiniteLoss(nll, s, "forward-backward") / count;
      } else {
        dh.resize(T, C);
        comm_.Recv(Span(dh), comm_.rank() + 1, Tag(2 * s + 1));
      }
      for (size_t b = n_blocks; b-- > 0;) {
        if (on_output_grad) on_output_grad(static_cast<int>(s), b, dh);
        NoteProgress();
        BlockBackward(stage_.config, BlockOf(stage_, w, b), rope, T, caches[s - g0][b], dh, dx,
                      grad.blocks[b]);
        std::swap(dh, dx);
      }
      caches[s - g0].clear();
      if (is_first()) {
        EmbeddingBackward(dh, seqs[s].tokens, grad.embedding);
      } else {
        sends.Send(comm_, std::move(dh), comm_.rank() - 1, Tag(2 * s + 1));
      }
      on_gradient(static_cast<int>(s), grad);
    }
    sends.WaitAll();
  }
  comm_.Broadcast(std::span<double>(loss), comm_.size() - 1);
  return loss;
}

}  // namespace hiq
