// The harness of the robustness table (robustness.h): the parameterized test over every
// registered case, and the generated docs/ROBUSTNESS.md.
#include "robustness.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

namespace hiq::test {

namespace fs = std::filesystem;

std::vector<RobustCase>& Registry() {
  static std::vector<RobustCase> cases;
  return cases;
}

int RegisterCases(std::vector<RobustCase> cases) {
  for (RobustCase& c : cases) Registry().push_back(std::move(c));
  return static_cast<int>(Registry().size());
}

const std::vector<RobustCase>& RegisteredCases() { return Registry(); }

Sandbox::Sandbox() : dir_("hiq-robust") {}

std::string Sandbox::Hiq(int np) const {
  const std::string hiq = HiqBinary().string();
  if (np == 1) return hiq;
  return "mpirun --allow-run-as-root --oversubscribe --bind-to none -np " + std::to_string(np) +
         " " + hiq;
}

fs::path Sandbox::CopyModel(const std::string& name) const {
  const fs::path to = dir_ / name;
  fs::copy(DataDir() / "stories260K", to, fs::copy_options::recursive);
  for (const auto& entry : fs::recursive_directory_iterator(to)) {
    fs::permissions(entry.path(), fs::perms::owner_write, fs::perm_options::add);
  }
  fs::permissions(to, fs::perms::owner_write, fs::perm_options::add);
  return to;
}

fs::path Sandbox::Write(const std::string& name, const std::string& text) const {
  const fs::path file = dir_ / name;
  fs::create_directories(file.parent_path());
  std::ofstream(file, std::ios::binary) << text;
  return file;
}

fs::path Sandbox::PlanConfig(const std::string& extra, const std::string& name) const {
  const std::string data = fs::weakly_canonical(DataDir()).string();
  return Write(name, "model:\n  path: " + data + "/stories260K\n" +
                         "calibration:\n"
                         "  fisher: {source: text, path: " +
                         data +
                         "/text/wikitext-2/valid.txt, "
                         "n_sequences: 8, seq_len: 32}\n"
                         "  cost: {source: text, path: " +
                         data +
                         "/text/wikitext-2/valid.txt, "
                         "n_sequences: 4, seq_len: 32}\n"
                         "  check: {source: text, path: " +
                         data +
                         "/text/wikitext-2/valid.txt, "
                         "n_sequences: 4, seq_len: 32}\n"
                         "  reconstruction: {source: text, path: " +
                         data +
                         "/text/wikitext-2/valid.txt, "
                         "n_sequences: 4, seq_len: 32}\n"
                         "quant: {bits_low: 2, bits_high: 3, group_size: 32, budget_ratio: 0.10}\n"
                         "quantize: {steps: 8}\n"
                         "output: " +
                         (dir_ / "out").string() + "\n" + extra);
}

std::string AgainUnderFileSizeLimit(const Sandbox& s, const std::string& args, long bytes,
                                    const std::string& again) {
  return s.Hiq(1) + args + " > " + (s / "first.log").string() + " 2>&1 && cp -a " +
         s.Out().string() + " " + (s / "before").string() + " && " + UnderFileSizeLimit(bytes) +
         s.Hiq(1) + args + again;
}

void ExpectOutputAsBefore(Sandbox& s, const CommandResult&) {
  EXPECT_EQ(OutputHashes(s.Out()), OutputHashes(s / "before"));
}

void ExpectNothingComplete(const fs::path& dir) {
  if (!fs::exists(dir)) return;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    EXPECT_TRUE(name != "plan.json" && name != "model.h5")
        << entry.path() << " looks complete after a failed run";
  }
}

namespace {

void ReplaceAll(std::string& text, const std::string& from, const std::string& to) {
  if (from.empty()) return;
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
}

}  // namespace

std::string Normalize(const std::string& text, const Sandbox& sandbox) {
  std::string out = text;
  // Longest spellings first, so that a canonical path is not half-replaced by a shorter one.
  std::vector<std::pair<std::string, std::string>> paths = {
      {fs::weakly_canonical(sandbox.path()).string(), "$TMP"}, {sandbox.path().string(), "$TMP"},
      {fs::weakly_canonical(DataDir()).string(), "$DATA"},     {DataDir().string(), "$DATA"},
      {fs::weakly_canonical(SourceDir()).string(), "$SRC"},
  };
  std::sort(paths.begin(), paths.end(),
            [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  for (const auto& [from, to] : paths) ReplaceAll(out, from, to);
  // mkstemp's six random characters, in the safetensors writer's hidden temporary file
  // (".model.safetensors.tmp-a1B2c3"): first, since they may begin with digits like a pid.
  static const std::regex mkstemp(R"((/\.[^/\s]*\.tmp-)[A-Za-z0-9]{6}\b)");
  out = std::regex_replace(out, mkstemp, "$1XXXXXX");
  // What differs from run to run or machine to machine in the output directory's messages: the
  // pid in a staging, temporary or private lock name, and this host's name.
  static const std::regex pid(R"((\.staging-|\.tmp-|\.hiq\.lock\.)[0-9]+\b)");
  out = std::regex_replace(out, pid, "$1$$PID");
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) == 0 && host[0] != '\0') {
    ReplaceAll(out, std::string("host ") + host, "host $HOST");
    ReplaceAll(out, std::string("host=") + host, "host=$HOST");
  }
  // Hashes change with every change to what a file holds; the message's point is where they are.
  static const std::regex sha256("\\b[0-9a-f]{64}\\b");
  return std::regex_replace(out, sha256, "<sha256>");
}

namespace {

bool LineMatches(const std::string& line, const std::string& message) {
  if (line == message) return true;
  // "rank *": when every rank fails alike, whichever prints first before MPI_Abort is the line.
  if (message.find("rank *: ") == std::string::npos) return false;
  static const std::regex rank("rank [0-9]+: ");
  return std::regex_replace(line, rank, "rank *: ") == message;
}

class Robustness : public ::testing::TestWithParam<RobustCase> {};

TEST_P(Robustness, Refuses) {
  const RobustCase& c = GetParam();
  Sandbox sandbox;
  const std::string command = c.command(sandbox);
  const CommandResult result = RunCommand(command);
  const std::string output = Normalize(result.output, sandbox);
  EXPECT_EQ(result.exit_code, c.exit_code) << command << "\n" << output;
  std::istringstream lines(output);
  bool found = false;
  for (std::string line; std::getline(lines, line);) found = found || LineMatches(line, c.message);
  EXPECT_TRUE(found) << "no line of the output is\n  " << c.message << "\noutput:\n" << output;
  if (c.check) {
    c.check(sandbox, result);
  } else {
    ExpectNothingComplete(sandbox.Out());
  }
}

INSTANTIATE_TEST_SUITE_P(Hostile, Robustness, ::testing::ValuesIn(RegisteredCases()),
                         [](const auto& param_info) { return param_info.param.name; });

std::string Cell(std::string text) {
  ReplaceAll(text, "|", "\\|");
  return text;
}

std::string TableMarkdown() {
  std::vector<RobustCase> cases = RegisteredCases();
  std::stable_sort(cases.begin(), cases.end(),
                   [](const RobustCase& a, const RobustCase& b) { return a.area < b.area; });
  std::ostringstream md;
  md << "# Robustness: every bad input and fault the tests try\n\n"
        "Generated from tests/robustness/*.cpp by `HIQ_UPDATE_DOCS=1 build/tests/test_robustness`;"
        " do not edit.\nEach row is the test `Hostile/Robustness.Refuses/<test>` in "
        "`scripts/test.sh` (run one with\n`ctest --test-dir build -R <test>`): it runs the real "
        "binary (under `mpirun` where the\ncommand says so), checks the exit code and that the "
        "message is one exact line of the\noutput, and that nothing under the output directory "
        "looks complete unless the row says\nwhat survives. `$TMP` is the test's scratch "
        "directory, `$DATA` is ../shared/data.\n\n"
     << cases.size() << " cases.\n\n"
     << "| area | bad input or fault | test | exit | message |\n|---|---|---|---|---|\n";
  for (const RobustCase& c : cases) {
    md << "| " << c.area << " | " << Cell(c.what) << " | `" << c.name << "` | " << c.exit_code
       << " | `" << Cell(c.message) << "` |\n";
  }
  return md.str();
}

TEST(RobustnessDocs, NamesAreUniqueAndEveryRowSaysWhatAndWhere) {
  std::set<std::string> names;
  for (const RobustCase& c : RegisteredCases()) {
    EXPECT_TRUE(names.insert(c.name).second) << "two cases are named " << c.name;
    EXPECT_FALSE(c.area.empty()) << c.name;
    EXPECT_FALSE(c.what.empty()) << c.name;
    EXPECT_FALSE(c.message.empty()) << c.name;
    EXPECT_TRUE(c.command) << c.name;
  }
}

TEST(RobustnessNormalize, TellsAMkstempSuffixThatStartsWithDigitsFromAPid) {
  const Sandbox s;
  const std::string dir = s.path().string();
  EXPECT_EQ(Normalize(dir + "/out/.staging-4242/.model.safetensors.tmp-12abCD", s),
            "$TMP/out/.staging-$PID/.model.safetensors.tmp-XXXXXX");
  EXPECT_EQ(Normalize(dir + "/out/.staging-4242/fixed/plan.h5.tmp-123456", s),
            "$TMP/out/.staging-$PID/fixed/plan.h5.tmp-$PID");
}

TEST(RobustnessDocs, TableIsCurrent) {
  const fs::path doc = SourceDir() / "docs" / "ROBUSTNESS.md";
  const std::string generated = TableMarkdown();
  if (const char* update = std::getenv("HIQ_UPDATE_DOCS"); update && *update) {
    std::ofstream(doc, std::ios::binary) << generated;
  }
  std::ifstream in(doc, std::ios::binary);
  std::stringstream committed;
  committed << in.rdbuf();
  EXPECT_EQ(committed.str(), generated)
      << "docs/ROBUSTNESS.md is stale; regenerate it with HIQ_UPDATE_DOCS=1 "
         "build/tests/test_robustness --gtest_filter='RobustnessDocs.*'";
}

}  // namespace
}  // namespace hiq::test
