#!/usr/bin/env bash
# The estimator study of docs/PLAN.md, printed as markdown on stdout: for each config (default
# stories260K at W2 and W3), build/bench/bench_plan_study under mpirun (the correlation between
# predicted and measured loss change of random plans, the evaluations and seconds of each cost
# estimator x centre, one solve each), then `hiq eval --plan` on the six solved plans, the fixed
# ratio and full precision (perplexity on tinystories/valid-head30KB.txt); then the global-solve
# table of scripts/bench_solver.sh (synthetic LLaMA-2-7B and -70B instances) when it exists.
# Raw outputs (study JSON, plans, logs) are kept in $HIQ_BENCH_OUT (default out/bench-plan).
#
#   scripts/bench_plan.sh                # about 2 minutes + bench_solver.sh's ~4 minutes
#   scripts/bench_plan.sh --quick        # seconds: W2 only, 5 plans, small sets, no solver table
#
# The whole run (build and measurement) holds the shared build lock, so that no build competes
# with the timings; do not wrap it in `flock` yourself (that would deadlock: use --no-lock).
#
# Options:
#   --config FILE    a config to study (repeatable; default configs/stories260k-w2.yaml and -w3)
#   --set KEY=VALUE  a config override for every config (repeatable), e.g. --set cost.pairs=true
#   --plans N        random plans per config (default 100; the issue asks for at least 30)
#   --ranks P        mpirun -np P for the study and the evals (default 1)
#   --quick          W2 only, 5 plans, 16 Fisher and 8 cost/check sequences of 64 tokens
#   --no-solver      skip scripts/bench_solver.sh
#   --no-build       use the binaries already in $HIQ_BUILD (default build/)
#   --no-lock        do not take the build lock
# Environment: HIQ_DATA (scripts/env.sh), HIQ_BUILD, HIQ_BENCH_OUT, HIQ_BUILD_LOCK (default
# /tmp/hiq-build.lock).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

configs=() sets=() plans=100 ranks=1 quick=0 solver=1 build=1 lock=1 solver_failed=0
command="scripts/bench_plan.sh $*"
while (($#)); do
  case $1 in
    --config) shift; configs+=("${1:?--config needs a file}") ;;
    --set) shift; sets+=(--set "${1:?--set needs key=value}") ;;
    --plans) shift; plans=${1:?--plans needs a number} ;;
    --ranks) shift; ranks=${1:?--ranks needs a number} ;;
    --quick) quick=1 ;;
    --no-solver) solver=0 ;;
    --no-build) build=0 ;;
    --no-lock) lock=0 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench_plan.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if ((quick)); then
  ((${#configs[@]})) || configs=(configs/stories260k-w2.yaml)
  plans=5 solver=0
  sets+=(--set calibration.fisher.n_sequences=16 --set calibration.fisher.seq_len=64
         --set calibration.cost.n_sequences=8 --set calibration.cost.seq_len=64
         --set calibration.check.n_sequences=8 --set calibration.check.seq_len=64)
fi
((${#configs[@]})) || configs=(configs/stories260k-w2.yaml configs/stories260k-w3.yaml)

builddir=${HIQ_BUILD:-build}
out=${HIQ_BENCH_OUT:-out/bench-plan}
py=/usr/bin/python3  # Debian's, not a pyenv shim
hiq=$builddir/src/hiq
study=$builddir/bench/bench_plan_study
model=$HIQ_DATA/stories260K
text=$HIQ_DATA/text/tinystories/valid-head30KB.txt
mkdir -p "$out"

if ((lock)); then
  lockfile=${HIQ_BUILD_LOCK:-/tmp/hiq-build.lock}
  exec 9>>"$lockfile"
  echo "bench_plan.sh: waiting for $lockfile" >&2
  flock 9
fi
if ((build)); then
  echo "bench_plan.sh: building bench_plan_study and hiq (log $out/build.log)" >&2
  scripts/build.sh --target bench_plan_study hiq > "$out/build.log" 2>&1 ||
    { tail -40 "$out/build.log" >&2; exit 1; }
  # bench_solver belongs to the solver work; if it does not build, say so and skip its table.
  if ((solver)) && [[ -x scripts/bench_solver.sh ]]; then
    scripts/build.sh --target bench_solver > "$out/build-solver.log" 2>&1 || {
      tail -20 "$out/build-solver.log" >&2
      echo "bench_plan.sh: bench_solver did not build: no solver table" >&2
      solver=0 solver_failed=1
    }
  fi
fi
for bin in "$hiq" "$study"; do
  [[ -x $bin ]] || { echo "bench_plan.sh: $bin not built (HINT: drop --no-build)" >&2; exit 1; }
done

# ppl= of one `hiq eval` (with --plan DIR when given); the log is kept beside the plans.
eval_ppl() {
  local log=$1; shift
  mpirun -np "$ranks" "$hiq" eval --model "$model" --text "$text" "$@" > "$log" 2>&1 ||
    { cat "$log" >&2; return 1; }
  sed -n 's/.* ppl=\([^ ]*\).*/\1/p' "$log" | tail -1
}

echo "# hiq plan-stage study"
echo
echo "- machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc --all) logical CPUs"
echo "- hiq: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (modified tree)'), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "- command: $command"
echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
((quick)) && echo "- --quick: a check of the script, not a measurement"
echo

for config in "${configs[@]}"; do
  name=$(basename "$config" .yaml)
  dir=$out/$name
  mkdir -p "$dir"
  echo "bench_plan.sh: $name: bench_plan_study on $ranks rank(s) (log $dir/study.log)" >&2
  mpirun -np "$ranks" "$study" "$config" ${sets[@]+"${sets[@]}"} --plans "$plans" \
    --json "$dir/study.json" --plan-dir "$dir/plans" > "$dir/study.log" 2>&1 ||
    { cat "$dir/study.log" >&2; exit 1; }
  echo "bench_plan.sh: $name: hiq eval of full precision, the fixed ratio and 6 plans" >&2
  ppl=$(eval_ppl "$dir/eval-fp.log")
  echo "fp $ppl" > "$dir/ppl.txt"
  ppl=$(eval_ppl "$dir/eval-fixed.log" --plan "$dir/plans/loss-plan/fixed")
  echo "fixed $ppl" >> "$dir/ppl.txt"
  for plan in "$dir"/plans/*-*/; do
    plan=$(basename "$plan")
    ppl=$(eval_ppl "$dir/eval-$plan.log" --plan "$dir/plans/$plan")
    echo "$plan $ppl" >> "$dir/ppl.txt"
  done

  echo "## $name"
  echo
  echo "Command: \`$command\` (this config: \`mpirun -np $ranks $study $config${sets[*]:+ ${sets[*]}} --plans $plans\`)"
  echo
  "$py" - "$dir/study.json" "$dir/ppl.txt" <<'PY'
import json, sys

study = json.load(open(sys.argv[1]))
ppl = dict(line.split() for line in open(sys.argv[2]) if line.strip())
rp = study["random_plans"]
sizes = study["sets_size"]
print(f"- sets: Fisher {sizes['fisher']}, cost {sizes['cost']}, check {sizes['check']} sequences "
      f"(cost/check {sizes['seq_len']} tokens); budget {study['budget_avg_bits']:.4f} bits/weight")
print(f"- {rp['n']} random plans (seed {rp['seed']}; {rp['draws']} drawn, kept within "
      f"+-{100 * rp['bits_tolerance']:.0f}% of the budget's bits): avg bits "
      f"{min(rp['avg_bits']):.4f}..{max(rp['avg_bits']):.4f}, measured dloss "
      f"{min(rp['measured_dloss']):.4f}..{max(rp['measured_dloss']):.4f} nats/token "
      f"(check set); measuring all of them took {rp['measure_seconds']:.2f} s")
mb = rp["pearson_minus_bits"]
print(f"- baseline: correlation of (minus) avg bits alone with the measured dloss: "
      f"{'n/a' if mb is None else f'{mb:.3f}'}")
print(f"- full precision: ppl {float(ppl['fp']):.2f}; fixed ratio {study['fixed']['ratio']}: "
      f"avg bits {study['fixed']['avg_bits']:.4f}, dloss {study['fixed']['measured_dloss']:.4f} "
      f"(check), ppl {float(ppl['fixed']):.2f}")
print()
print("| estimator | centre | evaluations | seconds | s / evaluation | correlation (Pearson) "
      "| Spearman | bias | plan dloss (check) | plan ppl | plan avg bits |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
def num(v, fmt):
    return "n/a" if v is None else format(v, fmt)
for r in study["estimators"]:
    name = f"{r['estimator']}-{r['centre']}"
    per = r["seconds"] / r["evaluations"] if r["evaluations"] else None
    print(f"| {r['estimator']} | {r['centre']} | {r['evaluations']} | {r['seconds']:.2f} "
          f"| {num(per, '.4f')} | {num(r['pearson'], '.3f')} | {num(r['spearman'], '.3f')} "
          f"| {r['bias']:+.4f} | {r['plan_measured_dloss']:.4f} | {float(ppl[name]):.2f} "
          f"| {r['plan_avg_bits']:.4f} |")
print()
print(f"(study total {study['seconds_total']:.1f} s on {study['ranks']} rank(s))")
print()
PY
done

if ((solver)) && [[ -x scripts/bench_solver.sh ]]; then
  echo "bench_plan.sh: scripts/bench_solver.sh --no-build" >&2
  echo "## Global solve on synthetic LLaMA-2-7B and LLaMA-2-70B instances"
  echo
  # Its own header (machine, command) follows; drop its title line and the blank after it.
  scripts/bench_solver.sh --no-build | sed '1{/^# /{N;d}}'
elif ((solver_failed)); then
  echo "**The solver table is missing: bench_solver did not build (see $out/build-solver.log).**"
elif ((solver)); then
  echo "bench_plan.sh: scripts/bench_solver.sh not found: no solver table" >&2
fi
