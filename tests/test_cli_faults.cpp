// Faults under a real mpirun: a rank that throws, exits, is killed, runs out of memory, is
// stopped or hangs (HIQ_FAULT, hiq/base/fault.h) ends the whole job within a bound, with a
// non-zero exit, a line naming the rank and the reason, no process left behind and nothing
// published in the output directory.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace hiq {
namespace {

namespace fs = std::filesystem;

// The bound on a failing job's wall time. The faults themselves end the job in a few seconds
// (docs/OPERATIONS.md, "Faults"); the rest is the start-up and the plan's steps before the fault
// on a loaded 2-core machine.
constexpr double kWallBoundSeconds = 60;
// The stall timeout the stop and hang cases run with.
constexpr int kStallTimeout = 5;

std::string Mpirun(int np) {
  return "mpirun --allow-run-as-root --oversubscribe --bind-to none -np " + std::to_string(np) +
         " ";
}

// The small plan of tests/test_cli.cpp (seconds, not minutes), and the small quantize.
std::string SmallPlan(const fs::path& out) {
  return " plan " + (test::SourceDir() / "configs/stories260k-w2.yaml").string() + " --output " +
         out.string() +
         " --set calibration.fisher.n_sequences=8 --set calibration.fisher.seq_len=64"
         " --set calibration.cost.n_sequences=6 --set calibration.cost.seq_len=48"
         " --set calibration.check.n_sequences=6 --set calibration.check.seq_len=48"
         " --set cost.refine=1";
}
std::string SmallQuantize(const fs::path& out) {
  std::string args = SmallPlan(out);
  args.replace(0, std::string(" plan ").size(), " quantize ");
  return args +
         " --set calibration.reconstruction.n_sequences=8"
         " --set calibration.reconstruction.seq_len=64 --set quantize.steps=40";
}

// The processes whose command line holds `needle` (this test's unique output path).
std::vector<pid_t> ProcessesMentioning(const std::string& needle) {
  std::vector<pid_t> pids;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(e.path() / "cmdline", std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    if (s.str().find(needle) != std::string::npos) pids.push_back(std::stoi(name));
  }
  return pids;
}

struct FaultRun {
  test::CommandResult result;
  double seconds = 0;
  std::vector<pid_t> left;  // processes of the run still alive after mpirun returned
};

// `mpirun -np np hiq ARGS` with HIQ_FAULT=fault, under `timeout` so that a hang fails the test
// instead of holding ctest; `prefix` goes before hiq (e.g. prlimit). Any process of the run left
// behind is reported, then continued and killed.
FaultRun RunWithFault(int np, const std::string& fault, const std::string& args,
                      const fs::path& out, const std::string& prefix = "") {
  const auto t0 = std::chrono::steady_clock::now();
  FaultRun run;
  run.result = test::RunCommand("HIQ_FAULT='" + fault + "' timeout -k 5 " +
                                std::to_string(static_cast<int>(kWallBoundSeconds) + 30) + " " +
                                Mpirun(np) + prefix + test::HiqBinary().string() + " " + args);
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  run.left = ProcessesMentioning(out.string());
  for (pid_t pid : run.left) {
    kill(pid, SIGCONT);
    kill(pid, SIGKILL);
  }
  return run;
}

// The checks every fault shares: a bounded, failing job, no process left, nothing published.
void ExpectEndedCleanly(const FaultRun& run, const fs::path& out) {
  EXPECT_NE(run.result.exit_code, 0) << run.result.output;
  EXPECT_NE(run.result.exit_code, 124) << "timeout ended the job: it hung\n" << run.result.output;
  EXPECT_LT(run.seconds, kWallBoundSeconds) << run.result.output;
  EXPECT_TRUE(run.left.empty()) << run.left.size() << " processes of the job outlived mpirun";
  EXPECT_FALSE(fs::exists(out / "plan.json")) << "a failed run published plan.json";
  EXPECT_FALSE(fs::exists(out / "model.h5")) << "a failed run published model.h5";
  EXPECT_FALSE(fs::exists(out / ".hiq.lock")) << "a failed run left its lock";
}

void ExpectLine(const FaultRun& run, const std::string& text) {
  EXPECT_NE(run.result.output.find(text), std::string::npos) << "expected: " << text << "\nin:\n"
                                                             << run.result.output;
}

void ExpectMatch(const FaultRun& run, const std::string& pattern) {
  EXPECT_TRUE(std::regex_search(run.result.output, std::regex(pattern)))
      << "expected a match of: " << pattern << "\nin:\n"
      << run.result.output;
}

TEST(CliFaults, AMalformedHiqFaultIsAnErrorAtStartUp) {
  test::TempDir dir("hiq-fault");
  const fs::path out = dir / "out";
  const FaultRun run = RunWithFault(2, "kill:1", SmallPlan(out), out);
  ExpectEndedCleanly(run, out);
  ExpectLine(run, "HIQ_FAULT='kill:1': expected <kind>:<rank>:<stage>");
}

TEST(CliFaults, ARankThatThrowsEndsTheJobWithItsLine) {
  test::TempDir dir("hiq-fault");
  const fs::path out = dir / "out";
  const FaultRun run = RunWithFault(2, "throw:1:plan: fisher", SmallPlan(out), out);
  ExpectEndedCleanly(run, out);
  ExpectLine(run, "hiq: error: rank 1: injected fault at plan: fisher\n");
}

// A rank that ends without a word: mpirun names it, as [[job,1],R] (R the rank), and its code.
TEST(CliFaults, ARankThatExitsEndsTheJobAndMpirunNamesIt) {
  test::TempDir dir("hiq-fault");
  const fs::path out = dir / "out";
  const FaultRun run = RunWithFault(2, "exit:1:plan: fisher", SmallPlan(out), out);
  ExpectEndedCleanly(run, out);
  ExpectMatch(run, R"(Process name: \[\[[0-9]+,1\],1\]\n +Exit code: +3)");
}

TEST(CliFaults, AKilledRankEndsTheJobAndMpirunNamesIt) {
  test::TempDir dir("hiq-fault");
  const fs::path out = dir / "out";
  const FaultRun run = RunWithFault(2, "kill:1:plan: cost terms", SmallPlan(out), out);
  ExpectEndedCleanly(run, out);
  ExpectMatch(run,
              "mpirun noticed that process rank 1 with PID [0-9]+ on node .* exited on "
              "signal 9 \\(Killed\\)");
}

// RLIMIT_AS of 1 GiB on each rank (a normal run of this plan fits in it) bounds what the fault
// allocates before std::bad_alloc.
TEST(CliFaults, ARankOutOfMemoryEndsTheJobNamingTheStep) {
  test::TempDir dir("hiq-fault");
  const fs::path out = dir / "out";
  const FaultRun run =
      RunWithFault(2, "oom:1:plan: fisher", SmallPlan(out), out, "prlimit --as=1073741824 ");
  ExpectEndedCleanly(run, out);
  ExpectLine(run, "hiq: error: rank 1: out of memory during plan: fisher");
}

// A stopped rank cannot speak: the rank waiting for it reports it after the stall timeout; then
// mpirun continues and terminates it, and its SIGTERM line names the step it was stopped in.
TEST(CliFaults, AStoppedRankIsReportedByItsPeerAfterTheStallTimeout) {
  test::TempDir dir("hiq-fault");
  const fs::path out = dir / "out";
  const FaultRun run =
      RunWithFault(2, "stop:1:plan: fisher",
                   "--stall-timeout " + std::to_string(kStallTimeout) + SmallPlan(out), out);
  ExpectEndedCleanly(run, out);
  ExpectMatch(run,
              "hiq: error: rank 0: no progress from rank 1 for [5-9]\\.[0-9] s \\(rank 0 "
              "waited in MPI_[A-Za-z]+ during plan: fisher; --stall-timeout 5\\)");
  ExpectLine(run, "hiq: interrupted by SIGTERM during plan: fisher (rank 1)");
}

TEST(CliFaults, AHangingRankIsReportedByItsPeerAfterTheStallTimeout) {
  test::TempDir dir("hiq-fault");
  const fs::path out = dir / "out";
  const FaultRun run =
      RunWithFault(2, "hang:1:plan: cost terms",
                   "--stall-timeout " + std::to_string(kStallTimeout) + SmallPlan(out), out);
  ExpectEndedCleanly(run, out);
  ExpectMatch(run,
              "hiq: error: rank 0: no progress from rank 1 for [5-9]\\.[0-9] s \\(rank 0 "
              "waited in MPI_[A-Za-z ()]+ during plan: cost terms; --stall-timeout 5\\)");
}

// Slow is not stalled: rank 1 sleeps 50 ms at every step from its block 3 on (about 10 s of
// blocks), while rank 0, done with its blocks, waits for it in the shards far past a 2 s stall
// timeout. Rank 1's published progress keeps the job alive.
TEST(CliFaults, ARankThatIsSlowButMovingIsNotAStall) {
  test::TempDir dir("hiq-fault");
  const fs::path out = dir / "out";
  std::string args = SmallQuantize(out);
  args.replace(args.find("quantize.steps=40"), std::string("quantize.steps=40").size(),
               "quantize.steps=100");
  const FaultRun run = RunWithFault(2, "slow:1:quantize: block 3", "--stall-timeout 2" + args, out);
  EXPECT_EQ(run.result.exit_code, 0) << run.result.output;
  EXPECT_EQ(run.result.output.find("no progress"), std::string::npos) << run.result.output;
  std::smatch block3;
  ASSERT_TRUE(std::regex_search(run.result.output, block3,
                                std::regex("\\[rank 1\\] block 3: [^\\n]*\\(([0-9.]+)s\\)")))
      << run.result.output;
  EXPECT_GT(std::stod(block3[1].str()), 4.0) << "rank 1 was not slow: the test proves nothing";
  EXPECT_TRUE(fs::exists(out / "model.h5")) << run.result.output;
  EXPECT_TRUE(run.left.empty());
}

// Three ranks: a block's reconstruction killed on the middle rank (which owns blocks 2 and 3).
TEST(CliFaults, ARankKilledInItsBlockEndsAThreeRankQuantize) {
  test::TempDir dir("hiq-fault");
  const fs::path out = dir / "out";
  const FaultRun run = RunWithFault(3, "kill:1:quantize: block 2", SmallQuantize(out), out);
  ExpectEndedCleanly(run, out);
  ExpectMatch(run,
              "mpirun noticed that process rank 1 with PID [0-9]+ on node .* exited on "
              "signal 9 \\(Killed\\)");
  EXPECT_FALSE(fs::exists(out / "shards")) << "a failed run published shards";
}

// Three ranks: both neighbours of the stopped middle rank wait on it, and name it.
TEST(CliFaults, AStoppedMiddleRankOfThreeIsNamedByTheRankThatTimesOutFirst) {
  test::TempDir dir("hiq-fault");
  const fs::path out = dir / "out";
  const FaultRun run =
      RunWithFault(3, "stop:1:plan: fisher",
                   "--stall-timeout " + std::to_string(kStallTimeout) + SmallPlan(out), out);
  ExpectEndedCleanly(run, out);
  ExpectMatch(run, "hiq: error: rank [02]: no progress from rank 1 for [5-9]\\.[0-9] s");
}

}  // namespace
}  // namespace hiq
