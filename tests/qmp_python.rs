//! The daemon driven by the Python `qemu.qmp` package (`QMPClient`), the
//! client QEMU's own test suites and tools are built on: connection and
//! negotiation, typed results, `ExecuteError`s, events and `quit`. The
//! same script runs against qemu-storage-daemon, to show that what it
//! expects is what QEMU does.
//!
//! `qemu.qmp` missing is a failure, not a skip: `./test.sh` installs it.

// The script starts an NBD server and export.
#![cfg(feature = "nbd")]

mod common;

use std::process::Command;

use common::{Daemon, OURS, QSD, TempDir};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/python/qmp_client_test.py"
);

fn require_qemu_qmp() {
    let out = Command::new("python3")
        .args(["-c", "import qemu.qmp"])
        .output()
        .expect("python3 is needed for this test");
    assert!(
        out.status.success(),
        "the Python package qemu.qmp is missing (pip install qemu.qmp; ./test.sh does it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run_script(bin: &str) {
    require_qemu_qmp();
    let dir = TempDir::new("python");
    let mut d = Daemon::start(bin, &dir, &[]);
    let out = Command::new("python3")
        .arg(SCRIPT)
        .arg(d.qmp_path.as_deref().expect("monitor"))
        .arg(dir.join("nbd.sock"))
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{SCRIPT} against {bin} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "connected and negotiated",
            "typed results",
            "errors",
            "events",
            "quit"
        ]
    );
    // The script's quit ended the daemon.
    let (status, _) = d.wait();
    assert!(status.success(), "{bin} exit status {status}");
}

#[test]
fn qemu_qmp_client_against_ours() {
    run_script(OURS);
}

#[test]
fn qemu_qmp_client_against_qsd() {
    common::require(QSD);
    run_script(QSD);
}
