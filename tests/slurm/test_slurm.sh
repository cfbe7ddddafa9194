#!/usr/bin/env bash
# The job scripts under a real Slurm: starts a single-node Slurm of its own
# (scripts/slurm-local.sh, in a temporary directory, stopped at the end whatever happens),
# submits jobs/*.sbatch with sbatch and compares what they wrote with the same run under mpirun.
#   tests/slurm/test_slurm.sh quantize HIQ_BINARY    # quantize.sbatch == mpirun; eval.sbatch too
#   tests/slurm/test_slurm.sh timelimit HIQ_BINARY   # a job past its limit; the rerun == mpirun
# A missing piece (not root, no Slurm, too few CPUs) fails the test and says what is missing.
set -euo pipefail

scenario=${1:?usage: test_slurm.sh quantize|timelimit HIQ_BINARY}
hiq=${2:?usage: test_slurm.sh quantize|timelimit HIQ_BINARY}
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/scripts/env.sh"

work=$(mktemp -d /tmp/hiq-slurm-test.XXXXXX)
# Its own directory and ports, so that a Slurm started by hand (default port 16817) is left alone.
export HIQ_SLURM_DIR=$work/slurm HIQ_SLURM_PORT=${HIQ_SLURM_TEST_PORT:-16837}
export SLURM_CONF=$HIQ_SLURM_DIR/slurm.conf HIQ_BIN=$hiq
started=0

cleanup() {
  local status=$?
  if ((status != 0)); then
    echo "---- job logs and Slurm logs (the test failed)"
    for f in "$work"/*.out "$HIQ_SLURM_DIR"/log/*.log; do
      [[ -f "$f" ]] && { echo "== $f"; tail -25 "$f"; }
    done
  fi
  ((started)) && "$root/scripts/slurm-local.sh" stop || true
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

((EUID == 0)) || fail "needs root: slurmd starts the jobs' processes (CI runs as root)"
for tool in munged slurmctld slurmd sbatch scontrol mpirun; do
  command -v "$tool" > /dev/null || fail "$tool not installed: run scripts/deps.sh"
done
[[ -x "$hiq" ]] || fail "no hiq binary at $hiq"
(($(nproc) >= 2)) || fail "the jobs ask for 2 tasks of 1 CPU; this machine has $(nproc)"

# The tiny model, short settings (seconds, not minutes); `steps` sets how long a job runs.
config=$root/configs/stories260k-w2.yaml
small() {
  echo --set calibration.fisher.n_sequences=8 --set calibration.fisher.seq_len=64 \
    --set calibration.cost.n_sequences=6 --set calibration.cost.seq_len=48 \
    --set calibration.check.n_sequences=6 --set calibration.check.seq_len=48 --set cost.refine=1 \
    --set calibration.reconstruction.n_sequences=8 --set calibration.reconstruction.seq_len=64 \
    --set quantize.steps="$1"
}
text=$HIQ_DATA/text/tinystories/sample.txt

# `hiq digest`: one sha256 per layer and tensor and one for the model, whatever the shard layout.
digest() {
  [[ -f "$1/model.h5" ]] || fail "$1 has no model.h5: the run did not complete"
  "$hiq" digest "$1"
}

field() {  # field KEY LINE: the value of key=value in the line
  sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<< "$2"
}

# Prints "STATE EXITCODE RUNTIME" of a job once it has ended; fails after TIMEOUT seconds. Polls
# scontrol (no slurmdbd, so no sacct; finished jobs stay visible for MinJobAge = 600 s).
wait_job() {
  local id=$1 timeout=$2 deadline=$((SECONDS + $2)) info state
  while :; do
    info=$(scontrol show job --oneliner "$id") || fail "scontrol does not know job $id"
    state=$(field JobState "$info")
    case "$state" in
      PENDING | CONFIGURING | RUNNING | COMPLETING | SUSPENDED) ;;
      *)
        echo "$state $(field ExitCode "$info") $(field RunTime "$info")"
        return 0
        ;;
    esac
    if ((SECONDS >= deadline)); then
      scancel "$id" || true
      fail "job $id still $state after ${timeout} s ($(field Reason "$info"))"
    fi
    sleep 1
  done
}

submit() {  # submit SBATCH_OPTIONS... -- SCRIPT ARGS...: prints the job id
  (cd "$root" && sbatch --parsable --output="$work/%x-%j.out" "$@") | cut -d';' -f1
}

"$root/scripts/slurm-local.sh" start > /dev/null
started=1
echo "slurm: $(sinfo --noheader --format='%P %D %c %m %T') (partition nodes cpus memory state)"

case "$scenario" in
  quantize)
    # quantize.sbatch on 2 tasks writes the model mpirun -np 2 writes (hiq digest).
    job=$(submit --ntasks=2 jobs/quantize.sbatch "$config" --output "$work/out-slurm" $(small 40))
    mpirun -np 2 "$hiq" --threads 1 quantize "$config" --output "$work/out-mpi" $(small 40) \
      > "$work/mpirun-quantize.log" 2>&1 || fail "mpirun quantize failed: $(tail -5 "$work/mpirun-quantize.log")"
    ended=$(wait_job "$job" 300) || exit 1
    read -r state code runtime <<< "$ended"
    [[ "$state $code" == "COMPLETED 0:0" ]] ||
      fail "quantize job $job ended $state, exit code $code (expected COMPLETED 0:0)"
    echo "quantize job $job: $state, ran $runtime"
    grep -q "^avg_bits=.* output=$work/out-slurm\$" "$work"/hiq-quantize-"$job".out ||
      fail "the job log has no result line of hiq quantize"
    [[ "$(digest "$work/out-slurm")" == "$(digest "$work/out-mpi")" ]] ||
      fail "the digest of the Slurm job differs from mpirun's:
$(digest "$work/out-slurm")
$(digest "$work/out-mpi")"
    echo "digest equal to mpirun's: $(digest "$work/out-slurm" | tail -1)"

    # eval.sbatch on the job's output prints the perplexity mpirun prints for mpirun's output.
    job=$(submit --ntasks=2 jobs/eval.sbatch "$work/out-slurm" "$text")
    reference=$(mpirun -np 2 "$hiq" --threads 1 eval --quantized "$work/out-mpi" --text "$text" | tail -1)
    ended=$(wait_job "$job" 120) || exit 1
    read -r state code runtime <<< "$ended"
    [[ "$state $code" == "COMPLETED 0:0" ]] ||
      fail "eval job $job ended $state, exit code $code (expected COMPLETED 0:0)"
    line=$(grep '^tokens=' "$work"/hiq-eval-"$job".out | tail -1)
    [[ -n "$line" ]] || fail "the eval job log has no result line"
    for key in tokens windows nll ppl avg_bits; do
      [[ -n "$(field $key "$line")" && "$(field $key "$line")" == "$(field $key "$reference")" ]] ||
        fail "eval job: $key=$(field $key "$line"), mpirun: $key=$(field $key "$reference")"
    done
    echo "eval job $job: ran $runtime, ppl=$(field ppl "$line") nll=$(field nll "$line"), as mpirun"
    ;;

  timelimit)
    # A job with a 1-minute limit (Slurm's smallest) and a run of 75 s on an idle machine here
    # (longer under load), well past the last moment the warning can come.
    # Slurm checks limits every 30 s; --signal=TERM@20 makes the first warning come 10 to 40 s
    # after the start (late enough that hiq is past its start-up, early enough to land inside
    # the run), the scale of quantize.sbatch's TERM@120 for 1-hour limits.
    steps=36000
    job=$(submit --ntasks=2 --time=1 --signal=TERM@20 jobs/quantize.sbatch "$config" \
      --output "$work/out-slurm" $(small $steps))
    # The reference runs alongside (the job's results do not depend on the machine's load).
    mpirun -np 2 "$hiq" --threads 1 quantize "$config" --output "$work/out-mpi" $(small $steps) \
      > "$work/mpirun-quantize.log" 2>&1 || fail "mpirun quantize failed: $(tail -5 "$work/mpirun-quantize.log")"
    ended=$(wait_job "$job" 200) || exit 1
    read -r state code runtime <<< "$ended"
    log=$work/hiq-quantize-$job.out
    echo "job $job with --time=1: $state, exit code $code, ran $runtime"
    [[ "$state $code" == "FAILED 143:0" ]] ||
      fail "job $job ended $state, exit code $code; expected FAILED 143:0 (hiq's exit on SIGTERM)"
    for rank in 0 1; do
      grep -q "^hiq: interrupted by SIGTERM during .* (rank $rank); $work/out-slurm is incomplete\$" "$log" ||
        fail "rank $rank printed no SIGTERM line in $log"
    done
    grep -q "^quantize.sbatch: hiq quantize ended with exit code 143, time left 0:[0-5][0-9];" "$log" ||
      fail "quantize.sbatch did not report the exit with under a minute left"
    grep "^hiq: interrupted" "$log"
    [[ ! -e "$work/out-slurm/model.h5" ]] || fail "the interrupted job left a model.h5"

    # Submitted again, the job completes and writes what mpirun wrote.
    # Submitted again with --resume, the job carries on from the store and writes what mpirun wrote.
    job=$(submit --ntasks=2 jobs/quantize.sbatch "$config" --output "$work/out-slurm" --resume \
      $(small $steps))
    ended=$(wait_job "$job" 400) || exit 1
    read -r state code runtime <<< "$ended"
    [[ "$state $code" == "COMPLETED 0:0" ]] ||
      fail "the resubmitted job $job ended $state, exit code $code (expected COMPLETED 0:0)"
    [[ "$(digest "$work/out-slurm")" == "$(digest "$work/out-mpi")" ]] ||
      fail "the resubmitted job's digest differs from mpirun's"
    echo "resubmitted job $job: COMPLETED, ran $runtime; digest equal to mpirun's"
    ;;
  *) fail "unknown scenario $scenario (quantize or timelimit)" ;;
esac
echo "PASS: slurm $scenario"
