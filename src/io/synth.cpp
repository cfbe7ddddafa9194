#include "hiq/io/synth.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "hiq/base/error.h"      // ConfigError, IoError
#include "hiq/base/rng.h"        // RandomStream
#include "hiq/io/safetensors.h"  // WriteSafetensors, EncodeFloats
#include "hiq/model/llama.h"     // ForEachBlockTensor, ZeroBlock

namespace hiq {
namespace {

// Uniform values with standard deviation `std` around `mean` (uniform on [-a, a] has std
// a / sqrt(3)), drawn from the tensor's own stream (seed, name).
std::vector<float> RandomValues(uint64_t seed, const std::string& name, int64_t n, float mean,
                                float std) {
  RandomStream rng(seed, name);
  const float a = std * std::sqrt(3.0f);
  std::vector<float> v(static_cast<size_t>(n));
  // 2u - 1 is exact in double, in [-1, 1); the cast to float may round it up to 1.
  for (auto& x : v) x = mean + a * static_cast<float>(2.0 * rng.Uniform01() - 1.0);
  return v;
}

}  // namespace

LlamaConfig SynthConfig(const std::string& shape, int layers) {
  if (layers < 1) throw ConfigError("synth: --layers must be >= 1, got " + std::to_string(layers));
  LlamaConfig c;
  c.num_hidden_layers = layers;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000;
  c.tie_word_embeddings = false;
  if (shape == "llama2-7b") {
    c.hidden_size = 4096, c.intermediate_size = 11008, c.num_attention_heads = 32;
    c.num_key_value_heads = 32, c.vocab_size = 32000, c.max_position_embeddings = 4096;
  } else if (shape == "llama2-70b") {
    c.hidden_size = 8192, c.intermediate_size = 28672, c.num_attention_heads = 64;
    c.num_key_value_heads = 8, c.vocab_size = 32000, c.max_position_embeddings = 4096;
  } else if (shape == "tiny") {
    c.hidden_size = 64, c.intermediate_size = 172, c.num_attention_heads = 8;
    c.num_key_value_heads = 4, c.vocab_size = 512, c.max_position_embeddings = 512;
  } else {
    throw ConfigError("synth: unknown --shape '" + shape +
                      "'; expected llama2-7b, llama2-70b or tiny");
  }
  return c;
}

SynthResult WriteSyntheticModel(const SynthOptions& options) {
  LlamaConfig config = SynthConfig(options.shape, options.layers);
  if (options.vocab < 0) {
    throw ConfigError("synth: --vocab must be positive, got " + std::to_string(options.vocab));
  }
  if (options.vocab > 0) config.vocab_size = options.vocab;
  const std::optional<DType> dtype = DTypeFromName(options.dtype);
  if (!dtype || !IsFloatDType(*dtype)) {
    throw ConfigError("synth: --dtype '" + options.dtype + "' is not one of F32, F16, BF16");
  }
  config.torch_dtype = *dtype == DType::kF32   ? "float32"
                       : *dtype == DType::kF16 ? "float16"
                                               : "bfloat16";
  std::error_code ec;
  std::filesystem::create_directories(options.out, ec);
  if (ec) throw IoError("synth: cannot create '" + options.out.string() + "': " + ec.message());

  SynthResult result;
  std::vector<std::vector<std::byte>> storage;
  std::vector<TensorToWrite> tensors;
  const std::vector<ModelTensor> specs = ModelTensors(config);
  storage.reserve(specs.size());
  for (const ModelTensor& s : specs) {
    int64_t n = 1;
    for (int64_t d : s.shape) n *= d;
    // Norms near 1, matrices with the usual init scale; quality means nothing here.
    const bool norm = s.shape.size() == 1;
    storage.push_back(
        EncodeFloats(RandomValues(options.seed, s.name, n, norm ? 1.0f : 0.0f, norm ? 0.0f : 0.02f),
                     *dtype, s.name));
    tensors.push_back({s.name, *dtype, s.shape, storage.back()});
    result.params += n;
    result.bytes += static_cast<int64_t>(storage.back().size());
  }
  WriteSafetensors(options.out / "model.safetensors", tensors,
                   {{"format", "pt"}, {"generator", "hiq synth " + options.shape}});

  nlohmann::json j = ToJson(config);
  j["architectures"] = {"LlamaForCausalLM"};
  j["model_type"] = "llama";
  j["hidden_act"] = "silu";
  const std::filesystem::path config_path = options.out / "config.json";
  const std::filesystem::path tmp = options.out / "config.json.tmp";
  {
    std::ofstream out(tmp);
    out << j.dump(2) << "\n";
    if (!out) throw IoError("synth: cannot write '" + tmp.string() + "'");
  }
  std::filesystem::rename(tmp, config_path, ec);
  if (ec) throw IoError("synth: cannot rename to '" + config_path.string() + "': " + ec.message());
  if (!options.tokenizer_from.empty()) {
    std::filesystem::copy_file(options.tokenizer_from / "tokenizer.model",
                               options.out / "tokenizer.model",
                               std::filesystem::copy_options::overwrite_existing, ec);
    if (ec) {
      throw IoError("synth: cannot copy '" + (options.tokenizer_from / "tokenizer.model").string() +
                    "': " + ec.message());
    }
  }
  return result;
}

}  // namespace hiq
