#!/usr/bin/env bash
# Fuzzes the safetensors reader: builds tests/fuzz/fuzz_safetensors_header.cpp with clang's
# libFuzzer + ASan + UBSan into build-fuzz/, seeds a corpus from tests/fuzz/corpus and the real
# stories260K header, runs for SECONDS (default 600) and prints a summary. Exits 1 if a crash was
# found (the reproducer is kept in build-fuzz/crashes/), 2 on a setup error.
#
#   scripts/fuzz.sh [SECONDS]
#   env: CXX (default clang++), HIQ_DATA (default ../shared/data)
#
# Not part of the CMake build: it needs clang, and a fuzzing run is minutes, not a unit test.
set -euo pipefail

seconds=${1:-600}
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/build-fuzz
data=${HIQ_DATA:-$root/../shared/data}
cxx=${CXX:-clang++}
binary=$out/fuzz_safetensors_header

if [[ ! $seconds =~ ^[0-9]+$ ]]; then
  echo "fuzz.sh: SECONDS must be a whole number, got '$seconds'" >&2
  exit 2
fi
if ! command -v "$cxx" > /dev/null; then
  echo "fuzz.sh: $cxx not found (HINT: apt-get install clang)" >&2
  exit 2
fi
mkdir -p "$out/corpus" "$out/crashes"
# Reproducers of an earlier run are kept aside, so this run's verdict is about this run.
if compgen -G "$out/crashes/*" > /dev/null; then
  mv "$out/crashes" "$out/crashes-before-$(date +%Y%m%d-%H%M%S)"
  mkdir -p "$out/crashes"
fi

# -O1 -g: readable sanitizer reports; -fno-sanitize-recover: UB stops the run like a crash.
# NDEBUG stays off so nlohmann's own assertions are live too. The build takes the shared lock
# (2 cores, other engineers build as well).
echo "fuzz.sh: building $binary"
flock /tmp/hiq-build.lock "$cxx" -std=c++20 -O1 -g -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -I"$root/include" \
  "$root/tests/fuzz/fuzz_safetensors_header.cpp" "$root/src/io/safetensors.cpp" \
  "$root/src/base/fp16.cpp" -o "$binary"

# Seeds: the checked-in files plus the real model's header (its data cut off, so small; the
# fuzzer then grows or shrinks it into files that do tile).
cp "$root"/tests/fuzz/corpus/* "$out/corpus/"
model=$data/stories260K/model.safetensors
if [[ -f $model ]]; then
  n=$(od -An -t u8 -N8 "$model" | tr -d ' ')
  head -c $((8 + n)) "$model" > "$out/corpus/stories260K-header"
else
  echo "fuzz.sh: $model not found, seeding without it" >&2
fi

# Tokens of the format, so mutations produce plausible headers sooner.
cat > "$out/safetensors.dict" <<'DICT'
"__metadata__"
"dtype"
"shape"
"data_offsets"
"F64"
"F32"
"F16"
"BF16"
"I64"
"I32"
"I16"
"I8"
"U8"
"BOOL"
"F8_E4M3"
"\"w\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,2]}"
"18446744073709551615"
"4294967296"
"-1"
"1e400"
"version https://git-lfs.github.com/spec/v1"
DICT

echo "fuzz.sh: fuzzing for ${seconds}s (corpus $out/corpus, log $out/fuzz.log)"
set +e
(cd "$out" && "$binary" -max_total_time="$seconds" -max_len=16384 -timeout=10 \
  -rss_limit_mb=2048 -print_final_stats=1 -dict="$out/safetensors.dict" \
  -artifact_prefix="$out/crashes/" "$out/corpus") > "$out/fuzz.log" 2>&1
rc=$?
set -e

execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out/fuzz.log" |
  grep -o '[0-9]*$' || true)
cov=$(grep -o 'cov: [0-9]*' "$out/fuzz.log" | tail -1 | grep -o '[0-9]*' || true)
corpus=$(find "$out/corpus" -type f | wc -l)
crashes=$(find "$out/crashes" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
  -o -name 'oom-*' \) | wc -l)
echo "fuzz.sh: summary: executions=${execs:-?} coverage=${cov:-?} corpus=$corpus crashes=$crashes" \
  "exit=$rc seconds=$seconds"
if [[ $crashes -gt 0 || $rc -ne 0 ]]; then
  echo "fuzz.sh: FOUND A PROBLEM. Last lines of $out/fuzz.log:"
  tail -40 "$out/fuzz.log"
  find "$out/crashes" -type f -printf 'fuzz.sh: reproduce with: %p\n' |
    sed "s|reproduce with: |reproduce with: $binary |"
  exit 1
fi
echo "fuzz.sh: no crashes found"
