#!/usr/bin/env bash
# The memory test (issue: operations, item 6; docs/OPERATIONS.md "Memory"): a synthetic
# LLaMA-2-7B-shaped checkpoint of 4 blocks quantized on 2 and 4 ranks with few calibration
# tokens. Every rank prints its measured peak resident set next to what its slice should need
# (hiq/stages/memory.h: the slice's float32 weights plus the largest stage working set and the
# allocator's retention); the test fails if a rank's peak exceeds 1.5x that, or a rank is silent.
# Prints the per-rank table. Usage: test_memory.sh HIQ_BINARY SOURCE_DIR DATA_DIR
set -euo pipefail
hiq=${1:?hiq binary}; src=${2:?source dir}; data=${3:?data dir}
limit=1.5
tmp=$(mktemp -d /tmp/hiq-memory-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,tcp

"$hiq" synth --shape llama2-7b --layers 4 --seed 1 --vocab 512 \
  --tokenizer-from "$data/stories260K" --out "$tmp/model" > /dev/null
sets=(--set "model.path=$tmp/model" --set quant.ratios=[0.05,0.1] --set cost.mode=fisher
      --set cost.refine=0 --set quantize.steps=2)
for s in fisher cost check reconstruction; do
  sets+=(--set "calibration.$s.source=text" --set "calibration.$s.path=$data/text/wikitext-2/valid.txt"
         --set "calibration.$s.n_sequences=2" --set "calibration.$s.seq_len=32")
done

fail=0
printf '| ranks | rank | peak GiB | by the end of the plan GiB | in the blocks GiB | weights GiB | caches GiB | peak / (weights + caches) |\n'
printf '|---|---|---|---|---|---|---|---|\n'
for np in 2 4; do
  log=$tmp/quantize-$np.log
  start=$SECONDS
  if ! mpirun --oversubscribe --bind-to none -np "$np" "$hiq" quantize \
      "$src/configs/llama2-7b-w2g64.yaml" "${sets[@]}" --output "$tmp/out-$np" > "$log" 2>&1; then
    echo "test_memory: hiq quantize on $np ranks failed:"; tail -20 "$log"; exit 1
  fi
  lines=$(grep -c '^\[rank [0-9]*\] memory: ' "$log" || true)
  if [[ $lines != "$np" ]]; then
    echo "test_memory: $np ranks printed $lines memory lines, expected $np:"; cat "$log"; exit 1
  fi
  parsed=0
  while read -r rank peak plan blocks ratio weights caches; do
    parsed=$((parsed + 1))
    printf '| %d | %d | %s | %s | %s | %s | %s | %s |\n' "$np" "$rank" "$peak" "$plan" "$blocks" \
      "$weights" "$caches" "$ratio"
    if awk -v r="$ratio" -v l="$limit" 'BEGIN { exit !(r > l) }'; then
      echo "test_memory: rank $rank of $np: peak is $ratio x its weights + caches, above $limit"
      fail=1
    fi
  done < <(sed -n 's/^\[rank \([0-9]*\)\] memory: peak \([0-9.]*\) GiB (\([0-9.]*\) GiB by the end of the plan, \([0-9.]*\) GiB in the blocks) = \([0-9.]*\) x (weights \([0-9.]*\) GiB + caches \([0-9.]*\) GiB.*/\1 \2 \3 \4 \5 \6 \7/p' "$log")
  if [[ $parsed != "$np" ]]; then
    # The blocks' peak needs /proc/self/clear_refs (hiq/base/sysinfo.h ResetPeakRss).
    echo "test_memory: $parsed of $np memory lines have the plan's and the blocks' peaks:"
    grep '^\[rank [0-9]*\] memory: ' "$log"; exit 1
  fi
  echo "(np $np: $((SECONDS - start)) s)"
done
exit $fail
