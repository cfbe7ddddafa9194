// `hiq digest OUT` and `hiq inspect OUT` end to end: the invariance of issue 15 (one model digest
// for any rank count and any thread count, while the shard files differ), the provenance
// model.h5 records of each run, the digest recomputed by h5py from docs/FORMATS.md alone, and
// the errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace hiq {
namespace {

namespace fs = std::filesystem;

using test::Hiq;
using test::LastLine;
using test::Mpirun;

// The stories260K W2 config with small calibration sets and few reconstruction steps, as
// tests/test_cli.cpp's quantize tests: the stage's code paths are all taken, in seconds.
std::string SmallQuantize(const std::string& out) {
  return " quantize " + (test::SourceDir() / "configs/stories260k-w2.yaml").string() +
         " --output " + out +
         " --set calibration.fisher.n_sequences=8 --set calibration.fisher.seq_len=64"
         " --set calibration.cost.n_sequences=6 --set calibration.cost.seq_len=48"
         " --set calibration.check.n_sequences=6 --set calibration.check.seq_len=48"
         " --set cost.refine=1 --set calibration.reconstruction.n_sequences=8"
         " --set calibration.reconstruction.seq_len=64 --set quantize.steps=40";
}

// The shard files of an output: file name -> SHA-256.
std::map<std::string, std::string> Shards(const fs::path& out) {
  return test::FileHashes(out / "shards");
}

struct RunShape {
  int np = 1, threads = 1;
  std::string name() const { return "np" + std::to_string(np) + "-t" + std::to_string(threads); }
};

// The invariance test: 1, 2, 3 and 4 ranks at one OpenBLAS thread each, and 2 ranks at two.
TEST(CliDigest, QuantizeGivesOneDigestOnOneToFourRanksAndOneOrTwoThreads) {
  test::TempDir dir("hiq-digest");
  const std::vector<RunShape> runs = {{1, 1}, {2, 1}, {3, 1}, {4, 1}, {2, 2}};
  std::string first_digest, first_fingerprint;
  std::map<int, std::map<std::string, std::string>> shards_by_np;
  for (const RunShape& run : runs) {
    SCOPED_TRACE(run.name());
    const std::string out = (dir / run.name()).string();
    const auto t0 = std::chrono::steady_clock::now();
    const test::CommandResult q = test::RunCommand(
        Mpirun(run.np) + " --threads " + std::to_string(run.threads) + SmallQuantize(out));
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_EQ(q.exit_code, 0) << q.output;
    std::printf("quantize %s: %.1f s\n", run.name().c_str(), seconds);

    const test::CommandResult d = test::RunCommand(Hiq() + " digest " + out);
    ASSERT_EQ(d.exit_code, 0) << d.output;
    EXPECT_EQ(LastLine(d.output).substr(64), "  model") << d.output;
    EXPECT_EQ(std::count(d.output.begin(), d.output.end(), '\n'), 35 + 12 + 1)
        << "35 layers, 12 tensors, the model";
    if (first_digest.empty()) first_digest = d.output;
    EXPECT_EQ(d.output, first_digest) << "the digest differs from the 1-rank, 1-thread run's";

    // The layout differs: one shard per rank, and shards of different rank counts share no file.
    const std::map<std::string, std::string> shards = Shards(out);
    EXPECT_EQ(shards.size(), static_cast<size_t>(run.np));
    if (run.threads == 1) shards_by_np[run.np] = shards;

    // What model.h5 records of the run.
    const test::CommandResult inspect = test::RunCommand(Hiq() + " inspect " + out + " --json");
    ASSERT_EQ(inspect.exit_code, 0) << inspect.output;
    const nlohmann::json j = nlohmann::json::parse(inspect.output);
    EXPECT_EQ(j["n_ranks"], run.np);
    EXPECT_EQ(j["plan"].size(), 35u);
    const nlohmann::json& p = j["provenance"];
    ASSERT_TRUE(p.is_object()) << inspect.output;
    EXPECT_FALSE(p["hiq_version"].get<std::string>().empty());
    EXPECT_EQ(p["model_fingerprint"].get<std::string>().size(), 64u);
    if (first_fingerprint.empty()) first_fingerprint = p["model_fingerprint"];
    EXPECT_EQ(p["model_fingerprint"], first_fingerprint);
    EXPECT_GT(p["stage_seconds"]["plan"].get<double>(), 0);
    EXPECT_GT(p["stage_seconds"]["blocks"].get<double>(), 0);
    ASSERT_EQ(p["ranks"].size(), static_cast<size_t>(run.np));
    for (const nlohmann::json& r : p["ranks"]) {
      EXPECT_EQ(r["threads"], run.threads) << r.dump();
      EXPECT_FALSE(r["host"].get<std::string>().empty()) << r.dump();
      EXPECT_FALSE(r["blas_core"].get<std::string>().empty()) << r.dump();
      EXPECT_GT(r["peak_rss_bytes"].get<int64_t>(), 1 << 20) << r.dump();
      ASSERT_TRUE(r.contains("bytes_sent")) << r.dump();
      for (const char* stage : {"plan", "inputs", "blocks", "write"}) {
        EXPECT_GE(r["bytes_sent"][stage].get<int64_t>(), 0) << stage << ": " << r.dump();
      }
      // Several ranks talk in every stage that has a collective; one rank has nobody to talk to.
      if (run.np == 1) {
        EXPECT_EQ(r["bytes_sent"]["plan"], 0) << r.dump();
      } else {
        EXPECT_GT(r["bytes_sent"]["plan"].get<int64_t>(), 0) << r.dump();
        EXPECT_GT(r["bytes_sent"]["write"].get<int64_t>(), 0) << r.dump();
      }
    }
    // The pipeline's activations go down the ranks: the first rank sends the block inputs on,
    // the last one only its part of the collectives.
    if (run.np > 1) {
      EXPECT_GT(p["ranks"][0]["bytes_sent"]["inputs"].get<int64_t>(),
                p["ranks"][run.np - 1]["bytes_sent"]["inputs"].get<int64_t>())
          << p.dump();
    }
    const test::CommandResult text = test::RunCommand(Hiq() + " inspect " + out);
    ASSERT_EQ(text.exit_code, 0) << text.output;
    EXPECT_NE(
        LastLine(text.output)
            .find("format=hiq-model ranks=" + std::to_string(run.np) + " layers=35 avg_bits="),
        std::string::npos)
        << text.output;
    EXPECT_NE(text.output.find("stage seconds    plan "), std::string::npos) << text.output;
  }
  std::set<std::string> all_shard_hashes;
  size_t n_shards = 0;
  for (const auto& [np, shards] : shards_by_np) {
    for (const auto& [file, hash] : shards) all_shard_hashes.insert(hash);
    n_shards += shards.size();
  }
  EXPECT_EQ(n_shards, 1u + 2 + 3 + 4);
  EXPECT_EQ(all_shard_hashes.size(), n_shards) << "no two shards of the four layouts are alike";

  // h5py recomputes the digest from docs/FORMATS.md alone (and dequantizes to the F32 export).
  const std::string out = (dir / "np3-t1").string();
  ASSERT_EQ(test::RunCommand(Hiq() + " export " + out + " --out " + out + "-hf").exit_code, 0);
  std::ofstream(dir / "digest.txt") << first_digest;
  const test::CommandResult check = test::RunCommand(
      "/usr/bin/python3 " + (test::SourceDir() / "tests/formats/check_shards.py").string() + " " +
      out + " " + out + "-hf/model.safetensors " + (dir / "digest.txt").string());
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_NE(check.output.find("digest OK"), std::string::npos) << check.output;

  // A shard changed after the run: refused by name before any layer is read.
  const fs::path shard = dir / "np2-t1" / "shards" / "rank-00001-of-00002.h5";
  std::ofstream(shard, std::ios::binary | std::ios::app) << 'x';
  const test::CommandResult changed =
      test::RunCommand(Hiq() + " digest " + (dir / "np2-t1").string());
  EXPECT_EQ(changed.exit_code, 1);
  EXPECT_NE(changed.output.find(shard.string() + " has SHA-256"), std::string::npos)
      << changed.output;
}

TEST(CliDigest, InspectOfADirectoryWithoutConfigOrModelFileSaysWhatItExpected) {
  test::TempDir dir("hiq-inspect");
  const test::CommandResult r = test::RunCommand(Hiq() + " inspect " + dir.path().string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("holds neither config.json (a Hugging Face model) nor model.h5 (a "
                          "`hiq quantize` output)"),
            std::string::npos)
      << r.output;
  const test::CommandResult d = test::RunCommand(Hiq() + " digest " + dir.path().string());
  EXPECT_EQ(d.exit_code, 1);
  EXPECT_NE(d.output.find("is not a complete `hiq quantize` output"), std::string::npos)
      << d.output;
}

}  // namespace
}  // namespace hiq
