// The output directory as a user meets it through the real binary (docs/FORMATS.md, "The output
// directory"): a locked directory refused at once, an output path checked before the model is
// read, a re-run that fails late or past the file size limit leaving the previous plan byte for
// byte, and SIGTERM under mpirun ending every rank with one line and no plan.json.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "test_util.h"

namespace hiq {
namespace {

namespace fs = std::filesystem;

using test::Hiq;
using test::Mpirun;
std::string Config() { return (test::SourceDir() / "configs/stories260k-w2.yaml").string(); }

// The small plan of test_cli.cpp.
std::string SmallPlan(const std::string& out) {
  return " plan " + Config() + " --output " + out +
         " --set calibration.fisher.n_sequences=8 --set calibration.fisher.seq_len=64"
         " --set calibration.cost.n_sequences=6 --set calibration.cost.seq_len=48"
         " --set calibration.check.n_sequences=6 --set calibration.check.seq_len=48"
         " --set cost.refine=1";
}

std::string Host() {
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  return name;
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

int CountOf(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(CliOutput, ARunIntoADirectoryALiveRunHoldsIsRefusedAtOnceNamingTheHolder) {
  test::TempDir dir("hiq-out");
  const std::string lock = (dir / ".hiq.lock").string();
  // This test process is alive on this host: the lock is a live run's.
  std::ofstream(lock) << "host=" << Host() << " pid=" << getpid() << "\n";
  const auto t0 = std::chrono::steady_clock::now();
  const test::CommandResult r = test::RunCommand(Mpirun(2) + SmallPlan(dir.path().string()));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.exit_code, 1) << r.output;
  const std::string message = "output directory '" + dir.path().string() + "' is in use by pid " +
                              std::to_string(getpid()) + " on host " + Host() + " (lock file '" +
                              lock + "'); wait for that run or choose another output directory";
  for (int rank : {0, 1}) {
    EXPECT_NE(r.output.find("hiq: error: rank " + std::to_string(rank) + ": " + message),
              std::string::npos)
        << r.output;
  }
  EXPECT_LT(seconds, 30) << "refused before any computation";
  EXPECT_EQ(ReadFile(lock), "host=" + Host() + " pid=" + std::to_string(getpid()) + "\n")
      << "the holder's lock stays";
  EXPECT_FALSE(fs::exists(dir / "plan.json"));
}

TEST(CliOutput, AnOutputThatIsAFileIsRefusedBeforeTheModelIsRead) {
  test::TempDir dir("hiq-out");
  const fs::path file = dir / "out";
  std::ofstream(file) << "a file";
  // The model directory has no config.json either (a model error if it were read): the output
  // check comes first.
  fs::create_directories(dir / "nomodel");
  const test::CommandResult r = test::RunCommand(
      Hiq() + SmallPlan(file.string()) + " --set model.path=" + (dir / "nomodel").string() +
      " --set model.tokenizer=" + (test::DataDir() / "stories260K/tokenizer.model").string());
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(
      r.output.find("hiq: error: output '" + file.string() + "' exists and is not a directory"),
      std::string::npos)
      << r.output;
  EXPECT_EQ(ReadFile(file), "a file");
}

// Plan once; the re-run fails late (the solver finds the budget infeasible after the Fisher
// pass): the previous plan is byte for byte what it was, and a third run succeeds (taking over
// a lock a killed rank 0 may have left).
TEST(CliOutput, AReRunThatFailsLateLeavesThePreviousPlanByteForByte) {
  test::TempDir dir("hiq-out");
  const std::string out = dir.path().string();
  const test::CommandResult first = test::RunCommand(Mpirun(2) + SmallPlan(out));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  const auto before = test::OutputHashes(dir.path());
  ASSERT_EQ(before.size(), 4u) << "plan.json, plan.h5, fixed/plan.json, fixed/plan.h5";
  const test::CommandResult failed =
      test::RunCommand(Mpirun(2) + SmallPlan(out) +
                       " --overwrite --set quant.budget_ratio=0 --set quant.budget_bits=2.6");
  ASSERT_NE(failed.exit_code, 0) << failed.output;
  EXPECT_NE(failed.output.find("bits/weight is infeasible"), std::string::npos) << failed.output;
  auto after = test::OutputHashes(dir.path());
  after.erase(".hiq.lock");  // a rank 0 killed by the other rank's abort may leave its lock
  for (auto it = after.begin(); it != after.end();) {
    it = it->first.starts_with(".staging-") ? after.erase(it) : std::next(it);
  }
  EXPECT_EQ(after, before);
  const test::CommandResult again = test::RunCommand(Mpirun(2) + SmallPlan(out) + " --overwrite");
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(test::OutputHashes(dir.path()), before) << "the same plan again, nothing else left";
}

// A file size limit below what the plan writes: the write fails with EFBIG (SIGXFSZ is
// ignored), the message names the file and the cause, and the previous plan stays with nothing
// beside it. 2048 bytes stops the resume store's first entry (block 0's Fisher scores, 5 KB);
// 8192 lets the store's entries through and stops fixed/plan.json (about 10 KB, written first
// by the plan writer); 16384 lets that through too and stops fixed/plan.h5 (about 26 KB) in
// HDF5's driver.
// Open MPI's own shared-memory files would exceed the limit at MPI_Init: the hash PMIx store
// and the TCP transport keep it out of /dev/shm.
TEST(CliOutput, APlanPastTheFileSizeLimitNamesEfbigAndKeepsThePreviousPlan) {
  test::TempDir dir("hiq-out");
  const std::string out = dir.path().string();
  const test::CommandResult first = test::RunCommand(Hiq() + SmallPlan(out));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  const auto before = test::OutputHashes(dir.path());
  const std::pair<int, std::string> cases[] = {
      {2048, "hiq: error: resume store: cannot write '" + out +
                 "/.resume/fisher/block-00000.entry.tmp-PID': File too large"},
      {8192, "hiq: error: WritePlan: cannot write '" + out +
                 "/.staging-PID/fixed/plan.json.tmp': " + "File too large"},
      {16384, "hiq: error: H5File::Commit: cannot close '" + out +
                  "/.staging-PID/fixed/plan.h5.tmp-PID': H5FD__sec2_write(): file write failed: "
                  "File too large"}};
  for (const auto& [limit, message] : cases) {
    const test::CommandResult r = test::RunCommand(test::UnderFileSizeLimit(limit) + " " + Hiq() +
                                                   SmallPlan(out) + " --overwrite");
    EXPECT_EQ(r.exit_code, 1) << r.output;
    const std::string text =
        std::regex_replace(r.output, std::regex("(staging-|tmp-)[0-9]+"), "$1PID");
    EXPECT_NE(text.find(message), std::string::npos) << r.output;
    EXPECT_EQ(CountOf(r.output, "hiq: "), 1) << r.output;
    EXPECT_EQ(test::OutputHashes(dir.path()), before) << "nothing else left, not even the lock";
  }
}

// A quantize output of 3 ranks re-run on 2: the root file links the 2 new shards, the 3-rank
// shards are gone, and the model evaluates.
TEST(CliOutput, AQuantizeReRunOnFewerRanksLeavesOnlyItsOwnShards) {
  test::TempDir dir("hiq-out");
  const std::string out = dir.path().string();
  std::string args = SmallPlan(out);
  args.replace(0, std::string(" plan ").size(), " quantize ");
  args +=
      " --set calibration.reconstruction.n_sequences=4"
      " --set calibration.reconstruction.seq_len=32 --set quantize.steps=4";
  const test::CommandResult three = test::RunCommand(Mpirun(3) + args);
  ASSERT_EQ(three.exit_code, 0) << three.output;
  EXPECT_TRUE(fs::exists(dir / "shards/rank-00002-of-00003.h5"));
  const test::CommandResult two = test::RunCommand(Mpirun(2) + args + " --overwrite");
  ASSERT_EQ(two.exit_code, 0) << two.output;
  std::vector<std::string> shards;
  for (const auto& e : fs::directory_iterator(dir / "shards")) {
    shards.push_back(e.path().filename().string());
  }
  std::sort(shards.begin(), shards.end());
  EXPECT_EQ(shards, (std::vector<std::string>{"rank-00000-of-00002.h5", "rank-00001-of-00002.h5"}));
  std::vector<std::string> top;
  for (const auto& e : fs::directory_iterator(dir.path()))
    top.push_back(e.path().filename().string());
  std::sort(top.begin(), top.end());
  EXPECT_EQ(top, (std::vector<std::string>{".resume", "fixed", "model.h5", "plan.h5", "plan.json",
                                           "shards"}));
  const test::CommandResult eval = test::RunCommand(
      Mpirun(2) + " eval --quantized " + out + " --max-windows 2 --seq-len 64 --text " +
      (test::DataDir() / "text/tinystories/sample.txt").string());
  EXPECT_EQ(eval.exit_code, 0) << eval.output;
}

// mpirun -np 2 hiq plan in the background; SIGTERM to mpirun once the Fisher pass is logged.
// Open MPI 4.1's mpirun forwards SIGTERM to every rank (docs/OPERATIONS.md).
void InterruptPlanUnderMpirun(int signo, const char* name) {
  test::TempDir dir("hiq-out");
  const fs::path out = dir / "out";
  const fs::path log = dir / "log.txt";
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  const std::string command = "exec " + Mpirun(2) + " plan " + Config() + " --output " +
                              out.string() + " > " + log.string() + " 2>&1";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  bool started = false;
  for (int i = 0; i < 1200 && !started; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    started = ReadFile(log).find("] fisher:") != std::string::npos;
  }
  ASSERT_TRUE(started) << ReadFile(log);
  const auto t0 = std::chrono::steady_clock::now();
  kill(pid, signo);
  int status = 0;
  waitpid(pid, &status, 0);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string text = ReadFile(log);
  EXPECT_LT(seconds, 10) << text;
  ASSERT_TRUE(WIFEXITED(status)) << text;
  EXPECT_NE(WEXITSTATUS(status), 0) << text;
  for (int rank : {0, 1}) {
    const std::regex line("hiq: interrupted by SIGTERM during plan: [a-z -]+ \\(rank " +
                          std::to_string(rank) + "\\); " + out.string() + " is incomplete\n");
    const auto n =
        std::distance(std::sregex_iterator(text.begin(), text.end(), line), std::sregex_iterator());
    EXPECT_EQ(n, 1) << "rank " << rank << " after " << name << ":\n" << text;
  }
  EXPECT_EQ(CountOf(text, "hiq: "), 2) << "one line per rank, nothing else of hiq's:\n" << text;
  EXPECT_FALSE(fs::exists(out / "plan.json")) << text;
  EXPECT_FALSE(fs::exists(out / ".hiq.lock")) << "rank 0's handler removes its lock";
}

TEST(CliOutput, SigtermToMpirunEndsEveryRankWithOneLineAndNoPlan) {
  InterruptPlanUnderMpirun(SIGTERM, "SIGTERM");
}

// mpirun turns a SIGINT (Ctrl-C) into SIGTERM for the ranks, so their line says SIGTERM too.
TEST(CliOutput, SigintToMpirunEndsEveryRankWithOneLineAndNoPlan) {
  InterruptPlanUnderMpirun(SIGINT, "SIGINT");
}

}  // namespace
}  // namespace hiq
