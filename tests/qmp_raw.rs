//! The QMP monitor over raw sockets: the greeting's bytes, ids echoed,
//! pretty=on, several monitors and their events, out-of-band capability,
//! tcp and inherited listening sockets, and framing across writes.

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Daemon, OURS, Qmp, TempDir, strings};
use serde_json::{Value, json};

fn package() -> String {
    format!("storage-daemon {}", env!("CARGO_PKG_VERSION"))
}

#[test]
fn greeting_and_replies_have_qemus_bytes() {
    let dir = TempDir::new("greeting");
    let d = Daemon::start(OURS, &dir, &[]);
    let mut raw = Qmp::connect_raw(d.qmp_path.as_deref().expect("monitor"));
    let greeting = raw.recv_raw();
    assert_eq!(
        String::from_utf8_lossy(&greeting),
        format!(
            "{{\"QMP\": {{\"version\": {{\"qemu\": {{\"micro\": 2, \"minor\": 0, \"major\": 10}}, \
             \"package\": \"{}\"}}, \"capabilities\": [\"oob\"]}}}}\r\n",
            package()
        )
    );
    raw.send_raw(br#"{"execute":"qmp_capabilities"}"#);
    assert_eq!(raw.recv_raw(), b"{\"return\": {}}\r\n");
    raw.send_raw(br#"{"execute":"query-block-exports","id":"x"}"#);
    assert_eq!(raw.recv_raw(), b"{\"return\": [], \"id\": \"x\"}\r\n");
    raw.send_raw(br#"{"execute":"nope","id":7}"#);
    assert_eq!(
        String::from_utf8_lossy(&raw.recv_raw()),
        "{\"id\": 7, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \
         \"The command nope has not been found\"}}\r\n"
    );
    d.qmp().alive();
}

#[test]
fn any_json_id_is_echoed() {
    let dir = TempDir::new("ids");
    let d = Daemon::start(OURS, &dir, &[]);
    let mut q = d.qmp();
    let ids = [
        json!(0),
        json!(-17),
        json!(18446744073709551615u64),
        json!(1.5),
        json!("text with \"quotes\" and \\ and é"),
        json!(true),
        json!(null),
        json!([]),
        json!({}),
        json!([1, "two", {"three": [3, null, false]}]),
        json!({"nested": {"deeper": [{"id": 1}]}, "n": -1}),
    ];
    for id in ids {
        // On success, on a command's error, and on a malformed request.
        for req in [
            json!({"execute": "query-block-exports", "id": id}),
            json!({"execute": "blockdev-del", "arguments": {"node-name": "x"}, "id": id}),
            json!({"execute": "query-version", "bogus": 1, "id": id}),
            json!({"execute": "no-such-command", "id": id}),
            json!({"id": id}),
        ] {
            q.send(&req);
            let r = q.reply();
            assert_eq!(r.get("id"), Some(&id), "{req} -> {r}");
        }
    }
    // Messages that are not requests have no id to echo.
    q.send_raw(br#"[{"id": 1}]"#);
    let r = q.reply();
    assert_eq!(r.get("id"), None, "{r}");
    assert_eq!(r["error"]["desc"], "QMP input must be a JSON object");
    q.alive();
}

#[test]
fn pretty_monitor_prints_like_qemu() {
    let dir = TempDir::new("pretty");
    let path = dir.join("pretty.sock");
    let mut d = Daemon::spawn(
        OURS,
        &strings(&[
            "--chardev",
            &format!("socket,id=p,path={path},server=on,wait=off"),
            "--monitor",
            "chardev=p,pretty=on",
        ]),
    );
    d.wait_for_socket(&path);
    let mut q = Qmp::connect(&path);
    assert_eq!(q.greeting["QMP"]["capabilities"], json!(["oob"]));
    q.send_raw(br#"{"execute":"qmp_capabilities"}"#);
    assert_eq!(q.recv_raw(), b"{\r\n    \"return\": {\r\n    }\r\n}\r\n");
    q.send_raw(br#"{"execute":"query-block-exports"}"#);
    assert_eq!(q.recv_raw(), b"{\r\n    \"return\": [\r\n    ]\r\n}\r\n");
    // The layout qsd 10.0 prints for this error (id first: QDict order).
    q.send_raw(br#"{"execute":"nope","id":[1,{"a":2}]}"#);
    assert_eq!(
        String::from_utf8_lossy(&q.recv_raw()),
        "{\r\n    \"id\": [\r\n        1,\r\n        {\r\n            \"a\": 2\r\n        }\r\n    ],\
         \r\n    \"error\": {\r\n        \"class\": \"CommandNotFound\",\r\n        \
         \"desc\": \"The command nope has not been found\"\r\n    }\r\n}\r\n"
    );
    q.send_raw(br#"{"execute":"query-version"}"#);
    let v: Value = serde_json::from_slice(&q.recv_raw()).expect("json");
    assert_eq!(v["return"]["package"], json!(package()));
}

// The events come from NBD exports being deleted.
#[cfg(feature = "nbd")]
#[test]
fn events_go_to_every_negotiated_monitor_only() {
    let dir = TempDir::new("monitors");
    let (m2, m3) = (dir.join("m2.sock"), dir.join("m3.sock"));
    let nbd = dir.join("nbd.sock");
    let mut d = Daemon::start(
        OURS,
        &dir,
        &strings(&[
            "--chardev",
            &format!("socket,id=m2,path={m2},server=on,wait=off"),
            "--monitor",
            "chardev=m2",
            "--chardev",
            &format!("socket,id=m3,path={m3},server=on,wait=off"),
            "--monitor",
            "m3,pretty=on",
            "--blockdev",
            "null-co,node-name=n0",
        ]),
    );
    d.wait_for_socket(&m3);
    let mut a = d.qmp();
    let mut b = Qmp::connect(&m2);
    b.negotiate();
    let mut c = Qmp::connect(&m3); // never negotiates until the end
    a.cmd(
        "nbd-server-start",
        json!({"addr": {"type": "unix", "data": {"path": nbd}}}),
    );
    for id in ["e1", "e2"] {
        a.cmd(
            "block-export-add",
            json!({"type": "nbd", "id": id, "node-name": "n0", "name": id}),
        );
        // The event reaches the requester before the reply.
        a.send(&json!({"execute": "block-export-del", "arguments": {"id": id}}));
        let ev = common::strip_timestamp(a.recv());
        assert_eq!(
            ev,
            json!({"event": "BLOCK_EXPORT_DELETED", "data": {"id": id}})
        );
        assert_eq!(a.recv(), json!({"return": {}}));
        let ev = common::strip_timestamp(b.recv());
        assert_eq!(ev["data"]["id"], id);
    }
    assert_eq!(c.recv_within(Duration::from_millis(300)), None);
    c.negotiate();
    c.alive();
    assert!(
        c.events.is_empty(),
        "events before negotiation: {:?}",
        c.events
    );
    // Events after negotiation do reach the third monitor.
    a.cmd(
        "block-export-add",
        json!({"type": "nbd", "id": "e3", "node-name": "n0"}),
    );
    b.cmd("block-export-del", json!({"id": "e3"}));
    assert_eq!(c.event()["data"]["id"], "e3");
    assert_eq!(a.event()["data"]["id"], "e3");
    assert_eq!(b.event()["data"]["id"], "e3");
}

#[test]
fn out_of_band_only_once_enabled() {
    let dir = TempDir::new("oob");
    let d = Daemon::start(OURS, &dir, &[]);
    let mut q = Qmp::connect(d.qmp_path.as_deref().expect("monitor"));
    let unexpected = "QMP input member 'exec-oob' is unexpected";
    q.send_raw(br#"{"exec-oob":"qmp_capabilities"}"#);
    assert_eq!(q.reply()["error"]["desc"], unexpected);
    q.send_raw(br#"{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}"#);
    assert_eq!(q.reply(), json!({"return": {}}));
    q.send_raw(br#"{"exec-oob":"query-version","id":1}"#);
    assert_eq!(
        q.reply(),
        json!({"id": 1, "error": {"class": "GenericError",
            "desc": "The command query-version does not support OOB"}})
    );
    q.send_raw(br#"{"exec-oob":5}"#);
    assert_eq!(
        q.reply()["error"]["desc"],
        "QMP input member 'exec-oob' must be a string"
    );
    q.send_raw(br#"{"exec-oob":"query-version","execute":"query-version"}"#);
    assert_eq!(
        q.reply()["error"]["desc"],
        "QMP input member 'execute' clashes with 'exec-oob'"
    );
    q.send_raw(br#"{"exec-oob":"nope"}"#);
    assert_eq!(q.reply()["error"]["class"], "CommandNotFound");
    q.alive();

    // Without the capability exec-oob stays an unknown member.
    let mut p = d.qmp();
    p.send_raw(br#"{"exec-oob":"query-version"}"#);
    assert_eq!(p.reply()["error"]["desc"], unexpected);
    p.alive();
}

#[test]
fn tcp_monitor() {
    let dir = TempDir::new("tcp");
    // A free port may be taken by someone else before the daemon binds
    // it: try a few.
    for _ in 0..5 {
        let port = common::free_port();
        let mut d = Daemon::spawn(
            OURS,
            &strings(&[
                "--chardev",
                &format!("socket,id=t,host=127.0.0.1,port={port},server=on,wait=off"),
                "--monitor",
                "chardev=t",
                "--pidfile",
                &dir.join("pid"),
            ]),
        );
        // The pid file is written once every option took effect.
        let deadline = std::time::Instant::now() + common::TIMEOUT;
        while !common::exists(&dir.join("pid")) && d.is_running() {
            assert!(std::time::Instant::now() < deadline, "no pid file");
            std::thread::sleep(Duration::from_millis(5));
        }
        if !d.is_running() {
            continue;
        }
        let mut q = Qmp::connect_tcp(&format!("127.0.0.1:{port}"));
        q.negotiate();
        q.alive();
        q.send(&json!({"execute": "quit"}));
        assert_eq!(q.reply(), json!({"return": {}}));
        let (status, _) = d.wait();
        assert!(status.success());
        return;
    }
    panic!("no free port could be bound");
}

/// Starts our daemon with `fd` inherited (close-on-exec cleared in the
/// child only) as the listening socket of a monitor.
fn spawn_with_fd(fd: i32, extra: &[String]) -> Daemon {
    let mut cmd = Command::new(OURS);
    cmd.arg("--chardev")
        .arg(format!("socket,id=f,fd={fd},server=on,wait=off"))
        .arg("--monitor")
        .arg("chardev=f")
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe fcntl(2) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Daemon {
        child: cmd.spawn().expect("spawn"),
        qmp_path: None,
    }
}

#[test]
fn inherited_listening_sockets() {
    let dir = TempDir::new("fd");
    // A unix socket.
    let path = dir.join("inherited.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    let pidfile = dir.join("pid");
    let mut d = spawn_with_fd(listener.as_raw_fd(), &strings(&["--pidfile", &pidfile]));
    let deadline = std::time::Instant::now() + common::TIMEOUT;
    while !common::exists(&pidfile) {
        assert!(d.is_running(), "daemon exited: {:?}", d.wait());
        assert!(std::time::Instant::now() < deadline, "no pid file");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut q = Qmp::connect(&path);
    q.negotiate();
    q.alive();
    drop(listener);
    // Still served after the parent closed its copy.
    let mut q2 = Qmp::connect(&path);
    q2.negotiate();
    q2.alive();
    q.cmd("quit", Value::Null);
    assert!(d.wait().0.success());

    // A tcp socket.
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = tcp.local_addr().expect("addr");
    let pidfile2 = dir.join("pid2");
    let mut d = spawn_with_fd(tcp.as_raw_fd(), &strings(&["--pidfile", &pidfile2]));
    while !common::exists(&pidfile2) {
        assert!(d.is_running(), "daemon exited: {:?}", d.wait());
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(tcp);
    let mut q = Qmp::connect_tcp(&addr.to_string());
    q.negotiate();
    q.alive();

    // A descriptor that is not a socket is refused as qsd refuses it.
    let file = std::fs::File::open("/dev/null").expect("open");
    let mut d = spawn_with_fd(file.as_raw_fd(), &[]);
    let (status, err) = d.wait();
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        err,
        format!(
            "storage-daemon: --chardev socket,id=f,fd={0},server=on,wait=off: \
             File descriptor '{0}' is not a socket\n",
            file.as_raw_fd()
        )
    );
}

#[test]
fn framing_across_writes() {
    let dir = TempDir::new("framing");
    let d = Daemon::start(OURS, &dir, &[]);
    let mut q = d.qmp();
    // One byte per write, through a multi-byte character and an escape.
    let msg = "{\"execute\": \"query-block-exports\", \"id\": \"é\\u00e9\\\"\"}";
    for b in msg.as_bytes() {
        q.send_raw(std::slice::from_ref(b));
    }
    assert_eq!(q.reply(), json!({"return": [], "id": "éé\""}));

    // Several messages in one write, the last one cut short.
    q.send_raw(
        b"{\"execute\":\"query-version\",\"id\":1}{\"execute\":\"nope\",\"id\":2}\
          [1]  {\"execute\":\"query-block-exports\",\"id\":3}{\"execute\":\"query-bl",
    );
    assert_eq!(q.reply()["id"], 1);
    assert_eq!(q.reply()["id"], 2);
    assert_eq!(
        q.reply()["error"]["desc"],
        "QMP input must be a JSON object"
    );
    assert_eq!(q.reply(), json!({"return": [], "id": 3}));
    assert_eq!(q.recv_within(Duration::from_millis(200)), None);
    q.send_raw(b"ock-exports\",\"id\":4}");
    assert_eq!(q.reply(), json!({"return": [], "id": 4}));

    // Whitespace, newlines and CRLF between messages are nothing.
    q.send_raw(b"\r\n\t {\"execute\":\"query-block-exports\",\"id\":5}\r\n\r\n");
    assert_eq!(q.reply(), json!({"return": [], "id": 5}));

    // Many small requests in one big write: answered in order.
    let mut batch = Vec::new();
    for i in 0..500 {
        batch.extend_from_slice(
            format!("{{\"execute\":\"query-block-exports\",\"id\":{i}}}").as_bytes(),
        );
    }
    q.send_raw(&batch);
    for i in 0..500 {
        assert_eq!(q.reply()["id"], i);
    }
    q.alive();
}

/// A TCP monitor listens on every address its host resolves to, as QEMU:
/// an empty host is 0.0.0.0 and ::, so both loopbacks reach it; a stale
/// unix socket file is replaced (a restart after a crash works).
#[test]
fn tcp_monitor_on_every_address_and_stale_unix_socket() {
    let dir = TempDir::new("tcp-all");
    let (d, port) = common::start_on_free_port(OURS, &dir, |port| {
        strings(&[
            "--chardev",
            &format!("socket,id=t,host=,port={port},server=on,wait=off"),
            "--monitor",
            "chardev=t",
        ])
    });
    for addr in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        let mut q = Qmp::connect_tcp(&addr);
        q.negotiate();
        q.cmd("query-version", json!({}));
    }
    drop(d);
    // A socket file nobody listens on, as a killed daemon leaves it.
    let stale = dir.join("stale.sock");
    drop(UnixListener::bind(&stale).expect("bind"));
    let mut d = Daemon::start(
        OURS,
        &dir,
        &strings(&[
            "--chardev",
            &format!("socket,id=s,path={stale},server=on,wait=off"),
            "--monitor",
            "chardev=s",
        ]),
    );
    // start() waits for its own monitor's socket, which may listen before
    // this one has replaced the stale file (CI saw connect refused).
    d.wait_for_socket(&stale);
    let mut q = Qmp::connect(&stale);
    q.negotiate();
    q.cmd("query-version", json!({}));
    drop(d);
}
