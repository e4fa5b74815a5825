//! Clients that misbehave, over raw sockets, against our daemon and
//! qemu-storage-daemon 10.0.2 side by side: garbage instead of magics,
//! truncated headers, oversized options and requests, writes where none
//! may go, a stalled handshake, unknown options and commands. For each,
//! the bytes the server sends back and whether it then closes must be the
//! same as qsd's, and afterwards both still serve a well-behaved client.

// Needs the NBD backend.
#![cfg(feature = "nbd")]

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Daemon, OURS, QSD, TempDir, require, run_tool, tool_ok};

const OPT_MAGIC: &[u8] = b"IHAVEOPT";
const REQ_MAGIC: u32 = 0x2560_9513;
const MAX_BLOCK: u32 = 32 << 20;
const SIZE: u64 = 16 << 20;

/// One daemon serving `disk` (writable) and `ro` (read-only) from one
/// image, with a unix socket.
struct Side {
    _d: Daemon,
    dir: TempDir,
}

impl Side {
    fn start(bin: &str, server_extra: &str) -> Side {
        let dir = TempDir::new(if bin == OURS {
            "nbd-bad-ours"
        } else {
            "nbd-bad-qsd"
        });
        let img = dir.join("disk.img");
        common::create_image(&img, &SIZE.to_string());
        let sock = dir.join("nbd.sock");
        let args = common::strings(&[
            "--blockdev",
            &format!("driver=file,node-name=f,filename={img}"),
            "--nbd-server",
            &format!("addr.type=unix,addr.path={sock}{server_extra}"),
            "--export",
            "type=nbd,id=e,node-name=f,name=disk,writable=on",
            "--export",
            "type=nbd,id=r,node-name=f,name=ro",
        ]);
        let mut d = Daemon::start(bin, &dir, &args);
        d.wait_for_socket(&sock);
        let s = Side { _d: d, dir };
        tool_ok(Command::new("qemu-io").args([
            "-f",
            "raw",
            "-c",
            "write -P 0x5a 0 4k",
            &s.uri("disk"),
        ]));
        s
    }

    fn sock(&self) -> String {
        self.dir.join("nbd.sock")
    }

    fn uri(&self, name: &str) -> String {
        format!("nbd+unix:///{name}?socket={}", self.sock())
    }

    /// A well-behaved client still gets served.
    fn still_serves(&self, after: &str) {
        let (code, out, err) = run_tool(Command::new("qemu-io").args([
            "-f",
            "raw",
            "-r",
            "-c",
            "read -P 0x5a 0 4k",
            &self.uri("disk"),
        ]));
        assert!(
            code == 0 && !out.contains("failed"),
            "after {after}: {out}{err}"
        );
    }
}

/// What a connection got back, and how it ended.
#[derive(Debug, PartialEq)]
struct Transcript {
    bytes: Vec<u8>,
    /// True when the server closed the connection (EOF or reset).
    closed: bool,
}

fn option(opt: u32, data: &[u8]) -> Vec<u8> {
    let mut v = OPT_MAGIC.to_vec();
    v.extend_from_slice(&opt.to_be_bytes());
    v.extend_from_slice(&(data.len() as u32).to_be_bytes());
    v.extend_from_slice(data);
    v
}

/// An option header announcing `len` bytes of data that never come.
fn option_header(opt: u32, len: u32) -> Vec<u8> {
    let mut v = OPT_MAGIC.to_vec();
    v.extend_from_slice(&opt.to_be_bytes());
    v.extend_from_slice(&len.to_be_bytes());
    v
}

fn go(name: &str) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&[0, 0]);
    option(7, &d)
}

fn request(ty: u16, flags: u16, cookie: u64, off: u64, len: u32) -> Vec<u8> {
    let mut v = REQ_MAGIC.to_be_bytes().to_vec();
    v.extend_from_slice(&flags.to_be_bytes());
    v.extend_from_slice(&ty.to_be_bytes());
    v.extend_from_slice(&cookie.to_be_bytes());
    v.extend_from_slice(&off.to_be_bytes());
    v.extend_from_slice(&len.to_be_bytes());
    v
}

const DISC: u16 = 2;

/// Where a conversation starts.
#[derive(Clone, Copy)]
enum Start {
    /// Right after the 18-byte greeting.
    Greeting,
    /// In option haggling (client flags sent).
    Options,
    /// In transmission on `export`, simple replies.
    Simple(&'static str),
    /// In transmission, structured replies.
    Structured(&'static str),
}

/// Connects, gets to `start`, sends `send` (then shuts the write side
/// if `hang_up`), and collects what comes back until the server closes
/// or goes quiet. The handshake's own replies are not in the transcript.
fn converse(sock: &str, start: Start, send: &[u8], hang_up: bool) -> Transcript {
    let mut s = UnixStream::connect(sock).expect("connect");
    s.set_read_timeout(Some(common::TIMEOUT)).expect("timeout");
    let mut greeting = [0u8; 18];
    s.read_exact(&mut greeting).expect("greeting");
    assert_eq!(&greeting[..16], b"NBDMAGICIHAVEOPT");
    if !matches!(start, Start::Greeting) {
        s.write_all(&3u32.to_be_bytes()).expect("client flags");
    }
    let export = match start {
        Start::Simple(e) => Some(e),
        Start::Structured(e) => {
            s.write_all(&option(8, &[])).expect("structured reply");
            let mut ack = [0u8; 20];
            s.read_exact(&mut ack).expect("structured reply ack");
            Some(e)
        }
        _ => None,
    };
    if let Some(e) = export {
        s.write_all(&go(e)).expect("go");
        loop {
            let mut h = [0u8; 20];
            s.read_exact(&mut h).expect("go reply");
            let ty = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
            let len = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
            let mut p = vec![0u8; len as usize];
            s.read_exact(&mut p).expect("go reply data");
            assert_eq!(ty & (1 << 31), 0, "GO failed");
            if ty == 1 {
                break;
            }
        }
    }
    // A peer that stops reading may get EPIPE: that is an answer too.
    let _ = s.write_all(send);
    if hang_up {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .expect("timeout");
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break false,
        }
    };
    Transcript { bytes, closed }
}

/// Both daemons and the connection that stays open through every case.
struct Both {
    sides: Vec<Side>,
}

impl Both {
    fn start(server_extra: &str) -> Both {
        require(QSD);
        Both {
            sides: vec![
                Side::start(QSD, server_extra),
                Side::start(OURS, server_extra),
            ],
        }
    }

    /// Runs one case against both (at the same time); the transcripts
    /// must match; returns ours for further checks.
    fn case(&self, what: &str, start: Start, send: &[u8], hang_up: bool) -> Transcript {
        let mut got: Vec<Transcript> = std::thread::scope(|sc| {
            let hs: Vec<_> = self
                .sides
                .iter()
                .map(|side| sc.spawn(move || converse(&side.sock(), start, send, hang_up)))
                .collect();
            hs.into_iter()
                .map(|h| h.join().expect("conversation"))
                .collect()
        });
        let ours = got.pop().expect("ours");
        let qsd = got.pop().expect("qsd");
        assert_eq!(
            ours.closed, qsd.closed,
            "{what}: ours closed={} qsd closed={}",
            ours.closed, qsd.closed
        );
        assert_eq!(
            String::from_utf8_lossy(&ours.bytes),
            String::from_utf8_lossy(&qsd.bytes),
            "{what}: ours (left) and qsd (right) answered differently"
        );
        for side in &self.sides {
            side.still_serves(what);
        }
        ours
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The error of a simple reply at the start of `t`.
fn simple_error(t: &Transcript) -> u32 {
    assert!(t.bytes.len() >= 16, "no simple reply: {t:?}");
    assert_eq!(be32(&t.bytes, 0), 0x6744_6698, "{t:?}");
    be32(&t.bytes, 4)
}

const EINVAL: u32 = 22;
const ABORT: u32 = 2;

#[test]
fn handshake_garbage_and_odd_options() {
    let b = Both::start("");
    // Something else than NBD entirely.
    let t = b.case(
        "HTTP instead of client flags",
        Start::Greeting,
        b"GET / HTTP/1.1\r\n\r\n",
        false,
    );
    assert!(t.closed && t.bytes.is_empty(), "{t:?}");
    let t = b.case(
        "bad option magic",
        Start::Options,
        b"IHAVEOPX\0\0\0\x07\0\0\0\0",
        false,
    );
    assert!(t.closed, "{t:?}");
    // Truncated option headers, then the client hangs up.
    for cut in [3, 8, 12, 15] {
        let t = b.case(
            &format!("option header cut at {cut}"),
            Start::Options,
            &go("disk")[..cut],
            true,
        );
        assert!(t.closed && t.bytes.is_empty(), "{t:?}");
    }
    let t = b.case("client flags cut", Start::Greeting, &[0, 0], true);
    assert!(t.closed && t.bytes.is_empty(), "{t:?}");
    // Oversized options: dropped at once, without reading 1 GiB.
    for opt in [7, 3, 99] {
        let t = b.case(
            &format!("option {opt} of 1 GiB"),
            Start::Options,
            &option_header(opt, 1 << 30),
            false,
        );
        assert!(t.closed && t.bytes.is_empty(), "{t:?}");
    }
    let mut big = option_header(7, 1 << 30);
    big.extend_from_slice(&[0; 100_000]);
    let t = b.case(
        "option of 1 GiB with some data",
        Start::Options,
        &big,
        false,
    );
    assert!(t.closed, "{t:?}");

    // Refused options leave the conversation in sync: the next option
    // is answered, and ABORT ends it with an ACK.
    let ok_then_abort = |first: Vec<u8>| {
        let mut v = first;
        v.extend_from_slice(&option(3, &[]));
        v.extend_from_slice(&option(ABORT, &[]));
        v
    };
    let t = b.case(
        "unknown option",
        Start::Options,
        &ok_then_abort(option(99, b"hello")),
        false,
    );
    assert!(t.closed, "{t:?}");
    assert_eq!(be32(&t.bytes, 12), (1 << 31) | 1, "ERR_UNSUP: {t:?}");
    let t = b.case(
        "STARTTLS without TLS",
        Start::Options,
        &ok_then_abort(option(5, &[])),
        false,
    );
    assert_eq!(be32(&t.bytes, 12), (1 << 31) | 2, "ERR_POLICY: {t:?}");
    let t = b.case(
        "GO with inconsistent lengths",
        Start::Options,
        &ok_then_abort(option(7, b"\0\0\0\x09disk")),
        false,
    );
    assert_eq!(be32(&t.bytes, 12), (1 << 31) | 3, "ERR_INVALID: {t:?}");
    b.case(
        "LIST with data",
        Start::Options,
        &ok_then_abort(option(3, b"xx")),
        false,
    );
    b.case(
        "INFO of a missing export",
        Start::Options,
        &ok_then_abort(go("nope")),
        false,
    );
    b.case(
        "SET_META_CONTEXT garbage",
        Start::Options,
        &ok_then_abort(option(10, b"\0\0\0\x04disk\0\0\0\x01\0\0\0\x40x")),
        false,
    );
    b.case(
        "EXTENDED_HEADERS with data",
        Start::Options,
        &ok_then_abort(option(11, b"x")),
        false,
    );
    let mut name = 1u32.to_be_bytes().to_vec();
    name.extend_from_slice(&4u32.to_be_bytes());
    let t = b.case(
        "EXPORT_NAME of a missing export",
        Start::Options,
        &[OPT_MAGIC, &name, b"nope"].concat(),
        false,
    );
    assert!(t.closed && t.bytes.is_empty(), "{t:?}");
}

#[test]
fn transmission_garbage_and_bad_requests() {
    let b = Both::start("");
    // A client that stays connected and well-behaved throughout.
    let mut good: Vec<UnixStream> = b
        .sides
        .iter()
        .map(|s| {
            let mut c = UnixStream::connect(s.sock()).expect("connect");
            c.set_read_timeout(Some(common::TIMEOUT)).expect("timeout");
            let mut g = [0u8; 18];
            c.read_exact(&mut g).expect("greeting");
            c.write_all(&3u32.to_be_bytes()).expect("flags");
            c
        })
        .collect();

    let disc = request(DISC, 0, 99, 0, 0);
    let then_disc = |v: &[u8]| [v, &disc].concat();

    let t = b.case(
        "wrong request magic",
        Start::Simple("disk"),
        &{
            let mut r = request(0, 0, 7, 0, 512);
            r[3] ^= 1;
            r
        },
        false,
    );
    assert!(t.closed, "{t:?}");
    assert_eq!(simple_error(&t), EINVAL, "{t:?}");
    let t = b.case("garbage request", Start::Simple("disk"), &[0xff; 64], false);
    assert!(t.closed, "{t:?}");
    let t = b.case(
        "extended request without negotiation",
        Start::Simple("disk"),
        &{
            let mut r = 0x21e4_1c71u32.to_be_bytes().to_vec();
            r.extend_from_slice(&[0; 28]);
            r
        },
        false,
    );
    assert!(t.closed, "{t:?}");
    for cut in [4, 12, 27] {
        let t = b.case(
            &format!("request cut at {cut}"),
            Start::Simple("disk"),
            &request(0, 0, 1, 0, 512)[..cut],
            true,
        );
        assert!(t.closed && t.bytes.is_empty(), "{t:?}");
    }
    let t = b.case(
        "write payload cut",
        Start::Simple("disk"),
        &[&request(1, 0, 1, 0, 4096)[..], &[1; 1000]].concat(),
        true,
    );
    assert!(t.closed && t.bytes.is_empty(), "{t:?}");

    // 64 MiB read: refused with EINVAL; the connection goes on.
    // (No DISC after a read: qsd drops the replies still in flight.)
    let big_then_small = [
        &request(0, 0, 1, 0, 64 << 20)[..],
        &request(0, 0, 2, 0, 512),
    ]
    .concat();
    let t = b.case("64 MiB read", Start::Simple("disk"), &big_then_small, false);
    assert!(!t.closed, "{t:?}");
    assert_eq!(simple_error(&t), EINVAL, "{t:?}");
    assert_eq!(t.bytes.len(), 16 + 16 + 512, "{t:?}");
    assert!(
        t.bytes[32..].iter().all(|&x| x == 0x5a),
        "data after the refusal"
    );
    b.case(
        "64 MiB read, structured",
        Start::Structured("disk"),
        &big_then_small,
        false,
    );
    b.case(
        "read of max + 1",
        Start::Structured("disk"),
        &then_disc(&request(0, 0, 1, 0, MAX_BLOCK + 1)),
        false,
    );
    // A write above the maximum: the server cannot skip its payload.
    let t = b.case(
        "64 MiB write header",
        Start::Simple("disk"),
        &request(1, 0, 1, 0, 64 << 20),
        false,
    );
    assert!(t.closed, "{t:?}");
    assert_eq!(simple_error(&t), EINVAL, "{t:?}");

    // Past the end and on the read-only export: an error, nothing more.
    let w =
        |off: u64, len: u32| [&request(1, 0, 5, off, len)[..], &vec![0x77; len as usize]].concat();
    let t = b.case(
        "write past the end",
        Start::Simple("disk"),
        &then_disc(&w(SIZE - 512, 1024)),
        false,
    );
    assert_eq!(simple_error(&t), EINVAL, "{t:?}");
    b.case(
        "write past the end, structured",
        Start::Structured("disk"),
        &then_disc(&w(SIZE - 512, 1024)),
        false,
    );
    b.case(
        "write far past the end",
        Start::Structured("disk"),
        &then_disc(&w(u64::MAX - 100, 512)),
        false,
    );
    let t = b.case(
        "write on the read-only export",
        Start::Simple("ro"),
        &then_disc(&w(0, 512)),
        false,
    );
    assert_ne!(simple_error(&t), 0, "{t:?}");
    b.case(
        "write on the read-only export, structured",
        Start::Structured("ro"),
        &then_disc(&w(0, 512)),
        false,
    );
    b.case(
        "trim on the read-only export",
        Start::Structured("ro"),
        &then_disc(&request(4, 0, 6, 0, 512)),
        false,
    );
    b.case(
        "unknown command",
        Start::Simple("disk"),
        &then_disc(&request(99, 0, 8, 0, 512)),
        false,
    );
    b.case(
        "unknown flag",
        Start::Simple("disk"),
        &then_disc(&request(0, 1 << 9, 8, 0, 512)),
        false,
    );
    b.case(
        "block status unnegotiated",
        Start::Structured("disk"),
        &then_disc(&request(7, 0, 8, 0, 512)),
        false,
    );
    // Not followed by DISC: qsd drops the reply of a request still in
    // flight when DISC arrives (the NBD spec says to finish it; we do).
    let t = b.case(
        "zero length write",
        Start::Simple("disk"),
        &request(1, 0, 8, 0, 0),
        false,
    );
    assert!(!t.closed && simple_error(&t) == 0, "{t:?}");
    b.case(
        "disconnect with a length",
        Start::Simple("disk"),
        &request(DISC, 0, 8, 0, 512),
        false,
    );

    // Nothing written where it should not be.
    let data = std::fs::read(b.sides[1].dir.join("disk.img")).expect("image");
    assert!(data[..4096].iter().all(|&x| x == 0x5a));
    assert!(data[SIZE as usize - 512..].iter().all(|&x| x == 0));

    // The connection that waited through it all still gets its export.
    for (c, side) in good.iter_mut().zip(&b.sides) {
        c.write_all(&go("disk")).expect("go");
        let mut h = [0u8; 20];
        c.read_exact(&mut h).expect("go reply");
        assert_eq!(
            &h[..8],
            &0x0003_e889_0455_65a9u64.to_be_bytes(),
            "{}",
            side.sock()
        );
    }
}

#[test]
fn stalled_handshake_is_dropped() {
    let b = Both::start(",handshake-max-seconds=1");
    for side in &b.sides {
        let started = Instant::now();
        let mut s = UnixStream::connect(side.sock()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut g = [0u8; 18];
        s.read_exact(&mut g).expect("greeting");
        // Half an option header, then nothing.
        s.write_all(&3u32.to_be_bytes()).expect("flags");
        s.write_all(b"IHAVE").expect("partial");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        let took = started.elapsed();
        assert!(rest.is_empty(), "{rest:?}");
        assert!(
            took >= Duration::from_millis(800) && took < Duration::from_secs(5),
            "dropped after {took:?}"
        );
        side.still_serves("a stalled handshake");
    }
}

/// `nbd-server-stop` cuts clients that are still in the handshake, as
/// qsd does (clients in transmission go with their exports).
#[test]
fn server_stop_cuts_clients_in_handshake() {
    let b = Both::start("");
    for side in &b.sides {
        let mut s = UnixStream::connect(side.sock()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut g = [0u8; 18];
        s.read_exact(&mut g).expect("greeting");
        let started = Instant::now();
        side._d.qmp().cmd("nbd-server-stop", serde_json::json!({}));
        let mut rest = Vec::new();
        let r = s.read_to_end(&mut rest);
        assert!(
            r.is_ok() && rest.is_empty() && started.elapsed() < Duration::from_secs(4),
            "still connected after nbd-server-stop: {r:?} {rest:?}"
        );
    }
}
