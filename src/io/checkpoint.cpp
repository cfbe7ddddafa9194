// checkpoint: config.json validation, lazy shard opening, the tensor check and `hiq inspect`.
#include "hiq/io/checkpoint.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <tuple>

#include "hiq/base/error.h"  // FormatError, IoError

namespace hiq {

namespace {

using nlohmann::json;

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

std::string Dump(const json& value) {
  std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
  return text.size() > 80 ? text.substr(0, 77) + "..." : text;
}

std::string ReadText(const std::filesystem::path& path, const std::string& function) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(function + ": cannot open " + path.string());
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw IoError(function + ": cannot read " + path.string());
  return text.str();
}

// Typed access to config.json fields; every failure names the source, the key and the value.
class ConfigFields {
 public:
  ConfigFields(const json& root, std::string function, std::string source)
      : root_(root), function_(std::move(function)), source_(std::move(source)) {}

  [[noreturn]] void Fail(const std::string& what) const {
    throw FormatError(function_ + ": " + source_ + ": " + what);
  }
  // nullptr when absent or null (transformers writes null for "use the default").
  const json* Find(const char* key) const {
    auto it = root_.find(key);
    return it == root_.end() || it->is_null() ? nullptr : &*it;
  }
  int64_t PositiveInt(const char* key, std::optional<int64_t> fallback = std::nullopt) const {
    const json* value = Find(key);
    if (value == nullptr) {
      if (!fallback) Fail(std::string("'") + key + "' is missing, expected a positive integer");
      return *fallback;
    }
    if (!value->is_number_integer()) {
      Fail(std::string("'") + key + "' is " + Dump(*value) + " (" + value->type_name() +
           "), expected a positive integer");
    }
    if (value->is_number_unsigned() && value->get<uint64_t>() > uint64_t{1} << 62) {
      Fail(std::string("'") + key + "' = " + Dump(*value) + " is implausibly large");
    }
    const int64_t v = value->get<int64_t>();
    if (v <= 0) Fail(std::string("'") + key + "' = " + std::to_string(v) + ", expected > 0");
    return v;
  }
  double PositiveNumber(const char* key, std::optional<double> fallback = std::nullopt) const {
    const json* value = Find(key);
    if (value == nullptr) {
      if (!fallback) Fail(std::string("'") + key + "' is missing, expected a positive number");
      return *fallback;
    }
    if (!value->is_number()) {
      Fail(std::string("'") + key + "' is " + Dump(*value) + " (" + value->type_name() +
           "), expected a positive number");
    }
    const double v = value->get<double>();
    if (!(v > 0.0) || !std::isfinite(v)) {
      Fail(std::string("'") + key + "' = " + Dump(*value) + ", expected a finite number > 0");
    }
    return v;
  }
  bool Bool(const char* key, bool fallback) const {
    const json* value = Find(key);
    if (value == nullptr) return fallback;
    if (!value->is_boolean()) {
      Fail(std::string("'") + key + "' is " + Dump(*value) + " (" + value->type_name() +
           "), expected true or false");
    }
    return value->get<bool>();
  }
  std::string String(const char* key, const std::string& fallback) const {
    const json* value = Find(key);
    if (value == nullptr) return fallback;
    if (!value->is_string()) {
      Fail(std::string("'") + key + "' is " + Dump(*value) + " (" + value->type_name() +
           "), expected a string");
    }
    return value->get<std::string>();
  }

 private:
  const json& root_;
  std::string function_;
  std::string source_;
};

LlamaConfig ConfigFromJson(const json& root, const std::string& source,
                           const std::string& function) {
  ConfigFields f(root, function, source);
  if (!root.is_object()) f.Fail("config is " + Dump(root) + ", expected a JSON object");

  bool is_llama = f.String("model_type", "") == "llama";
  if (const json* arch = f.Find("architectures")) {
    if (!arch->is_array()) f.Fail("'architectures' is " + Dump(*arch) + ", expected a list");
    for (const json& name : *arch) is_llama = is_llama || name == "LlamaForCausalLM";
  }
  if (!is_llama) {
    const json* arch = f.Find("architectures");
    f.Fail("'architectures' is " + (arch ? Dump(*arch) : std::string("missing")) +
           " and 'model_type' is " + Dump(root.value("model_type", json())) +
           "; hiq runs LlamaForCausalLM (model_type \"llama\") only");
  }

  LlamaConfig c;
  c.hidden_size = f.PositiveInt("hidden_size");
  c.intermediate_size = f.PositiveInt("intermediate_size");
  c.num_attention_heads = f.PositiveInt("num_attention_heads");
  c.num_key_value_heads = f.PositiveInt("num_key_value_heads", c.num_attention_heads);
  c.num_hidden_layers = f.PositiveInt("num_hidden_layers");
  c.vocab_size = f.PositiveInt("vocab_size");
  c.max_position_embeddings = f.PositiveInt("max_position_embeddings", 2048);
  c.rms_norm_eps = f.PositiveNumber("rms_norm_eps");
  c.rope_theta = f.PositiveNumber("rope_theta", 10000.0);
  c.tie_word_embeddings = f.Bool("tie_word_embeddings", false);
  // transformers >= 4.56 writes "dtype"; older versions "torch_dtype".
  c.torch_dtype = f.String("torch_dtype", f.String("dtype", ""));

  // What the model math (hiq/model/llama.h) does not implement is refused here, by name.
  if (const std::string act = f.String("hidden_act", "silu"); act != "silu") {
    f.Fail("'hidden_act' is \"" + act + "\"; hiq's MLP is SwiGLU, expected \"silu\"");
  }
  if (const json* scaling = f.Find("rope_scaling")) {
    f.Fail("'rope_scaling' is " + Dump(*scaling) +
           "; hiq implements plain RoPE only, expected null or absent");
  }
  for (const char* bias : {"attention_bias", "mlp_bias"}) {
    if (f.Bool(bias, false)) {
      f.Fail(std::string("'") + bias +
             "' is true; hiq's linear layers have no bias, expected "
             "false");
    }
  }
  if (c.hidden_size % c.num_attention_heads != 0) {
    f.Fail("'hidden_size' " + std::to_string(c.hidden_size) +
           " is not divisible by 'num_attention_heads' " + std::to_string(c.num_attention_heads));
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    f.Fail("'num_attention_heads' " + std::to_string(c.num_attention_heads) +
           " is not divisible by 'num_key_value_heads' " + std::to_string(c.num_key_value_heads));
  }
  const std::string head_dim_text =
      "hidden_size / num_attention_heads = " + std::to_string(c.hidden_size) + " / " +
      std::to_string(c.num_attention_heads) + " = " + std::to_string(c.head_dim());
  if (f.Find("head_dim") != nullptr) {
    if (const int64_t head_dim = f.PositiveInt("head_dim"); head_dim != c.head_dim()) {
      f.Fail("'head_dim' is " + std::to_string(head_dim) + " but " + head_dim_text +
             "; hiq needs head_dim * num_attention_heads == hidden_size");
    }
  }
  if (c.head_dim() % 2 != 0) {
    f.Fail("head_dim = " + head_dim_text + " is odd; RoPE rotates pairs of dimensions");
  }
  return c;
}

// The position of a tensor in List(): embed, layers by number (table order inside), norm,
// head, the rest.
std::tuple<int, int64_t, size_t, std::string_view> OrderKey(std::string_view name) {
  if (name == "model.embed_tokens.weight") return {0, 0, 0, name};
  if (name == "model.norm.weight") return {2, 0, 0, name};
  if (name == "lm_head.weight") return {3, 0, 0, name};
  constexpr std::string_view kLayers = "model.layers.";
  if (name.starts_with(kLayers)) {
    std::string_view rest = name.substr(kLayers.size());
    int64_t layer = 0;
    auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), layer);
    if (ec == std::errc() && end != rest.data() && end < rest.data() + rest.size() && *end == '.') {
      std::string_view suffix(end + 1, rest.data() + rest.size() - end - 1);
      const size_t slot = static_cast<size_t>(
          std::find_if(kBlockTensors.begin(), kBlockTensors.end(),
                       [&](const BlockTensor& t) { return t.suffix == suffix; }) -
          kBlockTensors.begin());
      return {1, layer, slot, name};
    }
  }
  return {4, 0, 0, name};
}

bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

}  // namespace

LlamaConfig LlamaConfigFromJson(const nlohmann::json& json, const std::string& source_name) {
  return ConfigFromJson(json, source_name, "LlamaConfigFromJson");
}

LlamaConfig ReadLlamaConfig(const std::filesystem::path& config_json) {
  const std::string function = "ReadLlamaConfig";
  const std::string text = ReadText(config_json, function);
  return ConfigFromJson(ParseJsonStrict(text, function, config_json.string()), config_json.string(),
                        function);
}

ModelVocab ReadModelVocab(const std::filesystem::path& config_json) {
  const std::string function = "ReadModelVocab";
  const json root =
      ParseJsonStrict(ReadText(config_json, function), function, config_json.string());
  ModelVocab vocab;
  vocab.config_file = config_json.string();
  vocab.vocab_size = ConfigFromJson(root, config_json.string(), function).vocab_size;
  const auto id = [&](const json& value, const char* key) {
    if (!value.is_number_integer() || value.get<int64_t>() < 0) {
      throw FormatError(function + ": " + config_json.string() + ": '" + key + "' is " +
                        Dump(value) + ", expected a non-negative integer or null");
    }
    return value.get<int64_t>();
  };
  if (root.contains("bos_token_id") && !root.at("bos_token_id").is_null()) {
    vocab.bos_token_id = id(root.at("bos_token_id"), "bos_token_id");
  }
  if (root.contains("eos_token_id") && !root.at("eos_token_id").is_null()) {
    const json& eos = root.at("eos_token_id");
    if (eos.is_array()) {
      for (const json& e : eos) vocab.eos_token_ids.push_back(id(e, "eos_token_id"));
    } else {
      vocab.eos_token_ids.push_back(id(eos, "eos_token_id"));
    }
  }
  return vocab;
}

nlohmann::json ToJson(const LlamaConfig& c) {
  json j = {{"architectures", {"LlamaForCausalLM"}},
            {"model_type", "llama"},
            {"hidden_size", c.hidden_size},
            {"intermediate_size", c.intermediate_size},
            {"num_attention_heads", c.num_attention_heads},
            {"num_key_value_heads", c.num_key_value_heads},
            {"num_hidden_layers", c.num_hidden_layers},
            {"head_dim", c.head_dim()},
            {"vocab_size", c.vocab_size},
            {"max_position_embeddings", c.max_position_embeddings},
            {"rms_norm_eps", c.rms_norm_eps},
            {"rope_theta", c.rope_theta},
            {"rope_scaling", nullptr},
            {"tie_word_embeddings", c.tie_word_embeddings},
            {"hidden_act", "silu"},
            {"attention_bias", false},
            {"mlp_bias", false}};
  if (!c.torch_dtype.empty()) j["torch_dtype"] = c.torch_dtype;
  return j;
}

// ---- Checkpoint -------------------------------------------------------------------------------

struct Checkpoint::State {
  struct Shard {
    std::string file;                           // name inside dir
    std::vector<std::string> listed;            // what the index maps here (empty without an index)
    std::unique_ptr<SafetensorsHeader> header;  // read on first use
    std::map<std::string, size_t, std::less<>> by_name;  // into header->tensors
    std::unique_ptr<SafetensorsFile> mapped;             // mapped on first read
  };

  std::filesystem::path dir;
  LlamaConfig config;
  std::string index_path;  // empty for a single model.safetensors
  std::vector<Shard> shards;
  std::map<std::string, size_t, std::less<>> shard_of;  // tensor -> shards[i]
  std::mutex mu;                                        // guards the lazy members of shards

  void SetHeader(Shard& shard, SafetensorsHeader header) {
    shard.header = std::make_unique<SafetensorsHeader>(std::move(header));
    for (size_t i = 0; i < shard.header->tensors.size(); ++i) {
      shard.by_name.emplace(shard.header->tensors[i].name, i);
    }
    for (const std::string& name : shard.listed) {
      if (!shard.by_name.contains(name)) {
        throw FormatError("Checkpoint: tensor '" + name + "' is listed in " + index_path +
                          " for shard '" + shard.file + "' but that shard does not contain it (" +
                          std::to_string(shard.by_name.size()) + " tensors in the shard)");
      }
    }
  }
  // Callers hold mu.
  Shard& Loaded(size_t i) {
    Shard& shard = shards[i];
    if (!shard.header) SetHeader(shard, ReadSafetensorsHeader(dir / shard.file).header);
    return shard;
  }
  size_t ShardOf(std::string_view name, const char* function) const {
    auto it = shard_of.find(name);
    if (it == shard_of.end()) {
      throw FormatError(std::string(function) + ": " + dir.string() + ": no tensor '" +
                        std::string(name) + "' in the checkpoint (" +
                        std::to_string(shard_of.size()) + " tensors)");
    }
    return it->second;
  }
  const TensorInfo& InfoLocked(std::string_view name, const char* function) {
    Shard& shard = Loaded(ShardOf(name, function));
    return shard.header->tensors[shard.by_name.find(name)->second];
  }
  const SafetensorsFile& Mapped(std::string_view name, const char* function) {
    std::lock_guard<std::mutex> lock(mu);
    const size_t i = ShardOf(name, function);
    Loaded(i);  // the index cross-check runs before any read
    Shard& shard = shards[i];
    if (!shard.mapped) shard.mapped = std::make_unique<SafetensorsFile>(dir / shard.file);
    return *shard.mapped;  // immutable once mapped: reads need no lock
  }
};

Checkpoint::Checkpoint(const std::filesystem::path& dir) : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.dir = dir;
  if (!std::filesystem::is_directory(dir)) {
    throw IoError("Checkpoint: " + dir.string() +
                  " is not a directory, expected a Hugging Face "
                  "model directory (config.json + model.safetensors)");
  }
  s.config = ReadLlamaConfig(dir / "config.json");

  if (std::filesystem::exists(dir / kSingleFile)) {
    s.shards.push_back({kSingleFile, {}, nullptr, {}, nullptr});
    s.SetHeader(s.shards[0], ReadSafetensorsHeader(dir / kSingleFile).header);
    for (const TensorInfo& t : s.shards[0].header->tensors) s.shard_of.emplace(t.name, 0);
    return;
  }
  const std::filesystem::path index = dir / kIndexFile;
  if (!std::filesystem::exists(index)) {
    std::string hint;
    if (std::filesystem::exists(dir / "pytorch_model.bin") ||
        std::filesystem::exists(dir / "pytorch_model.bin.index.json")) {
      hint =
          " HINT: the weights are PyTorch pickles; re-save them as safetensors "
          "(transformers: save_pretrained(dir, safe_serialization=True))";
    }
    throw IoError("Checkpoint: " + dir.string() + " has neither " + kSingleFile + " nor " +
                  kIndexFile + "." + hint);
  }
  s.index_path = index.string();
  const json root = ParseJsonStrict(ReadText(index, "Checkpoint"), "Checkpoint", s.index_path);
  const std::string where = "Checkpoint: " + s.index_path + ": ";
  if (!root.is_object() || !root.contains("weight_map") || !root.at("weight_map").is_object() ||
      root.at("weight_map").empty()) {
    throw FormatError(where +
                      "expected an object with a non-empty \"weight_map\": "
                      "{tensor: shard file}");
  }
  std::map<std::string, std::vector<std::string>> listed;  // shard -> tensors, sorted by shard
  for (const auto& [name, file] : root.at("weight_map").items()) {
    if (!file.is_string() || !IsPlainFileName(file.get<std::string>())) {
      throw FormatError(where + "weight_map['" + name + "'] is " + Dump(file) +
                        ", expected a file name in the same directory");
    }
    listed[file.get<std::string>()].push_back(name);
  }
  for (auto& [file, names] : listed) {
    if (!std::filesystem::is_regular_file(dir / file)) {
      throw IoError("Checkpoint: shard '" + file + "' named in " + s.index_path +
                    " does not exist in " + dir.string() + " (" + std::to_string(names.size()) +
                    " tensors map to it). HINT: download every shard of the model");
    }
    for (const std::string& name : names) s.shard_of.emplace(name, s.shards.size());
    s.shards.push_back({file, std::move(names), nullptr, {}, nullptr});
  }
}

Checkpoint::~Checkpoint() = default;
Checkpoint::Checkpoint(Checkpoint&&) noexcept = default;
Checkpoint& Checkpoint::operator=(Checkpoint&&) noexcept = default;

const LlamaConfig& Checkpoint::config() const { return state_->config; }
const std::filesystem::path& Checkpoint::dir() const { return state_->dir; }
bool Checkpoint::Has(std::string_view name) const { return state_->shard_of.contains(name); }

const TensorInfo& Checkpoint::Info(std::string_view name) const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->InfoLocked(name, "Checkpoint::Info");
}

std::vector<TensorEntry> Checkpoint::List() const {
  std::vector<TensorEntry> entries;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    for (const auto& [name, shard] : state_->shard_of) {
      const TensorInfo& info = state_->InfoLocked(name, "Checkpoint::List");
      entries.push_back({name, info.dtype, info.shape, info.bytes(), state_->shards[shard].file});
    }
  }
  std::sort(entries.begin(), entries.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return OrderKey(a.name) < OrderKey(b.name);
  });
  return entries;
}

std::vector<float> Checkpoint::ReadFloat(std::string_view name) const {
  return state_->Mapped(name, "Checkpoint::ReadFloat").ReadFloat(name);
}

void Checkpoint::ReadFloatInto(std::string_view name, std::span<float> out) const {
  state_->Mapped(name, "Checkpoint::ReadFloat").ReadFloatInto(name, out);
}

namespace {

// The tensor `name` of the shard that holds it; FormatError if the shard changed on disk between
// reading its header and opening it.
const TensorInfo& Located(const SafetensorsFile& file, std::string_view name,
                          const char* function) {
  const TensorInfo* info = file.Find(name);
  if (info == nullptr) {
    throw FormatError(std::string(function) + ": " + file.path().string() + ": no tensor '" +
                      std::string(name) + "' any more");
  }
  return *info;
}

}  // namespace

std::span<const std::byte> Checkpoint::Bytes(std::string_view name) const {
  const char* function = "Checkpoint::Bytes";
  const SafetensorsFile& file = state_->Mapped(name, function);
  return file.Bytes(Located(file, name, function));
}

std::string Checkpoint::Sha256(std::string_view name) const {
  const char* function = "Checkpoint::Sha256";
  const SafetensorsFile& file = state_->Mapped(name, function);
  return file.Sha256(Located(file, name, function));
}

std::vector<std::string> Checkpoint::Files() const {
  std::vector<std::string> files;
  for (const State::Shard& shard : state_->shards) files.push_back(shard.file);
  return files;  // sorted: the shards are built from a sorted map
}

std::vector<std::string> Checkpoint::MappedFiles() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  std::vector<std::string> files;
  for (const State::Shard& shard : state_->shards) {
    if (shard.mapped) files.push_back(shard.file);
  }
  return files;
}

std::vector<std::string> Checkpoint::TouchedTensors() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  std::vector<std::string> names;
  for (const State::Shard& shard : state_->shards) {
    if (!shard.mapped) continue;
    for (std::string& name : shard.mapped->TouchedTensors()) names.push_back(std::move(name));
  }
  std::sort(names.begin(), names.end());
  return names;
}

void Checkpoint::CheckLlamaTensors() const {
  const std::vector<ModelTensor> expected = ModelTensors(config());
  const std::string where = "Checkpoint::CheckLlamaTensors: " + dir().string() + ": tensor '";
  for (const ModelTensor& e : expected) {
    if (!Has(e.name)) {
      std::string hint;
      if (e.name == "lm_head.weight") {
        hint =
            ". HINT: config.json has tie_word_embeddings=false; if the model shares the "
            "embedding matrix with the head, set it to true";
      }
      throw FormatError(where + e.name + "' is missing; expected shape " + ShapeString(e.shape) +
                        " = " + e.shape_doc + " from config.json" + hint);
    }
    const TensorInfo& info = Info(e.name);
    if (info.shape != e.shape) {
      throw FormatError(where + e.name + "' has shape " + ShapeString(info.shape) + ", expected " +
                        ShapeString(e.shape) + " = " + e.shape_doc + " from config.json");
    }
    if (!IsFloatDType(info.dtype)) {
      throw FormatError(where + e.name + "' has dtype " + DTypeName(info.dtype) +
                        ", expected F32, F16 or BF16");
    }
  }
  // A block tensor that config.json does not imply would be silently left out of every pass: a
  // block beyond num_hidden_layers (a truncated or mixed-up config.json), or a bias.
  const std::string layers = "model.layers.";
  for (const TensorEntry& t : List()) {
    if (!t.name.starts_with(layers)) continue;
    const std::string rest = t.name.substr(layers.size());
    const size_t dot = rest.find('.');
    const std::string number = rest.substr(0, dot);
    const std::string suffix = dot == std::string::npos ? "" : rest.substr(dot + 1);
    const bool numeric = !number.empty() && number.size() < 9 &&
                         number.find_first_not_of("0123456789") == std::string::npos;
    if (numeric && std::stoll(number) >= config().num_hidden_layers) {
      throw FormatError(where + t.name + "' (in " + t.file + ") belongs to block " + number +
                        ", but config.json has num_hidden_layers = " +
                        std::to_string(config().num_hidden_layers) + " (blocks 0.." +
                        std::to_string(config().num_hidden_layers - 1) + ")");
    }
    const bool known = std::any_of(kBlockTensors.begin(), kBlockTensors.end(),
                                   [&](const BlockTensor& b) { return b.suffix == suffix; });
    // Transformers' older checkpoints store RoPE's inverse frequencies; hiq recomputes them.
    if (!known && suffix != "self_attn.rotary_emb.inv_freq") {
      throw FormatError(where + t.name + "' (in " + t.file +
                        ") is not a tensor of a LLaMA block; hiq would run the model without "
                        "it (biases and adapters are not supported)");
    }
  }
}

// ---- loading a stage -------------------------------------------------------------------------

namespace {
// (the shape check repeats CheckLlamaTensors' for a caller that skipped it, e.g. a synthetic
// checkpoint written by hand in a test)

Matrix<float> ReadMatrix(const Checkpoint& checkpoint, const std::string& name, int64_t rows,
                         int64_t cols) {
  const TensorInfo& info = checkpoint.Info(name);
  std::vector<int64_t> expected = {rows, cols};
  // Norm weights are 1-D in the checkpoint; we keep them as (1, C).
  if (rows == 1) expected = {cols};
  if (info.shape != expected) {
    throw FormatError("LoadStage: tensor '" + name + "' in " + checkpoint.dir().string() +
                      " has shape " + ShapeString(info.shape) + ", expected " +
                      ShapeString(expected) + " from config.json");
  }
  Matrix<float> m(rows, cols);
  checkpoint.ReadFloatInto(name, std::span<float>(m.data(), static_cast<size_t>(m.size())));
  return m;
}

}  // namespace

Stage<float> LoadStage(const Checkpoint& checkpoint, int block_begin, int block_end,
                       bool has_embedding, bool has_head) {
  const LlamaConfig& config = checkpoint.config();
  Stage<float> stage;
  stage.config = config;
  stage.block_begin = block_begin;
  stage.block_end = block_end;
  stage.has_embedding = has_embedding;
  stage.has_head = has_head;
  const int64_t V = config.vocab_size, C = config.hidden_size;
  if (has_embedding) stage.embedding = ReadMatrix(checkpoint, "model.embed_tokens.weight", V, C);
  for (int b = block_begin; b < block_end; ++b) {
    BlockWeights<float> w = ZeroBlock<float>(config);
    ForEachBlockTensor(w, [&](const BlockTensor& t, Matrix<float>& m) {
      m = ReadMatrix(checkpoint, BlockTensorName(b, t.suffix), m.rows(), m.cols());
    });
    stage.blocks.push_back(std::move(w));
  }
  if (has_head) {
    stage.final_norm = ReadMatrix(checkpoint, "model.norm.weight", 1, C);
    stage.lm_head = ReadMatrix(
        checkpoint, config.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight", V,
        C);
  }
  return stage;
}

Pipeline LoadPipeline(const Comm& comm, const Checkpoint& checkpoint) {
  // Every rank checks the whole table (headers only), so that a tensor missing from another
  // rank's slice fails on every rank alike, before any of them reads a weight.
  checkpoint.CheckLlamaTensors();
  Partition partition = PartitionBlocks(checkpoint.config(), comm.size());
  const size_t r = static_cast<size_t>(comm.rank());
  Stage<float> stage = LoadStage(checkpoint, partition.first_block[r], partition.first_block[r + 1],
                                 r == 0, comm.rank() == comm.size() - 1);
  return Pipeline(comm, std::move(stage), std::move(partition));
}

// ---- inspect ----------------------------------------------------------------------------------

namespace {

struct Summary {
  int64_t params = 0;
  uint64_t bytes = 0;
  std::string dtypes;  // "F32", or "F16,F32" when mixed
};

Summary Summarize(const std::vector<TensorEntry>& entries) {
  Summary s;
  std::set<std::string> dtypes;
  for (const TensorEntry& e : entries) {
    int64_t n = 1;
    for (int64_t d : e.shape) n *= d;
    s.params += n;
    s.bytes += e.bytes;
    dtypes.insert(DTypeName(e.dtype));
  }
  for (const std::string& d : dtypes) s.dtypes += (s.dtypes.empty() ? "" : ",") + d;
  if (s.dtypes.empty()) s.dtypes = "none";
  return s;
}

}  // namespace

void PrintInspect(const Checkpoint& checkpoint, std::ostream& out) {
  const LlamaConfig& c = checkpoint.config();
  const std::vector<TensorEntry> entries = checkpoint.List();
  const Summary s = Summarize(entries);
  const size_t n_files = checkpoint.Files().size();

  out << "model " << checkpoint.dir().string() << "\n";
  out << "config.json (LlamaForCausalLM):\n";
  auto field = [&](const char* key, const auto& value) {
    out << "  " << std::left << std::setw(26) << key << value << "\n";
  };
  field("hidden_size", c.hidden_size);
  field("intermediate_size", c.intermediate_size);
  field("num_attention_heads", c.num_attention_heads);
  field("num_key_value_heads", c.num_key_value_heads);
  field("head_dim", c.head_dim());
  field("num_hidden_layers", c.num_hidden_layers);
  field("vocab_size", c.vocab_size);
  field("max_position_embeddings", c.max_position_embeddings);
  field("rms_norm_eps", c.rms_norm_eps);
  field("rope_theta", c.rope_theta);
  field("tie_word_embeddings", c.tie_word_embeddings ? "true" : "false");
  field("torch_dtype", c.torch_dtype.empty() ? "(not set)" : c.torch_dtype);

  std::vector<std::array<std::string, 5>> rows = {{"name", "dtype", "shape", "bytes", "file"}};
  for (const TensorEntry& e : entries) {
    rows.push_back(
        {e.name, DTypeName(e.dtype), ShapeString(e.shape), std::to_string(e.bytes), e.file});
  }
  std::array<size_t, 5> width{};
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  out << "tensors:\n";
  for (const auto& row : rows) {
    out << "  " << std::left << std::setw(static_cast<int>(width[0])) << row[0] << "  "
        << std::setw(static_cast<int>(width[1])) << row[1] << "  "
        << std::setw(static_cast<int>(width[2])) << row[2] << "  " << std::right
        << std::setw(static_cast<int>(width[3])) << row[3] << "  " << row[4] << "\n";
  }
  out << "total: " << s.params << " parameters in " << entries.size() << " tensors, " << s.bytes
      << " bytes, " << n_files << " file(s)\n";
  out << "params=" << s.params << " tensors=" << entries.size() << " files=" << n_files
      << " dtype=" << s.dtypes << " bytes=" << s.bytes << "\n";
}

nlohmann::json InspectJson(const Checkpoint& checkpoint) {
  const std::vector<TensorEntry> entries = checkpoint.List();
  const Summary s = Summarize(entries);
  json tensors = json::array();
  for (const TensorEntry& e : entries) {
    tensors.push_back({{"name", e.name},
                       {"dtype", DTypeName(e.dtype)},
                       {"shape", e.shape},
                       {"bytes", e.bytes},
                       {"file", e.file}});
  }
  return {{"dir", checkpoint.dir().string()},
          {"config", ToJson(checkpoint.config())},
          {"tensors", std::move(tensors)},
          {"summary",
           {{"params", s.params},
            {"tensors", entries.size()},
            {"files", checkpoint.Files().size()},
            {"dtype", s.dtypes},
            {"bytes", s.bytes}}}};
}

}  // namespace hiq
