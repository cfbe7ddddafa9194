#!/usr/bin/env bash
# The main job on the embedded default: the real stories260K model in ../shared/data.
#   scripts/example.sh                 # everything below on stories260K, 2 MPI ranks
#   HIQ_CONFIG=configs/stories260k-w3.yaml HIQ_RANKS=3 scripts/example.sh
#   HIQ_MODEL=/path/to/model HIQ_TEXT=/path/to/text.txt scripts/example.sh   (inspect + eval only)
# Installs what is missing, builds, then: inspect the checkpoint, tokenize held-out text,
# `hiq quantize` (the plan of per-layer high-impact ratios under the bit budget, then every rank
# reconstructs its blocks: AdaRound on the high-impact columns, LWC on the rest, into HDF5
# shards), the same for the fixed ratio at the same bits, export, and the perplexity table: full
# precision, hiq and the fixed ratio (both hybrid), and both plans by round-to-nearest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
scripts/deps.sh
scripts/build.sh --target hiq > /dev/null
model=${HIQ_MODEL:-$HIQ_DATA/stories260K}
text=${HIQ_TEXT:-$HIQ_DATA/text/tinystories/valid-head30KB.txt}
config=${HIQ_CONFIG:-configs/stories260k-w2.yaml}
ranks=${HIQ_RANKS:-2}
out=${HIQ_OUT:-out/example}
mkdir -p "$out"
hiq=build/src/hiq
run() { mpirun --oversubscribe -np "$ranks" $hiq "$@"; }

echo "== hiq inspect $model"
$hiq inspect "$model"
echo
echo "== hiq tokenize $text"
$hiq tokenize --model "$model" --text "$text" --out "$out/eval-tokens.h5"
if [[ -n "${HIQ_MODEL:-}" ]]; then  # a model of your own: the configs name stories260K
  echo "== mpirun -np $ranks hiq eval"
  run eval --model "$model" --text "$out/eval-tokens.h5"
  exit 0
fi
echo
echo "== mpirun -np $ranks hiq quantize $config   (the plan, then the hybrid reconstruction)"
# --overwrite: a re-run of this script replaces its previous models (hiq refuses otherwise).
run quantize "$config" --output "$out/hiq" --overwrite
echo
echo "== mpirun -np $ranks hiq quantize $config --set quantize.method=fixed_ratio   (the baseline)"
run quantize "$config" --output "$out/fixed_ratio" --overwrite --set quantize.method=fixed_ratio
echo
echo "== hiq export $out/hiq --out $out/hiq-hf   (a dequantized Hugging Face directory)"
$hiq export "$out/hiq" --out "$out/hiq-hf"
echo
echo "== perplexity on $(basename "$text") (mpirun -np $ranks hiq eval ...)"
fp=$(run eval --model "$model" --text "$out/eval-tokens.h5" | tail -1)
hiq_q=$(run eval --quantized "$out/hiq" --text "$out/eval-tokens.h5" | tail -1)
fixed_q=$(run eval --quantized "$out/fixed_ratio" --text "$out/eval-tokens.h5" | tail -1)
plan=$(run eval --model "$model" --text "$out/eval-tokens.h5" --plan "$out/hiq" | tail -1)
fixed=$(run eval --model "$model" --text "$out/eval-tokens.h5" --plan "$out/hiq/fixed" | tail -1)
field() { tr ' ' '\n' <<< "$2" | sed -n "s/^$1=//p"; }
printf '| %-34s | %9s | %10s |\n' model avg_bits perplexity
printf '|%s|%s|%s|\n' "------------------------------------" "-----------" "------------"
printf '| %-34s | %9s | %10s |\n' "full precision" 32 "$(field ppl "$fp")"
printf '| %-34s | %9s | %10s |\n' "hiq (plan + hybrid)" "$(field avg_bits "$hiq_q")" "$(field ppl "$hiq_q")"
printf '| %-34s | %9s | %10s |\n' "fixed ratio (hybrid)" "$(field avg_bits "$fixed_q")" "$(field ppl "$fixed_q")"
printf '| %-34s | %9s | %10s |\n' "plan (RTN)" "$(field avg_bits "$plan")" "$(field ppl "$plan")"
printf '| %-34s | %9s | %10s |\n' "fixed ratio (RTN)" "$(field avg_bits "$fixed")" "$(field ppl "$fixed")"
