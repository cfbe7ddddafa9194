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
// min(timeout, 10 s), so that a rank which knows the culprit speaks first; 0 turns the watchdog
// off.
// Slow is not stalled: the main thread counts its progress (NoteProgress: every stage, every
// micro-batch of a pass, every reconstruction step), and with a progress directory
// (SetProgressDir: the output's, which every rank can read, on a cluster's shared filesystem)
// each watchdog publishes its rank's count there, at most once a second, when it changed. A
// wait past the timeout then ends the job only when no other rank's count has moved within the
// timeout either: a rank that waits for one computing a long block (the others wait in
// `quantize: shards` meanwhile) is left waiting. A stopped rank stops its watchdog too, and a
// hung main thread stops counting, so both are still found; only later, when every rank has
// come to wait. Without a progress directory (eval) the wait alone decides.
// Thread-safety: PeerWait on the main thread (the one thread that calls MPI); StartWatchdog and
// StopWatchdog from main().
#pragma once

#include <filesystem>
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

// This rank made progress (one relaxed atomic add; also fires a `slow` fault, hiq/base/fault.h).
void NoteProgress();
// Publish progress in `dir` (it must exist; "" stops publishing) for a job of n_ranks ranks.
void SetProgressDir(const std::filesystem::path& dir, int n_ranks);

// Starts the watchdog thread (once) with `timeout_seconds` (<= 0: does nothing); `rank` is this
// process's rank in the message.
void StartWatchdog(double timeout_seconds, int rank);
// Stops and joins the thread, if one runs.
void StopWatchdog();

// The line the watchdog writes, without the newline (for tests).
std::string StallMessage(int rank, int peer, const char* op, const std::string& stage,
                         double waited_seconds, double timeout_seconds);

}  // namespace hiq
