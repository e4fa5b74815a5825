//! QMP framing cost: a client that sends megabytes of whitespace (before
//! and after negotiation) costs the daemon work linear in the bytes, and
//! other monitors keep answering meanwhile. The splitter's own operation
//! count is unit-tested in runtime/src/qmp/codec.rs; this is the same
//! property through the real binary, with a deadline the old splitter
//! (a memmove of its buffer per whitespace byte) missed: 32 MiB cost it
//! ~37 s of CPU in a debug build, the linear one ~0.5 s.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{Daemon, OURS, Qmp, TempDir};
use serde_json::json;

const FLOOD: usize = 32 << 20;
/// 30x what the linear splitter needs in a debug build.
const DEADLINE: Duration = Duration::from_secs(15);

/// Writes `FLOOD` bytes of whitespace and then `tail` from a thread (the
/// daemon reads as fast as it splits, so the writes may block).
fn flood(stream: &UnixStream, tail: &'static [u8]) -> std::thread::JoinHandle<()> {
    let mut w = stream.try_clone().expect("clone the socket");
    std::thread::spawn(move || {
        let chunk = vec![b' '; 64 << 10];
        for _ in 0..FLOOD / chunk.len() {
            if w.write_all(&chunk).is_err() {
                return;
            }
        }
        let _ = w.write_all(tail);
    })
}

/// Reads until a full `\r\n`-terminated message arrived or the deadline.
fn read_message(s: &mut UnixStream, buf: &mut Vec<u8>) -> Option<String> {
    let end = std::time::Instant::now() + DEADLINE;
    loop {
        if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
            let msg: Vec<u8> = buf.drain(..p + 2).collect();
            return Some(String::from_utf8_lossy(&msg).into_owned());
        }
        let left = end.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).expect("timeout");
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[test]
fn megabytes_of_whitespace_cost_linear_work() {
    let dir = TempDir::new("framing");
    let d = Daemon::start(OURS, &dir, &[]);
    let path = d.qmp_path.clone().expect("monitor");
    let mut s = UnixStream::connect(&path).expect("connect");
    let mut buf = Vec::new();
    let greeting = read_message(&mut s, &mut buf).expect("greeting");
    assert!(greeting.contains("\"QMP\""), "{greeting}");

    // Before negotiation.
    let writer = flood(&s, br#"{"execute": "qmp_capabilities", "id": 1}"#);
    // Another monitor connection is served while this one floods.
    let mut other = Qmp::connect(&path);
    other.negotiate();
    other.cmd("query-version", json!({}));
    let reply = read_message(&mut s, &mut buf)
        .unwrap_or_else(|| panic!("no reply to qmp_capabilities within {DEADLINE:?}"));
    assert_eq!(reply, "{\"return\": {}, \"id\": 1}\r\n");
    writer.join().expect("writer");

    // After negotiation.
    let writer = flood(&s, br#"{"execute": "query-block-exports", "id": 2}"#);
    let reply = read_message(&mut s, &mut buf)
        .unwrap_or_else(|| panic!("no reply to query-block-exports within {DEADLINE:?}"));
    assert_eq!(reply, "{\"return\": [], \"id\": 2}\r\n");
    writer.join().expect("writer");
    other.cmd("query-version", json!({}));
}
