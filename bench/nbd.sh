#!/usr/bin/env bash
# NBD benchmark: our storage-daemon, qemu-storage-daemon and nbdkit's file
# plugin alternating in one run (see bench/nbd.py for what is measured).
#
#   bench/nbd.sh                       # REPS=3 DUR=3 IMG_SIZE=1024 (MiB)
#   METRICS=qimg.read4k.qd16 SERVERS=ours,qsd bench/nbd.sh
set -euo pipefail
cd "$(dirname "$0")/.."
need() { command -v "$1" >/dev/null 2>&1; }
missing=()
for t in qemu-img qemu-storage-daemon fio nbdkit nbdcopy; do need "$t" || missing+=("$t"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench/nbd.sh: installing ${missing[*]} (apt-get: qemu-utils fio nbdkit libnbd-bin)" >&2
  apt-get update -qq && apt-get install -y -qq qemu-utils fio nbdkit libnbd-bin >/dev/null
fi
fio --enghelp=nbd >/dev/null 2>&1 || { echo "bench/nbd.sh: this fio has no nbd engine" >&2; exit 1; }
cargo build --release -q --bin storage-daemon
export OURS=${OURS:-${CARGO_TARGET_DIR:-$PWD/target}/release/storage-daemon}; exec python3 bench/nbd.py
