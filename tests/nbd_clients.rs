//! The NBD server against real clients: qemu-img, qemu-io, qemu-nbd,
//! nbdinfo, nbdcopy, libnbd's Python module (nbdsh) and fio's nbd engine
//! talking to the real binary over Unix and TCP (IPv4 and IPv6) sockets,
//! plus raw sockets that misbehave. `./test.sh` installs the tools.

// NBD clients need the NBD backend.
#![cfg(feature = "nbd")]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const SIZE: u64 = 64 << 20;

/// A running daemon serving one image as export `disk`, and its files.
struct Daemon {
    child: Child,
    dir: PathBuf,
}

impl Daemon {
    /// `server_extra` goes after `--nbd-server addr...`.
    fn start(test: &str, server_extra: &str) -> Daemon {
        let dir = std::env::temp_dir().join(format!("nbd-clients-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let img = dir.join("img");
        run_ok(
            Command::new("qemu-img")
                .args(["create", "-q", "-f", "raw"])
                .arg(&img)
                .arg(SIZE.to_string()),
        );
        let d = Daemon {
            child: Command::new(env!("CARGO_BIN_EXE_storage-daemon"))
                .arg("--blockdev")
                .arg(format!(
                    "driver=file,node-name=f,filename={}",
                    img.display()
                ))
                .arg("--nbd-server")
                .arg(format!(
                    "addr.type=unix,addr.path={}{server_extra}",
                    dir.join("sock").display()
                ))
                .arg("--export")
                .arg("type=nbd,id=e,node-name=f,name=disk,writable=on,description=test disk")
                .arg("--chardev")
                .arg(format!(
                    "socket,id=m,path={},server=on,wait=off",
                    dir.join("qmp").display()
                ))
                .arg("--monitor")
                .arg("chardev=m")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start storage-daemon"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(d.sock().exists() && d.dir.join("qmp").exists()) {
            assert!(
                Instant::now() < deadline,
                "daemon did not create its sockets"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    fn sock(&self) -> PathBuf {
        self.dir.join("sock")
    }

    fn uri(&self) -> String {
        format!("nbd+unix:///disk?socket={}", self.sock().display())
    }

    fn img(&self) -> PathBuf {
        self.dir.join("img")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn qemu_io(uri: &str, cmds: &[&str]) -> String {
    let mut c = Command::new("qemu-io");
    c.args(["-f", "raw"]);
    for cmd in cmds {
        c.args(["-c", cmd]);
    }
    let out = run_ok(c.arg(uri));
    assert!(!out.contains("Pattern verification failed"), "{out}");
    assert!(!out.contains("failed:"), "{out}");
    out
}

fn nbdinfo() -> Command {
    let found = Command::new("nbdinfo").arg("--version").output().is_ok();
    assert!(
        found,
        "nbdinfo is missing: run ./test.sh or apt-get install -y libnbd-bin"
    );
    Command::new("nbdinfo")
}

/// Connects and finishes a fixed-newstyle handshake with NBD_OPT_GO.
fn raw_client(sock: &Path, export: &str) -> UnixStream {
    let mut s = UnixStream::connect(sock).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut greeting = [0; 18];
    s.read_exact(&mut greeting).expect("greeting");
    assert_eq!(&greeting[..16], b"NBDMAGICIHAVEOPT");
    s.write_all(&3u32.to_be_bytes()).expect("flags");
    let mut opt = b"IHAVEOPT".to_vec();
    opt.extend_from_slice(&7u32.to_be_bytes());
    opt.extend_from_slice(&(export.len() as u32 + 6).to_be_bytes());
    opt.extend_from_slice(&(export.len() as u32).to_be_bytes());
    opt.extend_from_slice(export.as_bytes());
    opt.extend_from_slice(&[0, 0]);
    s.write_all(&opt).expect("go");
    loop {
        let mut h = [0; 20];
        s.read_exact(&mut h).expect("option reply");
        let ty = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
        let len = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
        let mut p = vec![0; len as usize];
        s.read_exact(&mut p).expect("reply payload");
        assert_eq!(
            ty & (1 << 31),
            0,
            "GO failed: {}",
            String::from_utf8_lossy(&p)
        );
        if ty == 1 {
            return s;
        }
    }
}

/// A simple-reply read of `len` bytes at `off`.
fn raw_read(s: &mut UnixStream, cookie: u64, off: u64, len: u32) -> Vec<u8> {
    let mut r = 0x2560_9513u32.to_be_bytes().to_vec();
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(&cookie.to_be_bytes());
    r.extend_from_slice(&off.to_be_bytes());
    r.extend_from_slice(&len.to_be_bytes());
    s.write_all(&r).expect("request");
    let mut h = [0; 16];
    s.read_exact(&mut h).expect("reply");
    assert_eq!(h[..8], [0x67, 0x44, 0x66, 0x98, 0, 0, 0, 0]);
    assert_eq!(h[8..], cookie.to_be_bytes());
    let mut data = vec![0; len as usize];
    s.read_exact(&mut data).expect("data");
    data
}

/// True when the peer closed the connection (within 5 s).
fn closed(s: &mut UnixStream) -> bool {
    let mut b = [0; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

struct Qmp {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl Qmp {
    fn connect(d: &Daemon) -> Qmp {
        let s = UnixStream::connect(d.dir.join("qmp")).expect("qmp");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut q = Qmp {
            r: BufReader::new(s.try_clone().expect("clone")),
            w: s,
        };
        q.line();
        q.cmd(r#"{"execute":"qmp_capabilities"}"#);
        q
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).expect("qmp line");
        l
    }

    /// Sends a command; returns its answer (events before it are skipped
    /// but kept in the returned text's prefix).
    fn cmd(&mut self, c: &str) -> String {
        writeln!(self.w, "{c}").expect("qmp write");
        let mut seen = String::new();
        loop {
            let l = self.line();
            seen.push_str(&l);
            if l.contains("\"return\"") || l.contains("\"error\"") {
                return seen;
            }
        }
    }

    fn event(&mut self, name: &str) -> String {
        loop {
            let l = self.line();
            assert!(!l.is_empty(), "QMP closed while waiting for {name}");
            if l.contains(name) {
                return l;
            }
        }
    }
}

#[test]
fn qemu_img_and_qemu_io() {
    let d = Daemon::start("qemu", "");
    let uri = d.uri();
    let info = run_ok(Command::new("qemu-img").args(["info", "--output=json", &uri]));
    assert!(
        info.contains(&format!("\"virtual-size\": {SIZE}")),
        "{info}"
    );
    qemu_io(
        &uri,
        &[
            "write -P 0xab 0 64k",
            "write -P 0xcd 1M 1M",
            "aio_write -P 0x11 8M 512k",
            "aio_write -P 0x22 9M 512k",
            "aio_flush",
            "write -z 1M 64k",
            "discard 9M 4k",
            "flush",
        ],
    );
    qemu_io(
        &uri,
        &[
            "read -P 0xab 0 64k",
            "read -P 0 1M 64k",
            "read -P 0xcd 1088k 960k",
            "read -P 0x11 8M 512k",
            "read -P 0 16M 1M",
            "aio_read -P 0x22 9M 4k",
            "aio_read -P 0x22 9M 512k",
            "aio_flush",
        ],
    );
    // The written ranges are data, the rest reads as zeroes.
    let map = run_ok(Command::new("qemu-img").args(["map", "--output=json", &uri]));
    assert!(map.contains("\"start\": 0,"), "{map}");
    assert!(map.contains("\"data\": true"), "{map}");
    assert!(map.contains("\"zero\": true"), "{map}");
    let last = map.lines().last().unwrap_or_default();
    assert!(last.contains("\"data\": false"), "{map}");
    // What the clients see is what is in the file.
    let img = d.img();
    run_ok(
        Command::new("qemu-img")
            .args(["compare", "-U", "-f", "raw", "-F", "raw", &uri])
            .arg(&img),
    );
    // A whole-image copy through the server (many requests in flight).
    let copy = d.dir.join("copy");
    run_ok(
        Command::new("qemu-img")
            .args(["convert", "-W", "-m", "16", "-O", "raw", &uri])
            .arg(&copy),
    );
    run_ok(
        Command::new("qemu-img")
            .args(["compare", "-U", "-f", "raw", "-F", "raw"])
            .arg(&copy)
            .arg(&img),
    );
}

#[test]
fn nbdinfo_sees_qemus_export() {
    let d = Daemon::start("nbdinfo", "");
    let json = run_ok(nbdinfo().args(["--json", &d.uri()]));
    for want in [
        "\"export-name\": \"disk\"",
        "\"description\": \"test disk\"",
        "\"structured\": true",
        "\"base:allocation\"",
        "\"is_read_only\": false",
        "\"can_cache\": true",
        "\"can_df\": true",
        "\"can_fast_zero\": true",
        "\"can_flush\": true",
        "\"can_fua\": true",
        "\"can_multi_conn\": true",
        "\"can_trim\": true",
        "\"can_zero\": true",
        "\"block_size_minimum\": 1",
        "\"block_size_preferred\": 4096",
        "\"block_size_maximum\": 33554432",
        "\"export-size\": 67108864",
    ] {
        assert!(json.contains(want), "{want} not in {json}");
    }
    let list = run_ok(nbdinfo().args([
        "--list",
        &format!("nbd+unix:///?socket={}", d.sock().display()),
    ]));
    assert!(list.contains("export=\"disk\""), "{list}");
    assert!(list.contains("description: test disk"), "{list}");
    let map = run_ok(nbdinfo().args(["--map", &d.uri()]));
    assert!(map.contains("hole,zero"), "{map}");
}

#[test]
fn bad_clients_do_not_disturb_others() {
    let d = Daemon::start("bad", "");
    qemu_io(&d.uri(), &["write -P 0x5a 0 4k"]);
    let mut good = raw_client(&d.sock(), "disk");
    assert!(raw_read(&mut good, 1, 0, 4096).iter().all(|&b| b == 0x5a));

    // Garbage instead of options.
    let mut s = UnixStream::connect(d.sock()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut g = [0; 18];
    s.read_exact(&mut g).expect("greeting");
    s.write_all(b"\0\0\0\x03GET / HTTP/1.1\r\n\r\n")
        .expect("garbage");
    assert!(closed(&mut s));

    // Garbage after the handshake: answered with EINVAL, then closed.
    let mut s = raw_client(&d.sock(), "disk");
    s.write_all(&[0xff; 64]).expect("garbage");
    assert!(closed(&mut s));

    // A truncated request, then the client hangs up.
    let mut s = raw_client(&d.sock(), "disk");
    s.write_all(&0x2560_9513u32.to_be_bytes()).expect("partial");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    assert!(closed(&mut s));

    // A request for an unknown export by NBD_OPT_EXPORT_NAME.
    let mut s = UnixStream::connect(d.sock()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.read_exact(&mut g).expect("greeting");
    let mut opt = 3u32.to_be_bytes().to_vec();
    opt.extend_from_slice(b"IHAVEOPT\0\0\0\x01\0\0\0\x04nope");
    s.write_all(&opt).expect("export name");
    assert!(closed(&mut s));

    // The well-behaved clients never noticed.
    assert!(raw_read(&mut good, 2, 0, 4096).iter().all(|&b| b == 0x5a));
    qemu_io(&d.uri(), &["read -P 0x5a 0 4k"]);
}

#[test]
fn export_del_safe_refuses_and_hard_disconnects() {
    let d = Daemon::start("del", "");
    let mut q = Qmp::connect(&d);
    let mut c = raw_client(&d.sock(), "disk");
    let r = q.cmd(r#"{"execute":"block-export-del","arguments":{"id":"e"}}"#);
    assert!(r.contains("export 'e' still in use"), "{r}");
    raw_read(&mut c, 1, 0, 512);
    let r = q.cmd(r#"{"execute":"block-export-del","arguments":{"id":"e","mode":"hard"}}"#);
    assert!(r.contains("\"return\""), "{r}");
    assert!(closed(&mut c));
    if !r.contains("BLOCK_EXPORT_DELETED") {
        q.event("BLOCK_EXPORT_DELETED");
    }
    let r = q.cmd(r#"{"execute":"query-block-exports"}"#);
    assert!(r.contains("\"return\": []"), "{r}");
    // The name is gone for new clients.
    let out = run(Command::new("qemu-img").args(["info", &d.uri()]));
    assert!(!out.status.success());
}

#[test]
fn max_connections_and_handshake_timeout() {
    let d = Daemon::start("limits", ",max-connections=1,handshake-max-seconds=1");
    // One connection at a time: no multi-conn. An idle client holds the
    // only slot until its handshake times out; the next one waits for it.
    let mut idle = UnixStream::connect(d.sock()).expect("connect");
    idle.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let started = Instant::now();
    let json = run_ok(nbdinfo().args(["--json", &d.uri()]));
    assert!(json.contains("\"can_multi_conn\": false"), "{json}");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "nbdinfo did not wait for the slot"
    );
    assert!(closed(&mut idle));
}

// ---- More clients, through the shared helpers of tests/common.

use common::{NbdAddr, NbdDaemon, TempDir, create_image, nbdsh_script, require, tool_ok};

/// Our daemon on a fresh `SIZE` image, export `disk` writable with
/// allocation depth.
fn ours(dir: &TempDir, addr: NbdAddr, server_extra: &str) -> NbdDaemon {
    let img = dir.join("img");
    create_image(&img, &SIZE.to_string());
    NbdDaemon::start(common::OURS, dir, &img, "", addr, server_extra, EXPORT)
}

const EXPORT: &str = "name=disk,writable=on,allocation-depth=on,description=test disk";

/// [`ours`] on TCP `host` and a fresh port (retried on a lost race).
fn ours_tcp(dir: &TempDir, host: &str, server_extra: &str) -> (NbdDaemon, u16) {
    let img = dir.join("img");
    create_image(&img, &SIZE.to_string());
    let d = NbdDaemon::start_tcp(common::OURS, dir, &img, "", host, server_extra, EXPORT);
    let NbdAddr::Tcp(_, port) = d.addr else {
        unreachable!("start_tcp listens on TCP")
    };
    (d, port)
}

fn qemu_img_suite(d: &NbdDaemon, dir: &TempDir) {
    let uri = d.uri("disk");
    let info = tool_ok(Command::new("qemu-img").args(["info", "--output=json", &uri]));
    assert!(
        info.contains(&format!("\"virtual-size\": {SIZE}")),
        "{info}"
    );
    qemu_io(&uri, &["write -P 0x61 4M 1M", "write -z 4M 4k", "flush"]);
    let map = tool_ok(Command::new("qemu-img").args(["map", "--output=json", &uri]));
    let map: serde_json::Value = serde_json::from_str(&map).expect("map is JSON");
    let extents = map.as_array().expect("map is a list");
    let data_at_4m = extents.iter().any(|e| {
        e["start"].as_u64().is_some_and(|s| s <= (4 << 20) + 4096)
            && e["data"] == true
            && e["length"].as_u64().is_some_and(|l| l >= 4096)
    });
    assert!(data_at_4m, "{map}");
    tool_ok(
        Command::new("qemu-img")
            .args(["compare", "-U", "-f", "raw", "-F", "raw", &uri])
            .arg(&d.img),
    );
    let copy = dir.join("copy");
    tool_ok(Command::new("qemu-img").args(["convert", "-W", "-m", "8", "-O", "raw", &uri, &copy]));
    tool_ok(Command::new("qemu-img").args(["compare", "-f", "raw", "-F", "raw", &copy, &d.img]));
}

#[test]
fn tcp_ipv4_ipv6_and_qemu_nbd_list() {
    let dir = TempDir::new("nbd-tcp4");
    let (d, port) = ours_tcp(&dir, "127.0.0.1", "");
    qemu_img_suite(&d, &dir);
    let list = tool_ok(Command::new("qemu-nbd").args([
        "--list",
        "--bind=127.0.0.1",
        &format!("--port={port}"),
    ]));
    assert!(list.contains("exports available: 1"), "{list}");
    assert!(list.contains("export: 'disk'"), "{list}");
    assert!(list.contains("description: test disk"), "{list}");
    assert!(list.contains("size:  67108864"), "{list}");
    assert!(list.contains("base:allocation"), "{list}");
    assert!(list.contains("qemu:allocation-depth"), "{list}");
    drop(d);

    // IPv6 loopback, when the machine has it.
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipping the IPv6 half: no ::1 on this machine");
        return;
    }
    let dir = TempDir::new("nbd-tcp6");
    let (d, port) = ours_tcp(&dir, "::1", "");
    qemu_img_suite(&d, &dir);
    let list =
        tool_ok(Command::new("qemu-nbd").args(["--list", "--bind=::1", &format!("--port={port}")]));
    assert!(list.contains("export: 'disk'"), "{list}");
    let json = tool_ok(nbdinfo().args(["--json", &d.uri("disk")]));
    assert!(json.contains("\"export-size\": 67108864"), "{json}");
    drop(d);

    // "::" listens on both families unless ipv4=off makes it IPv6 only.
    for (extra, v4) in [("", true), (",addr.ipv4=off", false)] {
        let dir = TempDir::new("nbd-tcp-any");
        let (_d, port) = ours_tcp(&dir, "::", extra);
        let v4_uri = format!("nbd://127.0.0.1:{port}/disk");
        let (code, out, err) = common::run_tool(nbdinfo().args(["--size", &v4_uri]));
        assert_eq!(code == 0, v4, "{extra}: {out}{err}");
        let v6 = tool_ok(nbdinfo().args(["--size", &format!("nbd://[::1]:{port}/disk")]));
        assert_eq!(v6.trim(), SIZE.to_string(), "{extra}");
    }
}

#[test]
fn unix_qemu_img_and_qemu_nbd_list() {
    let dir = TempDir::new("nbd-unixlist");
    let sock = dir.join("nbd.sock");
    let d = ours(&dir, NbdAddr::Unix(sock.clone()), "");
    qemu_img_suite(&d, &dir);
    let list = tool_ok(Command::new("qemu-nbd").args(["--list", "-k", &sock]));
    assert!(list.contains("export: 'disk'"), "{list}");
    assert!(list.contains("min block: 1"), "{list}");
    assert!(list.contains("max block: 33554432"), "{list}");
}

#[test]
fn qemu_io_unaligned_end_zeroes_discard_and_extended_headers() {
    let dir = TempDir::new("nbd-qio");
    let d = ours(&dir, NbdAddr::Unix(dir.join("nbd.sock")), "");
    let uri = d.uri("disk");
    let end = SIZE;
    qemu_io(
        &uri,
        &[
            // Unaligned offsets and lengths.
            "write -P 0x31 1 511",
            "write -P 0x32 4097 12345",
            "aio_write -P 0x33 100001 7777",
            "aio_flush",
            // The last bytes of the image, aligned and not.
            &format!("write -P 0x34 {} 4096", end - 4096),
            &format!("write -P 0x35 {} 3", end - 3),
            // Zeroes (unaligned, with and without unmap) and discard.
            "write -P 0x36 1M 256k",
            "write -z 1040000 1000",
            "write -z -u 1M 64k",
            // Ignored: the node has the default discard=ignore.
            "discard 1152k 64k",
            // A request above the 32 MiB maximum: qemu splits it.
            "write -P 0x37 8M 40M",
        ],
    );
    qemu_io(
        &uri,
        &[
            "read -P 0 0 1",
            "read -P 0x31 1 511",
            "read -P 0x32 4097 12345",
            "read -P 0x33 100001 7777",
            &format!("read -P 0x34 {} 4093", end - 4096),
            &format!("read -P 0x35 {} 3", end - 3),
            "read -P 0 1M 64k",
            "read -P 0x36 1088k 64k",
            "read -P 0x36 1152k 64k",
            "read -P 0x36 1216k 64k",
            "read -P 0 1040000 1000",
            "read -P 0x37 8M 40M",
        ],
    );
    // Past the end: refused, nothing written.
    let out = run(Command::new("qemu-io").args([
        "-f",
        "raw",
        "-c",
        &format!("write {} 4096", end - 512),
        &uri,
    ]));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Input/output error")
            || text.contains("out of range")
            || text.contains("failed"),
        "{text}"
    );
    tool_ok(
        Command::new("qemu-img")
            .args(["compare", "-U", "-f", "raw", "-F", "raw", &uri])
            .arg(&d.img),
    );

    // qemu 10 negotiates extended headers; its trace shows the ACK and
    // the extended request/reply of a large read.
    let (code, out, err) = common::run_tool(Command::new("qemu-io").args([
        "--trace",
        "nbd_*",
        "-f",
        "raw",
        "-c",
        "read -P 0x37 8M 32M",
        &uri,
    ]));
    let trace = format!("{out}{err}");
    assert_eq!(code, 0, "{trace}");
    assert!(
        trace.contains("Received option reply 11 (extended headers), type 1 (ack)"),
        "no extended headers in: {trace}"
    );
    assert!(trace.contains(".len = 33554432"), "{trace}");
}

#[test]
fn nbdinfo_modes() {
    let dir = TempDir::new("nbd-info");
    let d = ours(&dir, NbdAddr::Unix(dir.join("nbd.sock")), "");
    let uri = d.uri("disk");
    qemu_io(&uri, &["write -P 0x41 0 64k", "write -P 0x42 1M 64k"]);
    let json = tool_ok(nbdinfo().args(["--json", &uri]));
    let v: serde_json::Value = serde_json::from_str(&json).expect("nbdinfo --json");
    assert_eq!(v["protocol"], "newstyle-fixed", "{json}");
    let e = &v["exports"][0];
    assert_eq!(e["export-name"], "disk");
    assert_eq!(e["export-size"], SIZE);
    let contexts: Vec<&str> = e["contexts"]
        .as_array()
        .expect("contexts")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    assert_eq!(
        contexts,
        ["base:allocation", "qemu:allocation-depth"],
        "{json}"
    );

    let map = tool_ok(nbdinfo().args(["--map", &uri]));
    let first: Vec<&str> = map
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(first, ["0", "65536", "0", "data"], "{map}");
    assert!(map.contains("hole,zero"), "{map}");
    let totals = tool_ok(nbdinfo().args(["--map", "--totals", &uri]));
    assert!(totals.contains("131072"), "{totals}");
    let depth = tool_ok(nbdinfo().args(["--map=qemu:allocation-depth", &uri]));
    let first: Vec<&str> = depth.split_whitespace().collect();
    assert_eq!(first, ["0", "67108864", "1", "local"], "{depth}");
    let jmap = tool_ok(nbdinfo().args(["--map", "--json", &uri]));
    let jmap: serde_json::Value = serde_json::from_str(&jmap).expect("--map --json");
    assert_eq!(jmap[0]["type"], 0, "{jmap}");

    let list = tool_ok(nbdinfo().args([
        "--list",
        "--json",
        &format!("nbd+unix:///?socket={}", dir.join("nbd.sock")),
    ]));
    let l: serde_json::Value = serde_json::from_str(&list).expect("--list --json");
    assert_eq!(l["exports"][0]["description"], "test disk", "{list}");

    // --can/--is answer through the exit code: 0 yes, 2 no.
    for (what, want) in [
        (["--can", "connect"], 0),
        (["--can", "read"], 0),
        (["--can", "write"], 0),
        (["--can", "flush"], 0),
        (["--can", "fua"], 0),
        (["--can", "trim"], 0),
        (["--can", "zero"], 0),
        (["--can", "fast-zero"], 0),
        (["--can", "cache"], 0),
        (["--can", "df"], 0),
        (["--can", "multi-conn"], 0),
        (["--can", "structured-reply"], 0),
        (["--is", "read-only"], 2),
        (["--is", "rotational"], 2),
    ] {
        let (code, out, err) = common::run_tool(nbdinfo().args(what).arg(&uri));
        assert_eq!(code, want, "nbdinfo {what:?}: {out}{err}");
    }
}

#[test]
fn nbdcopy_both_ways() {
    require("nbdcopy");
    let dir = TempDir::new("nbd-copy");
    let d = ours(&dir, NbdAddr::Unix(dir.join("nbd.sock")), "");
    let uri = d.uri("disk");
    // A source with data, zeroes and holes.
    let src = dir.join("src");
    create_image(&src, &SIZE.to_string());
    let fill = |args: &[&str]| {
        let mut c = Command::new("qemu-io");
        c.args(["-f", "raw"]);
        for a in args {
            c.args(["-c", a]);
        }
        tool_ok(c.arg(&src));
    };
    fill(&[
        "write -P 0x51 0 1M",
        "write -P 0x52 5000 3000",
        "write -P 0x53 40M 3M",
        &format!("write -P 0x54 {} 512", SIZE - 512),
    ]);
    tool_ok(Command::new("nbdcopy").args([&src, &uri]));
    tool_ok(Command::new("cmp").args([&src, &d.img]));
    let back = dir.join("back");
    tool_ok(Command::new("nbdcopy").args(["--requests=16", &uri, &back]));
    tool_ok(Command::new("cmp").args([&src, &back]));
    tool_ok(Command::new("qemu-img").args(["compare", "-U", "-f", "raw", "-F", "raw", &uri, &src]));
}

#[test]
fn nbdsh_protocol_edges() {
    let dir = TempDir::new("nbd-edges");
    let d = ours(&dir, NbdAddr::Unix(dir.join("nbd.sock")), "");
    let script = include_str!("nbd_scripts/edges.py");
    let (code, out, err) = nbdsh_script(script, &[&d.uri("disk"), "rw"]);
    assert_eq!(code, 0, "{out}{err}");
    // What qemu-storage-daemon 10.0.2 answers (tests/nbd_differential.rs
    // compares the whole output).
    for want in [
        "structured: True",
        "context base:allocation: True",
        "context qemu:allocation-depth: True",
        "context qemu:dirty-bitmap:x: False",
        "pread end equal: True",
        "pread unaligned end: True",
        "strict pwrite past end: ENOSPC",
        "pread past end: EINVAL",
        "pread at end: EINVAL",
        "pwrite past end: EINVAL",
        "zero past end: EINVAL",
        "trim past end: EINVAL",
        "cache past end: EINVAL",
        "block_status past end: EINVAL",
        "pread empty: ok",
        "pread max: ok",
        "pread max+1: EINVAL",
        "pread unknown flag: EINVAL",
        "pwrite df flag: EINVAL",
        "zero fast: ok",
        "zero fast no_hole: ok",
        "zero unaligned: ok",
        "trim: ok",
        "cache: ok",
        "flush: ok",
        "extents base:allocation: [65536, 0, 983040, 3]",
        "extents qemu:allocation-depth: [1048576, 1]",
        "req_one base:allocation: [[61440, 0]]",
        "df chunks: [(0, 65536, 1)]",
        "aio completed: 64",
        "aio data ok: True",
        "block_status no context: EINVAL",
        "pwrite max+1: failed",
    ] {
        assert!(
            out.lines().any(|l| l == want),
            "{want:?} not in:\n{out}{err}"
        );
    }
    assert!(!out.contains("zeroed: False"), "{out}");
    // The server is still there for the next client.
    qemu_io(&d.uri("disk"), &["read -P 0x44 0 64k"]);
}

#[test]
fn nbdsh_read_only_export() {
    let dir = TempDir::new("nbd-ro");
    let img = dir.join("img");
    create_image(&img, "1M");
    let d = NbdDaemon::start(
        common::OURS,
        &dir,
        &img,
        ",read-only=on",
        NbdAddr::Unix(dir.join("nbd.sock")),
        "",
        "name=ro",
    );
    let script = include_str!("nbd_scripts/edges.py");
    let (code, out, err) = nbdsh_script(script, &[&d.uri("ro"), "ro"]);
    assert_eq!(code, 0, "{out}{err}");
    // libnbd refuses a write itself with EPERM; qsd 10.0.2 answers a
    // write that reaches it with EINVAL, and so do we.
    for want in [
        "strict pwrite: EPERM",
        "strict trim: EINVAL",
        "pwrite: EINVAL",
        "pwrite fua: EINVAL",
        "trim: EINVAL",
        "zero: EINVAL",
        "flush: ok",
        "cache: ok",
        "pread: ok",
    ] {
        assert!(
            out.lines().any(|l| l == want),
            "{want:?} not in:\n{out}{err}"
        );
    }
    let (code, ..) = common::run_tool(nbdinfo().args(["--is", "read-only", &d.uri("ro")]));
    assert_eq!(code, 0);
}

#[test]
fn libnbd_negotiates_structured_replies_not_extended_headers() {
    let dir = TempDir::new("nbd-libnbd-debug");
    let d = ours(&dir, NbdAddr::Unix(dir.join("nbd.sock")), "");
    let (code, out, err) = common::run_tool(
        nbdinfo()
            .env("LIBNBD_DEBUG", "1")
            .args(["--size", &d.uri("disk")]),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), SIZE.to_string());
    // libnbd 1.14 knows no extended headers: it asks for structured
    // replies, which the server grants.
    assert!(err.contains("OPT_STRUCTURED_REPLY"), "{err}");
    assert!(err.contains("negotiated structured replies"), "{err}");
    assert!(!err.to_ascii_uppercase().contains("EXTENDED"), "{err}");
}

#[test]
fn fio_nbd_engine_verify() {
    require("fio");
    let (_, help, _) = common::run_tool(Command::new("fio").arg("--enghelp=nbd"));
    assert!(help.contains("uri"), "fio has no nbd engine: {help}");
    let dir = TempDir::new("nbd-fio");
    let d = ours(&dir, NbdAddr::Unix(dir.join("nbd.sock")), "");
    for depth in ["1", "16"] {
        // fio writes its verify state files into its working directory.
        let out = tool_ok(Command::new("fio").current_dir(dir.path()).args([
            "--name=verify",
            "--ioengine=nbd",
            &format!("--uri={}", d.uri("disk")),
            "--rw=randwrite",
            "--bs=4k",
            "--size=8M",
            &format!("--iodepth={depth}"),
            "--verify=crc32c",
            "--do_verify=1",
            "--verify_fatal=1",
            "--output-format=json",
        ]));
        let v: serde_json::Value =
            serde_json::from_str(&out[out.find('{').unwrap_or(0)..]).expect("fio JSON");
        let job = &v["jobs"][0];
        assert_eq!(job["error"], 0, "iodepth {depth}: {out}");
        assert_eq!(job["write"]["io_bytes"], 8 << 20, "iodepth {depth}: {out}");
        assert_eq!(
            job["read"]["io_bytes"],
            8 << 20,
            "verify reads, iodepth {depth}: {out}"
        );
    }
}
