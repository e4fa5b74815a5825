//! The vhost-user-blk export against qemu-storage-daemon 10.0.2's, driven
//! by the test's own front end (tests/common/vhost_user.rs): the same
//! steps to both, the answers compared (features, protocol features,
//! queue count, config space, real I/O, option errors); then lifecycle,
//! resize and bad input, where ours must keep serving.

#![cfg(feature = "vhost-user-blk")]

mod common;

use common::vhost_user::{self as vu, Done, Front};
use common::{Daemon, OURS, QSD, TempDir, strings};
use serde_json::{Value, json};

/// A daemon with a 16 MiB raw image `n` exported as `e` on `DIR/vu.sock`
/// with `opts` added; returns once the command line took effect.
fn start(bin: &str, dir: &TempDir, opts: &str) -> (Daemon, String) {
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
            "ours (right) vs qsd (left) for {opts:?}"
        );
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
    assert_eq!(answers[1], answers[0], "ours (right) vs qsd (left)");
}
