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
# The VM tests (tests/vhost_user_blk_vm.rs) need
# qemu-system-x86_64, a Debian kernel and busybox-static for the guest's
# initramfs (xz-utils: a test packs a module as .ko.xz). bookworm's own
# qemu-system-x86 is 7.2 and installing it replaces qemu-utils 10.0.2
# (qemu-img, qemu-storage-daemon) with 7.2: both come from
# bookworm-backports, where they are 10.0.2. The kernel, busybox and xz
# come from bookworm itself (-t bookworm-backports would also upgrade
# systemd to the backports one).
vm_tools_ok() {
    need qemu-system-x86_64 && need qemu-img && need xz && [ -x /bin/busybox ] &&
        dpkg -s busybox-static >/dev/null 2>&1 &&
        compgen -G '/boot/vmlinuz-*' >/dev/null &&
        [[ "$(qemu-storage-daemon --version 2>/dev/null)" == "qemu-storage-daemon version 10.0.2 "* ]]
}
if ! vm_tools_ok; then
    backports=/etc/apt/sources.list.d/bookworm-backports.sources
    [ -e "$backports" ] || cat >"$backports" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -t bookworm-backports qemu-system-x86 qemu-utils
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        linux-image-amd64 busybox-static xz-utils
    vm_tools_ok || {
        echo "test.sh: after installing, the VM tests' tools are still wrong:" >&2
        echo "  need qemu-system-x86_64, qemu-img, xz, busybox-static, /boot/vmlinuz-*," >&2
        echo "  and qemu-storage-daemon 10.0.2; qemu-storage-daemon says:" >&2
        qemu-storage-daemon --version >&2 || true
        exit 1
    }
fi
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
