// hiq/stages/calibration.h - the calibration sequence sets (calibration.fisher / .cost / .check).
//
// A set is N sequences of seq_len + 1 tokens (seq_len predictions each), from one of:
//   text      random windows of a text file tokenized as a whole (one BOS at its start),
//   tokens    random windows of a token file written by `hiq tokenize`,
//   generate  sampled from the model itself from BOS at the set's temperature (data-free,
//             in-domain), through the rank pipeline.
// Randomness is seeded per set and per sequence from (set seed, set name[, sequence index])
// (RandomStream, hiq/base/rng.h), so a set never depends on the rank count, the thread count or
// the other sets.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "hiq/config/config.h"  // SampleSetConfig
#include "hiq/dist/pipeline.h"  // Pipeline, Sequence
#include "hiq/io/tokenizer.h"   // ModelVocab

namespace hiq {

// Collective over the pipeline's ranks (generation runs the model); every rank returns the same
// sequences. The tokenizer and token files are checked against `model` (LoadTokens);
// ConfigError when a file holds fewer than seq_len + 1 tokens or fewer distinct windows than
// n_sequences.
std::vector<Sequence> BuildSampleSet(const SampleSetConfig& set, const std::string& name,
                                     Pipeline& pipeline,
                                     const std::filesystem::path& tokenizer_model,
                                     const ModelVocab& model);

// Everything BuildSampleSet would refuse, found without the model's weights, so that a stage
// checks every set it will read before its first pass (`name`: "fisher", "cost"...): seq_len
// within the model's `context` (ConfigError naming calibration.<name>.seq_len), the tokenizer
// and token file against the model, and the file long enough for n_sequences distinct windows.
void CheckSampleSet(const SampleSetConfig& set, const std::string& name,
                    const std::filesystem::path& tokenizer_model, const ModelVocab& model,
                    int64_t context);
// CheckSampleSet of every set `stage` reads (the plan's three; quantize adds reconstruction).
void CheckCalibrationSets(const RunConfig& config, ConfigStage stage, const ModelVocab& model,
                          int64_t context);

// Random windows of `length` tokens from `tokens`, starts uniform over the possible ones, drawn
// in order from the stream (seed, name). ConfigError naming the set and `source` when tokens
// hold fewer than `length` or fewer than n starts (tokens - length + 1 < n).
std::vector<std::vector<int32_t>> RandomWindows(const std::vector<int32_t>& tokens, int n,
                                                int64_t length, uint64_t seed,
                                                const std::string& name, const std::string& source);

// Index drawn from the categorical distribution softmax(logits / temperature), with u in [0, 1).
int32_t SampleToken(std::span<const float> logits, double temperature, double u);

}  // namespace hiq
