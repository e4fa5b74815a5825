//! The vhost-user-blk export against qemu-storage-daemon 10.0.2's, driven
//! by the test's own front end (tests/common/vhost_user.rs): the same
//! steps to both, the answers compared (features, protocol features,
//! queue count, config space, real I/O, option errors); then lifecycle,
//! resize and bad input, where ours must keep serving.

#![cfg(feature = "vhost-user-blk")]

mod common;

use std::time::Duration;

use common::vhost_user::{self as vu, Done, Front};
use common::{Daemon, OURS, QSD, TempDir, strings};
use serde_json::{Value, json};

/// A daemon with a 16 MiB raw image `n` exported as `e` on `DIR/vu.sock`
/// with `opts` added; returns once the command line took effect.
fn start(bin: &str, dir: &TempDir, opts: &str) -> (Daemon, String) {
    // Says which daemon a failing step was talking to.
    eprintln!("starting {bin} with {opts:?}");
    let img = dir.join("img.raw");
    if !common::exists(&img) {
        common::create_image(&img, "16M");
    }
    let sock = dir.join("vu.sock");
    let d = Daemon::start(
        bin,
        dir,
        &strings(&[
            "--blockdev",
            &format!("file,filename={img},node-name=f"),
            "--blockdev",
            "raw,file=f,node-name=n",
            "--export",
            &format!("type=vhost-user-blk,id=e,node-name=n,addr.type=unix,addr.path={sock}{opts}"),
        ]),
    );
    // A command's reply: the command line (and the export) are done.
    d.qmp().alive();
    (d, sock)
}

/// What a front end sees before I/O: features, protocol features, queue
/// count, the config space (as 60 bytes, QEMU's 96, and past its end),
/// max memory slots.
fn device_facts(sock: &str) -> Vec<String> {
    let mut f = Front::connect(sock);
    f.send(vu::SET_OWNER, &[]);
    let features = f.get_u64(vu::GET_FEATURES);
    let protocol = f.get_u64(vu::GET_PROTOCOL_FEATURES);
    f.send(vu::SET_PROTOCOL_FEATURES, &protocol.to_le_bytes());
    let queues = f.get_u64(vu::GET_QUEUE_NUM);
    vec![
        format!("features {features:#x}"),
        format!("protocol features {protocol:#x}"),
        format!("queues {queues}"),
        format!("config[0..60] {:02x?}", f.get_config(0, 60)),
        format!("config[0..96] {:02x?}", f.get_config(0, 96)),
        format!("config[32..33] {:02x?}", f.get_config(32, 1)),
        format!("config[0..256] {:02x?}", f.get_config(0, 256)),
        format!("max mem slots {}", f.get_u64(vu::GET_MAX_MEM_SLOTS)),
    ]
}

#[test]
fn features_config_and_queue_count_equal_qsd() {
    for opts in [
        ",writable=on",
        "",
        ",writable=on,num-queues=4,logical-block-size=4096",
        ",num-queues=2,logical-block-size=0,writethrough=on",
    ] {
        let mut facts = Vec::new();
        for bin in [QSD, OURS] {
            let dir = TempDir::new("vu-facts");
            let (_d, sock) = start(bin, &dir, opts);
            facts.push(device_facts(&sock));
        }
        assert_eq!(
            facts[1], facts[0],
            "ours (left) vs qsd (right) for {opts:?}"
        );
        // What qsd 10.0.2 answered when this test was written.
        let recorded = match opts {
            ",writable=on" => Some("features 0x175007e46"),
            "" => Some("features 0x175007e66"),
            _ => None,
        };
        if let Some(r) = recorded {
            assert_eq!(facts[0][..3], [r, "protocol features 0x8f2b", "queues 1"]);
        }
    }
}

/// A pattern that differs per offset and per run.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

/// The same requests to a daemon; what each gave back, and the image.
fn io_steps(bin: &str, opts: &str) -> (Vec<(String, Done)>, Vec<u8>) {
    let dir = TempDir::new("vu-io");
    let (d, sock) = start(bin, &dir, opts);
    let mut f = Front::connect(&sock);
    f.setup();
    let mut out = Vec::new();
    let mut step = |name: &str, done: Done| out.push((name.to_string(), done));
    step("write 4k@0", f.request(vu::T_OUT, 0, &pattern(4096, 1), 0));
    step(
        "write 64k@1M",
        f.request(vu::T_OUT, 2048, &pattern(65536, 2), 0),
    );
    step("write 512@7", f.request(vu::T_OUT, 7, &pattern(512, 3), 0));
    step("read 4k@0", f.request(vu::T_IN, 0, &[], 4096));
    step("read 64k@1M", f.request(vu::T_IN, 2048, &[], 65536));
    step("read 1k@6", f.request(vu::T_IN, 6, &[], 1024));
    step("flush", f.request(vu::T_FLUSH, 0, &[], 0));
    step("get id", f.request(vu::T_GET_ID, 0, &[], 20));
    step(
        "discard 8 sectors@2048",
        f.request(vu::T_DISCARD, 0, &Front::segment(2048, 8, 0), 0),
    );
    step(
        "write zeroes 16@2056",
        f.request(vu::T_WRITE_ZEROES, 0, &Front::segment(2056, 16, 0), 0),
    );
    step(
        "write zeroes unmap 8@2080",
        f.request(vu::T_WRITE_ZEROES, 0, &Front::segment(2080, 8, 1), 0),
    );
    step("read after zeroes", f.request(vu::T_IN, 2048, &[], 32768));
    step("unknown type 10", f.request(10, 0, &[], 512));
    step("unknown type 0x7f", f.request(0x7f, 0, &[], 0));
    step("read past the end", f.request(vu::T_IN, 32768, &[], 512));
    step("read across the end", f.request(vu::T_IN, 32767, &[], 1024));
    step(
        "write past the end",
        f.request(vu::T_OUT, 32768, &pattern(512, 4), 0),
    );
    step("read odd length", f.request(vu::T_IN, 0, &[], 100));
    step(
        "write odd length",
        f.request(vu::T_OUT, 0, &pattern(100, 5), 0),
    );
    step(
        "discard past the end",
        f.request(vu::T_DISCARD, 0, &Front::segment(32767, 8, 0), 0),
    );
    step(
        "discard with flags",
        f.request(vu::T_DISCARD, 0, &Front::segment(0, 8, 1), 0),
    );
    step(
        "two discard segments",
        f.request(
            vu::T_DISCARD,
            0,
            &[Front::segment(0, 8, 0), Front::segment(16, 8, 0)].concat(),
            0,
        ),
    );
    drop(f);
    drop(d);
    let img = std::fs::read(dir.join("img.raw")).expect("image");
    (out, img)
}

#[test]
fn io_equals_qsd() {
    for opts in [",writable=on", ",writable=on,logical-block-size=4096", ""] {
        let (qsd, qsd_img) = io_steps(QSD, opts);
        let (ours, our_img) = io_steps(OURS, opts);
        for ((name, q), (_, o)) in qsd.iter().zip(&ours) {
            assert_eq!(o, q, "{name} with {opts:?}: ours (left) vs qsd (right)");
        }
        assert_eq!(ours.len(), qsd.len());
        // Not two devices broken alike: the data came back.
        let read = &ours[3].1;
        assert_eq!(
            (read.status, read.used_len),
            (0, 4097),
            "read 4k@0 {opts:?}"
        );
        if opts.contains("writable=on") {
            // The 512 bytes at sector 7 overwrote the end of the 4k,
            // unless 4k blocks made that write fail.
            let mut want = pattern(4096, 1);
            if ours[2].1.status == 0 {
                want[3584..].copy_from_slice(&pattern(512, 3));
            } else {
                assert!(
                    opts.contains("logical-block-size=4096"),
                    "write 512@7 failed"
                );
            }
            assert!(read.data == want, "read back what was written ({opts:?})");
        } else {
            assert_eq!(
                ours[0].1.status, 1,
                "a write to a read-only export is IOERR"
            );
        }
        assert!(
            our_img == qsd_img,
            "images differ after the same requests ({opts:?})"
        );
    }
}

/// The first line qsd or ours prints for a command line, without the
/// program name.
fn startup_error(bin: &str, export: &str) -> (i32, String) {
    let dir = TempDir::new("vu-opt");
    let base = dir.join("");
    let export = export.replace("DIR", &base);
    let (code, _, err) = common::run_to_exit(
        bin,
        &strings(&["--blockdev", "null-co,node-name=n", "--export", &export]),
    );
    let line = err.lines().next().unwrap_or("").to_string();
    let msg = line
        .split_once(": ")
        .map_or(line.clone(), |(_, m)| m.to_string());
    (code, msg.replace(&base, "DIR"))
}

#[test]
fn option_errors_equal_qsd() {
    let base = "type=vhost-user-blk,id=e,node-name=n";
    let cases = [
        ",addr.type=unix,addr.path=DIRs,num-queues=0",
        ",addr.type=unix,addr.path=DIRs,num-queues=65536",
        ",addr.type=unix,addr.path=DIRs,num-queues=-1",
        ",addr.type=unix,addr.path=DIRs,logical-block-size=256",
        ",addr.type=unix,addr.path=DIRs,logical-block-size=513",
        ",addr.type=unix,addr.path=DIRs,logical-block-size=4194304",
        ",addr.type=unix,addr.path=DIRs,logical-block-size=4294967296",
        ",addr.type=unix,addr.path=DIRs,logical-block-size=3,num-queues=0",
        ",addr.type=inet,addr.host=127.0.0.1,addr.port=1,num-queues=0",
        ",addr.type=inet,addr.host=127.0.0.1,addr.port=1",
        ",addr.type=vsock,addr.cid=1,addr.port=2",
        ",addr.type=fd,addr.str=99",
        ",addr.type=fd,addr.str=1",
        ",addr.type=unix,addr.path=DIRnodir/s",
        ",addr.type=unix,addr.path=DIRs,iothread=nope",
        ",addr.type=unix,addr.path=DIRs,writable=on,bogus=1",
        "",
    ];
    for case in cases {
        let export = format!("{base}{case}");
        let q = startup_error(QSD, &export);
        let o = startup_error(OURS, &export);
        assert_eq!(o, q, "{export}: ours (left) vs qsd (right)");
        assert_ne!(q.0, 0, "{export} should fail");
    }
}

#[test]
fn qmp_errors_equal_qsd_and_accepted_options() {
    let mut answers = Vec::new();
    for bin in [QSD, OURS] {
        let dir = TempDir::new("vu-qmp");
        let d = Daemon::start(
            bin,
            &dir,
            &strings(&[
                "--blockdev",
                "null-co,node-name=n",
                "--blockdev",
                "null-co,node-name=ro,read-only=on",
                "--object",
                "iothread,id=io0",
            ]),
        );
        let mut q = d.qmp();
        let sock = dir.join("s.sock");
        let add = |extra: Value| {
            let mut a = json!({"type": "vhost-user-blk", "id": "e", "node-name": "n",
                               "addr": {"type": "unix", "path": sock}});
            for (k, v) in extra.as_object().expect("object") {
                a[k] = v.clone();
            }
            a
        };
        let mut got = Vec::new();
        for extra in [
            json!({"addr": {"type": "fd", "str": "3"}}),
            json!({"addr": {"type": "fd", "str": "foo"}}),
            json!({"addr": {"type": "fd", "str": "3"}, "num-queues": 0}),
            json!({"addr": {"type": "inet", "host": "127.0.0.1", "port": "1"}}),
            json!({"node-name": "ro", "writable": true}),
            json!({"iothread": "nope"}),
            json!({"logical-block-size": 100}),
            // Accepted: then deleted again.
            json!({"iothread": "io0", "fixed-iothread": true}),
            json!({"writethrough": true, "writable": true, "num-queues": 8}),
        ] {
            let r = q.execute("block-export-add", add(extra.clone()));
            if r.is_ok() {
                assert!(common::exists(&sock), "socket created");
                got.push(format!(
                    "{extra}: {:?}",
                    q.execute("query-block-exports", Value::Null)
                ));
                q.cmd("block-export-del", json!({"id": "e"}));
                let ev = common::strip_timestamp(q.event());
                got.push(format!("event {ev}"));
                assert!(!common::exists(&sock), "socket removed with the export");
            } else {
                got.push(format!("{extra}: {r:?}"));
            }
        }
        answers.push(got);
    }
    assert_eq!(answers[1], answers[0], "ours (left) vs qsd (right)");
}

/// The next event (timestamp dropped), or "none" within the timeout.
fn next_event(q: &mut common::Qmp) -> String {
    if let Some(e) = q.events.pop_front() {
        return common::strip_timestamp(e).to_string();
    }
    match q.recv_within(common::TIMEOUT) {
        Some(e) if e.get("event").is_some() => common::strip_timestamp(e).to_string(),
        other => format!("none ({other:?})"),
    }
}

/// A QMP command run on a thread of its own (the caller meanwhile plays
/// the front end the command waits for).
fn qmp_in_thread(d: &Daemon, name: &'static str, args: Value) -> std::thread::JoinHandle<String> {
    let mut q = d.qmp();
    std::thread::spawn(move || format!("{:?}", q.execute(name, args)))
}

#[test]
fn one_front_end_at_a_time_and_the_next_sees_the_data() {
    let mut logs = Vec::new();
    for bin in [QSD, OURS] {
        let dir = TempDir::new("vu-two");
        let (_d, sock) = start(bin, &dir, ",writable=on");
        let mut log = Vec::new();
        let mut a = Front::connect(&sock);
        a.setup();
        log.push(format!(
            "a writes: {}",
            a.request(vu::T_OUT, 8, &pattern(4096, 9), 0).status
        ));
        let mut b = Front::connect(&sock);
        b.send(vu::GET_FEATURES, &[]);
        // Absence of an answer, within a short wait: qsd does not read
        // a second connection while the first is attached.
        b.sock
            .set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        log.push(format!(
            "b answered while a attached: {}",
            b.recv().is_some()
        ));
        b.sock
            .set_read_timeout(Some(common::TIMEOUT))
            .expect("timeout");
        drop(a);
        log.push(format!("b answered once a left: {}", b.recv().is_some()));
        b.setup();
        let r = b.request(vu::T_IN, 8, &[], 4096);
        log.push(format!(
            "b reads a's data: {} {}",
            r.status,
            r.data == pattern(4096, 9)
        ));
        logs.push(log);
    }
    assert_eq!(logs[1], logs[0], "ours (left) vs qsd (right)");
    assert!(
        logs[0].iter().any(|l| l == "b reads a's data: 0 true"),
        "{:?}",
        logs[0]
    );
}

/// `block-export-del` (safe, then hard) and `quit`, each with a front
/// end attached: what the monitor, the front end and the socket see.
#[test]
fn delete_and_quit_with_a_front_end_attached() {
    let mut logs = Vec::new();
    for bin in [QSD, OURS] {
        let dir = TempDir::new("vu-del");
        let (mut d, sock) = start(bin, &dir, ",writable=on");
        let mut q = d.qmp();
        let mut log = Vec::new();
        for (i, mode) in ["safe", "hard"].iter().enumerate() {
            if i > 0 {
                q.cmd(
                    "block-export-add",
                    json!({"type": "vhost-user-blk", "id": "e", "node-name": "n",
                           "writable": true, "addr": {"type": "unix", "path": sock}}),
                );
            }
            let mut f = Front::connect(&sock);
            f.setup();
            log.push(format!(
                "write {}",
                f.request(vu::T_OUT, 0, &pattern(512, 1), 0).status
            ));
            log.push(format!(
                "{:?}",
                q.execute("query-block-exports", Value::Null)
            ));
            let r = q.execute("block-export-del", json!({"id": "e", "mode": mode}));
            log.push(format!("del {mode}: {r:?}"));
            log.push(format!("event {}", next_event(&mut q)));
            log.push(format!("front end cut off: {}", f.closed()));
            log.push(format!("socket left: {}", common::exists(&sock)));
            log.push(format!(
                "{:?}",
                q.execute("query-block-exports", Value::Null)
            ));
        }
        q.cmd(
            "block-export-add",
            json!({"type": "vhost-user-blk", "id": "e", "node-name": "n",
                   "addr": {"type": "unix", "path": sock}}),
        );
        let mut f = Front::connect(&sock);
        f.setup();
        log.push(format!("read {}", f.request(vu::T_IN, 0, &[], 512).status));
        log.push(format!("quit: {:?}", q.execute("quit", Value::Null)));
        let (status, _) = d.wait();
        log.push(format!("exit {:?}", status.code()));
        log.push(format!("front end cut off: {}", f.closed()));
        log.push(format!("socket left: {}", common::exists(&sock)));
        logs.push(log);
    }
    assert_eq!(logs[1], logs[0], "ours (left) vs qsd (right)");
}

#[test]
fn resize_notifies_an_attached_front_end_as_qsd() {
    let mut logs = Vec::new();
    for bin in [QSD, OURS] {
        let mut log = Vec::new();
        for ack in [true, false] {
            let dir = TempDir::new("vu-resize");
            let (d, sock) = start(bin, &dir, ",writable=on");
            let mut f = Front::connect(&sock);
            let mut protocol =
                vu::PROTOCOL_F_CONFIG | vu::PROTOCOL_F_BACKEND_REQ | vu::PROTOCOL_F_MQ;
            if ack {
                protocol |= vu::PROTOCOL_F_REPLY_ACK;
            }
            f.setup_with(protocol);
            log.push(format!("backend channel ack {:?}", f.set_backend_channel()));
            let before = f.get_config(0, 60).map(|c| vu::capacity(&c));
            let resize = qmp_in_thread(
                &d,
                "block_resize",
                json!({"node-name": "n", "size": 32 << 20}),
            );
            let msg = f.backend_message();
            log.push(format!(
                "reply_ack {ack}: before {before:?}, backend message {msg:?}"
            ));
            if let Some((req, flags, _)) = msg
                && flags & vu::FLAG_NEED_REPLY != 0
            {
                f.backend_ack(req);
            }
            log.push(format!(
                "block_resize: {}",
                resize.join().expect("qmp thread")
            ));
            log.push(format!(
                "after {:?}",
                f.get_config(0, 60).map(|c| vu::capacity(&c))
            ));
            log.push(format!(
                "write at the new end {}",
                f.request(vu::T_OUT, 65535, &pattern(512, 2), 0).status
            ));
        }
        logs.push(log);
    }
    assert_eq!(logs[1], logs[0], "ours (left) vs qsd (right)");
    // qsd's message: CONFIG_CHANGE_MSG (2), version 1, no reply asked
    // for even with REPLY_ACK, no payload.
    assert!(logs[0][1].contains("Some((2, 1, 0))"), "{:?}", logs[0]);
}

#[test]
fn resize_without_a_front_end_kills_qsd_not_ours() {
    let mut outcome = Vec::new();
    for bin in [QSD, OURS] {
        let dir = TempDir::new("vu-resize0");
        let (mut d, sock) = start(bin, &dir, ",writable=on");
        let mut q = d.qmp();
        q.send(&json!({"execute": "block_resize",
                       "arguments": {"node-name": "n", "size": 32 << 20}}));
        if bin == QSD {
            // qsd 10.0.2 crashes here (no device behind its resize hook).
            let (status, _) = d.wait();
            use std::os::unix::process::ExitStatusExt;
            outcome.push(format!("qsd: signal {:?}", status.signal()));
            continue;
        }
        assert_eq!(q.reply(), json!({"return": {}}), "ours resizes");
        let mut f = Front::connect(&sock);
        f.setup();
        let cap = f.get_config(0, 60).map(|c| vu::capacity(&c));
        assert_eq!(cap, Some(65536), "a new front end sees the new size");
        let w = f.request(vu::T_OUT, 65535, &pattern(512, 7), 0);
        let r = f.request(vu::T_IN, 65535, &[], 512);
        assert_eq!((w.status, r.status), (0, 0));
        assert!(r.data == pattern(512, 7), "serves the new end");
        q.alive();
        outcome.push("ours: alive and serving".into());
    }
    assert!(
        outcome[0].contains("signal Some(11)"),
        "qsd 10.0.2 was expected to die of SIGSEGV: {outcome:?}"
    );
}

/// `addr.type=fd`: a listening socket handed over at exec serves as the
/// export's, for qsd and ours alike; ours takes each descriptor once.
#[test]
fn inherited_listening_socket() {
    use std::os::fd::AsRawFd;
    let mut facts = Vec::new();
    for bin in [QSD, OURS] {
        let dir = TempDir::new("vu-fd");
        let sock = dir.join("fd.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        let fd = listener.as_raw_fd();
        let qmp = dir.join("qmp.sock");
        let mut cmd = std::process::Command::new(bin);
        cmd.args(strings(&[
            "--chardev",
            &format!("socket,id=m,path={qmp},server=on,wait=off"),
            "--monitor",
            "chardev=m",
            "--blockdev",
            "null-co,node-name=n",
            "--export",
            &format!("type=vhost-user-blk,id=e,node-name=n,addr.type=fd,addr.str={fd}"),
        ]))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
        common::inherit_fd(&mut cmd, fd);
        let mut d = Daemon {
            child: cmd.spawn().expect("spawn"),
            qmp_path: Some(qmp.clone()),
        };
        drop(listener);
        d.wait_for_socket(&qmp);
        let mut q = d.qmp();
        q.alive();
        facts.push(device_facts(&sock));
        // The same descriptor again (ours: it is taken).
        let r = q.execute(
            "block-export-add",
            json!({"type": "vhost-user-blk", "id": "e2", "node-name": "n",
                   "addr": {"type": "fd", "str": fd.to_string()}}),
        );
        facts.push(vec![format!("{r:?}")]);
        q.cmd("block-export-del", json!({"id": "e"}));
        facts.push(vec![format!(
            "socket left after delete: {}",
            common::exists(&sock)
        )]);
    }
    for (o, q) in facts[3..].iter().zip(&facts[..3]) {
        assert_eq!(o, q, "ours (left) vs qsd (right)");
    }
}

/// A file left at the socket path (a crashed daemon's socket) is
/// replaced, as qsd does.
#[test]
fn stale_socket_path_is_replaced() {
    for bin in [QSD, OURS] {
        let dir = TempDir::new("vu-stale");
        let sock = dir.join("vu.sock");
        std::fs::write(&sock, b"stale").expect("stale file");
        let (_d, sock) = start(bin, &dir, "");
        assert!(device_facts(&sock)[0].starts_with("features "), "{bin}");
    }
}

/// With `num-queues=2` (and 64) a front end may use the last queue; with
/// EVENT_IDX negotiated requests still complete (notification
/// suppression on both sides).
#[test]
fn second_queue_and_event_idx() {
    use std::os::fd::AsRawFd;
    let mut logs = Vec::new();
    for bin in [QSD, OURS] {
        let mut log = Vec::new();
        for (queues, last) in [(2u32, 1u32), (64, 63)] {
            let dir = TempDir::new("vu-mq");
            let (_d, sock) = start(bin, &dir, &format!(",writable=on,num-queues={queues}"));
            for event_idx in [false, true] {
                let mut f = Front::connect(&sock);
                f.negotiate(
                    vu::PROTOCOL_F_REPLY_ACK | vu::PROTOCOL_F_MQ | vu::PROTOCOL_F_CONFIG,
                    event_idx,
                );
                assert_eq!(f.set_mem_table(), Some(0));
                // Queue 0 is set up (its ring elsewhere, its own eventfds)
                // but never kicked; the last queue serves.
                let (kick0, call0) = (vu::eventfd(), vu::eventfd());
                for a in f.setup_queue_with(0, 0x100000, kick0.as_raw_fd(), call0.as_raw_fd()) {
                    assert_eq!(a, Some(0));
                }
                for a in f.setup_queue(last, 0) {
                    assert_eq!(a, Some(0));
                }
                for i in 0..20u64 {
                    let w = f.request(vu::T_OUT, i * 8, &pattern(4096, i as u8), 0);
                    let r = f.request(vu::T_IN, i * 8, &[], 4096);
                    log.push(format!(
                        "queue {last} of {queues}, event_idx {event_idx} #{i}: {} {} {}",
                        w.status,
                        r.status,
                        r.data == pattern(4096, i as u8)
                    ));
                }
            }
        }
        logs.push(log);
    }
    assert_eq!(logs[1], logs[0], "ours (left) vs qsd (right)");
    assert!(
        logs[0].iter().all(|l| l.ends_with("0 0 true")),
        "{:?}",
        logs[0]
    );
}

/// 32 writes, then 32 reads, each batch in flight at once: every chain
/// completes once, with its data, on qsd and ours.
#[test]
fn many_requests_in_flight() {
    for bin in [QSD, OURS] {
        let dir = TempDir::new("vu-deep");
        let (_d, sock) = start(bin, &dir, ",writable=on");
        let mut f = Front::connect(&sock);
        f.setup();
        let n = 32u16;
        let base = |i: u16| vu::DATA + u64::from(i) * 0x3000;
        for ty in [vu::T_OUT, vu::T_IN] {
            for i in 0..n {
                let mut h = ty.to_le_bytes().to_vec();
                h.extend_from_slice(&0u32.to_le_bytes());
                h.extend_from_slice(&(u64::from(i) * 8 + 100).to_le_bytes());
                f.mem.write(base(i), &h);
                let data_flags = if ty == vu::T_IN { 1 | 2 } else { 1 };
                if ty == vu::T_OUT {
                    f.mem.write(base(i) + 0x1000, &pattern(4096, i as u8));
                } else {
                    f.mem.write(base(i) + 0x1000, &[0; 4096]);
                }
                f.mem.write(base(i) + 0x2000, &[0xee]);
                let slot = i * 3;
                f.write_desc(slot, base(i), 16, 1, slot + 1);
                f.write_desc(slot + 1, base(i) + 0x1000, 4096, data_flags, slot + 2);
                f.write_desc(slot + 2, base(i) + 0x2000, 1, 2, 0);
                f.publish(slot);
            }
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..n {
                let (head, len) = f.wait_used();
                assert!(head % 3 == 0 && head < n * 3, "{bin}: head {head}");
                assert!(seen.insert(head), "{bin}: head {head} used twice");
                let i = head / 3;
                let want_len = if ty == vu::T_IN { 4097 } else { 1 };
                assert_eq!(len, want_len, "{bin}: used length of {i}");
                assert_eq!(
                    f.mem.read(base(i) + 0x2000, 1)[0],
                    0,
                    "{bin}: status of {i}"
                );
                if ty == vu::T_IN {
                    assert!(
                        f.mem.read(base(i) + 0x1000, 4096) == pattern(4096, i as u8),
                        "{bin}: data of {i}"
                    );
                }
            }
        }
    }
}
