// hiq/base/fault.h - fault injection for tests: HIQ_FAULT="<kind>:<rank>:<stage>".
//
// A test names a fault, the rank it strikes (an integer, or * for every rank) and the step it
// strikes in, spelled exactly as the stages pass it to SetStage (hiq/base/interrupt.h), e.g.
// HIQ_FAULT="kill:1:quantize: block 2". The stage is everything after the second colon, so it
// may hold colons itself. When that rank enters that step, SetStage calls FireFaultAt, which:
//   throw  throws hiq::Error("injected fault at <stage>"), through main()'s usual error path;
//   exit   ends the process with _exit(3): no message, no destructor, no MPI call;
//   kill   raises SIGKILL (what the kernel's OOM killer or a lost node looks like);
//   oom    allocates and touches 64 MiB blocks until an allocation fails, then throws the
//          std::bad_alloc (main() prints "out of memory during <stage>"); with RLIMIT_AS
//          unlimited it first caps the address space at 2 GiB above what the process maps, so a
//          mistaken run cannot take the machine's memory;
//   stop   raises SIGSTOP (a rank stopped by a debugger, a job suspended, a frozen node);
//   hang   sleeps forever without MPI calls (a rank stuck in I/O or in a deadlock);
//   slow   from then on sleeps kSlowProgressMs at every NoteProgress (hiq/base/watchdog.h): a
//          rank that computes slowly but steadily, which the stall timeout must leave alone.
// A fault fires once. Without HIQ_FAULT nothing is armed and FireFaultAt costs one load.
// Thread-safety: ArmFaultFromEnvironment before any other thread calls SetStage.
#pragma once

#include <string>

namespace hiq {

enum class FaultKind { kThrow, kExit, kKill, kOom, kStop, kHang, kSlow };
inline constexpr int kSlowProgressMs = 50;

struct FaultSpec {
  FaultKind kind = FaultKind::kThrow;
  int rank = -1;  // -1: every rank (*)
  std::string stage;
};

// Parses "<kind>:<rank>:<stage>"; a ConfigError names what is wrong and the expected syntax.
FaultSpec ParseFault(const std::string& text);

// Arms the fault HIQ_FAULT names for this process (rank `rank`), or disarms if it is unset,
// empty or for another rank. A malformed value is a ConfigError at start-up, not a fault that
// silently never fires.
void ArmFaultFromEnvironment(int rank);

// Fires the armed fault if `stage` is its step (called by SetStage).
void FireFaultAt(const char* stage);
// The `slow` fault's sleep, once it has fired (called by NoteProgress).
void FireProgressFault();

}  // namespace hiq
