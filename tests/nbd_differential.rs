//! The NBD export against qemu-storage-daemon 10.0.2: both daemons start
//! with the same command line on copies of the same image, the same
//! client commands run against each, and what the clients print must be
//! the same once the paths that differ (each daemon has its own
//! directory) are replaced by `DIR`.

// Needs the NBD backend.
#![cfg(feature = "nbd")]

mod common;

use std::process::Command;

use common::{NbdAddr, NbdDaemon, OURS, QSD, TempDir, nbdsh_script, require, run_tool, tool_ok};

const SIZE: &str = "64M";

/// A source image with data, written zeroes and holes.
fn source(dir: &TempDir) -> String {
    let src = dir.join("src.img");
    common::create_image(&src, SIZE);
    let mut c = Command::new("qemu-io");
    c.args(["-f", "raw"]);
    for cmd in [
        "write -P 0x11 0 1M",
        "write -P 0x22 3000 5000",
        "write -z 512k 64k",
        "write -P 0x33 20M 3M",
        "write -P 0x44 63M 1M",
    ] {
        c.args(["-c", cmd]);
    }
    tool_ok(c.arg(&src));
    src
}

/// A daemon of each kind on its own sparse copy of `src`.
struct Pair {
    /// qsd first, ours second; each with its directory.
    sides: Vec<(NbdDaemon, TempDir)>,
}

impl Pair {
    fn start(src: &str, node_extra: &str, server_extra: &str, export: &str) -> Pair {
        require(QSD);
        let sides = [QSD, OURS]
            .into_iter()
            .map(|bin| {
                let dir = TempDir::new(if bin == OURS {
                    "nbd-diff-ours"
                } else {
                    "nbd-diff-qsd"
                });
                let img = dir.join("disk.img");
                tool_ok(Command::new("cp").args(["--sparse=always", src, &img]));
                let d = NbdDaemon::start(
                    bin,
                    &dir,
                    &img,
                    node_extra,
                    NbdAddr::Unix(dir.join("nbd.sock")),
                    server_extra,
                    export,
                );
                (d, dir)
            })
            .collect();
        Pair { sides }
    }

    /// Runs `make(uri_of_export, socket, dir)` against both; returns
    /// (qsd's, ours) outputs with the directories replaced by `DIR`.
    fn both(&self, name: &str, make: impl Fn(&str, &str) -> String) -> (String, String) {
        let mut outs = self.sides.iter().map(|(d, dir)| {
            let sock = dir.join("nbd.sock");
            let out = make(&d.uri(name), &sock);
            out.replace(&dir.path().display().to_string(), "DIR")
        });
        let qsd = outs.next().unwrap_or_default();
        let ours = outs.next().unwrap_or_default();
        (qsd, ours)
    }

    /// Runs the same and asserts both printed the same.
    fn same(&self, what: &str, name: &str, make: impl Fn(&str, &str) -> String) -> String {
        let (qsd, ours) = self.both(name, make);
        assert_eq!(
            ours, qsd,
            "{what}: ours (left) differs from qemu-storage-daemon (right)"
        );
        ours
    }
}

/// Stdout, stderr and exit code of a command, as one text.
fn all_of(cmd: &mut Command) -> String {
    let (code, out, err) = run_tool(cmd);
    format!("exit {code}\n{out}\n--- stderr\n{err}")
}

/// qemu-io's output without its timing lines (`... ops/sec)`).
fn qemu_io_text(uri: &str, cmds: &[&str]) -> String {
    let mut c = Command::new("qemu-io");
    c.args(["-f", "raw"]);
    for cmd in cmds {
        c.args(["-c", cmd]);
    }
    all_of(c.arg(uri))
        .lines()
        .filter(|l| !l.contains("ops/sec"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn clients_see_the_same_export() {
    let tmp = TempDir::new("nbd-diff-src");
    let src = source(&tmp);
    let p = Pair::start(
        &src,
        "",
        "",
        "name=disk,writable=on,allocation-depth=on,description=same disk",
    );

    // nbdinfo --json: the only field that differs is "uri", which holds
    // the socket path (normalised to DIR). Handshake flags are not shown;
    // "content" comes from the image data, which is the same.
    let json = p.same("nbdinfo --json", "disk", |uri, _| {
        tool_ok(Command::new("nbdinfo").args(["--json", uri]))
    });
    assert!(json.contains("\"qemu:allocation-depth\""), "{json}");
    p.same("nbdinfo --list", "", |uri, _| {
        all_of(Command::new("nbdinfo").args(["--list", uri]))
    });
    p.same("nbdinfo --list --json", "", |uri, _| {
        all_of(Command::new("nbdinfo").args(["--list", "--json", uri]))
    });
    // The meta contexts the server lists (qemu-nbd asks with
    // NBD_OPT_LIST_META_CONTEXT and an empty query).
    let list = p.same("qemu-nbd --list", "", |_, sock| {
        all_of(Command::new("qemu-nbd").args(["--list", "-k", sock]))
    });
    assert!(list.contains("base:allocation"), "{list}");
    for map in [
        "--map",
        "--map=qemu:allocation-depth",
        "--map=base:allocation",
    ] {
        p.same(map, "disk", |uri, _| {
            all_of(Command::new("nbdinfo").args([map, uri]))
        });
    }
    p.same("nbdinfo --map --totals", "disk", |uri, _| {
        all_of(Command::new("nbdinfo").args(["--map", "--totals", uri]))
    });
    let map = p.same("qemu-img map", "disk", |uri, _| {
        all_of(Command::new("qemu-img").args(["map", "--output=json", uri]))
    });
    assert!(map.contains("\"data\": true"), "{map}");
    p.same("qemu-img info", "disk", |uri, _| {
        all_of(Command::new("qemu-img").args(["info", "--output=json", uri]))
    });

    // qemu-io, including requests that fail.
    let io = p.same("qemu-io", "disk", |uri, _| {
        qemu_io_text(
            uri,
            &[
                "read -P 0x11 0 512k",
                "read -P 0 512k 64k",
                "read -P 0x22 3000 5000",
                "read -v 1048000 1100",
                "write -P 0x55 100 10000",
                "write -z 30M 5M",
                "write -z -u 20M 1M",
                "discard 21M 64k",
                "read -P 0 30M 5M",
                "read 64M 512",
                "write 63M 2M",
                "map",
                "flush",
            ],
        )
    });
    assert!(io.contains("read 5000/5000 bytes"), "{io}");
    // Two requests in flight at once: either may complete first (qsd's
    // order varies too), so their lines are compared as a set.
    let (qsd, ours) = p.both("disk", |uri, _| {
        qemu_io_text(
            uri,
            &[
                "aio_write -P 0x66 40M 64k",
                "aio_read -P 0 41M 64k",
                "aio_flush",
            ],
        )
    });
    let sorted = |s: &str| {
        let mut lines: Vec<&str> = s.lines().collect();
        lines.sort_unstable();
        lines.join("\n")
    };
    assert_eq!(
        sorted(&ours),
        sorted(&qsd),
        "qemu-io aio: ours (left) differs from qemu-storage-daemon (right)"
    );
    assert!(
        ours.contains("wrote 65536/65536 bytes at offset 41943040"),
        "{ours}"
    );
    // After the same writes through both, the maps still agree.
    p.same("qemu-img map after writes", "disk", |uri, _| {
        all_of(Command::new("qemu-img").args(["map", "--output=json", uri]))
    });
    p.same("qemu-img compare", "disk", |uri, _| {
        let img = uri
            .replace("nbd+unix:///disk?socket=", "")
            .replace("nbd.sock", "disk.img");
        all_of(
            Command::new("qemu-img").args(["compare", "-U", "-f", "raw", "-F", "raw", uri, &img]),
        )
    });

    // libnbd's view of the protocol edges (tests/nbd_scripts/edges.py).
    let script = include_str!("nbd_scripts/edges.py");
    let edges = p.same("nbdsh edges", "disk", |uri, _| {
        let (code, out, err) = nbdsh_script(script, &[uri, "rw"]);
        format!("exit {code}\n{out}\n{err}")
    });
    assert!(edges.contains("exit 0"), "{edges}");
    p.same("qemu-img map after edges", "disk", |uri, _| {
        all_of(Command::new("qemu-img").args(["map", "--output=json", uri]))
    });
}

#[test]
fn read_only_export_answers_the_same() {
    let tmp = TempDir::new("nbd-diff-ro-src");
    let src = source(&tmp);
    let p = Pair::start(&src, ",read-only=on", ",max-connections=4", "name=ro");
    p.same("nbdinfo --json (ro)", "ro", |uri, _| {
        tool_ok(Command::new("nbdinfo").args(["--json", uri]))
    });
    let script = include_str!("nbd_scripts/edges.py");
    let edges = p.same("nbdsh edges (ro)", "ro", |uri, _| {
        let (code, out, err) = nbdsh_script(script, &[uri, "ro"]);
        format!("exit {code}\n{out}\n{err}")
    });
    assert!(edges.contains("pwrite: EINVAL"), "{edges}");
    p.same("qemu-io (ro)", "ro", |uri, _| {
        qemu_io_text(
            uri,
            &[
                "read -P 0x11 0 64k",
                "write 0 512",
                "discard 0 64k",
                "write -z 0 4k",
            ],
        )
    });
    // Asking for an export that does not exist.
    p.same("qemu-img info of a missing export", "nope", |uri, _| {
        all_of(Command::new("qemu-img").args(["info", uri]))
    });
    p.same("nbdinfo of a missing export", "nope", |uri, _| {
        all_of(Command::new("nbdinfo").arg(uri))
    });
}
