//! The FUSE export against the real kernel: the daemon mounts an image
//! over a regular file and ordinary tools (dd, cmp, qemu-img, truncate,
//! util-linux fallocate, chmod, fio) use it. Needs root and /dev/fuse:
//! without root the tests print why they are skipped; as root without
//! /dev/fuse they fail.

#![cfg(feature = "fuse")]

mod common;

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Daemon, OURS, TempDir, can_mount, create_image, is_mounted, require, tool_ok};
use serde_json::json;

/// A scratch directory with an image, a mountpoint file and a daemon
/// exporting the image there. Dropping it kills the daemon and detaches
/// whatever is still mounted, so a failing test leaves no mount behind.
struct Fixture {
    daemon: Option<Daemon>,
    img: String,
    mnt: String,
    dir: TempDir,
}

impl Fixture {
    /// `export` is appended to `--export type=fuse,id=e,node-name=f,...`.
    fn new(tag: &str, size: &str, export: &str) -> Fixture {
        let dir = TempDir::new(tag);
        let img = dir.join("img");
        let mnt = dir.join("mnt");
        create_image(&img, size);
        File::create(&mnt).expect("mountpoint file");
        let args = vec![
            "--blockdev".to_string(),
            format!("driver=file,node-name=f,filename={img}"),
            "--export".to_string(),
            format!("type=fuse,id=e,node-name=f,mountpoint={mnt}{export}"),
        ];
        let daemon = Daemon::start(OURS, &dir, &args);
        // Built before waiting, so that a failure still cleans up.
        let f = Fixture {
            daemon: Some(daemon),
            img,
            mnt,
            dir,
        };
        // The monitor comes first on the command line: wait for the mount.
        let deadline = Instant::now() + common::TIMEOUT;
        while !is_mounted(&f.mnt) {
            assert!(Instant::now() < deadline, "{} is not mounted", f.mnt);
            std::thread::sleep(Duration::from_millis(10));
        }
        f
    }

    fn daemon(&mut self) -> &mut Daemon {
        self.daemon.as_mut().expect("daemon running")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        drop(self.daemon.take());
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

fn dd(args: &[&str]) {
    tool_ok(Command::new("dd").args(args).arg("status=none"));
}

fn errno(r: std::io::Result<usize>) -> i32 {
    match r {
        Ok(n) => panic!("succeeded ({n}) but should fail"),
        Err(e) => e.raw_os_error().unwrap_or(0),
    }
}

#[test]
fn data_written_through_the_mount_is_the_image() {
    if !can_mount("data") {
        return;
    }
    let f = Fixture::new("fuse-data", "16M", ",writable=on");
    let meta = std::fs::metadata(&f.mnt).expect("stat mount");
    assert_eq!(meta.len(), 16 << 20);
    assert_eq!(meta.mode(), 0o100600, "writable export: -rw-------");
    assert_eq!(meta.ino(), 1);
    assert_eq!(meta.nlink(), 1);
    // Patterns at several offsets and sizes, some unaligned, one 2 MiB
    // write larger than a FUSE request.
    let pat = f.dir.join("pat");
    dd(&["if=/dev/urandom", &format!("of={pat}"), "bs=1M", "count=3"]);
    let mnt = format!("of={}", f.mnt);
    dd(&[
        &format!("if={pat}"),
        &mnt,
        "bs=1M",
        "count=2",
        "seek=5",
        "conv=notrunc",
    ]);
    dd(&[
        &format!("if={pat}"),
        &mnt,
        "bs=512",
        "count=7",
        "skip=3",
        "seek=1",
        "conv=notrunc",
    ]);
    dd(&[
        &format!("if={pat}"),
        &mnt,
        "bs=4096",
        "count=1",
        "skip=100",
        "seek=4095",
        "conv=notrunc",
    ]);
    let img = File::open(&f.img).expect("open image");
    let src = std::fs::read(&pat).expect("read pattern");
    let mut got = vec![0u8; 2 << 20];
    img.read_exact_at(&mut got, 5 << 20).expect("read image");
    assert!(got == src[..2 << 20], "2 MiB at 5 MiB differs in the image");
    let mut got = vec![0u8; 7 * 512];
    img.read_exact_at(&mut got, 512).expect("read image");
    assert!(got == src[3 * 512..10 * 512]);
    // Reading back through the mount (another process: cmp).
    tool_ok(
        Command::new("cmp")
            .args(["-n", "4096", "-i"])
            .arg(format!("{}:{}", 100 * 4096, 4095 * 4096))
            .arg(&pat)
            .arg(&f.mnt),
    );
    // qemu-img reads both files completely and compares them.
    tool_ok(
        Command::new("qemu-img")
            .args(["compare", "-U", "-f", "raw", "-F", "raw"])
            .arg(&f.mnt)
            .arg(&f.img),
    );
    // Reads at the end are short, past it empty.
    let file = File::open(&f.mnt).expect("open mount");
    let mut buf = vec![0u8; 8192];
    assert_eq!(file.read_at(&mut buf, (16 << 20) - 100).expect("read"), 100);
    assert_eq!(file.read_at(&mut buf, 16 << 20).expect("read"), 0);
}

#[test]
fn size_changes_follow_growable() {
    if !can_mount("size") {
        return;
    }
    let f = Fixture::new("fuse-size", "1M", ",writable=on");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&f.mnt)
        .expect("open");
    // Not growable: a write across the end is short, past it EIO.
    assert_eq!(file.write_at(b"abcd", (1 << 20) - 2).expect("write"), 2);
    assert_eq!(errno(file.write_at(b"x", 1 << 20)), libc::EIO);
    // Truncating works on writable exports, growing and shrinking.
    tool_ok(Command::new("truncate").args(["-s", "3M"]).arg(&f.mnt));
    assert_eq!(std::fs::metadata(&f.mnt).expect("stat").len(), 3 << 20);
    assert_eq!(std::fs::metadata(&f.img).expect("stat").len(), 3 << 20);
    tool_ok(Command::new("truncate").args(["-s", "512K"]).arg(&f.mnt));
    assert_eq!(std::fs::metadata(&f.img).expect("stat").len(), 512 << 10);
    // O_TRUNC does not truncate (as in qsd).
    drop(File::create(&f.mnt).expect("open with O_TRUNC"));
    assert_eq!(std::fs::metadata(&f.mnt).expect("stat").len(), 512 << 10);
    drop(file);

    let g = Fixture::new("fuse-grow", "1M", ",writable=on,growable=on");
    let file = OpenOptions::new().write(true).open(&g.mnt).expect("open");
    assert_eq!(file.write_at(b"tail", 3 << 20).expect("write"), 4);
    let len = std::fs::metadata(&g.img).expect("stat").len();
    assert_eq!(len, (3 << 20) + 4);
    let mut tail = [0u8; 4];
    File::open(&g.img)
        .expect("image")
        .read_exact_at(&mut tail, 3 << 20)
        .expect("read");
    assert_eq!(&tail, b"tail");

    let r = Fixture::new("fuse-ro", "1M", "");
    let meta = std::fs::metadata(&r.mnt).expect("stat");
    assert_eq!(meta.mode(), 0o100400, "read-only export: -r--------");
    // Root passes the permission check; the export refuses.
    let file = OpenOptions::new().write(true).open(&r.mnt).expect("open");
    assert_eq!(errno(file.write_at(b"x", 0)), libc::EACCES);
    assert_eq!(
        file.set_len(0).map(|_| 0).map_err(|e| e.raw_os_error()),
        Err(Some(libc::EACCES))
    );
}

fn fallocate(args: &[&str], path: &str) -> bool {
    Command::new("fallocate")
        .args(args)
        .arg(path)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run fallocate (util-linux)")
        .success()
}

#[test]
fn fallocate_punch_hole_and_zero_range() {
    if !can_mount("fallocate") {
        return;
    }
    require("fallocate");
    let f = Fixture::new("fuse-falloc", "1M", ",writable=on");
    dd(&[
        "if=/dev/urandom",
        &format!("of={}", f.mnt),
        "bs=64k",
        "count=16",
        "conv=notrunc",
    ]);
    assert!(fallocate(
        &["--punch-hole", "-o", "4096", "-l", "8192"],
        &f.mnt
    ));
    assert!(fallocate(
        &["--zero-range", "-o", "65536", "-l", "4096"],
        &f.mnt
    ));
    let img = std::fs::read(&f.img).expect("image");
    assert!(img[4096..12288].iter().all(|&b| b == 0), "punched range");
    assert!(img[65536..69632].iter().all(|&b| b == 0), "zeroed range");
    assert!(
        img[12288..16384].iter().any(|&b| b != 0),
        "data after the hole kept"
    );
    // Plain allocation inside the file is not possible; at the end it
    // grows the file; zero-range without --keep-size past the end too.
    assert!(!fallocate(&["-o", "0", "-l", "4096"], &f.mnt));
    assert!(fallocate(&["-o", "1M", "-l", "64k"], &f.mnt));
    assert_eq!(
        std::fs::metadata(&f.img).expect("stat").len(),
        (1 << 20) + 65536
    );
    assert!(fallocate(
        &["--zero-range", "-o", "2M", "-l", "4096"],
        &f.mnt
    ));
    assert_eq!(
        std::fs::metadata(&f.mnt).expect("stat").len(),
        (2 << 20) + 4096
    );
    // A punch starting past the end is an I/O error, as in qsd.
    assert!(!fallocate(
        &["--punch-hole", "-o", "3M", "-l", "4096"],
        &f.mnt
    ));
}

fn seek(file: &File, offset: i64, whence: i32) -> Result<i64, i32> {
    // SAFETY: lseek on an open descriptor.
    let r = unsafe { libc::lseek(file.as_raw_fd(), offset, whence) };
    if r < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(r)
    }
}

#[test]
fn seek_data_and_hole_on_a_sparse_image() {
    if !can_mount("seek") {
        return;
    }
    let f = Fixture::new("fuse-seek", "4M", ",writable=on");
    {
        // qemu-img create allocated the image's first block: punch it.
        tool_ok(
            Command::new("fallocate")
                .args(["-p", "-o", "0", "-l", "1M"])
                .arg(&f.img),
        );
        let img = OpenOptions::new().write(true).open(&f.img).expect("image");
        img.write_all_at(&[7u8; 65536], 1 << 20)
            .expect("write image");
    }
    let file = File::open(&f.mnt).expect("open mount");
    assert_eq!(seek(&file, 0, libc::SEEK_DATA), Ok(1 << 20));
    assert_eq!(seek(&file, 0, libc::SEEK_HOLE), Ok(0));
    assert_eq!(seek(&file, 1 << 20, libc::SEEK_HOLE), Ok((1 << 20) + 65536));
    assert_eq!(
        seek(&file, (1 << 20) + 65536, libc::SEEK_DATA),
        Err(libc::ENXIO)
    );
    assert_eq!(seek(&file, 4 << 20, libc::SEEK_HOLE), Ok(4 << 20));
    assert_eq!(
        seek(&file, (4 << 20) + 1, libc::SEEK_HOLE),
        Err(libc::ENXIO)
    );
}

#[test]
fn chmod_chown_and_times() {
    if !can_mount("chmod") {
        return;
    }
    let f = Fixture::new("fuse-chmod", "1M", ",writable=on,allow-other=off");
    std::fs::set_permissions(&f.mnt, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    assert_eq!(std::fs::metadata(&f.mnt).expect("stat").mode(), 0o100644);
    // Without allow_other, ownership cannot change; times never can.
    let (code, _, err) = common::run_tool(Command::new("chown").arg("1:1").arg(&f.mnt));
    assert_ne!(code, 0);
    assert!(err.contains("Operation not supported"), "{err}");
    let (code, _, err) = common::run_tool(Command::new("touch").arg(&f.mnt));
    assert_ne!(code, 0);
    assert!(err.contains("Operation not supported"), "{err}");
    // st_blocks is what the image allocates, st_blksize its alignment.
    let st = std::fs::metadata(&f.mnt).expect("stat");
    let img = std::fs::metadata(&f.img).expect("stat image");
    assert_eq!((st.blocks(), st.blksize()), (img.blocks(), 1));
    let mut g = Fixture::new("fuse-chown", "1M", ",writable=on,allow-other=on");
    tool_ok(Command::new("chown").arg("5:6").arg(&g.mnt));
    let st = std::fs::metadata(&g.mnt).expect("stat");
    assert_eq!((st.uid(), st.gid()), (5, 6));
    g.daemon().qmp().alive();
}

#[test]
fn fio_verifies_random_writes() {
    if !can_mount("fio") {
        return;
    }
    require("fio");
    let f = Fixture::new("fuse-fio", "32M", ",writable=on");
    // fio writes its verify state files into its working directory.
    tool_ok(Command::new("fio").current_dir(f.dir.path()).args([
        "--name=verify",
        &format!("--filename={}", f.mnt),
        "--ioengine=libaio",
        "--iodepth=32",
        "--direct=1",
        "--rw=randwrite",
        "--bs=4k",
        "--size=8M",
        "--verify=crc32c",
        "--do_verify=1",
        "--verify_fatal=1",
        "--numjobs=2",
        "--offset_increment=12M",
        "--group_reporting",
    ]));
}

#[test]
fn delete_while_open_unmounts_and_open_files_fail() {
    if !can_mount("delete") {
        return;
    }
    let mut f = Fixture::new("fuse-del", "1M", ",writable=on");
    let mut q = f.daemon().qmp();
    let mut open = File::open(&f.mnt).expect("open mount");
    let mut byte = [0u8; 1];
    open.read_exact(&mut byte).expect("read before delete");
    // Safe mode does not wait for open files (as in qsd).
    q.cmd("block-export-del", json!({"id": "e"}));
    assert_eq!(
        common::strip_timestamp(q.event()),
        json!({"event": "BLOCK_EXPORT_DELETED", "data": {"id": "e"}})
    );
    assert!(!is_mounted(&f.mnt), "still mounted after block-export-del");
    assert_eq!(q.cmd("query-block-exports", json!(null)), json!([]));
    // The file underneath is back; the open file's connection is gone.
    assert_eq!(std::fs::metadata(&f.mnt).expect("stat").len(), 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match open.read(&mut byte) {
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => break,
            r => assert!(Instant::now() < deadline, "read after delete: {r:?}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The node is free again for a new export on the same file.
    q.cmd(
        "block-export-add",
        json!({"type": "fuse", "id": "e2", "node-name": "f", "mountpoint": f.mnt}),
    );
    assert!(is_mounted(&f.mnt));
}

#[test]
fn mountpoint_errors() {
    if !can_mount("errors") {
        return;
    }
    let mut f = Fixture::new("fuse-errors", "1M", ",writable=on");
    let mut q = f.daemon().qmp();
    let add =
        |id: &str, mp: &str| json!({"type": "fuse", "id": id, "node-name": "f", "mountpoint": mp});
    let e = q.err("block-export-add", add("e2", &f.mnt));
    assert_eq!(
        e.desc,
        format!("There already is a FUSE export on '{}'", f.mnt)
    );
    let missing = f.dir.join("missing");
    let e = q.err("block-export-add", add("e3", &missing));
    assert_eq!(
        e.desc,
        format!("Failed to stat '{missing}': No such file or directory")
    );
    let dir = f.dir.join("d");
    std::fs::create_dir(&dir).expect("mkdir");
    let e = q.err("block-export-add", add("e4", &dir));
    assert_eq!(e.desc, format!("'{dir}' is not a regular file"));
    // Another spelling of a path that is already mounted.
    let other = format!("{}/./mnt", f.dir.path().display());
    let e = q.err("block-export-add", add("e5", &other));
    assert!(e.desc.contains("already a mount point"), "{}", e.desc);
    let ids: Vec<_> = q
        .cmd("query-block-exports", json!(null))
        .as_array()
        .expect("list")
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(ids, [json!("e")]);
    q.alive();
}

#[test]
fn quit_and_sigterm_unmount() {
    if !can_mount("quit") {
        return;
    }
    let mut f = Fixture::new("fuse-quit", "1M", ",writable=on");
    f.daemon().qmp().cmd("quit", json!(null));
    let (status, err) = f.daemon().wait();
    assert!(status.success(), "exit {status}: {err}");
    assert!(!is_mounted(&f.mnt), "quit left the mount behind");

    let mut g = Fixture::new("fuse-term", "1M", ",writable=on");
    let open = File::open(&g.mnt).expect("open mount");
    g.daemon().signal(libc::SIGTERM);
    let (status, err) = g.daemon().wait();
    assert!(status.success(), "exit {status}: {err}");
    assert!(!is_mounted(&g.mnt), "SIGTERM left the mount behind");
    // A read through a file opened before still fails cleanly.
    let mut b = [0u8; 1];
    assert!(
        open.read_at(&mut b, 0).is_err(),
        "read after the daemon exited"
    );
}
