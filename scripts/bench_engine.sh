#!/usr/bin/env bash
# The engine tables of docs/PERFORMANCE.md, printed as markdown on stdout:
#   1. build/bench/bench_llama (sgemm peak, one LLaMA-2-7B block, the real stories260K):
#      ms per iteration, tokens/s, GFLOP/s and % of the measured sgemm peak;
#   2. `hiq eval` under mpirun on P ranks: peak resident memory of the largest rank, bytes sent
#      between ranks per window, and the nll (which must not change with P).
# Raw outputs (benchmark JSON, eval logs) are kept in $HIQ_BENCH_OUT (default out/bench-engine).
#
#   scripts/bench_engine.sh             # everything; minutes of both cores: run it on a quiet
#                                       # machine, the numbers are only as quiet as the machine
#   scripts/bench_engine.sh --quick     # seconds: the smallest cases only, to check the script
#
# Options:
#   --quick          only BM_Stories260K at T=256 and the stories260K eval at P = 1, 2;
#                    no synthetic 7B model. (bench_llama.cpp pins each benchmark's MinTime,
#                    which overrides --benchmark_min_time, so a short run needs a filter.)
#   --filter REGEX   passed to bench_llama as --benchmark_filter (default: all cases)
#   --no-7b          skip the synthetic 2-layer LLaMA-2-7B eval (writes ~1.3 GB to /tmp)
#   --no-eval        skip the whole second table
#   --no-build       use the binaries already in $HIQ_BUILD (default build/)
# Environment: HIQ_DATA (scripts/env.sh), HIQ_BUILD, HIQ_SYNTH_DIR (default /tmp/hiq-synth-7b),
# HIQ_BUILD_LOCK (default /tmp/hiq-build.lock: builds share 2 cores with other engineers).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

quick=0 with_7b=1 with_eval=1 build=1 filter=""
while (($#)); do
  case $1 in
    --quick) quick=1 ;;
    --filter) shift; filter=${1:?--filter needs a regex} ;;
    --filter=*) filter=${1#--filter=} ;;
    --no-7b) with_7b=0 ;;
    --no-eval) with_eval=0 ;;
    --no-build) build=0 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench_engine.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if ((quick)); then
  filter=${filter:-'BM_Stories260K/T:256/'}
  with_7b=0
fi

builddir=${HIQ_BUILD:-build}
out=${HIQ_BENCH_OUT:-out/bench-engine}
synth_dir=${HIQ_SYNTH_DIR:-/tmp/hiq-synth-7b}
py=/usr/bin/python3  # Debian's, not a pyenv shim
hiq=$builddir/src/hiq
bench=$builddir/bench/bench_llama
model=$HIQ_DATA/stories260K
text=$HIQ_DATA/text/tinystories/valid-head30KB.txt
mkdir -p "$out"

if ((build)); then
  echo "bench_engine.sh: building bench_llama and hiq (log $out/build.log)" >&2
  flock "${HIQ_BUILD_LOCK:-/tmp/hiq-build.lock}" scripts/build.sh --target bench_llama hiq \
    > "$out/build.log" 2>&1 || { tail -40 "$out/build.log" >&2; exit 1; }
fi
for f in "$bench" "$hiq"; do
  [[ -x $f ]] || { echo "bench_engine.sh: $f not built (HINT: drop --no-build)" >&2; exit 1; }
done
[[ -f $model/model.safetensors && -f $text ]] ||
  { echo "bench_engine.sh: no stories260K model or text under HIQ_DATA=$HIQ_DATA" >&2; exit 1; }

# --- the machine ------------------------------------------------------------------------------
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
cpus=$(nproc --all)
cores=$(lscpu -p=CORE 2>/dev/null | grep -v '^#' | sort -u | wc -l)
blas=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package} ${Version}\n' 'libopenblas0*' 2>/dev/null |
  awk '$1 == "ii" { printf "%s%s %s", sep, $2, $3; sep = ", " }')
mem=$(free -g | awk '/^Mem:/ { print $2 }')
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || rev="$rev (modified tree)"
echo "# hiq engine benchmark"
echo
echo "- machine: $cpu, $cores cores ($cpus logical CPUs), $mem GiB"
echo "- OpenBLAS: ${blas:-not found by dpkg}"
echo "- hiq: $rev, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
  "(above ~0.1 the numbers are not from a quiet machine)"
((quick)) && echo "- **--quick run: a check of the script, not a measurement**"
echo

# --- 1. engine speed --------------------------------------------------------------------------
echo "bench_engine.sh: running $bench${filter:+ (filter $filter)}" >&2
"$bench" --benchmark_format=json ${filter:+"--benchmark_filter=$filter"} \
  > "$out/bench_llama.json" 2> "$out/bench_llama.log" ||
  { cat "$out/bench_llama.log" >&2; exit 1; }

"$py" - "$out/bench_llama.json" <<'PY'
import json, re, sys

report = json.load(open(sys.argv[1]))
runs = report["benchmarks"]
if not runs:
    sys.exit("bench_engine.sh: the filter selected no benchmark")
# With --benchmark_repetitions the median aggregate stands for the case, else the one run.
if any(r.get("aggregate_name") == "median" for r in runs):
    runs = [r for r in runs if r.get("aggregate_name") == "median"]
else:
    runs = [r for r in runs if r.get("run_type", "iteration") == "iteration"]

to_ms = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}
peak = next((r["GFLOPs"] / 1e9 for r in runs if r["name"].startswith("BM_SgemmPeak")), None)
cases = {"BM_SgemmPeak": "sgemm 2048x4096x4096 (peak)",
         "BM_Llama2_7bBlock": "LLaMA-2-7B block (synthetic)",
         "BM_Stories260K": "stories260K, whole model"}

print("## Engine speed (bench/bench_llama.cpp)")
print()
print("| case | T | pass | ms / iteration | tokens/s | GFLOP/s | % of sgemm peak |")
print("|---|---:|---|---:|---:|---:|---:|")
for r in runs:
    base = r["name"].split("/")[0]
    t = re.search(r"/T:(\d+)", r["name"])
    bwd = re.search(r"/backward:(\d+)", r["name"])
    ms = r["real_time"] * to_ms[r["time_unit"]]
    tok = r.get("tokens_per_s")
    # The counter is a rate in FLOP/s (kIs1000 only changes how the console prints it).
    gf = r["GFLOPs"] / 1e9 if "GFLOPs" in r else None
    pct = f"{100 * gf / peak:.0f}%" if gf is not None and peak else "n/a"
    print(f"| {cases.get(base, base)} | {t.group(1) if t else '-'} "
          f"| {'-' if not bwd else ('fwd+bwd' if bwd.group(1) != '0' else 'fwd')} "
          f"| {ms:.1f} | {f'{tok:,.0f}' if tok is not None else '-'} "
          f"| {f'{gf:.1f}' if gf is not None else '-'} | {pct} |")
print()
if peak is None:
    print("(BM_SgemmPeak was not run, so there is no peak to compare with.)")
    print()
PY

# --- 2. memory and traffic of the rank pipeline -------------------------------------------------
((with_eval)) || exit 0
runs_file=$out/eval-runs.txt
: > "$runs_file"
# One eval on P ranks; its last line (key=value fields) is appended to $runs_file.
eval_on() {  # LABEL P MODEL [extra eval flags]
  local label=$1 p=$2 m=$3 log="$out/eval-$1-np$2.log"
  shift 3
  echo "bench_engine.sh: mpirun -np $p hiq eval ($label)" >&2
  mpirun --oversubscribe -np "$p" "$hiq" eval --model "$m" --text "$text" "$@" > "$log" 2>&1 ||
    { cat "$log" >&2; exit 1; }
  echo "model=$label $(tail -1 "$log")" >> "$runs_file"
}

if ((quick)); then stories_ranks=(1 2); else stories_ranks=(1 2 3); fi
for p in "${stories_ranks[@]}"; do eval_on stories260K "$p" "$model"; done
if ((with_7b)); then
  echo "bench_engine.sh: hiq synth --shape llama2-7b --layers 2 -> $synth_dir" >&2
  "$hiq" synth --shape llama2-7b --layers 2 --seed 1 --out "$synth_dir" \
    --tokenizer-from "$model" > "$out/synth.log" 2>&1 || { cat "$out/synth.log" >&2; exit 1; }
  for p in 1 2; do eval_on llama2-7b-2layers "$p" "$synth_dir" --seq-len 512 --max-windows 2; done
fi

"$py" - "$runs_file" <<'PY'
import sys

rows = [dict(f.split("=", 1) for f in line.split() if "=" in f) for line in open(sys.argv[1])]
print("## Rank pipeline: memory and traffic (`hiq eval` under mpirun)")
print()
print("| model | ranks | seq_len x windows | peak RSS, largest rank (MiB) "
      "| bytes between ranks per window | nll |")
print("|---|---:|---|---:|---:|---|")
for r in rows:
    print(f"| {r['model']} | {r['ranks']} | {r['seq_len']} x {r['windows']} "
          f"| {float(r['max_rss_mib']):,.1f} | {float(r['bytes_per_window']):,.0f} | {r['nll']} |")
print()
for model in dict.fromkeys(r["model"] for r in rows):
    nlls = {r["nll"] for r in rows if r["model"] == model}
    print(f"- {model}: nll {'identical' if len(nlls) == 1 else 'DIFFERS'} across rank counts")
PY
