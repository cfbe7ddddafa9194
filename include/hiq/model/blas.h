// hiq/model/blas.h - the BLAS behind every large product: which kernels, how many threads, and
// what the run records about them. The one place that decides the thread policy.
//
// Reproducibility contract (docs/ARCHITECTURE.md): results are bit-identical across rank counts
// and thread counts for one build on one kind of CPU. OpenBLAS splits a product among its
// threads by rows and columns, which keeps every dot product's order, but its kernels for the
// edge tiles differ between kernel families: with some families (seen: Prescott, Haswell) the
// result depends on the thread count, with the AVX-512 family (SkylakeX, Cooperlake) it does not
// (measured: tests/test_cli.cpp, docs/ARCHITECTURE.md). Debian's OpenBLAS 0.3.21 does not know
// Sapphire Rapids and falls back to Prescott, the slowest and a thread-dependent family. So on
// any CPU with AVX-512 (F, BW, DQ, VL) hiq runs the SkylakeX kernels, and on one with AVX but not
// AVX-512 (an AMD EPYC with AVX2, where OpenBLAS's own choice, Zen = Haswell's kernels, is
// thread-dependent) the Sandybridge kernels, unless OPENBLAS_CORETYPE is set by the user (then it
// is respected and recorded). OpenBLAS reads the variable when it is loaded, before main(), so
// PinBlasCore re-executes the program once with it set. It also shortens how long an idle
// OpenBLAS worker spins after a product (OPENBLAS_THREAD_TIMEOUT, unless set), so that the core
// is free for ParallelRows between products.
// Different kernel families round differently: results may differ across CPU kinds, never
// across ranks or threads on one.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace hiq {

// Called first in main(), before MPI_Init: if OPENBLAS_CORETYPE is unset and the CPU has
// AVX-512 (or only AVX), sets it to SkylakeX (Sandybridge) and re-executes argv[0] with the same
// arguments (at most once; HIQ_BLAS_PINNED marks the second run). Returns normally otherwise,
// after a warning on stderr (from the first rank only) if the user's OPENBLAS_CORETYPE names
// another family than hiq's choice.
void PinBlasCore(char** argv);

// OpenBLAS threads per rank: `threads` if > 0, else the node's cores shared among its ranks
// (Open MPI's OMPI_COMM_WORLD_LOCAL_SIZE), at least 1. Returns the number set. hiq's own loops
// over a layer's rows (ParallelRows) take the same number.
int SetBlasThreads(int threads);

// f(begin, end) for up to SetBlasThreads' count of contiguous parts of [0, n), run at once (the
// calling thread takes the first), each part at least kMinRowWork elements (`row_work` a row),
// since a thread costs tens of microseconds. For loops whose rows do not read each other's results,
// so that the outcome is the same bytes for any thread count: the quantizers' per-weight passes,
// which otherwise run on one core while the products use them all. 1 thread until
// SetBlasThreads.
inline constexpr int64_t kMinRowWork = int64_t{1} << 16;
void ParallelRows(int64_t n, int64_t row_work, const std::function<void(int64_t, int64_t)>& f);

struct BlasInfo {
  std::string core;       // OpenBLAS's kernel family, e.g. "SkylakeX"
  std::string config;     // openblas_get_config(): version and build options
  std::string cpu_model;  // /proc/cpuinfo "model name"
  int threads = 0;        // OpenBLAS threads now
};
BlasInfo CurrentBlasInfo();

}  // namespace hiq
