#!/usr/bin/env bash
# Regenerates docs/RESULTS-quantize.md from scratch: `hiq quantize` of stories260K at the W2 and
# W3 budgets (configs/stories260k-w2.yaml, -w3.yaml) for calibration seeds s = 1 2 3 and the
# methods hiq, fixed_ratio (hybrid), lwc (LWC only), FP16 retention (fixed_ratio with
# quant.bits_high=16 at the b_H run's budget), gptq and rtn, each followed by
# `hiq eval --quantized` on tinystories/valid-head30KB.txt; plus the full-precision model once,
# and for each hiq run `hiq eval --plan` of its plan (the same ratios by round-to-nearest).
#
# Seeds, from s: calibration.fisher.seed=s, calibration.cost.seed=10+s,
# calibration.check.seed=20+s, calibration.reconstruction.seed=30+s, quantize.seed=s.
# Every run also gets --set quantize.steps=$STEPS (default 1280: 10 epochs of 128 sequences
# instead of OmniQuant's 40); everything else is the config's.
#
#   scripts/quantize_results.sh            # the whole table (~45 min on 2 cores), writes the doc
#   scripts/quantize_results.sh --quick    # a check of the script: W2+W3, seed 1, tiny sets
#
# Each run's output is out/results-quantize/<w2|w3>-s<seed>-<method>/ (HIQ_RESULTS_OUT), its
# command in <dir>.cmd, its log in <dir>.log, its evaluation in <dir>.eval.log. A run whose
# <dir>/model.h5 exists and whose recorded command equals the one it would run now is skipped
# (so an interrupted script resumes where it stopped); likewise its evaluation.
#
# Options:
#   --steps N          quantize.steps (default 1280)
#   --seeds "1 2 3"    the calibration seeds
#   --later "M ..."    methods run for the seeds after the first (default: all six), to save time
#   --ranks P          mpirun -np P (default 2)
#   --doc FILE         the markdown written at the end (default docs/RESULTS-quantize.md;
#                      with --quick: <out>/RESULTS-quantize.md)
#   --quick            seed 1, 16 steps, 16 Fisher / 8 cost, check, reconstruction sequences
#                      of 64 tokens, into out/results-quantize-quick: not a measurement
# Environment: HIQ_DATA (scripts/env.sh), HIQ_BUILD (default build), HIQ_RESULTS_OUT.
# The binary is not built here: build it first (scripts/build.sh --target hiq).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

steps=1280 seeds="1 2 3" ranks=2 quick=0 doc="" later=""
all_methods="fixed_ratio hiq lwc fp16 gptq rtn"
invocation="scripts/quantize_results.sh${*:+ $*}"
while (($#)); do
  case $1 in
    --steps) shift; steps=${1:?--steps needs a number} ;;
    --seeds) shift; seeds=${1:?--seeds needs a list} ;;
    --later) shift; later=${1:?--later needs a list of methods} ;;
    --ranks) shift; ranks=${1:?--ranks needs a number} ;;
    --doc) shift; doc=${1:?--doc needs a file} ;;
    --quick) quick=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "quantize_results.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
later=${later:-$all_methods}
for m in $later; do
  [[ " $all_methods " == *" $m "* ]] || { echo "quantize_results.sh: unknown method '$m' in --later" >&2; exit 2; }
done

hiq=${HIQ_BUILD:-build}/src/hiq
[[ -x $hiq ]] || { echo "quantize_results.sh: $hiq not built (scripts/build.sh --target hiq)" >&2; exit 1; }
text=$HIQ_DATA/text/tinystories/valid-head30KB.txt
model=$HIQ_DATA/stories260K
extra=()
if ((quick)); then
  out=${HIQ_RESULTS_OUT:-out/results-quantize-quick}
  doc=${doc:-$out/RESULTS-quantize.md}
  seeds=1 steps=16
  extra=(--set calibration.fisher.n_sequences=16 --set calibration.fisher.seq_len=64
         --set calibration.cost.n_sequences=8 --set calibration.cost.seq_len=64
         --set calibration.check.n_sequences=8 --set calibration.check.seq_len=64
         --set calibration.reconstruction.n_sequences=8 --set calibration.reconstruction.seq_len=64)
else
  out=${HIQ_RESULTS_OUT:-out/results-quantize}
  doc=${doc:-docs/RESULTS-quantize.md}
fi
mkdir -p "$out"
mpi=(mpirun --oversubscribe -np "$ranks")
# FP16 retention: candidate ratios small enough that one fits the b_H run's budget.
fp16_ratios="[0.001,0.002,0.003,0.005,0.0075,0.01,0.02]"

# A top-level value of a plan.json, exactly ("" if the file is missing).
plan_value() { [[ -f $2 ]] || return 0; python3 -c 'import json, sys; v = json.load(open(sys.argv[1]))[sys.argv[2]]; print(repr(v) if isinstance(v, float) else v)' "$2" "$1"; }
# The value of key=... on the last line of a file that has it ("" if none).
field() { [[ -f $2 ]] || return 0; { grep -oE "(^| )$1=[^ ]*" "$2" || true; } | tail -1 | sed 's/^ //' | cut -d= -f2-; }
quote() { local s="" a; for a in "$@"; do s+="${s:+ }$(printf %q "$a")"; done; printf '%s' "$s"; }
hms() { local t=${1%.*}; printf '%dm%02ds' $((t / 60)) $((t % 60)); }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

configs=(configs/stories260k-w2.yaml configs/stories260k-w3.yaml)
methods_for() { if [[ $1 == "${seeds%% *}" ]]; then echo "$all_methods"; else echo "$later"; fi; }

# The list of runs, in the order they are made: seed, then budget, then method (fixed_ratio
# first: FP16 retention takes its budget).
runs=()
for s in $seeds; do
  for config in "${configs[@]}"; do
    tag=$(basename "$config" .yaml); tag=${tag##*-}
    for m in $(methods_for "$s"); do runs+=("$tag $s $m"); done
  done
done
n_runs=${#runs[@]}

# runs a command unless its recorded command matches: run_step CMDFILE DONEFILE LOG -- CMD...
# Returns via $ran (1 if it ran) and $took (seconds).
# With $clean set, that directory is removed before the command runs.
ran=0 took=0 clean=""
run_step() {
  local cmdfile=$1 donefile=$2 log=$3; shift 4
  local cmd; cmd=$(quote "$@")
  if [[ -f $donefile && -f $cmdfile && $(cat "$cmdfile") == "$cmd" ]]; then
    ran=0 took=$(cat "$cmdfile.seconds" 2>/dev/null || echo 0)
    echo "skip (done): $cmd" >&2
    return 0
  fi
  rm -f "$cmdfile" "$cmdfile.seconds"
  [[ -z $clean ]] || rm -rf "$clean"
  echo "+ $cmd" >&2
  local t0; t0=$(now)
  "$@" > "$log" 2>&1 || { tail -30 "$log" >&2; echo "quantize_results.sh: failed (log $log)" >&2; exit 1; }
  took=$(since "$t0") ran=1
  printf '%s\n' "$cmd" > "$cmdfile"
  echo "$took" > "$cmdfile.seconds"
}

declare -A spent=() count=()
script_t0=$(now)
progress() {  # progress K LABEL SECONDS RAN (1 if the quantize step ran: only those estimate)
  local k=$1 label=$2 sec=$3 m=${2##* }
  if (($4)); then
    spent[$m]=$(awk -v a="${spent[$m]:-0}" -v b="$sec" 'BEGIN { print a + b }')
    count[$m]=$((${count[$m]:-0} + 1))
  fi
  # Time left: the mean of this script's measured runs of the same method, else of all methods.
  local left=0 j all_s=0 all_n=0 rm est
  for j in "${!spent[@]}"; do
    all_s=$(awk -v a="$all_s" -v b="${spent[$j]}" 'BEGIN { print a + b }'); all_n=$((all_n + count[$j]))
  done
  for ((j = k; j < n_runs; j++)); do
    rm=${runs[$j]##* }
    if ((${count[$rm]:-0})); then est=$(awk -v a="${spent[$rm]}" -v n="${count[$rm]}" 'BEGIN { print a / n }')
    elif ((all_n)); then est=$(awk -v a="$all_s" -v n="$all_n" 'BEGIN { print a / n }')
    else est=0; fi
    left=$(awk -v a="$left" -v b="$est" 'BEGIN { print a + b }')
  done
  local el; el=$(since "$script_t0")
  printf '[%d/%d] %s: %s%s; elapsed %s, about %s left\n' "$k" "$n_runs" "$label" \
    "$(hms "$sec")" "$( (($4)) || echo ' (recorded; quantize skipped)')" "$(hms "$el")" "$(hms "$left")" >&2
}

# Full precision, once.
fp_log=$out/fp.eval.log
run_step "$out/fp.eval.cmd" "$fp_log" "$fp_log" -- "${mpi[@]}" "$hiq" eval --model "$model" --text "$text"
[[ -n $(field ppl "$fp_log") ]] || { echo "quantize_results.sh: no ppl in $fp_log" >&2; exit 1; }

seed_sets() {
  local s=$1
  echo --set calibration.fisher.seed="$s" --set calibration.cost.seed=$((10 + s)) \
    --set calibration.check.seed=$((20 + s)) --set calibration.reconstruction.seed=$((30 + s)) \
    --set quantize.seed="$s"
}

k=0
for run in "${runs[@]}"; do
  read -r tag s m <<< "$run"
  config=configs/stories260k-$tag.yaml
  dir=$out/$tag-s$s-$m
  # shellcheck disable=SC2207
  sets=($(seed_sets "$s") --set quantize.steps="$steps" ${extra[@]+"${extra[@]}"})
  case $m in
    fp16)
      # the b_H run's budget, exactly (plan.json; the result line rounds it to 6 decimals)
      ref=$out/$tag-s$s-fixed_ratio/plan.json
      budget=$(plan_value budget_avg_bits "$ref")
      [[ -n $budget ]] || { echo "quantize_results.sh: no budget in $ref (the fixed_ratio run)" >&2; exit 1; }
      sets+=(--set quantize.method=fixed_ratio --set quant.bits_high=16 --set quant.budget_ratio=0
             --set quant.budget_bits="$budget" --set quant.ratios="$fp16_ratios") ;;
    *) sets+=(--set quantize.method="$m") ;;
  esac
  t0=$(now)
  clean=$dir
  run_step "$dir.cmd" "$dir/model.h5" "$dir.log" -- "${mpi[@]}" "$hiq" quantize "$config" --output "$dir" "${sets[@]}"
  clean="" qran=$ran qtook=$took
  ((qran)) && rm -f "$dir.eval.cmd" "$dir.rtn-plan.eval.cmd"  # a new model: evaluate it again
  [[ -n $(field avg_bits "$dir.log") ]] || { echo "quantize_results.sh: no result line in $dir.log" >&2; exit 1; }
  run_step "$dir.eval.cmd" "$dir.eval.log" "$dir.eval.log" -- "${mpi[@]}" "$hiq" eval --quantized "$dir" --text "$text"
  eran=$ran etook=$took
  if [[ $m == hiq ]]; then  # the same plan by round-to-nearest, no reconstruction (1 s)
    run_step "$dir.rtn-plan.eval.cmd" "$dir.rtn-plan.eval.log" "$dir.rtn-plan.eval.log" -- \
      "${mpi[@]}" "$hiq" eval --model "$model" --text "$text" --plan "$dir"
    ((ran)) && etook=$(awk -v a="$etook" -v b="$took" 'BEGIN { print a + b }')
    eran=$((eran || ran))
  fi
  k=$((k + 1))
  total=$(awk -v a="$qtook" -v b="$etook" 'BEGIN { print a + b }')
  progress "$k" "$tag seed $s $m" "$total" "$qran"
  echo "    avg_bits=$(field avg_bits "$dir.eval.log") ppl=$(field ppl "$dir.eval.log") (quantize $(hms "$qtook"), eval $(hms "$etook"))" >&2
done

# ---------------------------------------------------------------- the markdown, from the logs
label() {
  case $1 in
    hiq) echo "hiq (optimised ratios, hybrid)" ;;
    fixed_ratio) echo "fixed ratio (hybrid)" ;;
    lwc) echo "fixed ratio, LWC only" ;;
    fp16) echo "FP16 retention + LWC" ;;
    gptq) echo "fixed ratio, GPTQ" ;;
    rtn) echo "fixed ratio, RTN" ;;
    rtn-plan) echo "hiq's plan, RTN (no reconstruction)" ;;
  esac
}
evallog() { if [[ $3 == rtn-plan ]]; then echo "$out/$1-s$2-hiq.rtn-plan.eval.log"; else echo "$out/$1-s$2-$3.eval.log"; fi; }
ppl_of() { field ppl "$(evallog "$@")"; }
bits_of() { field avg_bits "$(evallog "$@")"; }
fmt() { if [[ -n $1 ]]; then printf "%.${2:-2}f" "$1"; else printf 'not run'; fi; }
# holds A B: "yes (a < b)" / "**no** (a >= b)" / "not run"
holds() {
  if [[ -z $1 || -z $2 ]]; then echo "not run"; return; fi
  awk -v a="$1" -v b="$2" 'BEGIN { if (a < b) printf "yes (%.2f < %.2f)", a, b; else printf "**no** (%.2f >= %.2f)", a, b }'
}

blas=$(field blas_core "$fp_log")
cpu=$(grep -m1 "model name" /proc/cpuinfo | sed 's/^model name[[:space:]]*:[[:space:]]*//')
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src include 2>/dev/null || rev="$rev (src/include modified)"
ntok=$(field tokens "$fp_log")
nwin=$(field windows "$fp_log")
seq_len=$(field seq_len "$fp_log")
fp_ppl=$(field ppl "$fp_log")
done_runs=0
for run in "${runs[@]}"; do
  read -r tag s m <<< "$run"
  [[ -n $(ppl_of "$tag" "$s" "$m") ]] && done_runs=$((done_runs + 1))
done
wall=$(since "$script_t0")

show_methods="hiq fixed_ratio lwc fp16 gptq rtn rtn-plan"
n_seeds=$(echo $seeds | wc -w)
tmp=$doc.tmp.$$
mkdir -p "$(dirname "$doc")"
{
echo "# Results: \`hiq quantize\` on stories260K, every method at the same budget"
echo
echo "<!-- Generated by $invocation: do not edit; every number below comes from its run. -->"
echo
echo "Perplexity of the packed model (\`hiq eval --quantized\`) on $(basename "$text") ($ntok tokens, $nwin windows of $seq_len), at the W2 budget (configs/stories260k-w2.yaml: b_L = 2, b_H = 3, groups of 32, the bits of a fixed 10% ratio) and the W3 budget (configs/stories260k-w3.yaml: 3/4 bits), for calibration seeds $(echo $seeds | sed 's/ /, /g')."
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); hiq $rev; $ranks MPI ranks"
echo "- CPU: $cpu ($(nproc --all) logical CPUs); BLAS core: $blas"
echo "- full precision: ppl $(fmt "$fp_ppl" 4)"
echo "- runs: $done_runs of $n_runs measured$( ((done_runs < n_runs)) && echo ' (**partial**: the missing cells say "not run")')"
if ((quick)); then
  echo "- **--quick**: tiny calibration sets and $steps steps, a check of the script, not a measurement"
fi
echo
echo "**Reduced reconstruction schedule.** Every run uses \`quantize.steps=$steps\` training steps per block, batch 1: $(awk -v s="$steps" 'BEGIN { printf "%g", s / 128 }') epochs of the 128 reconstruction sequences instead of OmniQuant's 40 epochs (5120 steps, the config's default), to fit the time on this 2-core machine. All other keys are the configs' values."
if [[ $later != "$all_methods" ]]; then
  echo "Seeds after the first ran only: $later."
fi
echo
echo "**Methods.** Every method except hiq quantizes the fixed ratio's channels (the largest candidate ratio whose total bits, that ratio in every layer, fit the budget; channels by Fisher score) at the same budget (docs/CONFIG.md, \`quantize.method\`): *hiq* = the plan's per-layer ratios + hybrid reconstruction (AdaRound on the high-impact columns, LWC on the rest); *fixed ratio (hybrid)* = \`fixed_ratio\`; *LWC only* = \`lwc\` (LWC on the low columns, RTN on the high ones); *FP16 retention + LWC* = \`fixed_ratio\` with \`quant.bits_high=16\` (the high columns kept in FP16), with \`quant.budget_bits\` set to the budget of the b_H fixed-ratio run (its plan.json's budget_avg_bits, exactly) and \`quant.ratios=$fp16_ratios\`, since an FP16 column costs 16 bits a weight; FP16 retention lands below the budget (its avg_bits columns show where, and the note after the orderings says why); *GPTQ* and *RTN* on the fixed ratio."
echo
echo "**Seeds.** Seed s sets calibration.fisher.seed=s, calibration.cost.seed=10+s, calibration.check.seed=20+s, calibration.reconstruction.seed=30+s and quantize.seed=s."
echo
echo "avg_bits is what \`hiq eval --quantized\` reads back from the stored layers (codes, FP16 scales, zeros, channel indices; docs/BITS.md)."
for config in "${configs[@]}"; do
  tag=$(basename "$config" .yaml); tag=${tag##*-}
  budget=$(plan_value budget_avg_bits "$out/$tag-s${seeds%% *}-fixed_ratio/plan.json")
  echo
  echo "## ${tag^^}: $config, budget $(fmt "$budget" 6) bits"
  echo
  hdr="| method |" sep="|---|"
  for s in $seeds; do hdr+=" avg_bits s$s | ppl s$s |"; sep+="---:|---:|"; done
  echo "$hdr ppl mean | ppl min-max |"
  echo "$sep---:|---|"
  for m in $show_methods; do
    row="| $(label "$m") |" vals=()
    for s in $seeds; do
      p=$(ppl_of "$tag" "$s" "$m")
      row+=" $(fmt "$(bits_of "$tag" "$s" "$m")" 4) | $(fmt "$p" 2) |"
      [[ -n $p ]] && vals+=("$p")
    done
    if ((${#vals[@]})); then
      row+=$(printf '%s\n' "${vals[@]}" | awk '{ s += $1; if (NR == 1 || $1 < lo) lo = $1; if (NR == 1 || $1 > hi) hi = $1 }
        END { printf " %.2f (n=%d) | %.2f-%.2f |", s / NR, NR, lo, hi }')
    else
      row+=" not run | not run |"
    fi
    echo "$row"
  done
  row="| full precision | 32 | $(fmt "$fp_ppl" 2) |"
  for ((j = 1; j < n_seeds; j++)); do row+=" | |"; done
  echo "$row | |"
  # the FP16 runs' fixed ratio, from their plan lines
  fr=""
  for s in $seeds; do
    r=$(plan_value fixed_ratio "$out/$tag-s$s-fp16/plan.json")
    [[ -n $r ]] && fr+="${fr:+, }s$s: $r"
  done
  [[ -n $fr ]] && { echo; echo "FP16 retention's fixed ratio (the largest of its candidates that fits): $fr."; }
done

echo
echo "The last row is not a method of \`hiq quantize\`: it is \`hiq eval --plan\` of the hiq run's plan, i.e. hiq's channels and ratios by round-to-nearest, to compare with *fixed ratio, RTN* (the plan stage's own comparison, docs/PLAN.md)."
echo
echo "## Block-output MSE of the reconstruction"
echo
echo "\`hiq quantize\`'s rtn_mse / final_mse: the sum over the blocks of the block-output MSE on the reconstruction sequences, by round-to-nearest and after the method (the quantity the reconstruction minimises; for rtn they are equal)."
for config in "${configs[@]}"; do
  tag=$(basename "$config" .yaml); tag=${tag##*-}
  echo
  hdr="| ${tag^^} |" sep="|---|"
  for s in $seeds; do hdr+=" s$s rtn_mse / final_mse |"; sep+="---:|"; done
  echo "$hdr"; echo "$sep"
  for m in $show_methods; do
    [[ $m == rtn-plan ]] && continue
    row="| $(label "$m") |"
    for s in $seeds; do
      l=$out/$tag-s$s-$m.log
      r=$(field rtn_mse "$l") f=$(field final_mse "$l")
      if [[ -n $r ]]; then row+=" $(fmt "$r" 4) / $(fmt "$f" 4) |"; else row+=" not run |"; fi
    done
    echo "$row"
  done
done
echo
echo "## The orderings, as measured"
echo
echo "Lower perplexity is better; \"yes\" means the ordering holds for that budget and seed."
echo
echo "| budget | seed | (a) hiq < fixed ratio (both hybrid) | (b) fixed-ratio hybrid < LWC only | (c) fixed-ratio hybrid < FP16 retention |"
echo "|---|---:|---|---|---|"
declare -A fails=() tested=()
n_afail=0 a_rtn_win=0 a_mse_worse=0 a_rtnmse_worse=0 n_c=0 c_lower=0
for config in "${configs[@]}"; do
  tag=$(basename "$config" .yaml); tag=${tag##*-}
  for s in $seeds; do
    f=$(ppl_of "$tag" "$s" fixed_ratio)
    a=$(holds "$(ppl_of "$tag" "$s" hiq)" "$f")
    b=$(holds "$f" "$(ppl_of "$tag" "$s" lwc)")
    c=$(holds "$f" "$(ppl_of "$tag" "$s" fp16)")
    fb=$(bits_of "$tag" "$s" fp16) hb=$(bits_of "$tag" "$s" fixed_ratio)
    [[ -n $fb && -n $hb ]] && c+="; bits $(fmt "$hb" 4) vs $(fmt "$fb" 4)"
    # facts behind the explanations below
    if [[ $a == \*\*no* ]]; then
      n_afail=$((n_afail + 1))
      rp=$(ppl_of "$tag" "$s" rtn-plan) rr=$(ppl_of "$tag" "$s" rtn)
      [[ -n $rp && -n $rr ]] && awk -v a="$rp" -v b="$rr" 'BEGIN { exit !(a < b) }' && a_rtn_win=$((a_rtn_win + 1))
      mh=$(field final_mse "$out/$tag-s$s-hiq.log") mf=$(field final_mse "$out/$tag-s$s-fixed_ratio.log")
      awk -v a="$mh" -v b="$mf" 'BEGIN { exit !(a > b) }' && a_mse_worse=$((a_mse_worse + 1))
      rh=$(field rtn_mse "$out/$tag-s$s-hiq.log") rf=$(field rtn_mse "$out/$tag-s$s-fixed_ratio.log")
      awk -v a="$rh" -v b="$rf" 'BEGIN { exit !(a > b) }' && a_rtnmse_worse=$((a_rtnmse_worse + 1))
    fi
    if [[ -n $fb && -n $hb ]]; then
      n_c=$((n_c + 1))
      awk -v a="$fb" -v b="$hb" 'BEGIN { exit !(a < b) }' && c_lower=$((c_lower + 1))
    fi
    for x in a b c; do
      v=${!x}
      [[ $v == "not run" ]] && continue
      tested[$x]=$((${tested[$x]:-0} + 1))
      [[ $v == yes* ]] || fails[$x]="${fails[$x]:-}${fails[$x]:+, }${tag^^} seed $s"
    done
    echo "| ${tag^^} | $s | $a | $b | $c |"
  done
done
echo
declare -A names=([a]="(a) hiq < fixed ratio" [b]="(b) fixed-ratio hybrid < LWC only" [c]="(c) fixed-ratio hybrid < FP16 retention")
for x in a b c; do
  if [[ -z ${tested[$x]:-} ]]; then echo "- ${names[$x]}: not measured."
  elif [[ -z ${fails[$x]:-} ]]; then echo "- ${names[$x]}: holds in all ${tested[$x]} measured cases."
  else echo "- ${names[$x]}: **does not hold** for ${fails[$x]} (of ${tested[$x]} measured cases)."; fi
done
if ((c_lower)); then
  echo
  echo "**(c) is not at exactly the same bits.** In $c_lower of the $n_c measured cases FP16 retention's achieved avg_bits are below the b_H fixed ratio's (the (c) column gives both): no single ratio of FP16 columns lands on the budget here: the fixed ratio is the largest candidate whose total bits fit the budget, and the next larger candidate, the first to give this model's 64-column layers a second FP16 column, costs more than the budget (docs/BITS.md), so the 64-column layers keep one FP16 column each. (c) therefore compares against a cheaper model; it is the closest to \"the same bits\" a fixed FP16 ratio reaches."
fi
if [[ -n ${fails[*]:-} ]]; then
  echo
  echo "### Where an ordering does not hold"
  if [[ -n ${fails[a]:-} ]]; then
    echo
    line="**(a) does not hold** for ${fails[a]}. hiq's plan is chosen by the plan stage from the loss changes of round-to-nearest quantization (cost.mode loss around the operating point, docs/PLAN.md); the reconstruction that follows is no part of the objective the plan minimises."
    if ((a_rtn_win == n_afail)); then
      line+=" By round-to-nearest the plan does beat the fixed ratio in every one of these cases (rows *hiq's plan, RTN* and *fixed ratio, RTN*), so the plan's advantage is lost in the reconstruction."
    elif ((a_rtn_win)); then
      line+=" By round-to-nearest the plan beats the fixed ratio in $a_rtn_win of these $n_afail cases (rows *hiq's plan, RTN* and *fixed ratio, RTN*)."
    fi
    if ((a_mse_worse)); then
      line+=" In $a_mse_worse of them the hybrid reconstruction also ends at a higher block-output MSE on hiq's channels than on the fixed ratio's (final_mse above)"
      if ((a_rtnmse_worse)); then line+=", and in $a_rtnmse_worse hiq's channels have the higher block-output MSE already by RTN (rtn_mse): the plan buys end-to-end loss with block-local error, which is what the reconstruction then works on"; fi
      line+="."
    fi
    lo_hi=$(for s in $seeds; do for config in "${configs[@]}"; do
      t=$(basename "$config" .yaml); t=${t##*-}; j=$out/$t-s$s-hiq/plan.json
      [[ -f $j ]] && python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); lo = min(d["ratios"]); print(sum(1 for l in d["layers"] if l["ratio"] == lo), len(d["layers"]))' "$j"
    done; done | awk 'NR == 1 || $1 < lo { lo = $1 } NR == 1 || $1 > hi { hi = $1 } { n = $2 } END { if (NR) printf " (the hiq plans here put %d-%d of their %d layers at the smallest candidate ratio)", lo, hi, n }')
    line+=" Our best explanation: the reconstruction removes most of the error the plan was chosen to avoid (compare each RTN row with the hybrid rows), and how much it removes differs from layer to layer in a way the RTN cost terms cannot see. The plan moves high-impact channels between layers$lo_hi, so the hybrid has fewer AdaRound columns in those layers; after reconstruction that reallocation no longer pays, and the uniform ratio's even spread of AdaRound columns does as well or better. The reconstruction schedule is also reduced ($steps steps per block). Cost terms measured after reconstruction would test this; nothing was tuned to make (a) hold."
    echo "$line"
  fi
  if [[ -n ${fails[b]:-} ]]; then
    echo
    echo "**(b) does not hold** for ${fails[b]}. The hybrid and LWC only differ in the high-impact columns alone (AdaRound instead of RTN; LWC on the rest in both); with $steps steps AdaRound's rounding anneals quickly, and the high part of a layer here is a few columns under one scale per row, where RTN can already be close to the best rounding; so the hybrid's gain over LWC only is small and can change sign with the calibration sets (compare the size of the difference with each row's spread over the seeds in the tables above). We have no repeated runs at one seed to measure the reconstruction's own noise."
  fi
  if [[ -n ${fails[c]:-} ]]; then
    echo
    echo "**(c) does not hold** for ${fails[c]}. FP16 retention keeps its few columns exactly, and here that beats more columns at b_H with the hybrid reconstruction, even at the bits it reaches."
  fi
fi

echo
echo "## Wall time per run"
echo
echo "Seconds of wall time as recorded when each step ran (the machine is shared, so these include contention)."
echo
echo "| run | quantize s | eval s |"
echo "|---|---:|---:|"
echo "| full precision eval | | $(cat "$out/fp.eval.cmd.seconds" 2>/dev/null || echo '') |"
for run in "${runs[@]}"; do
  read -r tag s m <<< "$run"
  d=$out/$tag-s$s-$m
  [[ -f $d.cmd.seconds ]] || continue
  echo "| ${tag^^} seed $s $m | $(cat "$d.cmd.seconds") | $(cat "$d.eval.cmd.seconds" 2>/dev/null || echo '') |"
done
echo
recorded=$(cat "$out"/*.cmd.seconds 2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s }')
echo "The recorded steps add up to $(hms "$recorded") of wall time; this invocation of the script took $(hms "$wall") (a step whose output was already there is skipped and costs nothing)."

echo
echo "## Commands"
echo
echo "Run from the repository root after \`source scripts/env.sh\` (HIQ_DATA=$HIQ_DATA):"
echo
echo '```'
echo "$invocation"
echo
cat "$out/fp.eval.cmd"
for run in "${runs[@]}"; do
  read -r tag s m <<< "$run"
  d=$out/$tag-s$s-$m
  [[ -f $d.cmd ]] && cat "$d.cmd"
  [[ -f $d.eval.cmd ]] && cat "$d.eval.cmd"
  [[ -f $d.rtn-plan.eval.cmd ]] && cat "$d.rtn-plan.eval.cmd"
done
echo '```'
} > "$tmp"
mv "$tmp" "$doc"
echo "quantize_results.sh: wrote $doc ($done_runs of $n_runs runs) in $(hms "$wall")" >&2
