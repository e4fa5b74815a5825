//! A client that stalls in the transmission phase (mid-payload, or not
//! reading its replies) must not keep an export alive: hard removal,
//! `nbd-server-stop`, `quit` and SIGTERM cut it off at once, the export
//! is reported deleted and its node is free again.
//!
//! A client stalled mid-payload is checked against qemu-storage-daemon
//! 10.0.2 too, which cuts it off at once. A client that does not read its
//! replies hangs qsd 10.0.2 (no BLOCK_EXPORT_DELETED after a hard del;
//! `nbd-server-stop`, `quit` and SIGTERM never finish): there we do
//! better and the case runs against ours only.

// Needs the NBD backend.
#![cfg(feature = "nbd")]

mod common;

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::json;

use common::{Daemon, OURS, QSD, TIMEOUT, TempDir, require};

const REQ_MAGIC: u32 = 0x2560_9513;
const READ: u16 = 0;
const WRITE: u16 = 1;

/// How the client stalls.
#[derive(Clone, Copy, Debug)]
enum Stall {
    /// A 1 MiB WRITE header and 10 bytes of its payload, then nothing.
    MidPayload,
    /// 16 READs of 1 MiB whose replies it never reads.
    NotReading,
}

/// What ends the export.
#[derive(Clone, Copy, Debug)]
enum Cut {
    HardDel,
    ServerStop,
    Quit,
    Sigterm,
}

struct Side {
    d: Daemon,
    dir: TempDir,
}

impl Side {
    fn start(bin: &str) -> Side {
        let dir = TempDir::new(if bin == OURS {
            "nbd-stall-ours"
        } else {
            "nbd-stall-qsd"
        });
        let img = dir.join("disk.img");
        common::create_image(&img, "64M");
        let sock = dir.join("nbd.sock");
        let args = common::strings(&[
            "--blockdev",
            &format!("driver=file,node-name=f,filename={img}"),
            "--nbd-server",
            &format!("addr.type=unix,addr.path={sock}"),
            "--export",
            "type=nbd,id=e,node-name=f,name=disk,writable=on",
        ]);
        let mut d = Daemon::start(bin, &dir, &args);
        d.wait_for_socket(&sock);
        Side { d, dir }
    }
}

fn request(ty: u16, cookie: u64, off: u64, len: u32) -> Vec<u8> {
    let mut v = REQ_MAGIC.to_be_bytes().to_vec();
    v.extend_from_slice(&0u16.to_be_bytes());
    v.extend_from_slice(&ty.to_be_bytes());
    v.extend_from_slice(&cookie.to_be_bytes());
    v.extend_from_slice(&off.to_be_bytes());
    v.extend_from_slice(&len.to_be_bytes());
    v
}

/// Waits until `probe` holds, failing loudly after [`TIMEOUT`].
fn wait_until(what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !probe() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Bytes `s` sent that the server has not read yet (SIOCOUTQ).
fn unread_by_server(s: &UnixStream) -> i32 {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    assert_eq!(r, 0, "SIOCOUTQ");
    n
}

/// Bytes waiting for `s` to read (SIOCINQ).
fn waiting_for_us(s: &UnixStream) -> i32 {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(r, 0, "FIONREAD");
    n
}

/// Gets the server stuck on this client: it has read everything sent
/// and waits for more payload, or it is blocked writing replies.
fn stall(s: &mut UnixStream, how: Stall) {
    match how {
        Stall::MidPayload => {
            let mut b = request(WRITE, 1, 0, 1 << 20);
            b.extend_from_slice(&[0xa5; 10]);
            s.write_all(&b).expect("write request");
            // Consumed: the server is now reading the payload.
            wait_until("server reads the write header", || unread_by_server(s) == 0);
        }
        Stall::NotReading => {
            let mut b = Vec::new();
            for i in 0..16u64 {
                b.extend_from_slice(&request(READ, i, i << 20, 1 << 20));
            }
            s.write_all(&b).expect("read requests");
            // The first reply (1 MiB, more than a socket buffer) is on its
            // way: the server is blocked writing it.
            wait_until("server starts replying", || waiting_for_us(s) > 0);
        }
    }
}

/// The client sees its connection end (after whatever was in flight).
fn assert_cut_off(s: &mut UnixStream, what: &str) {
    let mut rest = Vec::new();
    match s.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("{what}: client still connected: {e}"),
    }
}

fn case(bin: &str, how: Stall, cut: Cut) {
    let what = format!("{bin} {how:?} {cut:?}");
    eprintln!("case: {what}");
    let mut side = Side::start(bin);
    let mut client = common::nbd_go_unix(&side.dir.join("nbd.sock"), "disk");
    stall(&mut client, how);
    let mut q = side.d.qmp();
    match cut {
        Cut::HardDel | Cut::ServerStop => {
            if let Cut::HardDel = cut {
                q.cmd("block-export-del", json!({"id": "e", "mode": "hard"}));
            } else {
                q.cmd("nbd-server-stop", json!({}));
            }
            let ev = q.event();
            assert_eq!(ev["event"], "BLOCK_EXPORT_DELETED", "{what}: {ev}");
            assert_eq!(ev["data"]["id"], "e", "{what}: {ev}");
            // The node is no longer held by the export.
            q.cmd("blockdev-del", json!({"node-name": "f"}));
            assert_cut_off(&mut client, &what);
        }
        Cut::Quit => {
            q.cmd("quit", json!({}));
            let (status, err) = side.d.wait();
            assert!(status.success(), "{what}: {status} {err}");
        }
        Cut::Sigterm => {
            side.d.signal(libc::SIGTERM);
            let (status, err) = side.d.wait();
            assert!(status.success(), "{what}: {status} {err}");
        }
    }
}

fn both(how: Stall, cut: Cut) {
    require(QSD);
    case(QSD, how, cut);
    case(OURS, how, cut);
}

/// Only ours: qsd 10.0.2 hangs on a client that does not read replies.
fn ours(how: Stall, cut: Cut) {
    case(OURS, how, cut);
}

#[test]
fn hard_del_cuts_a_client_stalled_mid_payload() {
    both(Stall::MidPayload, Cut::HardDel);
}

#[test]
fn hard_del_cuts_a_client_that_does_not_read_replies() {
    ours(Stall::NotReading, Cut::HardDel);
}

#[test]
fn server_stop_cuts_stalled_clients() {
    both(Stall::MidPayload, Cut::ServerStop);
    ours(Stall::NotReading, Cut::ServerStop);
}

#[test]
fn quit_cuts_stalled_clients() {
    both(Stall::MidPayload, Cut::Quit);
    ours(Stall::NotReading, Cut::Quit);
}

#[test]
fn sigterm_cuts_stalled_clients() {
    both(Stall::MidPayload, Cut::Sigterm);
    ours(Stall::NotReading, Cut::Sigterm);
}
