//! How the NBD server listens, against qemu-storage-daemon 10.0.2: one
//! max-connections limit for all the addresses of a server, a unix
//! socket path that is taken over whatever is there, and exports of the
//! command line in place before the first client is served.

// Needs the NBD backend.
#![cfg(feature = "nbd")]

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use common::{Daemon, OURS, QSD, TIMEOUT, TempDir, require};

/// Reads the 18-byte NBD greeting, or `None` when none comes in `wait`.
fn greeting<S: Read>(s: &mut S) -> Option<[u8; 18]> {
    let mut g = [0u8; 18];
    s.read_exact(&mut g).ok()?;
    assert_eq!(&g[..16], b"NBDMAGICIHAVEOPT");
    Some(g)
}

fn tcp(addr: &str, wait: Duration) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(wait)).expect("timeout");
    s
}

/// `max-connections=1` on a server listening on two addresses (an empty
/// host: 0.0.0.0 and ::): a client on the second address waits until the
/// first one leaves.
#[test]
fn max_connections_counts_all_addresses_of_a_server() {
    require(QSD);
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no ::1 on this machine");
        return;
    }
    for bin in [QSD, OURS] {
        let dir = TempDir::new("nbd-maxconn");
        let (_d, port) = common::start_on_free_port(bin, &dir, |port| {
            common::strings(&[
                "--blockdev",
                "null-co,node-name=n",
                "--nbd-server",
                &format!("addr.type=inet,addr.host=,addr.port={port},max-connections=1"),
                "--export",
                "type=nbd,id=e,node-name=n,name=disk",
            ])
        });
        let mut first = tcp(&format!("127.0.0.1:{port}"), TIMEOUT);
        assert!(greeting(&mut first).is_some(), "{bin}: first client");
        // The absence of a greeting can only be seen as time passing.
        let mut second = tcp(&format!("[::1]:{port}"), Duration::from_secs(1));
        assert!(
            greeting(&mut second).is_none(),
            "{bin}: a second client was served with max-connections=1"
        );
        drop(first);
        second.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        assert!(
            greeting(&mut second).is_some(),
            "{bin}: the waiting client was not served after the first left"
        );
    }
}

/// Starts `bin` serving NBD on unix socket `path`; returns once the
/// command line has taken effect (the monitor answers only then).
fn serve_unix(bin: &str, dir: &TempDir, path: &str) -> Daemon {
    let d = Daemon::start(
        bin,
        dir,
        &common::strings(&["--nbd-server", &format!("addr.type=unix,addr.path={path}")]),
    );
    d.qmp().alive();
    d
}

fn greets(path: &str) -> bool {
    let mut s = UnixStream::connect(path).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    greeting(&mut s).is_some()
}

/// What the daemon's error says after its name and the option.
fn message(stderr: &str, bin: &str) -> String {
    let line = stderr.lines().next().unwrap_or_default();
    line.rsplit_once(": Failed")
        .map(|(_, m)| format!("Failed{m}"))
        .unwrap_or_else(|| panic!("{bin}: unexpected error: {stderr}"))
}

#[test]
fn unix_socket_path_is_taken_over() {
    require(QSD);
    for bin in [QSD, OURS] {
        // A socket file nobody listens on (left by a crash).
        let dir = TempDir::new("nbd-stale");
        let path = dir.join("nbd.sock");
        drop(UnixListener::bind(&path).expect("bind"));
        let _d = serve_unix(bin, &dir, &path);
        assert!(greets(&path), "{bin}: stale socket");

        // A live socket of someone else: replaced too, as QEMU does.
        let dir = TempDir::new("nbd-live");
        let path = dir.join("nbd.sock");
        let other = UnixListener::bind(&path).expect("bind");
        other.set_nonblocking(true).expect("nonblocking");
        let _d = serve_unix(bin, &dir, &path);
        assert!(greets(&path), "{bin}: live socket");
        assert!(other.accept().is_err(), "{bin}: the old listener got it");

        // A regular file: replaced.
        let dir = TempDir::new("nbd-file");
        let path = dir.join("nbd.sock");
        std::fs::write(&path, b"data").expect("write");
        let _d = serve_unix(bin, &dir, &path);
        assert!(greets(&path), "{bin}: regular file");
    }
    // A directory cannot be unlinked: both refuse to start, alike.
    let got: Vec<(i32, String)> = [QSD, OURS]
        .iter()
        .map(|bin| {
            let dir = TempDir::new("nbd-dir");
            let path = dir.join("nbd.sock");
            std::fs::create_dir(&path).expect("mkdir");
            let (code, _, err) = common::run_to_exit(
                bin,
                &common::strings(&["--nbd-server", &format!("addr.type=unix,addr.path={path}")]),
            );
            (code, message(&err, bin).replace(&path, "P"))
        })
        .collect();
    assert_eq!(got[0], got[1], "qsd (left) and ours (right)");
    assert_eq!(got[0].1, "Failed to unlink socket P: Is a directory");
}

/// A client that connects as soon as the socket exists finds the export
/// of the command line (qsd serves nobody before its main loop runs).
#[test]
fn first_client_finds_the_command_line_export() {
    for _ in 0..5 {
        let dir = TempDir::new("nbd-first");
        let path = dir.join("nbd.sock");
        let mut args = vec![
            "--nbd-server".to_string(),
            format!("addr.type=unix,addr.path={path}"),
        ];
        for i in 0..20 {
            args.push("--blockdev".into());
            args.push(format!("null-co,node-name=n{i}"));
        }
        args.push("--export".into());
        args.push("type=nbd,id=e,node-name=n19,name=disk".into());
        let mut d = Daemon::spawn(OURS, &args);
        d.wait_for_socket(&path);
        drop(common::nbd_go_unix(&path, "disk"));
    }
}
