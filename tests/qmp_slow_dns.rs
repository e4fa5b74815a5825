//! A slow name server must not stall the daemon: `nbd-server-start` with a
//! host name resolves on the blocking pool, so other monitor connections
//! keep answering while getaddrinfo() waits.
//!
//! The daemon runs in a private mount namespace (`unshare -m`) whose
//! /etc/resolv.conf points at a UDP socket of this test that never
//! answers, so every DNS lookup waits for the resolver's timeout.

// Needs the NBD backend (nbd-server-start).
#![cfg(feature = "nbd")]

mod common;

use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Daemon, OURS, Qmp, TempDir, strings};
use serde_json::json;

/// The resolver's timeout (`options timeout:N attempts:1`).
const DNS_WAIT: u64 = 2;

#[test]
fn monitors_answer_while_a_host_name_resolves() {
    let unshare = Command::new("unshare").args(["-m", "true"]).status();
    assert!(
        unshare.is_ok_and(|s| s.success()),
        "this test needs `unshare -m` (util-linux) and the right to make a mount namespace"
    );
    let dir = TempDir::new("slowdns");
    // A name server that takes queries and never answers.
    let silent = UdpSocket::bind("127.0.0.77:53").expect("bind a UDP socket on 127.0.0.77:53");
    let resolv = dir.join("resolv.conf");
    std::fs::write(
        &resolv,
        format!("nameserver 127.0.0.77\noptions timeout:{DNS_WAIT} attempts:1\n"),
    )
    .expect("write resolv.conf");
    let qmp = dir.join("qmp.sock");
    let script = format!(
        "mount --bind {resolv} /etc/resolv.conf && exec {OURS} \
         --chardev socket,id=m,path={qmp},server=on,wait=off --monitor chardev=m"
    );
    let mut d = Daemon::spawn("unshare", &strings(&["-m", "sh", "-c", &script]));
    d.wait_for_socket(&qmp);

    // More lookups than the runtime has worker threads: the first waits
    // for DNS, the others for the NBD server's lock behind it. Run
    // inline, they would hold every worker. All connections negotiate
    // first, so only the lookups can be what stalls.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut starts: Vec<Qmp> = (0..=workers)
        .map(|_| {
            let mut c = Qmp::connect(&qmp);
            c.negotiate();
            c
        })
        .collect();
    let mut other = Qmp::connect(&qmp);
    other.negotiate();
    for (i, c) in starts.iter_mut().enumerate() {
        c.send(&json!({
            "execute": "nbd-server-start",
            "arguments": {"addr": {"type": "inet", "data": {
                "host": "slow-dns.example", "port": "10809"}}},
            "id": i,
        }));
    }
    // Ask again and again while the lookups wait: no answer may take long.
    let window = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut asked = 0;
    while window.elapsed() < Duration::from_secs(DNS_WAIT) * 3 / 2 {
        let t = Instant::now();
        other.cmd("query-version", json!({}));
        slowest = slowest.max(t.elapsed());
        asked += 1;
    }
    // The lookups really are slow: the last start has not been answered.
    assert!(
        starts[workers].recv_within(Duration::ZERO).is_none(),
        "every nbd-server-start answered within {DNS_WAIT} s: DNS is not slow here"
    );
    assert!(
        slowest < Duration::from_secs(DNS_WAIT) / 2,
        "a query-version took {slowest:?} (of {asked}) while host names resolved"
    );

    for (i, c) in starts.iter_mut().enumerate() {
        let reply = c
            .recv_within(Duration::from_secs(DNS_WAIT * 3 * (workers as u64 + 1)))
            .unwrap_or_else(|| panic!("no reply to nbd-server-start {i}"));
        let desc = reply["error"]["desc"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            desc.starts_with("address resolution failed for slow-dns.example:10809"),
            "{reply}"
        );
    }
    drop(silent);
    other.cmd("query-version", json!({}));
}
