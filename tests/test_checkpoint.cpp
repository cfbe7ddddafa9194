// Tests for hiq/io/checkpoint.h: config.json validation (one case per rejection), the real
// stories260K directory, sharded and F16/BF16 copies of it written to temp dirs, lazy mapping,
// the tensor check and `hiq inspect` output.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "hiq/base/error.h"  // FormatError, IoError
#include "hiq/base/fp16.h"   // F16ToFloat, FloatToF16, BF16ToFloat, FloatToBF16
#include "hiq/io/checkpoint.h"
#include "hiq/io/safetensors.h"  // SafetensorsFile, WriteSafetensors
#include "test_util.h"           // TempDir, DataDir

namespace hiq {
namespace {

using nlohmann::json;
using test::DataDir;
using test::TempDir;

constexpr int64_t kRealParams = 260032;
constexpr size_t kRealTensors = 47;
constexpr uint64_t kRealBytes = 1040128;  // F32

std::filesystem::path RealDir() { return DataDir() / "stories260K"; }

json RealConfigJson() {
  std::ifstream in(RealDir() / "config.json");
  return json::parse(in);
}

void WriteText(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

template <typename E>
void ExpectThrowWithAll(const std::function<void()>& statement,
                        const std::vector<std::string>& parts) {
  try {
    statement();
    ADD_FAILURE() << "expected an exception containing '" << parts.front() << "'";
  } catch (const E& e) {
    for (const std::string& part : parts) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos)
          << "message: " << e.what() << "\nmissing: " << part;
    }
  }
}

// A tensor held in memory, to be edited and written back.
struct OwnedTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;
};

// Writes a copy of stories260K into `dir`: config.json (edited by `edit_config`), the weights
// converted to `dtype` (after `edit_tensors`) in one model.safetensors or, for n_shards > 1,
// model-0000k-of-0000n.safetensors + model.safetensors.index.json. Shards split the tensors in
// file order (embed and the first layers go to shard 1).
void WriteModelCopy(const std::filesystem::path& dir, DType dtype, int n_shards,
                    const std::function<void(std::vector<OwnedTensor>&)>& edit_tensors = {},
                    const std::function<void(json&)>& edit_config = {}) {
  json config = RealConfigJson();
  if (edit_config) edit_config(config);
  WriteText(dir / "config.json", config.dump(2));

  SafetensorsFile original(RealDir() / "model.safetensors");
  std::vector<OwnedTensor> tensors;
  for (const TensorInfo& t : original.tensors()) {
    tensors.push_back(
        {t.name, dtype, t.shape, EncodeFloats(original.ReadFloat(t.name), dtype, t.name)});
  }
  if (edit_tensors) edit_tensors(tensors);

  std::vector<std::vector<TensorToWrite>> shards(static_cast<size_t>(n_shards));
  for (size_t i = 0; i < tensors.size(); ++i) {
    const OwnedTensor& t = tensors[i];
    shards[i * static_cast<size_t>(n_shards) / tensors.size()].push_back(
        {t.name, t.dtype, t.shape, t.bytes});
  }
  if (n_shards == 1) {
    WriteSafetensors(dir / "model.safetensors", shards[0], {{"format", "pt"}});
    return;
  }
  json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", json::object()}};
  for (int k = 0; k < n_shards; ++k) {
    char file[64];
    std::snprintf(file, sizeof(file), "model-%05d-of-%05d.safetensors", k + 1, n_shards);
    WriteSafetensors(dir / file, shards[static_cast<size_t>(k)], {{"format", "pt"}});
    for (const TensorToWrite& t : shards[static_cast<size_t>(k)])
      index["weight_map"][t.name] = file;
  }
  WriteText(dir / "model.safetensors.index.json", index.dump(2));
}

std::string LastLine(const std::string& text) {
  std::string trimmed = text.substr(0, text.find_last_not_of('\n') + 1);
  return trimmed.substr(trimmed.rfind('\n') + 1);
}

// ---- config.json ------------------------------------------------------------------------------

TEST(LlamaConfig, ReadsTheRealConfig) {
  const LlamaConfig c = ReadLlamaConfig(RealDir() / "config.json");
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.intermediate_size, 172);
  EXPECT_EQ(c.num_attention_heads, 8);
  EXPECT_EQ(c.num_key_value_heads, 4);
  EXPECT_EQ(c.num_hidden_layers, 5);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.max_position_embeddings, 512);
  EXPECT_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.torch_dtype, "float32");
  EXPECT_EQ(c.head_dim(), 8);
}

TEST(LlamaConfig, ToJsonRoundTrips) {
  LlamaConfig c = ReadLlamaConfig(RealDir() / "config.json");
  EXPECT_EQ(LlamaConfigFromJson(ToJson(c), "round trip"), c);
  c.tie_word_embeddings = false;
  c.rope_theta = 500000.0;
  c.torch_dtype = "";
  EXPECT_EQ(LlamaConfigFromJson(ToJson(c), "round trip"), c);
}

TEST(LlamaConfig, AppliesTransformersDefaults) {
  json j = RealConfigJson();
  for (const char* key :
       {"num_key_value_heads", "tie_word_embeddings", "rope_theta", "max_position_embeddings",
        "torch_dtype", "hidden_act", "architectures"}) {
    j.erase(key);
  }
  j["rope_scaling"] = nullptr;  // null is "no scaling"
  const LlamaConfig c = LlamaConfigFromJson(j, "defaults");
  EXPECT_EQ(c.num_key_value_heads, c.num_attention_heads);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_EQ(c.torch_dtype, "");
}

TEST(LlamaConfig, RejectsWhatHiqCannotRunNamingFieldAndValue) {
  struct Case {
    std::function<void(json&)> edit;
    std::vector<std::string> parts;
  };
  const std::vector<Case> cases = {
      {[](json& j) { j["hidden_act"] = "gelu"; }, {"'hidden_act' is \"gelu\"", "\"silu\""}},
      {[](json& j) {
         j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
       },
       {"'rope_scaling' is {\"factor\":8.0,\"rope_type\":\"llama3\"}", "plain RoPE"}},
      {[](json& j) { j["attention_bias"] = true; }, {"'attention_bias' is true", "no bias"}},
      {[](json& j) { j["mlp_bias"] = true; }, {"'mlp_bias' is true"}},
      {[](json& j) { j["hidden_size"] = 100; },
       {"'hidden_size' 100 is not divisible by 'num_attention_heads' 8"}},
      {[](json& j) { j["num_key_value_heads"] = 3; },
       {"'num_attention_heads' 8 is not divisible by 'num_key_value_heads' 3"}},
      {[](json& j) { j["hidden_size"] = 0; }, {"'hidden_size' = 0, expected > 0"}},
      {[](json& j) { j["vocab_size"] = -5; }, {"'vocab_size' = -5, expected > 0"}},
      {[](json& j) { j["intermediate_size"] = "172"; },
       {"'intermediate_size' is \"172\" (string), expected a positive integer"}},
      {[](json& j) { j["intermediate_size"] = 172.5; },
       {"'intermediate_size' is 172.5 (number), expected a positive integer"}},
      {[](json& j) { j.erase("num_hidden_layers"); }, {"'num_hidden_layers' is missing"}},
      {[](json& j) { j["head_dim"] = 16; },
       {"'head_dim' is 16 but hidden_size / num_attention_heads = 64 / 8 = 8"}},
      {[](json& j) { j["hidden_size"] = 24; },
       {"head_dim = hidden_size / num_attention_heads = 24 / 8 = 3 is odd", "RoPE"}},
      {[](json& j) {
         j["architectures"] = {"MistralForCausalLM"};
         j["model_type"] = "mistral";
       },
       {"'architectures' is [\"MistralForCausalLM\"] and 'model_type' is \"mistral\"",
        "LlamaForCausalLM"}},
      {[](json& j) { j["rms_norm_eps"] = 0; },
       {"'rms_norm_eps' = 0, expected a finite number > 0"}},
      {[](json& j) { j["rope_theta"] = "big"; }, {"'rope_theta' is \"big\" (string)"}},
      {[](json& j) { j["tie_word_embeddings"] = "yes"; },
       {"'tie_word_embeddings' is \"yes\" (string), expected true or false"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.parts.front());
    TempDir dir("hiq-ckpt");
    json j = RealConfigJson();
    c.edit(j);
    WriteText(dir / "config.json", j.dump(2));
    std::vector<std::string> parts = c.parts;
    parts.push_back((dir / "config.json").string());
    ExpectThrowWithAll<FormatError>([&] { ReadLlamaConfig(dir / "config.json"); }, parts);
  }
}

TEST(LlamaConfig, RejectsDuplicateKeysBadJsonAndMissingFile) {
  TempDir dir("hiq-ckpt");
  const std::filesystem::path path = dir / "config.json";
  WriteText(path, R"({"hidden_size": 64, "hidden_size": 128})");
  ExpectThrowWithAll<FormatError>([&] { ReadLlamaConfig(path); },
                                  {path.string(), "duplicate key 'hidden_size'"});
  WriteText(path, "{\"hidden_size\": 64,");
  ExpectThrowWithAll<FormatError>([&] { ReadLlamaConfig(path); },
                                  {path.string(), "not valid JSON"});
  WriteText(path, "[]");
  ExpectThrowWithAll<FormatError>([&] { ReadLlamaConfig(path); },
                                  {path.string(), "expected a JSON object"});
  ExpectThrowWithAll<IoError>([&] { ReadLlamaConfig(dir / "absent.json"); },
                              {"absent.json", "cannot open"});
}

// ---- the real model ---------------------------------------------------------------------------

TEST(Checkpoint, OpensTheRealModel) {
  const Checkpoint ckpt(RealDir());
  EXPECT_EQ(ckpt.config().num_hidden_layers, 5);
  EXPECT_EQ(ckpt.Files(), std::vector<std::string>{"model.safetensors"});
  EXPECT_TRUE(ckpt.MappedFiles().empty());  // nothing mapped before a read

  const std::vector<TensorEntry> list = ckpt.List();
  ASSERT_EQ(list.size(), kRealTensors);
  EXPECT_EQ(list[0].name, "model.embed_tokens.weight");
  EXPECT_EQ(list[1].name, "model.layers.0.input_layernorm.weight");
  EXPECT_EQ(list[2].name, "model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(list[3].name, "model.layers.0.self_attn.k_proj.weight");
  EXPECT_EQ(list[6].name, "model.layers.0.post_attention_layernorm.weight");
  EXPECT_EQ(list[9].name, "model.layers.0.mlp.down_proj.weight");
  EXPECT_EQ(list[10].name, "model.layers.1.input_layernorm.weight");
  EXPECT_EQ(list.back().name, "model.norm.weight");
  EXPECT_EQ(list[3].shape, (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(list[3].bytes, 32u * 64u * 4u);
  EXPECT_EQ(list[3].file, "model.safetensors");
  int64_t params = 0;
  for (const TensorEntry& e : list) {
    int64_t n = 1;
    for (int64_t d : e.shape) n *= d;
    params += n;
  }
  EXPECT_EQ(params, kRealParams);

  EXPECT_TRUE(ckpt.Has("model.norm.weight"));
  EXPECT_FALSE(ckpt.Has("lm_head.weight"));
  EXPECT_EQ(ckpt.Info("model.layers.4.mlp.down_proj.weight").shape,
            (std::vector<int64_t>{64, 172}));
  SafetensorsFile file(RealDir() / "model.safetensors");
  EXPECT_EQ(ckpt.ReadFloat("model.embed_tokens.weight"),
            file.ReadFloat("model.embed_tokens.weight"));
  EXPECT_EQ(ckpt.Bytes("model.norm.weight").size(), 64u * 4u);
  EXPECT_EQ(ckpt.MappedFiles(), std::vector<std::string>{"model.safetensors"});
  EXPECT_NO_THROW(ckpt.CheckLlamaTensors());
  ExpectThrowWithAll<FormatError>([&] { ckpt.Info("lm_head.weight"); },
                                  {RealDir().string(), "no tensor 'lm_head.weight'"});
}

TEST(Checkpoint, PrintInspectEndsWithOneKeyValueLine) {
  const Checkpoint ckpt(RealDir());
  std::ostringstream out;
  PrintInspect(ckpt, out);
  const std::string text = out.str();
  EXPECT_EQ(LastLine(text), "params=260032 tensors=47 files=1 dtype=F32 bytes=1040128");
  EXPECT_NE(text.find("num_key_value_heads       4"), std::string::npos) << text;
  EXPECT_NE(text.find("tie_word_embeddings       true"), std::string::npos) << text;
  // The table row of the embedding: name, dtype, shape, bytes, file.
  const size_t row = text.find("  model.embed_tokens.weight ");
  ASSERT_NE(row, std::string::npos) << text;
  const std::string line = text.substr(row, text.find('\n', row) - row);
  for (const char* part : {"F32", "[512, 64]", "131072", "model.safetensors"}) {
    EXPECT_NE(line.find(part), std::string::npos) << line;
  }
}

TEST(Checkpoint, InspectJsonMatchesTheText) {
  const Checkpoint ckpt(RealDir());
  const json j = InspectJson(ckpt);
  EXPECT_EQ(j["summary"]["params"], kRealParams);
  EXPECT_EQ(j["summary"]["tensors"], kRealTensors);
  EXPECT_EQ(j["summary"]["files"], 1);
  EXPECT_EQ(j["summary"]["dtype"], "F32");
  EXPECT_EQ(j["summary"]["bytes"], kRealBytes);
  EXPECT_EQ(j["tensors"][0]["name"], "model.embed_tokens.weight");
  EXPECT_EQ(j["tensors"][0]["shape"], json::array({512, 64}));
  EXPECT_EQ(LlamaConfigFromJson(j["config"], "inspect"), ckpt.config());
}

// ---- copies written here: shards, F16, BF16 ---------------------------------------------------

TEST(Checkpoint, ShardedCopyReadsLikeTheOriginal) {
  TempDir dir("hiq-ckpt");
  WriteModelCopy(dir.path(), DType::kF32, 2);
  const Checkpoint original(RealDir());
  const Checkpoint sharded(dir.path());
  EXPECT_EQ(sharded.Files(), (std::vector<std::string>{"model-00001-of-00002.safetensors",
                                                       "model-00002-of-00002.safetensors"}));
  const std::vector<TensorEntry> a = original.List(), b = sharded.List();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].name, b[i].name);
    EXPECT_EQ(a[i].shape, b[i].shape);
    EXPECT_EQ(sharded.ReadFloat(b[i].name), original.ReadFloat(a[i].name)) << a[i].name;
  }
  EXPECT_EQ(b.front().file, "model-00001-of-00002.safetensors");
  EXPECT_EQ(b.back().file, "model-00002-of-00002.safetensors");
  EXPECT_NO_THROW(sharded.CheckLlamaTensors());
  std::ostringstream out;
  PrintInspect(sharded, out);
  EXPECT_EQ(LastLine(out.str()), "params=260032 tensors=47 files=2 dtype=F32 bytes=1040128");
}

TEST(Checkpoint, MapsOnlyTheShardsItReads) {
  TempDir dir("hiq-ckpt");
  WriteModelCopy(dir.path(), DType::kF32, 2);
  // Shard 2 is garbage: a rank that reads only shard-1 tensors never notices.
  WriteText(dir / "model-00002-of-00002.safetensors", "garbage, not safetensors");
  const Checkpoint ckpt(dir.path());
  EXPECT_TRUE(ckpt.MappedFiles().empty());
  EXPECT_EQ(ckpt.ReadFloat("model.embed_tokens.weight").size(), 512u * 64u);
  EXPECT_EQ(ckpt.Info("model.layers.0.self_attn.q_proj.weight").shape,
            (std::vector<int64_t>{64, 64}));
  EXPECT_EQ(ckpt.MappedFiles(), std::vector<std::string>{"model-00001-of-00002.safetensors"});
  ExpectThrowWithAll<FormatError>([&] { ckpt.ReadFloat("model.norm.weight"); },
                                  {"model-00002-of-00002.safetensors", "header length"});
}

TEST(Checkpoint, ConcurrentReadsAcrossShardsAgree) {
  TempDir dir("hiq-ckpt");
  WriteModelCopy(dir.path(), DType::kBF16, 3);
  const Checkpoint ckpt(dir.path());
  const Checkpoint reference(dir.path());
  std::vector<std::vector<float>> expected;
  const std::vector<TensorEntry> list = reference.List();
  for (const TensorEntry& e : list) expected.push_back(reference.ReadFloat(e.name));
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      for (size_t i = 0; i < list.size(); ++i) {
        const size_t j = (i + static_cast<size_t>(k) * 11) % list.size();  // different orders
        if (ckpt.ReadFloat(list[j].name) != expected[j]) ++mismatches[static_cast<size_t>(k)];
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
  EXPECT_EQ(ckpt.MappedFiles().size(), 3u);
}

TEST(Checkpoint, F16AndBF16CopiesEqualTheRoundedOriginals) {
  const Checkpoint original(RealDir());
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    SCOPED_TRACE(DTypeName(dtype));
    TempDir dir("hiq-ckpt");
    WriteModelCopy(dir.path(), dtype, 1);
    const Checkpoint copy(dir.path());
    EXPECT_NO_THROW(copy.CheckLlamaTensors());
    for (const TensorEntry& e : original.List()) {
      const std::vector<float> want = original.ReadFloat(e.name);
      const std::vector<float> got = copy.ReadFloat(e.name);
      ASSERT_EQ(got.size(), want.size());
      for (size_t i = 0; i < want.size(); ++i) {
        const float rounded = dtype == DType::kF16 ? F16ToFloat(FloatToF16(want[i]))
                                                   : BF16ToFloat(FloatToBF16(want[i]));
        ASSERT_EQ(got[i], rounded) << e.name << "[" << i << "]";
      }
    }
    std::ostringstream out;
    PrintInspect(copy, out);
    EXPECT_EQ(LastLine(out.str()), std::string("params=260032 tensors=47 files=1 dtype=") +
                                       DTypeName(dtype) + " bytes=520064");
  }
}

// ---- bad directories --------------------------------------------------------------------------

TEST(BadCheckpoint, MissingShardNamedInTheIndex) {
  TempDir dir("hiq-ckpt");
  WriteModelCopy(dir.path(), DType::kF32, 2);
  std::filesystem::remove(dir / "model-00002-of-00002.safetensors");
  ExpectThrowWithAll<IoError>(
      [&] { Checkpoint ckpt(dir.path()); },
      {"shard 'model-00002-of-00002.safetensors'", (dir / "model.safetensors.index.json").string(),
       "does not exist", "HINT"});
}

TEST(BadCheckpoint, TensorListedInTheIndexButMissingFromItsShard) {
  TempDir dir("hiq-ckpt");
  WriteModelCopy(dir.path(), DType::kF32, 2);
  json index = json::parse(std::ifstream(dir / "model.safetensors.index.json"));
  index["weight_map"]["model.layers.9.mlp.up_proj.weight"] = "model-00001-of-00002.safetensors";
  WriteText(dir / "model.safetensors.index.json", index.dump());
  const Checkpoint ckpt(dir.path());
  ExpectThrowWithAll<FormatError>(
      [&] { ckpt.ReadFloat("model.embed_tokens.weight"); },
      {"tensor 'model.layers.9.mlp.up_proj.weight'", "model.safetensors.index.json",
       "shard 'model-00001-of-00002.safetensors' but that shard does not contain it"});
}

TEST(BadCheckpoint, IndexThatIsMalformedOrEscapesTheDirectory) {
  TempDir dir("hiq-ckpt");
  WriteModelCopy(dir.path(), DType::kF32, 2);
  const std::filesystem::path index = dir / "model.safetensors.index.json";
  WriteText(index, R"({"weight_map": {"model.norm.weight": "../model.safetensors"}})");
  ExpectThrowWithAll<FormatError>(
      [&] { Checkpoint ckpt(dir.path()); },
      {index.string(), "weight_map['model.norm.weight'] is \"../model.safetensors\""});
  WriteText(index, R"({"metadata": {}})");
  ExpectThrowWithAll<FormatError>([&] { Checkpoint ckpt(dir.path()); },
                                  {index.string(), "non-empty \"weight_map\""});
  WriteText(index, R"({"weight_map": {"a": "x.safetensors", "a": "y.safetensors"}})");
  ExpectThrowWithAll<FormatError>([&] { Checkpoint ckpt(dir.path()); },
                                  {index.string(), "duplicate key 'a'"});
}

TEST(BadCheckpoint, NoWeightsOrNoDirectory) {
  TempDir dir("hiq-ckpt");
  WriteText(dir / "config.json", RealConfigJson().dump());
  ExpectThrowWithAll<IoError>([&] { Checkpoint ckpt(dir.path()); },
                              {dir.path().string(), "has neither model.safetensors nor"});
  WriteText(dir / "pytorch_model.bin", "PK");
  ExpectThrowWithAll<IoError>([&] { Checkpoint ckpt(dir.path()); },
                              {"HINT", "safe_serialization=True"});
  ExpectThrowWithAll<IoError>([&] { Checkpoint ckpt(dir / "nope"); }, {"is not a directory"});
  ExpectThrowWithAll<IoError>([&] { Checkpoint ckpt(DataDir() / "text"); }, {"config.json"});
}

TEST(BadCheckpoint, GitLfsPointerInPlaceOfWeights) {
  TempDir dir("hiq-ckpt");
  WriteText(dir / "config.json", RealConfigJson().dump());
  WriteText(dir / "model.safetensors",
            "version https://git-lfs.github.com/spec/v1\noid sha256:407a7c58\nsize 1044992\n");
  ExpectThrowWithAll<FormatError>(
      [&] { Checkpoint ckpt(dir.path()); },
      {(dir / "model.safetensors").string(), "Git LFS pointer", "git lfs pull"});
}

TEST(BadCheckpoint, CheckLlamaTensorsNamesTensorFoundAndExpectedShapes) {
  {
    TempDir dir("hiq-ckpt");
    WriteModelCopy(dir.path(), DType::kF32, 1, [](std::vector<OwnedTensor>& t) {
      std::erase_if(t, [](const OwnedTensor& x) {
        return x.name == "model.layers.2.self_attn.k_proj.weight";
      });
    });
    const Checkpoint ckpt(dir.path());
    ExpectThrowWithAll<FormatError>(
        [&] { ckpt.CheckLlamaTensors(); },
        {dir.path().string(), "tensor 'model.layers.2.self_attn.k_proj.weight' is missing",
         "expected shape [32, 64] = [num_key_value_heads * head_dim, hidden_size]"});
  }
  {
    TempDir dir("hiq-ckpt");
    WriteModelCopy(dir.path(), DType::kF32, 1, [](std::vector<OwnedTensor>& t) {
      for (OwnedTensor& x : t) {
        if (x.name == "model.layers.3.mlp.down_proj.weight") x.shape = {172, 64};  // transposed
      }
    });
    const Checkpoint ckpt(dir.path());
    ExpectThrowWithAll<FormatError>(
        [&] { ckpt.CheckLlamaTensors(); },
        {"tensor 'model.layers.3.mlp.down_proj.weight' has shape [172, 64]",
         "expected [64, 172] = [hidden_size, intermediate_size]"});
  }
  {
    TempDir dir("hiq-ckpt");
    WriteModelCopy(dir.path(), DType::kF32, 1, {},
                   [](json& j) { j["tie_word_embeddings"] = false; });
    const Checkpoint ckpt(dir.path());
    ExpectThrowWithAll<FormatError>([&] { ckpt.CheckLlamaTensors(); },
                                    {"tensor 'lm_head.weight' is missing", "[512, 64]", "HINT"});
  }
  {
    TempDir dir("hiq-ckpt");
    WriteModelCopy(dir.path(), DType::kF32, 1, [](std::vector<OwnedTensor>& t) {
      for (OwnedTensor& x : t) {
        if (x.name == "model.norm.weight") x.dtype = DType::kI32;  // same size, wrong type
      }
    });
    const Checkpoint ckpt(dir.path());
    ExpectThrowWithAll<FormatError>([&] { ckpt.CheckLlamaTensors(); },
                                    {"tensor 'model.norm.weight' has dtype I32"});
  }
}

}  // namespace
}  // namespace hiq
