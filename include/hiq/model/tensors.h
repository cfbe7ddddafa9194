// hiq/model/tensors.h - the LLaMA architecture as data: the model config and the one tensor table.
//
// Every pass that touches weights walks this table (gemma.cpp's ForEachTensor): loading a stage,
// checking a checkpoint against config.json, zeroing gradients, parameter counts and the rank
// partition, Fisher accumulation, candidates and cost terms, quantization, shard writing,
// fingerprints and synthetic checkpoints. A new architecture is a change here, in one place.
//
// Names follow Hugging Face's LlamaForCausalLM: "model.embed_tokens.weight",
// "model.layers.<i>.<suffix>" for the block tensors below, "model.norm.weight", and
// "lm_head.weight" unless the embedding is tied. Shapes are (out, in) as stored (y = x W^T).
// A "layer" is one quantized linear tensor of one block; its global index is
// block * kNumLinears + its position among the linear entries (kLinears order).
// Pure data and arithmetic: no I/O, no MPI; thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hiq {

// The LlamaForCausalLM fields hiq runs. Defaults where transformers has them.
struct LlamaConfig {
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // default: num_attention_heads (no GQA)
  int64_t num_hidden_layers = 0;
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 0.0;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  std::string torch_dtype;  // "float32", "bfloat16", ... ("" if config.json has none)
  int64_t head_dim() const {
    return num_attention_heads > 0 ? hidden_size / num_attention_heads : 0;
  }
  bool operator==(const LlamaConfig&) const = default;
};

// A size in config.json terms; every shape in the table is a pair of these.
enum class Dim { kOne, kHidden, kIntermediate, kQHeads, kKvHeads, kVocab };
int64_t DimSize(const LlamaConfig& config, Dim dim);
std::string_view DimName(Dim dim);  // "hidden_size", "num_key_value_heads * head_dim", ...

// The linear layers of a block, in the order every pass visits them.
enum class Linear { kQ, kK, kV, kO, kGate, kUp, kDown };

// One tensor of a transformer block. rows == kOne: a 1-D [cols] tensor in the checkpoint, held
// as a (1, cols) matrix in memory.
struct BlockTensor {
  std::string_view suffix;  // after "model.layers.<i>.", e.g. "self_attn.q_proj.weight"
  Dim rows, cols;
  bool quantized;  // a linear layer: planned, quantized and packed; otherwise kept as stored
  Linear linear;   // which one, when quantized
};

// THE table, in checkpoint order (BlockWeights in hiq/model/llama.h mirrors it member by member).
inline constexpr auto kBlockTensors = std::to_array<BlockTensor>({
    {"input_layernorm.weight", Dim::kOne, Dim::kHidden, false, Linear::kQ},
    {"self_attn.q_proj.weight", Dim::kQHeads, Dim::kHidden, true, Linear::kQ},
    {"self_attn.k_proj.weight", Dim::kKvHeads, Dim::kHidden, true, Linear::kK},
    {"self_attn.v_proj.weight", Dim::kKvHeads, Dim::kHidden, true, Linear::kV},
    {"self_attn.o_proj.weight", Dim::kHidden, Dim::kQHeads, true, Linear::kO},
    {"post_attention_layernorm.weight", Dim::kOne, Dim::kHidden, false, Linear::kQ},
    {"mlp.gate_proj.weight", Dim::kIntermediate, Dim::kHidden, true, Linear::kGate},
    {"mlp.up_proj.weight", Dim::kIntermediate, Dim::kHidden, true, Linear::kUp},
    {"mlp.down_proj.weight", Dim::kHidden, Dim::kIntermediate, true, Linear::kDown},
});

// The quantized entries of the table, in table order.
inline constexpr size_t kNumLinears = [] {
  size_t n = 0;
  for (const BlockTensor& t : kBlockTensors) n += t.quantized ? 1 : 0;
  return n;
}();
inline constexpr std::array<Linear, kNumLinears> kLinears = [] {
  std::array<Linear, kNumLinears> out{};
  size_t i = 0;
  for (const BlockTensor& t : kBlockTensors) {
    if (t.quantized) out[i++] = t.linear;
  }
  return out;
}();
// Layer arithmetic relies on Linear's values being the positions in kLinears.
static_assert([] {
  for (size_t i = 0; i < kNumLinears; ++i) {
    if (static_cast<size_t>(kLinears[i]) != i) return false;
  }
  return true;
}());

const BlockTensor& LinearTensor(Linear kind);
std::string_view LinearName(Linear kind);  // "self_attn.q_proj" ... "mlp.down_proj"
std::string BlockTensorName(int block, std::string_view suffix);  // "model.layers.3.<suffix>"
std::string LinearTensorName(int block, Linear kind);  // "model.layers.3.mlp.up_proj.weight"
// (rows, cols) in memory (1-D tensors as (1, cols)).
std::pair<int64_t, int64_t> TensorShape(const LlamaConfig& config, const BlockTensor& tensor);
std::pair<int64_t, int64_t> LinearShape(const LlamaConfig& config, Linear kind);  // (n_out, n_in)

// Global layer indices (see the file comment).
int NumLayers(const LlamaConfig& config);
int LayerIndex(int block, Linear kind);
int BlockOfLayer(int layer);
Linear LinearOfLayer(int layer);
std::string LayerName(int layer);  // "model.layers.3.mlp.up_proj"

// Every tensor of a model (or of a slice of it: blocks [block_begin, block_end), the embedding,
// the head), in checkpoint order, with its stored shape.
struct ModelTensor {
  std::string name;
  std::vector<int64_t> shape;         // as stored: 1-D for norms
  std::string shape_doc;              // "[num_attention_heads * head_dim, hidden_size]"
  int block = -1;                     // -1 for the embedding, final norm and head
  const BlockTensor* spec = nullptr;  // the table entry of a block tensor
};
struct ModelSlice {
  int block_begin = 0, block_end = -1;  // -1: every block
  bool embedding = true, head = true;
};
// The head is "lm_head.weight" unless config.tie_word_embeddings (then the embedding serves).
std::vector<ModelTensor> ModelTensors(const LlamaConfig& config, ModelSlice slice = {});

// Parameters of one block, of the embedding and of the head (final norm + lm_head, counted once
// more even when tied: the last rank holds a copy).
int64_t BlockParams(const LlamaConfig& config);
int64_t EmbeddingParams(const LlamaConfig& config);
int64_t HeadParams(const LlamaConfig& config);

}  // namespace hiq
