// Fault injection (see hiq/base/fault.h).
#include "hiq/base/fault.h"

#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <thread>
#include <vector>

#include "hiq/base/error.h"  // ConfigError, Error

namespace hiq {
namespace {

constexpr const char* kSyntax =
    "expected <kind>:<rank>:<stage> with kind throw|exit|kill|oom|stop|hang|slow, rank an "
    "integer or "
    "*, e.g. HIQ_FAULT=\"kill:1:quantize: block 2\"";

struct Armed {
  std::atomic<bool> on{false};
  FaultSpec spec;
};
Armed g_fault;
std::atomic<bool> g_slow{false};  // a `slow` fault has fired

// The bytes this process maps now (VmSize), or 0 if /proc cannot tell.
size_t MappedBytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long pages = 0;
  const int got = std::fscanf(f, "%lu", &pages);
  std::fclose(f);
  return got == 1 ? pages * static_cast<size_t>(sysconf(_SC_PAGESIZE)) : 0;
}

[[noreturn]] void RunOutOfMemory() {
  struct rlimit limit {};
  if (getrlimit(RLIMIT_AS, &limit) == 0 && limit.rlim_cur == RLIM_INFINITY) {
    limit.rlim_cur = MappedBytes() + (size_t{2} << 30);
    setrlimit(RLIMIT_AS, &limit);
  }
  constexpr size_t kBlock = size_t{64} << 20;
  std::vector<std::unique_ptr<char[]>> held;
  held.reserve(1 << 16);  // the list itself never reallocates inside the loop
  for (;;) {
    held.emplace_back(new char[kBlock]);  // throws std::bad_alloc at the limit
    std::memset(held.back().get(), 1, kBlock);
  }
}

}  // namespace

FaultSpec ParseFault(const std::string& text) {
  const size_t c1 = text.find(':');
  const size_t c2 = c1 == std::string::npos ? c1 : text.find(':', c1 + 1);
  if (c2 == std::string::npos) {
    throw ConfigError("HIQ_FAULT='" + text + "': " + kSyntax);
  }
  const std::string kind = text.substr(0, c1), rank = text.substr(c1 + 1, c2 - c1 - 1);
  FaultSpec spec;
  spec.stage = text.substr(c2 + 1);
  static constexpr std::pair<const char*, FaultKind> kKinds[] = {
      {"throw", FaultKind::kThrow}, {"exit", FaultKind::kExit}, {"kill", FaultKind::kKill},
      {"oom", FaultKind::kOom},     {"stop", FaultKind::kStop}, {"hang", FaultKind::kHang},
      {"slow", FaultKind::kSlow}};
  bool known = false;
  for (const auto& [name, k] : kKinds) {
    if (kind == name) {
      spec.kind = k;
      known = true;
    }
  }
  if (!known) {
    throw ConfigError("HIQ_FAULT='" + text + "': unknown kind '" + kind + "'; " + kSyntax);
  }
  if (rank == "*") {
    spec.rank = -1;
  } else {
    const bool digits = !rank.empty() && rank.size() <= 9 &&
                        rank.find_first_not_of("0123456789") == std::string::npos;
    if (!digits) {
      throw ConfigError("HIQ_FAULT='" + text + "': rank '" + rank + "' is not an integer or *; " +
                        kSyntax);
    }
    spec.rank = std::stoi(rank);
  }
  if (spec.stage.empty()) {
    throw ConfigError("HIQ_FAULT='" + text + "': the stage is empty; " + kSyntax);
  }
  return spec;
}

void ArmFaultFromEnvironment(int rank) {
  g_fault.on.store(false);
  const char* env = std::getenv("HIQ_FAULT");
  if (env == nullptr || *env == '\0') return;
  FaultSpec spec = ParseFault(env);
  if (spec.rank >= 0 && spec.rank != rank) return;
  g_fault.spec = std::move(spec);
  g_fault.on.store(true);
}

void FireFaultAt(const char* stage) {
  if (!g_fault.on.load(std::memory_order_relaxed)) return;
  if (std::strcmp(stage, g_fault.spec.stage.c_str()) != 0) return;
  g_fault.on.store(false);
  switch (g_fault.spec.kind) {
    case FaultKind::kThrow:
      throw Error(std::string("injected fault at ") + stage);
    case FaultKind::kExit:
      ::_exit(3);
    case FaultKind::kKill:
      std::raise(SIGKILL);
      break;
    case FaultKind::kOom:
      RunOutOfMemory();
    case FaultKind::kStop:
      std::raise(SIGSTOP);
      break;
    case FaultKind::kHang:
      for (;;) ::pause();
    case FaultKind::kSlow:
      g_slow.store(true);
      break;
  }
}

void FireProgressFault() {
  if (g_slow.load(std::memory_order_relaxed)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(kSlowProgressMs));
  }
}

}  // namespace hiq
