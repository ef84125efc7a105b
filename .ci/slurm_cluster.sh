#!/usr/bin/env bash
# A single-node SLURM cluster on localhost from Debian's packages, without systemd, for the
# SLURM test (tests/test_slurm.py). Everything (configuration, keys, sockets, state, logs, PID
# files) lives in one folder; `stop` ends exactly the daemons `start` recorded there.
#
#   .ci/slurm_cluster.sh install        # apt packages slurmctld slurmd slurm-client munge (root)
#   .ci/slurm_cluster.sh start DIR      # munged, slurmctld, slurmd; client commands in DIR/bin
#   .ci/slurm_cluster.sh stop DIR       # stops the daemons whose PIDs are in DIR
#
# The node declares one GPU as a generic resource (no device behind it) so that --gpus requests
# are accepted; DefMemPerCPU keeps one job from taking the node's memory; MinJobAge 3600 s keeps
# finished jobs visible to squeue, which the Snakemake plugin's squeue status mode needs (there
# is no accounting daemon, so sacct cannot answer).
set -euo pipefail

cmd=${1:?usage: slurm_cluster.sh install|start DIR|stop DIR}

case "$cmd" in
install)
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
    && command -v sbatch >/dev/null; then
    exit 0
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "slurm_cluster.sh: installing SLURM needs root (apt-get); run: sudo $0 install" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
  ;;
start)
  dir=$(realpath -m "${2:?start needs a folder}")
  mkdir -p "$dir"/{state,spool,log,munge}
  chmod 700 "$dir/munge"
  # munge: its own key, socket and files in DIR (not the system's /etc/munge or /run/munge)
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  chmod 600 "$dir/munge/munge.key"
  munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/socket" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" \
    --seed-file="$dir/munge/seed"
  cpus=$(nproc)
  mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 2048 ))
  user=$(id -un)
  cat >"$dir/slurm.conf" <<EOF
ClusterName=visdecode-ci
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=$user
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=${SLURMCTLD_PORT:-16817}
SlurmdPort=${SLURMD_PORT:-16818}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
MinJobAge=3600
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
  echo "NodeName=localhost Name=gpu Count=1 File=/dev/null" >"$dir/gres.conf"
  # client commands that find this cluster: the Snakemake plugin's job steps drop SLURM_*
  # variables (SLURM_CONF too) before their nested srun, but keep PATH
  mkdir -p "$dir/bin"
  for tool in sbatch srun squeue scontrol sinfo scancel sacct sacctmgr sshare; do
    printf '#!/bin/sh\nSLURM_CONF=%s exec /usr/bin/%s "$@"\n' "$dir/slurm.conf" "$tool" >"$dir/bin/$tool"
    chmod +x "$dir/bin/$tool"
  done
  export SLURM_CONF="$dir/slurm.conf"
  slurmctld -f "$dir/slurm.conf"
  slurmd -f "$dir/slurm.conf" -N localhost
  for _ in $(seq 60); do
    if sinfo -h -N -o "%T" 2>/dev/null | grep -qE "^idle"; then
      echo "SLURM_CONF=$SLURM_CONF PATH=$dir/bin:\$PATH"
      exit 0
    fi
    sleep 1
  done
  echo "slurm_cluster.sh: the node did not become idle in 60 s; logs in $dir/log" >&2
  sinfo -N -l >&2 || true
  exit 1
  ;;
stop)
  dir=$(realpath -m "${2:?stop needs a folder}")
  for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
  ;;
*)
  echo "usage: slurm_cluster.sh install|start DIR|stop DIR" >&2
  exit 2
  ;;
esac
