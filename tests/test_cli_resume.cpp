// `hiq quantize --resume` through the real binary (docs/OPERATIONS.md "Resume"): a rank killed
// with SIGKILL during the plan, the blocks or the shards of `mpirun -np 2 hiq quantize`, then a
// resume, gives the shards of an uninterrupted run byte for byte on 2 ranks and its dequantized
// model on 3; the log names every stage and block it skips; entries of another config are refused
// naming the key; a complete output is never overwritten without --overwrite.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "test_util.h"

namespace hiq {
namespace {

namespace fs = std::filesystem;

using test::Hiq;
using test::Mpirun;

// A small quantize: few calibration sequences, and enough reconstruction steps per block that a
// block takes a moment (the kill lands inside the blocks stage).
std::string Quantize(const fs::path& out) {
  return " quantize " + (test::SourceDir() / "configs/stories260k-w2.yaml").string() +
         " --output " + out.string() +
         " --set calibration.fisher.n_sequences=8 --set calibration.fisher.seq_len=64"
         " --set calibration.cost.n_sequences=6 --set calibration.cost.seq_len=48"
         " --set calibration.check.n_sequences=6 --set calibration.check.seq_len=48"
         " --set cost.refine=1 --set calibration.reconstruction.n_sequences=8"
         " --set calibration.reconstruction.seq_len=64 --set quantize.steps=300";
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::map<std::string, std::string> ShardHashes(const fs::path& out) {
  return test::FileHashes(out / "shards");
}

// sha256 of the F32 export's weights: the dequantized model, independent of the rank count.
std::string ExportHash(const fs::path& out, const fs::path& dir) {
  const test::CommandResult r =
      test::RunCommand(Hiq() + " export " + out.string() + " --out " + dir.string());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return test::FileHashes(dir)["model.safetensors"];
}

std::set<std::string> StoredBlocks(const fs::path& out) {
  std::set<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(out / ".resume/blocks", ec)) {
    const std::string name = e.path().filename().string();
    if (name.ends_with(".entry")) names.insert(name);
  }
  return names;
}

// The pid of rank `rank` among the descendants of `root` (Open MPI puts the rank in each
// process's environment), or -1.
pid_t RankPid(pid_t root, int rank) {
  std::map<pid_t, pid_t> parent;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return -1;
  while (dirent* d = readdir(proc)) {
    const pid_t pid = static_cast<pid_t>(std::atoi(d->d_name));
    if (pid <= 0) continue;
    std::ifstream stat("/proc/" + std::string(d->d_name) + "/stat");
    std::string line;
    std::getline(stat, line);
    const size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    char state = 0;
    pid_t ppid = 0;
    rest >> state >> ppid;
    parent[pid] = ppid;
  }
  closedir(proc);
  const std::string want = "OMPI_COMM_WORLD_RANK=" + std::to_string(rank);
  for (const auto& [pid, ppid] : parent) {
    bool below = false;
    for (pid_t p = ppid; p > 1 && !below; p = parent.count(p) ? parent[p] : 0) below = p == root;
    if (!below) continue;
    const std::string env = ReadFile("/proc/" + std::to_string(pid) + "/environ");
    std::istringstream vars(env);
    for (std::string var; std::getline(vars, var, '\0');) {
      if (var == want) return pid;
    }
  }
  return -1;
}

// A job running in the background with its output in a file.
class Job {
 public:
  Job(const std::string& command, const fs::path& log) : log_(log) {
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    const std::string line = "exec " + command + " > " + log.string() + " 2>&1";
    pid_ = fork();
    if (pid_ == 0) {
      execl("/bin/sh", "sh", "-c", line.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  ~Job() {
    if (pid_ > 0 && !waited_) {
      kill(pid_, SIGKILL);
      Wait();
    }
  }
  std::string Log() const { return ReadFile(log_); }
  // Polls the log every 5 ms until `re` matches it (false after `seconds` or if the job ended).
  bool WaitFor(const std::regex& re, double seconds = 120) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < end) {
      if (std::regex_search(Log(), re)) return true;
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        waited_ = true;
        return std::regex_search(Log(), re);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }
  pid_t Rank(int rank) const { return RankPid(pid_, rank); }
  int Wait() {
    int status = 0;
    if (!waited_) waitpid(pid_, &status, 0);
    waited_ = true;
    return status;
  }

 private:
  fs::path log_;
  pid_t pid_ = -1;
  bool waited_ = false;
};

int CountOf(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// The uninterrupted run every test compares with: its shards and its export.
// Every file of OUT but the lock, which a rank aborted by another may leave (taken over later),
// and a killed run's staging, which the next run removes before it reads anything.
std::map<std::string, std::string> Files(const fs::path& out) {
  auto files = test::FileHashes(out);
  files.erase(".hiq.lock");
  std::erase_if(files, [](const auto& f) { return f.first.starts_with(".staging-"); });
  return files;
}

class CliResume : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    reference_ = new test::TempDir("hiq-resume-ref");
    const test::CommandResult r = test::RunCommand(Mpirun(2) + Quantize(Out()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    shards_ = ShardHashes(Out());
    export_ = ExportHash(Out(), *reference_ / "export");
    n_blocks_ = CountOf(r.output, "] block ");
  }
  static void TearDownTestSuite() { delete reference_; }
  static fs::path Out() { return *reference_ / "out"; }

  static test::TempDir* reference_;
  static std::map<std::string, std::string> shards_;
  static std::string export_;
  static int n_blocks_;
};
test::TempDir* CliResume::reference_ = nullptr;
std::map<std::string, std::string> CliResume::shards_;
std::string CliResume::export_;
int CliResume::n_blocks_ = 0;

TEST_F(CliResume, AKillDuringTheBlocksResumesOnThreeRanksToTheSameModelAndOnTwoToTheSameShards) {
  ASSERT_EQ(n_blocks_, 5) << "stories260K's blocks";
  test::TempDir dir("hiq-resume");
  const fs::path out = dir / "out";
  {
    Job job(Mpirun(2) + Quantize(out), dir / "killed.txt");
    // Rank 1 has stored its first block and works on its next one.
    ASSERT_TRUE(job.WaitFor(std::regex("\\[rank 1\\] block [0-9]+: "))) << job.Log();
    const pid_t rank1 = job.Rank(1);
    ASSERT_GT(rank1, 0) << job.Log();
    kill(rank1, SIGKILL);
    job.Wait();
    EXPECT_FALSE(fs::exists(out / "model.h5")) << job.Log();
  }
  const std::set<std::string> stored = StoredBlocks(out);
  ASSERT_GE(stored.size(), 1u);
  ASSERT_LT(stored.size(), 5u) << "the kill came after every block";

  const test::CommandResult three = test::RunCommand(Mpirun(3) + Quantize(out) + " --resume");
  ASSERT_EQ(three.exit_code, 0) << three.output;
  EXPECT_EQ(CountOf(three.output, "] resume: plan from " + (out / ".resume/plan.entry").string()),
            1)
      << three.output;
  for (const std::string& name : stored) {
    const int block = std::stoi(name.substr(6, 5));
    EXPECT_NE(three.output.find("resume: block " + std::to_string(block) + " from " +
                                (out / ".resume/blocks" / name).string()),
              std::string::npos)
        << three.output;
  }
  EXPECT_EQ(CountOf(three.output, "] resume: block "), static_cast<int>(stored.size()));
  EXPECT_EQ(CountOf(three.output, "] block "), 5 - static_cast<int>(stored.size()))
      << "every other block computed once:\n"
      << three.output;
  EXPECT_EQ(ExportHash(out, dir / "export3"), export_);

  // Now complete: a resume on 2 ranks computes nothing and writes the reference's shards.
  const test::CommandResult two = test::RunCommand(Mpirun(2) + Quantize(out) + " --resume");
  ASSERT_EQ(two.exit_code, 0) << two.output;
  EXPECT_EQ(CountOf(two.output, "] resume: block "), 5) << two.output;
  EXPECT_EQ(CountOf(two.output, "] block "), 0) << two.output;
  EXPECT_NE(two.output.find("no block inputs computed"), std::string::npos) << two.output;
  EXPECT_EQ(ShardHashes(out), shards_);
}

// With quantize.inputs: quantized a block's inputs come through the quantized blocks before it:
// the stored blocks feed them as computed ones would, and only the missing blocks' inputs are
// recomputed, so a resume on 3 ranks gives the uninterrupted 2-rank run's model.
TEST_F(CliResume, AKillWithQuantizedInputsResumesOnThreeRanksToTheSameModel) {
  test::TempDir dir("hiq-resume");
  const std::string inputs = " --set quantize.inputs=quantized";
  const test::CommandResult whole = test::RunCommand(Mpirun(2) + Quantize(dir / "whole") + inputs);
  ASSERT_EQ(whole.exit_code, 0) << whole.output;
  const fs::path out = dir / "out";
  {
    Job job(Mpirun(2) + Quantize(out) + inputs, dir / "killed.txt");
    // Blocks go one after the other: block 1 is stored, block 2 is being computed.
    ASSERT_TRUE(job.WaitFor(std::regex("\\[rank 0\\] block 1: "))) << job.Log();
    const pid_t rank0 = job.Rank(0);
    ASSERT_GT(rank0, 0) << job.Log();
    kill(rank0, SIGKILL);
    job.Wait();
  }
  const std::set<std::string> stored = StoredBlocks(out);
  ASSERT_GE(stored.size(), 2u);
  ASSERT_LT(stored.size(), 5u) << "the kill came after every block";
  const test::CommandResult r = test::RunCommand(Mpirun(3) + Quantize(out) + inputs + " --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(CountOf(r.output, "] resume: block "), static_cast<int>(stored.size())) << r.output;
  EXPECT_EQ(ExportHash(out, dir / "export"), ExportHash(dir / "whole", dir / "whole-export"));
}

TEST_F(CliResume, AKillDuringThePlanResumesFromItsStoredPartsToTheSameShards) {
  test::TempDir dir("hiq-resume");
  const fs::path out = dir / "out";
  {
    Job job(Mpirun(2) + Quantize(out), dir / "killed.txt");
    ASSERT_TRUE(job.WaitFor(std::regex("\\] fisher: "))) << job.Log();
    const pid_t rank1 = job.Rank(1);
    ASSERT_GT(rank1, 0) << job.Log();
    kill(rank1, SIGKILL);
    job.Wait();
  }
  EXPECT_FALSE(fs::exists(out / ".resume/plan.entry"));
  EXPECT_FALSE(fs::exists(out / "plan.json"));
  const test::CommandResult r = test::RunCommand(Mpirun(2) + Quantize(out) + " --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // The Fisher scores were stored before the line the kill waited for; the plan never was.
  EXPECT_EQ(CountOf(r.output, "resume: fisher channel scores from "), 1) << r.output;
  EXPECT_EQ(CountOf(r.output, "resume: plan from "), 0) << r.output;
  EXPECT_EQ(CountOf(r.output, "] resume: block "), 0) << r.output;
  EXPECT_EQ(ShardHashes(out), shards_);
}

TEST_F(CliResume, AKillDuringTheShardsResumesWithoutComputingAnyBlock) {
  test::TempDir dir("hiq-resume");
  const fs::path out = dir / "out";
  {
    Job job(Mpirun(2) + Quantize(out), dir / "killed.txt");
    // The rank that ends its blocks first is stopped there, before the shards' collectives: the
    // other cannot pass them, so when it has logged its last block every block is stored and no
    // model.h5 can exist. Then the stopped rank is killed.
    const std::regex last0("\\[rank 0\\] block 2: "), last1("\\[rank 1\\] block 4: ");
    ASSERT_TRUE(job.WaitFor(std::regex("\\[rank [01]\\] block (2|4): "))) << job.Log();
    const bool first0 = std::regex_search(job.Log(), last0);
    const pid_t stopped = job.Rank(first0 ? 0 : 1);
    ASSERT_GT(stopped, 0) << job.Log();
    kill(stopped, SIGSTOP);
    ASSERT_TRUE(job.WaitFor(first0 ? last1 : last0)) << job.Log();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    kill(stopped, SIGKILL);
    job.Wait();
  }
  ASSERT_EQ(StoredBlocks(out).size(), 5u);
  ASSERT_FALSE(fs::exists(out / "model.h5"));
  const test::CommandResult r = test::RunCommand(Mpirun(2) + Quantize(out) + " --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(CountOf(r.output, "] resume: block "), 5) << r.output;
  EXPECT_NE(r.output.find("no block inputs computed"), std::string::npos) << r.output;
  EXPECT_EQ(ShardHashes(out), shards_);
}

// A kill -9 at a named step (HIQ_FAULT, hiq/base/fault.h) rather than at a moment seen in the
// log: every step boundary of the quantize stage, the same shards after --resume on 2 ranks,
// and the log names what was skipped. On 2 ranks rank 0 owns blocks 0-2 and rank 1 blocks 3-4.
struct KillPoint {
  const char* name;
  const char* fault;
  const char* skipped;  // a line the resume must log
};
void PrintTo(const KillPoint& p, std::ostream* os) { *os << p.fault; }
class CliResumeAfterAKillAt : public CliResume, public ::testing::WithParamInterface<KillPoint> {};

TEST_P(CliResumeAfterAKillAt, ResumesToTheSameShardsSkippingWhatWasStored) {
  const KillPoint& p = GetParam();
  test::TempDir dir("hiq-resume");
  const fs::path out = dir / "out";
  const test::CommandResult killed =
      test::RunCommand(std::string("HIQ_FAULT='") + p.fault + "' " + Mpirun(2) + Quantize(out));
  ASSERT_NE(killed.exit_code, 0) << killed.output;
  EXPECT_FALSE(fs::exists(out / "model.h5")) << "a killed run must not look complete";
  const test::CommandResult r = test::RunCommand(Mpirun(2) + Quantize(out) + " --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find(p.skipped), std::string::npos) << p.skipped << " in:\n" << r.output;
  EXPECT_EQ(ShardHashes(out), shards_);
}

INSTANTIATE_TEST_SUITE_P(
    Steps, CliResumeAfterAKillAt,
    ::testing::Values(
        KillPoint{"TheCalibrationSets", "kill:0:plan: calibration sets",
                  "resume: fisher channel scores from "},
        KillPoint{"CostTermsOfRound1", "kill:1:plan: cost terms, round 1",
                  "resume: cost terms of round 0 from "},
        KillPoint{"BlockInputs", "kill:0:quantize: block inputs", "resume: plan from "},
        KillPoint{"InputsOfABlockPastTheRanksFirst", "kill:0:quantize: inputs of block 2",
                  "[rank 0] resume: block 1 from "},
        KillPoint{"TheLastBlockOfRank1", "kill:1:quantize: block 4",
                  "[rank 1] resume: block 3 from "},
        KillPoint{"TheShards", "kill:1:quantize: shards", "[rank 1] resume: block 4 from "},
        KillPoint{"TheModelFile", "kill:0:quantize: model file", "no block inputs computed"}),
    [](const ::testing::TestParamInfo<KillPoint>& point) { return std::string(point.param.name); });

// Killed in the cost terms, the store holds the generated calibration sets, the Fisher scores
// and round 0's terms; another channel score is refused at the Fisher entries (the plan entry,
// which would name it first, is not there yet), another cost set at its set's entry, and the
// same config resumes on 3 ranks to the uninterrupted run's model.
TEST_F(CliResume, APlanStageEntryOfAnotherConfigIsRefusedNamingItAndServesAnotherRankCount) {
  test::TempDir dir("hiq-resume-plan");
  const fs::path out = dir / "out";
  const test::CommandResult killed =
      test::RunCommand("HIQ_FAULT='kill:1:plan: cost terms, round 1' " + Mpirun(2) + Quantize(out));
  ASSERT_NE(killed.exit_code, 0) << killed.output;
  ASSERT_TRUE(fs::exists(out / ".resume/cost/round-00.entry")) << killed.output;
  const auto before = Files(out);
  test::CommandResult r =
      test::RunCommand(Mpirun(2) + Quantize(out) + " --resume --set quant.score=fisher_impact");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(std::regex_search(
      r.output, std::regex("hiq: error: rank [01]: --resume: " + out.string() +
                           "/.resume/fisher/block-0000[0-4].entry was made with another config "
                           "\\(fisher stage: quant.bits_high is not in the entry, 3 now, "
                           "quant.bits_low is not in the entry, 2 now, quant.group_size is not "
                           "in the entry, 32 now, quant.score is fisher in the entry, "
                           "fisher_impact now\\)")))
      << r.output;
  EXPECT_EQ(Files(out), before) << "nothing recomputed over";
  r = test::RunCommand(Mpirun(2) + Quantize(out) + " --resume --set calibration.cost.seed=77");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("--resume: " + out.string() +
                          "/.resume/calibration/cost.entry was made with another config "
                          "(calibration.cost stage: calibration.cost.seed is 2 in the entry, "
                          "77 now)"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(Files(out), before);
  // Per-block Fisher entries serve another rank count: 3 ranks resume 2 ranks' store.
  r = test::RunCommand(Mpirun(3) + Quantize(out) + " --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(CountOf(r.output, "resume: fisher channel scores from "), 1) << r.output;
  EXPECT_EQ(CountOf(r.output, "resume: cost terms of round 0 from "), 1) << r.output;
  EXPECT_EQ(ExportHash(out, dir / "export"), export_);
}

TEST_F(CliResume, ACompleteOutputIsRefusedWithoutResumeOrOverwriteAndLeftAsItWas) {
  const auto before = Files(Out());
  const test::CommandResult r = test::RunCommand(Mpirun(2) + Quantize(Out()));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(Out().string() + " already holds a complete model (" +
                          (Out() / "model.h5").string() +
                          "); pass --resume to reuse it or --overwrite to replace it"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(Files(Out()), before);
}

TEST_F(CliResume, AResumeWithAnotherValueOfAKeyTheBlocksReadIsRefusedNamingIt) {
  const auto before = Files(Out());
  const test::CommandResult r =
      test::RunCommand(Mpirun(2) + Quantize(Out()) + " --resume --set quantize.steps=299");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(std::regex_search(
      r.output, std::regex("hiq: error: rank [01]: --resume: " + Out().string() +
                           "/.resume/blocks/block-0000[0-4].entry was made with another config "
                           "\\(quantize stage: quantize.steps is 300 in the entry, 299 now\\)")))
      << r.output;
  EXPECT_EQ(Files(Out()), before) << "nothing recomputed over";
}

TEST_F(CliResume, AResumeWithAnotherValueOfAPlanKeyIsRefusedOnEveryRankNamingIt) {
  const auto before = Files(Out());
  const test::CommandResult r =
      test::RunCommand(Mpirun(2) + Quantize(Out()) + " --resume --set cost.refine=0");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("--resume: " + Out().string() +
                          "/.resume/plan.entry was made with another config (plan stage: "
                          "cost.refine is 1 in the entry, 0 now)"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(Files(Out()), before);
}

}  // namespace
}  // namespace hiq
