//! Shared helpers of the daemon's integration tests: scratch directories,
//! daemon processes (ours or qemu-storage-daemon) with a QMP monitor, and
//! a small raw-socket QMP client. Every socket read has a timeout, every
//! path is unique to the test, so tests run in parallel.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

pub mod vhost_user;

/// Our binary.
pub const OURS: &str = env!("CARGO_BIN_EXE_storage-daemon");
/// The reference implementation, on every machine of this project.
pub const QSD: &str = "qemu-storage-daemon";

/// How long any single wait (a reply, a socket, an exit) may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Fails the test when a tool the tests need is missing (`./test.sh`
/// installs them), rather than skipping silently.
pub fn require(tool: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{tool} is missing: install it (./test.sh installs what the tests need)"
    );
}

/// A directory of its own under /tmp, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let p = PathBuf::from(format!(
            "/tmp/sd-it-{}-{}-{nanos}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside the directory, as a string for command lines.
    pub fn join(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // A FUSE daemon killed by a failed test leaves its mount behind
        // (dead, "Transport endpoint is not connected"): detach it first.
        let prefix = format!("{}/", self.0.display());
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for point in mounts.lines().filter_map(|l| l.split(' ').nth(4)) {
            if point.starts_with(&prefix)
                && let Ok(c) = std::ffi::CString::new(point)
            {
                // SAFETY: umount2 with a valid path string.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `qemu-img create -f raw PATH SIZE`.
pub fn create_image(path: &str, size: &str) {
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "raw", path, size])
        .output()
        .expect("run qemu-img");
    assert!(out.status.success(), "qemu-img create: {out:?}");
}

/// A port on 127.0.0.1 nobody listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// Starts `bin` with a QMP monitor on `DIR/qmp.sock` and `args(port)`
/// on a fresh TCP port; when another process took the port between
/// [`free_port`] and the daemon's bind ("Address already in use"), tries
/// again with another. Returns once the command line has taken effect
/// (the monitor answered a command), with the port.
pub fn start_on_free_port(
    bin: &str,
    dir: &TempDir,
    args: impl Fn(u16) -> Vec<String>,
) -> (Daemon, u16) {
    const ATTEMPTS: usize = 5;
    let qmp = dir.join("qmp.sock");
    for attempt in 1..=ATTEMPTS {
        let port = free_port();
        let _ = std::fs::remove_file(&qmp);
        let mut all = vec![
            "--chardev".to_string(),
            format!("socket,id=qmp0,path={qmp},server=on,wait=off"),
            "--monitor".to_string(),
            "chardev=qmp0".to_string(),
        ];
        all.extend(args(port));
        let mut d = Daemon::spawn(bin, &all);
        d.qmp_path = Some(qmp.clone());
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Ok(Some(status)) = d.child.try_wait() {
                let mut err = String::new();
                if let Some(e) = d.child.stderr.as_mut() {
                    let _ = e.read_to_string(&mut err);
                }
                if err.contains("Address already in use") && attempt < ATTEMPTS {
                    break;
                }
                panic!("{bin} exited ({status}) at startup on port {port}: {err}");
            }
            if let Ok(s) = UnixStream::connect(&qmp) {
                // A reply, not the greeting, says startup is over: qsd
                // greets from its monitor thread at once but runs
                // commands in its main loop, which starts only after
                // the command line took effect. No reply: the daemon
                // is exiting (seen at the next try_wait).
                if startup_done(s) {
                    return (d, port);
                }
            }
            assert!(Instant::now() < deadline, "{bin} never started on {port}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    unreachable!("the last attempt returns or panics")
}

/// Negotiates on a fresh monitor connection; true once a reply comes.
fn startup_done(s: UnixStream) -> bool {
    use std::io::{BufRead, BufReader, Write};
    if s.set_read_timeout(Some(TIMEOUT)).is_err() {
        return false;
    }
    let mut w = match s.try_clone() {
        Ok(w) => w,
        Err(_) => return false,
    };
    let mut r = BufReader::new(s);
    let mut line = String::new();
    if !matches!(r.read_line(&mut line), Ok(n) if n > 0) {
        return false;
    }
    if w.write_all(b"{\"execute\": \"qmp_capabilities\"}\n")
        .is_err()
    {
        return false;
    }
    // qsd now and then greets a connection made right after a closed one
    // twice; a greeting is not the answer.
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(n) if n > 0 && line.contains("\"QMP\"") => continue,
            Ok(n) if n > 0 => return line.contains("\"return\""),
            _ => return false,
        }
    }
}

/// True when FUSE mount tests can run here: root is needed (else the
/// test says it skipped), and a missing /dev/fuse is a failure that says
/// what to load.
pub fn can_mount(test: &str) -> bool {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("{test}: skipped: mounting FUSE exports needs root");
        return false;
    }
    assert!(
        std::path::Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: load the fuse module (modprobe fuse) to run the FUSE tests"
    );
    true
}

/// Whether something is mounted on `path` (canonical).
pub fn is_mounted(path: &str) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(path))
}

/// A daemon process; killed (if still running) when dropped.
pub struct Daemon {
    pub child: Child,
    /// The monitor socket added by [`Daemon::start`], if any.
    pub qmp_path: Option<String>,
}

impl Daemon {
    /// Starts `bin ARGS` plus a QMP monitor on `DIR/qmp.sock` and waits
    /// until the monitor accepts connections.
    pub fn start(bin: &str, dir: &TempDir, args: &[String]) -> Daemon {
        let qmp = dir.join("qmp.sock");
        let mut all = vec![
            "--chardev".to_string(),
            format!("socket,id=qmp0,path={qmp},server=on,wait=off"),
            "--monitor".to_string(),
            "chardev=qmp0".to_string(),
        ];
        all.extend_from_slice(args);
        let mut d = Daemon::spawn(bin, &all);
        d.qmp_path = Some(qmp.clone());
        d.wait_for_socket(&qmp);
        d
    }

    /// Starts `bin ARGS` as is, stdout and stderr captured.
    pub fn spawn(bin: &str, args: &[String]) -> Daemon {
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin}: {e}"));
        Daemon {
            child,
            qmp_path: None,
        }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid")
    }

    /// Waits until a unix socket at `path` accepts connections.
    pub fn wait_for_socket(&mut self, path: &str) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if UnixStream::connect(path).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut err = String::new();
                if let Some(e) = self.child.stderr.as_mut() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("daemon exited ({status}) before {path} existed: {err}");
            }
            assert!(Instant::now() < deadline, "{path} never accepted");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A new negotiated connection to the monitor.
    ///
    /// qemu-storage-daemon's monitor serves one connection at a time and
    /// listens with a backlog of 1: right after another connection closed
    /// (the start-up probe), a new one is now and then refused, or closed
    /// before or after its greeting without an answer (~1 in 20 here).
    /// Those are retried until the timeout; any answer is checked.
    pub fn qmp(&self) -> Qmp {
        let path = self.qmp_path.as_deref().expect("daemon has a monitor");
        let deadline = Instant::now() + TIMEOUT;
        loop {
            assert!(
                Instant::now() < deadline,
                "the monitor at {path} never answered qmp_capabilities"
            );
            let s = match UnixStream::connect(path) {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                Err(e) => panic!("connect {path}: {e}"),
            };
            s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
            let mut q = Qmp {
                stream: Stream::Unix(s),
                buf: Vec::new(),
                greeting: Value::Null,
                events: VecDeque::new(),
            };
            match q.recv_within(TIMEOUT) {
                Some(g) if g.get("QMP").is_some() => q.greeting = g,
                Some(other) => panic!("greeting: {other}"),
                None => continue,
            }
            q.send(&json!({"execute": "qmp_capabilities"}));
            loop {
                match q.recv_within(TIMEOUT) {
                    Some(m) if m.get("event").is_some() => q.events.push_back(m),
                    Some(m) if m.get("QMP").is_some() => {}
                    Some(m) => {
                        assert_eq!(m, json!({"return": {}}), "qmp_capabilities");
                        return q;
                    }
                    None => break,
                }
            }
        }
    }

    /// Sends a signal to the daemon.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        let r = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(r, 0, "kill");
    }

    /// Waits for the exit (at most [`TIMEOUT`]); returns the status and
    /// what the daemon wrote to stderr.
    pub fn wait(&mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            assert!(Instant::now() < deadline, "daemon did not exit in time");
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut err = String::new();
        if let Some(e) = self.child.stderr.as_mut() {
            let _ = e.read_to_string(&mut err);
        }
        (status, err)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `bin ARGS` to its end (at most [`TIMEOUT`]): status, stdout, stderr.
pub fn run_to_exit(bin: &str, args: &[String]) -> (i32, String, String) {
    let mut d = Daemon::spawn(bin, args);
    let (status, err) = d.wait();
    let mut out = String::new();
    if let Some(o) = d.child.stdout.as_mut() {
        let _ = o.read_to_string(&mut out);
    }
    (status.code().unwrap_or(-1), out, err)
}

pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// The stream under a QMP client.
pub enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn set_read_timeout(&self, d: Option<Duration>) {
        let _ = match self {
            Stream::Unix(s) => s.set_read_timeout(d),
            Stream::Tcp(s) => s.set_read_timeout(d),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A QMP error reply.
#[derive(Debug, Clone, PartialEq)]
pub struct QmpErr {
    pub class: String,
    pub desc: String,
}

/// A raw-socket QMP client: whole messages in, bytes or values out.
pub struct Qmp {
    pub stream: Stream,
    buf: Vec<u8>,
    pub greeting: Value,
    /// Events received while waiting for replies, oldest first.
    pub events: VecDeque<Value>,
}

impl Qmp {
    /// Connects to a unix socket and reads the greeting.
    pub fn connect(path: &str) -> Qmp {
        let s = UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {path}: {e}"));
        Qmp::over(Stream::Unix(s))
    }

    pub fn connect_tcp(addr: &str) -> Qmp {
        let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        Qmp::over(Stream::Tcp(s))
    }

    /// Connects without reading the greeting (to see its bytes).
    pub fn connect_raw(path: &str) -> Qmp {
        let s = UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {path}: {e}"));
        s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        Qmp {
            stream: Stream::Unix(s),
            buf: Vec::new(),
            greeting: Value::Null,
            events: VecDeque::new(),
        }
    }

    /// Takes over a connected stream and reads the greeting.
    pub fn over(stream: Stream) -> Qmp {
        stream.set_read_timeout(Some(TIMEOUT));
        let mut q = Qmp {
            stream,
            buf: Vec::new(),
            greeting: Value::Null,
            events: VecDeque::new(),
        };
        q.greeting = q.recv();
        assert!(q.greeting.get("QMP").is_some(), "greeting: {}", q.greeting);
        q
    }

    /// Closes the connection (the client stays, unusable).
    pub fn close(&mut self) {
        let _ = match &self.stream {
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Both),
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
        };
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to monitor");
    }

    pub fn send(&mut self, v: &Value) {
        self.send_raw(v.to_string().as_bytes());
    }

    /// The bytes of the next message, through the `\r\n` that ends it;
    /// `None` when the connection closed or nothing came within `wait`.
    pub fn recv_raw_within(&mut self, wait: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(end) = message_end(&self.buf) {
                return Some(self.buf.drain(..end).collect());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left));
            let mut chunk = vec![0u8; 1 << 16];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read from monitor: {e}"),
            }
        }
    }

    pub fn recv_raw(&mut self) -> Vec<u8> {
        self.recv_raw_within(TIMEOUT)
            .expect("a message from the monitor within the timeout")
    }

    /// The next message, parsed.
    pub fn recv(&mut self) -> Value {
        let raw = self.recv_raw();
        serde_json::from_slice(&raw).unwrap_or_else(|e| {
            panic!(
                "monitor sent bad JSON ({e}): {}",
                String::from_utf8_lossy(&raw)
            )
        })
    }

    pub fn recv_within(&mut self, wait: Duration) -> Option<Value> {
        self.recv_raw_within(wait)
            .map(|raw| serde_json::from_slice(&raw).expect("monitor sent JSON"))
    }

    /// Whether the connection is closed (reads EOF within the timeout).
    pub fn closed(&mut self) -> bool {
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            let mut b = [0u8; 4096];
            match self.stream.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
        false
    }

    /// The next reply (`return` or `error`); events before it are queued.
    /// A second greeting is skipped: qsd 10.0 now and then greets a
    /// connection twice when it follows a probe connection closely.
    pub fn reply(&mut self) -> Value {
        loop {
            let m = self.recv();
            if m.get("event").is_some() {
                self.events.push_back(m);
            } else if m.get("QMP").is_none() {
                return m;
            }
        }
    }

    pub fn negotiate(&mut self) {
        self.send(&json!({"execute": "qmp_capabilities"}));
        let r = self.reply();
        assert_eq!(r, json!({"return": {}}), "qmp_capabilities");
    }

    /// Runs a command: its return value or its error.
    pub fn execute(&mut self, name: &str, args: Value) -> Result<Value, QmpErr> {
        let mut req = Map::new();
        req.insert("execute".into(), Value::String(name.into()));
        if !args.is_null() {
            req.insert("arguments".into(), args);
        }
        self.send(&Value::Object(req));
        reply_result(&self.reply())
    }

    /// Runs a command that must succeed.
    pub fn cmd(&mut self, name: &str, args: Value) -> Value {
        self.execute(name, args)
            .unwrap_or_else(|e| panic!("{name} failed: {e:?}"))
    }

    /// Runs a command that must fail; its error.
    pub fn err(&mut self, name: &str, args: Value) -> QmpErr {
        match self.execute(name, args) {
            Ok(v) => panic!("{name} succeeded ({v}) but should fail"),
            Err(e) => e,
        }
    }

    /// The next event, waiting for it if none is queued.
    pub fn event(&mut self) -> Value {
        if let Some(e) = self.events.pop_front() {
            return e;
        }
        let m = self.recv();
        assert!(m.get("event").is_some(), "expected an event, got {m}");
        m
    }

    /// `query-version` answers (the connection still works).
    pub fn alive(&mut self) {
        let v = self.cmd("query-version", Value::Null);
        assert_eq!(v["qemu"]["major"], 10, "query-version: {v}");
    }
}

pub fn reply_result(r: &Value) -> Result<Value, QmpErr> {
    if let Some(v) = r.get("return") {
        return Ok(v.clone());
    }
    let e = r.get("error").unwrap_or_else(|| panic!("not a reply: {r}"));
    Err(QmpErr {
        class: e["class"].as_str().unwrap_or_default().into(),
        desc: e["desc"].as_str().unwrap_or_default().into(),
    })
}

/// Where the first complete message in `buf` ends: a JSON value at depth
/// 0 and the `\r\n` after it (QEMU ends every message so).
fn message_end(buf: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_str = false;
    let mut esc = false;
    let mut started = false;
    for (i, &b) in buf.iter().enumerate() {
        if in_str {
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                in_str = false;
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' | b'[' => {
                depth += 1;
                started = true;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 && started {
                    let rest = &buf[i + 1..];
                    if rest.len() < 2 {
                        return None;
                    }
                    assert_eq!(&rest[..2], b"\r\n", "message not ended by \\r\\n");
                    return Some(i + 3);
                }
            }
            _ => {}
        }
    }
    None
}

/// The `{"seconds", "microseconds"}` stamp of an event, checked for shape
/// and closeness to now, then replaced so events compare by content.
pub fn strip_timestamp(mut ev: Value) -> Value {
    let ts = ev
        .as_object_mut()
        .and_then(|o| o.remove("timestamp"))
        .unwrap_or_else(|| panic!("event without timestamp: {ev}"));
    let secs = ts["seconds"].as_i64().expect("timestamp.seconds");
    let us = ts["microseconds"].as_i64().expect("timestamp.microseconds");
    assert!((0..1_000_000).contains(&us), "microseconds {us}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    assert!(
        (now - secs).abs() < 300,
        "timestamp {secs} far from now {now}"
    );
    ev
}

/// Whether a file system entry exists (also a dangling socket).
pub fn exists(path: &str) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// Runs a client command to its end: exit code, stdout, stderr.
pub fn run_tool(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (./test.sh installs the NBD client tools)"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a client command that must succeed; its stdout.
pub fn tool_ok(cmd: &mut Command) -> String {
    let (code, out, err) = run_tool(cmd);
    assert_eq!(code, 0, "{cmd:?} failed: {out}{err}");
    out
}

/// A Python interpreter that can `import nbd` (libnbd's binding, the
/// module behind nbdsh). `python3` on PATH may be another installation
/// than the distribution's, which is where python3-libnbd puts it.
pub fn nbd_python() -> Command {
    for py in ["python3", "/usr/bin/python3"] {
        let ok = Command::new(py)
            .args(["-c", "import nbd"])
            .env_remove("PYTHONPATH")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            let mut c = Command::new(py);
            c.env_remove("PYTHONPATH");
            return c;
        }
    }
    panic!("libnbd's Python module is missing: apt-get install python3-libnbd (./test.sh does)");
}

/// Runs a Python script with libnbd's `nbd` module (what `nbdsh -c`
/// runs); `args` become `sys.argv[1:]`. Returns the exit code, stdout
/// and stderr.
pub fn nbdsh_script(script: &str, args: &[&str]) -> (i32, String, String) {
    let mut c = nbd_python();
    c.arg("-c").arg(script).args(args);
    run_tool(&mut c)
}

/// Where an NBD server listens.
#[derive(Clone, Debug)]
pub enum NbdAddr {
    Unix(String),
    /// Host as written in `addr.host` (`127.0.0.1`, `::1`) and port.
    Tcp(String, u16),
}

impl NbdAddr {
    /// The `--nbd-server` address options.
    pub fn server_opts(&self) -> String {
        match self {
            NbdAddr::Unix(p) => format!("addr.type=unix,addr.path={p}"),
            NbdAddr::Tcp(h, port) => format!("addr.type=inet,addr.host={h},addr.port={port}"),
        }
    }

    /// The NBD URI of export `name` (qemu and libnbd both read these).
    pub fn uri(&self, name: &str) -> String {
        match self {
            NbdAddr::Unix(p) => format!("nbd+unix:///{name}?socket={p}"),
            NbdAddr::Tcp(h, port) if h.contains(':') => format!("nbd://[{h}]:{port}/{name}"),
            NbdAddr::Tcp(h, port) => format!("nbd://{h}:{port}/{name}"),
        }
    }

    /// Waits until the server accepts connections.
    pub fn wait(&self, d: &mut Daemon) {
        match self {
            NbdAddr::Unix(p) => d.wait_for_socket(p),
            NbdAddr::Tcp(h, port) => {
                let deadline = Instant::now() + TIMEOUT;
                let addr = if h.contains(':') {
                    format!("[{h}]:{port}")
                } else {
                    format!("{h}:{port}")
                };
                while TcpStream::connect(&addr).is_err() {
                    if let Ok(Some(status)) = d.child.try_wait() {
                        panic!("daemon exited ({status}) before listening on {addr}");
                    }
                    assert!(Instant::now() < deadline, "{addr} never accepted");
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
}

/// A daemon (ours or qemu-storage-daemon) exporting `DIR/img` over NBD.
pub struct NbdDaemon {
    pub daemon: Daemon,
    pub addr: NbdAddr,
    pub img: String,
}

impl NbdDaemon {
    fn args(
        img: &str,
        node_extra: &str,
        addr: &NbdAddr,
        server_extra: &str,
        export: &str,
    ) -> Vec<String> {
        vec![
            "--blockdev".to_string(),
            format!("driver=file,node-name=f,filename={img}{node_extra}"),
            "--nbd-server".to_string(),
            format!("{}{server_extra}", addr.server_opts()),
            "--export".to_string(),
            format!("type=nbd,id=e,node-name=f,{export}"),
        ]
    }

    /// Starts `bin` with a file node `f` on `img` (`node_extra` appended
    /// to the `--blockdev`), an NBD server on `addr` (`server_extra`
    /// appended) and `type=nbd,id=e,node-name=f,` + `export`.
    pub fn start(
        bin: &str,
        dir: &TempDir,
        img: &str,
        node_extra: &str,
        addr: NbdAddr,
        server_extra: &str,
        export: &str,
    ) -> NbdDaemon {
        let args = Self::args(img, node_extra, &addr, server_extra, export);
        let mut daemon = Daemon::start(bin, dir, &args);
        addr.wait(&mut daemon);
        NbdDaemon {
            daemon,
            addr,
            img: img.to_string(),
        }
    }

    pub fn uri(&self, name: &str) -> String {
        self.addr.uri(name)
    }

    /// [`NbdDaemon::start`] on TCP `host` and a fresh port (see
    /// [`start_on_free_port`]).
    pub fn start_tcp(
        bin: &str,
        dir: &TempDir,
        img: &str,
        node_extra: &str,
        host: &str,
        server_extra: &str,
        export: &str,
    ) -> NbdDaemon {
        let (daemon, port) = start_on_free_port(bin, dir, |port| {
            let addr = NbdAddr::Tcp(host.to_string(), port);
            Self::args(img, node_extra, &addr, server_extra, export)
        });
        NbdDaemon {
            daemon,
            addr: NbdAddr::Tcp(host.to_string(), port),
            img: img.to_string(),
        }
    }
}

/// A raw NBD client on unix socket `sock` that selected export `name`
/// with `NBD_OPT_GO` (simple replies), in the transmission phase.
pub fn nbd_go_unix(sock: &str, name: &str) -> UnixStream {
    let mut s = UnixStream::connect(sock).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let mut greeting = [0u8; 18];
    s.read_exact(&mut greeting).expect("greeting");
    assert_eq!(&greeting[..16], b"NBDMAGICIHAVEOPT");
    // FIXED_NEWSTYLE | NO_ZEROES
    s.write_all(&3u32.to_be_bytes()).expect("client flags");
    let len = u32::try_from(name.len()).expect("short name");
    let mut opt = b"IHAVEOPT".to_vec();
    opt.extend_from_slice(&7u32.to_be_bytes());
    opt.extend_from_slice(&(len + 6).to_be_bytes());
    opt.extend_from_slice(&len.to_be_bytes());
    opt.extend_from_slice(name.as_bytes());
    opt.extend_from_slice(&[0, 0]);
    s.write_all(&opt).expect("NBD_OPT_GO");
    loop {
        let mut h = [0u8; 20];
        s.read_exact(&mut h).expect("NBD_OPT_GO reply");
        let ty = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
        let len = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
        let mut p = vec![0u8; len as usize];
        s.read_exact(&mut p).expect("NBD_OPT_GO reply data");
        assert_eq!(
            ty & (1 << 31),
            0,
            "NBD_OPT_GO {name} on {sock}: error {ty:#x}"
        );
        // NBD_REP_ACK
        if ty == 1 {
            return s;
        }
    }
}

/// Lets `fd` survive exec into `cmd`'s child (close-on-exec is cleared
/// there only), as a parent passing a listening socket does.
pub fn inherit_fd(cmd: &mut Command, fd: i32) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only fcntl(2), async-signal-safe, runs in the forked child.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}
