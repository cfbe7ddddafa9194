#include "hiq/stages/calibration.h"

#include <cmath>
#include <optional>

#include "hiq/base/error.h"    // ConfigError
#include "hiq/base/rng.h"      // RandomStream
#include "hiq/io/tokenizer.h"  // Tokenizer
#include "hiq/stages/eval.h"   // LoadTokens

namespace hiq {

std::vector<std::vector<int32_t>> RandomWindows(const std::vector<int32_t>& tokens, int n,
                                                int64_t length, uint64_t seed,
                                                const std::string& name,
                                                const std::string& source) {
  const int64_t total = static_cast<int64_t>(tokens.size());
  if (total < length) {
    throw ConfigError("calibration." + name + ": " + source + " holds " + std::to_string(total) +
                      " tokens, fewer than one window of seq_len + 1 = " + std::to_string(length) +
                      ". HINT: lower calibration." + name + ".seq_len");
  }
  const uint64_t starts = static_cast<uint64_t>(total - length + 1);
  if (starts < static_cast<uint64_t>(n)) {
    // Fewer starts than sequences: some would be drawn twice, and the set would hold less than
    // it claims.
    throw ConfigError("calibration." + name + ": " + source + " holds " + std::to_string(total) +
                      " tokens, which give " + std::to_string(starts) +
                      " distinct windows of seq_len + 1 = " + std::to_string(length) +
                      ", fewer than n_sequences = " + std::to_string(n) +
                      ". HINT: lower calibration." + name + ".n_sequences or use a longer text");
  }
  RandomStream rng(seed, name);
  std::vector<std::vector<int32_t>> windows;
  for (int i = 0; i < n; ++i) {
    const int64_t start = static_cast<int64_t>(rng.UniformInt(starts));
    windows.emplace_back(tokens.begin() + start, tokens.begin() + start + length);
  }
  return windows;
}

int32_t SampleToken(std::span<const float> logits, double temperature, double u) {
  double max = -INFINITY;
  for (float x : logits) max = std::max(max, static_cast<double>(x));
  std::vector<double> p(logits.size());
  double sum = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    p[i] = std::exp((static_cast<double>(logits[i]) - max) / temperature);
    sum += p[i];
  }
  double acc = 0;
  const double target = u * sum;
  for (size_t i = 0; i < p.size(); ++i) {
    acc += p[i];
    if (target < acc) return static_cast<int32_t>(i);
  }
  return static_cast<int32_t>(p.size() - 1);
}

namespace {

std::vector<std::vector<int32_t>> Generate(const SampleSetConfig& set, const std::string& name,
                                           Pipeline& pipeline, int32_t bos) {
  const size_t n = static_cast<size_t>(set.n_sequences);
  std::vector<std::vector<int32_t>> seqs(n, std::vector<int32_t>{bos});
  std::vector<RandomStream> rngs;  // one per sequence, so a sequence never depends on the others
  for (size_t i = 0; i < n; ++i) rngs.emplace_back(set.seed, name, i);
  std::vector<int32_t> next(n);
  std::vector<KvCache<float>> caches;
  for (int step = 0; step < set.seq_len; ++step) {
    std::vector<int32_t> current(n);
    for (size_t i = 0; i < n; ++i) current[i] = seqs[i].back();
    const Matrix<float> logits = pipeline.DecodeStep(current, step, caches);
    if (pipeline.is_last()) {
      for (size_t i = 0; i < n; ++i) {
        const auto row = logits.row(static_cast<int64_t>(i));
        next[i] = SampleToken(std::span<const float>(row.data(), static_cast<size_t>(row.size())),
                              set.temperature, rngs[i].Uniform01());
      }
    }
    pipeline.comm().Broadcast(std::span<int32_t>(next), pipeline.comm().size() - 1);
    for (size_t i = 0; i < n; ++i) seqs[i].push_back(next[i]);
  }
  return seqs;
}

// The model's tokenizer, checked against it, when it has one (a generate set needs none: BOS is
// LLaMA's <s> then).
std::optional<Tokenizer> CheckedTokenizer(const std::filesystem::path& tokenizer_model,
                                          const ModelVocab& model) {
  if (!std::filesystem::exists(tokenizer_model)) return std::nullopt;
  std::optional<Tokenizer> tokenizer(std::in_place, tokenizer_model);
  CheckTokenizerMatchesModel(*tokenizer, model);
  return tokenizer;
}

// The tokens of a text or token set, checked against the model.
std::vector<int32_t> SetTokens(const SampleSetConfig& set,
                               const std::filesystem::path& tokenizer_model,
                               const ModelVocab& model) {
  return LoadTokens(set.path, Tokenizer(tokenizer_model), set.newlines, model);
}

}  // namespace

void CheckSampleSet(const SampleSetConfig& set, const std::string& name,
                    const std::filesystem::path& tokenizer_model, const ModelVocab& model,
                    int64_t context) {
  CheckSeqLenFitsContext(set.seq_len, context, "calibration." + name + ".seq_len",
                         model.config_file);
  if (set.source == SampleSource::kGenerate) {
    CheckedTokenizer(tokenizer_model, model);
    return;
  }
  // Drawing the windows (cheap next to any pass) is what checks that the file has enough.
  RandomWindows(SetTokens(set, tokenizer_model, model), set.n_sequences, set.seq_len + 1, set.seed,
                name, set.path.string());
}

void CheckCalibrationSets(const RunConfig& config, ConfigStage stage, const ModelVocab& model,
                          int64_t context) {
  const std::filesystem::path& tok = config.model.tokenizer;
  CheckSampleSet(config.calibration.fisher, "fisher", tok, model, context);
  CheckSampleSet(config.calibration.cost, "cost", tok, model, context);
  CheckSampleSet(config.calibration.check, "check", tok, model, context);
  if (stage == ConfigStage::kQuantize) {
    CheckSampleSet(config.calibration.reconstruction, "reconstruction", tok, model, context);
  }
}

std::vector<Sequence> BuildSampleSet(const SampleSetConfig& set, const std::string& name,
                                     Pipeline& pipeline,
                                     const std::filesystem::path& tokenizer_model,
                                     const ModelVocab& model) {
  std::vector<std::vector<int32_t>> windows;
  if (set.source == SampleSource::kGenerate) {
    // LLaMA's <s> is 1; a model with its own tokenizer says so.
    const std::optional<Tokenizer> tokenizer = CheckedTokenizer(tokenizer_model, model);
    windows = Generate(set, name, pipeline, tokenizer ? tokenizer->bos_id() : 1);
  } else {
    const std::vector<int32_t> tokens = SetTokens(set, tokenizer_model, model);
    windows =
        RandomWindows(tokens, set.n_sequences, set.seq_len + 1, set.seed, name, set.path.string());
  }
  std::vector<Sequence> seqs;
  for (const auto& w : windows) seqs.push_back(NextTokenSequence(w));
  return seqs;
}

}  // namespace hiq
