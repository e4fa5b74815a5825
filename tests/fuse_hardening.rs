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

use common::{Daemon, OURS, TempDir, can_mount, is_mounted};
use serde_json::json;

/// Far longer than any wait of the tests: a request that was not
/// abandoned shows as a timeout.
const LATENCY_NS: u64 = 120_000_000_000;

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
    fn new(tag: &str, latency_ns: u64) -> Slow {
        let dir = TempDir::new(tag);
        let mnt = dir.join("mnt");
        File::create(&mnt).expect("mountpoint file");
        let args = vec![
            "--blockdev".to_string(),
            format!("null-co,node-name=n,size=1048576,latency-ns={latency_ns}"),
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
/// export goes at once rather than when the answer is ready. The daemon
/// then flushes the node on its way out, which on this node takes one
/// latency too (in qsd as well), so the exit comes after one latency
/// with the fix and after two without it (the read's rest, then the
/// flush). The monitor may be gone before BLOCK_EXPORT_DELETED is sent,
/// so the exit is what is measured.
#[test]
fn quit_with_a_request_in_flight_does_not_wait_for_it() {
    if !can_mount("quit_in_flight") {
        return;
    }
    const LATENCY: Duration = Duration::from_secs(4);
    let mut s = Slow::new("fuse-hard-quit", LATENCY.as_nanos() as u64);
    s.start_read();
    let mut q = s.daemon().qmp();
    let start = Instant::now();
    q.send(&json!({"execute": "quit"}));
    let deadline = start + 4 * LATENCY;
    let status = loop {
        if let Some(st) = s.daemon().child.try_wait().expect("try_wait") {
            break st;
        }
        assert!(Instant::now() < deadline, "the daemon did not exit");
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = start.elapsed();
    assert!(status.success(), "exit {status}");
    assert!(
        took < LATENCY * 7 / 4,
        "exit took {took:?}: shutdown waited for the request in flight"
    );
    assert!(!is_mounted(&s.mnt), "quit left the mount behind");
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
    let mut s = Slow::new("fuse-hard-del", LATENCY_NS);
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
