//! Hardening with NBD in the picture (issue 22): an inherited descriptor
//! has one owner (monitor or NBD server, never both), and pooled buffers
//! never carry one client's bytes into another's reply. Every test drives
//! the real binary.

// Needs the NBD backend.
#![cfg(feature = "nbd")]

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::process::{Command, Stdio};

use serde_json::json;

use common::{Daemon, OURS, Qmp, TempDir, run_to_exit, strings};

/// Starts our daemon with `fd` inherited (close-on-exec cleared in the
/// child only).
fn spawn_with_fd(fd: i32, args: &[String]) -> Daemon {
    let mut cmd = Command::new(OURS);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    common::inherit_fd(&mut cmd, fd);
    Daemon {
        child: cmd.spawn().expect("spawn the daemon"),
        qmp_path: None,
    }
}

fn in_use(fd: i32) -> String {
    format!("File descriptor '{fd}' is already in use: each inherited descriptor can be used once")
}

#[test]
fn one_inherited_descriptor_cannot_have_two_owners_on_the_command_line() {
    let dir = TempDir::new("fd-twice");
    let listener = UnixListener::bind(dir.join("l.sock")).expect("bind");
    let fd = listener.as_raw_fd();
    let chardev = format!("socket,id=m,fd={fd},server=on,wait=off");
    let nbd = format!("addr.type=fd,addr.str={fd}");
    // Monitor first, then the NBD server; and the other way round; and
    // two chardevs. Before: an abort on an I/O-safety violation (debug) or
    // a double close (release).
    let orders = [
        (
            strings(&[
                "--chardev",
                &chardev,
                "--monitor",
                "chardev=m",
                "--nbd-server",
                &nbd,
            ]),
            format!("--nbd-server {nbd}"),
        ),
        (
            strings(&[
                "--nbd-server",
                &nbd,
                "--chardev",
                &chardev,
                "--monitor",
                "chardev=m",
            ]),
            format!("--chardev {chardev}"),
        ),
        (
            strings(&[
                "--chardev",
                &chardev,
                "--chardev",
                &format!("socket,id=m2,fd={fd},server=on,wait=off"),
            ]),
            format!("--chardev socket,id=m2,fd={fd},server=on,wait=off"),
        ),
    ];
    for (args, option) in orders {
        let mut d = spawn_with_fd(fd, &args);
        let (status, err) = d.wait();
        assert_eq!(status.code(), Some(1), "{args:?}: {status} {err}");
        assert_eq!(
            err,
            format!("storage-daemon: {option}: {}\n", in_use(fd)),
            "{args:?}"
        );
    }
}

#[test]
fn the_daemons_own_sockets_cannot_be_named_as_inherited() {
    // Every number from 3 up is either not a socket or one of the daemon's
    // own (its monitor's listener, tokio's signal pipe): none may be taken
    // over, and the daemon must exit cleanly, not abort.
    let dir = TempDir::new("fd-own");
    let qmp = dir.join("qmp.sock");
    let mut refused_in_use = 0;
    for fd in 3..12 {
        let (code, _, err) = run_to_exit(
            OURS,
            &strings(&[
                "--chardev",
                &format!("socket,id=m,path={qmp},server=on,wait=off"),
                "--monitor",
                "chardev=m",
                "--nbd-server",
                &format!("addr.type=fd,addr.str={fd}"),
            ]),
        );
        assert_eq!(code, 1, "fd {fd}: {err}");
        if err.ends_with(&format!("{}\n", in_use(fd))) {
            refused_in_use += 1;
        } else {
            assert!(
                err.ends_with(&format!("File descriptor '{fd}' is not a socket\n")),
                "fd {fd}: {err}"
            );
        }
    }
    assert!(
        refused_in_use > 0,
        "the monitor's own socket was never named"
    );
}

#[test]
fn nbd_server_start_on_the_monitors_descriptor_leaves_the_monitor_serving() {
    let dir = TempDir::new("fd-qmp");
    let path = dir.join("m.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    let fd = listener.as_raw_fd();
    let mut d = spawn_with_fd(
        fd,
        &strings(&[
            "--chardev",
            &format!("socket,id=m,fd={fd},server=on,wait=off"),
            "--monitor",
            "chardev=m",
        ]),
    );
    drop(listener);
    let mut q = Qmp::connect(&path);
    q.negotiate();
    let e = q.err(
        "nbd-server-start",
        json!({"addr": {"type": "fd", "data": {"str": fd.to_string()}}}),
    );
    assert_eq!(e.desc, "only QEMU supports file descriptor passing");
    // With a server running, the descriptor is not looked at either.
    q.cmd(
        "nbd-server-start",
        json!({"addr": {"type": "unix", "data": {"path": dir.join("nbd.sock")}}}),
    );
    let e = q.err(
        "nbd-server-start",
        json!({"addr": {"type": "fd", "data": {"str": fd.to_string()}}}),
    );
    assert_eq!(e.desc, "NBD server already running");
    q.alive();
    // The listener still accepts.
    let mut q2 = Qmp::connect(&path);
    q2.negotiate();
    q2.alive();
    assert!(d.is_running(), "daemon exited: {:?}", d.wait());
}

/// Client A writes a pattern to a null-co node and reads back; client B
/// reads: both must get zeroes, never bytes an earlier request left in a
/// pooled buffer (qsd 10.0.2 returns A's bytes to both).
const LEAK_SCRIPT: &str = r#"
import nbd, sys
uri = sys.argv[1]
a = nbd.NBD(); a.connect_uri(uri)
b = nbd.NBD(); b.connect_uri(uri)
pat = b"\xa5secret!" * 8192
for size in (len(pat), 4096, 512, 1):
    for _ in range(3):
        a.pwrite(pat, 0)
    print("a %d %d" % (size, a.pread(size, 0).count(0)))
    print("b %d %d" % (size, b.pread(size, 0).count(0)))
a.shutdown()
c = nbd.NBD(); c.connect_uri(uri)
print("c %d %d" % (len(pat), c.pread(len(pat), 0).count(0)))
"#;

#[test]
fn null_reads_never_return_an_earlier_requests_bytes() {
    let dir = TempDir::new("null-leak");
    let sock = dir.join("nbd.sock");
    let mut d = Daemon::start(
        OURS,
        &dir,
        &strings(&[
            "--blockdev",
            "null-co,node-name=n,read-zeroes=off",
            "--nbd-server",
            &format!("addr.type=unix,addr.path={sock}"),
            "--export",
            "nbd,id=e,node-name=n,name=x,writable=on",
        ]),
    );
    d.wait_for_socket(&sock);
    let (code, out, err) =
        common::nbdsh_script(LEAK_SCRIPT, &[&format!("nbd+unix:///x?socket={sock}")]);
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 9, "{out}");
    for l in lines {
        // "<client> <size> <zero bytes>": every byte read is zero.
        let f: Vec<&str> = l.split(' ').collect();
        assert_eq!(f.get(1), f.get(2), "{l}: not all zeroes ({out})");
    }
}
