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
#include "hiq/io/tokenizer.h"   // Tokenizer, ModelVocab, Newlines

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

// ConfigError naming `option` (e.g. "--seq-len") and both numbers if seq_len is longer than the
// model's context (max_position_embeddings of `config_file`): positions past it were never
// trained, and RoPE tables end there.
void CheckSeqLenFitsContext(int64_t seq_len, int64_t context, const std::string& option,
                            const std::string& config_file);

// Token ids of an evaluation or calibration file, checked against the model before anything is
// computed: `tokenizer` must match the model (CheckTokenizerMatchesModel), and the file is
// either an HDF5 token file written by `hiq tokenize` (recognised by its signature; its
// tokenizer and every id checked, CheckTokenFileMatchesModel; `newlines` is the file's own) or
// text read with `newlines` and tokenized by `tokenizer` (one BOS first).
std::vector<int32_t> LoadTokens(const std::filesystem::path& file, const Tokenizer& tokenizer,
                                Newlines newlines, const ModelVocab& model);

}  // namespace hiq
