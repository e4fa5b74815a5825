#!/usr/bin/env bash
# vhost-user-blk benchmark: our storage-daemon and qemu-storage-daemon
# alternating in one run, driven by the same libblkio front end
# (tools/blkio-drive; see bench/vhost_user_blk.py for what is measured).
#
#   bench/vhost-user-blk.sh                       # REPS=5 DUR=3 IMG_SIZE=1024 (MiB)
#   REPS=3 DUR=3 METRICS=randread4k.qd32 bench/vhost-user-blk.sh
#   OURS=/path/to/storage-daemon bench/vhost-user-blk.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v qemu-storage-daemon >/dev/null 2>&1 || {
  echo "bench/vhost-user-blk.sh: qemu-storage-daemon is missing (package qemu-utils)" >&2
  exit 1
}
cargo build --release -q -p blkio-drive
target=${CARGO_TARGET_DIR:-$PWD/target}/release
export DRIVE=${DRIVE:-$target/blkio-drive}
if [ -z "${OURS:-}" ]; then
  cargo build --release -q --bin storage-daemon
  export OURS=$target/storage-daemon
fi
exec python3 bench/vhost_user_blk.py
