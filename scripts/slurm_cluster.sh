#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for testing the pipeline's SLURM profile
# (workflow/profiles/slurm) end to end: tests_integration/ and the second stage of .ci/run use it.
#
#   bash scripts/slurm_cluster.sh start     install (root, apt-get) + configure + start; idempotent
#   bash scripts/slurm_cluster.sh status    one line per daemon, then sinfo; exit 0 only if all run
#   bash scripts/slurm_cluster.sh stop      cancel this cluster's jobs and stop every daemon it started
#   bash scripts/slurm_cluster.sh env       print `export SLURM_CONF=...` (eval "$(... env)")
# Exit status: 0 done; 1 a step or daemon failed (named, with the tail of its log); 3 SLURM cannot run here
# (not root and not installed/running, or no apt-get): tests_integration skips on 3 and fails on 1.
#
# Everything lives under one state directory, GIFTLAB_SLURM_DIR (default /tmp/giftlab-slurm): configs,
# the munge key, the MariaDB data, spool, logs and pid files. Nothing is registered with an init system
# (there is none in CI containers): the daemons are started directly and found again by their pid files.
#
# Why each daemon: munged authenticates every SLURM RPC; slurmctld schedules; slurmd runs the jobs;
# slurmdbd + MariaDB hold the job accounting, which `sacct` reads. snakemake-executor-plugin-slurm 2.x
# follows job state through `sacct`, so without accounting a job finishes in SLURM and Snakemake never
# notices it end.
#
# Client commands (sbatch, sacct, sinfo, and Snakemake's executor calling them) find this cluster through
# SLURM_CONF=$GIFTLAB_SLURM_DIR/etc/slurm.conf. When /etc/slurm/slurm.conf does not exist, `start` also
# links it there, so that a plain `sinfo` works; `stop` removes that link again.
set -uo pipefail

STATE=${GIFTLAB_SLURM_DIR:-/tmp/giftlab-slurm}
CLUSTER=giftlab                 # ClusterName, also the accounting cluster
ACCOUNT=giftlab                 # the account the pipeline's config/slurm-local.yaml submits under
PARTITION=debug
# Ports: SLURM's defaults (6817-6819; every client is pointed at 127.0.0.1, and munge guards them) and a
# non-default MariaDB port on 127.0.0.1 only, so that a system MariaDB on 3306 (Debian's postinst may have
# started one) does not collide.
CTLD_PORT=${GIFTLAB_SLURM_CTLD_PORT:-6817}
SLURMD_PORT=${GIFTLAB_SLURM_SLURMD_PORT:-6818}
DBD_PORT=${GIFTLAB_SLURM_DBD_PORT:-6819}
DB_PORT=${GIFTLAB_SLURM_DB_PORT:-16819}
WAIT_S=${GIFTLAB_SLURM_WAIT_S:-60}   # bound on each "wait until the daemon answers"

ETC=$STATE/etc
LOG=$STATE/log
RUN=$STATE/run
export SLURM_CONF=$ETC/slurm.conf
MUNGE_SOCK=$RUN/munge.socket
DB_SOCK=$RUN/mysqld.sock
NODE=$(hostname -s)
ME=$(id -un)
PACKAGES=(munge mariadb-server slurmdbd slurmctld slurmd slurm-client)
# daemon name -> its pid file (stop order is the reverse of start order)
declare -A PIDFILE=([munged]=$RUN/munged.pid [mariadbd]=$RUN/mariadbd.pid [slurmdbd]=$RUN/slurmdbd.pid
                    [slurmctld]=$RUN/slurmctld.pid [slurmd]=$RUN/slurmd.pid)
declare -A LOGFILE=([munged]=$LOG/munged.log [mariadbd]=$LOG/mariadbd.log [slurmdbd]=$LOG/slurmdbd.log
                    [slurmctld]=$LOG/slurmctld.log [slurmd]=$LOG/slurmd.log)
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

say() { echo "slurm_cluster: $*"; }
die() { say "$*" >&2; exit 1; }
# SLURM cannot run here at all (no root to install or start it, no apt-get): exit 3, which tests read as "skip".
cannot() { say "$*" >&2; exit 3; }

# A daemon failed: name it, show the end of its log, exit non-zero.
fail() {  # fail DAEMON WHAT
  say "$1 failed: $2 (log: ${LOGFILE[$1]})" >&2
  [ -f "${LOGFILE[$1]}" ] && tail -n 25 "${LOGFILE[$1]}" | sed 's/^/    /' >&2
  exit 1
}

pid_of() { [ -f "${PIDFILE[$1]}" ] && cat "${PIDFILE[$1]}" 2>/dev/null; }
# /proc, not kill -0: a user other than the daemons' (root) may ask too (`start` without root, `status`);
# the command name guards against a stale pid file whose pid now belongs to something else.
running() { local pid; pid=$(pid_of "$1") && [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]; }

# Poll CMD until it succeeds, at most WAIT_S seconds; while waiting, a daemon that died ends the wait.
wait_for() {  # wait_for DAEMON WHAT CMD...
  local daemon=$1 what=$2; shift 2
  local deadline=$((SECONDS + WAIT_S))
  until "$@" >/dev/null 2>&1; do
    if [ "$daemon" != - ] && [ -f "${PIDFILE[$daemon]}" ] && ! running "$daemon"; then
      fail "$daemon" "exited while waiting for: $what"
    fi
    [ $SECONDS -ge $deadline ] && fail "$daemon" "no answer after ${WAIT_S}s to: $what"
    sleep 1
  done
}

installed() {
  local cmd
  for cmd in munged mariadbd mariadb-install-db slurmdbd slurmctld slurmd sbatch sacct sacctmgr; do
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || return 1
  done
}

install_packages() {
  installed && return 0
  [ "$(id -u)" -eq 0 ] || cannot "SLURM is not installed and installing it needs root (apt-get install ${PACKAGES[*]})"
  command -v apt-get >/dev/null || cannot "SLURM is not installed and there is no apt-get to install it"
  say "installing ${PACKAGES[*]} (apt-get) ..."
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -q && apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"; } \
    >"$STATE/apt.log" 2>&1 || { tail -n 20 "$STATE/apt.log" >&2; die "apt-get install failed (log: $STATE/apt.log)"; }
  installed || die "packages installed but a SLURM/munge/MariaDB command is still missing"
}

# ------------------------------------------------------------------ configuration

# The node is sized from this machine: every CPU, and the memory free now minus 1 GiB for the daemons.
# slurmd reports the machine's total memory, so RealMemory below it never drains the node.
node_cpus() { nproc; }
node_mem_mb() {
  local avail
  avail=$(awk '/^MemAvailable:/ {print int($2 / 1024)}' /proc/meminfo)
  echo $(( avail > 2048 ? avail - 1024 : avail / 2 ))
}

write_configs() {  # into $1 (a directory); compared with $ETC by the caller
  local dir=$1 pass
  pass=$(cat "$STATE/db.pass")
  cat >"$dir/slurm.conf" <<EOF
# Written by scripts/slurm_cluster.sh: a one-node test cluster. Do not edit; rerun 'start'.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=$ME
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCK
MpiDefault=none
MailProg=/bin/true
# No cgroups in containers: track job processes through /proc, no task binding or confinement.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
# Accounting through slurmdbd: sacct (and so Snakemake's executor) sees every job's final state.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStorageEnforce=associations
# Connections to slurmdbd take their munge socket from here, not from AuthInfo.
AccountingStoragePass=$MUNGE_SOCK
# Keep each job's --comment (the executor writes rule_<rule>_wildcards_<...> there): sacct -o Comment shows it.
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
SchedulerType=sched/backfill
# Allocate single CPUs (not whole cores) and memory: two 1-CPU jobs share a 2-CPU node.
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
SlurmdTimeout=120
InactiveLimit=0
KillWait=10
MinJobAge=300
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=${PIDFILE[slurmctld]}
SlurmdPidFile=${PIDFILE[slurmd]}
SlurmctldLogFile=${LOGFILE[slurmctld]}
SlurmdLogFile=${LOGFILE[slurmd]}
PlugStackConfig=$ETC/plugstack.conf
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$(node_cpus) RealMemory=$(node_mem_mb) State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$dir/slurmdbd.conf" <<EOF
# Written by scripts/slurm_cluster.sh.
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=$ME
PidFile=${PIDFILE[slurmdbd]}
LogFile=${LOGFILE[slurmdbd]}
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$pass
StorageLoc=${CLUSTER}_acct
EOF
  # Read by slurmd even with the cgroup plugins unused; keep it from looking for systemd.
  cat >"$dir/cgroup.conf" <<EOF
# Written by scripts/slurm_cluster.sh. No cgroup plugin is in use (proctrack/linuxproc, task/none).
CgroupPlugin=autodetect
IgnoreSystemd=yes
EOF
  : >"$dir/plugstack.conf"   # no SPANK plugins (the Debian default includes /etc/slurm/plugstack.conf.d)
  chmod 600 "$dir/slurmdbd.conf"  # slurmdbd refuses a config that others can read (it holds a password)
}

# ------------------------------------------------------------------ daemons, in start order

start_munged() {
  running munged && return 0
  if [ ! -s "$STATE/munge.key" ]; then  # a fresh random key per state directory
    dd if=/dev/urandom of="$STATE/munge.key" bs=1 count=1024 status=none
  fi
  chmod 400 "$STATE/munge.key"
  rm -f "$MUNGE_SOCK" "$MUNGE_SOCK.lock"
  munged --key-file="$STATE/munge.key" --socket="$MUNGE_SOCK" --pid-file="${PIDFILE[munged]}" \
    --log-file="${LOGFILE[munged]}" --seed-file="$STATE/munged.seed" --force \
    >>"${LOGFILE[munged]}" 2>&1 || fail munged "did not start"
  wait_for munged "a munge credential round trip" \
    bash -c "munge -n -S '$MUNGE_SOCK' | unmunge -S '$MUNGE_SOCK'"
}

db() { mariadb --no-defaults -S "$DB_SOCK" -u root "$@"; }

start_mariadbd() {
  running mariadbd && return 0
  if [ ! -d "$STATE/mysql/mysql" ]; then  # first start: an empty data directory of our own
    mariadb-install-db --no-defaults --datadir="$STATE/mysql" --user="$ME" \
      --auth-root-authentication-method=socket --skip-test-db >>"${LOGFILE[mariadbd]}" 2>&1 \
      || fail mariadbd "mariadb-install-db failed"
  fi
  # --no-defaults: ignore /etc/mysql; TCP on 127.0.0.1 only (slurmdbd connects over TCP). Lock timeout as slurmdbd recommends.
  setsid nohup mariadbd --no-defaults --datadir="$STATE/mysql" --user="$ME" --socket="$DB_SOCK" \
    --pid-file="${PIDFILE[mariadbd]}" --log-error="${LOGFILE[mariadbd]}" --bind-address=127.0.0.1 \
    --port="$DB_PORT" --innodb-lock-wait-timeout=900 \
    </dev/null >>"${LOGFILE[mariadbd]}" 2>&1 &
  echo $! >"${PIDFILE[mariadbd]}"  # mariadbd rewrites it with the same pid once up
  wait_for mariadbd "mariadb-admin ping" mariadb-admin --no-defaults -S "$DB_SOCK" -u root ping
  local pass
  pass=$(cat "$STATE/db.pass")
  db -e "CREATE DATABASE IF NOT EXISTS ${CLUSTER}_acct;
         CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
         CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$pass';
         GRANT ALL ON ${CLUSTER}_acct.* TO 'slurm'@'127.0.0.1';
         GRANT ALL ON ${CLUSTER}_acct.* TO 'slurm'@'localhost';" >>"${LOGFILE[mariadbd]}" 2>&1 \
    || fail mariadbd "could not create the accounting database and its user"
}

start_slurmdbd() {
  running slurmdbd && return 0
  slurmdbd >>"${LOGFILE[slurmdbd]}" 2>&1 || fail slurmdbd "did not start"
  # sacctmgr talks to slurmdbd directly (no slurmctld needed): it answers once slurmdbd is up.
  wait_for slurmdbd "sacctmgr show cluster" sacctmgr -n show cluster
}

# Cluster, account and user associations: AccountingStorageEnforce=associations rejects jobs without them.
register() {
  sacctmgr -n -P show cluster format=cluster | grep -qx "$CLUSTER" \
    || sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "sacctmgr: could not add cluster $CLUSTER"
  sacctmgr -n -P show account format=account | grep -qx "$ACCOUNT" \
    || sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description="giftlab test" Organization=giftlab \
      >/dev/null || die "sacctmgr: could not add account $ACCOUNT"
  local user
  for user in "$ME" ${SUDO_USER:+"$SUDO_USER"}; do
    sacctmgr -n -P show assoc where user="$user" account="$ACCOUNT" format=user | grep -qx "$user" \
      || sacctmgr -i add user "$user" Account="$ACCOUNT" DefaultAccount="$ACCOUNT" >/dev/null \
      || die "sacctmgr: could not add user $user to account $ACCOUNT"
  done
}

start_slurmctld() {
  running slurmctld && return 0
  # -i: ignore state files saved by an earlier instance that no longer match the config.
  slurmctld -i -f "$SLURM_CONF" >>"${LOGFILE[slurmctld]}" 2>&1 || fail slurmctld "did not start"
  wait_for slurmctld "scontrol ping" bash -c "scontrol ping | grep -q UP"
}

start_slurmd() {
  running slurmd && return 0
  slurmd -f "$SLURM_CONF" >>"${LOGFILE[slurmd]}" 2>&1 || fail slurmd "did not start"
}

node_state() { sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n 1; }

wait_node_idle() {
  local deadline=$((SECONDS + WAIT_S)) state
  while :; do
    state=$(node_state)
    case $state in
      idle|mixed|allocated|completing) return 0 ;;   # up (mixed/allocated: jobs already running)
      down*|drain*|fail*)              # a node left down by an earlier run: bring it back
        scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 ;;
    esac
    running slurmd || fail slurmd "exited (node state: ${state:-none})"
    [ $SECONDS -ge $deadline ] && fail slurmd "node $NODE is '${state:-unknown}', not idle, after ${WAIT_S}s"
    sleep 1
  done
}

# /etc/slurm/slurm.conf -> ours, only where nothing else is configured there (so plain `sinfo` works).
link_etc() {
  [ "$(id -u)" -eq 0 ] || return 0
  if [ ! -e /etc/slurm/slurm.conf ] && [ ! -L /etc/slurm/slurm.conf ]; then
    mkdir -p /etc/slurm && ln -s "$SLURM_CONF" /etc/slurm/slurm.conf
  fi
}
unlink_etc() {
  [ -L /etc/slurm/slurm.conf ] && [ "$(readlink /etc/slurm/slurm.conf)" = "$SLURM_CONF" ] \
    && rm -f /etc/slurm/slurm.conf
  return 0
}

# ------------------------------------------------------------------ commands

all_running() { local d; for d in "${DAEMONS[@]}"; do running "$d" || return 1; done; }
any_running() { local d; for d in "${DAEMONS[@]}"; do running "$d" && return 0; done; return 1; }
same_config() {  # same_config DIR_A DIR_B: equal but for the node's RealMemory
  diff -q <(sed 's/RealMemory=[0-9]*//' "$1/slurm.conf") <(sed 's/RealMemory=[0-9]*//' "$2/slurm.conf" 2>/dev/null) \
    >/dev/null && diff -q "$1/slurmdbd.conf" "$2/slurmdbd.conf" >/dev/null 2>&1
}

cmd_start() {
  if [ "$(id -u)" -ne 0 ]; then
    # Without root we can neither install nor start slurmd (it runs jobs as their users); reuse a running one.
    if all_running && sacct -n -X >/dev/null 2>&1; then
      say "running ($CLUSTER, partition $PARTITION, state $STATE); export SLURM_CONF=$SLURM_CONF"; return 0
    fi
    installed || cannot "SLURM is not installed and installing it needs root (apt-get install ${PACKAGES[*]})"
    cannot "SLURM is installed but not running here, and starting its daemons needs root"
  fi
  mkdir -p "$ETC" "$LOG" "$RUN" "$STATE/spool/ctld" "$STATE/spool/d"
  install_packages
  chmod 755 "$STATE" "$RUN"   # munged refuses a socket directory others can write to
  [ -s "$STATE/db.pass" ] || { (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$STATE/db.pass"); }

  # (Re)write the configs. Under running daemons keep the ones they read, unless something other than
  # the node's memory (free memory moves between calls) changed: then restart everything on the new ones.
  local new
  new=$(mktemp -d)
  write_configs "$new"
  if any_running && ! same_config "$new" "$ETC"; then
    say "configuration changed: restarting the daemons"; cmd_stop >/dev/null
  fi
  if any_running; then cp "$new/cgroup.conf" "$new/plugstack.conf" "$ETC"/; else cp -p "$new"/* "$ETC"/; fi
  rm -rf "$new"

  start_munged
  start_mariadbd
  start_slurmdbd
  register
  start_slurmctld
  start_slurmd
  wait_node_idle
  wait_for slurmdbd "sacct answers" sacct -n -X
  link_etc
  say "running: cluster $CLUSTER, node $NODE ($(node_cpus) CPUs, $(awk '/^NodeName=/ {for (i = 1; i <= NF; i++) if ($i ~ /^RealMemory=/) {sub("RealMemory=", "", $i); print $i}}' "$SLURM_CONF") MB), partition $PARTITION, account $ACCOUNT; export SLURM_CONF=$SLURM_CONF"
}

stop_daemon() {  # TERM, wait up to 20 s, then KILL
  local d=$1 pid _
  pid=$(pid_of "$d") || return 0
  if running "$d"; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    say "stopped $d ($pid)"
  fi
  rm -f "${PIDFILE[$d]}"
}

cmd_stop() {
  [ -d "$STATE" ] || { say "nothing to stop ($STATE does not exist)"; return 0; }
  # Cancel this cluster's jobs first, so that no job step outlives its slurmd.
  if running slurmctld; then
    squeue -h -o %i 2>/dev/null | xargs -r scancel 2>/dev/null
    local _
    for _ in $(seq 1 30); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 1; done
  fi
  local k
  for ((k = ${#DAEMONS[@]} - 1; k >= 0; k--)); do stop_daemon "${DAEMONS[$k]}"; done
  unlink_etc
}

cmd_status() {
  local d rc=0
  for d in "${DAEMONS[@]}"; do
    if running "$d"; then echo "$d: running (pid $(pid_of "$d"))"; else echo "$d: stopped"; rc=3; fi
  done
  [ $rc -eq 0 ] && sinfo -N -o "%N %P %T %c %m" 2>&1
  return $rc
}

case ${1:-} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) echo "export SLURM_CONF=$SLURM_CONF" ;;
  *) echo "usage: $0 start|stop|status|env   (state directory: \$GIFTLAB_SLURM_DIR, default /tmp/giftlab-slurm)" >&2; exit 2 ;;
esac
