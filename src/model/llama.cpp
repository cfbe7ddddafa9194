// LLaMA forward and backward. Each layer's backward sits right below its forward; the block
// functions at the end string them together exactly as transformers' LlamaDecoderLayer does.
#include "hiq/model/llama.h"

#include <malloc.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "hiq/base/error.h"  // FormatError, HIQ_CHECK
#include "hiq/base/rng.h"    // RandomStream

namespace hiq {

template <typename T>
BlockWeights<T> ZeroBlock(const LlamaConfig& config) {
  BlockWeights<T> w;
  ForEachBlockTensor(w, [&](const BlockTensor& t, Matrix<T>& m) {
    const auto [rows, cols] = TensorShape(config, t);
    m = Matrix<T>::Zero(rows, cols);
  });
  return w;
}

// --- rotary embedding ----------------------------------------------------------------------

template <typename T>
Rope<T> MakeRope(const LlamaConfig& config, int64_t n_pos) {
  const int64_t D = config.head_dim(), half = D / 2;
  Rope<T> rope;
  rope.cos.resize(n_pos, half);
  rope.sin.resize(n_pos, half);
  for (int64_t i = 0; i < half; ++i) {
    // transformers: inv_freq = 1 / base ** (arange(0, D, 2).float() / D), all in float32, and
    // the angle is a float32 product; doing the same keeps positions identical to the oracle.
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(D);
    const float inv_freq = 1.0f / std::pow(static_cast<float>(config.rope_theta), exponent);
    for (int64_t p = 0; p < n_pos; ++p) {
      if constexpr (std::is_same_v<T, float>) {
        const float angle = static_cast<float>(p) * inv_freq;
        rope.cos(p, i) = std::cos(angle);
        rope.sin(p, i) = std::sin(angle);
      } else {
        const double angle =
            static_cast<double>(p) * std::pow(config.rope_theta, -static_cast<double>(2 * i) / D);
        rope.cos(p, i) = std::cos(angle);
        rope.sin(p, i) = std::sin(angle);
      }
    }
  }
  return rope;
}

template <typename T>
void RopeApply(const Rope<T>& rope, int64_t seq_len, int64_t head_dim, bool inverse, Matrix<T>& x,
               int64_t first_pos) {
  // rotate-half: the pair is (i, i + D/2), x' = x cos + rotate_half(x) sin.
  const int64_t half = head_dim / 2, n_head = x.cols() / head_dim;
  HIQ_CHECK(rope.cos.rows() >= first_pos + seq_len);
  for (int64_t n = 0; n < x.rows(); ++n) {
    const int64_t pos = first_pos + n % seq_len;
    T* row = x.row(n).data();
    for (int64_t h = 0; h < n_head; ++h) {
      T* xh = row + h * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const T c = rope.cos(pos, i), s = inverse ? -rope.sin(pos, i) : rope.sin(pos, i);
        const T a = xh[i], b = xh[i + half];
        xh[i] = a * c - b * s;
        xh[i + half] = b * c + a * s;
      }
    }
  }
}

// --- embedding -----------------------------------------------------------------------------

template <typename T>
void EmbeddingForward(const Matrix<T>& table, std::span<const int32_t> tokens, Matrix<T>& out) {
  out.resize(static_cast<int64_t>(tokens.size()), table.cols());
  for (size_t n = 0; n < tokens.size(); ++n) {
    HIQ_CHECK(tokens[n] >= 0 && tokens[n] < table.rows());
    out.row(static_cast<int64_t>(n)) = table.row(tokens[n]);
  }
}

template <typename T>
void EmbeddingBackward(const Matrix<T>& dout, std::span<const int32_t> tokens, Matrix<T>& dtable) {
  for (size_t n = 0; n < tokens.size(); ++n) {
    dtable.row(tokens[n]) += dout.row(static_cast<int64_t>(n));
  }
}

// --- RMSNorm -------------------------------------------------------------------------------

template <typename T>
void RmsNormForward(const Matrix<T>& x, const Matrix<T>& w, double eps, Matrix<T>& out,
                    Matrix<T>* rstd) {
  const int64_t N = x.rows(), C = x.cols();
  out.resize(N, C);
  if (rstd) rstd->resize(N, 1);
  for (int64_t n = 0; n < N; ++n) {
    // transformers computes the mean square in float32 for float32 models; so do we.
    const T ms = x.row(n).squaredNorm() / static_cast<T>(C);
    const T r = T(1) / std::sqrt(ms + static_cast<T>(eps));
    out.row(n) = (x.row(n) * r).cwiseProduct(w.row(0));
    if (rstd) (*rstd)(n, 0) = r;
  }
}

template <typename T>
void RmsNormBackward(const Matrix<T>& dout, const Matrix<T>& x, const Matrix<T>& w,
                     const Matrix<T>& rstd, Matrix<T>& dx, Matrix<T>& dw) {
  const int64_t N = x.rows(), C = x.cols();
  dx.resize(N, C);
  for (int64_t n = 0; n < N; ++n) {
    const T r = rstd(n, 0);
    const auto xhat = x.row(n) * r;
    dw.row(0) += dout.row(n).cwiseProduct(xhat);
    const auto dxhat = dout.row(n).cwiseProduct(w.row(0));
    const T mean_dot = dxhat.dot(xhat) / static_cast<T>(C);
    dx.row(n) = r * (dxhat - xhat * mean_dot);
  }
}

// --- attention -----------------------------------------------------------------------------

template <typename T>
void AttentionForward(const LlamaConfig& config, int64_t seq_len, const Matrix<T>& q,
                      const Matrix<T>& k, const Matrix<T>& v, Matrix<T>& att, Matrix<T>& y) {
  const int64_t D = config.head_dim(), NH = config.num_attention_heads;
  const int64_t group = NH / config.num_key_value_heads, T_ = seq_len, B = q.rows() / T_;
  const T scale = T(1) / std::sqrt(static_cast<T>(D));
  att.resize(B * NH * T_, T_);
  y.resize(q.rows(), NH * D);
  Matrix<T> s(T_, T_);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < NH; ++h) {
      const int64_t g = h / group;
      const auto qh = q.block(b * T_, h * D, T_, D);
      const auto kh = k.block(b * T_, g * D, T_, D);
      const auto vh = v.block(b * T_, g * D, T_, D);
      s.noalias() = qh * kh.transpose();
      auto p = att.block((b * NH + h) * T_, 0, T_, T_);
      for (int64_t i = 0; i < T_; ++i) {
        // causal: token i sees 0..i; Eigen's vectorised exp over the visible prefix.
        auto row = p.row(i);
        auto visible = row.head(i + 1).array();
        visible = s.row(i).head(i + 1).array() * scale;
        visible = (visible - visible.maxCoeff()).exp();
        visible /= visible.sum();
        row.tail(T_ - i - 1).setZero();
      }
      y.block(b * T_, h * D, T_, D).noalias() = p * vh;
    }
  }
}

template <typename T>
void AttentionBackward(const LlamaConfig& config, int64_t seq_len, const Matrix<T>& q,
                       const Matrix<T>& k, const Matrix<T>& v, const Matrix<T>& att,
                       const Matrix<T>& dy, Matrix<T>& dq, Matrix<T>& dk, Matrix<T>& dv) {
  const int64_t D = config.head_dim(), NH = config.num_attention_heads;
  const int64_t group = NH / config.num_key_value_heads, T_ = seq_len, B = q.rows() / T_;
  const T scale = T(1) / std::sqrt(static_cast<T>(D));
  dq.setZero(q.rows(), q.cols());
  dk.setZero(k.rows(), k.cols());
  dv.setZero(v.rows(), v.cols());
  Matrix<T> dp(T_, T_);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < NH; ++h) {
      const int64_t g = h / group;
      const auto p = att.block((b * NH + h) * T_, 0, T_, T_);
      const auto dyh = dy.block(b * T_, h * D, T_, D);
      // y = P V  ->  dP = dY V^T, dV += P^T dY
      dp.noalias() = dyh * v.block(b * T_, g * D, T_, D).transpose();
      dv.block(b * T_, g * D, T_, D).noalias() += p.transpose() * dyh;
      // softmax: dS = P o (dP - rowsum(P o dP)); the scale folds into dS.
      for (int64_t i = 0; i < T_; ++i) {
        T dot = 0;
        for (int64_t j = 0; j <= i; ++j) dot += p(i, j) * dp(i, j);
        for (int64_t j = 0; j <= i; ++j) dp(i, j) = p(i, j) * (dp(i, j) - dot) * scale;
        for (int64_t j = i + 1; j < T_; ++j) dp(i, j) = 0;
      }
      // S = Q K^T -> dQ = dS K, dK += dS^T Q
      dq.block(b * T_, h * D, T_, D).noalias() = dp * k.block(b * T_, g * D, T_, D);
      dk.block(b * T_, g * D, T_, D).noalias() += dp.transpose() * q.block(b * T_, h * D, T_, D);
    }
  }
}

// --- SwiGLU --------------------------------------------------------------------------------

template <typename T>
void SwiGluForward(const Matrix<T>& gate, const Matrix<T>& up, Matrix<T>& act) {
  act.resize(gate.rows(), gate.cols());
  const int64_t n = gate.size();
  const T* g = gate.data();
  const T* u = up.data();
  T* a = act.data();
  for (int64_t i = 0; i < n; ++i) a[i] = g[i] / (T(1) + std::exp(-g[i])) * u[i];
}

template <typename T>
void SwiGluBackward(const Matrix<T>& gate, const Matrix<T>& up, const Matrix<T>& dact,
                    Matrix<T>& dgate, Matrix<T>& dup) {
  dgate.resize(gate.rows(), gate.cols());
  dup.resize(gate.rows(), gate.cols());
  const int64_t n = gate.size();
  for (int64_t i = 0; i < n; ++i) {
    const T g = gate.data()[i], u = up.data()[i], da = dact.data()[i];
    const T sig = T(1) / (T(1) + std::exp(-g));
    dup.data()[i] = da * g * sig;
    dgate.data()[i] = da * u * sig * (T(1) + g * (T(1) - sig));
  }
}

// --- cross-entropy -------------------------------------------------------------------------

template <typename T>
double CrossEntropyForward(const Matrix<T>& logits, std::span<const int32_t> targets,
                           Matrix<T>* dlogits, double loss_scale) {
  const int64_t N = logits.rows(), V = logits.cols();
  HIQ_CHECK(static_cast<int64_t>(targets.size()) == N);
  if (dlogits) dlogits->resize(N, V);
  double nll_sum = 0;
  for (int64_t n = 0; n < N; ++n) {
    if (targets[n] < 0) {  // no prediction at this position (e.g. a window's last token)
      if (dlogits) dlogits->row(n).setZero();
      continue;
    }
    const auto row = logits.row(n);
    const T m = row.maxCoeff();
    // exp in T (vectorised), the sum and the log in double.
    const Eigen::Array<T, 1, Eigen::Dynamic> e = (row.array() - m).exp();
    double sum = 0;
    for (int64_t j = 0; j < V; ++j) sum += static_cast<double>(e(j));
    const double lse = static_cast<double>(m) + std::log(sum);
    HIQ_CHECK(targets[n] < V);
    nll_sum += lse - static_cast<double>(row(targets[n]));
    if (dlogits) {
      const T inv = static_cast<T>(loss_scale / sum);
      dlogits->row(n) = e.matrix() * inv;
      (*dlogits)(n, targets[n]) -= static_cast<T>(loss_scale);
    }
  }
  return nll_sum;
}

// --- the block -----------------------------------------------------------------------------

template <typename T>
void BlockForward(const LlamaConfig& config, const BlockWeights<T>& w, const Rope<T>& rope,
                  int64_t seq_len, const Matrix<T>& x, Matrix<T>& out, BlockCache<T>* cache) {
  BlockCache<T> local;
  BlockCache<T>& c = cache ? *cache : local;
  const int64_t D = config.head_dim();
  c.x = x;
  RmsNormForward(x, w.attn_norm, config.rms_norm_eps, c.xn1, &c.rstd1);
  c.q.noalias() = c.xn1 * w.wq.transpose();
  c.k.noalias() = c.xn1 * w.wk.transpose();
  c.v.noalias() = c.xn1 * w.wv.transpose();
  RopeApply(rope, seq_len, D, /*inverse=*/false, c.q);
  RopeApply(rope, seq_len, D, /*inverse=*/false, c.k);
  AttentionForward(config, seq_len, c.q, c.k, c.v, c.att, c.y);
  c.x_mid = x;
  c.x_mid.noalias() += c.y * w.wo.transpose();
  RmsNormForward(c.x_mid, w.mlp_norm, config.rms_norm_eps, c.xn2, &c.rstd2);
  c.gate.noalias() = c.xn2 * w.w_gate.transpose();
  c.up.noalias() = c.xn2 * w.w_up.transpose();
  SwiGluForward(c.gate, c.up, c.act);
  out = c.x_mid;
  out.noalias() += c.act * w.w_down.transpose();
}

void BlockForwardRows(const LlamaConfig& config, const BlockWeights<float>& w,
                      const Rope<float>& rope, int64_t seq_len, const Matrix<float>& x,
                      Matrix<float>& out, int64_t chunk) {
  HIQ_CHECK(chunk >= 1 && seq_len >= 1 && x.rows() % seq_len == 0);
  out.resize(x.rows(), x.cols());
  Matrix<float> xc, oc;
  const int64_t chunk_rows = chunk * seq_len;
  for (int64_t r = 0; r < x.rows(); r += chunk_rows) {
    const int64_t n = std::min(chunk_rows, x.rows() - r);
    xc = x.middleRows(r, n);
    BlockForward<float>(config, w, rope, seq_len, xc, oc, nullptr);
    out.middleRows(r, n) = oc;
  }
}

template <typename T>
void BlockBackward(const LlamaConfig& config, const BlockWeights<T>& w, const Rope<T>& rope,
                   int64_t seq_len, const BlockCache<T>& c, const Matrix<T>& dout, Matrix<T>& dx,
                   BlockWeights<T>& grad) {
  const int64_t D = config.head_dim();
  // MLP: out = x_mid + act Wd^T
  grad.w_down.noalias() += dout.transpose() * c.act;
  Matrix<T> dact = dout * w.w_down;
  Matrix<T> dgate, dup;
  SwiGluBackward(c.gate, c.up, dact, dgate, dup);
  grad.w_gate.noalias() += dgate.transpose() * c.xn2;
  grad.w_up.noalias() += dup.transpose() * c.xn2;
  Matrix<T> dxn2 = dgate * w.w_gate;
  dxn2.noalias() += dup * w.w_up;
  Matrix<T> dx_mid;
  RmsNormBackward(dxn2, c.x_mid, w.mlp_norm, c.rstd2, dx_mid, grad.mlp_norm);
  dx_mid += dout;
  // attention: x_mid = x + y Wo^T
  grad.wo.noalias() += dx_mid.transpose() * c.y;
  Matrix<T> dy = dx_mid * w.wo;
  Matrix<T> dq, dk, dv;
  AttentionBackward(config, seq_len, c.q, c.k, c.v, c.att, dy, dq, dk, dv);
  RopeApply(rope, seq_len, D, /*inverse=*/true, dq);
  RopeApply(rope, seq_len, D, /*inverse=*/true, dk);
  grad.wq.noalias() += dq.transpose() * c.xn1;
  grad.wk.noalias() += dk.transpose() * c.xn1;
  grad.wv.noalias() += dv.transpose() * c.xn1;
  Matrix<T> dxn1 = dq * w.wq;
  dxn1.noalias() += dk * w.wk;
  dxn1.noalias() += dv * w.wv;
  RmsNormBackward(dxn1, c.x, w.attn_norm, c.rstd1, dx, grad.attn_norm);
  dx += dx_mid;
}

template <typename T>
void BlockDecodeStep(const LlamaConfig& config, const BlockWeights<T>& w, const Rope<T>& rope,
                     int64_t pos, const Matrix<T>& x, Matrix<T>& out, KvCache<T>& cache) {
  const int64_t B = x.rows(), D = config.head_dim(), NH = config.num_attention_heads;
  const int64_t group = NH / config.num_key_value_heads;
  const T scale = T(1) / std::sqrt(static_cast<T>(D));
  if (cache.k.empty())
    cache.k.resize(static_cast<size_t>(B)), cache.v.resize(static_cast<size_t>(B));
  Matrix<T> xn, q, k, v;
  RmsNormForward<T>(x, w.attn_norm, config.rms_norm_eps, xn, nullptr);
  q.noalias() = xn * w.wq.transpose();
  k.noalias() = xn * w.wk.transpose();
  v.noalias() = xn * w.wv.transpose();
  RopeApply(rope, 1, D, /*inverse=*/false, q, pos);
  RopeApply(rope, 1, D, /*inverse=*/false, k, pos);
  Matrix<T> y(B, NH * D);
  for (int64_t b = 0; b < B; ++b) {
    Matrix<T>& kc = cache.k[static_cast<size_t>(b)];
    Matrix<T>& vc = cache.v[static_cast<size_t>(b)];
    HIQ_CHECK(kc.rows() == pos);
    kc.conservativeResize(pos + 1, k.cols());
    vc.conservativeResize(pos + 1, v.cols());
    kc.row(pos) = k.row(b);
    vc.row(pos) = v.row(b);
    for (int64_t h = 0; h < NH; ++h) {
      const int64_t g = h / group;
      Eigen::Array<T, Eigen::Dynamic, 1> p =
          (kc.middleCols(g * D, D) * q.row(b).segment(h * D, D).transpose()).array() * scale;
      p = (p - p.maxCoeff()).exp();
      p /= p.sum();
      y.row(b).segment(h * D, D).noalias() = p.matrix().transpose() * vc.middleCols(g * D, D);
    }
  }
  Matrix<T> x_mid = x;
  x_mid.noalias() += y * w.wo.transpose();
  Matrix<T> xn2, gate, up, act;
  RmsNormForward<T>(x_mid, w.mlp_norm, config.rms_norm_eps, xn2, nullptr);
  gate.noalias() = xn2 * w.w_gate.transpose();
  up.noalias() = xn2 * w.w_up.transpose();
  SwiGluForward(gate, up, act);
  out = x_mid;
  out.noalias() += act * w.w_down.transpose();
}

// --- stages --------------------------------------------------------------------------------

template <typename T>
Stage<T> RandomStage(const LlamaConfig& config, uint64_t seed) {
  RandomStream rng(seed, "RandomStage");
  auto fill = [&](Matrix<T>& m, double mean, double std) {
    for (int64_t i = 0; i < m.size(); ++i) m.data()[i] = static_cast<T>(mean + std * rng.Normal());
  };
  Stage<T> stage;
  stage.config = config;
  stage.block_begin = 0;
  stage.block_end = static_cast<int>(config.num_hidden_layers);
  stage.has_embedding = stage.has_head = true;
  stage.embedding.resize(config.vocab_size, config.hidden_size);
  fill(stage.embedding, 0, 1.0);
  for (int b = 0; b < stage.block_end; ++b) {
    BlockWeights<T> w = ZeroBlock<T>(config);
    ForEachBlockTensor(w, [&](const BlockTensor&, Matrix<T>& m) {
      if (m.rows() == 1) {
        fill(m, 1.0, 0.1);
      } else {
        fill(m, 0.0, 1.0 / std::sqrt(static_cast<double>(m.cols())));
      }
    });
    stage.blocks.push_back(std::move(w));
  }
  stage.final_norm.resize(1, config.hidden_size);
  fill(stage.final_norm, 1.0, 0.1);
  if (config.tie_word_embeddings) {
    stage.lm_head = stage.embedding;
  } else {
    stage.lm_head.resize(config.vocab_size, config.hidden_size);
    fill(stage.lm_head, 0, 1.0 / std::sqrt(static_cast<double>(config.hidden_size)));
  }
  return stage;
}

template <typename T>
Stage<T> ZeroGradients(const Stage<T>& stage) {
  Stage<T> grad;
  grad.config = stage.config;
  grad.block_begin = stage.block_begin;
  grad.block_end = stage.block_end;
  grad.has_embedding = stage.has_embedding;
  grad.has_head = stage.has_head;
  grad.embedding = Matrix<T>::Zero(stage.embedding.rows(), stage.embedding.cols());
  for (size_t b = 0; b < stage.blocks.size(); ++b)
    grad.blocks.push_back(ZeroBlock<T>(stage.config));
  grad.final_norm = Matrix<T>::Zero(stage.final_norm.rows(), stage.final_norm.cols());
  grad.lm_head = Matrix<T>::Zero(stage.lm_head.rows(), stage.lm_head.cols());
  return grad;
}

template <typename T>
double HeadForwardBackward(const Stage<T>& stage, const Matrix<T>& h,
                           std::span<const int32_t> targets, double loss_scale, Matrix<T>* dh,
                           Stage<T>* grad, Matrix<T>* logits_out) {
  HIQ_CHECK(stage.has_head);
  Matrix<T> hn, rstd;
  RmsNormForward(h, stage.final_norm, stage.config.rms_norm_eps, hn, &rstd);
  Matrix<T> local_logits;
  Matrix<T>& logits = logits_out ? *logits_out : local_logits;
  logits.noalias() = hn * stage.lm_head.transpose();
  if (!dh) return CrossEntropyForward<T>(logits, targets, nullptr, loss_scale);
  Matrix<T> dlogits;
  const double nll = CrossEntropyForward<T>(logits, targets, &dlogits, loss_scale);
  Matrix<T> dhn = dlogits * stage.lm_head;
  if (grad) grad->lm_head.noalias() += dlogits.transpose() * hn;
  Matrix<T> dnorm_unused = Matrix<T>::Zero(1, h.cols());
  RmsNormBackward(dhn, h, stage.final_norm, rstd, *dh, grad ? grad->final_norm : dnorm_unused);
  return nll;
}

void KeepActivationMemory() {
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 64 << 20);
}

template <typename T>
double ModelForwardBackward(const Stage<T>& stage, std::span<const int32_t> tokens,
                            std::span<const int32_t> targets, Stage<T>* grad, Matrix<T>* logits) {
  HIQ_CHECK(stage.has_embedding && stage.has_head && tokens.size() == targets.size());
  const int64_t n_tok = static_cast<int64_t>(tokens.size());
  const Rope<T> rope = MakeRope<T>(stage.config, n_tok);
  Matrix<T> h, next;
  EmbeddingForward(stage.embedding, tokens, h);
  std::vector<BlockCache<T>> caches(stage.blocks.size());
  for (size_t b = 0; b < stage.blocks.size(); ++b) {
    BlockForward(stage.config, stage.blocks[b], rope, n_tok, h, next, grad ? &caches[b] : nullptr);
    std::swap(h, next);
  }
  const int64_t count =
      std::count_if(targets.begin(), targets.end(), [](int32_t t) { return t >= 0; });
  Matrix<T> dh, dx;
  const double nll = HeadForwardBackward<T>(stage, h, targets, 1.0 / static_cast<double>(count),
                                            grad ? &dh : nullptr, grad, logits);
  if (!grad) return nll;
  for (size_t b = stage.blocks.size(); b-- > 0;) {
    BlockBackward(stage.config, stage.blocks[b], rope, n_tok, caches[b], dh, dx, grad->blocks[b]);
    std::swap(dh, dx);
  }
  EmbeddingBackward(dh, tokens, grad->embedding);
  return nll;
}

// Float for the pipeline, double for the finite-difference checks.
#define HIQ_INSTANTIATE(T)                                                                        \
  template struct BlockWeights<T>;                                                                \
  template BlockWeights<T> ZeroBlock<T>(const LlamaConfig&);                                      \
  template Rope<T> MakeRope<T>(const LlamaConfig&, int64_t);                                      \
  template void RopeApply<T>(const Rope<T>&, int64_t, int64_t, bool, Matrix<T>&, int64_t);        \
  template void BlockDecodeStep<T>(const LlamaConfig&, const BlockWeights<T>&, const Rope<T>&,    \
                                   int64_t, const Matrix<T>&, Matrix<T>&, KvCache<T>&);           \
  template void EmbeddingForward<T>(const Matrix<T>&, std::span<const int32_t>, Matrix<T>&);      \
  template void EmbeddingBackward<T>(const Matrix<T>&, std::span<const int32_t>, Matrix<T>&);     \
  template void RmsNormForward<T>(const Matrix<T>&, const Matrix<T>&, double, Matrix<T>&,         \
                                  Matrix<T>*);                                                    \
  template void RmsNormBackward<T>(const Matrix<T>&, const Matrix<T>&, const Matrix<T>&,          \
                                   const Matrix<T>&, Matrix<T>&, Matrix<T>&);                     \
  template void AttentionForward<T>(const LlamaConfig&, int64_t, const Matrix<T>&,                \
                                    const Matrix<T>&, const Matrix<T>&, Matrix<T>&, Matrix<T>&);  \
  template void AttentionBackward<T>(const LlamaConfig&, int64_t, const Matrix<T>&,               \
                                     const Matrix<T>&, const Matrix<T>&, const Matrix<T>&,        \
                                     const Matrix<T>&, Matrix<T>&, Matrix<T>&, Matrix<T>&);       \
  template void SwiGluForward<T>(const Matrix<T>&, const Matrix<T>&, Matrix<T>&);                 \
  template void SwiGluBackward<T>(const Matrix<T>&, const Matrix<T>&, const Matrix<T>&,           \
                                  Matrix<T>&, Matrix<T>&);                                        \
  template double CrossEntropyForward<T>(const Matrix<T>&, std::span<const int32_t>, Matrix<T>*,  \
                                         double);                                                 \
  template void BlockForward<T>(const LlamaConfig&, const BlockWeights<T>&, const Rope<T>&,       \
                                int64_t, const Matrix<T>&, Matrix<T>&, BlockCache<T>*);           \
  template void BlockBackward<T>(const LlamaConfig&, const BlockWeights<T>&, const Rope<T>&,      \
                                 int64_t, const BlockCache<T>&, const Matrix<T>&, Matrix<T>&,     \
                                 BlockWeights<T>&);                                               \
  template Stage<T> RandomStage<T>(const LlamaConfig&, uint64_t);                                 \
  template Stage<T> ZeroGradients<T>(const Stage<T>&);                                            \
  template double HeadForwardBackward<T>(const Stage<T>&, const Matrix<T>&,                       \
                                         std::span<const int32_t>, double, Matrix<T>*, Stage<T>*, \
                                         Matrix<T>*);                                             \
  template double ModelForwardBackward<T>(const Stage<T>&, std::span<const int32_t>,              \
                                          std::span<const int32_t>, Stage<T>*, Matrix<T>*);

HIQ_INSTANTIATE(float)
HIQ_INSTANTIATE(double)
#undef HIQ_INSTANTIATE

}  // namespace hiq
