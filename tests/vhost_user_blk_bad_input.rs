//! Bad input to the vhost-user-blk export: malformed messages, bad
//! memory tables, rings and descriptor chains outside guest memory, loops,
//! short headers, missing status bytes, a front end that vanishes with
//! requests in flight. Each case gets an error (an error reply, a closed
//! connection, an error status or an empty used entry), and afterwards
//! the daemon answers QMP, another export (NBD, checked with qemu-io)
//! serves, and a new front end gets real I/O done. Nothing panics.

#![cfg(all(feature = "vhost-user-blk", feature = "nbd"))]

mod common;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

use common::vhost_user::{self as vu, Buf, Front};
use common::{Daemon, OURS, TempDir, strings};

struct Setup {
    d: Daemon,
    sock: String,
    nbd: String,
    _dir: TempDir,
}

fn start() -> Setup {
    let dir = TempDir::new("vu-bad");
    let img = dir.join("img.raw");
    common::create_image(&img, "4M");
    let sock = dir.join("vu.sock");
    let nbd = dir.join("nbd.sock");
    let d = Daemon::start(
        OURS,
        &dir,
        &strings(&[
            "--blockdev",
            &format!("file,filename={img},node-name=f"),
            "--blockdev",
            "raw,file=f,node-name=n",
            "--blockdev",
            "null-co,node-name=m,read-zeroes=on,size=1048576",
            "--nbd-server",
            &format!("addr.type=unix,addr.path={nbd}"),
            "--export",
            "type=nbd,id=x,node-name=m,name=m",
            "--export",
            &format!(
                "type=vhost-user-blk,id=e,node-name=n,writable=on,addr.type=unix,addr.path={sock}"
            ),
        ]),
    );
    d.qmp().alive();
    Setup {
        d,
        sock,
        nbd,
        _dir: dir,
    }
}

impl Setup {
    /// The daemon, the NBD export and the vhost-user-blk export all
    /// still work.
    fn all_serving(&mut self, case: &str) {
        assert!(self.d.is_running(), "{case}: the daemon died");
        self.d.qmp().alive();
        common::tool_ok(Command::new("qemu-io").args([
            "-r",
            "-f",
            "raw",
            &format!("nbd+unix:///m?socket={}", self.nbd),
            "-c",
            "read -P 0 0 64k",
        ]));
        let mut f = Front::connect(&self.sock);
        f.setup();
        let data: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
        let w = f.request(vu::T_OUT, 16, &data, 0);
        let r = f.request(vu::T_IN, 16, &[], 4096);
        assert_eq!((w.status, r.status), (0, 0), "{case}: I/O after it");
        assert!(r.data == data, "{case}: data after it");
    }

    /// The daemon's stderr holds no panic (read at its end).
    fn finish(mut self) {
        self.d.qmp().cmd("quit", serde_json::Value::Null);
        let (status, err) = self.d.wait();
        assert!(status.success(), "exit {status}: {err}");
        assert!(!err.contains("panicked"), "a panic: {err}");
    }
}

/// What a connection saw after bad input: an error ack, a clean reply,
/// or the connection closed.
fn outcome(ack: Option<u64>) -> &'static str {
    match ack {
        Some(0) => "accepted",
        Some(_) => "error ack",
        None => "closed",
    }
}

#[test]
fn malformed_messages() {
    let mut s = start();
    let header = |req: u32, flags: u32, size: u32| {
        [req.to_le_bytes(), flags.to_le_bytes(), size.to_le_bytes()].concat()
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated header", vec![1, 0, 0, 0, 1]),
        (
            "header promising a payload that never comes",
            header(2, 1, 8),
        ),
        ("a payload larger than any message", header(2, 1, 1 << 20)),
        ("size 0xffffffff", header(5, 1, u32::MAX)),
        ("unknown request", header(999, 9, 0)),
        ("request 0", header(0, 9, 0)),
        (
            "SET_FEATURES with 3 bytes",
            [header(2, 9, 3), vec![1, 2, 3]].concat(),
        ),
        (
            "GET_CONFIG too short",
            [header(24, 1, 4), vec![0; 4]].concat(),
        ),
        (
            "GET_CONFIG size not matching",
            [
                header(24, 1, 16),
                0u32.to_le_bytes().to_vec(),
                200u32.to_le_bytes().to_vec(),
                vec![0; 8],
            ]
            .concat(),
        ),
        (
            "SET_VRING_NUM of queue 200",
            [
                header(8, 9, 8),
                200u32.to_le_bytes().to_vec(),
                128u32.to_le_bytes().to_vec(),
            ]
            .concat(),
        ),
        (
            "SET_VRING_NUM of 0",
            [
                header(8, 9, 8),
                0u32.to_le_bytes().to_vec(),
                0u32.to_le_bytes().to_vec(),
            ]
            .concat(),
        ),
        (
            "SET_VRING_NUM of 65535",
            [
                header(8, 9, 8),
                0u32.to_le_bytes().to_vec(),
                65535u32.to_le_bytes().to_vec(),
            ]
            .concat(),
        ),
        (
            "SET_VRING_KICK without a descriptor",
            [header(12, 9, 8), 0u64.to_le_bytes().to_vec()].concat(),
        ),
        ("bad version flags", header(1, 0x2, 0)),
    ];
    for (case, bytes) in &cases {
        let mut f = Front::connect(&s.sock);
        f.sock
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        f.sock.write_all(bytes).expect("send");
        // Half-close: a message that promised more bytes is now cut.
        let _ = f.sock.shutdown(std::net::Shutdown::Write);
        let reply = f.recv();
        // Requests the back end cannot serve are never acknowledged as
        // done.
        if matches!(
            *case,
            "unknown request" | "SET_VRING_NUM of queue 200" | "request 0"
        ) && let Some(r) = &reply
        {
            assert!(r.payload.len() != 8 || r.u64() != 0, "{case}: {r:?}");
        }
        drop(f);
        s.all_serving(case);
    }
    // A message with more descriptors than any request carries.
    let mut f = Front::connect(&s.sock);
    let fds: Vec<_> = (0..40).map(|_| vu::eventfd()).collect();
    let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let _ = f.send_raw_fds(&header(5, 1, 0), &raw);
    drop(f);
    s.all_serving("many descriptors");
    s.finish();
}

#[test]
fn bad_memory_tables() {
    let mut s = start();
    let size = vu::MEM_SIZE as u64;
    type Case = (&'static str, Vec<(u64, u64, u64, u64)>, usize);
    for (case, regions, nfds) in [
        (
            "overlapping regions",
            vec![(0, size, 0, 0), (size / 2, size / 2, 0, 0)],
            2,
        ),
        ("zero size", vec![(0, 0, 0, 0)], 1),
        ("descriptor missing", vec![(0, size, 0, 0)], 0),
        ("offset past the file", vec![(0, size, 0, 1 << 50)], 1),
        ("size past the file", vec![(0, 1 << 40, 0, 0)], 1),
        // Mappable, but touching its second half would be a SIGBUS.
        ("region longer than its file", vec![(0, 2 * size, 0, 0)], 1),
        (
            "guest address wrapping",
            vec![(u64::MAX - 4095, size, 0, 0)],
            1,
        ),
        ("no regions", vec![], 0),
    ] as [Case; 8]
    {
        let mut f = Front::connect(&s.sock);
        f.negotiate(vu::PROTOCOL_F_REPLY_ACK, false);
        let ua = f.mem.user_addr();
        let regions: Vec<_> = regions
            .iter()
            .enumerate()
            .map(|(i, &(g, sz, _, off))| (g, sz, ua + i as u64 * size, off))
            .collect();
        let fd = f.mem.fd.as_raw_fd();
        let fds = vec![fd; nfds];
        let ack = f.set_mem_table_raw(&regions, &fds);
        // "no regions" is a valid (empty) table to some; everything else
        // must be refused.
        if case != "no regions" {
            assert_ne!(outcome(ack), "accepted", "{case}");
        }
        drop(f);
        s.all_serving(case);
    }
    s.finish();
}

/// A front end with memory and queue 0 set up (REPLY_ACK on).
fn ready(s: &Setup) -> Front {
    let mut f = Front::connect(&s.sock);
    f.setup();
    f
}

#[test]
fn rings_outside_guest_memory() {
    let mut s = start();
    for skew in [1u64 << 40, vu::MEM_SIZE as u64 - 0x1000, u64::MAX - 0xfff] {
        let mut f = Front::connect(&s.sock);
        f.negotiate(vu::PROTOCOL_F_REPLY_ACK, false);
        assert_eq!(f.set_mem_table(), Some(0));
        let acks = f.setup_queue(0, skew);
        let case = format!("ring addresses off by {skew:#x}");
        if acks.iter().all(|a| *a == Some(0)) {
            // Accepted: a kick must not make the device touch anything
            // outside memory, and nothing completes.
            f.kick();
            assert_eq!(
                f.wait_used_within(Duration::from_millis(200)),
                None,
                "{case}"
            );
        }
        drop(f);
        s.all_serving(&case);
    }
    // An available index far ahead of what the ring holds.
    let mut f = ready(&s);
    f.set_avail_idx(1000);
    f.kick();
    assert_eq!(f.wait_used_within(Duration::from_millis(200)), None);
    drop(f);
    s.all_serving("available index past the ring");
    s.finish();
}

/// Lays out one bad chain and makes it available.
type Submit = Box<dyn Fn(&mut Front)>;

#[test]
fn bad_descriptor_chains() {
    let mut s = start();
    let far = 1u64 << 40;
    let hdr = |f: &mut Front, ty: u32| {
        let mut h = ty.to_le_bytes().to_vec();
        h.extend_from_slice(&[0; 12]);
        f.mem.write(vu::DATA, &h);
    };
    let cases: Vec<(&str, Submit)> = vec![
        (
            "data outside guest memory",
            Box::new(move |f| {
                hdr(f, vu::T_IN);
                f.submit_at(
                    0,
                    &[
                        Buf {
                            addr: vu::DATA,
                            len: 16,
                            write: false,
                        },
                        Buf {
                            addr: far,
                            len: 4096,
                            write: true,
                        },
                        Buf {
                            addr: vu::DATA + 0x100,
                            len: 1,
                            write: true,
                        },
                    ],
                );
            }),
        ),
        (
            "status byte outside guest memory",
            Box::new(move |f| {
                hdr(f, vu::T_IN);
                f.submit_at(
                    0,
                    &[
                        Buf {
                            addr: vu::DATA,
                            len: 16,
                            write: false,
                        },
                        Buf {
                            addr: vu::DATA + 0x1000,
                            len: 512,
                            write: true,
                        },
                        Buf {
                            addr: vu::MEM_SIZE as u64,
                            len: 1,
                            write: true,
                        },
                    ],
                );
            }),
        ),
        (
            "a buffer crossing the end of memory",
            Box::new(move |f| {
                hdr(f, vu::T_OUT);
                f.submit_at(
                    0,
                    &[
                        Buf {
                            addr: vu::DATA,
                            len: 16,
                            write: false,
                        },
                        Buf {
                            addr: vu::MEM_SIZE as u64 - 256,
                            len: 512,
                            write: false,
                        },
                        Buf {
                            addr: vu::DATA + 0x100,
                            len: 1,
                            write: true,
                        },
                    ],
                );
            }),
        ),
        (
            "header outside guest memory",
            Box::new(move |f| {
                f.submit_at(
                    0,
                    &[
                        Buf {
                            addr: far,
                            len: 16,
                            write: false,
                        },
                        Buf {
                            addr: vu::DATA + 0x100,
                            len: 1,
                            write: true,
                        },
                    ],
                );
            }),
        ),
        (
            "short header",
            Box::new(move |f| {
                hdr(f, vu::T_IN);
                f.submit_at(
                    0,
                    &[
                        Buf {
                            addr: vu::DATA,
                            len: 8,
                            write: false,
                        },
                        Buf {
                            addr: vu::DATA + 0x100,
                            len: 1,
                            write: true,
                        },
                    ],
                );
            }),
        ),
        (
            "no status byte",
            Box::new(move |f| {
                hdr(f, vu::T_IN);
                f.submit_at(
                    0,
                    &[
                        Buf {
                            addr: vu::DATA,
                            len: 16,
                            write: false,
                        },
                        Buf {
                            addr: vu::DATA + 0x1000,
                            len: 512,
                            write: false,
                        },
                    ],
                );
            }),
        ),
        (
            "header only",
            Box::new(move |f| {
                hdr(f, vu::T_FLUSH);
                f.submit_at(
                    0,
                    &[Buf {
                        addr: vu::DATA,
                        len: 16,
                        write: false,
                    }],
                );
            }),
        ),
        (
            "a loop in the descriptor table",
            Box::new(move |f| {
                hdr(f, vu::T_IN);
                f.write_desc(0, vu::DATA, 16, 1, 1);
                f.write_desc(1, vu::DATA + 0x1000, 512, 1 | 2, 0);
                f.publish(0);
            }),
        ),
        (
            "a next index past the table",
            Box::new(move |f| {
                hdr(f, vu::T_IN);
                f.write_desc(0, vu::DATA, 16, 1, 5000);
                f.publish(0);
            }),
        ),
        (
            "a head index past the table",
            Box::new(move |f| {
                f.publish(4000);
            }),
        ),
        (
            "a loop in an indirect table",
            Box::new(move |f| {
                hdr(f, vu::T_IN);
                // Indirect table at DATA+0x2000: two entries pointing at
                // each other.
                let table = vu::DATA + 0x2000;
                let entry = |addr: u64, len: u32, flags: u16, next: u16| {
                    [
                        addr.to_le_bytes().to_vec(),
                        len.to_le_bytes().to_vec(),
                        flags.to_le_bytes().to_vec(),
                        next.to_le_bytes().to_vec(),
                    ]
                    .concat()
                };
                f.mem.write(
                    table,
                    &[
                        entry(vu::DATA, 16, 1, 1),
                        entry(vu::DATA + 0x1000, 512, 1 | 2, 0),
                    ]
                    .concat(),
                );
                f.write_desc(0, table, 32, 4, 0);
                f.publish(0);
            }),
        ),
        (
            "an indirect table inside an indirect table",
            Box::new(move |f| {
                hdr(f, vu::T_IN);
                let table = vu::DATA + 0x2000;
                let entry = |addr: u64, len: u32, flags: u16, next: u16| {
                    [
                        addr.to_le_bytes().to_vec(),
                        len.to_le_bytes().to_vec(),
                        flags.to_le_bytes().to_vec(),
                        next.to_le_bytes().to_vec(),
                    ]
                    .concat()
                };
                f.mem.write(table, &entry(table, 16, 4, 0));
                f.write_desc(0, table, 16, 4, 0);
                f.publish(0);
            }),
        ),
        (
            "an indirect table of odd length",
            Box::new(move |f| {
                f.write_desc(0, vu::DATA + 0x2000, 17, 4, 0);
                f.publish(0);
            }),
        ),
        (
            "an indirect table outside memory",
            Box::new(move |f| {
                f.write_desc(0, far, 64, 4, 0);
                f.publish(0);
            }),
        ),
        (
            "a huge read",
            Box::new(move |f| {
                hdr(f, vu::T_IN);
                f.submit_at(
                    0,
                    &[
                        Buf {
                            addr: vu::DATA,
                            len: 16,
                            write: false,
                        },
                        Buf {
                            addr: vu::DATA + 0x1000,
                            len: u32::MAX,
                            write: true,
                        },
                        Buf {
                            addr: vu::DATA + 0x100,
                            len: 1,
                            write: true,
                        },
                    ],
                );
            }),
        ),
    ];
    for (case, submit) in &cases {
        let mut f = ready(&s);
        f.mem.write(vu::DATA + 0x100, &[0xee]);
        submit(&mut f);
        // The chain completes with an error (status or empty used entry),
        // or, when the ring itself is broken, not at all.
        if let Some((_, len)) = f.wait_used_within(Duration::from_millis(500)) {
            let status = f.mem.read(vu::DATA + 0x100, 1)[0];
            assert!(
                len == 0 || status != 0,
                "{case}: used len {len}, status {status}"
            );
        }
        // The connection still answers.
        assert!(f.get_u64(vu::GET_FEATURES) != 0, "{case}: connection alive");
        drop(f);
        s.all_serving(case);
    }
    s.finish();
}

#[test]
fn a_front_end_that_vanishes_with_requests_in_flight() {
    let mut s = start();
    for round in 0..3 {
        let mut f = ready(&s);
        // Many reads in flight, each in its own chain, then the front end
        // goes (socket closed, memory unmapped) without waiting.
        for i in 0..32u16 {
            let base = vu::DATA + u64::from(i) * 0x3000;
            let mut h = vu::T_IN.to_le_bytes().to_vec();
            h.extend_from_slice(&0u32.to_le_bytes());
            h.extend_from_slice(&u64::from(i * 8).to_le_bytes());
            f.mem.write(base, &h);
            let slot = i * 3;
            f.write_desc(slot, base, 16, 1, slot + 1);
            f.write_desc(slot + 1, base + 0x1000, 4096, 1 | 2, slot + 2);
            f.write_desc(slot + 2, base + 0x2000, 1, 2, 0);
            f.publish(slot);
        }
        drop(f);
        s.all_serving(&format!("vanished front end, round {round}"));
    }
    s.finish();
}

/// Random requests (codes 0..64, random flags and payloads up to 300
/// bytes, sometimes with an eventfd attached) after a normal setup, 300
/// of them, on a new connection whenever the back end closed the last:
/// nothing panics, and everything still serves.
#[test]
fn random_messages_after_setup() {
    let mut s = start();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let efd = vu::eventfd();
    let (mut sent, mut connections) = (0, 0);
    while sent < 300 {
        let mut f = ready(&s);
        connections += 1;
        f.sock
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        while sent < 300 {
            let req = (next() % 64) as u32;
            let flags = [1u32, 9, 1 | 4, 0][(next() % 4) as usize];
            let len = (next() % 300) as usize;
            let payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let fds = if next() % 4 == 0 {
                vec![efd.as_raw_fd()]
            } else {
                vec![]
            };
            if !f.send_fds(req, flags, &payload, &fds) {
                break;
            }
            sent += 1;
            // Whatever comes back (a reply, nothing, a close) is fine.
            if f.recv().is_none() && f.closed() {
                break;
            }
        }
        drop(f);
        s.all_serving(&format!("random messages, connection {connections}"));
    }
    eprintln!("{sent} random messages over {connections} connections");
    s.finish();
}
