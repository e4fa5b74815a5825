//! The NBD server against real clients: qemu-img, qemu-io and nbdinfo
//! (libnbd) talking to the real binary over a Unix socket, plus raw
//! sockets that misbehave. `./test.sh` installs nbdinfo when missing.

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
