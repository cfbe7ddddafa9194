// The output directory protocol under mpiexec (2, 3 and 4 ranks): one run at a time (the lock,
// stale and foreign locks), the checks before any computation, and the commit that publishes
// every rank's staged files with the markers last, or leaves the previous output as it was.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <sstream>

#include "hiq/base/error.h"
#include "hiq/dist/mpi.h"
#include "hiq/io/output.h"
#include "test_util.h"

namespace hiq {
namespace {

namespace fs = std::filesystem;

// One temporary directory for the whole job: rank 0 makes it, every rank learns its name.
struct SharedDir {
  explicit SharedDir(const Comm& c) : comm(c) {
    std::string name;
    if (comm.rank() == 0) {
      dir = std::make_unique<test::TempDir>("hiq-output-mpi");
      name = dir->path().string();
    }
    comm.Broadcast(name, 0);
    path = name;
  }
  ~SharedDir() { comm.Barrier(); }  // nobody is still reading when rank 0 removes it
  const Comm& comm;
  std::unique_ptr<test::TempDir> dir;
  fs::path path;
};

std::string Read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void Write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

std::string Host() {
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  return name;
}

// The message every rank must throw, and that every rank threw it.
void ExpectEveryRankThrows(const Comm& comm, const fs::path& dir, const std::string& expected) {
  std::string message;
  try {
    OutputDir out = OutputDir::Open(dir, comm, nullptr);
  } catch (const IoError& e) {
    message = e.what();
  }
  EXPECT_EQ(message, expected) << "rank " << comm.rank();
}

TEST(OutputMpi, OpenChecksCreatesAndLocksTheDirectoryOnEveryRankAlike) {
  const Comm comm = Comm::World();
  SharedDir shared(comm);
  const fs::path dir = shared.path / "a" / "b";
  {
    OutputDir out = OutputDir::Open(dir, comm, nullptr);
    int pid = getpid();
    comm.Broadcast(pid, 0);
    // Every rank writes into the same staging directory, named by rank 0's pid.
    EXPECT_EQ(out.staging(), dir / (".staging-" + std::to_string(pid)));
    EXPECT_TRUE(fs::is_directory(out.staging()));
    EXPECT_EQ(Read(dir / ".hiq.lock"), "host=" + Host() + " pid=" + std::to_string(pid) + "\n");
    // A second run while the first holds the lock is refused at once, naming the holder.
    ExpectEveryRankThrows(comm, dir,
                          "output directory '" + dir.string() + "' is in use by pid " +
                              std::to_string(pid) + " on host " + Host() + " (lock file '" +
                              (dir / ".hiq.lock").string() +
                              "'); wait for that run or choose another output directory");
    comm.Barrier();
  }
  comm.Barrier();
  // Released, with the staging directory, when the run ends without committing.
  EXPECT_FALSE(fs::exists(dir / ".hiq.lock"));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 0);
}

TEST(OutputMpi, ALockOfADeadProcessOnThisHostIsTakenOver) {
  const Comm comm = Comm::World();
  SharedDir shared(comm);
  const fs::path dir = shared.path;
  if (comm.rank() == 0) {
    const pid_t child = fork();
    if (child == 0) _exit(0);
    waitpid(child, nullptr, 0);  // a pid that no process has now
    Write(dir / ".hiq.lock", LockText({Host(), child}));
    Write(dir / ".staging-1/shards/rank-00000-of-00002.h5", "left by a killed run");
  }
  comm.Barrier();
  OutputDir out = OutputDir::Open(dir, comm, nullptr);
  if (comm.rank() == 0) {
    EXPECT_EQ(Read(dir / ".hiq.lock"), LockText({Host(), getpid()}));
    EXPECT_FALSE(fs::exists(dir / ".staging-1")) << "a dead run's staging directory is removed";
  }
  comm.Barrier();
}

TEST(OutputMpi, ALockOfAnotherHostIsRefusedNamingIt) {
  const Comm comm = Comm::World();
  SharedDir shared(comm);
  if (comm.rank() == 0) Write(shared.path / ".hiq.lock", "host=node-elsewhere pid=77\n");
  comm.Barrier();
  ExpectEveryRankThrows(comm, shared.path,
                        "output directory '" + shared.path.string() +
                            "' is locked by pid 77 on host node-elsewhere, another host, which "
                            "this one cannot check (lock file '" +
                            (shared.path / ".hiq.lock").string() +
                            "'); if that job is dead, remove the lock file");
  comm.Barrier();
  EXPECT_TRUE(fs::exists(shared.path / ".hiq.lock")) << "another host's lock is left alone";
}

TEST(OutputMpi, AGarbledLockIsRefused) {
  const Comm comm = Comm::World();
  SharedDir shared(comm);
  if (comm.rank() == 0) Write(shared.path / ".hiq.lock", "");
  comm.Barrier();
  ExpectEveryRankThrows(
      comm, shared.path,
      "output directory '" + shared.path.string() + "' is locked by '" +
          (shared.path / ".hiq.lock").string() +
          "', which does not hold 'host=H pid=P'; remove it if no hiq run uses '" +
          shared.path.string() + "'");
}

TEST(OutputMpi, AnOutputThatIsAFileOrCannotBeCreatedIsRefusedBeforeAnyWork) {
  const Comm comm = Comm::World();
  SharedDir shared(comm);
  const fs::path file = shared.path / "plan.json";
  if (comm.rank() == 0) Write(file, "{}");
  comm.Barrier();
  ExpectEveryRankThrows(comm, file, "output '" + file.string() + "' exists and is not a directory");
  ExpectEveryRankThrows(
      comm, file / "out",
      "cannot create output directory '" + (file / "out").string() + "': Not a directory");
  // Under a read-only location (root ignores permission bits, so chmod would prove nothing).
  ExpectEveryRankThrows(comm, "/proc/self/hiq-out",
                        "cannot create output directory '/proc/self/hiq-out': No such file or "
                        "directory");
}

// The previous run had 9 ranks; this one writes P shards, a new plan and model.h5.
TEST(OutputMpi, CommitPublishesEveryRanksFilesAndRemovesWhatThePreviousRunLeft) {
  const Comm comm = Comm::World();
  SharedDir shared(comm);
  const fs::path dir = shared.path;
  const std::string old_shard = "shards/rank-00008-of-00009.h5";
  if (comm.rank() == 0) {
    for (const char* f : {"plan.json", "plan.h5", "fixed/plan.json", "fixed/plan.h5", "model.h5"}) {
      Write(dir / f, std::string("old ") + f);
    }
    Write(dir / old_shard, "old shard");
    Write(dir / "notes.txt", "the user's");
  }
  comm.Barrier();
  OutputDir out = OutputDir::Open(dir, comm, nullptr);
  char shard[64];
  std::snprintf(shard, sizeof shard, "shards/rank-%05d-of-%05d.h5", comm.rank(), comm.size());
  Write(out.staging() / shard, "new shard " + std::to_string(comm.rank()));
  if (comm.rank() == 0) {
    for (const char* f : {"plan.json", "plan.h5", "fixed/plan.json", "fixed/plan.h5", "model.h5"}) {
      Write(out.staging() / f, std::string("new ") + f);
    }
  }
  out.Commit(kQuantizeMarkers, ManagedOutputFiles);
  comm.Barrier();
  std::snprintf(shard, sizeof shard, "shards/rank-%05d-of-%05d.h5", comm.rank(), comm.size());
  EXPECT_EQ(Read(dir / shard), "new shard " + std::to_string(comm.rank()));
  for (const char* f : {"plan.json", "plan.h5", "fixed/plan.json", "fixed/plan.h5", "model.h5"}) {
    EXPECT_EQ(Read(dir / f), std::string("new ") + f);
  }
  EXPECT_FALSE(fs::exists(dir / old_shard)) << "a stale shard of a 9-rank run";
  EXPECT_EQ(Read(dir / "notes.txt"), "the user's") << "what hiq did not write stays";
  EXPECT_FALSE(fs::exists(out.staging()));
  EXPECT_FALSE(fs::exists(dir / ".hiq.lock"));
  comm.Barrier();
}

TEST(OutputMpi, ARunThatEndsBeforeCommitLeavesThePreviousOutputAsItWas) {
  const Comm comm = Comm::World();
  SharedDir shared(comm);
  const fs::path dir = shared.path;
  if (comm.rank() == 0) {
    Write(dir / "plan.json", "old plan");
    Write(dir / "plan.h5", "old h5");
  }
  comm.Barrier();
  {
    OutputDir out = OutputDir::Open(dir, comm, nullptr);
    if (comm.rank() == 0) Write(out.staging() / "plan.h5", "new h5, the run then fails");
    comm.Barrier();
  }
  comm.Barrier();
  EXPECT_EQ(Read(dir / "plan.json"), "old plan");
  EXPECT_EQ(Read(dir / "plan.h5"), "old h5");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 2);
  comm.Barrier();
}

TEST(OutputMpi, ACommitWithoutItsMarkerStagedFailsOnEveryRankAndPublishesNothing) {
  const Comm comm = Comm::World();
  SharedDir shared(comm);
  OutputDir out = OutputDir::Open(shared.path, comm, nullptr);
  if (comm.rank() == 0) Write(out.staging() / "plan.h5", "h5 without its plan.json");
  std::string message;
  try {
    out.Commit(kPlanMarkers, ManagedOutputFiles);
  } catch (const IoError& e) {
    message = e.what();
  }
  EXPECT_EQ(message, "output directory '" + shared.path.string() + "': the staged output '" +
                         out.staging().string() + "' lacks its completion marker fixed/plan.json");
  EXPECT_FALSE(fs::exists(shared.path / "plan.h5"));
  comm.Barrier();
}

}  // namespace
}  // namespace hiq
