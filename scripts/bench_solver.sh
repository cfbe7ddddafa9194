#!/usr/bin/env bash
# The global-solve table of docs/SOLVER.md, printed as markdown on stdout: build/bench/bench_solver
# on seeded synthetic plan problems of LLaMA-2-7B size (224 layers, 32 blocks x 21 pairs) and
# LLaMA-2-70B size (560 layers, 80 blocks), with mild or noisy pair terms, for the pareto path
# (3 seeds each, the mean of 3 runs) and the direct MILP at 7B size (seed 0, one run, cold with a
# 100 s limit and warm-started from the pareto plan with 60 s). Raw output (benchmark JSON) is
# kept in $HIQ_BENCH_OUT (default out/bench-solver).
#
#   scripts/bench_solver.sh           # about 5 minutes of one core (the MILP runs dominate)
#   scripts/bench_solver.sh --quick   # seconds: one pareto case, to check the script
#
# Options:
#   --quick          only BM_Pareto/shape:0/noise:0/seed:0
#   --filter REGEX   passed to bench_solver as --benchmark_filter (default: all cases)
#   --no-build       use the binary already in $HIQ_BUILD (default build/)
# Environment: HIQ_BUILD, HIQ_BENCH_OUT, HIQ_BUILD_LOCK (default /tmp/hiq-build.lock: builds share
# 2 cores with other engineers).
set -euo pipefail
cd "$(dirname "$0")/.."

build=1 filter="" command="scripts/bench_solver.sh $*"
while (($#)); do
  case $1 in
    --quick) filter='BM_Pareto/shape:0/noise:0/seed:0/' ;;
    --filter) shift; filter=${1:?--filter needs a regex} ;;
    --filter=*) filter=${1#--filter=} ;;
    --no-build) build=0 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench_solver.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

builddir=${HIQ_BUILD:-build}
out=${HIQ_BENCH_OUT:-out/bench-solver}
py=/usr/bin/python3  # Debian's, not a pyenv shim
bench=$builddir/bench/bench_solver
mkdir -p "$out"

if ((build)); then
  echo "bench_solver.sh: building bench_solver (log $out/build.log)" >&2
  flock "${HIQ_BUILD_LOCK:-/tmp/hiq-build.lock}" scripts/build.sh --target bench_solver \
    > "$out/build.log" 2>&1 || { tail -40 "$out/build.log" >&2; exit 1; }
fi
[[ -x $bench ]] || { echo "bench_solver.sh: $bench not built (HINT: drop --no-build)" >&2; exit 1; }

echo "# hiq global-solve benchmark"
echo
echo "- machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc --all) logical CPUs"
echo "- GLPK: $(dpkg-query -W -f='${Version}' libglpk40 2>/dev/null || echo unknown)"
echo "- hiq: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (modified tree)'), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "- command: $command"
echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

echo "bench_solver.sh: running $bench${filter:+ (filter $filter)}" >&2
"$bench" --benchmark_format=json ${filter:+"--benchmark_filter=$filter"} \
  > "$out/bench_solver.json" 2> "$out/bench_solver.log" ||
  { cat "$out/bench_solver.log" >&2; exit 1; }

"$py" - "$out/bench_solver.json" <<'PY'
import json, re, sys

every = json.load(open(sys.argv[1]))["benchmarks"]
failed = [r for r in every if r.get("error_occurred")]
runs = [r for r in every if r.get("run_type", "iteration") == "iteration"
        and not r.get("error_occurred")]
if not runs and not failed:
    sys.exit("bench_solver.sh: the filter selected no benchmark")
to_s = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
sizes = {"7B": "LLaMA-2-7B", "70B": "LLaMA-2-70B"}
print("| method | size | seed | seconds | status | gap | objective | detail |")
print("|---|---|---:|---:|---|---:|---:|---|")
for r in runs:
    method, shape, status, detail = r["label"].split("|", 3)
    seed = re.search(r"/seed:(\d+)", r["name"])
    if method == "milp":
        warm = re.search(r"/warm:(\d+)", r["name"]).group(1) == "1"
        limit = re.search(r"/limit_s:(\d+)", r["name"]).group(1)
        method = f"milp ({'warm' if warm else 'cold'}, limit {limit} s)"
    gap = r["gap"]
    gap_text = "0" if gap == 0 else ("unknown" if gap < 0 else f"{100 * gap:.3g}%")
    size, pairs = shape.split(", ")
    print(f"| {method} | {sizes.get(size, size)}, {pairs} | {seed.group(1) if seed else 0} "
          f"| {r['real_time'] * to_s[r['time_unit']]:.3f} | {status} | {gap_text} "
          f"| {r['objective']:.9g} | {detail} |")
for r in failed:  # a solve that produced no plan (e.g. a cold MILP at 70B size)
    print(f"| {r['name']} | - | - | {r['real_time'] * to_s[r['time_unit']]:.3f} | no plan "
          f"| - | - | {r['error_message']} |")
print()
for r in runs:
    if "pareto_objective" in r:
        rel = (r["objective"] - r["pareto_objective"]) / abs(r["pareto_objective"])
        print(f"- {r['name']}: objective {100 * rel:+.3g}% relative to the pareto optimum "
              f"{r['pareto_objective']:.9g}")
PY
