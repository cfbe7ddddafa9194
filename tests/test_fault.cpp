// Fault injection (HIQ_FAULT) and the stall watchdog, in one process: the syntax and its errors,
// each kind's effect at the named step and nowhere else, and the watchdog's end of a process
// left waiting on a peer. tests/test_cli_faults.cpp runs the same faults under mpirun.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <new>
#include <thread>

#include "hiq/base/error.h"
#include "hiq/base/fault.h"
#include "hiq/base/interrupt.h"
#include "hiq/base/watchdog.h"
#include "test_util.h"

namespace hiq {
namespace {

// Arms `spec` for rank `rank` as main() does, from the environment.
void Arm(const char* spec, int rank = 1) {
  setenv("HIQ_FAULT", spec, 1);
  ArmFaultFromEnvironment(rank);
  unsetenv("HIQ_FAULT");
}

TEST(Fault, ParsesKindRankAndAStageThatHoldsColons) {
  const FaultSpec spec = ParseFault("kill:1:quantize: block 2");
  EXPECT_EQ(spec.kind, FaultKind::kKill);
  EXPECT_EQ(spec.rank, 1);
  EXPECT_EQ(spec.stage, "quantize: block 2");
  const FaultSpec any = ParseFault("hang:*:plan: fisher");
  EXPECT_EQ(any.kind, FaultKind::kHang);
  EXPECT_EQ(any.rank, -1);
  EXPECT_EQ(ParseFault("oom:12:a:b:c").stage, "a:b:c");
}

TEST(Fault, MalformedSpecsNameWhatIsWrong) {
  EXPECT_THROW_WITH(ParseFault("kill"), ConfigError,
                    "HIQ_FAULT='kill': expected <kind>:<rank>:<stage>");
  EXPECT_THROW_WITH(ParseFault("crash:1:plan: fisher"), ConfigError, "unknown kind 'crash'");
  EXPECT_THROW_WITH(ParseFault("kill:one:plan: fisher"), ConfigError,
                    "rank 'one' is not an integer or *");
  EXPECT_THROW_WITH(ParseFault("kill:-1:plan: fisher"), ConfigError, "rank '-1'");
  EXPECT_THROW_WITH(ParseFault("kill:1:"), ConfigError, "the stage is empty");
  setenv("HIQ_FAULT", "kill:1", 1);
  EXPECT_THROW_WITH(ArmFaultFromEnvironment(0), ConfigError, "HIQ_FAULT='kill:1'");
  unsetenv("HIQ_FAULT");
}

TEST(Fault, ThrowFiresOnceAtItsStepOnItsRankOnly) {
  Arm("throw:1:plan: fisher", 0);  // another rank's fault
  SetStage("plan: fisher");
  Arm("throw:1:plan: fisher", 1);
  SetStage("plan: fisher x");  // the step must match exactly
  SetStage("plan");
  EXPECT_THROW_MSG(SetStage("plan: fisher"), Error, "injected fault at plan: fisher");
  EXPECT_EQ(CurrentStage(), "plan: fisher");
  SetStage("plan: fisher");  // fired once
  Arm("throw:*:quantize: block 2", 7);
  EXPECT_THROW_MSG(SetStage("quantize: block 2"), Error, "injected fault at quantize: block 2");
}

// slow changes no result, only the pace: no progress waits before its step, every one after.
// In a death test's child, so that the rest of this program keeps its pace.
TEST(FaultDeathTest, SlowSleepsAtEveryProgressFromItsStepOn) {
  EXPECT_EXIT(
      {
        Arm("slow:1:quantize: block 3", 1);
        const auto time3 = [] {
          const auto t0 = std::chrono::steady_clock::now();
          for (int i = 0; i < 3; ++i) NoteProgress();
          return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        };
        const double before = time3();
        SetStage("quantize: block 3");
        const double after = time3();
        std::_Exit(before < 0.02 && after >= 3 * kSlowProgressMs * 1e-3 ? 0 : 1);
      },
      testing::ExitedWithCode(0), "");
}

TEST(FaultDeathTest, ExitEndsTheProcessWithCode3) {
  EXPECT_EXIT(
      {
        Arm("exit:1:plan: solve");
        SetStage("plan: solve");
      },
      testing::ExitedWithCode(3), "");
}

TEST(FaultDeathTest, KillRaisesSigkill) {
  EXPECT_EXIT(
      {
        Arm("kill:1:plan: solve");
        SetStage("plan: solve");
      },
      testing::KilledBySignal(SIGKILL), "");
}

TEST(FaultDeathTest, OomThrowsBadAllocUnderAnAddressSpaceLimit) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer reserves terabytes of address space; RLIMIT_AS cannot apply";
#else
  EXPECT_EXIT(
      {
        struct rlimit limit {};
        getrlimit(RLIMIT_AS, &limit);
        limit.rlim_cur = rlim_t{1} << 30;  // 1 GiB
        setrlimit(RLIMIT_AS, &limit);
        Arm("oom:1:plan: solve");
        try {
          SetStage("plan: solve");
        } catch (const std::bad_alloc&) {
          std::fprintf(stderr, "bad_alloc at %s\n", CurrentStage().c_str());
          std::_Exit(7);
        }
        std::_Exit(0);
      },
      testing::ExitedWithCode(7), "bad_alloc at plan: solve");
#endif
}

TEST(FaultDeathTest, StopRaisesSigstop) {
  // The death test's child stops itself; a process of its own continues it (no thread of a
  // stopped process runs), and the child then ends with code 5.
  EXPECT_EXIT(
      {
        const pid_t stopped = getpid();
        if (fork() == 0) {
          usleep(300000);
          kill(stopped, SIGCONT);
          std::_Exit(0);
        }
        Arm("stop:1:plan: solve");
        SetStage("plan: solve");
        std::_Exit(5);
      },
      testing::ExitedWithCode(5), "");
}

TEST(WatchdogDeathTest, AWaitOnAPeerPastTheTimeoutEndsTheProcessNamingThePeerAndTheStep) {
  EXPECT_EXIT(
      {
        SetStage("plan: fisher");
        StartWatchdog(0.5, 0);
        const PeerWait wait(1, "MPI_Recv");
        std::this_thread::sleep_for(std::chrono::seconds(10));
        std::_Exit(0);
      },
      testing::ExitedWithCode(1),
      "hiq: error: rank 0: no progress from rank 1 for 0\\.[5-9] s \\(rank 0 waited in MPI_Recv "
      "during plan: fisher; --stall-timeout 0\\.5\\)");
}

TEST(Watchdog, WaitsShorterThanTheTimeoutAndComputationDoNotEndTheProcess) {
  SetStage("plan: fisher");
  StartWatchdog(0.6, 0);
  for (int i = 0; i < 4; ++i) {
    const PeerWait wait(1, "MPI_Recv");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));  // no wait: computing
  StopWatchdog();
  SUCCEED();
}

TEST(Watchdog, AWaitOnNoKnownRankReportsTheOtherRanks) {
  EXPECT_EQ(StallMessage(2, -1, "MPI_Allreduce", "quantize: shards", 12.7, 5),
            "hiq: error: rank 2: no progress from the other ranks for 12.7 s (rank 2 waited in "
            "MPI_Allreduce during quantize: shards; --stall-timeout 5)");
}

}  // namespace
}  // namespace hiq
