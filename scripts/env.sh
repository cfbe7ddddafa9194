# Sourced by the scripts: where the data is, and Open MPI's consent to run as root (CI and these
# machines run as root; Open MPI refuses that without both variables).
HIQ_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export HIQ_DATA=${HIQ_DATA:-$(cd "$HIQ_ROOT/../shared/data" 2>/dev/null && pwd || echo "$HIQ_ROOT/../shared/data")}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Several ranks share 2 cores in tests: never let Open MPI bind or busy-poll them to death.
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_hwloc_base_binding_policy=none
export OMPI_MCA_mpi_yield_when_idle=1
