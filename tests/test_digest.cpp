// Tests for hiq/io/digest.h: a layer's digest covers every stored value, its spec and its
// shape; it is the same whichever shard holds the layer; an output's digest is the same for one
// and for two shards, is the SHA-256 of the lines before it, and is refused for a changed shard.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "hiq/base/error.h"   // FormatError
#include "hiq/base/rng.h"     // RandomStream
#include "hiq/base/sha256.h"  // Sha256Hex, Sha256HexOfFile
#include "hiq/io/digest.h"    // the module under test
#include "hiq/io/shard.h"     // WriteShard, WriteModelFile, ShardReader
#include "hiq/quant/quant.h"  // QuantizeLayer, LayerBits, HighCount
#include "test_util.h"        // TempDir, EXPECT_THROW_WITH

namespace hiq {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kOut = 8, kIn = 64;

// A layer of normal weights quantized round-to-nearest, its high columns every 16th.
QuantizedLayer MakeLayer(uint64_t seed, const QuantSpec& spec, int64_t n_high) {
  RandomStream rng(seed, "test_digest");
  std::vector<float> w(static_cast<size_t>(kOut * kIn));
  for (float& v : w) v = static_cast<float>(rng.Normal());
  std::vector<int32_t> high;
  for (int64_t k = 0; k < n_high; ++k) high.push_back(static_cast<int32_t>(16 * k + 3));
  return QuantizeLayer(w.data(), kOut, kIn, high, spec);
}

StoredTensor MakeTensor(const std::string& name, DType dtype, std::vector<int64_t> shape) {
  StoredTensor t{name, dtype, std::move(shape), {}};
  int64_t n = 1;
  for (const int64_t d : t.shape) n *= d;
  t.data.resize(static_cast<size_t>(n) * DTypeSize(dtype));
  for (size_t i = 0; i < t.data.size(); ++i) t.data[i] = static_cast<std::byte>(i * 7 + 1);
  return t;
}

TEST(Digest, LayerDigestChangesWithEveryStoredValueSpecAndShape) {
  const QuantizedLayer base = MakeLayer(1, {2, 3, 16}, 4);
  const std::string digest = LayerDigest(base);
  EXPECT_EQ(LayerDigest(base), digest) << "deterministic";
  const std::vector<std::pair<const char*, std::function<void(QuantizedLayer&)>>> changes = {
      {"one low code", [](QuantizedLayer& q) { q.low_codes[17] ^= 1; }},
      {"one low scale", [](QuantizedLayer& q) { q.low_params[5].scale *= 2; }},
      {"one low zero", [](QuantizedLayer& q) { q.low_params[5].zero ^= 1; }},
      {"one high code", [](QuantizedLayer& q) { q.high_codes[9] ^= 1; }},
      {"one high scale", [](QuantizedLayer& q) { q.high_params[2].scale *= 2; }},
      {"one high zero", [](QuantizedLayer& q) { q.high_params[2].zero ^= 1; }},
      {"one high column", [](QuantizedLayer& q) { q.high_cols.back() += 1; }},
      {"bits_low", [](QuantizedLayer& q) { q.spec.bits_low = 3; }},
      {"bits_high", [](QuantizedLayer& q) { q.spec.bits_high = 4; }},
      {"group_size", [](QuantizedLayer& q) { q.spec.group_size = 32; }},
      {"the shape, same element count", [](QuantizedLayer& q) {
         q.n_out *= 2;
         q.n_in /= 2;
       }}};
  for (const auto& [what, change] : changes) {
    QuantizedLayer q = base;
    change(q);
    EXPECT_NE(LayerDigest(q), digest) << what;
  }
  // The FP16 high part is covered value by value too.
  const QuantizedLayer fp16 = MakeLayer(1, {2, 16, 16}, 4);
  QuantizedLayer changed = fp16;
  changed.high_fp16[3] = -changed.high_fp16[3];
  EXPECT_NE(LayerDigest(changed), LayerDigest(fp16));
}

TEST(Digest, TensorDigestCoversNameDtypeShapeAndBytes) {
  const StoredTensor base = MakeTensor("model.norm.weight", DType::kF16, {2, 3});
  const std::string digest = TensorDigest(base);
  StoredTensor t = base;
  t.name = "model.layers.0.input_layernorm.weight";
  EXPECT_NE(TensorDigest(t), digest) << "name";
  t = base;
  t.dtype = DType::kBF16;  // the same bytes read as another type
  EXPECT_NE(TensorDigest(t), digest) << "dtype";
  t = base;
  t.shape = {3, 2};
  EXPECT_NE(TensorDigest(t), digest) << "shape";
  t = base;
  t.data[4] ^= std::byte{0x80};
  EXPECT_NE(TensorDigest(t), digest) << "one byte";
}

TEST(Digest, ALayerHasTheSameDigestInAnyShardItIsWrittenTo) {
  test::TempDir dir("hiq-digest");
  const std::vector<ShardLayer> layers = {{"a", MakeLayer(1, {2, 3, 16}, 4)},
                                          {"b", MakeLayer(2, {3, 4, 0}, 2)},
                                          {"c", MakeLayer(3, {2, 16, 32}, 1)}};
  WriteShard(dir / "alone.h5", 0, 1, std::span(layers).subspan(1, 1), {});
  const std::vector<ShardLayer> reordered = {layers[2], layers[1], layers[0]};
  WriteShard(dir / "among.h5", 2, 3, reordered, {});
  ASSERT_NE(Sha256HexOfFile(dir / "alone.h5"), Sha256HexOfFile(dir / "among.h5"));
  const std::string digest = LayerDigest(layers[1].layer);
  EXPECT_EQ(LayerDigest(ShardReader(dir / "alone.h5").ReadLayer("b")), digest);
  EXPECT_EQ(LayerDigest(ShardReader(dir / "among.h5").ReadLayer("b")), digest);
  EXPECT_NE(LayerDigest(layers[0].layer), digest);
}

// One model written as one shard and as two: the same digest, line for line.
class OutputDigestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 4; ++i) {
      const int64_t n_high = i;  // 0..3 of 64 columns
      layers_.push_back({"model.layers." + std::to_string(i) + ".mlp.up_proj",
                         MakeLayer(static_cast<uint64_t>(10 + i), {2, 3, 16}, n_high)});
    }
    tensors_ = {MakeTensor("model.embed_tokens.weight", DType::kF32, {4, 8}),
                MakeTensor("model.norm.weight", DType::kBF16, {8})};
  }

  // Shards of layers [0, split) and [split, 4), tensors on the first and the last shard.
  void Write(const fs::path& out, int n_ranks) const {
    fs::create_directories(out / "shards");
    const size_t split = n_ranks == 1 ? layers_.size() : 1;
    std::vector<TensorToWrite> first = {{tensors_[0].name, tensors_[0].dtype, tensors_[0].shape,
                                         tensors_[0].data}},
                               last = {{tensors_[1].name, tensors_[1].dtype, tensors_[1].shape,
                                        tensors_[1].data}};
    if (n_ranks == 1) {
      first.push_back(last[0]);
      WriteShard(out / ShardRelativePath(0, 1), 0, 1, layers_, first);
    } else {
      WriteShard(out / ShardRelativePath(0, 2), 0, 2, std::span(layers_).first(split), first);
      WriteShard(out / ShardRelativePath(1, 2), 1, 2, std::span(layers_).subspan(split), last);
    }
    ModelFileInfo info;
    info.n_ranks = n_ranks;
    int64_t bits = 0, weights = 0;
    for (const ShardLayer& l : layers_) {
      const int64_t b = LayerBits(l.layer.n_out, l.layer.n_in, l.layer.n_high(), l.layer.spec);
      info.plan.push_back(
          {l.name, static_cast<double>(l.layer.n_high()) / kIn, l.layer.n_high(), b});
      bits += b;
      weights += l.layer.n_out * l.layer.n_in;
    }
    info.avg_bits = static_cast<double>(bits) / static_cast<double>(weights);
    WriteModelFile(out, info);
  }

  std::vector<ShardLayer> layers_;
  std::vector<StoredTensor> tensors_;
};

TEST_F(OutputDigestTest, IsTheSameForOneAndTwoShardsAndIsTheHashOfItsLines) {
  test::TempDir dir("hiq-digest");
  Write(dir / "one", 1);
  Write(dir / "two", 2);
  const OutputDigest one = DigestOutput(dir / "one"), two = DigestOutput(dir / "two");
  ASSERT_EQ(one.entries.size(), 6u);
  EXPECT_EQ(one.entries, two.entries);
  EXPECT_EQ(one.model, two.model);
  EXPECT_EQ(one.Text(), two.Text());
  for (size_t i = 0; i < one.entries.size(); ++i) {
    if (i > 0) {
      EXPECT_LT(one.entries[i - 1].name, one.entries[i].name);
    }
    const bool is_layer = one.entries[i].name.ends_with("up_proj");
    EXPECT_EQ(one.entries[i].layer, is_layer) << one.entries[i].name;
  }
  EXPECT_EQ(one.entries[0].sha256, TensorDigest(tensors_[0]));
  EXPECT_EQ(one.entries[1].sha256, LayerDigest(layers_[0].layer));
  // The model line is the SHA-256 of the text before it: `head -n -1 | sha256sum` recomputes it.
  const std::string text = one.Text();
  const size_t last = text.rfind('\n', text.size() - 2) + 1;
  EXPECT_EQ(text.substr(last), one.model + "  model\n");
  EXPECT_EQ(Sha256Hex(text.substr(0, last)), one.model);
  EXPECT_EQ(one.Json()["model"], one.model);
  EXPECT_EQ(one.Json()["layers"].size(), 4u);
  EXPECT_EQ(one.Json()["tensors"].size(), 2u);
  // Another model (one code changed) has another digest.
  layers_[2].layer.low_codes[0] ^= 1;
  Write(dir / "changed", 2);
  EXPECT_NE(DigestOutput(dir / "changed").model, one.model);
}

TEST_F(OutputDigestTest, RefusesAChangedShardBeforeReadingIt) {
  test::TempDir dir("hiq-digest");
  Write(dir / "two", 2);
  std::ofstream(dir / "two" / ShardRelativePath(1, 2), std::ios::binary | std::ios::app) << 'x';
  EXPECT_THROW_WITH(DigestOutput(dir / "two"), FormatError,
                    "the shard was changed, cut short or copied from another run");
  EXPECT_THROW_WITH(DigestOutput(dir / "none"), IoError, "is not a complete `hiq quantize` output");
}

TEST(Digest, ModelDigestRefusesUnsortedOrRepeatedNames) {
  const std::vector<DigestEntry> unsorted = {{"b", std::string(64, '0'), true},
                                             {"a", std::string(64, '1'), true}};
  EXPECT_THROW_WITH(ModelDigest(unsorted), FormatError, "'a' follows 'b'");
  const std::vector<DigestEntry> repeated = {{"a", std::string(64, '0'), true},
                                             {"a", std::string(64, '1'), false}};
  EXPECT_THROW_WITH(ModelDigest(repeated), FormatError, "expected names sorted and unique");
}

}  // namespace
}  // namespace hiq
