#include "hiq/stages/cost.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <type_traits>

#include "hiq/base/error.h"   // HIQ_CHECK
#include "hiq/quant/recon.h"  // BlockTargetAndHessians

namespace hiq {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

int64_t TotalPredictions(const std::vector<Sequence>& seqs) {
  int64_t n = 0;
  for (const auto& s : seqs) n += s.n_predictions();
  return n;
}

// A pass at the centre's blocks (all local blocks, or none for full precision: the stage's own);
// `blocks` must outlive the pass.
JobWeights CentreWeights(const std::vector<BlockWeights<float>>& blocks) {
  if (blocks.empty()) return nullptr;
  return [&blocks](int) {
    std::vector<const BlockWeights<float>*> w;
    for (const BlockWeights<float>& b : blocks) w.push_back(&b);
    return w;
  };
}

// One switch: layers set to candidates, relative to a centre.
struct Switch {
  std::vector<std::pair<int, int>> layer_candidate;
  int block() const { return BlockOfLayer(layer_candidate.front().first); }
};

}  // namespace

ChannelScoreBlocks ScoreChannels(const Stage<float>& stage,
                                 const std::vector<std::array<Matrix<float>, kNumLinears>>& fisher,
                                 ChannelScore score, const QuantSpec& spec) {
  HIQ_CHECK(fisher.size() == stage.blocks.size());
  const ScoreKind kind =
      score == ChannelScore::kFisher ? ScoreKind::kFisher : ScoreKind::kFisherImpact;
  ChannelScoreBlocks scores(stage.blocks.size());
  for (size_t b = 0; b < stage.blocks.size(); ++b) {
    for (size_t k = 0; k < kLinears.size(); ++k) {
      const Matrix<float>& w = stage.blocks[b].linear(kLinears[k]);
      scores[b][k] = ChannelScores(fisher[b][k].data(), w.data(), w.rows(), w.cols(), kind, spec);
    }
  }
  return scores;
}

CostModel::CostModel(Pipeline& pipeline, const QuantSpec& spec, std::vector<double> ratios,
                     const ChannelScoreBlocks& scores)
    : pipeline_(pipeline), spec_(spec), ratios_(std::move(ratios)) {
  ValidateQuantSpec(spec_);
  const Stage<float>& stage = pipeline_.stage();
  const LlamaConfig& c = stage.config;
  n_layers_ = NumLayers(c);
  bits_.resize(static_cast<size_t>(n_layers_));
  local_.resize(static_cast<size_t>(n_layers_));
  for (int l = 0; l < n_layers_; ++l) {
    const auto [n_out, n_in] = LinearShape(c, LinearOfLayer(l));
    shapes_.push_back({n_out, n_in});
    n_weights_ += static_cast<double>(n_out * n_in);
    for (double r : ratios_) {
      bits_[static_cast<size_t>(l)].push_back(
          static_cast<double>(LayerBits(n_out, n_in, HighCount(r, n_in), spec_)));
    }
  }
  HIQ_CHECK(scores.size() == stage.blocks.size());
  for (size_t b = 0; b < stage.blocks.size(); ++b) {
    for (size_t k = 0; k < kLinears.size(); ++k) {
      const Matrix<float>& w = stage.blocks[b].linear(kLinears[k]);
      const int layer = LayerIndex(stage.block_begin + static_cast<int>(b), kLinears[k]);
      LayerCandidates& cand = local_[static_cast<size_t>(layer)];
      cand.n_out = w.rows();
      cand.n_in = w.cols();
      HIQ_CHECK(static_cast<int64_t>(scores[b][k].size()) == w.cols());
      for (double r : ratios_)
        cand.high_cols.push_back(TopChannels(scores[b][k], HighCount(r, w.cols())));
      cand.bits = bits_[static_cast<size_t>(layer)];
    }
  }
}

const LayerCandidates* CostModel::Local(int layer) const {
  const LayerCandidates& c = local_[static_cast<size_t>(layer)];
  return c.high_cols.empty() ? nullptr : &c;
}

double CostModel::PlanBits(const Plan& plan) const {
  double bits = 0;
  for (int l = 0; l < n_layers_; ++l) {
    bits += bits_[static_cast<size_t>(l)][static_cast<size_t>(plan[static_cast<size_t>(l)])];
  }
  return bits;
}

double CostModel::BitsAtRatio(double ratio) const {
  double bits = 0;
  for (const auto& [n_out, n_in] : shapes_) {
    bits += static_cast<double>(LayerBits(n_out, n_in, HighCount(ratio, n_in), spec_));
  }
  return bits;
}

std::optional<Plan> CostModel::FixedPlanWithin(double budget_bits) const {
  for (int m = n_candidates() - 1; m >= 0; --m) {
    if (PlanBits(FixedPlan(m)) <= budget_bits) return FixedPlan(m);
  }
  return std::nullopt;
}

void CostModel::QuantizeLayerInto(int layer, int candidate, Matrix<float>& out) const {
  const LayerCandidates* cand = Local(layer);
  HIQ_CHECK(cand != nullptr);
  const Stage<float>& stage = pipeline_.stage();
  const Matrix<float>& w =
      stage.blocks[static_cast<size_t>(BlockOfLayer(layer) - stage.block_begin)].linear(
          LinearOfLayer(layer));
  out.resize(w.rows(), w.cols());
  const std::vector<int32_t>& high = cand->high_cols[static_cast<size_t>(candidate)];
  if (hessians_.empty()) {
    QuantizeCandidate(w.data(), w.rows(), w.cols(), high, spec_, out.data());
    return;
  }
  auto it = gptq_layers_.find({layer, candidate});
  if (it == gptq_layers_.end()) {
    std::string log;
    QuantizedLayer q =
        GptqQuantize(w.data(), w.rows(), w.cols(), hessians_[static_cast<size_t>(layer)], high,
                     spec_, GptqOptions{}, &log);
    if (!log.empty()) {
      std::fprintf(stderr, "%s, candidate %d: %s", LayerName(layer).c_str(), candidate,
                   log.c_str());
    }
    it = gptq_layers_.emplace(std::make_pair(layer, candidate), std::move(q)).first;
  }
  Dequantize(it->second, out.data());
}

void CostModel::UseGptqCandidates(const std::vector<Sequence>& seqs) {
  if (seqs.empty()) throw ConfigError("UseGptqCandidates: no sequences for the Hessians");
  const size_t seq_len = seqs.front().tokens.size();
  for (const Sequence& s : seqs) {
    if (s.tokens.size() != seq_len) {
      throw ConfigError("UseGptqCandidates: sequences of " + std::to_string(s.tokens.size()) +
                        " and " + std::to_string(seq_len) + " tokens; one length expected");
    }
  }
  const Centre fp = RunCentre(seqs, std::nullopt);
  const Stage<float>& stage = pipeline_.stage();
  std::vector<GptqHessian> hessians(static_cast<size_t>(n_layers_));
  std::vector<GptqHessian> block;
  for (size_t b = 0; b < stage.blocks.size(); ++b) {
    BlockTargetAndHessians(stage.config, stage.blocks[b], static_cast<int64_t>(seq_len),
                           fp.inputs.per_block[b], kMicroBatch, nullptr, &block);
    for (size_t k = 0; k < kNumLinears; ++k) {
      const int l = LayerIndex(stage.block_begin + static_cast<int>(b), kLinears[k]);
      hessians[static_cast<size_t>(l)] = std::move(block[k]);
    }
  }
  hessians_ = std::move(hessians);
  gptq_layers_.clear();
}

int64_t CostModel::GptqBytes() const {
  int64_t bytes = 0;
  for (const GptqHessian& h : hessians_) bytes += static_cast<int64_t>(sizeof(double)) * h.h.size();
  auto size_of = [](const auto& v) {
    return static_cast<int64_t>(v.size() * sizeof(typename std::decay_t<decltype(v)>::value_type));
  };
  for (const auto& [key, q] : gptq_layers_) {
    bytes += size_of(q.high_cols) + size_of(q.low_codes) + size_of(q.low_params) +
             size_of(q.high_codes) + size_of(q.high_params) + size_of(q.high_fp16);
  }
  return bytes;
}

BlockWeights<float> CostModel::QuantizedBlock(size_t b, const Plan& plan) const {
  const Stage<float>& stage = pipeline_.stage();
  BlockWeights<float> w = stage.blocks[b];
  for (Linear kind : kLinears) {
    const int l = LayerIndex(stage.block_begin + static_cast<int>(b), kind);
    QuantizeLayerInto(l, plan[static_cast<size_t>(l)], w.linear(kind));
  }
  return w;
}

std::vector<BlockWeights<float>> CostModel::CentreBlocks(const std::optional<Plan>& centre) const {
  std::vector<BlockWeights<float>> blocks;
  if (!centre) return blocks;  // the stage's own weights
  for (size_t b = 0; b < pipeline_.stage().blocks.size(); ++b) {
    blocks.push_back(QuantizedBlock(b, *centre));
  }
  return blocks;
}

int CostModel::CentreCandidate(const std::optional<Plan>& centre, int layer) const {
  return centre ? (*centre)[static_cast<size_t>(layer)] : -1;
}

std::vector<double> CostModel::MeasurePlans(const std::vector<Sequence>& seqs,
                                            const std::vector<std::optional<Plan>>& plans) {
  std::vector<BlockWeights<float>> scratch;
  const JobWeights weights = [&](int j) {
    const std::optional<Plan>& plan = plans[static_cast<size_t>(j)];
    scratch = CentreBlocks(plan);
    std::vector<const BlockWeights<float>*> w(pipeline_.stage().blocks.size(), nullptr);
    for (size_t b = 0; b < scratch.size(); ++b) w[b] = &scratch[b];
    return w;
  };
  const std::vector<double> nll = pipeline_.ForwardJobs(seqs, std::vector<int>(plans.size(), 0),
                                                        weights, nullptr, nullptr, kMicroBatch);
  const double n = static_cast<double>(TotalPredictions(seqs));
  std::vector<double> loss;
  for (double v : nll) loss.push_back(v / n);
  return loss;
}

CostTerms CostModel::Measure(CostMode mode, const std::vector<Sequence>& seqs,
                             const std::optional<Plan>& centre, bool pairs, int fit_switches) {
  switch (mode) {
    case CostMode::kLoss:
      return MeasureLoss(seqs, centre, pairs);
    case CostMode::kLocal:
      return MeasureLocal(seqs, centre, fit_switches);
    case CostMode::kFisher:
      return MeasureFisher(seqs, centre, pairs);
  }
  HIQ_CHECK(false);
  return {};
}

CostModel::Centre CostModel::RunCentre(const std::vector<Sequence>& seqs,
                                       const std::optional<Plan>& centre) {
  Centre c;
  c.blocks = CentreBlocks(centre);
  c.nll =
      pipeline_.ForwardJobs(seqs, {0}, CentreWeights(c.blocks), nullptr, &c.inputs, kMicroBatch)[0];
  return c;
}

std::vector<const BlockWeights<float>*> CostModel::SwitchWeights(
    const Centre& centre, const std::vector<std::pair<int, int>>& moves,
    BlockWeights<float>& scratch) const {
  const Stage<float>& stage = pipeline_.stage();
  std::vector<const BlockWeights<float>*> w(stage.blocks.size());
  for (size_t b = 0; b < w.size(); ++b) w[b] = centre.Block(b);
  const int b = BlockOfLayer(moves.front().first) - stage.block_begin;
  if (b >= 0 && b < static_cast<int>(w.size())) {  // this rank owns the switched block
    scratch = w[static_cast<size_t>(b)] ? *w[static_cast<size_t>(b)]
                                        : stage.blocks[static_cast<size_t>(b)];
    for (const auto& [l, m] : moves) {
      QuantizeLayerInto(l, m, scratch.linear(LinearOfLayer(l)));
    }
    w[static_cast<size_t>(b)] = &scratch;
  }
  return w;
}

CostTerms CostModel::MeasureLoss(const std::vector<Sequence>& seqs,
                                 const std::optional<Plan>& centre, bool pairs) {
  const auto start = Clock::now();
  // The centre itself, caching every block's input under it.
  const Centre c = RunCentre(seqs, centre);
  const double centre_nll = c.nll;

  // Every switch, in one global order that every rank builds alike.
  std::vector<Switch> switches;
  for (int l = 0; l < n_layers_; ++l) {
    for (int m = 0; m < n_candidates(); ++m) {
      if (m != CentreCandidate(centre, l)) switches.push_back({{{l, m}}});
    }
  }
  const size_t n_single = switches.size();
  if (pairs) {
    for (int l1 = 0; l1 < n_layers_; ++l1) {
      for (int l2 = l1 + 1; l2 < n_layers_ && BlockOfLayer(l2) == BlockOfLayer(l1); ++l2) {
        for (int m1 = 0; m1 < n_candidates(); ++m1) {
          for (int m2 = 0; m2 < n_candidates(); ++m2) {
            if (m1 == CentreCandidate(centre, l1) || m2 == CentreCandidate(centre, l2)) continue;
            switches.push_back({{{l1, m1}, {l2, m2}}});
          }
        }
      }
    }
  }
  std::vector<int> starts;
  for (const Switch& s : switches) starts.push_back(s.block());

  BlockWeights<float> scratch;
  const JobWeights weights = [&](int j) {
    return SwitchWeights(c, switches[static_cast<size_t>(j)].layer_candidate, scratch);
  };
  const std::vector<double> nll =
      pipeline_.ForwardJobs(seqs, starts, weights, &c.inputs, nullptr, kMicroBatch);

  const double n = static_cast<double>(TotalPredictions(seqs));
  CostTerms terms;
  terms.centre_loss = centre_nll / n;
  terms.diag.assign(static_cast<size_t>(n_layers_),
                    std::vector<double>(static_cast<size_t>(n_candidates()), 0.0));
  for (size_t j = 0; j < n_single; ++j) {
    const auto [l, m] = switches[j].layer_candidate[0];
    terms.diag[static_cast<size_t>(l)][static_cast<size_t>(m)] = (nll[j] - centre_nll) / n;
  }
  if (pairs) {
    // Polarisation around the centre: both - first - second + centre (centre moves are zero).
    auto single = [&](int l, int m) {
      return m == CentreCandidate(centre, l)
                 ? centre_nll
                 : centre_nll + n * terms.diag[static_cast<size_t>(l)][static_cast<size_t>(m)];
    };
    std::map<std::pair<int, int>, size_t> pair_index;
    for (size_t j = n_single; j < switches.size(); ++j) {
      const auto [l1, m1] = switches[j].layer_candidate[0];
      const auto [l2, m2] = switches[j].layer_candidate[1];
      auto [it, fresh] = pair_index.try_emplace({l1, l2}, terms.pairs.size());
      if (fresh) {
        terms.pairs.push_back(
            {l1, l2,
             std::vector<double>(static_cast<size_t>(n_candidates() * n_candidates()), 0.0)});
      }
      terms.pairs[it->second].cost[static_cast<size_t>(m1 * n_candidates() + m2)] =
          (nll[j] - single(l1, m1) - single(l2, m2) + centre_nll) / n;
    }
  }
  terms.evaluations = static_cast<int>(switches.size()) + 1;
  terms.seconds = Seconds(start);
  return terms;
}

CostTerms CostModel::MeasureFisher(const std::vector<Sequence>& seqs,
                                   const std::optional<Plan>& centre, bool pairs) {
  const auto start = Clock::now();
  const Stage<float>& stage = pipeline_.stage();
  const size_t n_local = stage.blocks.size();
  const int K = n_candidates();
  // Delta_{l,m} = Q_{l,m}(W) - W_centre for this rank's layers.
  std::vector<BlockWeights<float>> centre_blocks = CentreBlocks(centre);
  std::vector<int> local_layers;
  std::vector<std::vector<Matrix<float>>> delta;
  for (size_t b = 0; b < n_local; ++b) {
    for (Linear kind : kLinears) {
      const int l = LayerIndex(stage.block_begin + static_cast<int>(b), kind);
      const Matrix<float>& wc =
          centre_blocks.empty() ? stage.blocks[b].linear(kind) : centre_blocks[b].linear(kind);
      local_layers.push_back(l);
      delta.emplace_back();
      for (int m = 0; m < K; ++m) {
        Matrix<float> q;
        QuantizeLayerInto(l, m, q);
        delta.back().push_back(q - wc);
      }
    }
  }
  const size_t N = seqs.size();
  std::vector<double> s_local(N * local_layers.size() * static_cast<size_t>(K), 0.0);
  double centre_loss_sum = 0;
  // Gradients are taken at the centre.
  const std::vector<double> loss = pipeline_.ForwardBackward(
      seqs, 2, CentreWeights(centre_blocks), [&](int n, const Stage<float>& grad) {
        for (size_t i = 0; i < local_layers.size(); ++i) {
          const size_t b = i / kLinears.size();
          const Matrix<float>& g = grad.blocks[b].linear(kLinears[i % kLinears.size()]);
          for (int m = 0; m < K; ++m) {
            const Matrix<float>& d = delta[i][static_cast<size_t>(m)];
            double dot = 0;
            for (int64_t e = 0; e < g.size(); ++e) {
              dot += static_cast<double>(g.data()[e]) * static_cast<double>(d.data()[e]);
            }
            s_local[(static_cast<size_t>(n) * local_layers.size() + i) * static_cast<size_t>(K) +
                    static_cast<size_t>(m)] = dot;
          }
        }
      });
  for (double v : loss) centre_loss_sum += v;

  // S (N x L*K) assembled on every rank; rank r's values follow rank r-1's, each rank's slice
  // being its contiguous layers, so the gathered order is the global layer order per sequence.
  const std::vector<double> gathered = pipeline_.comm().AllGather(s_local);
  const size_t LK = static_cast<size_t>(n_layers_ * K);
  HIQ_CHECK(gathered.size() == N * LK);
  // gathered is [rank][n][local layer][m]; regroup to S[n][l][m].
  std::vector<double> S(N * LK);
  size_t offset = 0;
  const Partition& part = pipeline_.partition();
  for (int r = 0; r < part.n_ranks(); ++r) {
    const size_t first =
        static_cast<size_t>(part.first_block[static_cast<size_t>(r)]) * kNumLinears;
    const size_t count =
        static_cast<size_t>(part.first_block[static_cast<size_t>(r) + 1]) * kNumLinears - first;
    for (size_t n = 0; n < N; ++n) {
      for (size_t i = 0; i < count * static_cast<size_t>(K); ++i) {
        S[n * LK + first * static_cast<size_t>(K) + i] = gathered[offset++];
      }
    }
  }
  CostTerms terms;
  terms.centre_loss = centre_loss_sum / static_cast<double>(N);
  terms.diag.assign(static_cast<size_t>(n_layers_),
                    std::vector<double>(static_cast<size_t>(K), 0.0));
  auto at = [&](size_t n, int l, int m) { return S[n * LK + static_cast<size_t>(l * K + m)]; };
  for (int l = 0; l < n_layers_; ++l) {
    for (int m = 0; m < K; ++m) {
      double sum = 0;
      for (size_t n = 0; n < N; ++n) sum += at(n, l, m) * at(n, l, m);
      terms.diag[static_cast<size_t>(l)][static_cast<size_t>(m)] =
          0.5 * sum / static_cast<double>(N);
    }
  }
  if (pairs) {
    for (int l1 = 0; l1 < n_layers_; ++l1) {
      for (int l2 = l1 + 1; l2 < n_layers_ && BlockOfLayer(l2) == BlockOfLayer(l1); ++l2) {
        PlanProblem::Pair p{l1, l2, std::vector<double>(static_cast<size_t>(K * K), 0.0)};
        for (int m1 = 0; m1 < K; ++m1) {
          for (int m2 = 0; m2 < K; ++m2) {
            double sum = 0;
            for (size_t n = 0; n < N; ++n) sum += at(n, l1, m1) * at(n, l2, m2);
            p.cost[static_cast<size_t>(m1 * K + m2)] = sum / static_cast<double>(N);
          }
        }
        terms.pairs.push_back(std::move(p));
      }
    }
  }
  terms.evaluations = 0;
  terms.seconds = Seconds(start);
  return terms;
}

CostTerms CostModel::MeasureLocal(const std::vector<Sequence>& seqs,
                                  const std::optional<Plan>& centre, int fit_switches) {
  const auto start = Clock::now();
  const Stage<float>& stage = pipeline_.stage();
  const size_t n_local = stage.blocks.size();
  const int K = n_candidates();
  const int64_t T = static_cast<int64_t>(seqs.front().tokens.size());
  const size_t N = seqs.size();
  Centre c = RunCentre(seqs, centre);
  const double centre_nll = c.nll;
  const double n_pred = static_cast<double>(TotalPredictions(seqs));

  // g = dL/d(block output) of L = mean NLL per token over the set, under the centre.
  std::vector<Matrix<float>> grad_out(
      n_local, Matrix<float>::Zero(static_cast<int64_t>(N) * T, stage.config.hidden_size));
  pipeline_.ForwardBackward(
      seqs, 2, CentreWeights(c.blocks), [](int, const Stage<float>&) {},
      [&](int s, size_t b, const Matrix<float>& dh) {
        // dL_s/dh is for the mean over sequence s; the set's mean weighs each sequence by its
        // share of the predictions.
        const float w = static_cast<float>(
            static_cast<double>(seqs[static_cast<size_t>(s)].n_predictions()) / n_pred);
        grad_out[b].middleRows(static_cast<int64_t>(s) * T, T) = dh * w;
      });

  // First-order and quadratic features of every local switch, at the block output.
  const Rope<float> rope = MakeRope<float>(stage.config, T);
  std::vector<double> features;  // [local switch][3]: g.dY, 1/2 g^2 dY^2, dY^2
  for (size_t b = 0; b < n_local; ++b) {
    const BlockWeights<float>& wc = c.Block(b) ? *c.Block(b) : stage.blocks[b];
    Matrix<float> y_centre, y;
    BlockForward<float>(stage.config, wc, rope, T, c.inputs.per_block[b], y_centre, nullptr);
    for (Linear kind : kLinears) {
      const int l = LayerIndex(stage.block_begin + static_cast<int>(b), kind);
      for (int m = 0; m < K; ++m) {
        if (m == CentreCandidate(centre, l)) continue;
        BlockWeights<float> w = wc;
        QuantizeLayerInto(l, m, w.linear(kind));
        BlockForward<float>(stage.config, w, rope, T, c.inputs.per_block[b], y, nullptr);
        double first = 0, quad_g = 0, quad = 0;
        for (int64_t e = 0; e < y.size(); ++e) {
          const double dy =
              static_cast<double>(y.data()[e]) - static_cast<double>(y_centre.data()[e]);
          const double g = grad_out[b].data()[e];
          first += g * dy;
          quad_g += 0.5 * g * g * dy * dy;
          quad += dy * dy;
        }
        features.insert(features.end(), {first, quad_g, quad});
      }
    }
  }
  const std::vector<double> all = pipeline_.comm().AllGather(features);
  std::vector<std::pair<int, int>> switches;  // global order = rank order = layer order
  for (int l = 0; l < n_layers_; ++l) {
    for (int m = 0; m < K; ++m) {
      if (m != CentreCandidate(centre, l)) switches.push_back({l, m});
    }
  }
  HIQ_CHECK(all.size() == 3 * switches.size());

  // Fit alpha, beta on a few switches measured end to end (evenly spread, deterministic).
  std::vector<size_t> fit;
  const size_t n_fit = std::min(switches.size(), static_cast<size_t>(std::max(0, fit_switches)));
  for (size_t i = 0; i < n_fit; ++i) fit.push_back(i * switches.size() / n_fit);
  std::vector<int> starts;
  for (size_t i : fit) starts.push_back(BlockOfLayer(switches[i].first));
  BlockWeights<float> scratch;
  const JobWeights weights = [&](int j) {
    return SwitchWeights(c, {switches[fit[static_cast<size_t>(j)]]}, scratch);
  };
  const std::vector<double> measured =
      starts.empty()
          ? std::vector<double>{}
          : pipeline_.ForwardJobs(seqs, starts, weights, &c.inputs, nullptr, kMicroBatch);
  // Least squares: residual r = D - first ~ alpha * quad_g + beta * quad.
  double a11 = 0, a12 = 0, a22 = 0, b1 = 0, b2 = 0;
  for (size_t i = 0; i < fit.size(); ++i) {
    const double* f = &all[3 * fit[i]];
    const double r = (measured[i] - centre_nll) / n_pred - f[0];
    a11 += f[1] * f[1];
    a12 += f[1] * f[2];
    a22 += f[2] * f[2];
    b1 += f[1] * r;
    b2 += f[2] * r;
  }
  double alpha = 0, beta = 0;
  const double det = a11 * a22 - a12 * a12;
  if (std::abs(det) > 1e-300 * (a11 * a22 + 1e-300)) {
    alpha = (b1 * a22 - b2 * a12) / det;
    beta = (a11 * b2 - a12 * b1) / det;
  }
  CostTerms terms;
  terms.centre_loss = centre_nll / n_pred;
  terms.diag.assign(static_cast<size_t>(n_layers_),
                    std::vector<double>(static_cast<size_t>(K), 0.0));
  for (size_t i = 0; i < switches.size(); ++i) {
    const double* f = &all[3 * i];
    terms.diag[static_cast<size_t>(switches[i].first)][static_cast<size_t>(switches[i].second)] =
        f[0] + alpha * f[1] + beta * f[2];
  }
  terms.evaluations = static_cast<int>(fit.size()) + 1;
  terms.seconds = Seconds(start);
  return terms;
}

}  // namespace hiq
