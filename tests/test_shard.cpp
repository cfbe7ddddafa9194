// Tests for hiq/io/shard.h on the real stories260K model: every linear layer quantized with
// several specs, written into two shards and a root file, read back through the root file's links
// and through the shards, exactly; the shard's bytes are LayerBits; a layer's datasets do not
// depend on the shard; h5py + numpy dequantize from the documented layout alone
// (tests/formats/check_shards.py) to hiq's Dequantize, bit for bit; damaged files by message.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "hiq/base/error.h"      // FormatError, ConfigError
#include "hiq/base/sha256.h"     // Sha256HexOfFile
#include "hiq/io/checkpoint.h"   // Checkpoint, LoadStage
#include "hiq/io/digest.h"       // DigestOutput: recomputed by check_shards.py
#include "hiq/io/h5.h"           // H5File: damaged files by hand
#include "hiq/io/safetensors.h"  // WriteSafetensors, DType
#include "hiq/io/shard.h"        // the module under test
#include "hiq/model/tensors.h"   // LayerName, ModelTensors
#include "hiq/quant/quant.h"     // QuantizeLayer, Dequantize, LayerBits
#include "test_util.h"           // DataDir, SourceDir, TempDir, RunCommand, EXPECT_THROW_WITH

namespace hiq {
namespace {

using test::TempDir;

constexpr int kRanks = 2;
constexpr int kFirstBlockOfRank1 = 3;  // rank 0: blocks 0-2 and the embedding; rank 1: 3-4

// The specs the layers cycle through, and the high-impact ratios (0: a plain b_L layer).
const std::vector<QuantSpec> kSpecs = {{2, 3, 64}, {3, 4, 0}, {2, 16, 32}, {1, 8, 16}};
const std::vector<double> kRatios = {0.0, 0.05, 0.1, 0.25, 1.0 / 64};

// One shard's contents: its layers (with the ratio each was given) and unquantized tensors.
struct ShardInput {
  std::vector<ShardLayer> layers;
  std::vector<double> ratios;
  std::vector<StoredTensor> tensors;  // owns the bytes TensorToWrite points at
  std::vector<TensorToWrite> ToWrite() const {
    std::vector<TensorToWrite> out;
    for (const StoredTensor& t : tensors) out.push_back({t.name, t.dtype, t.shape, t.data});
    return out;
  }
};

// Column scores for TopChannels: any score will do; the column's sum of |w| is a real one.
std::vector<double> AbsColumnSums(const float* w, int64_t n_out, int64_t n_in) {
  std::vector<double> s(static_cast<size_t>(n_in), 0.0);
  for (int64_t r = 0; r < n_out; ++r) {
    for (int64_t c = 0; c < n_in; ++c) s[c] += static_cast<double>(std::fabs(w[r * n_in + c]));
  }
  return s;
}

class ShardTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    checkpoint_ = new Checkpoint(test::DataDir() / "stories260K");
    const LlamaConfig& config = checkpoint_->config();
    const int n_blocks = static_cast<int>(config.num_hidden_layers);
    inputs_ = new std::vector<ShardInput>(kRanks);
    for (int rank = 0; rank < kRanks; ++rank) {
      const int begin = rank == 0 ? 0 : kFirstBlockOfRank1;
      const int end = rank == 0 ? kFirstBlockOfRank1 : n_blocks;
      const Stage<float> stage = LoadStage(*checkpoint_, begin, end, rank == 0, rank == 1);
      ShardInput& in = (*inputs_)[rank];
      for (int b = begin; b < end; ++b) {
        for (const Linear kind : kLinears) {
          const int l = LayerIndex(b, kind);
          const auto& w = stage.blocks[b - begin].linear(kind);
          const QuantSpec spec = kSpecs[l % kSpecs.size()];
          const double ratio = kRatios[l % kRatios.size()];
          const std::vector<int32_t> high =
              TopChannels(AbsColumnSums(w.data(), w.rows(), w.cols()), HighCount(ratio, w.cols()));
          in.layers.push_back(
              {LayerName(l), QuantizeLayer(w.data(), w.rows(), w.cols(), high, spec)});
          in.ratios.push_back(ratio);
        }
      }
      // The unquantized tensors of the slice, as the checkpoint stores them.
      const ModelSlice slice{begin, end, rank == 0, rank == 1};
      for (const ModelTensor& t : ModelTensors(config, slice)) {
        if (t.spec != nullptr && t.spec->quantized) continue;
        if (!checkpoint_->Has(t.name)) continue;  // the tied head has no tensor of its own
        const std::span<const std::byte> bytes = checkpoint_->Bytes(t.name);
        in.tensors.push_back({t.name, checkpoint_->Info(t.name).dtype, t.shape,
                              std::vector<std::byte>(bytes.begin(), bytes.end())});
      }
    }
  }
  static void TearDownTestSuite() {
    delete inputs_;
    delete checkpoint_;
  }

  // Writes both shards and the root file into out.
  static void WriteModel(const std::filesystem::path& out) {
    std::filesystem::create_directories(out / "shards");
    for (int rank = 0; rank < kRanks; ++rank) {
      const ShardInput& in = (*inputs_)[rank];
      WriteShard(out / ShardRelativePath(rank, kRanks), rank, kRanks, in.layers, in.ToWrite());
    }
    WriteModelFile(out, Info());
  }

  static ModelFileInfo Info() {
    ModelFileInfo info;
    info.n_ranks = kRanks;
    info.model_config = "{\"hidden_size\": 64}";
    info.run_config = "quant:\n  bits_low: 2\n";
    info.run_config_hash = "0123abcd";
    info.git_revision = "deadbeef";
    info.budget_avg_bits = 4.5;
    int64_t bits = 0, weights = 0;
    for (const ShardInput& in : *inputs_) {
      for (size_t i = 0; i < in.layers.size(); ++i) {
        const QuantizedLayer& q = in.layers[i].layer;
        const int64_t layer_bits = LayerBits(q.n_out, q.n_in, q.n_high(), q.spec);
        info.plan.push_back({in.layers[i].name, in.ratios[i], q.n_high(), layer_bits});
        bits += layer_bits;
        weights += q.n_out * q.n_in;
      }
    }
    info.avg_bits = static_cast<double>(bits) / static_cast<double>(weights);
    return info;
  }

  static const QuantizedLayer& Original(const std::string& name) {
    for (const ShardInput& in : *inputs_) {
      for (const ShardLayer& l : in.layers) {
        if (l.name == name) return l.layer;
      }
    }
    throw std::runtime_error("no layer " + name);
  }

  static Checkpoint* checkpoint_;
  static std::vector<ShardInput>* inputs_;
};
Checkpoint* ShardTest::checkpoint_ = nullptr;
std::vector<ShardInput>* ShardTest::inputs_ = nullptr;

void ExpectSameLayer(const QuantizedLayer& a, const QuantizedLayer& b, const std::string& name) {
  SCOPED_TRACE(name);
  EXPECT_EQ(a.n_out, b.n_out);
  EXPECT_EQ(a.n_in, b.n_in);
  EXPECT_EQ(a.spec.bits_low, b.spec.bits_low);
  EXPECT_EQ(a.spec.bits_high, b.spec.bits_high);
  EXPECT_EQ(a.spec.group_size, b.spec.group_size);
  EXPECT_EQ(a.high_cols, b.high_cols);
  EXPECT_EQ(a.low_codes, b.low_codes);
  EXPECT_EQ(a.high_codes, b.high_codes);
  EXPECT_EQ(a.high_fp16, b.high_fp16);  // float ==: FP16 values, compared exactly
  EXPECT_TRUE(a.low_params == b.low_params);
  EXPECT_TRUE(a.high_params == b.high_params);
}

// The packed datasets a layer has: what may round up to a whole byte.
int PackedDatasets(const QuantizedLayer& q) {
  return 2 + (q.n_high() > 0 && !q.spec.high_fp16() ? 2 : 0);
}

TEST(ShardNames, AreFiveDigitRankOfCount) {
  EXPECT_EQ(ShardFileName(0, 2), "rank-00000-of-00002.h5");
  EXPECT_EQ(ShardRelativePath(13, 100), "shards/rank-00013-of-00100.h5");
  EXPECT_THROW_WITH(ShardFileName(2, 2), ConfigError, "rank 2 of 2, expected 0 <= rank");
}

TEST_F(ShardTest, EveryLayerRoundTripsThroughTheRootFileAndTheShards) {
  TempDir out("hiq-shard");
  WriteModel(out.path());
  const ShardReader model(out / "model.h5");
  EXPECT_EQ(model.format(), "hiq-model");
  EXPECT_EQ(model.LayerNames().size(), 35u);   // 5 blocks x 7 linears
  EXPECT_EQ(model.TensorNames().size(), 12u);  // 10 block norms, embedding, final norm
  std::map<std::string, int> layers_seen;
  for (int rank = 0; rank < kRanks; ++rank) {
    const ShardReader shard(out / ShardRelativePath(rank, kRanks));
    EXPECT_EQ(shard.format(), "hiq-shard");
    EXPECT_EQ(shard.rank(), rank);
    EXPECT_EQ(shard.n_ranks(), kRanks);
    for (const std::string& name : shard.LayerNames()) {
      const QuantizedLayer& original = Original(name);
      const QuantizedLayer via_shard = shard.ReadLayer(name);
      const QuantizedLayer via_root = model.ReadLayer(name);
      ExpectSameLayer(via_shard, original, name);
      ExpectSameLayer(via_root, original, name);
      const int64_t bits =
          LayerBits(original.n_out, original.n_in, original.n_high(), original.spec);
      EXPECT_EQ(StoredBits(via_root), bits) << name;
      // The shard holds exactly LayerBits, up to the padding of each packed array to a byte.
      const int64_t stored = 8 * model.LayerStoredBytes(name);
      EXPECT_GE(stored, bits) << name;
      EXPECT_LT(stored - bits, 8 * PackedDatasets(original)) << name;
      ++layers_seen[name];
    }
    for (const std::string& name : shard.TensorNames()) {
      const StoredTensor via_root = model.ReadTensor(name);
      const StoredTensor via_shard = shard.ReadTensor(name);
      const std::span<const std::byte> bytes = checkpoint_->Bytes(name);
      EXPECT_EQ(via_root.dtype, checkpoint_->Info(name).dtype) << name;
      EXPECT_EQ(via_root.shape, checkpoint_->Info(name).shape) << name;
      EXPECT_TRUE(
          std::equal(bytes.begin(), bytes.end(), via_root.data.begin(), via_root.data.end()))
          << name;
      EXPECT_EQ(via_shard.data, via_root.data) << name;
    }
  }
  EXPECT_EQ(layers_seen.size(), 35u);
  for (const auto& [name, count] : layers_seen) EXPECT_EQ(count, 1) << name;
  // Every spec and the FP16 path occur, with and without high columns.
  std::map<int, int> by_high_bits;
  for (const std::string& name : model.LayerNames()) ++by_high_bits[Original(name).spec.bits_high];
  EXPECT_EQ(by_high_bits.size(), kSpecs.size());
  ModelFileInfo expected = Info();
  for (int r = 0; r < expected.n_ranks; ++r) {
    expected.shard_sha256.push_back(Sha256HexOfFile(out / ShardRelativePath(r, expected.n_ranks)));
  }
  const ModelFileInfo read = ReadModelFile(out / "model.h5");
  EXPECT_EQ(read, expected);
  for (int r = 0; r < expected.n_ranks; ++r) EXPECT_NO_THROW(VerifyShard(out.path(), read, r));
}

// Root file item 5: what is written is read back exactly; a file without it (written before
// provenance was recorded) reads as not recorded; half of it, or a ranks list of another rank
// count, is refused by name.
TEST_F(ShardTest, ProvenanceRoundTripsAndIsAllOrNone) {
  TempDir out("hiq-shard");
  WriteModel(out.path());  // without provenance
  EXPECT_TRUE(ReadModelFile(out / "model.h5").ranks.empty());
  ModelFileInfo info = Info();
  info.hiq_version = "0.1.0";
  info.model_fingerprint = std::string(64, 'f');
  info.seconds = {12.25, 0.5, 1.0 / 3, 0.125};
  // Rank 1 as a file written before bytes_sent was recorded has it: absent, read as absent.
  info.ranks = {{"node1", "AMD EPYC", "SkylakeX", 2, int64_t{123} << 20, 0.75,
                 StageBytes{int64_t{5} << 33, 0, 17, 1}},
                {"node2", "", "Haswell", 1, 5, 1e-3, std::nullopt}};
  WriteModelFile(out.path(), info);
  ModelFileInfo read = ReadModelFile(out / "model.h5");
  EXPECT_EQ(read.shard_sha256.size(), 2u);
  info.shard_sha256 = read.shard_sha256;
  EXPECT_EQ(read, info);

  ModelFileInfo one_rank = info;
  one_rank.ranks.pop_back();
  EXPECT_THROW_WITH(WriteModelFile(out.path(), one_rank), FormatError,
                    "provenance of 1 ranks, expected none or 2");
  {
    H5File file = H5File::Open(out / "model.h5", H5Mode::kReadWrite);
    file.root().SetAttribute("ranks", std::string_view("[{\"host\": \"node1\"}]"));
  }
  EXPECT_THROW_WITH(ReadModelFile(out / "model.h5"), FormatError,
                    "ranks is not a JSON array of 2 objects (one per rank)");
  {
    H5File file = H5File::Open(out / "model.h5", H5Mode::kReadWrite);
    file.root().SetAttribute("ranks", std::string_view("[{\"host\": 1}, {}]"));
  }
  EXPECT_THROW_WITH(ReadModelFile(out / "model.h5"), FormatError, "has no host string");
  {
    H5File file = H5File::Open(out / "model.h5", H5Mode::kReadWrite);
    nlohmann::json ranks = ProvenanceJson(info)["ranks"];
    ranks[0]["bytes_sent"].erase("write");
    file.root().SetAttribute("ranks", std::string_view(ranks.dump()));
  }
  EXPECT_THROW_WITH(ReadModelFile(out / "model.h5"), FormatError,
                    "ranks: bytes_sent: {\"blocks\":17,\"inputs\":0,\"plan\":42949672960} has no "
                    "write integer");
  WriteModelFile(out.path(), Info());
  {
    H5File file = H5File::Open(out / "model.h5", H5Mode::kReadWrite);
    file.root().SetAttribute("hiq_version", std::string_view("0.1.0"));
  }
  EXPECT_THROW_WITH(ReadModelFile(out / "model.h5"), FormatError,
                    "has 1 of the provenance attributes");
}

TEST_F(ShardTest, VerifyShardRefusesAShardThatChangedOrIsGone) {
  TempDir out("hiq-shard");
  WriteModel(out.path());
  const ModelFileInfo info = ReadModelFile(out / "model.h5");
  const std::filesystem::path shard1 = out / ShardRelativePath(1, info.n_ranks);
  // One byte appended: the file still opens as HDF5, but it is not the shard that was linked.
  std::ofstream(shard1, std::ios::binary | std::ios::app) << 'x';
  EXPECT_THROW_WITH(VerifyShard(out.path(), info, 1), FormatError,
                    "the shard was changed, cut short or copied from another run");
  EXPECT_NO_THROW(VerifyShard(out.path(), info, 0));
  std::filesystem::remove(shard1);
  EXPECT_THROW_WITH(VerifyShard(out.path(), info, 1), IoError,
                    shard1.string() + " is missing, but " + (out / "model.h5").string() +
                        " links it: the output is incomplete");
  std::filesystem::remove(out / "model.h5");
  EXPECT_THROW_WITH(ReadModelFile(out / "model.h5"), IoError,
                    "is not a complete `hiq quantize` output");
}

// h5py + numpy, from docs/FORMATS.md alone, against hiq's Dequantize (F32 safetensors).
TEST_F(ShardTest, PythonDequantizesTheLayoutToHiqsWeightsBitForBit) {
  TempDir out("hiq-shard");
  WriteModel(out.path());
  // hiq's weights: Dequantize of every layer, then the unquantized tensors as float32.
  std::vector<std::string> names;
  std::vector<std::vector<int64_t>> shapes;
  std::vector<std::vector<float>> weights;
  for (const ShardInput& in : *inputs_) {
    for (const ShardLayer& l : in.layers) {
      names.push_back(l.name);
      shapes.push_back({l.layer.n_out, l.layer.n_in});
      weights.emplace_back(static_cast<size_t>(l.layer.n_out * l.layer.n_in));
      Dequantize(l.layer, weights.back().data());
    }
    for (const StoredTensor& t : in.tensors) {
      names.push_back(t.name);
      shapes.push_back(t.shape);
      weights.push_back(checkpoint_->ReadFloat(t.name));
    }
  }
  std::vector<TensorToWrite> expected;
  for (size_t i = 0; i < names.size(); ++i) {
    expected.push_back(
        {names[i], DType::kF32, shapes[i], std::as_bytes(std::span<const float>(weights[i]))});
  }
  WriteSafetensors(out / "dequantized.safetensors", expected);
  // The digest too, recomputed by docs/FORMATS.md's example from h5py alone (every spec here,
  // the FP16 high part and F16 tensors among them).
  std::ofstream(out / "digest.txt") << DigestOutput(out.path()).Text();
  const test::CommandResult check = test::RunCommand(
      "/usr/bin/python3 " + (test::SourceDir() / "tests/formats/check_shards.py").string() + " " +
      out.path().string() + " " + (out / "dequantized.safetensors").string() + " " +
      (out / "digest.txt").string());
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_NE(check.output.find("digest OK"), std::string::npos) << check.output;
  EXPECT_NE(check.output.find("shards OK: 35 layers, 12 tensors, 2 shards"), std::string::npos)
      << check.output;
  std::printf("%s", check.output.c_str());
}

// A layer's datasets are the same bytes whichever shard (rank, neighbours) holds it.
TEST_F(ShardTest, LayerDatasetsDoNotDependOnTheShard) {
  TempDir out("hiq-shard");
  const ShardInput& in = (*inputs_)[1];
  WriteShard(out / "alone.h5", 0, 1, std::span(in.layers).subspan(3, 1), {});
  WriteShard(out / "among.h5", 1, 3, in.layers, in.ToWrite());
  const std::string& name = in.layers[3].name;
  const H5Group alone = H5File::Open(out / "alone.h5").root().OpenGroup("layers/" + name);
  const H5Group among = H5File::Open(out / "among.h5").root().OpenGroup("layers/" + name);
  ASSERT_EQ(alone.ListNames(), among.ListNames());
  for (const std::string& dataset : alone.ListNames()) {
    EXPECT_EQ(alone.DatasetTypeName(dataset), among.DatasetTypeName(dataset)) << dataset;
    EXPECT_EQ(alone.DatasetDims(dataset), among.DatasetDims(dataset)) << dataset;
    if (alone.DatasetTypeName(dataset) == "uint8") {
      EXPECT_EQ(alone.ReadDataset<uint8_t>(dataset).data, among.ReadDataset<uint8_t>(dataset).data)
          << dataset;
    } else {
      EXPECT_EQ(alone.ReadDataset<uint16_t>(dataset).data,
                among.ReadDataset<uint16_t>(dataset).data)
          << dataset;
    }
  }
  for (const char* attr : {"n_out", "n_in", "bits_low", "bits_high", "group_size", "n_high"}) {
    EXPECT_EQ(alone.GetAttributeInt(attr), among.GetAttributeInt(attr)) << attr;
  }
}

TEST(Shard, KeepsF16AndBf16TensorsAsTheirBitPatterns) {
  TempDir out("hiq-shard");
  const std::vector<uint16_t> half = {0x3C00, 0x8000, 0x7BFF, 0x0001, 0xC000, 0x1234};
  const std::vector<uint16_t> brain = {0x3F80, 0xBF80, 0x7F7F, 0x0001};
  const std::vector<float> scalar = {-2.5f};
  const std::vector<TensorToWrite> tensors = {
      {"a.f16", DType::kF16, {2, 3}, std::as_bytes(std::span(half))},
      {"b.bf16", DType::kBF16, {4}, std::as_bytes(std::span(brain))},
      {"c.scalar", DType::kF32, {}, std::as_bytes(std::span(scalar))}};
  WriteShard(out / "t.h5", 0, 1, {}, tensors);
  const ShardReader reader(out / "t.h5");
  EXPECT_EQ(reader.TensorNames(), (std::vector<std::string>{"a.f16", "b.bf16", "c.scalar"}));
  EXPECT_TRUE(reader.LayerNames().empty());
  for (const TensorToWrite& t : tensors) {
    const StoredTensor back = reader.ReadTensor(t.name);
    EXPECT_EQ(back.dtype, t.dtype) << t.name;
    EXPECT_EQ(back.shape, t.shape) << t.name;
    EXPECT_TRUE(std::equal(t.data.begin(), t.data.end(), back.data.begin(), back.data.end()))
        << t.name;
  }
  const H5Group f16 = H5File::Open(out / "t.h5").root().OpenGroup("tensors/a.f16");
  EXPECT_EQ(f16.GetAttributeString("dtype"), "F16");
  EXPECT_EQ(f16.DatasetTypeName("data"), "uint16");
}

// The shapes stories260K does not have: n_in > 65536 (uint32 indices), every column high
// (empty low part), FP16 retention of every column.
TEST(Shard, EdgeShapesRoundTrip) {
  TempDir out("hiq-shard");
  struct Case {
    std::string name;
    int64_t n_out, n_in;
    std::vector<int32_t> high;
    QuantSpec spec;
  };
  const std::vector<Case> cases = {{"wide", 2, 65537, {0, 40000, 65536}, {3, 4, 128}},
                                   {"all_high", 3, 5, {0, 1, 2, 3, 4}, {2, 3, 0}},
                                   {"all_fp16", 3, 5, {0, 1, 2, 3, 4}, {2, 16, 0}},
                                   {"plain", 4, 9, {}, {1, 2, 4}}};
  std::vector<ShardLayer> layers;
  for (const Case& c : cases) {
    std::vector<float> w(static_cast<size_t>(c.n_out * c.n_in));
    for (size_t i = 0; i < w.size(); ++i) w[i] = std::sin(0.37f * static_cast<float>(i)) * 0.1f;
    layers.push_back({c.name, QuantizeLayer(w.data(), c.n_out, c.n_in, c.high, c.spec)});
  }
  WriteShard(out / "edge.h5", 0, 1, layers, {});
  const ShardReader reader(out / "edge.h5");
  for (const ShardLayer& l : layers) {
    const QuantizedLayer back = reader.ReadLayer(l.name);
    ExpectSameLayer(back, l.layer, l.name);
    EXPECT_EQ(StoredBits(back),
              LayerBits(l.layer.n_out, l.layer.n_in, l.layer.n_high(), l.layer.spec))
        << l.name;
  }
  const H5Group root = H5File::Open(out / "edge.h5").root();
  EXPECT_EQ(root.OpenGroup("layers/wide").DatasetTypeName("high_cols"), "uint32");
  EXPECT_EQ(root.OpenGroup("layers/all_high").DatasetDims("low_scales"),
            (std::vector<uint64_t>{3, 0}));
  EXPECT_EQ(root.OpenGroup("layers/plain").DatasetDims("high_cols"), (std::vector<uint64_t>{0}));
}

// ---- damaged and inconsistent files -----------------------------------------------------------

// A dataset as stored, to copy into a hand-made file with one thing changed.
struct RawDataset {
  std::string type;
  std::vector<uint64_t> dims;
  std::vector<uint8_t> u8;
  std::vector<uint16_t> u16;
};

RawDataset ReadRaw(const H5Group& group, const std::string& name) {
  RawDataset raw{group.DatasetTypeName(name), group.DatasetDims(name), {}, {}};
  if (raw.type == "uint8") raw.u8 = group.ReadDataset<uint8_t>(name).data;
  if (raw.type == "uint16") raw.u16 = group.ReadDataset<uint16_t>(name).data;
  return raw;
}

void WriteRaw(H5Group& group, const std::string& name, const RawDataset& raw) {
  if (raw.type == "uint8") group.WriteDataset<uint8_t>(name, raw.u8, raw.dims);
  if (raw.type == "uint16") group.WriteDataset<uint16_t>(name, raw.u16, raw.dims);
}

using DatasetEdit = std::function<void(std::map<std::string, RawDataset>&)>;

// A copy of layer `name` of `source` as a one-layer shard at `path`, with `edit` applied to its
// datasets (name -> dataset; erase one to drop it) and `format` as the root's format.
void WriteEditedShard(const std::filesystem::path& source, const std::string& name,
                      const std::filesystem::path& path, const DatasetEdit& edit,
                      const std::string& format = "hiq-shard") {
  const H5Group from = H5File::Open(source).root().OpenGroup("layers/" + name);
  std::map<std::string, RawDataset> datasets;
  for (const std::string& d : from.ListNames()) datasets[d] = ReadRaw(from, d);
  edit(datasets);
  H5File file = H5File::Create(path);
  H5Group root = file.root();
  root.SetAttribute("format", std::string_view(format));
  root.SetAttribute("format_version", int64_t{1});
  root.SetAttribute("rank", int64_t{0});
  root.SetAttribute("n_ranks", int64_t{1});
  root.CreateGroup("tensors");
  H5Group to = root.CreateGroup("layers").CreateGroup(name);
  for (const char* attr : {"n_out", "n_in", "bits_low", "bits_high", "group_size", "n_high"}) {
    to.SetAttribute(attr, from.GetAttributeInt(attr));
  }
  for (const auto& [d, raw] : datasets) WriteRaw(to, d, raw);
  file.Commit();
}

TEST_F(ShardTest, DamagedFilesAreRejectedByName) {
  TempDir out("hiq-shard");
  WriteModel(out.path());
  const std::filesystem::path shard0 = out / ShardRelativePath(0, kRanks);
  const ShardReader model(out / "model.h5");
  // A layer that is not there.
  EXPECT_THROW_WITH(model.ReadLayer("model.layers.9.mlp.up_proj"), FormatError,
                    "ShardReader::ReadLayer: " + (out / "model.h5").string() +
                        ": layer 'model.layers.9.mlp.up_proj': not in /layers (which holds 35 "
                        "layers)");
  EXPECT_THROW_WITH(model.ReadTensor("lm_head.weight"), FormatError,
                    "tensor 'lm_head.weight': not in /tensors");
  EXPECT_THROW_WITH(model.ReadLayer("a/b"), FormatError, "layer name 'a/b' is not a valid name");

  // Layer 0 is q_proj of block 0: spec {2, 3, 64}, no high columns (ratio 0); layer 1 is k_proj:
  // {3, 4, 0}, ratio 0.05 -> 4 high columns of 64.
  const std::string q_proj = LayerName(0), k_proj = LayerName(1);
  ASSERT_EQ(Original(k_proj).n_high(), 4);
  const auto expect_damage = [&](const std::string& layer, const std::string& tag,
                                 const DatasetEdit& edit, const std::string& message) {
    const std::filesystem::path path = out / (tag + ".h5");
    WriteEditedShard(shard0, layer, path, edit);
    const ShardReader reader(path);
    EXPECT_THROW_WITH(
        reader.ReadLayer(layer), FormatError,
        "ShardReader::ReadLayer: " + path.string() + ": layer '" + layer + "': " + message);
  };
  // An unchanged copy reads back: the hand-made file is a valid shard.
  {
    WriteEditedShard(shard0, k_proj, out / "copy.h5", [](auto&) {});
    ExpectSameLayer(ShardReader(out / "copy.h5").ReadLayer(k_proj), Original(k_proj), k_proj);
  }
  expect_damage(
      q_proj, "shape",
      [](auto& d) {
        d["low_scales"].dims = {32, 2};
      },
      "low_scales has shape [32, 2], expected [64, 1]");
  expect_damage(
      k_proj, "dtype",
      [](auto& d) {
        RawDataset& s = d["high_scales"];
        s.type = "uint8";
        s.u8.assign(s.u16.size(), 1);
      },
      "high_scales is uint8, expected uint16");
  expect_damage(
      k_proj, "missing", [](auto& d) { d.erase("high_zeros"); },
      "holds [high_codes, high_cols, high_scales, low_codes, low_scales, low_zeros], "
      "expected [high_codes, high_cols, high_scales, high_zeros, low_codes, "
      "low_scales, low_zeros]");
  // k_proj's low codes: 32 rows x 60 columns x 3 bits = 720 bytes.
  expect_damage(
      k_proj, "packed",
      [](auto& d) {
        d["low_codes"].u8.push_back(0);
        d["low_codes"].dims = {721};
      },
      "low_codes has shape [721], expected [720]");
  // Layer 4 (gate_proj, 172 x 64, {2, 3, 64}, one high column): 172 high codes of 3 bits use 4
  // bits of their last byte; a set padding bit is damage.
  const std::string gate = LayerName(4);
  ASSERT_EQ(Original(gate).n_high(), 1);
  ASSERT_EQ(Original(gate).spec.bits_high, 3);
  expect_damage(
      gate, "padding", [](auto& d) { d["high_codes"].u8.back() |= 0x80; },
      "high_codes: UnpackCodes: packed array's last byte");
  expect_damage(
      k_proj, "scale", [](auto& d) { d["low_scales"].u16[5] = 0x7C00; },
      "low_scales[5] = 0x7C00 is an FP16 infinity or NaN, expected a finite value");
  expect_damage(
      k_proj, "zero-scale", [](auto& d) { d["high_scales"].u16[2] = 0x0000; },
      "high_params[2] has scale 0 and zero");
  expect_damage(
      k_proj, "cols",
      [](auto& d) {
        d["high_cols"].u16 = {3, 2, 10, 11};
      },
      "high_cols[1] = 2 does not exceed high_cols[0] = 3");

  // The wrong format attribute, in a shard and in place of the root file.
  WriteEditedShard(
      shard0, q_proj, out / "plan.h5", [](auto&) {}, "hiq-plan");
  EXPECT_THROW_WITH(ShardReader(out / "plan.h5"), FormatError,
                    "ShardReader: " + (out / "plan.h5").string() +
                        ": format 'hiq-plan', expected 'hiq-shard' or 'hiq-model'");
  EXPECT_THROW_WITH(ReadModelFile(shard0), FormatError, "format 'hiq-shard', expected 'hiq-model'");
}

TEST_F(ShardTest, WritersRefuseInconsistentInput) {
  TempDir out("hiq-shard");
  const ShardInput& in = (*inputs_)[0];
  // An invalid layer (a code beyond its width) leaves no file behind.
  std::vector<ShardLayer> bad = {in.layers[0]};
  bad[0].layer.low_codes[7] = 4;  // 2 bits
  EXPECT_THROW_WITH(WriteShard(out / "bad.h5", 0, 1, bad, {}), FormatError,
                    "WriteShard: layer 'model.layers.0.self_attn.q_proj': low_codes[7]");
  EXPECT_FALSE(std::filesystem::exists(out / "bad.h5"));
  std::vector<ShardLayer> twice = {in.layers[0], in.layers[0]};
  EXPECT_THROW_WITH(WriteShard(out / "twice.h5", 0, 1, twice, {}), FormatError,
                    "layer 'model.layers.0.self_attn.q_proj' is given twice");
  EXPECT_THROW_WITH(WriteShard(out / "rank.h5", 2, 2, in.layers, {}), ConfigError,
                    "WriteShard: rank 2 of 2, expected 0 <= rank < n_ranks <= 99999");

  WriteModel(out.path());
  // A plan that disagrees with the shards.
  ModelFileInfo info = Info();
  info.plan[4].bits += 1;
  EXPECT_THROW_WITH(WriteModelFile(out.path(), info), FormatError,
                    "WriteModelFile: plan entry '" + info.plan[4].name + "': ratio");
  info = Info();
  info.plan.pop_back();
  EXPECT_THROW_WITH(WriteModelFile(out.path(), info), FormatError,
                    "layer 'model.layers.4.mlp.down_proj' (in shards/rank-00001-of-00002.h5) "
                    "is not in the plan");
  info = Info();
  info.avg_bits += 0.01;
  EXPECT_THROW_WITH(WriteModelFile(out.path(), info), FormatError, "avg_bits");
  // A layer in two shards (reported for the first name in sorted order).
  WriteShard(out / ShardRelativePath(1, kRanks), 1, kRanks, (*inputs_)[0].layers, {});
  EXPECT_THROW_WITH(WriteModelFile(out.path(), Info()), FormatError,
                    ShardRelativePath(1, kRanks) +
                        ": layer 'model.layers.0.mlp.down_proj' is also in "
                        "shards/rank-00000-of-00002.h5");
  // A missing shard.
  std::filesystem::remove(out / ShardRelativePath(1, kRanks));
  EXPECT_THROW_WITH(WriteModelFile(out.path(), Info()), Error, ShardFileName(1, kRanks));
}

}  // namespace
}  // namespace hiq
