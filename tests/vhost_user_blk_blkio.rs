//! The vhost-user-blk export against qemu-storage-daemon 10.0.x, driven
//! by a real front end: libblkio's `virtio-blk-vhost-user` driver in
//! `tools/blkio-drive`. Each daemon serves its own copy of the same
//! image; `blkio-drive verify` runs the same seeded sequence against
//! both and prints one line per request (op, offset, length, result,
//! checksum of the data read) plus the libblkio properties it sees. The
//! transcripts hold no paths, pids or timings, so they must be equal
//! line for line; each image must also equal the model the sequence
//! kept (`cmp`).

// Needs the vhost-user-blk backend.
#![cfg(feature = "vhost-user-blk")]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Daemon, OURS, QSD, TempDir, require, start_on_free_port, tool_ok};
use serde_json::json;

/// How long one blkio-drive run may take (a verify takes about a second).
const RUN_LIMIT: Duration = Duration::from_secs(90);

/// Fails unless the reference daemon is 10.0.x: the transcripts are
/// qemu-storage-daemon 10.0.2's behaviour.
fn require_qsd_10_0() {
    require(QSD);
    let out = tool_ok(Command::new(QSD).arg("--version"));
    let version = out.lines().next().unwrap_or_default();
    assert!(
        version.contains("version 10.0."),
        "these tests compare with qemu-storage-daemon 10.0.x; found {version:?} \
         (./test.sh installs qemu-utils 10.0 from bookworm-backports)"
    );
}

/// blkio-drive, built once per test binary with the cargo that runs
/// the tests; its path is taken from cargo's own build report.
fn blkio_drive() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = option_env!("CARGO").unwrap_or("cargo");
        let out = Command::new(cargo)
            .args([
                "build",
                "-q",
                "-p",
                "blkio-drive",
                "--bin",
                "blkio-drive",
                "--message-format=json",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("run {cargo} build -p blkio-drive: {e}"));
        assert!(
            out.status.success(),
            "cargo build -p blkio-drive failed (see its messages above)"
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let exe = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "blkio-drive")
            .find_map(|v| v["executable"].as_str().map(str::to_string));
        let exe =
            exe.unwrap_or_else(|| panic!("cargo did not report blkio-drive's binary: {text}"));
        assert!(PathBuf::from(&exe).exists(), "{exe} does not exist");
        exe
    })
}

/// Runs blkio-drive to its end (killed after [`RUN_LIMIT`]): exit code,
/// stdout, stderr.
fn drive(args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(blkio_drive())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start blkio-drive: {e}"));
    // Both pipes are drained by threads so a long transcript cannot
    // block the child while we wait for it.
    let pipe = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = pipe(Box::new(child.stdout.take().expect("piped stdout")));
    let err = pipe(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("blkio-drive {args:?} did not finish in {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (
        status.code().unwrap_or(-1),
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}

/// A source image of `size` bytes: random data in some places, holes
/// (zeroes) in the others, the same on every run.
fn source(dir: &TempDir, size: u64) -> String {
    let path = dir.join("src.img");
    let mut data = vec![0u8; usize::try_from(size).expect("size")];
    let mut x: u64 = 0x1234_5678_9abc_def1;
    for (start, len) in [(0, 1 << 20), (5 << 20, 3 << 20), (20 << 20, 64 << 10)] {
        for b in &mut data[start..start + len] {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
    let tail = data.len() - 4096;
    data[tail..].fill(0x5a);
    std::fs::write(&path, &data).expect("write source image");
    path
}

/// One daemon on its own copy of the source image.
struct Side {
    name: &'static str,
    dir: TempDir,
    daemon: Daemon,
}

impl Side {
    /// Starts `bin` exporting a copy of `src` with `export_opts` added to
    /// the export; returns once its command line took effect (the
    /// monitor answered), so the vhost-user socket is listening.
    fn start(bin: &str, src: &str, node_opts: &str, export_opts: &str) -> Side {
        let name = if bin == OURS { "ours" } else { "qsd" };
        let dir = TempDir::new(&format!("vub-blkio-{name}"));
        let img = dir.join("disk.img");
        tool_ok(Command::new("cp").args(["--sparse=always", src, &img]));
        let sock = dir.join("vhost.sock");
        let args = vec![
            "--blockdev".to_string(),
            format!("driver=file,node-name=file0,filename={img}{node_opts}"),
            "--export".to_string(),
            format!(
                "type=vhost-user-blk,id=exp0,node-name=file0,addr.type=unix,addr.path={sock}{export_opts}"
            ),
        ];
        let (daemon, _) = start_on_free_port(bin, &dir, |_| args.clone());
        Side { name, dir, daemon }
    }

    fn sock(&self) -> String {
        self.dir.join("vhost.sock")
    }

    fn img(&self) -> String {
        self.dir.join("disk.img")
    }

    /// `blkio-drive verify` against this side; its transcript. The model
    /// goes to DIR/model.img.
    fn verify(&self, src: &str, extra: &[&str]) -> (i32, String, String) {
        let sock = self.sock();
        let model = self.dir.join("model.img");
        let mut args = vec![
            "verify", "--socket", &sock, "--model", &model, "--base", src,
        ];
        args.extend_from_slice(extra);
        drive(&args)
    }

    /// The image now equals the model `verify` wrote.
    fn assert_image_is_model(&self) {
        let model = self.dir.join("model.img");
        let (code, out, err) = common::run_tool(Command::new("cmp").args([&self.img(), &model]));
        assert_eq!(
            code, 0,
            "{}: the image differs from the model of the sequence: {out}{err}",
            self.name
        );
    }
}

/// Starts qsd and ours with the same options on copies of `src`.
fn both(src: &str, node_opts: &str, export_opts: &str) -> [Side; 2] {
    require_qsd_10_0();
    [QSD, OURS].map(|bin| Side::start(bin, src, node_opts, export_opts))
}

/// Asserts two transcripts are equal, showing the first line that is not.
fn assert_same(what: &str, qsd: &str, ours: &str) {
    for (i, (q, o)) in qsd.lines().zip(ours.lines()).enumerate() {
        assert_eq!(
            o,
            q,
            "{what}: line {} of ours (left) differs from qemu-storage-daemon's (right)",
            i + 1
        );
    }
    assert_eq!(
        ours.lines().count(),
        qsd.lines().count(),
        "{what}: ours has another number of lines than qemu-storage-daemon's\nours:\n{ours}\nqsd:\n{qsd}"
    );
}

/// Runs verify on both sides, checks each against its model and both
/// against each other; returns the (equal) transcript.
fn verify_both(sides: &[Side; 2], src: &str, extra: &[&str]) -> String {
    let [qsd, ours] = sides.each_ref().map(|s| {
        let (code, out, err) = s.verify(src, extra);
        assert_eq!(
            code, 0,
            "{}: blkio-drive verify {extra:?} failed: {err}\n{out}",
            s.name
        );
        assert!(out.contains(", 0 mismatches"), "{}: {out}", s.name);
        s.assert_image_is_model();
        out
    });
    assert_same(&format!("verify {extra:?}"), &qsd, &ours);
    ours
}

const SIZE: u64 = (48 << 20) + 1536;

#[test]
fn blkio_sequence_same_as_qsd() {
    let tmp = TempDir::new("vub-blkio-src");
    let src = source(&tmp, SIZE);
    // discard=unmap: discards and write-zeroes with unmap really punch
    // holes, so the block layer's discard path is part of the comparison.
    let sides = both(&src, ",discard=unmap", ",writable=on");
    let t = verify_both(&sides, &src, &[]);
    // What qsd does, pinned so a change of the sequence cannot hide it:
    // the capacity in bytes, 512-byte blocks, requests past the end and
    // of a length that is not whole blocks refused with EIO.
    for line in [
        "prop capacity 50333184",
        "prop request-alignment 512",
        "prop read-only false",
        "queues 1",
        " read 50333184 512 -> EIO",
        " read 0 256 -> EIO",
        " write-zeroes 50332672 1024 -> EIO",
        " discard 50333184 512 -> EIO",
        " flush -> ok",
    ] {
        assert!(t.contains(line), "transcript lacks {line:?}:\n{t}");
    }
    let past_end_write = |l: &&str| l.contains(" write 50332672 1024 ") && l.ends_with("-> EIO");
    assert!(t.lines().any(|l| past_end_write(&l)), "{t}");
    // More segments than max-segments (126) says: both take them.
    for n in [127, 200] {
        let seg = format!("[{n} segments]");
        assert!(
            t.lines().any(|l| l.contains(&seg) && l.ends_with("ok")),
            "{t}"
        );
    }
    assert!(t.contains("writev ") && t.contains("readv "), "{t}");
    assert!(t.contains("write-zeroes-no-unmap "), "{t}");

    // Discard and write-zeroes (with and without unmap) left the same
    // holes and data in both images.
    let [map_qsd, map_ours] = sides.each_ref().map(|s| {
        tool_ok(Command::new("qemu-img").args(["map", "--output=json", "-f", "raw", &s.img()]))
    });
    assert_same("qemu-img map of the images", &map_qsd, &map_ours);

    // A second front end after the first went away: the daemon takes it,
    // and it finds what the first one wrote (its base is the first
    // model, which the images were just compared with).
    let again: [String; 2] = sides.each_ref().map(|s| {
        let first = s.dir.join("model-1.img");
        std::fs::rename(s.dir.join("model.img"), &first).expect("keep the first model");
        let (code, out, err) = s.verify(&first, &[]);
        assert_eq!(code, 0, "{}: second front end: {err}\n{out}", s.name);
        s.assert_image_is_model();
        out
    });
    assert_same("verify by a second front end", &again[0], &again[1]);
}

#[test]
fn blkio_bench_runs_on_both() {
    let tmp = TempDir::new("vub-blkio-srcbench");
    let src = source(&tmp, SIZE);
    let sides = both(&src, "", ",writable=on");
    // Each workload of bench/vhost-user-blk.sh, briefly: every request
    // must succeed (blkio-drive fails otherwise) and some must be done.
    for s in &sides {
        for args in [
            &["--rw", "randread", "--bs", "4096", "--iodepth", "32"][..],
            &[
                "--rw",
                "randread",
                "--bs",
                "4096",
                "--iodepth",
                "1",
                "--poll",
            ],
            &["--rw", "randwrite", "--bs", "4096", "--iodepth", "32"],
            &["--rw", "read", "--bs", "1048576", "--iodepth", "4"],
            &["--rw", "write", "--bs", "1048576", "--iodepth", "4"],
        ] {
            let sock = s.sock();
            let mut all = vec!["bench", "--socket", &sock, "--seconds", "0.2"];
            all.extend_from_slice(args);
            let (code, out, err) = drive(&all);
            assert_eq!(code, 0, "{}: blkio-drive {all:?}: {err}{out}", s.name);
            let j: serde_json::Value = serde_json::from_str(out.trim())
                .unwrap_or_else(|e| panic!("{}: bench printed {out:?}: {e}", s.name));
            assert!(j["ios"].as_u64().is_some_and(|n| n > 0), "{}: {j}", s.name);
        }
    }
}

#[test]
fn blkio_4k_logical_blocks_same_as_qsd() {
    let tmp = TempDir::new("vub-blkio-src4k");
    let src = source(&tmp, 48 << 20);
    let sides = both(&src, "", ",writable=on,logical-block-size=4096");
    let t = verify_both(&sides, &src, &[]);
    assert!(t.contains("prop request-alignment 4096"), "{t}");
    // A request at a 512-byte offset inside a 4 KiB block.
    assert!(t.contains(" read 512 4096 -> EIO"), "{t}");
}

#[test]
fn blkio_two_queues_writethrough_same_as_qsd() {
    let tmp = TempDir::new("vub-blkio-srcmq");
    let src = source(&tmp, SIZE);
    // writethrough=on too: every write is then followed by a flush of
    // the node, which must not change what the front end sees.
    let sides = both(&src, "", ",writable=on,num-queues=2,writethrough=on");
    let t = verify_both(&sides, &src, &["--num-queues", "2"]);
    assert!(t.contains("prop max-queues 2"), "{t}");
    assert!(t.contains("queues 2"), "{t}");
    // Queue 1 served a write and a read of what queue 0 wrote.
    assert!(t.contains(" write q1 ") && t.contains(" read q1 "), "{t}");
}

#[test]
fn blkio_read_only_export_same_as_qsd() {
    let tmp = TempDir::new("vub-blkio-srcro");
    let src = source(&tmp, SIZE);
    let sides = both(&src, ",read-only=on", "");
    for s in &sides {
        // The device offers VIRTIO_BLK_F_RO: libblkio will not start it
        // for writing.
        let (code, out, err) = drive(&["info", "--socket", &s.sock()]);
        assert_eq!(
            code, 1,
            "{}: info on a read-only export: {out}{err}",
            s.name
        );
        assert!(
            err.contains("Device is read-only"),
            "{}: info on a read-only export: {err}",
            s.name
        );
    }
    // libblkio refuses writes to a read-only device itself (EBADF), so
    // what reaches the daemon are reads and flushes; the image must not
    // change.
    let t = verify_both(&sides, &src, &["--read-only"]);
    assert!(t.contains("prop read-only true"), "{t}");
    assert!(t.contains(" write 0 512 ") && t.contains("EBADF"), "{t}");
    for s in &sides {
        let (code, out, err) = common::run_tool(Command::new("cmp").args([&s.img(), &src]));
        assert_eq!(
            code, 0,
            "{}: a read-only export changed: {out}{err}",
            s.name
        );
    }
}

/// `blkio-drive watch-capacity` on `side`, started and connected (its
/// first line, the capacity before, has come); later lines on the channel.
fn watch_capacity(side: &Side, until: u64) -> (std::process::Child, mpsc::Receiver<String>) {
    let sock = side.sock();
    let until = until.to_string();
    let mut child = Command::new(blkio_drive())
        .args(["watch-capacity", "--socket", &sock, "--until", &until])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start blkio-drive: {e}"));
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    match rx.recv_timeout(RUN_LIMIT) {
        Ok(first) => assert_eq!(first, format!("capacity {SIZE}"), "{}", side.name),
        Err(_) => {
            let _ = child.kill();
            let (_, err) = finish(&mut child);
            panic!("{}: watch-capacity never connected: {err}", side.name);
        }
    }
    (child, rx)
}

/// Waits for `child` to exit: its status and stderr.
fn finish(child: &mut std::process::Child) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    if let Some(e) = child.stderr.as_mut() {
        let _ = e.read_to_string(&mut err);
    }
    (status, err)
}

#[test]
fn blkio_sees_block_resize_where_qsd_crashes() {
    use std::os::unix::process::ExitStatusExt;

    let tmp = TempDir::new("vub-blkio-srcresize");
    let src = source(&tmp, SIZE);
    let [mut qsd, ours] = both(&src, "", ",writable=on");
    let grown: u64 = 64 << 20;
    let resize = json!({"execute": "block_resize",
                        "arguments": {"node-name": "file0", "size": grown}});

    // qsd 10.0.2 sends the config-change message on the backend channel
    // even when the front end never set one up (libblkio does not ask
    // for VHOST_USER_PROTOCOL_F_BACKEND_REQ): "vu_panic: Error while
    // writing: Bad file descriptor", then SIGSEGV, as with no front end.
    let (mut child, _) = watch_capacity(&qsd, grown);
    let mut q = qsd.daemon.qmp();
    q.send(&resize);
    assert!(q.closed(), "qsd answered block_resize");
    let (status, err) = qsd.daemon.wait();
    assert_eq!(
        status.signal(),
        Some(libc::SIGSEGV),
        "qsd 10.0.2 is known to crash here; it exited {status}: {err}"
    );
    assert!(err.contains("vu_panic"), "{err}");
    let _ = finish(&mut child);

    // Ours: the resize succeeds, the attached front end sees the new
    // capacity in the config space and can write and read the new last
    // block; the daemon carries on.
    let (mut child, rx) = watch_capacity(&ours, grown);
    let mut q = ours.daemon.qmp();
    q.send(&resize);
    assert_eq!(q.reply(), json!({"return": {}}), "block_resize");
    let (status, err) = finish(&mut child);
    let out: Vec<String> = rx.iter().collect();
    assert!(status.success(), "watch-capacity: {err}\n{out:?}");
    let last = grown - 512;
    assert_eq!(out.first(), Some(&format!("capacity {grown}")), "{out:?}");
    assert_eq!(
        out.get(1),
        Some(&format!("write {last} 512 -> ok")),
        "{out:?}"
    );
    assert!(
        out.get(2).is_some_and(
            |l| l.starts_with(&format!("read {last} 512 -> ok ")) && !l.contains("not what")
        ),
        "{out:?}"
    );
    assert_eq!(std::fs::metadata(ours.img()).expect("image").len(), grown);
    q.alive();
}

#[test]
fn blkio_one_front_end_at_a_time_same_as_qsd() {
    let tmp = TempDir::new("vub-blkio-srcone");
    let src = source(&tmp, SIZE);
    let sides = both(&src, "", ",writable=on");
    let outs = sides.each_ref().map(|s| {
        let sock = s.sock();
        // The first front end, attached until its stdin closes.
        let mut first = Command::new(blkio_drive())
            .args(["hold", "--socket", &sock])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start blkio-drive: {e}"));
        let (tx, rx) = mpsc::channel();
        let stdout = first.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let hello = rx.recv_timeout(RUN_LIMIT);
        assert_eq!(
            hello.as_deref().ok(),
            Some(format!("connected capacity {SIZE}").as_str()),
            "{}: first front end",
            s.name
        );
        // A second one meanwhile gets no answer: the daemon serves one
        // front end at a time. (Checking that something does not happen
        // needs a while; 300 ms is plenty for a local handshake.)
        let mut second = Command::new(blkio_drive())
            .args(["info", "--socket", &sock])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start blkio-drive: {e}"));
        std::thread::sleep(Duration::from_millis(300));
        let early = second.try_wait().expect("try_wait");
        // The first one leaves (after one more read); then the second is
        // served.
        drop(first.stdin.take());
        let (status, err) = finish(&mut first);
        let first_out: Vec<String> = rx.iter().collect();
        assert!(status.success(), "{}: first front end: {err} {first_out:?}", s.name);
        assert_eq!(first_out, ["read 0 4096 -> ok"], "{}", s.name);
        let (status, err) = finish(&mut second);
        let mut out = String::new();
        if let Some(o) = second.stdout.as_mut() {
            let _ = o.read_to_string(&mut out);
        }
        assert!(
            early.is_none(),
            "{}: a second front end was answered ({early:?}) while the first was attached: {out}{err}",
            s.name
        );
        assert!(status.success(), "{}: second front end: {err}{out}", s.name);
        out
    });
    assert_same("the second front end's view", &outs[0], &outs[1]);
}

/// The checker itself: told the wrong starting content, verify must
/// report the mismatch and fail (so the equal transcripts above mean
/// something).
#[test]
fn blkio_verify_notices_wrong_data() {
    require_qsd_10_0();
    let tmp = TempDir::new("vub-blkio-srcwrong");
    let src = source(&tmp, SIZE);
    let side = Side::start(QSD, &src, "", ",writable=on");
    let mut wrong = std::fs::read(&src).expect("read source");
    wrong[20 << 20] ^= 0x01;
    let wrong_path = tmp.join("wrong.img");
    std::fs::write(&wrong_path, &wrong).expect("write wrong base");
    let (code, out, err) = side.verify(&wrong_path, &[]);
    assert_eq!(code, 1, "verify with a wrong base: {err}\n{out}");
    assert!(
        out.contains(&format!("MISMATCH read-all at {}", 20 << 20)),
        "{out}"
    );
    assert!(err.contains("blkio-drive verify: read-all"), "{err}");
}
