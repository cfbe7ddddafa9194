// hiq/io/synth.h - random-weight LLaMA checkpoints with the real layer shapes, for scale and speed
// tests (`hiq synth`). Quality on them means nothing; their shapes and byte counts are real.
//
// Every tensor's values come from its own RandomStream (seed, tensor name) (hiq/base/rng.h), so
// a model with more layers shares its first layers' weights with a smaller one of the same
// seed, and the output never depends on the order tensors are generated in.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "hiq/io/checkpoint.h"  // LlamaConfig

namespace hiq {

struct SynthOptions {
  std::string shape;  // "llama2-7b" | "llama2-70b" | "tiny"
  int layers = 0;     // blocks to write (>= 1)
  uint64_t seed = 0;
  std::filesystem::path out;             // created if missing; files replaced atomically
  std::filesystem::path tokenizer_from;  // copy its tokenizer.model if set
  std::string dtype = "F16";             // F32 | F16 | BF16
  // vocab_size instead of the shape's (0: the shape's). The blocks keep their real shapes; a
  // small vocabulary lets a small real tokenizer (e.g. stories260K's 512 pieces) drive a
  // 7B-shaped model, since a tokenizer must have vocab_size pieces.
  int64_t vocab = 0;
};

struct SynthResult {
  int64_t params = 0, bytes = 0;
};

// The config of a named shape with `layers` blocks. ConfigError for an unknown shape.
LlamaConfig SynthConfig(const std::string& shape, int layers);

// Writes config.json, model.safetensors (and tokenizer.model) into options.out.
// ConfigError for bad options, IoError if writing fails.
SynthResult WriteSyntheticModel(const SynthOptions& options);

}  // namespace hiq
