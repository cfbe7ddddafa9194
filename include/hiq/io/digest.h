// hiq/io/digest.h - what a `hiq quantize` output holds, independent of how it is laid out:
// its digest (`hiq digest OUT`) and its description (`hiq inspect OUT`).
//
// Design goals: the digest names the model, not the files. A layer's digest covers exactly its
// values (codes, scales, zero points, high-impact column indices), its spec and its shape, in
// the canonical serialisation below, so it is the same whichever shard holds the layer, however
// many ranks wrote the output, and however the shard packs or indexes it. Two outputs have the
// same model digest if and only if (up to SHA-256 collisions) they dequantize to the same model
// with the same stored bits. Non-goals: the plan table, the config and the provenance are not
// part of it (they describe how the model was made; `hiq inspect OUT` prints them).
//
// Canonical serialisation (docs/FORMATS.md "Digest" has the same, for h5py users). Integers are
// little-endian; i64 = int64, u32 = uint32, u16 = uint16, u8 = uint8; arrays are row-major.
//   Layer:  the 19 ASCII bytes "hiq-layer-digest 1\n", then i64 n_out, n_in, bits_low,
//           bits_high, group_size, n_high; then, in this order: high_cols as u32 (n_high,);
//           low_codes as u8, one code per byte (n_out, n_low); low_scales as u16 FP16 bit
//           patterns (n_out, n_groups); low_zeros as u8 (n_out, n_groups); if n_high > 0 and
//           bits_high <= 8: high_codes u8 (n_out, n_high), high_scales u16 (n_out,), high_zeros
//           u8 (n_out,); if n_high > 0 and bits_high = 16: high_fp16 u16 (n_out, n_high).
//           Every length follows from the six integers (n_low, n_groups as in hiq/io/shard.h).
//   Tensor: the 20 ASCII bytes "hiq-tensor-digest 1\n", the name and "\n", the dtype name
//           ("F32", "F16", "BF16") and "\n", i64 ndim, i64 each dimension, then the stored
//           bytes (little-endian, F16/BF16 as their bit patterns).
//   Model:  SHA-256 of the text of one line "<digest>  <name>\n" per layer and tensor, sorted by
//           name (byte order): exactly the lines `hiq digest OUT` prints before its last.
// Pure functions over values, and a reader: no MPI, no state. Thread-safety: as hiq/io/shard.h
// (HDF5: one thread at a time). Errors: as ShardReader and VerifyShard (FormatError, IoError
// naming the file and the layer); FormatError when a name is both a layer and a tensor.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "hiq/io/shard.h"     // ModelFileInfo, StoredTensor
#include "hiq/quant/quant.h"  // QuantizedLayer

namespace hiq {

// SHA-256 (64 lowercase hex) of a layer's and a tensor's canonical serialisation.
std::string LayerDigest(const QuantizedLayer& q);
std::string TensorDigest(const StoredTensor& t);

struct DigestEntry {
  std::string name;    // a layer or tensor name
  std::string sha256;  // LayerDigest or TensorDigest
  bool layer = false;  // a quantized layer (else an unquantized tensor)
  bool operator==(const DigestEntry&) const = default;
};

struct OutputDigest {
  std::vector<DigestEntry> entries;  // every layer and tensor, sorted by name
  std::string model;                 // ModelDigest(entries)
  // "<sha256>  <name>\n" per entry, then "<sha256>  model\n".
  std::string Text() const;
  // {"layers": {name: sha256}, "tensors": {name: sha256}, "model": sha256}
  nlohmann::json Json() const;
};

// The model digest of entries sorted by name; FormatError if they are not (or a name repeats).
std::string ModelDigest(std::span<const DigestEntry> entries);

// The digest of the `hiq quantize` output in out_dir: reads model.h5, checks every shard's
// SHA-256 (VerifyShard) before reading any layer, then every layer and tensor through the links.
OutputDigest DigestOutput(const std::filesystem::path& out_dir);

// `hiq inspect OUT`: the root file's provenance, its plan table summarised by ratio, and its run
// config, as text (ending with one key=value line) or as JSON (with the whole plan table).
std::string DescribeOutput(const std::filesystem::path& out_dir, const ModelFileInfo& info);
nlohmann::json DescribeOutputJson(const std::filesystem::path& out_dir, const ModelFileInfo& info);

}  // namespace hiq
