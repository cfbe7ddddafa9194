// The interrupt line and its handler (see hiq/base/interrupt.h).
#include "hiq/base/interrupt.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>

#include "hiq/base/fault.h"     // FireFaultAt
#include "hiq/base/watchdog.h"  // NoteProgress

namespace hiq {
namespace {

constexpr size_t kStageBytes = 128;
constexpr size_t kPathBytes = 1024;

// Two buffers per string: a setter fills the one the handler is not reading, then flips the
// index, so the handler never reads a half-copied name.
struct Text {
  char buf[2][kPathBytes] = {};
  std::atomic<int> current{0};
  void Set(const char* text, size_t limit) {
    const int next = 1 - current.load();
    size_t n = text == nullptr ? 0 : std::strlen(text);
    if (n >= limit) n = limit - 1;
    if (n > 0) std::memcpy(buf[next], text, n);
    buf[next][n] = '\0';
    current.store(next);
  }
  const char* Get() const { return buf[current.load()]; }
};

Text g_stage, g_output, g_lock;
std::atomic<int> g_rank{0}, g_ranks{1};
std::atomic<bool> g_silent{false};

// Appends to a fixed buffer without allocating (async-signal-safe).
struct Line {
  char buf[3 * kPathBytes];
  size_t n = 0;
  void Add(const char* s) {
    while (*s != '\0' && n + 1 < sizeof buf) buf[n++] = *s++;
  }
  void AddInt(int v) {
    char digits[16];
    int k = 0;
    unsigned u = v < 0 ? 0u : static_cast<unsigned>(v);
    do {
      digits[k++] = static_cast<char>('0' + u % 10);
      u /= 10;
    } while (u > 0);
    while (k > 0 && n + 1 < sizeof buf) buf[n++] = digits[--k];
  }
};

const char* SignalName(int signo) {
  switch (signo) {
    case SIGTERM:
      return "SIGTERM";
    case SIGINT:
      return "SIGINT";
    default:
      return "a signal";
  }
}

void Compose(int signo, Line& line) {
  line.Add("hiq: interrupted by ");
  line.Add(SignalName(signo));
  line.Add(" during ");
  const char* stage = g_stage.Get();
  line.Add(*stage != '\0' ? stage : "startup");
  if (g_ranks.load() > 1) {
    line.Add(" (rank ");
    line.AddInt(g_rank.load());
    line.Add(")");
  }
  const char* out = g_output.Get();
  if (*out != '\0') {
    line.Add("; ");
    line.Add(out);
    line.Add(" is incomplete");
  }
}

void OnSignal(int signo) {
  if (!g_silent.load()) {
    Line line;
    Compose(signo, line);
    line.buf[line.n++] = '\n';
    ssize_t ignored = ::write(STDERR_FILENO, line.buf, line.n);
    (void)ignored;
  }
  const char* lock = g_lock.Get();
  if (*lock != '\0') ::unlink(lock);
  ::_exit(128 + signo);
}

}  // namespace

void SetStage(const char* name) {
  g_stage.Set(name, kStageBytes);
  NoteProgress();
  FireFaultAt(name);  // HIQ_FAULT's step, for tests (hiq/base/fault.h)
}

std::string CurrentStage() { return g_stage.Get(); }

void SetInterruptRank(int rank, int count) {
  g_rank.store(rank);
  g_ranks.store(count);
}

void SetInterruptOutput(const char* out_dir, const char* lock_file) {
  g_output.Set(out_dir, kPathBytes);
  g_lock.Set(lock_file, kPathBytes);
}

void SilenceInterrupts() { g_silent.store(true); }

void EndProcessWithLine(const char* line, int code) {
  g_silent.store(true);
  ssize_t ignored = ::write(STDERR_FILENO, line, std::strlen(line));
  (void)ignored;
  const char* lock = g_lock.Get();
  if (*lock != '\0') ::unlink(lock);
  ::_exit(code);
}

void InstallInterruptHandlers() {
  struct sigaction action {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  // Every other handled signal waits while one line is written.
  sigaddset(&action.sa_mask, SIGTERM);
  sigaddset(&action.sa_mask, SIGINT);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
}

std::string InterruptMessage(int signo) {
  Line line;
  Compose(signo, line);
  return std::string(line.buf, line.n);
}

}  // namespace hiq
