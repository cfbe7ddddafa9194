#!/usr/bin/env bash
# The main job on the embedded default: the real stories260K model in ../shared/data.
#   scripts/example.sh                 # everything below on stories260K
#   HIQ_MODEL=/path/to/model HIQ_TEXT=/path/to/text.txt scripts/example.sh
# Installs what is missing, builds, then: inspect the checkpoint, tokenize held-out text, and
# measure its perplexity pipelined over 2 MPI ranks.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
scripts/deps.sh
scripts/build.sh --target hiq > /dev/null
model=${HIQ_MODEL:-$HIQ_DATA/stories260K}
text=${HIQ_TEXT:-$HIQ_DATA/text/tinystories/valid-head30KB.txt}
ranks=${HIQ_RANKS:-2}
out=${HIQ_OUT:-out/example}
mkdir -p "$out"
hiq=build/src/hiq

echo "== hiq inspect $model"
$hiq inspect "$model"
echo
echo "== hiq tokenize"
$hiq tokenize --model "$model" --text "$text" --out "$out/eval-tokens.h5"
echo
echo "== mpirun -np $ranks hiq eval"
mpirun --oversubscribe -np "$ranks" $hiq eval --model "$model" --text "$out/eval-tokens.h5"
