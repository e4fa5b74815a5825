//! Differential test of the FUSE export: the same file operations on the
//! mount of qemu-storage-daemon 10.0 and on ours, each over its own copy
//! of the same image; every result (values, errno, QMP replies) and the
//! images afterwards must be the same.
//!
//! Covered: stat (mode, size, blocks), pattern reads and writes, reads at
//! and past the end, writes past the end (growable off and on), truncate
//! (grow, shrink), fallocate (default mode, punch-hole, zero-range, with
//! util-linux `fallocate`), SEEK_DATA/SEEK_HOLE on a sparse image,
//! chmod/chown, open with O_TRUNC, writes on a read-only export,
//! `block-export-del` while a descriptor is open, and the QMP errors for
//! bad mountpoints (missing, a directory, already mounted).
//!
//! What is normalized: each daemon's scratch directory (`$DIR`). Nothing
//! else is; a deliberate difference would be commented where it is left
//! out (there is none so far).
//!
//! Needs root and /dev/fuse: not root prints why and passes; root without
//! /dev/fuse, qemu-storage-daemon or `fallocate` fails saying what is
//! missing.

// Needs the FUSE backend.
#![cfg(feature = "fuse")]

mod common;

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Daemon, OURS, QSD, Qmp, TempDir, is_mounted, strings};
use serde_json::{Value, json};

const MIB: u64 = 1 << 20;

/// Whether this machine can run the test; prints why not when not root.
fn preflight() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: FUSE mounts by the daemons need root (fusermount3 is not used here)");
        return false;
    }
    assert!(
        std::path::Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: load the fuse module (modprobe fuse) or run where FUSE is available"
    );
    common::require(QSD);
    common::require("fallocate");
    true
}

/// A negotiated connection to the daemon's monitor. qsd serves one
/// monitor client at a time, and a connection made right after the
/// harness's probe (which checks the socket accepts) is now and then
/// greeted twice: a second greeting is skipped rather than taken for the
/// answer to `qmp_capabilities`.
fn monitor(daemon: &Daemon) -> Qmp {
    let path = daemon.qmp_path.as_deref().expect("daemon has a monitor");
    let mut q = Qmp::connect(path);
    q.send(&json!({"execute": "qmp_capabilities"}));
    loop {
        let r = q.reply();
        if r.get("QMP").is_none() {
            assert_eq!(r, json!({"return": {}}), "qmp_capabilities");
            return q;
        }
    }
}

/// A daemon exporting `DIR/img.raw` over FUSE on `DIR/mnt`.
struct Mounted {
    daemon: Daemon,
    qmp: Qmp,
    dir: TempDir,
    img: String,
    mnt: String,
}

impl Mounted {
    /// Starts `bin` with the export options `opts` (e.g. `writable=on`)
    /// on an image that `image` fills.
    fn start(bin: &str, tag: &str, image: fn(&str), opts: &str) -> Mounted {
        let dir = TempDir::new(tag);
        let (img, mnt) = (dir.join("img.raw"), dir.join("mnt"));
        image(&img);
        File::create(&mnt).expect("create the mountpoint file");
        let export = format!("fuse,id=e,node-name=f,mountpoint={mnt},{opts}");
        let daemon = Daemon::start(
            bin,
            &dir,
            &strings(&[
                "--blockdev",
                &format!("driver=file,node-name=f,filename={img}"),
                "--export",
                &export,
            ]),
        );
        let deadline = Instant::now() + common::TIMEOUT;
        while !is_mounted(&mnt) {
            assert!(Instant::now() < deadline, "{bin}: {mnt} never mounted");
            std::thread::sleep(Duration::from_millis(5));
        }
        let qmp = monitor(&daemon);
        Mounted {
            daemon,
            qmp,
            dir,
            img,
            mnt,
        }
    }

    /// `quit`, then the image's bytes once the daemon is gone.
    fn finish(mut self) -> Vec<u8> {
        let _ = self.qmp.execute("quit", Value::Null);
        let (status, err) = self.daemon.wait();
        assert!(status.success(), "exit status {status}: {err}");
        assert!(
            !is_mounted(&self.mnt),
            "{} still mounted after quit",
            self.mnt
        );
        std::fs::read(&self.img).expect("read the image")
    }

    fn norm(&self, s: &str) -> String {
        s.replace(&self.dir.path().display().to_string(), "$DIR")
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // A daemon killed by a failed assertion leaves its mount behind.
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").args(["-l", &self.mnt]).status();
        }
    }
}

/// What a call returned, as a line of the log.
fn res<T: std::fmt::Debug, E: std::borrow::Borrow<std::io::Error>>(r: Result<T, E>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(e) => match e.borrow().raw_os_error() {
            Some(n) => format!("errno {n} ({:?})", e.borrow().kind()),
            None => format!("error {:?}", e.borrow().kind()),
        },
    }
}

/// A cheap digest of bytes (FNV-1a), enough to tell patterns apart.
fn digest(b: &[u8]) -> String {
    let h = b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{}B:{h:016x}", b.len())
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// The operations' log for one daemon.
struct Log {
    lines: Vec<String>,
    mnt: String,
}

impl Log {
    fn push(&mut self, what: &str, result: String) {
        self.lines.push(format!("{what}: {result}"));
    }

    fn stat(&mut self, what: &str) {
        let r = std::fs::metadata(&self.mnt).map(|m| {
            format!(
                "mode {:o} size {} blocks {} uid {} gid {}",
                m.mode(),
                m.size(),
                m.blocks(),
                m.uid(),
                m.gid()
            )
        });
        self.push(&format!("stat {what}"), res(r));
    }

    fn open(&self, write: bool) -> File {
        OpenOptions::new()
            .read(true)
            .write(write)
            .open(&self.mnt)
            .unwrap_or_else(|e| panic!("open {}: {e}", self.mnt))
    }

    fn read(&mut self, f: &File, off: u64, len: usize) {
        let mut buf = vec![0u8; len];
        let r = f.read_at(&mut buf, off).map(|n| digest(&buf[..n]));
        self.push(&format!("read {off}+{len}"), res(r));
    }

    fn write(&mut self, f: &File, off: u64, len: usize, seed: u8) {
        let r = f.write_at(&pattern(len, seed), off);
        self.push(&format!("write {off}+{len}"), res(r));
    }

    /// A read through an `O_DIRECT` descriptor (aligned buffer).
    fn read_direct(&mut self, f: &File, len: usize) {
        let mut buf = vec![0u8; len + 4096];
        let skip = buf.as_ptr().align_offset(4096);
        let aligned = &mut buf[skip..skip + len];
        let r = f.read_at(aligned, 0).map(|n| digest(&aligned[..n]));
        self.push(&format!("O_DIRECT read 0+{len}"), res(r));
    }

    fn seek(&mut self, f: &File, off: i64, whence: i32, name: &str) {
        // SAFETY: lseek on a descriptor we own.
        let r = unsafe { libc::lseek(f.as_raw_fd(), off, whence) };
        let r = if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(r)
        };
        self.push(&format!("lseek {off} {name}"), res(r));
    }

    /// util-linux `fallocate ARGS MNT`: exit status and message.
    fn fallocate(&mut self, args: &[&str]) {
        let out = Command::new("fallocate")
            .args(args)
            .arg(&self.mnt)
            .output()
            .expect("run fallocate");
        let err = String::from_utf8_lossy(&out.stderr).replace(&self.mnt, "$MNT");
        self.push(
            &format!("fallocate {}", args.join(" ")),
            format!("{:?} {}", out.status.code(), err.trim()),
        );
    }
}

/// Runs `script` against qsd's mount and ours and compares the logs and
/// the images left behind.
fn differential(tag: &str, image: fn(&str), opts: &str, script: fn(&mut Log, &mut Mounted)) {
    if !preflight() {
        return;
    }
    let mut logs = Vec::new();
    let mut images = Vec::new();
    for bin in [QSD, OURS] {
        let mut m = Mounted::start(bin, tag, image, opts);
        let mut log = Log {
            lines: Vec::new(),
            mnt: m.mnt.clone(),
        };
        script(&mut log, &mut m);
        let lines: Vec<String> = log.lines.iter().map(|l| m.norm(l)).collect();
        images.push(m.finish());
        logs.push(lines);
    }
    let (qsd, ours) = (&logs[0], &logs[1]);
    for (i, (q, o)) in qsd.iter().zip(ours).enumerate() {
        assert_eq!(
            q,
            o,
            "{tag}: step {i} differs (left qsd, right ours); qsd's log:\n  {}\nours:\n  {}",
            qsd.join("\n  "),
            ours.join("\n  ")
        );
    }
    assert_eq!(qsd.len(), ours.len(), "{tag}: number of steps");
    assert_eq!(
        digest(&images[0]),
        digest(&images[1]),
        "{tag}: the images differ afterwards"
    );
    eprintln!(
        "{tag}: {} steps the same:\n  {}",
        qsd.len(),
        qsd.join("\n  ")
    );
}

/// A 1 MiB image of a known pattern.
fn patterned(path: &str) {
    std::fs::write(path, pattern(MIB as usize, 7)).expect("write image");
}

/// A 4 MiB sparse image: data at [0, 64K), [1M, 1M+64K) and [3M, 3M+4K).
fn sparse(path: &str) {
    let f = File::create(path).expect("create image");
    f.set_len(4 * MIB).expect("size image");
    for (off, len) in [(0, 64 << 10), (MIB, 64 << 10), (3 * MIB, 4 << 10)] {
        f.write_all_at(&pattern(len, 3), off).expect("write image");
    }
}

#[test]
fn reads_writes_and_the_end_of_the_image() {
    differential("fuse-io", patterned, "writable=on", |log, _| {
        log.stat("at start");
        let f = log.open(true);
        log.read(&f, 0, 4096);
        log.read(&f, 1000, 3000);
        log.read(&f, MIB - 100, 4096);
        log.read(&f, MIB, 4096);
        log.read(&f, MIB + 4096, 512);
        log.write(&f, 4096, 8192, 0xa5);
        log.write(&f, 12345, 777, 0x11);
        log.read(&f, 0, 64 << 10);
        // Across and past the end, growable off.
        log.write(&f, MIB - 10, 100, 0x22);
        log.write(&f, MIB + 4096, 512, 0x33);
        log.push("fsync", res(f.sync_all()));
        log.read(&f, MIB - 512, 1024);
        log.stat("after writes");
    });
}

#[test]
fn growable_export_grows() {
    differential(
        "fuse-grow",
        patterned,
        "writable=on,growable=on",
        |log, _| {
            let f = log.open(true);
            log.write(&f, MIB - 10, 100, 0x22);
            log.stat("after a write across the end");
            log.write(&f, 2 * MIB, 4096, 0x44);
            log.stat("after a write past the end");
            log.read(&f, MIB, 8192);
            log.read(&f, 2 * MIB, 8192);
        },
    );
}

#[test]
fn truncate_grow_and_shrink() {
    for (tag, opts) in [
        ("fuse-trunc", "writable=on"),
        ("fuse-trunc-grow", "writable=on,growable=on"),
    ] {
        differential(tag, patterned, opts, |log, _| {
            let f = log.open(true);
            log.push("truncate to 2M", res(f.set_len(2 * MIB)));
            log.stat("after grow");
            log.read(&f, MIB - 4096, 8192);
            log.push("truncate to 512K", res(f.set_len(MIB / 2)));
            log.stat("after shrink");
            log.read(&f, MIB / 2 - 100, 4096);
            log.push("truncate to 768K", res(f.set_len(3 * MIB / 4)));
            log.read(&f, MIB / 2, 4096);
            log.stat("after regrow");
        });
    }
}

#[test]
fn fallocate_modes() {
    for (tag, opts) in [
        ("fuse-falloc", "writable=on"),
        ("fuse-falloc-grow", "writable=on,growable=on"),
    ] {
        differential(tag, patterned, opts, |log, _| {
            log.fallocate(&["--punch-hole", "-o", "64KiB", "-l", "64KiB"]);
            log.fallocate(&["--zero-range", "-o", "200KiB", "-l", "100KiB"]);
            log.fallocate(&["--zero-range", "--keep-size", "-o", "300KiB", "-l", "10KiB"]);
            log.fallocate(&["-o", "0", "-l", "64KiB"]);
            log.fallocate(&["-o", "1MiB", "-l", "64KiB"]);
            log.fallocate(&["--punch-hole", "-o", "960KiB", "-l", "1MiB"]);
            log.stat("after fallocate");
            let f = log.open(false);
            for off in [0, 64 << 10, 200 << 10, 300 << 10, 960 << 10] {
                log.read(&f, off, 128 << 10);
            }
        });
    }
}

#[test]
fn seek_data_and_holes() {
    differential("fuse-seek", sparse, "writable=on", |log, _| {
        log.stat("sparse");
        let f = log.open(false);
        for off in [
            0,
            4096,
            64 << 10,
            100 << 10,
            MIB,
            2 * MIB,
            3 * MIB,
            4 * MIB - 1,
            4 * MIB,
        ] {
            let off = i64::try_from(off).unwrap_or(i64::MAX);
            log.seek(&f, off, libc::SEEK_DATA, "SEEK_DATA");
            log.seek(&f, off, libc::SEEK_HOLE, "SEEK_HOLE");
        }
        log.seek(&f, 100, libc::SEEK_SET, "SEEK_SET");
        log.seek(&f, 0, libc::SEEK_END, "SEEK_END");
    });
}

#[test]
fn chmod_chown_and_o_trunc() {
    differential("fuse-attr", patterned, "writable=on", |log, _| {
        log.stat("at start");
        let mode = |m| std::fs::Permissions::from_mode(m);
        log.push(
            "chmod 600",
            res(std::fs::set_permissions(&log.mnt, mode(0o600))),
        );
        log.stat("after chmod 600");
        log.push(
            "chmod 4755",
            res(std::fs::set_permissions(&log.mnt, mode(0o4755))),
        );
        log.stat("after chmod 4755");
        log.push(
            "chown 1000:1000",
            res(std::os::unix::fs::chown(&log.mnt, Some(1000), Some(1000))),
        );
        log.push(
            "chown 0:0",
            res(std::os::unix::fs::chown(&log.mnt, Some(0), Some(0))),
        );
        log.stat("after chown");
        let t = OpenOptions::new().write(true).truncate(true).open(&log.mnt);
        log.push("open O_TRUNC", res(t.map(|_| ())));
        log.stat("after O_TRUNC");
    });
}

#[test]
fn read_only_export_refuses_writes() {
    differential("fuse-ro", patterned, "writable=off", |log, _| {
        log.stat("read-only");
        let rw = OpenOptions::new().read(true).write(true).open(&log.mnt);
        log.push("open O_RDWR", res(rw.as_ref().map(|_| ())));
        if let Ok(f) = &rw {
            log.write(f, 0, 4096, 1);
            log.push("truncate", res(f.set_len(4096)));
        }
        let t = OpenOptions::new().write(true).truncate(true).open(&log.mnt);
        log.push("open O_TRUNC", res(t.map(|_| ())));
        log.fallocate(&["--punch-hole", "-o", "0", "-l", "4KiB"]);
        log.stat("after refused writes");
        let f = log.open(false);
        log.read(&f, 0, 8192);
    });
}

#[test]
fn export_del_with_an_open_descriptor() {
    differential("fuse-del", patterned, "writable=on", |log, m| {
        let f = log.open(true);
        // O_DIRECT: what the descriptor reads after the export is gone
        // comes from the daemon, not from the page cache.
        let g = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(&log.mnt)
            .expect("open O_DIRECT");
        log.read(&f, 0, 4096);
        log.read_direct(&g, 4096);
        // The FUSE export has no clients to wait for: safe mode removes it
        // at once, open descriptors or not.
        let r = m.qmp.execute("block-export-del", json!({"id": "e"}));
        log.push("block-export-del", format!("{r:?}"));
        let ev = m.qmp.event();
        log.push("event", format!("{} {}", ev["event"], ev["data"]));
        let deadline = Instant::now() + common::TIMEOUT;
        while is_mounted(&m.mnt) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        log.push("mounted after del", format!("{}", is_mounted(&m.mnt)));
        let q = m.qmp.execute("query-block-exports", Value::Null);
        log.push("query-block-exports", format!("{q:?}"));
        log.read_direct(&g, 4096);
        let r = g.write_at(&pattern(4096, 9), 0);
        log.push("O_DIRECT write after del", res(r));
        let r = m
            .qmp
            .execute("block-export-del", json!({"id": "e", "mode": "hard"}));
        log.push("block-export-del again", format!("{r:?}"));
        drop((f, g));
        log.stat("the mountpoint file again");
    });
}

#[test]
fn bad_mountpoints_are_qmp_errors() {
    differential("fuse-badmnt", patterned, "writable=on", |log, m| {
        let sub = m.dir.join("subdir");
        std::fs::create_dir(&sub).expect("mkdir");
        let cases = [
            ("missing", m.dir.join("nosuch")),
            ("directory", sub),
            ("already mounted", m.mnt.clone()),
            ("relative", "relative-nosuch".to_string()),
        ];
        for (i, (what, mountpoint)) in cases.into_iter().enumerate() {
            let r = m.qmp.execute(
                "block-export-add",
                json!({"type": "fuse", "id": format!("b{i}"), "node-name": "f",
                       "mountpoint": mountpoint}),
            );
            log.push(&format!("mountpoint {what}"), format!("{r:?}"));
        }
        let q = m.qmp.execute("query-block-exports", Value::Null);
        log.push("query-block-exports", format!("{q:?}"));
        log.push("still mounted", format!("{}", is_mounted(&m.mnt)));
        let f = log.open(false);
        log.read(&f, 0, 4096);
    });
}
