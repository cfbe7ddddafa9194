// hiq/base/watchdog.h - the stall timeout: a rank left waiting on a peer too long ends the job.
//
// A rank that is stopped (SIGSTOP, a suspended job), hangs, or is stuck in I/O cannot report
// itself; the ranks waiting for it can. Every blocking wait on other ranks in dist/mpi is a
// PeerWait naming the rank it waits for (a point-to-point peer, a broadcast's root, the other
// rank of two) or none (a collective of three or more, where any rank may be the late one). A
// thread started by StartWatchdog looks at the current wait four times a second; when one has
// lasted the timeout, it writes
//   hiq: error: rank 0: no progress from rank 1 for 5 s (rank 0 waited in MPI_Recv during
//   plan: fisher; --stall-timeout 5)
// to stderr with write(2), removes this process's output lock (hiq/base/interrupt.h) and ends
// the process with _exit(1): MPI is initialised MPI_THREAD_FUNNELED, so this thread may not
// call MPI_Abort, and mpirun takes the rest of the job down when a rank exits without
// MPI_Finalize. A wait that names no rank reports only after the timeout plus a grace of
// min(timeout, 10 s), so that a rank which knows the culprit speaks first. A long computation
// is no wait: only the ranks waiting on it time out, so the default timeout (600 s) is far above
// any one step of a real run; 0 turns the watchdog off.
// Thread-safety: PeerWait on the main thread (the one thread that calls MPI); StartWatchdog and
// StopWatchdog from main().
#pragma once

#include <string>

namespace hiq {

// Marks the calling thread as blocked on `peer` (-1: on some rank of a collective) in `op`, a
// string literal such as "MPI_Recv", for the scope's lifetime. Costs two atomic stores.
class PeerWait {
 public:
  PeerWait(int peer, const char* op);
  ~PeerWait();
  PeerWait(const PeerWait&) = delete;
  PeerWait& operator=(const PeerWait&) = delete;

 private:
  long long saved_start_;
  int saved_peer_;
  const char* saved_op_;
};

// Starts the watchdog thread (once) with `timeout_seconds` (<= 0: does nothing); `rank` is this
// process's rank in the message.
void StartWatchdog(double timeout_seconds, int rank);
// Stops and joins the thread, if one runs.
void StopWatchdog();

// The line the watchdog writes, without the newline (for tests).
std::string StallMessage(int rank, int peer, const char* op, const std::string& stage,
                         double waited_seconds, double timeout_seconds);

}  // namespace hiq
