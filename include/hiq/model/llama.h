// hiq/model/llama.h - the LLaMA model math: forward and backward of every layer, side by side.
//
// Everything a later stage runs (calibration, loss-based cost terms, block reconstruction,
// perplexity) goes through these functions, so they are checked against an independent PyTorch
// oracle (tests/test_llama.cpp) and by finite differences in double.
//
// Conventions (llm.c style shape letters):
//   C = hidden_size, F = intermediate_size, NH = query heads, NKV = key/value heads,
//   D = head_dim = C / NH, V = vocab_size, T = tokens per sequence, B = sequences in a batch,
//   N = B * T rows. Activations are row-major (N, C): row n is token n % T of sequence n / T.
//   Weights are stored as in Hugging Face: a linear layer W is (out, in), y = x W^T.
// Compute is float32 whatever the stored dtype; the same kernels run in double for gradient
// checks (templates exist only for that). Large products go to OpenBLAS through Eigen.
// No function here knows about MPI: the pipeline (hiq/dist/pipeline.h) strings blocks across ranks.
#pragma once

#include <Eigen/Core>
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "hiq/model/tensors.h"  // LlamaConfig, Linear, kBlockTensors

namespace hiq {

template <typename T>
using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// The weights of one transformer block (also used for its gradients), member for member the
// entries of kBlockTensors (hiq/model/tensors.h). Norm weights are (1, C) matrices so that one
// visitor covers every tensor.
template <typename T>
struct BlockWeights {
  Matrix<T> attn_norm;  // (1, C)   input_layernorm
  Matrix<T> wq;         // (NH*D, C)
  Matrix<T> wk;         // (NKV*D, C)
  Matrix<T> wv;         // (NKV*D, C)
  Matrix<T> wo;         // (C, NH*D)
  Matrix<T> mlp_norm;   // (1, C)   post_attention_layernorm
  Matrix<T> w_gate;     // (F, C)
  Matrix<T> w_up;       // (F, C)
  Matrix<T> w_down;     // (C, F)

  Matrix<T>& tensor(size_t i);  // the member of kBlockTensors[i]
  const Matrix<T>& tensor(size_t i) const;
  Matrix<T>& linear(Linear kind);
  const Matrix<T>& linear(Linear kind) const;
};

// The members of BlockWeights in kBlockTensors order: the one place that ties the table to them.
template <typename T>
inline constexpr std::array<Matrix<T> BlockWeights<T>::*, kBlockTensors.size()> kBlockMembers = {
    &BlockWeights<T>::attn_norm, &BlockWeights<T>::wq,   &BlockWeights<T>::wk,
    &BlockWeights<T>::wv,        &BlockWeights<T>::wo,   &BlockWeights<T>::mlp_norm,
    &BlockWeights<T>::w_gate,    &BlockWeights<T>::w_up, &BlockWeights<T>::w_down};

template <typename T>
Matrix<T>& BlockWeights<T>::tensor(size_t i) {
  return this->*kBlockMembers<T>[i];
}
template <typename T>
const Matrix<T>& BlockWeights<T>::tensor(size_t i) const {
  return this->*kBlockMembers<T>[i];
}
template <typename T>
Matrix<T>& BlockWeights<T>::linear(Linear kind) {
  return tensor(static_cast<size_t>(&LinearTensor(kind) - kBlockTensors.data()));
}
template <typename T>
const Matrix<T>& BlockWeights<T>::linear(Linear kind) const {
  return tensor(static_cast<size_t>(&LinearTensor(kind) - kBlockTensors.data()));
}

// f(table entry, matrix) for every tensor of a block, in table (checkpoint) order. Loading,
// zeroing, Fisher, candidates and shards all iterate it.
template <typename W, typename Func>
void ForEachBlockTensor(W& w, Func&& f) {
  for (size_t i = 0; i < kBlockTensors.size(); ++i) f(kBlockTensors[i], w.tensor(i));
}

// Zero-filled block of the right shapes (for gradients or random init).
template <typename T>
BlockWeights<T> ZeroBlock(const LlamaConfig& config);

// Rotary tables in the HF rotate-half layout: cos/sin are (T, D/2), computed in float32 the way
// transformers' LlamaRotaryEmbedding does, so that positions match the oracle bit for bit.
template <typename T>
struct Rope {
  Matrix<T> cos, sin;  // (T, D/2)
};
template <typename T>
Rope<T> MakeRope(const LlamaConfig& config, int64_t n_pos);

// What a block's forward keeps for its backward (and what later stages read: block inputs).
template <typename T>
struct BlockCache {
  Matrix<T> x;         // (N, C)    block input
  Matrix<T> rstd1;     // (N, 1)    1/rms of x
  Matrix<T> xn1;       // (N, C)    normed input to attention
  Matrix<T> q, k, v;   // (N, NH*D), (N, NKV*D), (N, NKV*D); q and k after RoPE
  Matrix<T> att;       // (B*NH*T, T) softmax probabilities, causal (upper triangle zero)
  Matrix<T> y;         // (N, NH*D) attention output before o_proj
  Matrix<T> x_mid;     // (N, C)    residual after attention
  Matrix<T> rstd2;     // (N, 1)
  Matrix<T> xn2;       // (N, C)    normed input to the MLP
  Matrix<T> gate, up;  // (N, F)    pre-activation
  Matrix<T> act;       // (N, F)    silu(gate) * up
};

// The rows a linear layer of the block multiplies, from a forward's cache: q, k and v read the
// normed block input, o the attention output, gate and up the normed mid residual, down the
// SwiGLU product. (GPTQ's Hessians and the layer-error tests read them.)
template <typename T>
const Matrix<T>& LinearInput(const BlockCache<T>& cache, Linear kind) {
  switch (kind) {
    case Linear::kQ:
    case Linear::kK:
    case Linear::kV:
      return cache.xn1;
    case Linear::kO:
      return cache.y;
    case Linear::kGate:
    case Linear::kUp:
      return cache.xn2;
    case Linear::kDown:
      return cache.act;
  }
  return cache.x;
}

// out = block(x). x and out are (N, C) with N = B * T; `cache` may be null (inference only).
template <typename T>
void BlockForward(const LlamaConfig& config, const BlockWeights<T>& w, const Rope<T>& rope,
                  int64_t seq_len, const Matrix<T>& x, Matrix<T>& out, BlockCache<T>* cache);
// out = block(x) for x (S * T, C), `chunk` sequences per BlockForward, from the first sequence
// on, as the pipeline runs its micro-batches; it bounds the attention buffer (chunk * NH * T, T).
// A row's value depends on the chunk size (BLAS blocks by shape), so passes that must agree bit
// for bit with the pipeline use its micro-batch.
void BlockForwardRows(const LlamaConfig& config, const BlockWeights<float>& w,
                      const Rope<float>& rope, int64_t seq_len, const Matrix<float>& x,
                      Matrix<float>& out, int64_t chunk);
// Given dL/dout, writes dL/dx and ADDS the weight gradients into `grad` (shapes of ZeroBlock).
template <typename T>
void BlockBackward(const LlamaConfig& config, const BlockWeights<T>& w, const Rope<T>& rope,
                   int64_t seq_len, const BlockCache<T>& cache, const Matrix<T>& dout,
                   Matrix<T>& dx, BlockWeights<T>& grad);

// Incremental decoding (sampling calibration text from the model): the keys and values of every
// past position, per sequence: k[b], v[b] are (positions so far, NKV*D), keys after RoPE.
template <typename T>
struct KvCache {
  std::vector<Matrix<T>> k, v;
};
// One new token per sequence, all at position `pos` (= the number of cached positions):
// x (B, C) -> out (B, C), appending to `cache`. The rope table must cover pos.
template <typename T>
void BlockDecodeStep(const LlamaConfig& config, const BlockWeights<T>& w, const Rope<T>& rope,
                     int64_t pos, const Matrix<T>& x, Matrix<T>& out, KvCache<T>& cache);

// --- the layers, each forward beside its backward ------------------------------------------

// out (N, C) = table[tokens]; table is (V, C).
template <typename T>
void EmbeddingForward(const Matrix<T>& table, std::span<const int32_t> tokens, Matrix<T>& out);
template <typename T>
void EmbeddingBackward(const Matrix<T>& dout, std::span<const int32_t> tokens, Matrix<T>& dtable);

// out = x / rms(x) * w per row; rstd (N, 1) kept for the backward. w is (1, C).
template <typename T>
void RmsNormForward(const Matrix<T>& x, const Matrix<T>& w, double eps, Matrix<T>& out,
                    Matrix<T>* rstd);
template <typename T>
void RmsNormBackward(const Matrix<T>& dout, const Matrix<T>& x, const Matrix<T>& w,
                     const Matrix<T>& rstd, Matrix<T>& dx, Matrix<T>& dw);

// Rotates each D-wide head of x (N, heads*D) in place; row n has position
// first_pos + n % seq_len. `inverse` applies the transpose rotation, which is the backward.
template <typename T>
void RopeApply(const Rope<T>& rope, int64_t seq_len, int64_t head_dim, bool inverse, Matrix<T>& x,
               int64_t first_pos = 0);

// Causal grouped-query attention: q (N, NH*D), k/v (N, NKV*D) -> y (N, NH*D); att as BlockCache.
template <typename T>
void AttentionForward(const LlamaConfig& config, int64_t seq_len, const Matrix<T>& q,
                      const Matrix<T>& k, const Matrix<T>& v, Matrix<T>& att, Matrix<T>& y);
template <typename T>
void AttentionBackward(const LlamaConfig& config, int64_t seq_len, const Matrix<T>& q,
                       const Matrix<T>& k, const Matrix<T>& v, const Matrix<T>& att,
                       const Matrix<T>& dy, Matrix<T>& dq, Matrix<T>& dk, Matrix<T>& dv);

// act = silu(gate) * up, elementwise; backward gives dgate, dup.
template <typename T>
void SwiGluForward(const Matrix<T>& gate, const Matrix<T>& up, Matrix<T>& act);
template <typename T>
void SwiGluBackward(const Matrix<T>& gate, const Matrix<T>& up, const Matrix<T>& dact,
                    Matrix<T>& dgate, Matrix<T>& dup);

// Next-token cross-entropy of logits (N, V) against targets (N); a negative target marks a row
// without a prediction (skipped, zero gradient). Returns the SUM of the negative log-likelihoods
// (in double, in row order). If dlogits is given it receives d(sum * loss_scale)/d logits.
template <typename T>
double CrossEntropyForward(const Matrix<T>& logits, std::span<const int32_t> targets,
                           Matrix<T>* dlogits, double loss_scale);

// --- whole-model pieces ------------------------------------------------------------------

// The part of the model one process holds: blocks [block_begin, block_end), plus the embedding
// on the first stage and the final norm + head on the last. With tied embeddings the last
// stage's lm_head is a copy of the embedding table.
template <typename T>
struct Stage {
  LlamaConfig config;
  int block_begin = 0, block_end = 0;
  bool has_embedding = false, has_head = false;
  Matrix<T> embedding;  // (V, C)
  std::vector<BlockWeights<T>> blocks;
  Matrix<T> final_norm;  // (1, C)
  Matrix<T> lm_head;     // (V, C)
};

// Random normal weights from the stream (seed, "RandomStage"), in tensor order: embedding std
// 1, matrices std 1 / sqrt(n_in), norm weights 1 + 0.1 * N(0, 1); for tests.
template <typename T>
Stage<T> RandomStage(const LlamaConfig& config, uint64_t seed);

// Gradients of one stage's weights, same shapes (lm_head grad kept apart even when tied).
template <typename T>
Stage<T> ZeroGradients(const Stage<T>& stage);

// Head: final norm + lm_head + cross-entropy over h (N, C) against targets. Returns the summed
// NLL; when dh is given, writes dL/dh for L = sum_nll * loss_scale and adds head gradients.
template <typename T>
double HeadForwardBackward(const Stage<T>& stage, const Matrix<T>& h,
                           std::span<const int32_t> targets, double loss_scale, Matrix<T>* dh,
                           Stage<T>* grad, Matrix<T>* logits_out);

// Process-wide, once at start: keep freed activation-sized buffers in the heap. The engine
// allocates and frees many of them per pass; glibc would otherwise hand each back to the kernel
// and fault it in again (28% of the plan stage's cost evaluations on stories260K).
void KeepActivationMemory();

// The whole model on one process (a stage with every block, the embedding and the head):
// returns the summed NLL of (tokens -> targets); with `grad`, adds d(mean NLL)/dW into it.
// The pipeline runs exactly these kernels split across ranks.
template <typename T>
double ModelForwardBackward(const Stage<T>& stage, std::span<const int32_t> tokens,
                            std::span<const int32_t> targets, Stage<T>* grad, Matrix<T>* logits);

}  // namespace hiq
