// The shard and root files of a quantized model (hiq/io/shard.h has the format).
#include "hiq/io/shard.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include "hiq/base/error.h"
#include "hiq/base/fp16.h"
#include "hiq/base/sha256.h"  // Sha256HexOfFile  // FloatToF16, F16ToFloat
#include "hiq/quant/pack.h"

namespace hiq {
namespace {

// Datasets are stored little-endian and read into memory as the host's integers; the tensor
// bytes of StoredTensor are little-endian, so the copy between them is a plain memcpy here.
static_assert(std::endian::native == std::endian::little, "hiq assumes a little-endian host");

constexpr const char* kShardFormat = "hiq-shard";
constexpr const char* kModelFormat = "hiq-model";
constexpr int kMaxRanks = 99999;  // five digits in the shard file names

std::string DimsText(const std::vector<uint64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

std::string NamesText(const std::vector<std::string>& names) {
  std::string s = "[";
  for (size_t i = 0; i < names.size(); ++i) s += (i ? ", " : "") + names[i];
  return s + "]";
}

// HDF5 link names: '/' would make a path, "." and ".." are not names.
void CheckName(const std::string& function, const char* kind, const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos) {
    throw FormatError(function + ": " + kind + " name '" + name +
                      "' is not a valid name (expected non-empty, no '/', not '.' or '..')");
  }
}

// FP16 bit patterns of values that are FP16 already (the scales and high_fp16 of a
// QuantizedLayer): the conversion is exact.
std::vector<uint16_t> HalfBits(std::span<const float> values) {
  std::vector<uint16_t> bits(values.size());
  for (size_t i = 0; i < values.size(); ++i) bits[i] = FloatToF16(values[i]);
  return bits;
}

std::vector<float> Scales(std::span<const GroupParams> params) {
  std::vector<float> s(params.size());
  for (size_t i = 0; i < params.size(); ++i) s[i] = params[i].scale;
  return s;
}

std::vector<uint8_t> Zeros(std::span<const GroupParams> params) {
  std::vector<uint8_t> z(params.size());
  for (size_t i = 0; i < params.size(); ++i) z[i] = static_cast<uint8_t>(params[i].zero);
  return z;
}

template <typename T>
void WriteVector(H5Group& group, const char* name, const std::vector<T>& data,
                 const std::vector<uint64_t>& dims) {
  group.WriteDataset<T>(name, std::span<const T>(data), dims);
}

void WritePacked(H5Group& group, const char* name, std::span<const uint8_t> codes, int bits) {
  const std::vector<uint8_t> packed = PackCodes(codes, bits);
  WriteVector(group, name, packed, {packed.size()});
}

template <typename Index>
std::vector<Index> NarrowIndices(std::span<const int32_t> cols) {
  return std::vector<Index>(cols.begin(), cols.end());  // ValidateQuantizedLayer: in range
}

// Items 2-5 of the shard format, in one fixed order so that a layer's bytes never depend on
// where it is written.
void WriteLayer(H5Group group, const QuantizedLayer& q) {
  const auto n_out = static_cast<uint64_t>(q.n_out);
  const auto n_high = static_cast<uint64_t>(q.n_high());
  const auto n_groups = static_cast<uint64_t>(GroupCount(q.n_low(), q.spec.group_size));
  group.SetAttribute("n_out", q.n_out);
  group.SetAttribute("n_in", q.n_in);
  group.SetAttribute("bits_low", q.spec.bits_low);
  group.SetAttribute("bits_high", q.spec.bits_high);
  group.SetAttribute("group_size", q.spec.group_size);
  group.SetAttribute("n_high", q.n_high());
  WritePacked(group, "low_codes", q.low_codes, q.spec.bits_low);
  WriteVector(group, "low_scales", HalfBits(Scales(q.low_params)), {n_out, n_groups});
  WritePacked(group, "low_zeros", Zeros(q.low_params), q.spec.bits_low);
  if (IndexBits(q.n_in) == 16) {
    WriteVector(group, "high_cols", NarrowIndices<uint16_t>(q.high_cols), {n_high});
  } else {
    WriteVector(group, "high_cols", NarrowIndices<uint32_t>(q.high_cols), {n_high});
  }
  if (n_high == 0) return;
  if (q.spec.high_fp16()) {
    WriteVector(group, "high_fp16", HalfBits(q.high_fp16), {n_out, n_high});
    return;
  }
  WritePacked(group, "high_codes", q.high_codes, q.spec.bits_high);
  WriteVector(group, "high_scales", HalfBits(Scales(q.high_params)), {n_out});
  WritePacked(group, "high_zeros", Zeros(q.high_params), q.spec.bits_high);
}

bool IsStoredFloat(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16;
}

void CheckTensor(const char* function, const TensorToWrite& t) {
  CheckName(function, "tensor", t.name);
  const std::string where = std::string(function) + ": tensor '" + t.name + "'";
  if (!IsStoredFloat(t.dtype)) {
    throw FormatError(where + " has dtype " + DTypeName(t.dtype) + ", expected F32, F16 or BF16");
  }
  uint64_t numel = 1;
  for (const int64_t d : t.shape) {
    if (d < 0) throw FormatError(where + " has a negative dimension " + std::to_string(d));
    numel *= static_cast<uint64_t>(d);
  }
  if (t.data.size() != numel * DTypeSize(t.dtype)) {
    throw FormatError(where + " has " + std::to_string(t.data.size()) + " bytes, expected " +
                      std::to_string(numel * DTypeSize(t.dtype)) + " for its shape and dtype");
  }
}

// Item 7: the bytes as they are; F16/BF16 as uint16 patterns.
void WriteTensor(H5Group group, const TensorToWrite& t) {
  group.SetAttribute("dtype", std::string_view(DTypeName(t.dtype)));
  const std::vector<uint64_t> dims(t.shape.begin(), t.shape.end());
  if (t.dtype == DType::kF32) {
    std::vector<float> values(t.data.size() / sizeof(float));
    std::memcpy(values.data(), t.data.data(), t.data.size());
    WriteVector(group, "data", values, dims);
  } else {
    std::vector<uint16_t> values(t.data.size() / sizeof(uint16_t));
    std::memcpy(values.data(), t.data.data(), t.data.size());
    WriteVector(group, "data", values, dims);
  }
}

// ---- reading ---------------------------------------------------------------------------------

template <H5Element T>
std::string ElementName() {
  if constexpr (std::is_same_v<T, float>) return "float32";
  if constexpr (std::is_same_v<T, uint8_t>) return "uint8";
  if constexpr (std::is_same_v<T, uint16_t>) return "uint16";
  if constexpr (std::is_same_v<T, uint32_t>) return "uint32";
}

// Reads dataset `name` of `group`, which must be of type T and shape `dims` exactly.
template <H5Element T>
std::vector<T> ReadExact(const H5Group& group, const std::string& where, const std::string& name,
                         const std::vector<uint64_t>& dims) {
  const std::string type = group.DatasetTypeName(name);
  if (type != ElementName<T>()) {
    throw FormatError(where + ": " + name + " is " + type + ", expected " + ElementName<T>());
  }
  const std::vector<uint64_t> found = group.DatasetDims(name);
  if (found != dims) {
    throw FormatError(where + ": " + name + " has shape " + DimsText(found) + ", expected " +
                      DimsText(dims));
  }
  return group.ReadDataset<T>(name).data;
}

std::vector<uint8_t> ReadPacked(const H5Group& group, const std::string& where,
                                const std::string& name, int64_t n, int bits) {
  const std::vector<uint8_t> packed =
      ReadExact<uint8_t>(group, where, name, {static_cast<uint64_t>(PackedBytes(n, bits))});
  std::vector<uint8_t> codes(static_cast<size_t>(n));
  try {
    UnpackCodes(packed, bits, codes);
  } catch (const FormatError& e) {  // the padding check: say which file and dataset
    throw FormatError(where + ": " + name + ": " + e.what());
  }
  return codes;
}

// FP16 patterns -> values; a scale or weight pattern must be finite (exponent not all ones).
std::vector<float> ReadHalves(const H5Group& group, const std::string& where,
                              const std::string& name, const std::vector<uint64_t>& dims) {
  const std::vector<uint16_t> bits = ReadExact<uint16_t>(group, where, name, dims);
  std::vector<float> values(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) {
    if ((bits[i] & 0x7C00) == 0x7C00) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%04X", bits[i]);
      throw FormatError(where + ": " + name + "[" + std::to_string(i) + "] = " + hex +
                        " is an FP16 infinity or NaN, expected a finite value");
    }
    values[i] = F16ToFloat(bits[i]);
  }
  return values;
}

std::vector<GroupParams> Params(std::span<const float> scales, std::span<const uint8_t> zeros) {
  std::vector<GroupParams> params(scales.size());
  for (size_t i = 0; i < scales.size(); ++i) params[i] = {scales[i], zeros[i]};
  return params;
}

// The dataset names a layer group holds (items 3-5), sorted as ListNames sorts.
std::vector<std::string> ExpectedDatasets(const LayerInfo& info) {
  std::vector<std::string> names = {"high_cols", "low_codes", "low_scales", "low_zeros"};
  if (info.n_high > 0 && info.spec.high_fp16()) names.push_back("high_fp16");
  if (info.n_high > 0 && !info.spec.high_fp16()) {
    names.insert(names.end(), {"high_codes", "high_scales", "high_zeros"});
  }
  std::sort(names.begin(), names.end());
  return names;
}

int64_t ElementBytes(const std::string& where, const std::string& type) {
  static const std::map<std::string, int64_t> kBytes = {
      {"uint8", 1}, {"uint16", 2}, {"uint32", 4}, {"float32", 4}};
  const auto it = kBytes.find(type);
  if (it == kBytes.end()) throw FormatError(where + ": unexpected dataset type " + type);
  return it->second;
}

std::string Where(const char* function, const std::filesystem::path& file, const char* kind,
                  const std::string& name) {
  return std::string(function) + ": " + file.string() + ": " + kind + " '" + name + "'";
}

// Item 2: a layer group's attributes, in ranges that keep every size below computable in int64
// before any array is allocated.
LayerInfo InfoOf(const H5Group& group, const std::string& where) {
  LayerInfo info;
  info.n_out = group.GetAttributeInt("n_out");
  info.n_in = group.GetAttributeInt("n_in");
  info.n_high = group.GetAttributeInt("n_high");
  const int64_t bits_low = group.GetAttributeInt("bits_low");
  const int64_t bits_high = group.GetAttributeInt("bits_high");
  info.spec.group_size = group.GetAttributeInt("group_size");
  constexpr int64_t kMaxDim = int64_t{1} << 31;
  if (info.n_out < 1 || info.n_out >= kMaxDim || info.n_in < 1 || info.n_in >= kMaxDim ||
      info.n_high < 0 || info.n_high > info.n_in) {
    throw FormatError(where + ": n_out " + std::to_string(info.n_out) + ", n_in " +
                      std::to_string(info.n_in) + ", n_high " + std::to_string(info.n_high) +
                      ", expected 1 <= n_out, n_in < 2^31 and 0 <= n_high <= n_in");
  }
  if (bits_low < 1 || bits_low > 8 || ((bits_high < 1 || bits_high > 8) && bits_high != 16) ||
      info.spec.group_size < 0) {
    throw FormatError(where + ": bits_low " + std::to_string(bits_low) + ", bits_high " +
                      std::to_string(bits_high) + ", group_size " +
                      std::to_string(info.spec.group_size) +
                      ", expected bits_low 1..8, bits_high 1..8 or 16, group_size >= 0");
  }
  info.spec.bits_low = static_cast<int>(bits_low);
  info.spec.bits_high = static_cast<int>(bits_high);
  return info;
}

void CheckRank(const char* function, int rank, int n_ranks) {
  if (n_ranks < 1 || n_ranks > kMaxRanks || rank < 0 || rank >= n_ranks) {
    throw ConfigError(std::string(function) + ": rank " + std::to_string(rank) + " of " +
                      std::to_string(n_ranks) +
                      ", expected 0 <= rank < n_ranks <= " + std::to_string(kMaxRanks));
  }
}

// The value of `key` in `object`, of the JSON type `is` checks; FormatError naming the attribute.
const nlohmann::json& Member(const nlohmann::json& object, const char* key,
                             bool (*is)(const nlohmann::json&), const std::string& where,
                             const char* expected) {
  if (!object.is_object() || !object.contains(key) || !is(object[key])) {
    throw FormatError(where + ": " + object.dump() + " has no " + key + " " + expected);
  }
  return object[key];
}

bool IsString(const nlohmann::json& j) { return j.is_string(); }
bool IsInteger(const nlohmann::json& j) { return j.is_number_integer(); }
bool IsNumber(const nlohmann::json& j) { return j.is_number(); }

// Provenance's per-stage objects (stage_seconds, a rank's bytes_sent): {plan, inputs, blocks,
// write}, each member `is` a V.
template <typename Stages, typename V>
Stages ReadStages(const nlohmann::json& object, bool (*is)(const nlohmann::json&),
                  const std::string& where, const char* expected) {
  const auto member = [&](const char* key) {
    return Member(object, key, is, where, expected).template get<V>();
  };
  return Stages{member("plan"), member("inputs"), member("blocks"), member("write")};
}

template <typename Stages>
nlohmann::json StagesJson(const Stages& s) {
  return {{"plan", s.plan}, {"inputs", s.inputs}, {"blocks", s.blocks}, {"write", s.write}};
}

void ReadProvenance(const H5Group& root, const std::filesystem::path& file, ModelFileInfo& info) {
  constexpr const char* kFn = "ReadModelFile";
  const std::string where = std::string(kFn) + ": " + file.string();
  const std::vector<std::string> keys = {"hiq_version", "model_fingerprint", "stage_seconds",
                                         "ranks"};
  int present = 0;
  for (const std::string& key : keys) present += root.HasAttribute(key) ? 1 : 0;
  if (present == 0) return;  // written before provenance was recorded
  if (present != static_cast<int>(keys.size())) {
    throw FormatError(where + ": has " + std::to_string(present) +
                      " of the provenance attributes hiq_version, model_fingerprint, "
                      "stage_seconds, ranks; expected all or none");
  }
  info.hiq_version = root.GetAttributeString("hiq_version");
  info.model_fingerprint = root.GetAttributeString("model_fingerprint");
  const nlohmann::json seconds = ParseJsonStrict(root.GetAttributeString("stage_seconds"), kFn,
                                                 file.string(), "stage_seconds");
  info.seconds =
      ReadStages<StageSeconds, double>(seconds, IsNumber, where + ": stage_seconds", "number");
  const nlohmann::json ranks =
      ParseJsonStrict(root.GetAttributeString("ranks"), kFn, file.string(), "ranks");
  if (!ranks.is_array() || ranks.size() != static_cast<size_t>(info.n_ranks)) {
    throw FormatError(where + ": ranks is not a JSON array of " + std::to_string(info.n_ranks) +
                      " objects (one per rank)");
  }
  const std::string at_ranks = where + ": ranks";
  for (const nlohmann::json& r : ranks) {
    RankProvenance p;
    p.host = Member(r, "host", IsString, at_ranks, "string");
    p.cpu_model = Member(r, "cpu_model", IsString, at_ranks, "string");
    p.blas_core = Member(r, "blas_core", IsString, at_ranks, "string");
    p.threads = Member(r, "threads", IsInteger, at_ranks, "integer");
    p.peak_rss_bytes = Member(r, "peak_rss_bytes", IsInteger, at_ranks, "integer");
    p.blocks_seconds = Member(r, "blocks_seconds", IsNumber, at_ranks, "number");
    if (r.contains("bytes_sent")) {
      p.bytes_sent = ReadStages<StageBytes, int64_t>(r["bytes_sent"], IsInteger,
                                                     at_ranks + ": bytes_sent", "integer");
    }
    info.ranks.push_back(std::move(p));
  }
}

}  // namespace

std::string ShardFileName(int rank, int n_ranks) {
  CheckRank("ShardFileName", rank, n_ranks);
  char name[64];
  std::snprintf(name, sizeof name, "rank-%05d-of-%05d.h5", rank, n_ranks);
  return name;
}

std::string ShardRelativePath(int rank, int n_ranks) {
  return "shards/" + ShardFileName(rank, n_ranks);
}

void WriteShard(const std::filesystem::path& path, int rank, int n_ranks,
                std::span<const ShardLayer> layers, std::span<const TensorToWrite> tensors) {
  constexpr const char* kFn = "WriteShard";
  CheckRank(kFn, rank, n_ranks);
  // Everything is checked before the file exists: a bad input leaves nothing behind.
  std::set<std::string> seen;
  for (const ShardLayer& l : layers) {
    CheckName(kFn, "layer", l.name);
    if (!seen.insert(l.name).second) {
      throw FormatError(std::string(kFn) + ": layer '" + l.name + "' is given twice");
    }
    ValidateQuantizedLayer(l.layer, std::string(kFn) + ": layer '" + l.name + "'");
  }
  seen.clear();
  for (const TensorToWrite& t : tensors) {
    CheckTensor(kFn, t);
    if (!seen.insert(t.name).second) {
      throw FormatError(std::string(kFn) + ": tensor '" + t.name + "' is given twice");
    }
  }
  H5File file = H5File::Create(path);
  H5Group root = file.root();
  root.SetAttribute("format", std::string_view(kShardFormat));
  root.SetAttribute("format_version", kShardFormatVersion);
  root.SetAttribute("rank", rank);
  root.SetAttribute("n_ranks", n_ranks);
  H5Group layer_group = root.CreateGroup("layers");
  for (const ShardLayer& l : layers) WriteLayer(layer_group.CreateGroup(l.name), l.layer);
  H5Group tensor_group = root.CreateGroup("tensors");
  for (const TensorToWrite& t : tensors) WriteTensor(tensor_group.CreateGroup(t.name), t);
  file.Commit();
}

ShardReader::ShardReader(const std::filesystem::path& path) : file_(H5File::Open(path)) {
  constexpr const char* kFn = "ShardReader";
  const H5Group root = file_.root();
  const std::string where = std::string(kFn) + ": " + path.string();
  if (!root.HasAttribute("format")) {
    throw FormatError(where + ": no format attribute, expected a hiq shard or model file");
  }
  format_ = root.GetAttributeString("format");
  if (format_ != kShardFormat && format_ != kModelFormat) {
    throw FormatError(where + ": format '" + format_ + "', expected '" + kShardFormat + "' or '" +
                      kModelFormat + "'");
  }
  const int64_t version = root.GetAttributeInt("format_version");
  const int64_t expected = format_ == kShardFormat ? kShardFormatVersion : kModelFormatVersion;
  if (version != expected) {
    throw FormatError(where + ": " + format_ + " format_version " + std::to_string(version) +
                      ", expected " + std::to_string(expected));
  }
  const int64_t n_ranks = root.GetAttributeInt("n_ranks");
  const int64_t rank = format_ == kShardFormat ? root.GetAttributeInt("rank") : 0;
  if (n_ranks < 1 || n_ranks > kMaxRanks || rank < 0 || rank >= n_ranks) {
    throw FormatError(where + ": rank " + std::to_string(rank) + " of n_ranks " +
                      std::to_string(n_ranks) +
                      ", expected 0 <= rank < n_ranks <= " + std::to_string(kMaxRanks));
  }
  n_ranks_ = static_cast<int>(n_ranks);
  rank_ = format_ == kShardFormat ? static_cast<int>(rank) : -1;
  for (const char* group : {"layers", "tensors"}) {
    if (!root.Has(group)) throw FormatError(where + ": no /" + group + " group");
  }
}

std::vector<std::string> ShardReader::LayerNames() const {
  return file_.root().OpenGroup("layers").ListNames();
}

std::vector<std::string> ShardReader::TensorNames() const {
  return file_.root().OpenGroup("tensors").ListNames();
}

bool ShardReader::HasLayer(const std::string& name) const {
  return name.find('/') == std::string::npos && file_.root().OpenGroup("layers").Has(name);
}

bool ShardReader::HasTensor(const std::string& name) const {
  return name.find('/') == std::string::npos && file_.root().OpenGroup("tensors").Has(name);
}

H5Group ShardReader::Object(const char* function, const char* kind, const std::string& name) const {
  const std::string where = Where(function, path(), kind, name);
  CheckName(where, kind, name);
  const bool is_layer = std::string_view(kind) == "layer";
  const H5Group parent = file_.root().OpenGroup(is_layer ? "layers" : "tensors");
  if (!parent.Has(name)) {
    throw FormatError(where + ": not in " + parent.path() + " (which holds " +
                      std::to_string(parent.ListNames().size()) + " " + kind + "s)");
  }
  return parent.OpenGroup(name);
}

LayerInfo ShardReader::ReadLayerInfo(const std::string& name) const {
  constexpr const char* kFn = "ShardReader::ReadLayerInfo";
  return InfoOf(Object(kFn, "layer", name), Where(kFn, path(), "layer", name));
}

QuantizedLayer ShardReader::ReadLayer(const std::string& name) const {
  constexpr const char* kFn = "ShardReader::ReadLayer";
  const H5Group group = Object(kFn, "layer", name);
  const std::string where = Where(kFn, path(), "layer", name);
  const LayerInfo info = InfoOf(group, where);
  const std::vector<std::string> found = group.ListNames(), expected = ExpectedDatasets(info);
  if (found != expected) {
    throw FormatError(where + ": holds " + NamesText(found) + ", expected " + NamesText(expected));
  }
  QuantizedLayer q;
  q.n_out = info.n_out;
  q.n_in = info.n_in;
  q.spec = info.spec;
  const int64_t n_low = info.n_in - info.n_high;
  const int64_t n_groups = GroupCount(n_low, info.spec.group_size);
  const auto n_out = static_cast<uint64_t>(info.n_out);
  const auto n_high = static_cast<uint64_t>(info.n_high);
  q.low_codes = ReadPacked(group, where, "low_codes", info.n_out * n_low, info.spec.bits_low);
  q.low_params =
      Params(ReadHalves(group, where, "low_scales", {n_out, static_cast<uint64_t>(n_groups)}),
             ReadPacked(group, where, "low_zeros", info.n_out * n_groups, info.spec.bits_low));
  if (IndexBits(info.n_in) == 16) {
    const std::vector<uint16_t> cols = ReadExact<uint16_t>(group, where, "high_cols", {n_high});
    q.high_cols.assign(cols.begin(), cols.end());
  } else {
    const std::vector<uint32_t> cols = ReadExact<uint32_t>(group, where, "high_cols", {n_high});
    for (const uint32_t c : cols) {
      // Beyond int32 it cannot be a column (n_in < 2^31); clamp so validation names it.
      q.high_cols.push_back(static_cast<int32_t>(std::min<uint32_t>(c, INT32_MAX)));
    }
  }
  if (info.n_high > 0 && info.spec.high_fp16()) {
    q.high_fp16 = ReadHalves(group, where, "high_fp16", {n_out, n_high});
  } else if (info.n_high > 0) {
    q.high_codes =
        ReadPacked(group, where, "high_codes", info.n_out * info.n_high, info.spec.bits_high);
    q.high_params = Params(ReadHalves(group, where, "high_scales", {n_out}),
                           ReadPacked(group, where, "high_zeros", info.n_out, info.spec.bits_high));
  }
  ValidateQuantizedLayer(q, where);
  return q;
}

int64_t ShardReader::LayerStoredBytes(const std::string& name) const {
  constexpr const char* kFn = "ShardReader::LayerStoredBytes";
  const H5Group group = Object(kFn, "layer", name);
  const std::string where = Where(kFn, path(), "layer", name);
  int64_t bytes = 0;
  for (const std::string& dataset : group.ListNames()) {
    int64_t count = 1;
    for (const uint64_t d : group.DatasetDims(dataset)) count *= static_cast<int64_t>(d);
    bytes += count * ElementBytes(where + ": " + dataset, group.DatasetTypeName(dataset));
  }
  return bytes;
}

StoredTensor ShardReader::ReadTensor(const std::string& name) const {
  constexpr const char* kFn = "ShardReader::ReadTensor";
  const H5Group group = Object(kFn, "tensor", name);
  const std::string where = Where(kFn, path(), "tensor", name);
  const std::string dtype_name = group.GetAttributeString("dtype");
  const std::optional<DType> dtype = DTypeFromName(dtype_name);
  if (!dtype || !IsStoredFloat(*dtype)) {
    throw FormatError(where + ": dtype '" + dtype_name + "', expected F32, F16 or BF16");
  }
  if (group.ListNames() != std::vector<std::string>{"data"}) {
    throw FormatError(where + ": holds " + NamesText(group.ListNames()) + ", expected [data]");
  }
  StoredTensor t;
  t.name = name;
  t.dtype = *dtype;
  const std::vector<uint64_t> dims = group.DatasetDims("data");
  t.shape.assign(dims.begin(), dims.end());
  const auto copy_out = [&t](const auto& values) {
    t.data.resize(values.size() * sizeof(values[0]));
    std::memcpy(t.data.data(), values.data(), t.data.size());
  };
  if (t.dtype == DType::kF32) {
    copy_out(ReadExact<float>(group, where, "data", dims));
  } else {
    copy_out(ReadExact<uint16_t>(group, where, "data", dims));
  }
  return t;
}

// nlohmann's number output round-trips doubles exactly, so ReadModelFile gives back what was
// written.
nlohmann::json ProvenanceJson(const ModelFileInfo& info) {
  if (info.ranks.empty()) return nullptr;
  nlohmann::json ranks = nlohmann::json::array();
  for (const RankProvenance& r : info.ranks) {
    nlohmann::json rank = {{"host", r.host},
                           {"cpu_model", r.cpu_model},
                           {"blas_core", r.blas_core},
                           {"threads", r.threads},
                           {"peak_rss_bytes", r.peak_rss_bytes},
                           {"blocks_seconds", r.blocks_seconds}};
    if (r.bytes_sent) rank["bytes_sent"] = StagesJson(*r.bytes_sent);
    ranks.push_back(std::move(rank));
  }
  return {{"hiq_version", info.hiq_version},
          {"model_fingerprint", info.model_fingerprint},
          {"stage_seconds", StagesJson(info.seconds)},
          {"ranks", ranks}};
}

void WriteModelFile(const std::filesystem::path& out_dir, const ModelFileInfo& info) {
  constexpr const char* kFn = "WriteModelFile";
  CheckRank(kFn, 0, info.n_ranks);
  // Which shard holds each name, and each layer's attributes, from the shards themselves: the
  // links then point at objects that exist, and the plan is checked against what was written.
  std::map<std::string, std::string> layer_shard, tensor_shard;
  std::map<std::string, LayerInfo> layers;
  nlohmann::json shard_sha256 = nlohmann::json::array();
  for (int r = 0; r < info.n_ranks; ++r) {
    const std::string relative = ShardRelativePath(r, info.n_ranks);
    const ShardReader shard(out_dir / relative);
    const std::string where = std::string(kFn) + ": " + shard.path().string();
    if (shard.format() != kShardFormat || shard.rank() != r || shard.n_ranks() != info.n_ranks) {
      throw FormatError(where + ": " + shard.format() + " of rank " + std::to_string(shard.rank()) +
                        " of " + std::to_string(shard.n_ranks()) + ", expected a " + kShardFormat +
                        " of rank " + std::to_string(r) + " of " + std::to_string(info.n_ranks));
    }
    for (const auto& [names, owner, kind] :
         {std::tuple{shard.LayerNames(), &layer_shard, "layer"},
          std::tuple{shard.TensorNames(), &tensor_shard, "tensor"}}) {
      for (const std::string& name : names) {
        const auto [it, inserted] = owner->emplace(name, relative);
        if (!inserted) {
          throw FormatError(where + ": " + kind + " '" + name + "' is also in " + it->second);
        }
      }
    }
    for (const std::string& name : shard.LayerNames()) layers[name] = shard.ReadLayerInfo(name);
    shard_sha256.push_back(Sha256HexOfFile(out_dir / relative));
  }
  int64_t bits = 0, weights = 0;
  std::set<std::string> planned;
  for (const PlanEntry& e : info.plan) {
    const std::string where = std::string(kFn) + ": plan entry '" + e.name + "'";
    const auto it = layers.find(e.name);
    if (it == layers.end()) throw FormatError(where + ": no shard holds this layer");
    if (!planned.insert(e.name).second) throw FormatError(where + ": listed twice");
    const LayerInfo& l = it->second;
    const int64_t layer_bits = LayerBits(l.n_out, l.n_in, l.n_high, l.spec);
    int64_t ratio_high = -1;
    try {
      ratio_high = HighCount(e.ratio, l.n_in);
    } catch (const ConfigError&) {  // reported below with the layer's numbers
    }
    if (e.n_high != l.n_high || ratio_high != l.n_high || e.bits != layer_bits) {
      throw FormatError(where + ": ratio " + std::to_string(e.ratio) + ", n_high " +
                        std::to_string(e.n_high) + ", bits " + std::to_string(e.bits) +
                        "; its shard holds n_high " + std::to_string(l.n_high) + " of n_in " +
                        std::to_string(l.n_in) + " and LayerBits " + std::to_string(layer_bits));
    }
    bits += layer_bits;
    weights += l.n_out * l.n_in;
  }
  if (planned.size() != layers.size()) {
    for (const auto& [name, l] : layers) {
      if (!planned.contains(name)) {
        throw FormatError(std::string(kFn) + ": layer '" + name + "' (in " + layer_shard[name] +
                          ") is not in the plan");
      }
    }
  }
  const double avg = weights > 0 ? static_cast<double>(bits) / static_cast<double>(weights) : 0;
  if (!info.ranks.empty() && info.ranks.size() != static_cast<size_t>(info.n_ranks)) {
    throw FormatError(std::string(kFn) + ": provenance of " + std::to_string(info.ranks.size()) +
                      " ranks, expected none or " + std::to_string(info.n_ranks));
  }
  if (!(std::fabs(avg - info.avg_bits) <= 1e-12 * std::fabs(avg))) {
    throw FormatError(std::string(kFn) + ": avg_bits " + std::to_string(info.avg_bits) +
                      ", but the shards' layers average " + std::to_string(avg) + " bits");
  }

  H5File file = H5File::Create(out_dir / "model.h5");
  H5Group root = file.root();
  root.SetAttribute("format", std::string_view(kModelFormat));
  root.SetAttribute("format_version", kModelFormatVersion);
  root.SetAttribute("n_ranks", info.n_ranks);
  root.SetAttribute("model_config", std::string_view(info.model_config));
  root.SetAttribute("run_config", std::string_view(info.run_config));
  root.SetAttribute("run_config_hash", std::string_view(info.run_config_hash));
  root.SetAttribute("git_revision", std::string_view(info.git_revision));
  root.SetAttribute("budget_avg_bits", info.budget_avg_bits);
  root.SetAttribute("avg_bits", info.avg_bits);
  // The shards' own hashes: a shard changed, cut short or copied in from another run is then
  // refused by name when the model is read (VerifyShard), not dequantized into a wrong model.
  root.SetAttribute("shard_sha256", std::string_view(shard_sha256.dump()));
  if (const nlohmann::json provenance = ProvenanceJson(info); !provenance.is_null()) {
    root.SetAttribute("hiq_version", std::string_view(info.hiq_version));
    root.SetAttribute("model_fingerprint", std::string_view(info.model_fingerprint));
    root.SetAttribute("stage_seconds", std::string_view(provenance["stage_seconds"].dump()));
    root.SetAttribute("ranks", std::string_view(provenance["ranks"].dump()));
  }
  // The tokenizer travels with the model, so that eval and export need nothing else.
  if (!info.tokenizer_model.empty()) {
    root.WriteDataset<uint8_t>("tokenizer.model", info.tokenizer_model,
                               {static_cast<uint64_t>(info.tokenizer_model.size())});
  }
  H5Group plan = root.CreateGroup("plan");
  nlohmann::json names = nlohmann::json::array();
  std::vector<double> ratio;
  std::vector<int64_t> n_high, layer_bits;
  for (const PlanEntry& e : info.plan) {
    names.push_back(e.name);
    ratio.push_back(e.ratio);
    n_high.push_back(e.n_high);
    layer_bits.push_back(e.bits);
  }
  plan.SetAttribute("names", std::string_view(names.dump()));
  const std::vector<uint64_t> dims = {info.plan.size()};
  WriteVector(plan, "ratio", ratio, dims);
  WriteVector(plan, "n_high", n_high, dims);
  WriteVector(plan, "bits", layer_bits, dims);
  H5Group layer_links = root.CreateGroup("layers");
  for (const PlanEntry& e : info.plan) {
    layer_links.CreateExternalLink(e.name, layer_shard[e.name], "/layers/" + e.name);
  }
  H5Group tensor_links = root.CreateGroup("tensors");
  for (const auto& [name, shard] : tensor_shard) {
    tensor_links.CreateExternalLink(name, shard, "/tensors/" + name);
  }
  file.Commit();
}

ModelFileInfo ReadModelFile(const std::filesystem::path& model_h5) {
  constexpr const char* kFn = "ReadModelFile";
  std::error_code ec;
  if (!std::filesystem::is_regular_file(model_h5, ec)) {
    throw IoError(std::string(kFn) + ": " + model_h5.string() +
                  " does not exist: " + model_h5.parent_path().string() +
                  " is not a complete `hiq quantize` output (model.h5 is written last, so a "
                  "run that did not finish leaves none)");
  }
  const ShardReader reader(model_h5);  // format and version
  const std::string where = std::string(kFn) + ": " + model_h5.string();
  if (reader.format() != kModelFormat) {
    throw FormatError(where + ": format '" + reader.format() + "', expected '" + kModelFormat +
                      "'");
  }
  const H5File file = H5File::Open(model_h5);
  const H5Group root = file.root();
  ModelFileInfo info;
  info.n_ranks = reader.n_ranks();
  info.model_config = root.GetAttributeString("model_config");
  info.run_config = root.GetAttributeString("run_config");
  info.run_config_hash = root.GetAttributeString("run_config_hash");
  info.git_revision = root.GetAttributeString("git_revision");
  info.budget_avg_bits = root.GetAttributeDouble("budget_avg_bits");
  info.avg_bits = root.GetAttributeDouble("avg_bits");
  const nlohmann::json hashes = ParseJsonStrict(root.GetAttributeString("shard_sha256"), kFn,
                                                model_h5.string(), "shard hash");
  if (!hashes.is_array() || hashes.size() != static_cast<size_t>(info.n_ranks)) {
    throw FormatError(where + ": shard_sha256 is not a JSON array of " +
                      std::to_string(info.n_ranks) + " hashes (one per shard)");
  }
  for (const nlohmann::json& h : hashes) {
    if (!h.is_string() || h.get<std::string>().size() != 64) {
      throw FormatError(where + ": shard_sha256 holds " + h.dump() + ", expected 64 hex digits");
    }
    info.shard_sha256.push_back(h.get<std::string>());
  }
  ReadProvenance(root, model_h5, info);
  if (root.Has("tokenizer.model")) {
    info.tokenizer_model = root.ReadDataset<uint8_t>("tokenizer.model").data;
  }
  const H5Group plan = root.OpenGroup("plan");
  const nlohmann::json names =
      ParseJsonStrict(plan.GetAttributeString("names"), kFn, model_h5.string(), "plan name");
  if (!names.is_array()) throw FormatError(where + ": /plan names is not a JSON array");
  const std::vector<uint64_t> dims = {names.size()};
  const auto ratio = plan.ReadDataset<double>("ratio");
  const auto n_high = plan.ReadDataset<int64_t>("n_high");
  const auto bits = plan.ReadDataset<int64_t>("bits");
  if (ratio.dims != dims || n_high.dims != dims || bits.dims != dims) {
    throw FormatError(where + ": /plan has " + std::to_string(names.size()) +
                      " names but datasets ratio " + DimsText(ratio.dims) + ", n_high " +
                      DimsText(n_high.dims) + ", bits " + DimsText(bits.dims));
  }
  for (size_t i = 0; i < names.size(); ++i) {
    if (!names[i].is_string()) {
      throw FormatError(where + ": /plan names[" + std::to_string(i) + "] is not a string");
    }
    info.plan.push_back({names[i].get<std::string>(), ratio.data[i], n_high.data[i], bits.data[i]});
  }
  return info;
}

void VerifyShard(const std::filesystem::path& out_dir, const ModelFileInfo& info, int rank) {
  constexpr const char* kFn = "VerifyShard";
  CheckRank(kFn, rank, info.n_ranks);
  const std::filesystem::path shard = out_dir / ShardRelativePath(rank, info.n_ranks);
  std::error_code ec;
  if (!std::filesystem::is_regular_file(shard, ec)) {
    throw IoError(std::string(kFn) + ": " + shard.string() + " is missing, but " +
                  (out_dir / "model.h5").string() + " links it: the output is incomplete");
  }
  const std::string actual = Sha256HexOfFile(shard);
  if (actual != info.shard_sha256.at(static_cast<size_t>(rank))) {
    throw FormatError(std::string(kFn) + ": " + shard.string() + " has SHA-256 " + actual +
                      ", but " + (out_dir / "model.h5").string() + " records " +
                      info.shard_sha256[static_cast<size_t>(rank)] +
                      ": the shard was changed, cut short or copied from another run");
  }
}

}  // namespace hiq
