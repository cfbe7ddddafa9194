// Robustness cases of the checkpoint: config.json against the tensors actually present, weights
// that are not finite, weights that make a pass overflow, and the rank count against the blocks.
#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>

#include "hiq/io/safetensors.h"  // SafetensorsFile, WriteSafetensors, EncodeFloats
#include "robustness.h"

namespace hiq::test {
namespace {

namespace fs = std::filesystem;

// A copy of stories260K whose model.safetensors is rewritten: `edit` sees every tensor (name,
// values, dtype to store) and may change it; `extra` tensors are added.
struct Edit {
  std::function<void(const std::string& name, std::vector<float>& values, DType& dtype)> tensor =
      nullptr;
  std::vector<std::pair<std::string, std::vector<int64_t>>> extra = {};
  std::function<void(nlohmann::json&)> config = nullptr;
};

fs::path EditedModel(const Sandbox& s, const Edit& edit) {
  const fs::path dir = s.CopyModel();
  const SafetensorsFile original(DataDir() / "stories260K" / "model.safetensors");
  std::vector<std::string> names;
  std::vector<DType> dtypes;
  std::vector<std::vector<int64_t>> shapes;
  std::vector<std::vector<std::byte>> data;
  auto add = [&](const std::string& name, std::vector<float> values, DType dtype,
                 std::vector<int64_t> shape) {
    if (edit.tensor) edit.tensor(name, values, dtype);
    // Encoded bit for bit: the case decides what is stored, even an infinity.
    std::vector<std::byte> bytes(values.size() * DTypeSize(dtype));
    for (size_t i = 0; i < values.size(); ++i) {
      if (dtype == DType::kF32) {
        std::memcpy(bytes.data() + 4 * i, &values[i], 4);
      } else {
        const std::vector<std::byte> one =
            EncodeFloats(std::span<const float>(&values[i], 1), dtype, name);
        std::memcpy(bytes.data() + 2 * i, one.data(), 2);
      }
    }
    names.push_back(name);
    dtypes.push_back(dtype);
    shapes.push_back(std::move(shape));
    data.push_back(std::move(bytes));
  };
  for (const TensorInfo& t : original.tensors()) {
    add(t.name, original.ReadFloat(t.name), DType::kF32, t.shape);
  }
  for (const auto& [name, shape] : edit.extra) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    add(name, std::vector<float>(static_cast<size_t>(n), 0.01f), DType::kF32, shape);
  }
  std::vector<TensorToWrite> tensors;
  for (size_t i = 0; i < names.size(); ++i)
    tensors.push_back({names[i], dtypes[i], shapes[i], data[i]});
  WriteSafetensors(dir / "model.safetensors", tensors, original.metadata());
  if (edit.config) {
    nlohmann::json config;
    std::ifstream(dir / "config.json") >> config;
    edit.config(config);
    std::ofstream(dir / "config.json") << config.dump(2);
  }
  return dir;
}

std::string Eval(const Sandbox& s, int np, const fs::path& model) {
  return s.Hiq(np) + " eval --model " + model.string() + " --text " +
         (DataDir() / "text/tinystories/sample.txt").string() + " --seq-len 64";
}

const int kRegistered = RegisterCases({
    {.name = "ModelDirectoryMissing",
     .area = "checkpoint",
     .what = "--model names a directory that does not exist",
     .command = [](Sandbox& s) { return Eval(s, 1, s / "no-such-model"); },
     .message = "hiq: error: Checkpoint: $TMP/no-such-model is not a directory, expected a Hugging "
                "Face model directory (config.json + model.safetensors)"},
    {.name = "ConfigJsonFieldMissing",
     .area = "checkpoint",
     .what = "config.json without hidden_size",
     .command =
         [](Sandbox& s) {
           return Eval(
               s, 2, EditedModel(s, {.config = [](nlohmann::json& c) { c.erase("hidden_size"); }}));
         },
     .message = "hiq: error: rank *: ReadLlamaConfig: $TMP/model/config.json: 'hidden_size' is "
                "missing, expected a positive integer"},
    {.name = "TensorShapeDisagreesWithConfigJson",
     .area = "checkpoint",
     .what = "config.json says intermediate_size 160, the tensors have 172",
     .command =
         [](Sandbox& s) {
           return Eval(
               s, 2,
               EditedModel(s, {.config = [](nlohmann::json& c) { c["intermediate_size"] = 160; }}));
         },
     .message = "hiq: error: rank *: Checkpoint::CheckLlamaTensors: $TMP/model: tensor "
                "'model.layers.0.mlp.gate_proj.weight' has shape [172, 64], expected [160, 64] = "
                "[intermediate_size, hidden_size] from config.json"},
    {.name = "BlockBeyondNumHiddenLayers",
     .area = "checkpoint",
     .what = "config.json says 4 blocks, the weights hold 5",
     .command =
         [](Sandbox& s) {
           return Eval(
               s, 2,
               EditedModel(s, {.config = [](nlohmann::json& c) { c["num_hidden_layers"] = 4; }}));
         },
     .message = "hiq: error: rank *: Checkpoint::CheckLlamaTensors: $TMP/model: tensor "
                "'model.layers.4.input_layernorm.weight' (in model.safetensors) belongs to block "
                "4, but config.json has num_hidden_layers = 4 (blocks 0..3)"},
    {.name = "BlockTensorMissing",
     .area = "checkpoint",
     .what = "config.json says 6 blocks, the weights hold 5 (the last rank's block is missing)",
     .command =
         [](Sandbox& s) {
           return Eval(
               s, 3,
               EditedModel(s, {.config = [](nlohmann::json& c) { c["num_hidden_layers"] = 6; }}));
         },
     .message = "hiq: error: rank *: Checkpoint::CheckLlamaTensors: $TMP/model: tensor "
                "'model.layers.5.input_layernorm.weight' is missing; expected shape [64] = "
                "[hidden_size] from config.json"},
    {.name = "BiasTensorPresent",
     .area = "checkpoint",
     .what = "a q_proj bias that hiq would silently leave out",
     .command =
         [](Sandbox& s) {
           return Eval(s, 1,
                       EditedModel(s, {.extra = {{"model.layers.2.self_attn.q_proj.bias", {64}}}}));
         },
     .message =
         "hiq: error: Checkpoint::CheckLlamaTensors: $TMP/model: tensor "
         "'model.layers.2.self_attn.q_proj.bias' (in model.safetensors) is not a tensor of a LLaMA "
         "block; hiq would run the model without it (biases and adapters are not supported)"},
    {.name = "NanWeight",
     .area = "checkpoint",
     .what = "a NaN in an F32 weight of block 3",
     .command =
         [](Sandbox& s) {
           return Eval(s, 2,
                       EditedModel(s, {.tensor = [](const std::string& name, std::vector<float>& v,
                                                    DType&) {
                                     if (name == "model.layers.3.mlp.up_proj.weight")
                                       v[64 * 5 + 7] = std::nanf("");
                                   }}));
         },
     .message = "hiq: error: rank 1: SafetensorsFile::ReadFloat: $TMP/model/model.safetensors: "
                "tensor 'model.layers.3.mlp.up_proj.weight' holds nan at index [5, 7] (F32); "
                "weights must be finite"},
    {.name = "InfinityInF16Weight",
     .area = "checkpoint",
     .what = "an F16 checkpoint whose conversion overflowed: +inf in a weight",
     .command =
         [](Sandbox& s) {
           return Eval(s, 1,
                       EditedModel(s, {.tensor = [](const std::string& name, std::vector<float>& v,
                                                    DType& dtype) {
                                     dtype = DType::kF16;
                                     if (name == "model.layers.0.self_attn.k_proj.weight")
                                       v[3] = std::numeric_limits<float>::infinity();
                                   }}));
         },
     .message = "hiq: error: SafetensorsFile::ReadFloat: $TMP/model/model.safetensors: tensor "
                "'model.layers.0.self_attn.k_proj.weight' holds inf at index [0, 3] (F16); weights "
                "must be finite"},
    {.name = "WeightThatOverflowsTheForwardPass",
     .area = "checkpoint",
     .what = "a finite weight of 3e38: eval's loss becomes NaN",
     .command =
         [](Sandbox& s) {
           return Eval(s, 2,
                       EditedModel(s, {.tensor = [](const std::string& name, std::vector<float>& v,
                                                    DType&) {
                                     if (name == "model.layers.1.mlp.down_proj.weight")
                                       for (float& x : v) x = 3e38f;
                                   }}));
         },
     .message = "hiq: error: rank 0: during eval: forward: the output of block 1 (model.layers.1) "
                "is inf on sequence "
                "0, position 0: an activation overflowed (weights far beyond the usual scale?)"},
    {.name = "WeightThatOverflowsTheFisherPass",
     .area = "checkpoint",
     .what = "a finite weight of 3e38: the plan's Fisher pass meets NaN",
     .command =
         [](Sandbox& s) {
           const fs::path model = EditedModel(
               s, {.tensor = [](const std::string& name, std::vector<float>& v, DType&) {
                 if (name == "model.layers.1.mlp.down_proj.weight")
                   for (float& x : v) x = 3e38f;
               }});
           return s.Hiq(2) + " plan " + s.PlanConfig("").string() +
                  " --set model.path=" + model.string();
         },
     .message = "hiq: error: rank 0: during plan: fisher: forward: the output of block 1 "
                "(model.layers.1) is -inf on sequence "
                "0, position 0: an activation overflowed (weights far beyond the usual scale?)"},
    {.name = "MoreRanksThanBlocks",
     .area = "ranks",
     .what = "6 ranks for a model of 5 blocks",
     .command = [](Sandbox& s) { return "timeout 120 " + Eval(s, 6, DataDir() / "stories260K"); },
     .message = "hiq: error: rank *: PartitionBlocks: 6 ranks for a model of 5 blocks; every rank "
                "must own at least one block. HINT: run with at most 5 ranks"},
    {.name = "QuantizeOnMoreRanksThanBlocks",
     .area = "ranks",
     .what = "hiq quantize with 6 ranks for 5 blocks, refused before any pass",
     .command =
         [](Sandbox& s) {
           return "timeout 120 " + s.Hiq(6) + " quantize " + s.PlanConfig().string();
         },
     .message = "hiq: error: rank *: PartitionBlocks: 6 ranks for a model of 5 blocks; every rank "
                "must own at least one block. HINT: run with at most 5 ranks"},
    {.name = "SafetensorsTruncated",
     .area = "checkpoint",
     .what = "model.safetensors cut short in its data",
     .command =
         [](Sandbox& s) {
           const fs::path dir = s.CopyModel();
           fs::resize_file(dir / "model.safetensors",
                           fs::file_size(dir / "model.safetensors") - 100);
           return Eval(s, 2, dir);
         },
     .message = "hiq: error: rank *: ReadSafetensorsHeader: $TMP/model/model.safetensors: tensor "
                "'model.norm.weight': data_offsets [1039872, 1040128] out of bounds: the data "
                "section is 1040028 bytes"},
});

}  // namespace
}  // namespace hiq::test
