#!/usr/bin/env bash
# Configures and builds hiq into $HIQ_BUILD (default build/), Release, warnings as errors.
# Extra arguments go to `cmake --build` (e.g. --target hiq).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${HIQ_BUILD:-build}
mkdir -p "$build"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=${HIQ_BUILD_TYPE:-Release} -Dhiq_WERROR=ON \
  ${HIQ_CMAKE_ARGS:-} > "$build/configure.log" 2>&1 || { cat "$build/configure.log"; exit 1; }
cmake --build "$build" -j "${HIQ_JOBS:-$(nproc)}" "$@"
