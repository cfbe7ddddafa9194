// The stall watchdog (see hiq/base/watchdog.h).
#include "hiq/base/watchdog.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

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

struct Watcher {
  std::mutex mutex;
  std::condition_variable wake;
  bool stop = false;
  std::thread thread;
};
Watcher g_watcher;

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
    const long long start = g_start.load();
    if (start == 0) continue;
    const int peer = g_peer.load();
    const char* op = g_op.load();
    const double waited = static_cast<double>(NowNs() - start) * 1e-9;
    if (waited < timeout + (peer < 0 ? grace : 0.0)) continue;
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
