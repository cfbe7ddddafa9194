// The hiq binary end to end, as a user runs it: exit codes, the closing key=value line, error
// messages, and rank-count invariance of `hiq eval` under a real mpirun.
#include <gtest/gtest.h>

#include <sstream>

#include "hiq/sha256.h"
#include "test_util.h"

namespace hiq {
namespace {

std::string Hiq() { return test::HiqBinary().string(); }
std::string Mpirun(int np) {
  return "mpirun --allow-run-as-root --oversubscribe --bind-to none -np " + std::to_string(np) +
         " " + Hiq();
}
std::string Model() { return (test::DataDir() / "stories260K").string(); }

std::string LastLine(const std::string& text) {
  std::istringstream in(text);
  std::string line, last;
  while (std::getline(in, line)) {
    if (!line.empty()) last = line;
  }
  return last;
}

std::string Field(const std::string& line, const std::string& key) {
  const size_t at = line.find(key + "=");
  if (at == std::string::npos) return "";
  const size_t begin = at + key.size() + 1;
  return line.substr(begin, line.find(' ', begin) - begin);
}

TEST(Cli, InspectPrintsTheStories260KTable) {
  const test::CommandResult r = test::RunCommand(Hiq() + " inspect " + Model());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("model.layers.4.mlp.down_proj.weight"), std::string::npos);
  EXPECT_EQ(Field(LastLine(r.output), "params"), "260032");
}

TEST(Cli, MissingModelIsOneClearErrorAndExitCodeOne) {
  const test::CommandResult r = test::RunCommand(Hiq() + " inspect /nonexistent/model");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output.rfind("hiq: error: ", 0), 0u) << r.output;
  EXPECT_NE(r.output.find("/nonexistent/model"), std::string::npos) << r.output;
}

TEST(Cli, EvalPrintsTheSameNllOnOneAndThreeRanks) {
  const std::string args = " eval --model " + Model() + " --text " +
                           (test::DataDir() / "text/tinystories/valid-head30KB.txt").string();
  const test::CommandResult one = test::RunCommand(Mpirun(1) + args);
  const test::CommandResult three = test::RunCommand(Mpirun(3) + args);
  ASSERT_EQ(one.exit_code, 0) << one.output;
  ASSERT_EQ(three.exit_code, 0) << three.output;
  const std::string nll = Field(LastLine(one.output), "nll");
  EXPECT_FALSE(nll.empty()) << one.output;
  EXPECT_EQ(nll, Field(LastLine(three.output), "nll"));
  EXPECT_EQ(Field(LastLine(one.output), "tokens"), "15330");
  EXPECT_EQ(Field(LastLine(three.output), "ranks"), "3");
}

TEST(Cli, EvalOnMoreRanksThanBlocksFailsWithoutHanging) {
  const test::CommandResult r = test::RunCommand("timeout 120 " + Mpirun(6) + " eval --model " + Model() + " --text " +
                          (test::DataDir() / "text/tinystories/sample.txt").string());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.exit_code, 124) << "timed out: a rank was left waiting";
  EXPECT_NE(r.output.find("6 ranks for a model of 5 blocks"), std::string::npos) << r.output;
}

TEST(Cli, SynthWritesTheSameModelForTheSameSeedAndItEvaluates) {
  test::TempDir dir("hiq-synth");
  const std::string base = Hiq() + " synth --shape tiny --layers 2 --dtype F32 --tokenizer-from " +
                           Model() + " --out ";
  ASSERT_EQ(test::RunCommand(base + (dir / "a").string() + " --seed 7").exit_code, 0);
  ASSERT_EQ(test::RunCommand(base + (dir / "b").string() + " --seed 7").exit_code, 0);
  ASSERT_EQ(test::RunCommand(base + (dir / "c").string() + " --seed 8").exit_code, 0);
  const auto digest = [&](const char* m) {
    return Sha256HexOfFile(dir / m / "model.safetensors");
  };
  EXPECT_EQ(digest("a"), digest("b"));
  EXPECT_NE(digest("a"), digest("c"));
  const test::CommandResult eval = test::RunCommand(Mpirun(2) + " eval --model " + (dir / "a").string() + " --text " +
                             (test::DataDir() / "text/tinystories/sample.txt").string() +
                             " --seq-len 64");
  ASSERT_EQ(eval.exit_code, 0) << eval.output;
  EXPECT_EQ(Field(LastLine(eval.output), "windows"), "29");
}

TEST(Cli, SynthRejectsAnUnknownShape) {
  test::TempDir dir("hiq-synth");
  const test::CommandResult r = test::RunCommand(Hiq() + " synth --shape gpt2 --layers 1 --seed 1 --out " +
                          dir.path().string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("unknown --shape 'gpt2'"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace hiq
