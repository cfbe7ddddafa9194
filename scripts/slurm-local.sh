#!/usr/bin/env bash
# A real single-node Slurm on this machine, for trying and testing jobs/*.sbatch: munged,
# slurmctld and slurmd from Debian's archive (scripts/deps.sh), configured entirely in one
# directory (HIQ_SLURM_DIR, default /tmp/hiq-slurm-$UID): slurm.conf with this host's name, CPUs
# and memory as `slurmd -C` reads them, a munge key made there, every daemon's state, spool, log
# and pid file there. Nothing in /etc is read or written. Runs as root (SlurmUser=root).
#   scripts/slurm-local.sh start    # idempotent; waits until the node is idle, prints the env
#   scripts/slurm-local.sh status   # exit 0 when all three daemons run and the node answers
#   scripts/slurm-local.sh stop     # kills the daemons it started and removes the directory
#   eval "$(scripts/slurm-local.sh env)"   # SLURM_CONF=... for sbatch, squeue, scontrol
# Ports: HIQ_SLURM_PORT (slurmctld, default 16817) and the next one (slurmd), so that a site's
# own Slurm on 6817/6818 is left alone.
set -euo pipefail

dir=${HIQ_SLURM_DIR:-/tmp/hiq-slurm-$(id -u)}
port=${HIQ_SLURM_PORT:-16817}
pmix_dir=/usr/lib/x86_64-linux-gnu/slurm-wlm
daemons=(slurmd slurmctld munged)

die() {
  echo "slurm-local: $*" >&2
  exit 1
}

# The pid in DIR/NAME.pid if that process is alive and is NAME (a stale pid file from a killed
# run, or a pid reused by another program, counts as not running).
running_pid() {
  local pid
  pid=$(cat "$dir/$1.pid" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$1" ]] || return 1
  [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]] || return 1
  echo "$pid"
}

print_env() {
  echo "export SLURM_CONF=$dir/slurm.conf"
}

node_state() {
  # (timeout: without munged, sinfo retries for minutes)
  SLURM_CONF=$dir/slurm.conf timeout 10 sinfo --noheader --node "$node" --format=%T 2>/dev/null | head -1
}

write_config() {
  mkdir -p "$dir"/{state,spool,log}
  chmod 755 "$dir"  # munged wants its socket's directory reachable by every user
  if [[ -s "$dir/slurm.conf" ]]; then  # a second start: the daemons may be reading it
    node=$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' "$dir/slurm.conf")
    return 0
  fi
  # What slurmd itself finds on this machine: NodeName, CPUs, boards/sockets/cores/threads,
  # RealMemory. The node is then configured exactly as it is, and slurmd accepts it.
  local hw
  hw=$(slurmd -C | head -1)
  [[ "$hw" == NodeName=* ]] || die "slurmd -C printed no node line: $hw"
  node=${hw#NodeName=}
  node=${node%% *}
  cat > "$dir/slurm.conf" << EOF
# Written by hiq's scripts/slurm-local.sh; removed by 'scripts/slurm-local.sh stop'.
ClusterName=hiqlocal
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge.sock
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
PlugStackConfig=$dir/plugstack.conf
# No cgroups in a container without systemd: processes are tracked by their parent pids.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Open MPI 4.1 (Debian) starts its ranks through PMIx; Slurm's mpi_pmix plugin serves them.
MpiDefault=pmix
# No slurmdbd: no accounting (sacct answers nothing); scontrol show job keeps finished jobs
# for MinJobAge seconds.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
# A job past its limit is signalled at once (no grace minutes) and killed 5 s after the
# SIGTERM: what the time-limit test measures.
OverTimeLimit=0
KillWait=5
InactiveLimit=0
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=60
SchedulerType=sched/backfill
NodeName=${hw#NodeName=} State=UNKNOWN NodeAddr=127.0.0.1
PartitionName=local Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
  : > "$dir/plugstack.conf"
}

start_munge() {
  running_pid munged > /dev/null && return 0
  if [[ ! -s "$dir/munge.key" ]]; then
    # 1024 random bytes, as mungekey(8) makes them; readable by root only, as munged demands.
    head -c 1024 /dev/urandom > "$dir/munge.key"
    chmod 400 "$dir/munge.key"
  fi
  munged --force --key-file="$dir/munge.key" --socket="$dir/munge.sock" \
    --pid-file="$dir/munged.pid" --log-file="$dir/log/munged.log" \
    --seed-file="$dir/munge.seed" ||
    die "munged did not start (log: $dir/log/munged.log): $(tail -3 "$dir/log/munged.log" 2>/dev/null)"
}

wait_for() {  # wait_for SECONDS COMMAND...: until COMMAND succeeds, at most SECONDS
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

node_is_idle() {
  [[ "$(node_state)" == idle ]]  # not idle* (not responding) nor idle~ (powered down)
}

start() {
  # The daemons outlive this script: they must not inherit its open files beyond stdio (a lock
  # held by a caller, e.g. `flock LOCK scripts/slurm-local.sh start`, would be held forever).
  local fd
  for fd in /proc/$$/fd/*; do
    fd=${fd##*/}
    ((fd > 2)) && eval "exec $fd>&-" 2> /dev/null || true
  done
  command -v slurmctld > /dev/null && command -v slurmd > /dev/null &&
    command -v munged > /dev/null && command -v sbatch > /dev/null ||
    die "slurmctld, slurmd, munged or sbatch missing: run scripts/deps.sh (Debian packages slurmctld slurmd slurm-client munge)"
  [[ -e "$pmix_dir/mpi_pmix.so" ]] || die "no $pmix_dir/mpi_pmix.so (Debian package slurm-wlm-basic-plugins)"
  ((EUID == 0)) || die "needs root (slurmd starts jobs as their users; SlurmUser=root here)"
  write_config
  start_munge
  export SLURM_CONF=$dir/slurm.conf
  if ! running_pid slurmctld > /dev/null; then
    # -c: a fresh start; the state directory holds only this instance's jobs anyway.
    slurmctld -c -f "$dir/slurm.conf" ||
      die "slurmctld did not start: $(tail -5 "$dir/log/slurmctld.log" 2>/dev/null)"
  fi
  if ! running_pid slurmd > /dev/null; then
    slurmd -f "$dir/slurm.conf" -N "$node" ||
      die "slurmd did not start: $(tail -5 "$dir/log/slurmd.log" 2>/dev/null)"
  fi
  if ! wait_for 60 node_is_idle; then
    local state
    state=$(node_state)
    die "node $node not idle after 60 s (state '${state:-no answer}'); logs in $dir/log: $(tail -3 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" 2>/dev/null)"
  fi
  echo "slurm-local: node $node idle ($(scontrol -V), $dir)" >&2
  print_env
}

no_jobs() {
  [[ -z "$(SLURM_CONF=$dir/slurm.conf squeue --noheader --format=%i 2> /dev/null)" ]]
}

# slurmstepd processes (job steps, which outlive slurmd) started by this instance: their
# environment names its slurm.conf.
own_steps() {
  local pid
  for pid in $(pgrep -x slurmstepd || true); do
    tr '\0' '\n' < "/proc/$pid/environ" 2> /dev/null | grep -qx "SLURM_CONF=$dir/slurm.conf" &&
      echo "$pid"
  done
}

stop() {
  local name pid
  [[ -e "$dir" ]] || return 0
  # Jobs first, while slurmctld and slurmd can still end them properly.
  if running_pid slurmctld > /dev/null; then
    SLURM_CONF=$dir/slurm.conf scancel --full --quiet --user=root 2> /dev/null || true
    wait_for 20 no_jobs || true
  fi
  for name in "${daemons[@]}"; do
    pid=$(running_pid "$name") || continue
    kill "$pid" 2> /dev/null || true
    # slurmd and slurmctld save state on SIGTERM; wait for them, then make sure.
    for _ in $(seq 1 40); do
      [[ -d /proc/$pid ]] || break
      sleep 0.25
    done
    kill -KILL "$pid" 2> /dev/null || true
  done
  local steps
  steps=$(own_steps)
  [[ -z "$steps" ]] || kill -KILL $steps 2> /dev/null || true
  rm -rf "$dir"
}

status() {
  local name pid ok=0
  for name in munged slurmctld slurmd; do
    if pid=$(running_pid "$name"); then
      echo "$name: running (pid $pid)"
    else
      echo "$name: not running"
      ok=1
    fi
  done
  if [[ -f "$dir/slurm.conf" ]]; then
    node=$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' "$dir/slurm.conf")
    echo "node $node: $(node_state || true)"
    print_env
  fi
  return $ok
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) print_env ;;
  *)
    echo "usage: $0 start|stop|status|env" >&2
    exit 2
    ;;
esac
