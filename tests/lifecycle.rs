//! The daemon's life: `quit` and the termination signals end it with
//! status 0 and remove its pid file and monitor sockets (as qsd exits 0
//! on them); `--daemonize` returns in the parent once startup is done,
//! or fails with status 1; `--pidfile` holds the pid and keeps a second
//! instance out, as in qsd.

// The daemon under test has an NBD export.
#![cfg(feature = "nbd")]

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, OURS, QSD, Qmp, TempDir, exists, strings};
use serde_json::{Value, json};

/// A daemon with two monitors, a pid file, an image and an NBD export.
fn start_full(bin: &str, dir: &TempDir) -> (Daemon, [String; 3]) {
    let img = dir.join("img.raw");
    common::create_image(&img, "1M");
    let (m2, pid) = (dir.join("m2.sock"), dir.join("pid"));
    let mut d = Daemon::start(
        bin,
        dir,
        &strings(&[
            "--chardev",
            &format!("socket,id=m2,path={m2},server=on,wait=off"),
            "--monitor",
            "chardev=m2",
            "--blockdev",
            &format!("driver=file,node-name=f,filename={img}"),
            "--nbd-server",
            &format!("addr.type=unix,addr.path={}", dir.join("nbd.sock")),
            "--export",
            "type=nbd,id=e,node-name=f,writable=on",
            "--pidfile",
            &pid,
        ]),
    );
    d.wait_for_socket(&m2);
    let deadline = Instant::now() + common::TIMEOUT;
    while std::fs::read_to_string(&pid).map_or(true, |s| s.is_empty()) {
        assert!(Instant::now() < deadline, "no pid file");
        std::thread::sleep(Duration::from_millis(5));
    }
    let qmp = d.qmp_path.clone().expect("monitor");
    (d, [qmp, m2, pid])
}

/// After the end: status 0, files gone (for ours), image unlocked.
fn check_clean_exit(d: &mut Daemon, dir: &TempDir, files: &[String; 3], bin: &str) {
    let (status, err) = d.wait();
    assert_eq!(status.code(), Some(0), "{bin}: {status} {err}");
    if bin == OURS {
        for f in files {
            assert!(!exists(f), "{f} left behind");
        }
    }
    let out = std::process::Command::new("qemu-io")
        .args(["-f", "raw", "-c", "write 0 512", &dir.join("img.raw")])
        .output()
        .expect("qemu-io");
    assert!(out.status.success(), "{bin}: image still locked: {out:?}");
}

#[test]
fn quit_ends_cleanly() {
    common::require("qemu-io");
    common::require(QSD);
    for bin in [QSD, OURS] {
        let dir = TempDir::new("life-quit");
        let (mut d, files) = start_full(bin, &dir);
        let pid: i32 = std::fs::read_to_string(&files[2])
            .expect("pid file")
            .trim()
            .parse()
            .expect("a pid");
        assert_eq!(pid, d.pid());
        let mut other = Qmp::connect(&files[1]);
        other.negotiate();
        let mut q = d.qmp();
        q.send(&json!({"execute": "quit", "id": 1}));
        // qsd ends its exports before it answers: event, reply, close.
        let ev = q.recv();
        assert_eq!(ev["event"], "BLOCK_EXPORT_DELETED", "{bin}: {ev}");
        assert_eq!(ev["data"], json!({"id": "e"}), "{bin}");
        assert_eq!(q.recv(), json!({"return": {}, "id": 1}), "{bin}");
        assert!(q.closed(), "{bin}");
        // The other monitor hears of it too.
        let ev = other.recv();
        assert_eq!(ev["event"], "BLOCK_EXPORT_DELETED", "{bin}: {ev}");
        check_clean_exit(&mut d, &dir, &files, bin);
    }
}

#[test]
fn signals_end_cleanly_like_qsd() {
    common::require(QSD);
    common::require("qemu-io");
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        for bin in [QSD, OURS] {
            let dir = TempDir::new("life-sig");
            let (mut d, files) = start_full(bin, &dir);
            let mut q = d.qmp();
            q.alive();
            d.signal(sig);
            // Exports end before the monitors close: the event arrives.
            let ev = q.recv();
            assert_eq!(ev["event"], "BLOCK_EXPORT_DELETED", "{bin} {sig}: {ev}");
            assert!(q.closed(), "{bin} {sig}");
            check_clean_exit(&mut d, &dir, &files, bin);
        }
    }
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z')),
    }
}

fn wait_gone(pid: i32) {
    let deadline = Instant::now() + common::TIMEOUT;
    while !gone(pid) {
        assert!(Instant::now() < deadline, "daemon {pid} still running");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn daemonize_returns_after_startup() {
    let dir = TempDir::new("life-daemonize");
    let (qmp, pidfile) = (dir.join("qmp.sock"), dir.join("pid"));
    let args = strings(&[
        "--daemonize",
        "--chardev",
        &format!("socket,id=m,path={qmp},server=on,wait=off"),
        "--monitor",
        "chardev=m",
        "--blockdev",
        "null-co,node-name=n0",
        "--pidfile",
        &pidfile,
    ]);
    let (code, out, err) = common::run_to_exit(OURS, &args);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    // Startup is complete when the parent returns: socket and pid file
    // exist, and the daemon (not the parent) is named in the pid file.
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("pid file written before the parent returned")
        .trim()
        .parse()
        .expect("a pid");
    assert!(!gone(pid), "the daemon is not running");
    let mut q = Qmp::connect(&qmp);
    q.negotiate();
    assert_eq!(
        q.cmd("query-named-block-nodes", Value::Null)[0]["node-name"],
        "n0"
    );
    // It still ends on quit, and cleans up.
    q.cmd("quit", Value::Null);
    wait_gone(pid);
    let deadline = Instant::now() + common::TIMEOUT;
    while exists(&pidfile) || exists(&qmp) {
        assert!(Instant::now() < deadline, "files left behind");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn daemonize_fails_when_startup_fails() {
    common::require(QSD);
    let dir = TempDir::new("life-daemonize-fail");
    let qmp = dir.join("qmp.sock");
    let mut results = Vec::new();
    for bin in [QSD, OURS] {
        let args = strings(&[
            "--daemonize",
            "--chardev",
            &format!("socket,id=m,path={qmp},server=on,wait=off"),
            "--monitor",
            "chardev=m",
            "--blockdev",
            "driver=nope,node-name=n0",
            "--pidfile",
            &dir.join("pid"),
        ]);
        let (code, _, err) = common::run_to_exit(bin, &args);
        let err = err
            .replace("qemu-storage-daemon: ", "PROG: ")
            .replace("storage-daemon: ", "PROG: ");
        results.push((code, err));
        assert!(!exists(&dir.join("pid")), "{bin}: pid file");
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(results[1].0, 1);
    assert!(!exists(&qmp), "our monitor socket left behind");
}

#[test]
fn second_instance_with_the_same_pidfile_fails_like_qsd() {
    common::require(QSD);
    let mut results = Vec::new();
    for bin in [QSD, OURS] {
        let dir = TempDir::new("life-pidfile");
        let pidfile = dir.join("pid");
        let mut first = Daemon::start(bin, &dir, &strings(&["--pidfile", &pidfile]));
        let deadline = Instant::now() + common::TIMEOUT;
        while std::fs::read_to_string(&pidfile).map_or(true, |s| s.is_empty()) {
            assert!(Instant::now() < deadline, "no pid file");
            std::thread::sleep(Duration::from_millis(5));
        }
        let content = std::fs::read_to_string(&pidfile).expect("pid file");
        assert_eq!(content, format!("{}\n", first.pid()), "{bin}");
        let second_sock = dir.join("second.sock");
        let (code, _, err) = common::run_to_exit(
            bin,
            &strings(&[
                "--chardev",
                &format!("socket,id=m,path={second_sock},server=on,wait=off"),
                "--monitor",
                "chardev=m",
                "--pidfile",
                &pidfile,
            ]),
        );
        // The first instance's file is untouched, and it still runs.
        assert_eq!(
            std::fs::read_to_string(&pidfile).ok(),
            Some(content),
            "{bin}"
        );
        assert!(first.is_running());
        first.qmp().alive();
        if bin == OURS {
            assert!(!exists(&second_sock), "second monitor socket left");
        }
        let err = err
            .replace("qemu-storage-daemon: ", "PROG: ")
            .replace("storage-daemon: ", "PROG: ");
        results.push((code, err));
        first.signal(libc::SIGTERM);
        assert!(first.wait().0.success());
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(
        results[1],
        (
            1,
            "PROG: cannot create PID file: Cannot lock pid file: Resource temporarily unavailable\n"
                .to_string()
        )
    );
}
