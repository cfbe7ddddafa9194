// The output directory's pieces that need no communicator: the lock file's text, the writer
// that names the errno of a failed write, which files a commit may remove, and the interrupt
// line. The collective protocol (lock, staging, commit) is tests/mpi/test_output_mpi.cpp.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <csignal>
#include <fstream>

#include "hiq/base/error.h"
#include "hiq/base/interrupt.h"
#include "hiq/io/output.h"
#include "test_util.h"

namespace hiq {
namespace {

namespace fs = std::filesystem;

TEST(Output, LockTextRoundTripsAndRejectsWhatIsNotALock) {
  LockHolder h;
  ASSERT_TRUE(ParseLockText(LockText({"node17", 4242}), &h));
  EXPECT_EQ(h.host, "node17");
  EXPECT_EQ(h.pid, 4242);
  for (const char* bad : {"", "host=a pid=1", "host= pid=1\n", "host=a pid=\n", "host=a pid=1x\n",
                          "pid=1 host=a\n", "host=a b pid=1\n"}) {
    EXPECT_FALSE(ParseLockText(bad, &h)) << "'" << bad << "'";
  }
}

TEST(Output, WriteWholeFileWritesTheBytes) {
  test::TempDir dir("hiq-output");
  WriteWholeFile(dir / "a.txt", "hello\n", "test");
  std::ifstream in(dir / "a.txt");
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "hello");
}

// Past RLIMIT_FSIZE, with SIGXFSZ ignored as main() does, write(2) fails with EFBIG: the error
// names the file and the cause, and no partial file is left under the name.
TEST(Output, WriteWholeFilePastTheFileSizeLimitIsEfbigAndLeavesNothing) {
  test::TempDir dir("hiq-output");
  const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit old_limit {};
  getrlimit(RLIMIT_FSIZE, &old_limit);
  struct rlimit limit = old_limit;
  limit.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &limit), 0);
  const fs::path path = dir / "big.bin";
  std::string message;
  try {
    WriteWholeFile(path, std::string(10000, 'x'), "WritePlan");
  } catch (const IoError& e) {
    message = e.what();
  }
  setrlimit(RLIMIT_FSIZE, &old_limit);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_EQ(message, "WritePlan: cannot write '" + path.string() + "': File too large");
  EXPECT_FALSE(fs::exists(path));
}

TEST(Output, WriteWholeFileInAMissingDirectoryNamesTheFileAndTheCause) {
  test::TempDir dir("hiq-output");
  const fs::path path = dir / "no" / "x.json";
  EXPECT_THROW_MSG(WriteWholeFile(path, "x", "export"), IoError,
                   "export: cannot create '" + path.string() + "': No such file or directory");
}

TEST(Output, ManagedFilesAreHiqsOutputsOnly) {
  test::TempDir dir("hiq-output");
  fs::create_directories(dir / "shards");
  fs::create_directories(dir / "fixed");
  for (const char* f : {"plan.json", "plan.h5", "fixed/plan.json", "model.h5", "notes.txt",
                        "shards/rank-00000-of-00002.h5", "shards/mine.h5", "shards/rank-x.txt"}) {
    std::ofstream(dir / f) << "x";
  }
  EXPECT_EQ(ManagedOutputFiles(dir.path()),
            (std::vector<std::string>{"fixed/plan.json", "model.h5", "plan.h5", "plan.json",
                                      "shards/rank-00000-of-00002.h5"}));
}

TEST(Output, InterruptMessageNamesTheStageTheRankAndTheOutput) {
  SetInterruptRank(1, 2);
  SetStage("plan: cost terms");
  SetInterruptOutput("/scratch/out", nullptr);
  EXPECT_EQ(InterruptMessage(SIGTERM),
            "hiq: interrupted by SIGTERM during plan: cost terms (rank 1); /scratch/out is "
            "incomplete");
  SetInterruptRank(0, 1);
  SetInterruptOutput(nullptr, nullptr);
  SetStage("eval");
  EXPECT_EQ(InterruptMessage(SIGINT), "hiq: interrupted by SIGINT during eval");
  EXPECT_EQ(CurrentStage(), "eval");
  SetStage(std::string(300, 's').c_str());  // cut to the buffer, never past it
  EXPECT_EQ(CurrentStage(), std::string(127, 's'));
}

}  // namespace
}  // namespace hiq
