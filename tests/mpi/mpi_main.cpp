// gtest main for tests run under mpiexec: MPI is initialised once for the whole program, every
// rank runs every test, and only rank 0 prints (a failure on any rank still fails the exit code).
#include <gtest/gtest.h>
#include <mpi.h>

#include "hiq/model/blas.h"  // PinBlasCore

namespace {
struct MpiSession {
  MpiSession(int* argc, char*** argv) { MPI_Init(argc, argv); }
  ~MpiSession() { MPI_Finalize(); }
};
}  // namespace

int main(int argc, char** argv) {
  hiq::PinBlasCore(argv);  // the kernels hiq itself runs, before MPI starts
  MpiSession mpi(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int failed = RUN_ALL_TESTS() != 0;
  int any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (failed && rank != 0) std::fprintf(stderr, "[rank %d] tests failed\n", rank);
  return any_failed;
}
