#!/usr/bin/env bash
# FUSE export benchmark: fio on the mounted image file, for
# qemu-storage-daemon and ours alternating in one run (qsd, ours, qsd, ...),
# each server started fresh per round. Prints the median of each metric
# and the ratio ours/qsd (higher is better for every metric here).
#
#   sudo bench/fuse.sh                 # REPS=3 DUR=5 SIZE=1G
#   REPS=1 DUR=1 SIZE=64M bench/fuse.sh   # a quick check that it works
#
# The server command line and the fio jobs are those of the yardstick's
# qsd-fuse preset (../shared/bench/peer-bench.sh, {FUSE_MNT}): a raw node
# over a file node with cache.direct=off, the image on /dev/shm, O_DIRECT
# on the FUSE file (DIRECT=0 for buffered I/O).
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
DUR=${DUR:-5}
SIZE=${SIZE:-1G}
DIRECT=${DIRECT:-1}

[ "$(id -u)" = 0 ] || { echo "bench/fuse.sh: mounting FUSE exports needs root" >&2; exit 1; }
[ -e /dev/fuse ] || { echo "bench/fuse.sh: /dev/fuse is missing (modprobe fuse)" >&2; exit 1; }
command -v qemu-storage-daemon >/dev/null || { echo "qemu-storage-daemon is not installed (apt-get install qemu-utils)" >&2; exit 1; }
command -v fio >/dev/null || { apt-get update -qq && apt-get install -y -qq fio; }
[ -d /dev/shm ] && [ -w /dev/shm ] || { echo "bench/fuse.sh: /dev/shm is not writable" >&2; exit 1; }

cargo build --release -q --bin storage-daemon
OURS=${CARGO_TARGET_DIR:-$PWD/target}/release/storage-daemon
WORK=$(mktemp -d /dev/shm/fuse-bench.XXXXXX)
IMG=$WORK/disk.img
MNT=$WORK/fuse.mnt
RESULTS=$WORK/results
SERVER_PID=""

mounted() { grep -q " $MNT " /proc/self/mountinfo; }

stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
  # A server that died without unmounting leaves the mount behind.
  if mounted; then umount -l "$MNT" 2>/dev/null || true; fi
}
trap 'stop_server; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

start_server() { # binary
  rm -f "$IMG"
  qemu-img create -q -f raw "$IMG" "$SIZE"
  : >"$MNT"
  "$1" --blockdev "driver=file,node-name=file0,filename=$IMG,cache.direct=off" \
       --blockdev driver=raw,node-name=disk,file=file0 \
       --export "type=fuse,id=exp1,node-name=disk,mountpoint=$MNT,writable=on" \
       </dev/null >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 1000); do
    mounted && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.01
  done
  echo "$1 did not mount $MNT:" >&2
  cat "$WORK/server.log" >&2
  return 1
}

# name unit fio-args...: runs fio once, appends "name unit server value".
fio_metric() {
  local server=$1 name=$2 unit=$3; shift 3
  local v
  v=$(fio --name=fuse --filename="$MNT" --size="$(stat -c %s "$IMG")" --direct="$DIRECT" \
          --time_based --runtime="$DUR" --group_reporting --output-format=json "$@" 2>/dev/null |
      python3 -c '
import json, sys
job = json.load(sys.stdin)["jobs"][0]
io = job["read"] if job["read"]["io_bytes"] > 0 else job["write"]
print(io["iops"] if sys.argv[1] == "IOPS" else io["bw"] / 1024)
' "$unit") || { echo "# $server $name: fio failed" >&2; return 0; }
  echo "$name $unit $server $v" >>"$RESULTS"
}

run_round() { # label binary
  local server=$1
  start_server "$2"
  fio_metric "$server" randread4k.psync.qd1    IOPS --ioengine=psync  --rw=randread  --bs=4k
  fio_metric "$server" randwrite4k.psync.qd1   IOPS --ioengine=psync  --rw=randwrite --bs=4k
  fio_metric "$server" randread4k.libaio.qd32  IOPS --ioengine=libaio --rw=randread  --bs=4k --iodepth=32
  fio_metric "$server" randwrite4k.libaio.qd32 IOPS --ioengine=libaio --rw=randwrite --bs=4k --iodepth=32
  fio_metric "$server" read1M.seq              MiB/s --ioengine=psync --rw=read      --bs=1M
  fio_metric "$server" write1M.seq             MiB/s --ioengine=psync --rw=write     --bs=1M
  stop_server
}

echo "# fuse bench: reps=$REPS dur=${DUR}s size=$SIZE direct=$DIRECT cpus=$(nproc) $(fio --version)"
: >"$RESULTS"
for _ in $(seq "$REPS"); do
  run_round qsd qemu-storage-daemon
  run_round ours "$OURS"
done

python3 - "$RESULTS" "$REPS" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, unit, server, value = line.split()
    rows.setdefault((name, unit), {}).setdefault(server, []).append(float(value))
print(f"{'metric':26} {'unit':6} {'qsd':>10} {'ours':>10} {'ours/qsd':>9}   (median of {sys.argv[2]})")
for (name, unit), by in rows.items():
    q = statistics.median(by["qsd"]) if by.get("qsd") else float("nan")
    o = statistics.median(by["ours"]) if by.get("ours") else float("nan")
    ratio = o / q if q else float("nan")
    print(f"{name:26} {unit:6} {q:10.1f} {o:10.1f} {ratio:8.2f}x")
PY
