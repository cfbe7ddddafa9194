// Robustness cases of a `hiq quantize` output read back: `hiq eval --quantized` and `hiq export`
// of directories that are incomplete, damaged or not what the command line says they are.
#include <fstream>
#include <nlohmann/json.hpp>

#include "robustness.h"

namespace hiq::test {
namespace {

namespace fs = std::filesystem;

// A real quantized model of stories260K at $TMP/q (2 ranks, a few training steps: seconds).
fs::path Quantized(const Sandbox& s) {
  const fs::path q = s / "q";
  const CommandResult r =
      RunCommand(s.Hiq(2) + " quantize " + s.PlanConfig().string() + " --output " + q.string());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return q;
}

std::string EvalQuantized(const Sandbox& s, const fs::path& q, const std::string& more = "") {
  return s.Hiq(2) + " eval --quantized " + q.string() + " --text " +
         (DataDir() / "text/tinystories/sample.txt").string() + " --seq-len 64" + more;
}

const int kRegistered = RegisterCases({
    {.name = "QuantizedDirectoryWithoutModelH5",
     .area = "quantized output",
     .what = "eval --quantized of a directory no quantize run completed",
     .command =
         [](Sandbox& s) {
           fs::create_directories(s / "q" / "shards");
           return EvalQuantized(s, s / "q");
         },
     .message = "hiq: error: rank *: ReadModelFile: $TMP/q/model.h5 does not exist: $TMP/q is not "
                "a complete `hiq quantize` output (model.h5 is written last, so a run that did not "
                "finish leaves none)"},
    {.name = "QuantizedShardMissing",
     .area = "quantized output",
     .what = "model.h5 links a shard that was deleted",
     .command =
         [](Sandbox& s) {
           const fs::path q = Quantized(s);
           fs::remove(q / "shards" / "rank-00001-of-00002.h5");
           return EvalQuantized(s, q);
         },
     .message = "hiq: error: rank 1: VerifyShard: $TMP/q/shards/rank-00001-of-00002.h5 is missing, "
                "but $TMP/q/model.h5 links it: the output is incomplete"},
    {.name = "QuantizedShardTruncated",
     .area = "quantized output",
     .what = "a shard cut to half its size (an interrupted copy)",
     .command =
         [](Sandbox& s) {
           const fs::path q = Quantized(s);
           const fs::path shard = q / "shards" / "rank-00000-of-00002.h5";
           fs::resize_file(shard, fs::file_size(shard) / 2);
           return EvalQuantized(s, q);
         },
     .message = "hiq: error: rank 0: VerifyShard: $TMP/q/shards/rank-00000-of-00002.h5 has SHA-256 "
                "<sha256>, but $TMP/q/model.h5 records <sha256>: the shard was changed, cut short "
                "or copied from another run"},
    {.name = "QuantizedAgainstAnotherModel",
     .area = "quantized output",
     .what = "eval --quantized with --model of a different config.json",
     .command =
         [](Sandbox& s) {
           const fs::path q = Quantized(s);
           const fs::path model = s.CopyModel("other");
           nlohmann::json config;
           std::ifstream(model / "config.json") >> config;
           config["rms_norm_eps"] = 1e-6;
           std::ofstream(model / "config.json") << config.dump(2);
           return EvalQuantized(s, q, " --model " + model.string());
         },
     .message = "hiq: error: rank *: hiq eval: the config.json of $TMP/other is not the model "
                "quantized in $TMP/q"},
    {.name = "ExportUnknownDtype",
     .area = "quantized output",
     .what = "export --dtype F8",
     .command =
         [](Sandbox& s) {
           return s.Hiq(1) + " export " + (s / "q").string() + " --out " + s.Out().string() +
                  " --dtype F8";
         },
     .message = "hiq: error: hiq export: --dtype F8, expected F32, F16 or BF16"},
    {.name = "ExportOfAnIncompleteOutput",
     .area = "quantized output",
     .what = "export of a directory without model.h5",
     .command =
         [](Sandbox& s) {
           fs::create_directories(s / "q");
           return s.Hiq(1) + " export " + (s / "q").string() + " --out " + s.Out().string();
         },
     .message =
         "hiq: error: ReadModelFile: $TMP/q/model.h5 does not exist: $TMP/q is not a complete `hiq "
         "quantize` output (model.h5 is written last, so a run that did not finish leaves none)"},
    {.name = "ExportIntoItsOwnInput",
     .area = "quantized output",
     .what = "export --out naming the quantized output itself",
     .command =
         [](Sandbox& s) {
           fs::create_directories(s / "q");
           return s.Hiq(1) + " export " + (s / "q").string() + " --out " + (s / "q").string() +
                  "/.";
         },
     .message = "hiq: error: hiq export: --out $TMP/q/. is the quantized output $TMP/q itself; "
                "export into another directory"},
    {.name = "ExportPastTheFileSizeLimit",
     .area = "disk",
     .what = "RLIMIT_FSIZE 64 KiB on a re-export: EFBIG in the safetensors writer; the previous "
             "export stays byte for byte",
     .command =
         [](Sandbox& s) {
           return AgainUnderFileSizeLimit(
               s, " export " + Quantized(s).string() + " --out " + s.Out().string(), 65536);
         },
     .message = "hiq: error: WriteSafetensors: cannot write "
                "$TMP/out/.staging-$PID/.model.safetensors.tmp-XXXXXX (for "
                "$TMP/out/.staging-$PID/model.safetensors): File too large",
     .check = ExpectOutputAsBefore},
});

}  // namespace
}  // namespace hiq::test
