// The thread and kernel policy (see hiq/model/blas.h).
#include "hiq/model/blas.h"

#include <strings.h>  // strcasecmp
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "hiq/base/sysinfo.h"  // CpuModel

extern "C" {
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
char* openblas_get_corename(void);
char* openblas_get_config(void);
}

namespace hiq {

namespace {

// OPENBLAS_THREAD_TIMEOUT for PinBlasCore: 2^20 cycles, under a millisecond.
constexpr const char* kThreadTimeout = "20";

// The kernel family hiq runs on this CPU, or nullptr for OpenBLAS's own choice. With AVX-512:
// SkylakeX. With AVX but not AVX-512, OpenBLAS would pick Haswell (or Zen, the same kernels),
// whose results depend on the thread count (seen on an AMD EPYC with AVX2: eval's nll differed
// between 1 and 3 ranks in the 8th digit); the Sandybridge family gave the same bits on 1 to 3
// ranks and 1 or 2 threads there (tests/test_cli.cpp), at the cost of AVX kernels without FMA.
const char* PinnedCore() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) {
    return "SkylakeX";
  }
  return __builtin_cpu_supports("avx") ? "Sandybridge" : nullptr;
}

// The first rank of an Open MPI or Slurm launch, or a process outside one: the one that speaks
// before MPI_Init, when there is no communicator to ask.
bool FirstRankOrAlone() {
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID"}) {
    const char* v = std::getenv(var);
    if (v != nullptr) return std::string(v) == "0";
  }
  return true;
}

}  // namespace

void PinBlasCore(char** argv) {
  if (std::getenv("HIQ_BLAS_PINNED") != nullptr) return;
  const char* core = PinnedCore();
  if (const char* user = std::getenv("OPENBLAS_CORETYPE"); user != nullptr) {
    // Respected, but a family other than hiq's may round differently on different thread
    // counts (Haswell did on the AMD EPYC of docs/ARCHITECTURE.md), which silently costs the
    // rank-invariance a user relies on; say so once.
    if (core != nullptr && strcasecmp(user, core) != 0 && FirstRankOrAlone()) {
      std::fprintf(
          stderr,
          "hiq: warning: OPENBLAS_CORETYPE=%s is set; hiq's choice on this CPU is %s, "
          "whose results are the same on any number of ranks and threads. With %s they "
          "may differ (docs/ARCHITECTURE.md); unset OPENBLAS_CORETYPE to let hiq choose.\n",
          user, core, user);
    }
    return;
  }
  if (core == nullptr) return;
  setenv("OPENBLAS_CORETYPE", core, 1);
  // 2^n cycles of spinning before an idle worker sleeps (OpenBLAS's default n is 28, about 0.1
  // s): with the default the worker holds its core through the per-weight passes between
  // products.
  setenv("OPENBLAS_THREAD_TIMEOUT", kThreadTimeout, 0);
  setenv("HIQ_BLAS_PINNED", "1", 1);
  execv("/proc/self/exe", argv);
  // Only reached if the re-exec failed: say so, and run with OpenBLAS's own choice.
  std::perror("hiq: warning: could not re-execute to pin the OpenBLAS kernels");
}

namespace {
int g_loop_threads = 1;
}  // namespace

void ParallelRows(int64_t n, int64_t row_work, const std::function<void(int64_t, int64_t)>& f) {
  const int64_t by_work = n * std::max<int64_t>(row_work, 1) / kMinRowWork;
  const int64_t parts = std::min<int64_t>({g_loop_threads, n, std::max<int64_t>(by_work, 1)});
  if (parts <= 1) {
    if (n > 0) f(0, n);
    return;
  }
  std::vector<std::thread> helpers;
  for (int64_t p = 1; p < parts; ++p) {
    helpers.emplace_back(f, p * n / parts, (p + 1) * n / parts);
  }
  f(0, n / parts);
  for (std::thread& t : helpers) t.join();
}

int SetBlasThreads(int threads) {
  if (threads <= 0) {
    const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    const int ranks = local != nullptr ? std::max(1, std::atoi(local)) : 1;
    threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / ranks);
  }
  openblas_set_num_threads(threads);
  g_loop_threads = threads;
  return threads;
}

BlasInfo CurrentBlasInfo() {
  BlasInfo info;
  info.core = openblas_get_corename();
  info.config = openblas_get_config();
  info.threads = openblas_get_num_threads();
  info.cpu_model = CpuModel();
  return info;
}

}  // namespace hiq
