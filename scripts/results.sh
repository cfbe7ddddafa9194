#!/usr/bin/env bash
# Regenerates docs/RESULTS.md and its plots (docs/results/*.png) from scratch on this machine:
# every method of `hiq quantize` on stories260K at matched bits, the perplexity curves against
# average bits and the plans' heat map and predictions (scripts/results.py says which parts and
# how). Prints each command it runs and a progress line per run with the time left; resumes
# where it stopped if interrupted (a run whose output and recorded command are there is
# skipped). Not part of CI.
#
#   scripts/results.sh            # the whole document (about 2 hours on 2 cores)
#   scripts/results.sh --quick    # a check of the script: seed 1, tiny sets, 16 steps, into
#                                 # out/results-quick/ (its RESULTS.md beside the runs)
#   scripts/results.sh --help     # the options (--ranks, --seeds, --out, --doc)
#
# Needs the binary (scripts/build.sh --target hiq) and Debian's python3-matplotlib, which it
# installs when missing (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
py=/usr/bin/python3  # Debian's, not a pyenv shim: matplotlib and numpy come from the archive
if ! "$py" -c "import matplotlib, numpy" 2> /dev/null; then
  echo "results.sh: installing python3-matplotlib python3-numpy from Debian's archive" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    python3-matplotlib python3-numpy > /tmp/hiq-results-apt.log 2>&1 ||
    { tail -20 /tmp/hiq-results-apt.log; exit 1; }
fi
[[ -x ${HIQ_BUILD:-build}/src/hiq ]] || { echo "results.sh: ${HIQ_BUILD:-build}/src/hiq is not built (scripts/build.sh --target hiq)" >&2; exit 1; }
exec "$py" scripts/results.py "$@"
