#!/usr/bin/env bash
# The main job on the embedded default: the real stories260K model in ../shared/data.
#   scripts/example.sh                 # everything below on stories260K, 2 MPI ranks
#   HIQ_CONFIG=configs/stories260k-w3.yaml HIQ_RANKS=3 scripts/example.sh
#   HIQ_MODEL=/path/to/model HIQ_TEXT=/path/to/text.txt scripts/example.sh   (inspect + eval only)
# Installs what is missing, builds, then: inspect the checkpoint, tokenize held-out text, plan
# the per-layer high-impact ratios under the bit budget (Fisher, measured cost terms, global
# solve, check), and print the perplexity table: full precision, the plan and the fixed ratio at
# the same bits, both applied by round-to-nearest.
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
echo "== mpirun -np $ranks hiq plan $config"
run plan "$config" --output "$out/plan"
echo
echo "== perplexity on $(basename "$text") (mpirun -np $ranks hiq eval ...)"
fp=$(run eval --model "$model" --text "$out/eval-tokens.h5" | tail -1)
plan=$(run eval --model "$model" --text "$out/eval-tokens.h5" --plan "$out/plan" | tail -1)
fixed=$(run eval --model "$model" --text "$out/eval-tokens.h5" --plan "$out/plan/fixed" | tail -1)
field() { tr ' ' '\n' <<< "$2" | sed -n "s/^$1=//p"; }
printf '| %-28s | %9s | %10s |\n' model avg_bits perplexity
printf '|%s|%s|%s|\n' "------------------------------" "-----------" "------------"
printf '| %-28s | %9s | %10s |\n' "full precision" 32 "$(field ppl "$fp")"
printf '| %-28s | %9s | %10s |\n' "plan (RTN)" "$(field avg_bits "$plan")" "$(field ppl "$plan")"
printf '| %-28s | %9s | %10s |\n' "fixed ratio (RTN)" "$(field avg_bits "$fixed")" "$(field ppl "$fixed")"
