#!/usr/bin/env bash
# The block-input table of docs/PERFORMANCE.md: what the reconstruction's block inputs cost a
# rank, measured. tests/memory/test_memory.sh (a synthetic LLaMA-2-7B-shaped model of 4 blocks,
# few calibration tokens for the plan) with a larger reconstruction set, on 1 and 2 ranks, so
# that a rank holds 4 or 2 blocks: each rank's peak in the blocks stage (the plan's peak apart)
# against its weights. A rank holds two blocks' inputs whatever its slice, so the blocks' peak
# should be about its weights + 2 x S x T x C x 4 bytes + one block's training state.
#
#   scripts/bench_memory.sh              # 32 x 512 tokens (256 MiB a block input), rtn, P = 1 2
#   scripts/bench_memory.sh --recon 64x512 --method fixed_ratio --ranks "2"
#
# Minutes of both cores and up to ~12 GiB: run it on a quiet machine. Build first
# (scripts/build.sh --target hiq). Environment: HIQ_DATA (scripts/env.sh), HIQ_BUILD.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
recon=32x512 method=rtn ranks="1 2"
while (($#)); do
  case $1 in
    --recon) shift; recon=${1:?--recon needs SEQUENCESxTOKENS} ;;
    --method) shift; method=${1:?--method needs a method} ;;
    --ranks) shift; ranks=${1:?--ranks needs a list} ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench_memory.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
hiq=${HIQ_BUILD:-build}/src/hiq
[[ -x $hiq ]] || { echo "bench_memory.sh: $hiq not built (scripts/build.sh --target hiq)" >&2; exit 1; }
[[ $recon =~ ^([0-9]+)x([0-9]+)$ ]] || { echo "bench_memory.sh: --recon '$recon', expected SxT" >&2; exit 2; }
input_mib=$((BASH_REMATCH[1] * BASH_REMATCH[2] * 4096 * 4 / 1048576))
echo "hiq quantize of a synthetic LLaMA-2-7B-shaped model (4 blocks), method $method, reconstruction"
echo "set $recon tokens: one block input (S x T x 4096 floats) is $input_mib MiB."
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'); $(date -u +%F)"
echo
HIQ_MEMORY_RANKS=$ranks HIQ_MEMORY_RECON=$recon HIQ_MEMORY_METHOD=$method \
  tests/memory/test_memory.sh "$hiq" . "$HIQ_DATA"
