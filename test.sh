#!/usr/bin/env bash
# The project's test command (README.md): installs what the tests need on a
# fresh Debian 12 machine of this project's kind, then runs every check.
set -euo pipefail
cd "$(dirname "$0")"

need() { command -v "$1" >/dev/null 2>&1; }
need cargo || { echo "test.sh: cargo is missing; install Rust (rustup) first" >&2; exit 1; }
# nbdinfo and nbdcopy (libnbd-bin), nbdsh and libnbd's Python module for the
# distribution's python3 (python3-libnbd), fio with its nbd engine: the NBD
# client tests (tests/nbd_*.rs)
need nbdinfo || { apt-get update -qq && apt-get install -y -qq libnbd-bin; }
{ need nbdsh && /usr/bin/python3 -c 'import nbd' 2>/dev/null; } ||
    { apt-get update -qq && apt-get install -y -qq python3-libnbd; }
need fio || { apt-get update -qq && apt-get install -y -qq fio; }
# qemu-storage-daemon, qemu-img and qemu-io: the reference daemon of the
# differential tests and the image tools (this machine kind has them)
need qemu-storage-daemon || { apt-get update -qq && apt-get install -y -qq qemu-utils; }
# The Python QMP client (PyPI qemu.qmp) for tests/qmp_python.rs
python3 -c 'import qemu.qmp' 2>/dev/null || python3 -m pip install --quiet qemu.qmp

echo "== formatting"
cargo fmt --all --check

echo "== clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings

echo "== tests"
cargo test --workspace --all-features --no-fail-fast

echo "== generated crates for QEMU's schemas (cargo check, both feature settings)"
cargo test -p qapi-gen --test generated_crates -- --ignored --nocapture

echo "== command-line error texts against the installed qemu-storage-daemon"
cargo test -p storage-runtime --lib table_matches_live_qsd -- --ignored

echo "== each export backend alone (cargo features; tests/features.rs checks what is left out)"
for backend in nbd fuse vhost-user-blk vduse; do
    echo "-- --no-default-features --features $backend"
    cargo build -p storage-daemon --no-default-features --features "$backend"
    cargo test -p storage-daemon --no-default-features --features "$backend" --no-fail-fast
    cargo test -p storage-runtime --no-default-features --features "$backend" --no-fail-fast
done
