// The stall watchdog (see hiq/base/watchdog.h).
#include "hiq/base/watchdog.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include "hiq/base/fault.h"      // FireProgressFault
#include "hiq/base/interrupt.h"  // CurrentStage, EndProcessWithLine

namespace hiq {
namespace {

using Clock = std::chrono::steady_clock;

long long NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

// The current wait: its start (0 when none), the rank waited for and the call.
std::atomic<long long> g_start{0};
std::atomic<int> g_peer{-1};
std::atomic<const char*> g_op{nullptr};

// This rank's progress count (NoteProgress), read by the watchdog thread.
std::atomic<unsigned long long> g_progress{0};

struct Watcher {
  std::mutex mutex;
  std::condition_variable wake;
  bool stop = false;
  std::thread thread;
  // Under mutex: where the ranks publish their progress ("" = nowhere), and what this thread
  // has seen of each rank's count and since when (steady clock, ns).
  std::filesystem::path progress_dir;
  int n_ranks = 0;
  std::vector<long long> seen_count, seen_since;
  unsigned long long written = ~0ULL;
  long long written_at = 0;
  long long read_at = 0, moved = 0;  // the last read of the others, the last move it saw
};
Watcher g_watcher;

std::filesystem::path ProgressFile(const std::filesystem::path& dir, int rank) {
  return dir / ("rank-" + std::to_string(rank));
}

// This rank's count into its file (write, then rename: a reader never sees half a number), when
// it has changed and at most once a second. Errors are ignored: the directory goes away at
// the end of the run while the other ranks may still look.
void Publish(Watcher& w, int rank) {
  const unsigned long long count = g_progress.load();
  const long long now = NowNs();
  if (count == w.written || now - w.written_at < 1'000'000'000LL) return;
  const std::filesystem::path file = ProgressFile(w.progress_dir, rank);
  const std::filesystem::path tmp = file.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << count << "\n";
    if (!out) return;
  }
  std::error_code ignored;
  std::filesystem::rename(tmp, file, ignored);
  w.written = count;
  w.written_at = now;
}

// Reads every other rank's published count; a count that differs from the one last read counts
// as moved now. Returns the latest time (ns) any other rank was seen moving.
long long ReadOthers(Watcher& w, int rank) {
  long long latest = 0;
  for (int r = 0; r < w.n_ranks; ++r) {
    if (r == rank) continue;
    std::ifstream in(ProgressFile(w.progress_dir, r));
    long long count = -1;
    if (!(in >> count)) count = -1;
    const size_t i = static_cast<size_t>(r);
    if (count != w.seen_count[i]) {
      w.seen_count[i] = count;
      w.seen_since[i] = NowNs();
    }
    latest = std::max(latest, w.seen_since[i]);
  }
  return latest;
}

// Tenths, cut down, for the time waited ("5.1"); the timeout as given ("5", "0.5").
std::string Tenths(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", std::floor(s * 10) / 10);
  return buf;
}
std::string Shortest(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", s);
  return buf;
}

void Watch(double timeout, int rank) {
  const double grace = std::min(timeout, 10.0);
  std::unique_lock<std::mutex> lock(g_watcher.mutex);
  while (!g_watcher.wake.wait_for(lock, std::chrono::milliseconds(250),
                                  [] { return g_watcher.stop; })) {
    const bool publishing = !g_watcher.progress_dir.empty();
    if (publishing) Publish(g_watcher, rank);
    const long long start = g_start.load();
    if (start == 0) continue;
    // While waiting, the others' counts once a second, so that a stall is timed from the last
    // move seen (at most a second late), not from the first look.
    const long long now = NowNs();
    if (publishing && now - g_watcher.read_at >= 1'000'000'000LL) {
      g_watcher.moved = ReadOthers(g_watcher, rank);
      g_watcher.read_at = now;
    }
    const int peer = g_peer.load();
    const char* op = g_op.load();
    const double waited = static_cast<double>(now - start) * 1e-9;
    const double limit = timeout + (peer < 0 ? grace : 0.0);
    if (waited < limit) continue;
    // A peer that is slow, not stalled: some rank's count moved within the limit. The chain
    // waiter -> waiting peer -> computing rank counts too, as every rank's count is read.
    if (publishing && static_cast<double>(now - std::max(g_watcher.moved, start)) * 1e-9 < limit) {
      continue;
    }
    if (g_start.load() != start) continue;  // that wait ended while we looked
    const std::string line = StallMessage(rank, peer, op, CurrentStage(), waited, timeout) + "\n";
    EndProcessWithLine(line.c_str(), 1);
  }
}

}  // namespace

PeerWait::PeerWait(int peer, const char* op)
    : saved_start_(g_start.load()), saved_peer_(g_peer.load()), saved_op_(g_op.load()) {
  g_peer.store(peer);
  g_op.store(op);
  g_start.store(NowNs());
}

PeerWait::~PeerWait() {
  g_start.store(0);
  g_peer.store(saved_peer_);
  g_op.store(saved_op_);
  g_start.store(saved_start_);
}

void NoteProgress() {
  g_progress.fetch_add(1, std::memory_order_relaxed);
  FireProgressFault();
}

void SetProgressDir(const std::filesystem::path& dir, int n_ranks) {
  std::lock_guard<std::mutex> lock(g_watcher.mutex);
  g_watcher.progress_dir = dir;
  g_watcher.n_ranks = n_ranks;
  // Every other rank counts as seen moving now: a stall is measured from here at the earliest.
  g_watcher.seen_count.assign(static_cast<size_t>(std::max(n_ranks, 0)), -1);
  g_watcher.seen_since.assign(static_cast<size_t>(std::max(n_ranks, 0)), NowNs());
  g_watcher.written = ~0ULL;
  g_watcher.written_at = 0;
  g_watcher.read_at = 0;
  g_watcher.moved = 0;
}

void StartWatchdog(double timeout_seconds, int rank) {
  if (timeout_seconds <= 0 || g_watcher.thread.joinable()) return;
  g_watcher.stop = false;
  g_watcher.thread = std::thread(Watch, timeout_seconds, rank);
}

void StopWatchdog() {
  if (!g_watcher.thread.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(g_watcher.mutex);
    g_watcher.stop = true;
  }
  g_watcher.wake.notify_all();
  g_watcher.thread.join();
}

std::string StallMessage(int rank, int peer, const char* op, const std::string& stage,
                         double waited_seconds, double timeout_seconds) {
  const std::string r = std::to_string(rank);
  std::string line = "hiq: error: rank " + r + ": no progress from ";
  line += peer >= 0 ? "rank " + std::to_string(peer) : std::string("the other ranks");
  line += " for " + Tenths(waited_seconds) + " s (rank " + r + " waited in " +
          (op != nullptr ? op : "MPI") + " during " + (stage.empty() ? "startup" : stage) +
          "; --stall-timeout " + Shortest(timeout_seconds) + ")";
  return line;
}

}  // namespace hiq
