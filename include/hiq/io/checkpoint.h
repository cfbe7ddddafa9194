// hiq/io/checkpoint.h - a Hugging Face LLaMA model directory: config.json plus safetensors weights.
//
// Directory layout (as transformers writes it):
//   config.json                         LlamaForCausalLM fields (see LlamaConfig)
//   model.safetensors                   all weights in one file, or
//   model.safetensors.index.json        {"metadata": {...}, "weight_map": {tensor: shard file}}
//   model-0000k-of-0000n.safetensors    the shards it names (plain file names in this directory)
// model.safetensors wins when both exist, as in transformers.
//
// Design goals: a rank that owns a few blocks touches only what it reads. Construction reads
// config.json and either the single file's header or the index (checking every shard exists);
// a shard's header is read (pread, no mmap) the first time a tensor in it is asked about, and the
// shard is mapped the first time one of its tensors is read. Non-goals: anything hiq cannot run
// (biases, rope_scaling, activations other than SiLU) is refused in config.json, not half-run.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "hiq/dist/mpi.h"        // Comm
#include "hiq/dist/pipeline.h"   // Pipeline
#include "hiq/io/safetensors.h"  // DType, TensorInfo, SafetensorsFile
#include "hiq/io/tokenizer.h"    // ModelVocab
#include "hiq/model/llama.h"     // Stage
#include "hiq/model/tensors.h"   // LlamaConfig, ModelTensors

namespace hiq {

// Reads and validates config.json. IoError if it cannot be read; FormatError naming the file,
// the field and its value for a missing/mistyped field or for anything hiq cannot run:
// architecture not LlamaForCausalLM (and model_type not llama), hidden_act other than silu,
// non-null rope_scaling, attention_bias/mlp_bias true, a non-positive size, hidden_size not
// divisible by num_attention_heads, heads not divisible by num_key_value_heads, a head_dim field
// other than hidden_size / num_attention_heads, an odd head_dim (RoPE rotates pairs).
LlamaConfig ReadLlamaConfig(const std::filesystem::path& config_json);
// What a tokenizer and token ids must agree with (ReadLlamaConfig's vocab_size, and the
// optional bos_token_id / eos_token_id, an integer, a list of them for eos, or null). FormatError
// naming the file for a BOS/EOS id that is not a non-negative integer.
ModelVocab ReadModelVocab(const std::filesystem::path& config_json);
// The same validation on parsed JSON; `source_name` names it in messages.
LlamaConfig LlamaConfigFromJson(const nlohmann::json& json, const std::string& source_name);
// A config.json transformers can load; LlamaConfigFromJson(ToJson(c), ...) == c.
nlohmann::json ToJson(const LlamaConfig& config);

// One row of Checkpoint::List().
struct TensorEntry {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t bytes = 0;
  std::string file;  // the safetensors file name inside the directory
};

// A model directory, opened lazily (see the file comment). Owns the shard headers and mappings
// it has opened; they live as long as the Checkpoint, so references it returns stay valid.
// Thread-safe: every method is const and may be called concurrently (lazy opening is locked).
// Movable, not copyable. Errors: IoError for a missing/unreadable file (a shard named in the index
// that does not exist is reported at construction, naming shard and index), FormatError for bad
// contents or a tensor name that is not in the checkpoint.
class Checkpoint {
 public:
  explicit Checkpoint(const std::filesystem::path& dir);
  ~Checkpoint();
  Checkpoint(Checkpoint&&) noexcept;
  Checkpoint& operator=(Checkpoint&&) noexcept;

  const LlamaConfig& config() const;
  const std::filesystem::path& dir() const;
  // Every tensor, in natural order: embed_tokens, layers 0..n-1 by number (within a layer:
  // input_layernorm, q, k, v, o, post_attention_layernorm, gate, up, down, then others by name),
  // model.norm, lm_head, then any others by name. Reads every shard header.
  std::vector<TensorEntry> List() const;
  bool Has(std::string_view name) const;  // no file access
  const TensorInfo& Info(std::string_view name) const;
  std::vector<float> ReadFloat(std::string_view name) const;  // F32/F16/BF16 -> float
  void ReadFloatInto(std::string_view name, std::span<float> out) const;
  std::span<const std::byte> Bytes(std::string_view name) const;  // raw, in Info(name).dtype
  std::string Sha256(std::string_view name) const;  // of the raw bytes, read without mapping
  std::vector<std::string> Files() const;           // weight file names, sorted
  std::vector<std::string> MappedFiles() const;     // the ones opened so far, sorted
  // The tensors read or mapped so far (SafetensorsFile::TouchedTensors of every opened file),
  // sorted: a pipeline rank's are exactly its own slice's.
  std::vector<std::string> TouchedTensors() const;

  // Every weight a LlamaForCausalLM with config() needs (ModelTensors of hiq/model/tensors.h) is
  // present, float, and shaped as the config says, and no tensor of a block is beyond it: no block
  // >= num_hidden_layers, no block tensor the table does not have (a bias) but RoPE's inv_freq.
  // FormatError naming the tensor, its file, what was found and what config.json implies. Other
  // tensors outside the blocks are allowed. Reads every shard header, no weights.
  void CheckLlamaTensors() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Reads only the tensors of one slice of the model (blocks [block_begin, block_end), the
// embedding on the first stage, the final norm and head on the last) into a Stage; with tied
// embeddings the head is a copy of the embedding table. FormatError naming a tensor whose shape
// is not what config.json implies.
Stage<float> LoadStage(const Checkpoint& checkpoint, int block_begin, int block_end,
                       bool has_embedding, bool has_head);

// The model pipelined over `comm`'s ranks, each rank reading (and mapping) only its own slice.
Pipeline LoadPipeline(const Comm& comm, const Checkpoint& checkpoint);

// What `hiq inspect` prints: config fields, a tensor table (name, dtype, shape, bytes, file),
// the parameter count, and last one line "params=N tensors=N files=N dtype=F32 bytes=N".
void PrintInspect(const Checkpoint& checkpoint, std::ostream& out);
nlohmann::json InspectJson(const Checkpoint& checkpoint);  // the same, for --json

}  // namespace hiq
