//! Image locking against QEMU's tools: our users' permissions become the
//! same OFD byte-range locks qemu-storage-daemon takes, so qemu-img is
//! refused (or not) exactly as it would be by qsd, and we are refused when
//! another process holds conflicting locks.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod util;

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};

use storage_block::{BlockGraph, DriverOptions, OnOffAuto, Perms};
use util::*;

/// The tests here run one at a time: a qemu-img child forked by one test
/// briefly shares the other tests' open files (until its exec), and with
/// them their OFD locks.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn qemu_img(args: &[&str]) -> (bool, String) {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("run qemu-img");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The OFD lock ranges /proc/locks lists for `path` (all processes).
fn lock_ranges(path: &str) -> Vec<(u64, u64)> {
    let ino = std::fs::metadata(path).unwrap().ino();
    let locks = std::fs::read_to_string("/proc/locks").unwrap();
    let mut v: Vec<(u64, u64)> = locks
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let i = f.iter().position(|x| x.matches(':').count() == 2)?;
            let file_ino: u64 = f[i].rsplit(':').next()?.parse().ok()?;
            (f[1] == "OFDLCK" && file_ino == ino)
                .then(|| (f[i + 1].parse().ok(), f[i + 2].parse().ok()))
        })
        .filter_map(|(a, b)| Some((a?, b?)))
        .collect();
    v.sort_unstable();
    v
}

#[test]
fn writable_user_takes_qsds_locks_and_qemu_img_resize_is_refused() {
    let _serial = serial();
    if !have("qemu-img") {
        eprintln!("skipped: no qemu-img");
        return;
    }
    let s = Scratch::new();
    let img = s.image("a.img", 1 << 20);
    let g = Arc::new(BlockGraph::new());
    g.add(&file("f", &img)).unwrap();
    // No user, no locks (qsd takes none for an unused node).
    assert_eq!(lock_ranges(&img), vec![]);
    assert!(qemu_img(&["resize", "-f", "raw", &img, "2M"]).0);

    let user = g.attach("f", Perms::export(true)).unwrap();
    // What qsd holds for a writable NBD export: consistent read and write
    // (bytes 100-101), and resize not shared (byte 203).
    assert_eq!(lock_ranges(&img), vec![(100, 101), (203, 203)]);
    let (ok, err) = qemu_img(&["resize", "-f", "raw", &img, "4M"]);
    assert!(!ok);
    assert!(err.contains("Failed to get \"resize\" lock"), "{err}");
    assert!(
        err.contains(&format!("Is another process using the image [{img}]?")),
        "{err}"
    );
    // qemu-img info shares writes, as with qsd.
    assert!(qemu_img(&["info", "-f", "raw", &img]).0);

    drop(user);
    assert_eq!(lock_ranges(&img), vec![]);
    assert!(qemu_img(&["resize", "-f", "raw", &img, "4M"]).0);
}

#[test]
fn raw_window_and_locking_off() {
    let _serial = serial();
    if !have("qemu-img") {
        eprintln!("skipped: no qemu-img");
        return;
    }
    let s = Scratch::new();
    let img = s.image("a.img", 1 << 20);
    let g = Arc::new(BlockGraph::new());
    // A window keeps others from resizing the file even without users.
    g.add(&raw("r", inline(file_inline(&img)), Some(4096), None))
        .unwrap();
    assert_eq!(lock_ranges(&img), vec![(203, 203)]);
    let (ok, err) = qemu_img(&["resize", "-f", "raw", &img, "2M"]);
    assert!(
        !ok && err.contains("Failed to get \"resize\" lock"),
        "{err}"
    );
    g.remove("r").unwrap();
    assert!(qemu_img(&["resize", "-f", "raw", &img, "2M"]).0);

    let mut o = file("f", &img);
    if let DriverOptions::File(fo) = &mut o.driver {
        fo.locking = OnOffAuto::Off;
    }
    g.add(&o).unwrap();
    let _user = g.attach("f", Perms::export(true)).unwrap();
    assert_eq!(lock_ranges(&img), vec![]);
    assert!(qemu_img(&["resize", "-f", "raw", &img, "3M"]).0);
}

/// Another holder (here a second open file description, as another process
/// would have) that does not share writes: we may read, not write.
#[test]
fn foreign_locks_refuse_our_writers() {
    let _serial = serial();
    let s = Scratch::new();
    let img = s.image("a.img", 1 << 20);
    let other = std::fs::File::open(&img).unwrap();
    // SAFETY: flock is plain data.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_RDLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 201; // 200 + write: "write not shared"
    fl.l_len = 1;
    // SAFETY: valid descriptor and flock.
    assert_eq!(
        unsafe { libc::fcntl(other.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) },
        0
    );

    let g = Arc::new(BlockGraph::new());
    g.add(&file("f", &img)).unwrap();
    let e = g.attach("f", Perms::export(true)).unwrap_err();
    assert_eq!(e.desc(), "Failed to get \"write\" lock");
    assert_eq!(
        e.hint(),
        Some(format!("Is another process using the image [{img}]?").as_str())
    );
    // The failed attempt left no locks behind; a reader is fine.
    assert_eq!(g.users("f"), 0);
    let reader = g.attach("f", Perms::export(false)).unwrap();
    drop(reader);

    // Through a raw node the same: the permission reaches the file.
    g.add(&raw("r", reference("f"), None, None)).unwrap();
    assert_eq!(
        g.attach("r", Perms::export(true)).unwrap_err().desc(),
        "Failed to get \"write\" lock"
    );
    drop(other);
    g.attach("r", Perms::export(true)).unwrap();
}
