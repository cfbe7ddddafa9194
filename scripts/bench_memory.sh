#!/usr/bin/env bash
# The block-input table of docs/PERFORMANCE.md ("Block inputs"): what the reconstruction's block
# inputs cost a rank, measured. `hiq quantize` of stories260K (5 blocks) by rtn with a large
# reconstruction set cut from wikitext-2/valid.txt (512 x 512 tokens by default: one block input,
# S x T x C x 4 bytes, is 64 MiB, against 1 MiB of weights a block), on 1 and 2 ranks, so that a
# rank holds 5, 3 or 2 blocks. Each rank's memory line gives its peak in the blocks stage apart
# from the plan's (hiq/base/sysinfo.h ResetPeakRss); the table sets it beside the inputs.
# A rank holds two inputs (a block's and its target, the next block's input) whatever its slice.
#
#   scripts/bench_memory.sh                      # P = 1 2, 512 x 512 tokens, build/src/hiq
#   scripts/bench_memory.sh --binary OTHER/hiq   # the same runs with another build, to compare
#
# Options: --ranks "1 2", --recon SxT (default 512x512), --binary PATH.
# About a minute on 2 cores. Build first (scripts/build.sh --target hiq). Environment: HIQ_DATA
# (scripts/env.sh), HIQ_BUILD.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
recon=512x512 ranks="1 2" hiq=${HIQ_BUILD:-build}/src/hiq
while (($#)); do
  case $1 in
    --recon) shift; recon=${1:?--recon needs SEQUENCESxTOKENS} ;;
    --ranks) shift; ranks=${1:?--ranks needs a list} ;;
    --binary) shift; hiq=${1:?--binary needs a path} ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench_memory.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ -x $hiq ]] || { echo "bench_memory.sh: $hiq not built (scripts/build.sh --target hiq)" >&2; exit 1; }
[[ $recon =~ ^([0-9]+)x([0-9]+)$ ]] || { echo "bench_memory.sh: --recon '$recon', expected SxT" >&2; exit 2; }
n=${BASH_REMATCH[1]} len=${BASH_REMATCH[2]}
input_mib=$(awk -v n="$n" -v t="$len" 'BEGIN { printf "%.1f", n * t * 64 * 4 / 1048576 }')
tmp=$(mktemp -d /tmp/hiq-bench-memory-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

echo "hiq quantize configs/stories260k-w2.yaml, method rtn, reconstruction set $n x $len tokens of"
echo "wikitext-2/valid.txt: one block input is $input_mib MiB. Binary $hiq (this checkout:"
echo "$(git rev-parse --short HEAD 2>/dev/null));"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'); $(date -u +%F)"
echo
echo "| ranks | rank | blocks held | peak GiB | by the end of the plan GiB | in the blocks GiB |"
echo "|---:|---:|---:|---:|---:|---:|"
for np in $ranks; do
  log=$tmp/quantize-$np.log
  if ! mpirun --oversubscribe --bind-to none -np "$np" "$hiq" quantize configs/stories260k-w2.yaml \
      --output "$tmp/out-$np" --set quantize.method=rtn --set cost.refine=0 \
      --set calibration.fisher.n_sequences=8 --set calibration.fisher.seq_len=64 \
      --set calibration.cost.n_sequences=4 --set calibration.cost.seq_len=64 \
      --set calibration.check.n_sequences=4 --set calibration.check.seq_len=64 \
      --set calibration.reconstruction.source=text \
      --set "calibration.reconstruction.path=$HIQ_DATA/text/wikitext-2/valid.txt" \
      --set "calibration.reconstruction.n_sequences=$n" \
      --set "calibration.reconstruction.seq_len=$len" > "$log" 2>&1; then
    echo "bench_memory.sh: hiq quantize on $np ranks failed:" >&2; tail -20 "$log" >&2; exit 1
  fi
  for ((r = 0; r < np; r++)); do
    line=$(grep "^\[rank $r\] memory: " "$log") ||
      { echo "bench_memory.sh: rank $r of $np printed no memory line" >&2; exit 1; }
    held=$(grep -c "^\[rank $r\] block [0-9]*: " "$log" || true)
    peak=$(sed -n 's/.* memory: peak \([0-9.]*\) GiB.*/\1/p' <<< "$line")
    plan=$(sed -n 's/.* (\([0-9.]*\) GiB by the end of the plan.*/\1/p' <<< "$line")
    blocks=$(sed -n 's/.*, \([0-9.]*\) GiB in the blocks).*/\1/p' <<< "$line")
    echo "| $np | $r | $held | $peak | $plan | ${blocks:-(not measured apart)} |"
  done
done
