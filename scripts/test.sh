#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, and runs every test with ctest (unit
# tests and MPI tests under mpirun with 2, 3 and 4 ranks). Fails if no test ran.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
scripts/deps.sh
scripts/build.sh
cd "${HIQ_BUILD:-build}"
ctest --output-on-failure --no-tests=error -j "${HIQ_TEST_JOBS:-2}" "$@"
