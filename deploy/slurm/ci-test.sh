#!/usr/bin/env bash
# CI: a real one-node Slurm cluster on this machine (Debian's slurm-wlm and munge, run
# as root, no cgroups), the sharded run submitted with deploy/slurm/ualhunt-array.sh
# over testdata/ and generated archives with 4 array tasks per stage, and the merged
# reports compared byte for byte with a single run's (json, csv, ndjson, table).
#
# Usage (as root): deploy/slurm/ci-test.sh [UALHUNT_BINARY]   (default target/release/ualhunt)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
bin=$(realpath "${1:-target/release/ualhunt}")
shards=4

if [ "$(id -u)" != 0 ]; then
  echo "slurm ci-test: needs root (it starts munged, slurmctld and slurmd)" >&2
  exit 2
fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

work=$(mktemp -d /tmp/ualhunt-slurm.XXXXXX)
conf=$work/etc
mkdir -p "$conf" "$work/spool/ctld" "$work/spool/d" "$work/run" "$work/log"
export SLURM_CONF=$conf/slurm.conf

cleanup() {
  local status=$?
  scontrol shutdown >/dev/null 2>&1 || true
  sleep 1
  for pidfile in "$work/run/slurmd.pid" "$work/run/slurmctld.pid" "$work/run/munged.pid"; do
    [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  if [ "$status" != 0 ]; then
    echo "--- slurm ci-test failed; logs:" >&2
    tail -n 30 "$work"/log/*.log "$work"/parts/logs/*.log 2>/dev/null >&2 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# munge: a key of our own, a socket of our own.
head -c 1024 /dev/urandom >"$work/munge.key"
chmod 400 "$work/munge.key"
mkdir -p "$work/munge"
chmod 700 "$work/munge"
munged --force --key-file="$work/munge.key" --socket="$work/munge/munge.socket" \
  --pid-file="$work/run/munged.pid" --log-file="$work/log/munged.log" --seed-file="$work/munge/seed"

cpus=$(nproc)
mem=$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.8 }' /proc/meminfo)
cat >"$SLURM_CONF" <<CONF
ClusterName=ualhunt-ci
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$work/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$work/spool/ctld
SlurmdSpoolDir=$work/spool/d
SlurmctldPidFile=$work/run/slurmctld.pid
SlurmdPidFile=$work/run/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
NodeName=localhost NodeHostname=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=ci Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF

slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF" -N localhost
for _ in $(seq 60); do
  if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then break; fi
  sleep 1
done
sinfo -h -o '%T' | grep -qE '^(idle|mixed|allocated)' || {
  echo "slurm ci-test: the node did not come up" >&2
  sinfo >&2 || true
  exit 1
}

# The archive: the shipped samples, the investigation storyline (bypass periods that
# cross shard boundaries), an overlapping export (duplicates across shards), gzip.
arch=$work/archive
mkdir -p "$arch"
cp -r "$root/testdata" "$arch/"
"$bin" generate --size 3M --seed 12 --scenarios 30 -o "$arch/story.jsonl" 2>/dev/null
head -c 600000 "$arch/story.jsonl" | tail -n 300 >"$arch/story-overlap.jsonl"
"$bin" generate --size 2M --seed 13 --gzip -o "$arch/more.jsonl.gz" 2>/dev/null

# One run, every format.
single=$work/single
mkdir -p "$single"
set +e
"$bin" hunt -q --format json -o "$single/findings.json" --export csv="$single/findings.csv" \
  --export ndjson="$single/findings.ndjson" --export table="$single/findings.table" "$arch" 2>/dev/null
single_status=$?
set -e

parts=$work/parts
set +e
SHARDS=$shards PARTS=$parts UALHUNT=$bin FORMAT=json OUT=$parts/findings.json WAIT=1 \
  MERGE_ARGS="--export csv=$parts/findings.csv --export ndjson=$parts/findings.ndjson --export table=$parts/findings.table" \
  SBATCH_ARGS="--time=00:10:00" \
  deploy/slurm/ualhunt-array.sh "$arch"
merge_status=$?
set -e

ls "$parts"/p1-* "$parts"/p2-* >/dev/null
p1=$(ls "$parts"/p1-* | wc -l)
p2=$(ls "$parts"/p2-* | wc -l)
failed=0
if [ "$merge_status" != "$single_status" ]; then
  echo "slurm ci-test: merge status $merge_status, single run $single_status" >&2
  failed=1
fi
for f in findings.json findings.csv findings.ndjson findings.table; do
  if cmp "$single/$f" "$parts/$f"; then
    echo "slurm ci-test: $f identical ($(wc -c <"$single/$f") bytes)"
  else
    failed=1
  fi
done
echo "slurm ci-test: $p1 scan and $p2 context partials from $shards-task arrays; merge status $merge_status"
if [ "$failed" = 0 ]; then
  echo "slurm: 1 passed, 0 failed"
else
  echo "slurm: 0 passed, 1 failed"
  exit 1
fi
