#!/usr/bin/env bash
# A one-node Slurm on this machine, from Debian's packages, as root, without systemd.
#
#   tests/slurm/local_slurm.sh install   # apt-get the packages (root + apt only)
#   tests/slurm/local_slurm.sh start     # munged, /etc/slurm/slurm.conf, slurmctld, slurmd
#   tests/slurm/local_slurm.sh status
#   tests/slurm/local_slurm.sh stop      # cancel jobs, stop what start started
#
# Used by tests/slurm/conftest.py; handy by hand to try jobs/*.sbatch on a laptop or VM.
# Exit status: 0 done, 3 cannot here (not root, no apt, a foreign slurm.conf: the tests skip),
# 1 tried and failed (the tests fail). Every wait has a timeout.
#
# What needed care (Slurm 22.05 on Debian 12, two cores, no systemd):
# - munged runs as user munge (the owner of its key), with /run/munge owned by munge.
# - CPUs=8 on a 2-core machine: SlurmdParameters=config_overrides makes slurmd take the node
#   description from slurm.conf instead of the hardware it finds.
# - proctrack/linuxproc and task/none: cgroup plugins need a cgroup setup that containers
#   and machines without systemd often lack.
# - MpiDefault=pmi2: the PyPI MPICH wheel speaks PMI-2; with --mpi=none srun silently
#   starts N separate worlds of size 1, and --mpi=pmix fails (Debian's plugin cannot load
#   its PMIx library, and the wheel has no PMIx).
# - A requeued job may start again only cred_expire+1 s later (120 s by default): 10 here,
#   and the scheduler runs every second instead of every 30-60 s.
# - FirstJobId from the clock: see the comment in slurm.conf below.
# - No accounting (sacct does not work): poll `scontrol show job` (kept MinJobAge seconds).
set -euo pipefail

STATE=${LOCAL_SLURM_STATE:-/var/tmp/hpc_fedprune-slurm}
CONF=${LOCAL_SLURM_CONF:-/etc/slurm/slurm.conf}
CPUS=${LOCAL_SLURM_CPUS:-8}
MARK="# written by hpc_fedprune tests/slurm/local_slurm.sh"
PACKAGES=(slurmctld slurmd slurm-client munge)

say() { echo "local_slurm: $*"; }
cannot() { say "cannot: $*" >&2; exit 3; }
fail() { say "failed: $*" >&2; exit 1; }

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.5 s until it succeeds.
wait_for() {
    local limit=$1 what=$2; shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || { say "timed out after $limit s waiting for $what" >&2; return 1; }
        sleep 0.5
    done
}

pid_alive() {  # pid_alive PIDFILE NAME: the pid in PIDFILE runs a program called NAME
    local pid
    [[ -s $1 ]] || return 1
    pid=$(<"$1")
    [[ $pid =~ ^[0-9]+$ ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$2" ]]
}

stop_pidfile() {  # stop_pidfile PIDFILE NAME: TERM, wait up to 10 s, then KILL
    local pid
    pid_alive "$1" "$2" || { rm -f "$1"; return 0; }
    pid=$(<"$1")
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_for 10 "$2 to stop" bash -c "! kill -0 $pid"; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$1"
    say "stopped $2 (pid $pid)"
}

missing_packages() {
    local p missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    echo "${missing[*]}"
}

cmd_install() {
    local missing
    command -v dpkg-query >/dev/null || cannot "no dpkg/apt here"
    missing=$(missing_packages)
    if [[ -z $missing ]]; then
        say "packages already installed: ${PACKAGES[*]}"
        return 0
    fi
    [[ $(id -u) == 0 ]] || cannot "not root: cannot apt-get install $missing"
    command -v apt-get >/dev/null || cannot "no apt-get: cannot install $missing"
    say "installing $missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || cannot "apt-get update failed"
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null \
        || cannot "apt-get install $missing failed"
    [[ -z $(missing_packages) ]] || cannot "still missing after install: $(missing_packages)"
}

munge_works() { { munge -n </dev/null | unmunge; } >/dev/null 2>&1; }

start_munge() {
    if munge_works; then
        say "munged already running: reusing it"
        return 0
    fi
    if [[ ! -s /etc/munge/munge.key ]]; then
        install -d -o munge -g munge -m 700 /etc/munge
        if command -v mungekey >/dev/null; then
            runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
        else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        fi
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    install -d -o munge -g munge -m 755 /run/munge
    install -d -o munge -g munge -m 700 /var/log/munge /var/lib/munge
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid \
        || fail "munged did not start (see /var/log/munge/munged.log)"
    wait_for 10 "munge" munge_works || fail "munge does not answer"
    cp /run/munge/munged.pid "$STATE/munged.pid"  # ours: stop it at the end
    say "started munged (pid $(<"$STATE/munged.pid"))"
}

write_conf() {
    local node=$1 first_job_id
    first_job_id=$(( ($(date +%s) % 600000) * 100 + 1 ))  # < MaxJobId (67043328)
    if [[ -e $CONF ]] && ! grep -qF "$MARK" "$CONF"; then
        cannot "$CONF exists and was not written by this script: not replacing a real site config"
    fi
    mkdir -p "$(dirname "$CONF")"
    cat >"$CONF" <<EOF
$MARK
# A one-node test cluster; replaced at every start, see that script.
ClusterName=fedprunetest
# Job ids differ from one start to the next (slurmctld -c would begin at 1 every time): MPICH
# names shared memory after "<jobid>.<stepid>", and a segment left by an aborted job of an
# earlier start would break the MPI_Init of a new job with the same id.
FirstJobId=$first_job_id
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# A requeued job waits cred_expire+1 s before it may start again (default 120 s).
AuthInfo=cred_expire=10
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmi2
SlurmdParameters=config_overrides
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Finished jobs stay visible to 'scontrol show job' this long (there is no sacct here).
MinJobAge=600
# Schedule pending (and requeued) jobs within a second or two, not every 30-60 s.
SchedulerParameters=sched_interval=1,bf_interval=1
# Seconds between TERM and KILL when a job ends early (a requeue, a cancel): time to checkpoint.
KillWait=30
InactiveLimit=0
NodeName=$node NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
}

node_idle() { sinfo -h -N -o '%T' 2>/dev/null | grep -qx 'idle'; }

cmd_start() {
    local node
    [[ $(id -u) == 0 ]] || cannot "not root: cannot start slurmctld/slurmd"
    [[ -z $(missing_packages) ]] || cannot "packages missing: $(missing_packages) (run install)"
    node=$(hostname -s)
    mkdir -p "$STATE"
    write_conf "$node"   # before stopping anything: refuses a foreign config
    # A previous start of ours that was never stopped (a killed test run): stop it first,
    # its jobs included (slurmctld -c below forgets them, their processes would go on).
    stop_cluster
    rm -rf "$STATE/ctld" "$STATE/slurmd"
    mkdir -p "$STATE/ctld" "$STATE/slurmd"
    : >"$STATE/slurmctld.log"
    : >"$STATE/slurmd.log"
    start_munge
    slurmctld -c || fail "slurmctld did not start: $(tail -5 "$STATE/slurmctld.log")"
    wait_for 30 "slurmctld" scontrol ping \
        || fail "slurmctld does not answer: $(tail -5 "$STATE/slurmctld.log")"
    slurmd || fail "slurmd did not start: $(tail -5 "$STATE/slurmd.log")"
    if ! wait_for 60 "node $node idle" node_idle; then
        sinfo -N -l >&2 || true
        fail "node $node not idle after 60 s: $(tail -5 "$STATE/slurmd.log")"
    fi
    say "node $node idle (CPUs=$CPUS, MpiDefault=pmi2); logs in $STATE"
}

# Cancel every job, stop slurmd and slurmctld. Job processes that outlive that (a job of a
# controller that was restarted) are ours too: this script's slurm.conf is the only one here.
stop_cluster() {
    local jobs pid
    if scontrol ping >/dev/null 2>&1; then
        jobs=$(squeue -h -o %A 2>/dev/null || true)
        if [[ -n $jobs ]]; then
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            # shellcheck disable=SC2016  # expanded by the inner bash
            wait_for 40 "jobs to end" bash -c '[[ -z $(squeue -h -t R,CG,S -o %A) ]]' || true
        fi
    fi
    stop_pidfile "$STATE/slurmd.pid" slurmd
    stop_pidfile "$STATE/slurmctld.pid" slurmctld
    if grep -qF "$MARK" "$CONF" 2>/dev/null; then
        for pid in $(pgrep -x slurmstepd || true); do
            [[ $(ps -o stat= -p "$pid") == Z* ]] && continue
            say "killing a leftover slurmstepd (pid $pid) and its processes"
            # shellcheck disable=SC2046
            kill -KILL "$pid" $(descendants "$pid") 2>/dev/null || true
        done
    fi
}

descendants() {  # the pids of every process below $1
    local child
    for child in $(ps -o pid= --ppid "$1"); do
        echo "$child"
        descendants "$child"
    done
}

cmd_stop() {
    stop_cluster
    stop_pidfile "$STATE/munged.pid" munged
}

cmd_status() {
    scontrol ping && sinfo -N -l && squeue
}

case ${1:-} in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
