#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the cluster tests (make test-cluster).
#   tests/cluster/cluster.sh start   install slurm-wlm and munge if missing (root only), write the
#                                    config for this host and its CPUs, start munged, slurmctld and
#                                    slurmd, wait until the node is idle; prints `export SLURM_CONF=...`
#   tests/cluster/cluster.sh stop    cancel every job, stop the three daemons, leave none running
#   tests/cluster/cluster.sh status  the daemons' state and sinfo
# Exit status 77 when it cannot run here (not root and SLURM missing): the tests skip, saying why.
set -euo pipefail

DIR=${INPAINT_SLURM_DIR:-/tmp/inpaint-slurm}
CONF=$DIR/slurm.conf
HOST=$(hostname -s)

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "the test cluster needs root (to install and run slurmctld, slurmd and munged): install slurm-wlm and munge and run as root" >&2
    exit 77
  fi
}

install() {
  command -v slurmctld >/dev/null && command -v munged >/dev/null && return
  need_root
  echo "installing slurm-wlm and munge from Debian's packages" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null
}

write_config() {
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/munge"
  local cpus memory
  cpus=$(nproc)
  memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
  cat > "$CONF" <<CONF
ClusterName=inpaint-test
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
# a requeued job may start again once its credential expires: 120 s by default, 10 s here
AuthInfo=cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobRequeue=1
KillWait=30
MinJobAge=300
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$HOST CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=test Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
}

start() {
  install
  need_root
  stop_daemons quiet
  write_config
  [ -s /etc/munge/munge.key ] || (mungekey --create --force 2>/dev/null || dd if=/dev/urandom of=/etc/munge/munge.key bs=1k count=1 2>/dev/null)
  chown root:root /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  # munged runs as root here (--force): its folders must be root's too, or it warns that they are insecure
  mkdir -p /run/munge /var/log/munge /var/lib/munge && chown root:root /run/munge /var/log/munge /var/lib/munge
  munged --force --pid-file="$DIR/munge/munged.pid" --socket=/run/munge/munge.socket.2
  slurmctld -f "$CONF"
  slurmd -f "$CONF"
  for _ in $(seq 60); do
    state=$(SLURM_CONF=$CONF sinfo -h -o %T 2>/dev/null || true)
    if [ "$state" = idle ]; then
      echo "export SLURM_CONF=$CONF"
      return 0
    fi
    sleep 0.5
  done
  echo "the test cluster did not come up (node state: ${state:-none}); logs in $DIR/log" >&2
  stop_daemons quiet
  exit 1
}

stop_daemons() {
  [ -f "$CONF" ] && SLURM_CONF=$CONF scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
  for pidfile in "$DIR/slurmd.pid" "$DIR/slurmctld.pid" "$DIR/munge/munged.pid"; do
    if [ -f "$pidfile" ]; then
      pid=$(cat "$pidfile")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$pidfile"
    fi
  done
  # nothing of the test cluster left behind, pid files or not
  pkill -f "slurm(ctld|d) -f $CONF" 2>/dev/null || true
  [ "${1:-}" = quiet ] || echo "test cluster stopped" >&2
}

status() {
  for name in munged slurmctld slurmd; do
    if pgrep -x "$name" >/dev/null; then echo "$name running"; else echo "$name stopped"; fi
  done
  if [ -f "$CONF" ] && pgrep -x slurmctld >/dev/null; then SLURM_CONF=$CONF sinfo; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop_daemons ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
