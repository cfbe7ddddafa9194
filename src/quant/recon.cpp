// Block reconstruction with LWC and AdaRound through the engine's block (see hiq/quant/recon.h).
#include "hiq/quant/recon.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <utility>

#include "hiq/base/error.h"
#include "hiq/base/finite.h"    // ValueName
#include "hiq/base/rng.h"       // RandomStream
#include "hiq/base/watchdog.h"  // NoteProgress
#include "hiq/model/blas.h"     // ParallelRows
#include "hiq/quant/adaround.h"
#include "hiq/quant/learn.h"
#include "hiq/quant/lwc.h"

namespace hiq {
namespace {

// Sequences per BlockForward when measuring: bounds the attention buffer (B * NH * T, T).
constexpr int64_t kEvalChunk = 16;

void ForwardRows(const LlamaConfig& config, const BlockWeights<float>& w, const Rope<float>& rope,
                 int64_t seq_len, const Matrix<float>& x, Matrix<float>& out) {
  BlockForwardRows(config, w, rope, seq_len, x, out, kEvalChunk);
}

void CheckRows(const char* what, const LlamaConfig& config, int64_t seq_len,
               const Matrix<float>& x) {
  if (seq_len <= 0 || x.rows() == 0 || x.rows() % seq_len != 0 || x.cols() != config.hidden_size) {
    throw ConfigError(std::string("ReconstructBlock: ") + what + " is (" +
                      std::to_string(x.rows()) + ", " + std::to_string(x.cols()) +
                      "), expected (S * " + std::to_string(seq_len) + ", " +
                      std::to_string(config.hidden_size) + ") with S >= 1");
  }
}

// One linear layer's learned parts, their optimiser states and gradients.
struct LayerState {
  Linear kind = Linear::kQ;
  const Matrix<float>* w = nullptr;  // (n_out, n_in) full precision
  const ReconLayer* plan = nullptr;
  QuantizedLayer rtn;
  std::optional<Lwc> lwc;  // low part
  LwcCache lwc_cache;
  AdamState adam_a, adam_b;
  std::vector<float> da, db;
  std::optional<AdaRound> round_low, round_high;
  AdamState adam_v_low, adam_v_high;
  std::vector<float> dv;

  // The learned parts' columns of w_q (n_out, n_in).
  void Forward(float* w_q) {
    if (lwc) LwcForward(*lwc, w->data(), w_q, &lwc_cache);
    if (round_low) AdaRoundForward(*round_low, w_q);
    if (round_high) AdaRoundForward(*round_high, w_q);
  }

  // dw_q (n_out, n_in) -> one optimiser step of every learned part; beta 0: no regulariser.
  void Step(const float* dw_q, const ReconOptions& o, float beta) {
    if (lwc) {
      da.resize(lwc->max_logit.size());
      db.resize(lwc->min_logit.size());
      LwcBackward(*lwc, w->data(), lwc_cache, dw_q, da.data(), db.data());
      const AdamOptions adam{.lr = o.lwc_lr, .weight_decay = o.lwc_weight_decay};
      AdamStep(adam, lwc->max_logit, da, adam_a);
      AdamStep(adam, lwc->min_logit, db, adam_b);
    }
    if (round_low) StepRound(*round_low, adam_v_low, dw_q, o, beta);
    if (round_high) StepRound(*round_high, adam_v_high, dw_q, o, beta);
  }

  void StepRound(AdaRound& r, AdamState& state, const float* dw_q, const ReconOptions& o,
                 float beta) {
    dv.resize(r.v.size());
    AdaRoundBackward(r, dw_q, beta, o.round_lambda, dv.data());
    AdamStep(AdamOptions{.lr = o.round_lr}, r.v, dv, state);
  }

  // The stored form of the current parameters.
  QuantizedLayer Store() const {
    QuantizedLayer q;
    if (lwc) {
      const std::vector<GroupClip> clip = LwcClip(*lwc);
      q = QuantizeLayer(w->data(), w->rows(), w->cols(), plan->high_cols, plan->spec,
                        LayerClip{clip.data(), nullptr});
    } else {
      q = rtn;
    }
    if (round_low) q.low_codes = AdaRoundCodes(*round_low, nullptr);
    if (round_high) q.high_codes = AdaRoundCodes(*round_high, nullptr);
    return q;
  }
};

LayerState MakeLayerState(Linear kind, const Matrix<float>& w, const ReconLayer& plan,
                          const ReconOptions& o) {
  LayerState s;
  s.kind = kind;
  s.w = &w;
  s.plan = &plan;
  s.rtn = QuantizeLayer(w.data(), w.rows(), w.cols(), plan.high_cols, plan.spec);
  const int64_t n_in = w.cols();
  const bool learn_high =
      !plan.spec.high_fp16() && !plan.high_cols.empty() && o.method != ReconMethod::kLwc;
  if (learn_high) {
    s.round_high = AdaRoundInit(HighPart(n_in, plan.high_cols), w.data(), w.rows(),
                                plan.spec.bits_high, s.rtn.high_params);
  }
  if (s.rtn.n_low() == 0) return s;
  const ColumnPart low = LowPart(n_in, plan.high_cols, plan.spec.group_size);
  if (o.method == ReconMethod::kAdaRound) {
    s.round_low = AdaRoundInit(low, w.data(), w.rows(), plan.spec.bits_low, s.rtn.low_params);
  } else {
    s.lwc = LwcInit(low, w.data(), w.rows(), plan.spec.bits_low, o.lwc_init);
  }
  return s;
}

std::array<QuantizedLayer, kNumLinears> StoreAll(const std::vector<LayerState>& states) {
  std::array<QuantizedLayer, kNumLinears> out;
  for (size_t i = 0; i < kNumLinears; ++i) out[i] = states[i].Store();
  return out;
}

}  // namespace

void ValidateReconOptions(const ReconOptions& o) {
  auto check = [](bool ok, const char* field, auto value, const char* expected) {
    if (ok) return;
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(value));
    throw ConfigError(std::string("ReconOptions.") + field + " = " + buf + ", expected " +
                      expected);
  };
  check(o.steps >= 0, "steps", o.steps, ">= 0");
  check(o.batch >= 1, "batch", o.batch, ">= 1");
  check(o.lwc_lr >= 0.0f, "lwc_lr", o.lwc_lr, ">= 0");
  check(o.lwc_weight_decay >= 0.0f, "lwc_weight_decay", o.lwc_weight_decay, ">= 0");
  check(std::isfinite(o.lwc_init), "lwc_init", o.lwc_init, "a finite logit");
  check(o.round_lr >= 0.0f, "round_lr", o.round_lr, ">= 0");
  check(o.round_lambda >= 0.0f, "round_lambda", o.round_lambda, ">= 0");
  check(o.beta_start >= 1.0f, "beta_start", o.beta_start, ">= 1");
  check(o.beta_end >= 1.0f, "beta_end", o.beta_end, ">= 1");
  check(o.warmup >= 0.0f && o.warmup <= 1.0f, "warmup", o.warmup, "in [0, 1]");
}

std::vector<int64_t> ReconOrder(uint64_t seed, int block, int64_t n_seq, int64_t draws) {
  if (n_seq <= 0) throw ConfigError("ReconOrder: no sequences");
  RandomStream rng(seed, "reconstruction", static_cast<uint64_t>(block));
  std::vector<int64_t> order, perm(static_cast<size_t>(n_seq));
  order.reserve(static_cast<size_t>(draws));
  while (static_cast<int64_t>(order.size()) < draws) {
    for (int64_t i = 0; i < n_seq; ++i) perm[static_cast<size_t>(i)] = i;
    for (int64_t i = n_seq - 1; i > 0; --i) {
      const auto j = static_cast<int64_t>(rng.UniformInt(static_cast<uint64_t>(i + 1)));
      std::swap(perm[static_cast<size_t>(i)], perm[static_cast<size_t>(j)]);
    }
    for (int64_t i = 0; i < n_seq && static_cast<int64_t>(order.size()) < draws; ++i) {
      order.push_back(perm[static_cast<size_t>(i)]);
    }
  }
  return order;
}

BlockWeights<float> DequantizedBlock(const BlockWeights<float>& w,
                                     std::span<const QuantizedLayer> layers) {
  if (layers.size() != kNumLinears) {
    throw ConfigError("DequantizedBlock: " + std::to_string(layers.size()) + " layers, expected " +
                      std::to_string(kNumLinears));
  }
  BlockWeights<float> out = w;
  for (size_t i = 0; i < kNumLinears; ++i) {
    Matrix<float>& m = out.linear(kLinears[i]);
    if (layers[i].n_out != m.rows() || layers[i].n_in != m.cols()) {
      throw ConfigError("DequantizedBlock: layer " + std::string(LinearName(kLinears[i])) +
                        " is (" + std::to_string(layers[i].n_out) + ", " +
                        std::to_string(layers[i].n_in) + "), the block's is (" +
                        std::to_string(m.rows()) + ", " + std::to_string(m.cols()) + ")");
    }
    Dequantize(layers[i], m.data());
  }
  return out;
}

double BlockOutputMse(const LlamaConfig& config, const BlockWeights<float>& w, int64_t seq_len,
                      const Matrix<float>& x, const Matrix<float>& target) {
  CheckRows("x", config, seq_len, x);
  if (target.rows() != x.rows() || target.cols() != x.cols()) {
    throw ConfigError("BlockOutputMse: target and x differ in shape");
  }
  const Rope<float> rope = MakeRope<float>(config, seq_len);
  // Chunk by chunk, so that no third (S * T, C) matrix is held beside x and target; the sum
  // runs over the elements in row order as over one whole output.
  Matrix<float> xc, oc;
  double sum = 0;
  const int64_t chunk_rows = kEvalChunk * seq_len;
  for (int64_t r = 0; r < x.rows(); r += chunk_rows) {
    const int64_t n = std::min(chunk_rows, x.rows() - r);
    xc = x.middleRows(r, n);
    BlockForward<float>(config, w, rope, seq_len, xc, oc, nullptr);
    const float* t = target.data() + r * target.cols();
    for (int64_t i = 0; i < oc.size(); ++i) {
      const double d = static_cast<double>(oc.data()[i]) - static_cast<double>(t[i]);
      sum += d * d;
    }
  }
  return x.size() > 0 ? sum / static_cast<double>(x.size()) : 0.0;
}

void BlockTargetAndHessians(const LlamaConfig& config, const BlockWeights<float>& w,
                            int64_t seq_len, const Matrix<float>& x, int64_t micro_batch,
                            Matrix<float>* target, std::vector<GptqHessian>* hessians) {
  CheckRows("x", config, seq_len, x);
  if (micro_batch < 1) {
    throw ConfigError("BlockTargetAndHessians: micro_batch = " + std::to_string(micro_batch));
  }
  const Rope<float> rope = MakeRope<float>(config, seq_len);
  if (target != nullptr) target->resize(x.rows(), x.cols());
  if (hessians != nullptr) {
    hessians->clear();
    for (Linear kind : kLinears) hessians->emplace_back(w.linear(kind).cols());
  }
  Matrix<float> xc, oc;
  BlockCache<float> cache;
  const int64_t chunk_rows = micro_batch * seq_len;
  for (int64_t r0 = 0; r0 < x.rows(); r0 += chunk_rows) {
    const int64_t n = std::min(chunk_rows, x.rows() - r0);
    xc = x.middleRows(r0, n);
    BlockForward(config, w, rope, seq_len, xc, oc, hessians != nullptr ? &cache : nullptr);
    if (target != nullptr) target->middleRows(r0, n) = oc;
    if (hessians == nullptr) continue;
    for (size_t k = 0; k < kNumLinears; ++k) {
      const Matrix<float>& in = LinearInput(cache, kLinears[k]);
      for (int64_t s0 = 0; s0 < n; s0 += seq_len) {
        (*hessians)[k].AddRows(in.data() + s0 * in.cols(), seq_len);
      }
    }
  }
}

struct ReconTrainer::State {
  const LlamaConfig* config = nullptr;
  int64_t seq_len = 0;
  ReconOptions options;
  Rope<float> rope;
  std::vector<ReconLayer> plans;
  std::vector<LayerState> layers;  // kLinears order
  BlockWeights<float> wq;          // fixed columns from RTN once, learned ones every step
  BlockWeights<float> grad;
  BlockCache<float> cache;
  Matrix<float> out, dout, dx;
};

ReconTrainer::ReconTrainer(const LlamaConfig& config, const BlockWeights<float>& w, int64_t seq_len,
                           std::span<const ReconLayer> layers, const ReconOptions& options)
    : state_(std::make_unique<State>()) {
  ValidateReconOptions(options);
  if (layers.size() != kNumLinears) {
    throw ConfigError("ReconTrainer: " + std::to_string(layers.size()) + " layer plans, expected " +
                      std::to_string(kNumLinears));
  }
  if (seq_len <= 0) throw ConfigError("ReconTrainer: seq_len = " + std::to_string(seq_len));
  State& s = *state_;
  s.config = &config;
  s.seq_len = seq_len;
  s.options = options;
  s.rope = MakeRope<float>(config, seq_len);
  s.plans.assign(layers.begin(), layers.end());
  for (size_t i = 0; i < kNumLinears; ++i) {
    s.layers.push_back(MakeLayerState(kLinears[i], w.linear(kLinears[i]), s.plans[i], options));
  }
  s.wq = w;
  for (LayerState& l : s.layers) Dequantize(l.rtn, s.wq.linear(l.kind).data());
  s.grad = ZeroBlock<float>(config);
}

ReconTrainer::~ReconTrainer() = default;
ReconTrainer::ReconTrainer(ReconTrainer&&) noexcept = default;
ReconTrainer& ReconTrainer::operator=(ReconTrainer&&) noexcept = default;

double ReconTrainer::Step(const Matrix<float>& x, const Matrix<float>& target, int64_t t) {
  State& s = *state_;
  CheckRows("a step's x", *s.config, s.seq_len, x);
  if (target.rows() != x.rows() || target.cols() != x.cols()) {
    throw ConfigError("ReconTrainer::Step: target and x differ in shape");
  }
  for (LayerState& l : s.layers) l.Forward(s.wq.linear(l.kind).data());
  BlockForward(*s.config, s.wq, s.rope, s.seq_len, x, s.out, &s.cache);
  const double rows = static_cast<double>(x.rows());
  const float dscale = static_cast<float>(2.0 / rows);
  double loss = 0;
  s.dout.resize(s.out.rows(), s.out.cols());
  for (int64_t i = 0; i < s.out.size(); ++i) {
    const float d = s.out.data()[i] - target.data()[i];
    loss += static_cast<double>(d) * static_cast<double>(d);
    s.dout.data()[i] = dscale * d;
  }
  ForEachBlockTensor(s.grad, [](const BlockTensor&, Matrix<float>& g) {
    ParallelRows(g.rows(), g.cols(),
                 [&](int64_t r0, int64_t r1) { g.middleRows(r0, r1 - r0).setZero(); });
  });
  BlockBackward(*s.config, s.wq, s.rope, s.seq_len, s.cache, s.dout, s.dx, s.grad);
  const ReconOptions& o = s.options;
  const float beta = AdaRoundBeta(t, o.steps, o.warmup, o.beta_start, o.beta_end);
  for (LayerState& l : s.layers) l.Step(s.grad.linear(l.kind).data(), o, beta);
  return loss / rows;
}

std::array<QuantizedLayer, kNumLinears> ReconTrainer::Store() const {
  return StoreAll(state_->layers);
}

std::array<QuantizedLayer, kNumLinears> ReconTrainer::Rtn() const {
  std::array<QuantizedLayer, kNumLinears> rtn;
  for (size_t i = 0; i < kNumLinears; ++i) rtn[i] = state_->layers[i].rtn;
  return rtn;
}

ReconResult ReconstructBlock(const LlamaConfig& config, const BlockWeights<float>& w,
                             int64_t seq_len, const Matrix<float>& x,
                             std::span<const ReconLayer> layers, const ReconOptions& options,
                             const Matrix<float>* x_heldout) {
  CheckRows("x", config, seq_len, x);
  if (x_heldout) CheckRows("x_heldout", config, seq_len, *x_heldout);
  ReconTrainer trainer(config, w, seq_len, layers, options);
  const int64_t T = seq_len, C = config.hidden_size, n_seq = x.rows() / T;
  const Rope<float> rope = MakeRope<float>(config, T);
  Matrix<float> target, target_heldout;
  ForwardRows(config, w, rope, T, x, target);
  if (x_heldout) ForwardRows(config, w, rope, T, *x_heldout, target_heldout);

  ReconResult result;
  ReconReport& rep = result.report;
  auto measure = [&](const std::array<QuantizedLayer, kNumLinears>& q, double* calib,
                     double* heldout) {
    const BlockWeights<float> wq = DequantizedBlock(w, q);
    *calib = BlockOutputMse(config, wq, T, x, target);
    *heldout = x_heldout ? BlockOutputMse(config, wq, T, *x_heldout, target_heldout)
                         : std::numeric_limits<double>::quiet_NaN();
  };
  measure(trainer.Rtn(), &rep.rtn_mse, &rep.rtn_heldout_mse);
  measure(trainer.Store(), &rep.init_mse, &rep.init_heldout_mse);

  Matrix<float> xs(options.batch * T, C), ys(options.batch * T, C);
  const std::vector<int64_t> order =
      ReconOrder(options.seed, options.block, n_seq, options.steps * options.batch);
  rep.step_loss.reserve(static_cast<size_t>(options.steps));
  for (int64_t t = 0; t < options.steps; ++t) {
    for (int64_t b = 0; b < options.batch; ++b) {
      const int64_t seq = order[static_cast<size_t>(t * options.batch + b)];
      xs.middleRows(b * T, T) = x.middleRows(seq * T, T);
      ys.middleRows(b * T, T) = target.middleRows(seq * T, T);
    }
    rep.step_loss.push_back(trainer.Step(xs, ys, t + 1));
    NoteProgress();  // a block takes hours on a 7B model: its ranks' peers must see it move
    if (!std::isfinite(rep.step_loss.back())) {
      std::string seqs;
      for (int64_t b = 0; b < options.batch; ++b) {
        seqs += (b ? ", " : "") + std::to_string(order[static_cast<size_t>(t * options.batch + b)]);
      }
      throw NumericalError("ReconstructBlock: block " + std::to_string(options.block) +
                           ": the loss of step " + std::to_string(t + 1) + " (sequences " + seqs +
                           ") is " + ValueName(rep.step_loss.back()));
    }
  }
  result.layers = trainer.Store();
  measure(result.layers, &rep.final_mse, &rep.final_heldout_mse);
  return result;
}

}  // namespace hiq
