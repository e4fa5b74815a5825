#!/usr/bin/env bash
# QMP benchmark: query-version round trips per second on one connection,
# and time from spawn to the QMP greeting, for qemu-storage-daemon and
# ours, alternating in one run. Prints medians and our/qsd ratios.
#
#   bench/qmp.sh                  # REPS=5 N=2000
# Uses ../shared/bench/pb_helper.py (the yardstick's helper).
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-5}
N=${N:-2000}
HELPER=${HELPER:-../shared/bench/pb_helper.py}
[ -f "$HELPER" ] || { echo "missing $HELPER (the yardstick lives in ../shared/bench)" >&2; exit 1; }
command -v qemu-storage-daemon >/dev/null || { echo "qemu-storage-daemon is not installed (apt-get install qemu-utils)" >&2; exit 1; }
cargo build --release -q --bin storage-daemon
OURS=$PWD/target/release/storage-daemon
WORK=$(mktemp -d)
trap 'pkill -P $$ 2>/dev/null || true; rm -rf "$WORK"' EXIT

run_one() { # binary -> "rate start_ms"
  local bin=$1 sock=$WORK/qmp.sock t0=$WORK/t0
  rm -f "$sock" "$t0" "$t0.armed"
  # The poller arms before the spawn so its own start-up is not counted.
  python3 "$HELPER" wait "$t0" 10 --qmp "$sock" >"$WORK/ready" &
  local wpid=$!
  for _ in $(seq 1 500); do [ -e "$t0.armed" ] && break; sleep 0.01; done
  echo "$EPOCHREALTIME" >"$t0"
  "$bin" --chardev "socket,id=m,path=$sock,server=on,wait=off" --monitor chardev=m </dev/null >/dev/null 2>&1 &
  local pid=$!
  wait "$wpid" || { kill "$pid" 2>/dev/null; echo "server did not greet" >&2; return 1; }
  local start rate
  start=$(awk '/qmp_greeting_ms/ {print $2}' "$WORK/ready")
  rate=$(python3 "$HELPER" qmp-rate "$sock" query-version "$N" | awk '{print $1}')
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "$rate $start"
}

declare -a qr qs or os_
for i in $(seq "$REPS"); do
  read -r r s < <(run_one qemu-storage-daemon); qr+=("$r"); qs+=("$s")
  read -r r s < <(run_one "$OURS"); or+=("$r"); os_+=("$s")
done
med() { python3 -c "import statistics,sys; print(statistics.median(map(float, sys.argv[1:])))" "$@"; }
mq=$(med "${qr[@]}"); mo=$(med "${or[@]}"); sq=$(med "${qs[@]}"); so=$(med "${os_[@]}")
python3 - "$mq" "$mo" "$sq" "$so" "$REPS" <<'PY'
import sys
mq, mo, sq, so, reps = map(float, sys.argv[1:])
print(f"qmp query-version rate: qsd {mq:.0f}/s, ours {mo:.0f}/s, ratio {mo/mq:.2f}x (median of {int(reps)})")
print(f"spawn to greeting: qsd {sq:.1f} ms, ours {so:.1f} ms, ratio {so/sq:.2f}x (lower is better)")
PY
