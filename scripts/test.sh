#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, and runs every test with ctest (unit
# tests and MPI tests under mpirun with 2, 3 and 4 ranks). Fails if no test ran.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
# The suite checks hiq's own kernel choice (hiq/model/blas.h): an OPENBLAS_CORETYPE from the
# machine's environment (seen: Haswell, on an AMD EPYC with AVX-512, whose kernels make the nll
# differ between 1 and 3 ranks in the 8th digit) would override it.
unset OPENBLAS_CORETYPE
scripts/deps.sh
scripts/build.sh
ctest --test-dir "${HIQ_BUILD:-build}" --output-on-failure --no-tests=error \
  -j "${HIQ_TEST_JOBS:-2}" "$@"

# The unit tests again, built Debug (at -O1, so that the numerics finish) with AddressSanitizer
# and UndefinedBehaviorSanitizer; any report fails the test. The CLI tests (label cli:
# tests/test_cli*.cpp and tests/robustness/) run the binary under mpirun, where Open MPI's own
# allocations would be reported: they run in the Release stage only.
echo "== unit tests under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)"
HIQ_BUILD=build-asan HIQ_BUILD_TYPE=Debug \
  HIQ_CMAKE_ARGS="-Dhiq_SANITIZE=ON -Dhiq_BENCH=OFF" \
  scripts/build.sh
UBSAN_OPTIONS=print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
  ctest --test-dir build-asan --output-on-failure --no-tests=error -j "${HIQ_TEST_JOBS:-2}" \
  -L unit "$@"
