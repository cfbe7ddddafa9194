// The tensor table's derived views (see hiq/model/tensors.h).
#include "hiq/model/tensors.h"

#include "hiq/base/error.h"  // HIQ_CHECK

namespace hiq {

int64_t DimSize(const LlamaConfig& c, Dim dim) {
  switch (dim) {
    case Dim::kOne:
      return 1;
    case Dim::kHidden:
      return c.hidden_size;
    case Dim::kIntermediate:
      return c.intermediate_size;
    case Dim::kQHeads:
      return c.num_attention_heads * c.head_dim();
    case Dim::kKvHeads:
      return c.num_key_value_heads * c.head_dim();
    case Dim::kVocab:
      return c.vocab_size;
  }
  HIQ_CHECK(false);
  return 0;
}

std::string_view DimName(Dim dim) {
  switch (dim) {
    case Dim::kOne:
      return "1";
    case Dim::kHidden:
      return "hidden_size";
    case Dim::kIntermediate:
      return "intermediate_size";
    case Dim::kQHeads:
      return "num_attention_heads * head_dim";
    case Dim::kKvHeads:
      return "num_key_value_heads * head_dim";
    case Dim::kVocab:
      return "vocab_size";
  }
  HIQ_CHECK(false);
  return "";
}

const BlockTensor& LinearTensor(Linear kind) {
  for (const BlockTensor& t : kBlockTensors) {
    if (t.quantized && t.linear == kind) return t;
  }
  HIQ_CHECK(false);
  return kBlockTensors[0];
}

std::string_view LinearName(Linear kind) {
  constexpr std::string_view kWeight = ".weight";
  std::string_view suffix = LinearTensor(kind).suffix;
  HIQ_CHECK(suffix.ends_with(kWeight));
  suffix.remove_suffix(kWeight.size());
  return suffix;
}

std::string BlockTensorName(int block, std::string_view suffix) {
  return "model.layers." + std::to_string(block) + "." + std::string(suffix);
}

std::string LinearTensorName(int block, Linear kind) {
  return BlockTensorName(block, LinearTensor(kind).suffix);
}

std::pair<int64_t, int64_t> TensorShape(const LlamaConfig& c, const BlockTensor& tensor) {
  return {DimSize(c, tensor.rows), DimSize(c, tensor.cols)};
}

std::pair<int64_t, int64_t> LinearShape(const LlamaConfig& c, Linear kind) {
  return TensorShape(c, LinearTensor(kind));
}

int NumLayers(const LlamaConfig& c) {
  return static_cast<int>(c.num_hidden_layers) * static_cast<int>(kNumLinears);
}
int LayerIndex(int block, Linear kind) {
  return block * static_cast<int>(kNumLinears) + static_cast<int>(kind);
}
int BlockOfLayer(int layer) { return layer / static_cast<int>(kNumLinears); }
Linear LinearOfLayer(int layer) {
  return kLinears[static_cast<size_t>(layer % static_cast<int>(kNumLinears))];
}
std::string LayerName(int layer) {
  return "model.layers." + std::to_string(BlockOfLayer(layer)) + "." +
         std::string(LinearName(LinearOfLayer(layer)));
}

namespace {

ModelTensor Global(const LlamaConfig& c, std::string name, Dim rows, Dim cols) {
  ModelTensor t;
  t.name = std::move(name);
  if (rows == Dim::kOne) {
    t.shape = {DimSize(c, cols)};
    t.shape_doc = "[" + std::string(DimName(cols)) + "]";
  } else {
    t.shape = {DimSize(c, rows), DimSize(c, cols)};
    t.shape_doc = "[" + std::string(DimName(rows)) + ", " + std::string(DimName(cols)) + "]";
  }
  return t;
}

}  // namespace

std::vector<ModelTensor> ModelTensors(const LlamaConfig& c, ModelSlice slice) {
  const int end = slice.block_end < 0 ? static_cast<int>(c.num_hidden_layers) : slice.block_end;
  std::vector<ModelTensor> out;
  if (slice.embedding)
    out.push_back(Global(c, "model.embed_tokens.weight", Dim::kVocab, Dim::kHidden));
  for (int b = slice.block_begin; b < end; ++b) {
    for (const BlockTensor& spec : kBlockTensors) {
      ModelTensor t = Global(c, BlockTensorName(b, spec.suffix), spec.rows, spec.cols);
      t.block = b;
      t.spec = &spec;
      out.push_back(std::move(t));
    }
  }
  if (slice.head) {
    out.push_back(Global(c, "model.norm.weight", Dim::kOne, Dim::kHidden));
    if (!c.tie_word_embeddings)
      out.push_back(Global(c, "lm_head.weight", Dim::kVocab, Dim::kHidden));
  }
  return out;
}

int64_t BlockParams(const LlamaConfig& c) {
  int64_t n = 0;
  for (const BlockTensor& t : kBlockTensors) {
    const auto [rows, cols] = TensorShape(c, t);
    n += rows * cols;
  }
  return n;
}
int64_t EmbeddingParams(const LlamaConfig& c) { return c.vocab_size * c.hidden_size; }
int64_t HeadParams(const LlamaConfig& c) { return c.hidden_size + c.vocab_size * c.hidden_size; }

}  // namespace hiq
