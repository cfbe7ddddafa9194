#include "hiq/stages/eval.h"

#include <cmath>
#include <cstdio>
#include <fstream>

#include "hiq/base/error.h"    // ConfigError, IoError
#include "hiq/io/tokenizer.h"  // Tokenizer, TokenizeFile, ReadTokenFile

namespace hiq {

double PerplexityResult::ppl() const { return std::exp(nll()); }

std::string PerplexityResult::KeyValues() const {
  char buf[256];
  std::snprintf(buf, sizeof buf, "tokens=%lld windows=%lld nll=%.17g ppl=%.6f seq_len=%lld",
                static_cast<long long>(tokens), static_cast<long long>(windows), nll(), ppl(),
                static_cast<long long>(seq_len));
  return buf;
}

std::string PerplexityResult::Json() const {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "{\"tokens\": %lld, \"windows\": %lld, \"nll\": %.17g, \"ppl\": %.17g, "
                "\"seq_len\": %lld, \"nll_sum\": %.17g}",
                static_cast<long long>(tokens), static_cast<long long>(windows), nll(), ppl(),
                static_cast<long long>(seq_len), nll_sum);
  return buf;
}

std::vector<Sequence> PerplexityWindows(const std::vector<int32_t>& tokens, int64_t seq_len,
                                        int64_t max_windows, const std::string& source) {
  if (seq_len < 2) {
    throw ConfigError("eval: seq_len " + std::to_string(seq_len) + " is too short; need >= 2");
  }
  int64_t n = static_cast<int64_t>(tokens.size()) / seq_len;
  if (n == 0) {
    throw ConfigError("eval: " + source + " holds " + std::to_string(tokens.size()) +
                      " tokens, fewer than one window of " + std::to_string(seq_len) +
                      ". HINT: use a smaller --seq-len");
  }
  if (max_windows > 0) n = std::min(n, max_windows);
  std::vector<Sequence> windows;
  windows.reserve(static_cast<size_t>(n));
  for (int64_t w = 0; w < n; ++w) {
    windows.push_back(WindowSequence(std::span<const int32_t>(tokens).subspan(
        static_cast<size_t>(w * seq_len), static_cast<size_t>(seq_len))));
  }
  return windows;
}

PerplexityResult Perplexity(Pipeline& pipeline, const std::vector<Sequence>& windows,
                            int micro_batch) {
  const std::vector<double> nll = pipeline.Nll(windows, micro_batch);
  PerplexityResult r;
  r.seq_len = static_cast<int64_t>(windows.front().tokens.size());
  r.windows = static_cast<int64_t>(windows.size());
  for (size_t w = 0; w < windows.size(); ++w) {
    r.nll_sum += nll[w];
    r.tokens += windows[w].n_predictions();
  }
  return r;
}

void CheckSeqLenFitsContext(int64_t seq_len, int64_t context, const std::string& option,
                            const std::string& config_file) {
  if (seq_len > context) {
    throw ConfigError(option + " = " + std::to_string(seq_len) +
                      " is longer than the model's context, max_position_embeddings = " +
                      std::to_string(context) + " in '" + config_file + "'");
  }
}

std::vector<int32_t> LoadTokens(const std::filesystem::path& file, const Tokenizer& tokenizer,
                                Newlines newlines, const ModelVocab& model) {
  CheckTokenizerMatchesModel(tokenizer, model);
  std::ifstream in(file, std::ios::binary);
  if (!in) throw IoError("LoadTokens: cannot open '" + file.string() + "'");
  char magic[8] = {};
  in.read(magic, 8);
  static constexpr char kHdf5Signature[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
  if (in.gcount() == 8 && std::equal(magic, magic + 8, kHdf5Signature)) {
    TokenFile tokens = ReadTokenFile(file);
    CheckTokenFileMatchesModel(tokens, file, tokenizer, model);
    return std::move(tokens.tokens);
  }
  // The tokenizer's ids are below its piece count, which the check above made vocab_size.
  return TokenizeFile(tokenizer, file, newlines);
}

}  // namespace hiq
