#!/usr/bin/env bash
# The plan issue's acceptance check (docs/PLAN.md), printed as markdown on stdout: for stories260K
# at W2 and W3 and calibration seeds s = 1 2 3, `hiq plan` with
#   --set calibration.fisher.seed=s --set calibration.cost.seed=100+s --set calibration.check.seed=200+s
# into $HIQ_PLAN_OUT/wB-sS (default out/plan-seeds), then `hiq eval --plan` on the plan and on its
# fixed-ratio baseline (OUT/fixed, the same budget) on tinystories/valid-head30KB.txt.
# Exits 1 if any plan's perplexity is not below its fixed ratio's (the acceptance criterion),
# after printing the whole table.
#
#   scripts/plan_seeds.sh              # about 4 minutes of one core
#   scripts/plan_seeds.sh --quick      # seconds: W2, seed 1, small sets (a check of the script)
#
# The whole run holds the shared build lock, so that no build competes with it; do not wrap it
# in `flock` yourself (that would deadlock: use --no-lock).
#
# Options:
#   --config FILE    a config (repeatable; default configs/stories260k-w2.yaml and -w3)
#   --seeds "1 2 3"  the calibration seeds
#   --set KEY=VALUE  a further override for every run (repeatable)
#   --ranks P        mpirun -np P (default 1)
#   --quick          W2, seed 1, 16 Fisher and 8 cost/check sequences of 64 tokens
#   --no-build       use the binaries already in $HIQ_BUILD (default build/)
#   --no-lock        do not take the build lock
# Environment: HIQ_DATA (scripts/env.sh), HIQ_BUILD, HIQ_PLAN_OUT, HIQ_BUILD_LOCK (default
# /tmp/hiq-build.lock).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

configs=() seeds="1 2 3" sets=() ranks=1 quick=0 build=1 lock=1
command="scripts/plan_seeds.sh $*"
while (($#)); do
  case $1 in
    --config) shift; configs+=("${1:?--config needs a file}") ;;
    --seeds) shift; seeds=${1:?--seeds needs a list} ;;
    --set) shift; sets+=(--set "${1:?--set needs key=value}") ;;
    --ranks) shift; ranks=${1:?--ranks needs a number} ;;
    --quick) quick=1 ;;
    --no-build) build=0 ;;
    --no-lock) lock=0 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "plan_seeds.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if ((quick)); then
  ((${#configs[@]})) || configs=(configs/stories260k-w2.yaml)
  seeds=1
  sets+=(--set calibration.fisher.n_sequences=16 --set calibration.fisher.seq_len=64
         --set calibration.cost.n_sequences=8 --set calibration.cost.seq_len=64
         --set calibration.check.n_sequences=8 --set calibration.check.seq_len=64)
fi
((${#configs[@]})) || configs=(configs/stories260k-w2.yaml configs/stories260k-w3.yaml)

builddir=${HIQ_BUILD:-build}
out=${HIQ_PLAN_OUT:-out/plan-seeds}
hiq=$builddir/src/hiq
model=$HIQ_DATA/stories260K
text=$HIQ_DATA/text/tinystories/valid-head30KB.txt
mkdir -p "$out"

if ((lock)); then
  lockfile=${HIQ_BUILD_LOCK:-/tmp/hiq-build.lock}
  exec 9>>"$lockfile"
  echo "plan_seeds.sh: waiting for $lockfile" >&2
  flock 9
fi
if ((build)); then
  echo "plan_seeds.sh: building hiq (log $out/build.log)" >&2
  scripts/build.sh --target hiq > "$out/build.log" 2>&1 || { tail -40 "$out/build.log" >&2; exit 1; }
fi
[[ -x $hiq ]] || { echo "plan_seeds.sh: $hiq not built (HINT: drop --no-build)" >&2; exit 1; }

# The value of key=... on the last line of a log that has it.
field() { grep -oE "(^| )$1=[^ ]*" "$2" | tail -1 | sed 's/^ //' | cut -d= -f2-; }

eval_log() {  # eval_log LOG [--plan DIR]
  local log=$1; shift
  mpirun -np "$ranks" "$hiq" eval --model "$model" --text "$text" "$@" > "$log" 2>&1 ||
    { cat "$log" >&2; exit 1; }
}

eval_log "$out/eval-fp.log"
fp_ppl=$(field ppl "$out/eval-fp.log")

echo "# hiq plan vs fixed ratio over calibration seeds"
echo
echo "- machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc --all) logical CPUs"
echo "- hiq: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (modified tree)'), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "- command: $command"
echo "- evaluation: $(basename "$text"), $(field tokens "$out/eval-fp.log") tokens, full-precision ppl $(printf %.2f "$fp_ppl")"
((quick)) && echo "- --quick: a check of the script, not a measurement"
echo
echo "| config | seed | avg bits plan / fixed | measured_dloss | fixed_dloss | fell back | plan ppl | fixed ppl | plan better? |"
echo "|---|---:|---|---:|---:|---|---:|---:|---|"
failures=0
for config in "${configs[@]}"; do
  name=$(basename "$config" .yaml)
  tag=${name##*-}  # stories260k-w2 -> w2
  for s in $seeds; do
    dir=$out/$tag-s$s
    echo "plan_seeds.sh: $name seed $s: hiq plan (log $dir.plan.log)" >&2
    mpirun -np "$ranks" "$hiq" plan "$config" --output "$dir" --overwrite \
      --set calibration.fisher.seed="$s" --set calibration.cost.seed=$((100 + s)) \
      --set calibration.check.seed=$((200 + s)) ${sets[@]+"${sets[@]}"} \
      > "$dir.plan.log" 2>&1 || { cat "$dir.plan.log" >&2; exit 1; }
    eval_log "$dir.eval.log" --plan "$dir"
    eval_log "$dir.eval-fixed.log" --plan "$dir/fixed"
    plan_ppl=$(field ppl "$dir.eval.log")
    fixed_ppl=$(field ppl "$dir.eval-fixed.log")
    better=$(awk -v p="$plan_ppl" -v f="$fixed_ppl" 'BEGIN { print (p < f) ? "yes" : "NO" }')
    [[ $better == yes ]] || failures=$((failures + 1))
    printf '| %s | %s | %.4f / %.4f | %s | %s | %s | %.2f | %.2f | %s |\n' "$name" "$s" \
      "$(field avg_bits "$dir.eval.log")" "$(field avg_bits "$dir.eval-fixed.log")" \
      "$(field measured_dloss "$dir.plan.log")" "$(field fixed_dloss "$dir.plan.log")" \
      "$(field fell_back "$dir.plan.log")" "$plan_ppl" "$fixed_ppl" "$better"
  done
done
echo
if ((failures)); then
  echo "**$failures plan(s) not better than the fixed ratio at the same bits.**"
  exit 1
fi
echo "Every plan has a lower perplexity than its fixed ratio."
