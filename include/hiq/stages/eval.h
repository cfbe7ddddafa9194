// hiq/stages/eval.h - perplexity on held-out text, the GPTQ protocol, over the rank pipeline.
//
// The text is tokenized once as a whole with one BOS at the start, cut into non-overlapping
// windows of seq_len tokens (the remainder is dropped, as GPTQ does), and every token of a window
// but its first is predicted. The negative log-likelihoods are summed in double, window by window
// in order, by the last rank; so the result is bit-identical for any rank count.
// (GPTQ's script multiplies each window's mean loss by seq_len rather than seq_len - 1; we report
// the exact mean over predicted tokens.)
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "hiq/dist/pipeline.h"  // Pipeline, Sequence

namespace hiq {

struct PerplexityResult {
  int64_t seq_len = 0, windows = 0, tokens = 0;  // tokens = predicted tokens
  double nll_sum = 0;
  double nll() const { return nll_sum / static_cast<double>(tokens); }  // mean, nats/token
  double ppl() const;
  // "tokens=T windows=W nll=X ppl=Y seq_len=N" (nll with 17 significant digits)
  std::string KeyValues() const;
  std::string Json() const;
};

// Windows of `seq_len` tokens (at most max_windows of them; 0 = all). ConfigError if the text
// holds fewer than seq_len tokens.
std::vector<Sequence> PerplexityWindows(const std::vector<int32_t>& tokens, int64_t seq_len,
                                        int64_t max_windows, const std::string& source);

// Collective over the pipeline's ranks; every rank gets the same result.
PerplexityResult Perplexity(Pipeline& pipeline, const std::vector<Sequence>& windows,
                            int micro_batch);

// Token ids of an evaluation or calibration file: an HDF5 token file written by `hiq tokenize`
// (recognised by its signature) or plain text tokenized with `tokenizer_model` (one BOS first).
std::vector<int32_t> LoadTokens(const std::filesystem::path& file,
                                const std::filesystem::path& tokenizer_model);

}  // namespace hiq
