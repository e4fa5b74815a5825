//! FUSE exports against slow nodes and stuck users: a request in flight
//! (on a `null-co` node that takes a minute per request) must not keep
//! a deleted export, its node or the daemon's shutdown waiting, whether
//! the process that sent it runs or is stopped. Needs root and
//! /dev/fuse, like `fuse_export.rs`.

#![cfg(feature = "fuse")]

mod common;

use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, OURS, TempDir};
use serde_json::json;

/// Far longer than any wait of the tests: a request that was not
/// abandoned shows as a timeout.
const LATENCY_NS: u64 = 120_000_000_000;

fn can_mount(test: &str) -> bool {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("{test}: skipped: mounting FUSE exports needs root");
        return false;
    }
    assert!(
        std::path::Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: load the fuse module to run the FUSE tests"
    );
    true
}

fn is_mounted(path: &str) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    info.lines().any(|l| l.split(' ').nth(4) == Some(path))
}

/// Waits for `cond`, failing loudly after [`common::TIMEOUT`].
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + common::TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A daemon exporting a slow null-co node `n` as FUSE export `e`; drop
/// kills the daemon, the reader and detaches a mount left behind.
struct Slow {
    daemon: Option<Daemon>,
    reader: Option<Child>,
    mnt: String,
    _dir: TempDir,
}

impl Slow {
    fn new(tag: &str) -> Slow {
        let dir = TempDir::new(tag);
        let mnt = dir.join("mnt");
        File::create(&mnt).expect("mountpoint file");
        let args = vec![
            "--blockdev".to_string(),
            format!("null-co,node-name=n,size=1048576,latency-ns={LATENCY_NS}"),
            "--export".to_string(),
            format!("type=fuse,id=e,node-name=n,mountpoint={mnt}"),
        ];
        let daemon = Daemon::start(OURS, &dir, &args);
        let s = Slow {
            daemon: Some(daemon),
            reader: None,
            mnt,
            _dir: dir,
        };
        wait_until("the export is mounted", || is_mounted(&s.mnt));
        s
    }

    fn daemon(&mut self) -> &mut Daemon {
        self.daemon.as_mut().expect("daemon")
    }

    /// Starts a process reading the export with O_DIRECT (a synchronous
    /// FUSE READ) and waits until it sleeps waiting for the answer.
    fn start_read(&mut self) -> i32 {
        let child = Command::new("dd")
            .arg(format!("if={}", self.mnt))
            .args(["of=/dev/null", "bs=4096", "count=1", "iflag=direct"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dd");
        let pid = i32::try_from(child.id()).expect("pid");
        self.reader = Some(child);
        // request_wait_answer: the kernel sent the request to the daemon
        // and waits for its reply.
        wait_until("the read is in flight", || {
            std::fs::read_to_string(format!("/proc/{pid}/wchan"))
                .is_ok_and(|w| w.trim() == "request_wait_answer")
        });
        pid
    }

    /// Waits for the reader to end; it must have failed (no answer came).
    fn reader_fails(&mut self) {
        let mut child = self.reader.take().expect("a reader");
        let deadline = Instant::now() + common::TIMEOUT;
        let status = loop {
            if let Some(s) = child.try_wait().expect("try_wait") {
                break s;
            }
            assert!(Instant::now() < deadline, "the reader still waits");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(!status.success(), "the read succeeded");
    }
}

impl Drop for Slow {
    fn drop(&mut self) {
        if let Some(mut r) = self.reader.take() {
            // SAFETY: kill(2) on our own child (it may be stopped).
            unsafe { libc::kill(r.id() as i32, libc::SIGCONT) };
            let _ = r.kill();
            let _ = r.wait();
        }
        drop(self.daemon.take());
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

/// `quit` (and so SIGTERM, the same path) with a READ in flight: the
/// export goes at once (BLOCK_EXPORT_DELETED, the mount detached, the
/// reader failed) rather than after the node's two minutes. Before
/// requests were abandoned on stop, shutdown waited for the answer.
/// (The daemon then flushes the node on its way out, which on this
/// node takes as long as any request, in qsd too: the test does not wait
/// for the exit.)
#[test]
fn quit_with_a_request_in_flight_removes_the_export_at_once() {
    if !can_mount("quit_in_flight") {
        return;
    }
    let mut s = Slow::new("fuse-hard-quit");
    s.start_read();
    let mut q = s.daemon().qmp();
    q.send(&json!({"execute": "quit"}));
    // The reply to quit may come before the event or after it.
    let event = loop {
        let m = q.recv();
        if m.get("event").is_some() {
            break m;
        }
        assert_eq!(m, json!({"return": {}}), "quit failed");
    };
    assert_eq!(
        common::strip_timestamp(event),
        json!({"event": "BLOCK_EXPORT_DELETED", "data": {"id": "e"}})
    );
    assert!(!is_mounted(&s.mnt), "still mounted after the event");
    s.reader_fails();
}

/// block-export-del mode=hard while a READ is in flight and the process
/// that sent it is stopped (SIGSTOP): BLOCK_EXPORT_DELETED comes, the
/// node is free for blockdev-del, the mount is gone, and the process
/// fails its read once it runs again.
#[test]
fn hard_delete_with_a_stopped_reader_frees_the_node() {
    if !can_mount("hard_del_in_flight") {
        return;
    }
    let mut s = Slow::new("fuse-hard-del");
    let pid = s.start_read();
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let mut q = s.daemon().qmp();
    q.cmd("block-export-del", json!({"id": "e", "mode": "hard"}));
    assert_eq!(
        common::strip_timestamp(q.event()),
        json!({"event": "BLOCK_EXPORT_DELETED", "data": {"id": "e"}})
    );
    assert_eq!(q.cmd("query-block-exports", json!(null)), json!([]));
    assert!(!is_mounted(&s.mnt), "still mounted after the event");
    q.cmd("blockdev-del", json!({"node-name": "n"}));
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    s.reader_fails();
    // Nothing of the export is left to wait for.
    q.cmd("quit", json!(null));
    let (status, err) = s.daemon().wait();
    assert!(status.success(), "exit {status}: {err}");
}
