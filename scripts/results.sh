#!/usr/bin/env bash
# Regenerates docs/RESULTS.md and its plots (docs/results/*.png) from scratch on this machine:
# every method of `hiq quantize` on stories260K at matched bits, the perplexity curves against
# average bits, the plans' heat map and predictions, the ablations, speed and bytes on 1-4
# ranks, and a 7B-shaped model's stage times projected to LLaMA-2-7B/13B/70B (scripts/results.py
# says which parts and how). Prints each command it runs and a progress line per run with the time left; resumes
# where it stopped if interrupted (a run whose output and recorded command are there is
# skipped). Not part of CI.
#
#   scripts/results.sh            # the whole document (about 2 hours on 2 cores)
#   scripts/results.sh --quick    # a check of the script: seed 1, tiny sets, 16 steps, into
#                                 # out/results-quick/ (its RESULTS.md beside the runs)
#   scripts/results.sh --help     # the options (--ranks, --seeds, --out, --doc)
#
# Needs the binary (scripts/build.sh --target hiq; HIQ_BUILD=DIR for another build), for the
# solve's time bench_solver (HIQ_BENCH=DIR, default build/bench; its row is left out without
# it), and Debian's python3-matplotlib and python3-h5py, which it installs when missing (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
py=/usr/bin/python3  # Debian's, not a pyenv shim: matplotlib and numpy come from the archive
if ! "$py" -c "import matplotlib, numpy, h5py" 2> /dev/null; then
  echo "results.sh: installing python3-matplotlib python3-numpy python3-h5py from Debian's archive" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    python3-matplotlib python3-numpy python3-h5py > /tmp/hiq-results-apt.log 2>&1 ||
    { tail -20 /tmp/hiq-results-apt.log; exit 1; }
fi
[[ -x ${HIQ_BUILD:-build}/src/hiq ]] || { echo "results.sh: ${HIQ_BUILD:-build}/src/hiq is not built (scripts/build.sh --target hiq)" >&2; exit 1; }
exec "$py" scripts/results.py "$@"
