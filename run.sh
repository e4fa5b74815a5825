#!/usr/bin/env bash
# Runs the storage daemon with a useful default: a 1 GiB scratch image
# exported over NBD on 127.0.0.1:10809 (export name "scratch"), and a QMP
# monitor on /tmp/storage-daemon.qmp. Extra arguments are passed on.
set -euo pipefail
cd "$(dirname "$0")"
IMG=${IMG:-/tmp/storage-daemon-scratch.img}
QMP=${QMP:-/tmp/storage-daemon.qmp}
[ -e "$IMG" ] || truncate -s 1G "$IMG"
cat <<MSG
storage-daemon: exporting $IMG as nbd://127.0.0.1:10809/scratch
QMP monitor: $QMP   (try: python3 -m qemu.qmp.qmp_shell $QMP, or socat - UNIX-CONNECT:$QMP)
MSG
exec cargo run --release --bin storage-daemon -- \
  --blockdev "driver=file,node-name=file0,filename=$IMG" \
  --blockdev driver=raw,node-name=scratch,file=file0 \
  --nbd-server addr.type=inet,addr.host=127.0.0.1,addr.port=10809 \
  --export type=nbd,id=export0,node-name=scratch,name=scratch,writable=on \
  --chardev "socket,id=qmp0,path=$QMP,server=on,wait=off" \
  --monitor chardev=qmp0 \
  "$@"
