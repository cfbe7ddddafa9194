// Must NOT build: the numerical layers (base, model, quant, solve) do not see MPI. The tests in
// tests/CMakeLists.txt build this file against each of them alone and expect the compiler (MPI's
// header is not on their include path) or the linker (libmpi is not among their libraries) to
// refuse it, naming MPI.
#ifdef HIQ_DECLARE_MPI_BY_HAND
extern "C" int MPI_Barrier(void* comm);
#else
#include <mpi.h>
#endif

int main() { return MPI_Barrier(nullptr); }
