// hiq/io/shard.h - the quantized model on disk: one HDF5 shard per rank and one root file.
//
// `hiq quantize` (DESIGN.md 2.4, 3) has every rank write the layers it owns, packed, into
// OUT/shards/rank-RRRRR-of-NNNNN.h5, and rank 0 then writes OUT/model.h5: provenance, the plan
// table and HDF5 external links to every layer and tensor of every shard, so that one file opens
// the whole model (h5py follows the links). docs/FORMATS.md describes the same layout for h5py
// users; tests/formats/check_shards.py dequantizes from it alone.
//
// Shard file format (format_version 1). Integers are little-endian; "packed" means a uint8
// dataset of shape (PackedBytes(n, bits),) holding n codes as one LSB-first bit stream
// (hiq/quant/pack.h); FP16 values are stored as their IEEE binary16 bit patterns in uint16.
//   1. Root attributes: format = "hiq-shard", format_version = 1, rank, n_ranks (int64).
//   2. /layers/<name>, one group per quantized linear layer (name = LayerName, e.g.
//      "model.layers.3.mlp.up_proj"), with int64 attributes n_out, n_in, bits_low, bits_high
//      (1..8, or 16 = high columns kept in FP16), group_size (0 = one group per row) and n_high.
//      Derived: n_low = n_in - n_high; n_groups = 0 if n_low = 0, 1 if group_size = 0, else
//      ceil(n_low / group_size).
//   3. Its low part, always present:
//        low_codes   packed, n_out * n_low codes at bits_low: the (n_out, n_low) row-major code
//                    matrix of the columns not in high_cols, in increasing column order
//        low_scales  uint16 (n_out, n_groups), FP16 bit patterns, every one positive and finite
//        low_zeros   packed, n_out * n_groups zero points at bits_low, (n_out, n_groups) row-major
//      Group k of a row covers its low codes [k * group_size, (k + 1) * group_size) (the last
//      group may be shorter). Zero points are packed like codes rather than a byte each: they
//      fit in b bits (the range holds 0) and LayerBits counts b, so that a layer's datasets hold
//      LayerBits bits plus only the byte padding of each packed array.
//   4. high_cols: uint16 (n_high,) when n_in <= 65536, else uint32; strictly ascending column
//      indices (IndexBits of hiq/quant/quant.h: the width LayerBits counts). Always present
//      (shape (0,) when n_high = 0).
//   5. Its high part, only when n_high > 0:
//        bits_high <= 8: high_codes   packed, n_out * n_high codes at bits_high, (n_out, n_high)
//                                     row-major; column k is input column high_cols[k]
//                        high_scales  uint16 (n_out,), FP16 bit patterns: one group per row
//                        high_zeros   packed, n_out zero points at bits_high
//        bits_high = 16: high_fp16    uint16 (n_out, n_high), FP16 bit patterns of the weights
//      A layer group holds exactly the datasets of 3-5, no others.
//   6. Dequantization (bit for bit hiq's Dequantize, in float32): w[r, c] = (code - zero) * scale
//      with the code, zero and scale of the group that holds (r, c); for bits_high = 16,
//      w[r, high_cols[k]] = the FP16 value high_fp16[r, k]. Every product is exact in float32.
//   7. /tensors/<name>, one group per unquantized tensor (HF name, e.g. "model.norm.weight"):
//      attribute dtype ("F32", "F16" or "BF16") and dataset data in its HF shape: float32 for F32,
//      uint16 bit patterns for F16 and BF16 (the checkpoint's bytes, unconverted).
//   8. Nothing depends on the rank except the root attributes rank and n_ranks: a layer's
//      datasets are the same bytes whichever shard holds it (the h5 layer writes no timestamps).
// Root file format (OUT/model.h5, format_version 1):
//   1. Root attributes: format = "hiq-model", format_version = 1 (int64), n_ranks (int64),
//      model_config (config.json's text), run_config (the run's full config text),
//      run_config_hash (its hash, as the caller computed it), git_revision (may be ""),
//      budget_avg_bits and avg_bits (float64: the budget and the achieved average bits),
//      shard_sha256 (a JSON array of n_ranks SHA-256 hex strings: each shard file's hash).
//   2. /plan: attribute names (a JSON array of the layer names, in plan order) and datasets, one
//      entry per name: ratio (float64), n_high (int64), bits (int64, LayerBits).
//   3. /layers/<name> and /tensors/<name>: external links to the same path in the shard that
//      holds it, by the relative file name "shards/rank-RRRRR-of-NNNNN.h5" (HDF5 resolves it
//      against model.h5's directory, so OUT can be moved as a whole).
//   4. Optional dataset tokenizer.model (uint8, 1-D): the model's SentencePiece file, byte for
//      byte, so that OUT alone can be evaluated and exported.
//   5. Provenance, optional root attributes (files written before 2026-12-02 have none; all four
//      or none): hiq_version, model_fingerprint (ModelFingerprint of hiq/stages/plan.h),
//      stage_seconds (a JSON object of float64 plan, inputs, blocks, write: rank 0's wall time
//      per stage) and ranks (a JSON array of n_ranks objects, in rank order: host, cpu_model,
//      blas_core (strings), threads, peak_rss_bytes (integers), blocks_seconds (number), and,
//      in files written since 2026-12-03, bytes_sent (an object of integers plan, inputs, blocks,
//      write: the bytes the rank sent to other ranks in each stage, Comm's point-to-point plus
//      collective counts of hiq/dist/mpi.h)).
//
// Ownership: the writers take their inputs by const reference and keep nothing; ShardReader owns
// its open file. Thread-safety: HDF5 is not thread-safe here (hiq/io/h5.h): one thread at a time
// for every function of this module. Files are serial (each rank writes its own shard); each is
// written atomically (temporary name, renamed when complete).
// Errors: bad input to a writer (invalid layer, bad name, unsupported dtype, a plan that does not
// match the shards) throws FormatError or ConfigError naming the layer; a file that cannot be
// read or written throws IoError; a file whose contents break the format throws FormatError
// "<function>: <file>: layer '<name>': what was found, what was expected".
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "hiq/io/h5.h"           // H5File
#include "hiq/io/safetensors.h"  // DType, TensorToWrite
#include "hiq/quant/quant.h"     // QuantizedLayer

namespace hiq {

inline constexpr int64_t kShardFormatVersion = 1;
inline constexpr int64_t kModelFormatVersion = 1;

// "rank-00001-of-00004.h5"; ConfigError unless 0 <= rank < n_ranks <= 99999.
std::string ShardFileName(int rank, int n_ranks);
// "shards/rank-00001-of-00004.h5": the shard's path relative to the root file's directory.
std::string ShardRelativePath(int rank, int n_ranks);

// One quantized layer to write.
struct ShardLayer {
  std::string name;  // "model.layers.3.mlp.up_proj": non-empty, no '/', not "." or ".."
  QuantizedLayer layer;
};

// Writes one shard (format above) to `path` atomically. Layers are written in the order given,
// tensors too; tensors must be F32, F16 or BF16 with data.size() == numel * DTypeSize. FormatError
// for a layer that fails ValidateQuantizedLayer, a bad or repeated name, or a bad tensor;
// ConfigError for a rank outside [0, n_ranks).
void WriteShard(const std::filesystem::path& path, int rank, int n_ranks,
                std::span<const ShardLayer> layers, std::span<const TensorToWrite> tensors);

// An unquantized tensor read back: the bytes as stored (little-endian), in the HF shape.
struct StoredTensor {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::vector<std::byte> data;  // numel * DTypeSize(dtype) bytes
};

// A layer's attributes (format item 2), checked: what a layer costs, without its arrays.
struct LayerInfo {
  int64_t n_out = 0, n_in = 0, n_high = 0;
  QuantSpec spec;
};

// Reads a shard, or the whole model through a root file's links (it accepts both formats).
// Owns the open file; move-only. The constructor checks format and format_version (and a
// shard's rank and n_ranks); each Read* checks the object it reads, completely.
class ShardReader {
 public:
  explicit ShardReader(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return file_.path(); }
  const std::string& format() const { return format_; }  // "hiq-shard" or "hiq-model"
  int rank() const { return rank_; }                     // -1 for a root file
  int n_ranks() const { return n_ranks_; }
  std::vector<std::string> LayerNames() const;   // sorted by name
  std::vector<std::string> TensorNames() const;  // sorted by name
  bool HasLayer(const std::string& name) const;
  bool HasTensor(const std::string& name) const;
  // A layer's attributes; FormatError naming the file and layer if missing or out of range.
  LayerInfo ReadLayerInfo(const std::string& name) const;
  // A layer, checked against the format (attributes, exact dataset set, dtypes, shapes, zero
  // padding, finite scales) and by ValidateQuantizedLayer. FormatError naming file and layer.
  QuantizedLayer ReadLayer(const std::string& name) const;
  // Bytes the layer's datasets hold (elements * element size, summed): LayerBits / 8 plus at
  // most one byte of padding per packed dataset.
  int64_t LayerStoredBytes(const std::string& name) const;
  StoredTensor ReadTensor(const std::string& name) const;

 private:
  H5Group Object(const char* function, const char* kind, const std::string& name) const;
  H5File file_;
  std::string format_;
  int rank_ = -1, n_ranks_ = 0;
};

// One row of the root file's plan table.
struct PlanEntry {
  std::string name;  // a layer name
  double ratio = 0;  // the high-impact ratio chosen; HighCount(ratio, n_in) == n_high
  int64_t n_high = 0;
  int64_t bits = 0;  // LayerBits
  bool operator==(const PlanEntry&) const = default;
};

// Bytes a rank sent to the others in each stage of `hiq quantize`.
struct StageBytes {
  int64_t plan = 0, inputs = 0, blocks = 0, write = 0;
  bool operator==(const StageBytes&) const = default;
};

// One rank of the run as it saw itself (root file item 5).
struct RankProvenance {
  std::string host, cpu_model, blas_core;  // HostName, CpuModel, OpenBLAS's kernel family
  int threads = 0;                         // OpenBLAS threads
  int64_t peak_rss_bytes = 0;              // peak resident memory up to its shard's write
  double blocks_seconds = 0;               // its own blocks' quantization, wall time
  std::optional<StageBytes> bytes_sent;    // none in files written before 2026-12-03
  bool operator==(const RankProvenance&) const = default;
};

// Rank 0's wall time per stage of `hiq quantize`, in seconds. write is the shards' (model.h5,
// which records it, is written after).
struct StageSeconds {
  double plan = 0, inputs = 0, blocks = 0, write = 0;
  bool operator==(const StageSeconds&) const = default;
};

// What the root file records besides its links.
struct ModelFileInfo {
  int n_ranks = 0;
  std::string model_config;     // config.json's text
  std::string run_config;       // the run's full config text
  std::string run_config_hash;  // its hash
  std::string git_revision;
  double budget_avg_bits = 0, avg_bits = 0;
  std::vector<PlanEntry> plan;           // every layer of every shard, once, in plan order
  std::vector<uint8_t> tokenizer_model;  // the SentencePiece model's bytes (empty: none)
  // Each shard's SHA-256 (64 hex), in rank order: computed by WriteModelFile from the shards it
  // links (the caller's value is ignored), read back by ReadModelFile.
  std::vector<std::string> shard_sha256;
  // Provenance (item 5): empty ranks = not recorded (WriteModelFile then writes none of it, and
  // ReadModelFile of a file without it returns these defaults).
  std::string hiq_version, model_fingerprint;
  StageSeconds seconds;
  std::vector<RankProvenance> ranks;  // none, or n_ranks in rank order
  bool operator==(const ModelFileInfo&) const = default;
};

// Item 5 as one JSON object {hiq_version, model_fingerprint, stage_seconds, ranks} (the
// attributes hold its members' dumps); null when info.ranks is empty (not recorded).
nlohmann::json ProvenanceJson(const ModelFileInfo& info);

// Writes out_dir/model.h5 atomically, after reading every shard out_dir/shards/rank-*-of-NNNNN.h5
// (NNNNN = info.n_ranks; all must exist): links each layer and tensor to the shard holding it.
// FormatError when a shard's format, rank or n_ranks is wrong, a name is in two shards, or the
// plan does not list each layer exactly once with its n_high, HighCount(ratio) and LayerBits.
void WriteModelFile(const std::filesystem::path& out_dir, const ModelFileInfo& info);
// The root file's attributes and plan table (the links are read through ShardReader). IoError
// naming the directory as incomplete when model.h5 does not exist.
ModelFileInfo ReadModelFile(const std::filesystem::path& model_h5);
// Shard `rank` of out_dir exists and has the SHA-256 model.h5 records: IoError when it is missing,
// FormatError naming both hashes when it differs. Readers call it before following the links.
void VerifyShard(const std::filesystem::path& out_dir, const ModelFileInfo& info, int rank);

}  // namespace hiq
