#!/usr/bin/env bash
# Installs, from Debian's archive, whatever hiq needs that is not installed yet. Idempotent and
# quiet when everything is there. Needs root (apt-get) only when something is missing.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  openmpi-bin libopenmpi-dev            # MPI runtime and headers
  libhdf5-openmpi-dev hdf5-tools        # parallel HDF5 + h5dump
  libeigen3-dev libopenblas-dev         # matrices; sgemm through OpenBLAS
  libglpk-dev                           # the global solve
  libyaml-cpp-dev nlohmann-json3-dev libcli11-dev
  libsentencepiece-dev                  # tokenizer
  libgtest-dev libbenchmark-dev         # tests and benchmarks
  clang-format                          # the style check (scripts/format.sh)
  python3 python3-h5py python3-numpy    # format checks from Python, bench tables
  slurmctld slurmd slurm-client munge   # a real single-node Slurm (scripts/slurm-local.sh);
  slurm-wlm-basic-plugins               # its mpi_pmix plugin: srun --mpi=pmix for Open MPI
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" > /tmp/hiq-apt.log 2>&1 ||
    { tail -30 /tmp/hiq-apt.log; exit 1; }
fi
