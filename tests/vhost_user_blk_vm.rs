//! A real VM on the vhost-user-blk export: Debian's qemu-system-x86_64
//! with `-device vhost-user-blk-pci` on the export's socket boots the
//! installed Debian kernel with a busybox initramfs (tests/vm/), whose
//! init runs steps on /dev/vda and reports on the serial console; SeaBIOS
//! boots a boot sector from it too. KVM when /dev/kvm opens (and is not
//! PVM's, see [`accel`]), TCG otherwise (said in the output).
//!
//! `VM_TEST_DAEMON=qemu-storage-daemon` runs the cases against qsd
//! instead of ours (the cases hold for both).

#![cfg(feature = "vhost-user-blk")]

mod common;
#[path = "vm/initramfs.rs"]
mod initramfs;

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{Daemon, OURS, QSD, TempDir, create_image, require};
use serde_json::json;

/// Bytes the guest writes at offset 0 and at the end of the disk
/// (HEAD and TAIL in tests/vm/init.sh).
const HEAD: usize = 1 << 20;
const TAIL: usize = 64 << 10;
/// Bytes each CPU's writer writes after the head region (PAR).
const PAR: usize = 2 << 20;
const IMAGE: usize = 64 << 20;

/// The daemon under test: ours, or the one `VM_TEST_DAEMON` names.
fn daemon_bin() -> String {
    std::env::var("VM_TEST_DAEMON").unwrap_or_else(|_| OURS.to_string())
}

/// The kernel and initramfs, built once per test binary.
fn guest() -> &'static initramfs::Guest {
    static GUEST: OnceLock<initramfs::Guest> = OnceLock::new();
    GUEST.get_or_init(|| {
        let g = initramfs::guest().unwrap_or_else(|e| panic!("guest: {e}"));
        eprintln!(
            "vm tests: kernel {}, initramfs {}",
            g.version,
            g.initrd.display()
        );
        g
    })
}

/// KVM when /dev/kvm opens read-write and is hardware KVM, else TCG
/// (said once in the output), with how long any one wait may take.
///
/// A /dev/kvm of kvm_pvm (the module of PVM, KVM on shadow page tables
/// inside a VM) runs only PVM-enabled guest kernels; Debian's kernel is
/// not one and hangs right after the real-mode setup ("Probing EDD"), so
/// there it is TCG too.
fn accel() -> (&'static [&'static str], Duration) {
    static KVM: OnceLock<bool> = OnceLock::new();
    let kvm = *KVM.get_or_init(|| {
        let opens = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok();
        let hardware = ["kvm_intel", "kvm_amd"]
            .iter()
            .any(|m| std::path::Path::new("/sys/module").join(m).exists());
        let pvm = std::path::Path::new("/sys/module/kvm_pvm").exists();
        let use_kvm = opens && (hardware || !pvm);
        eprintln!(
            "vm tests: {}",
            match (opens, use_kvm) {
                (_, true) => "KVM (-accel kvm -cpu host)",
                (true, false) => {
                    "/dev/kvm is kvm_pvm, which runs only PVM guest kernels: TCG (slower)"
                }
                (false, false) => "/dev/kvm does not open: TCG (slower)",
            }
        );
        use_kvm
    });
    if kvm {
        (&["-accel", "kvm", "-cpu", "host"], Duration::from_secs(30))
    } else {
        (&["-accel", "tcg"], Duration::from_secs(120))
    }
}

/// The pattern of init.sh: lines "WORD N" for N = 1, 2, ..., cut to `len`.
fn pattern(word: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut n = 1u64;
    while out.len() < len {
        out.extend_from_slice(format!("{word} {n}\n").as_bytes());
        n += 1;
    }
    out.truncate(len);
    out
}

/// A seed no earlier run used.
fn seed(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{tag}{}x{nanos:x}", std::process::id())
}

/// A daemon with a raw image exported over vhost-user-blk at `DIR/vub.sock`.
struct Export {
    daemon: Daemon,
    sock: String,
    img: String,
    /// Removed (with the image and sockets) after the daemon is killed.
    _dir: TempDir,
}

impl Export {
    /// `opts` is appended to the export's options (`,num-queues=2`...).
    fn start(bin: &str, tag: &str, img_init: &[u8], opts: &str) -> Export {
        Export::start_with(bin, tag, img_init, "", opts)
    }

    /// `node_opts` is appended to the file node's options.
    fn start_with(bin: &str, tag: &str, img_init: &[u8], node_opts: &str, opts: &str) -> Export {
        require("qemu-img");
        let dir = TempDir::new(tag);
        let img = dir.join("img");
        let sock = dir.join("vub.sock");
        create_image(&img, &IMAGE.to_string());
        if !img_init.is_empty() {
            write_at(&img, 0, img_init);
        }
        let args = vec![
            "--blockdev".to_string(),
            format!("driver=file,node-name=n,filename={img}{node_opts}"),
            "--export".to_string(),
            format!("type=vhost-user-blk,id=e,node-name=n,addr.type=unix,addr.path={sock}{opts}"),
        ];
        let daemon = Daemon::start(bin, &dir, &args);
        // A command's reply comes after the command line took effect: the
        // socket is there (connecting to probe it would be a front end).
        daemon.qmp().alive();
        assert!(common::exists(&sock), "{bin} did not create {sock}");
        Export {
            daemon,
            sock,
            img,
            _dir: dir,
        }
    }

    fn image(&self) -> Vec<u8> {
        std::fs::read(&self.img).unwrap_or_else(|e| panic!("{}: {e}", self.img))
    }
}

fn write_at(path: &str, offset: u64, data: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    f.write_all_at(data, offset)
        .unwrap_or_else(|e| panic!("{path}: {e}"));
}

/// What the serial console said so far, and whether it ended.
#[derive(Default)]
struct Serial {
    text: String,
    closed: bool,
}

/// A running qemu-system-x86_64; killed when dropped, and its serial log
/// and stderr printed when the test failed.
struct Vm {
    child: Child,
    serial: Arc<(Mutex<Serial>, Condvar)>,
    stderr: Arc<Mutex<String>>,
    name: String,
    timeout: Duration,
}

impl Vm {
    /// Boots the Debian kernel and the initramfs on the socket, with the
    /// steps of init.sh.
    fn boot(name: &str, sock: &str, num_queues: u16, steps: &str, seed: &str) -> Vm {
        let g = guest();
        let mut cmd = Vm::command(sock, num_queues, "");
        cmd.arg("-kernel")
            .arg(&g.kernel)
            .arg("-initrd")
            .arg(&g.initrd);
        cmd.args([
            "-append",
            &format!("console=ttyS0 quiet panic=-1 vmtest_steps={steps} vmtest_seed={seed}"),
        ]);
        Vm::start(name, cmd)
    }

    /// Boots the firmware (SeaBIOS) from the export's disk.
    fn boot_firmware(name: &str, sock: &str) -> Vm {
        Vm::start(name, Vm::command(sock, 1, ",bootindex=1"))
    }

    /// qemu-system-x86_64 with the disk on the socket, the serial console
    /// on stdout, and no other devices.
    fn command(sock: &str, num_queues: u16, device_opts: &str) -> Command {
        require("qemu-system-x86_64");
        let (accel, _) = accel();
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-nodefaults", "-no-user-config", "-display", "none"])
            .args(["-serial", "stdio", "-no-reboot"])
            .args(accel)
            // Linux's virtio_blk uses at most one queue per CPU.
            .args(["-smp", &num_queues.to_string(), "-m", "256"])
            .args(["-object", "memory-backend-memfd,id=mem,size=256M,share=on"])
            .args(["-numa", "node,memdev=mem"])
            .args(["-chardev", &format!("socket,id=vub,path={sock}")])
            .args([
                "-device",
                &format!("vhost-user-blk-pci,chardev=vub,num-queues={num_queues}{device_opts}"),
            ]);
        cmd
    }

    fn start(name: &str, mut cmd: Command) -> Vm {
        let (_, timeout) = accel();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start qemu-system-x86_64: {e}"));
        let serial = Arc::new((Mutex::new(Serial::default()), Condvar::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut out) = child.stdout.take() {
            let serial = Arc::clone(&serial);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let (m, c) = &*serial;
                while let Ok(n @ 1..) = out.read(&mut buf) {
                    if let Ok(mut s) = m.lock() {
                        s.text.push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                    c.notify_all();
                }
                if let Ok(mut s) = m.lock() {
                    s.closed = true;
                }
                c.notify_all();
            });
        }
        if let Some(mut err) = child.stderr.take() {
            let stderr = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut buf = String::new();
                let _ = err.read_to_string(&mut buf);
                if let Ok(mut s) = stderr.lock() {
                    s.push_str(&buf);
                }
            });
        }
        Vm {
            child,
            serial,
            stderr,
            name: name.to_string(),
            timeout,
        }
    }

    /// Waits for the guest's line "VMTEST WHAT ..." and returns its
    /// key=value pairs. An "VMTEST error" line or the end of the console
    /// before it fails the test.
    fn expect(&self, what: &str) -> BTreeMap<String, String> {
        let prefix = format!("VMTEST {what}");
        let deadline = Instant::now() + self.timeout;
        let (m, c) = &*self.serial;
        let mut s = m.lock().expect("serial lock");
        let mut seen = 0;
        loop {
            // Whole lines only: the last one may still be arriving.
            let done = s.text.rfind('\n').map_or(0, |i| i + 1);
            for l in s.text[seen..done].lines() {
                let l = l.trim();
                assert!(
                    !l.starts_with("VMTEST error"),
                    "{}: the guest says: {l}",
                    self.name
                );
                if l == prefix || l.starts_with(&format!("{prefix} ")) {
                    eprintln!("{}: {l}", self.name);
                    return l[prefix.len()..]
                        .split_whitespace()
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                }
            }
            seen = done;
            assert!(
                !s.closed,
                "{}: the console ended before \"{prefix}\"",
                self.name
            );
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{}: no \"{prefix}\" within {:?}",
                self.name,
                self.timeout
            );
            s = c.wait_timeout(s, left).expect("serial lock").0;
        }
    }

    /// Waits for the guest's "done" and QEMU's exit (the guest powered
    /// off): the console's end is QEMU's.
    fn finish(mut self) {
        self.expect("done");
        let deadline = Instant::now() + self.timeout;
        {
            let (m, c) = &*self.serial;
            let mut s = m.lock().expect("serial lock");
            while !s.closed {
                let left = deadline.saturating_duration_since(Instant::now());
                assert!(
                    !left.is_zero(),
                    "{}: QEMU did not exit after the guest powered off",
                    self.name
                );
                s = c.wait_timeout(s, left).expect("serial lock").0;
            }
        }
        let status = self.child.wait().expect("wait for QEMU");
        assert!(status.success(), "{}: QEMU exited with {status}", self.name);
    }

    fn log(&self) -> String {
        let (m, _) = &*self.serial;
        m.lock().map(|s| s.text.clone()).unwrap_or_default()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("==== {} serial console:\n{}", self.name, self.log());
            let err = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
            eprintln!("==== {} QEMU stderr:\n{err}", self.name);
        }
    }
}

/// The guest's readback of both regions matches what it wrote.
fn check_regions(name: &str, r: &BTreeMap<String, String>) {
    assert_eq!(r.get("head"), r.get("head_pattern"), "{name}: head region");
    assert_eq!(r.get("tail"), r.get("tail_pattern"), "{name}: tail region");
    assert!(r.contains_key("head"), "{name}: {r:?}");
}

/// The image holds zeros, with the guest's head pattern at 0 and its
/// tail pattern in the last TAIL bytes, and `more` (offset, bytes).
fn check_image_with(img: &[u8], size: usize, seed: &str, more: &[(usize, Vec<u8>)]) {
    assert_eq!(img.len(), size, "image size");
    let mut want = vec![0u8; size];
    want[..HEAD].copy_from_slice(&pattern(seed, HEAD));
    want[size - TAIL..].copy_from_slice(&pattern(&format!("{seed}-tail"), TAIL));
    for (at, bytes) in more {
        want[*at..*at + bytes.len()].copy_from_slice(bytes);
    }
    if let Some(i) = img.iter().zip(&want).position(|(a, b)| a != b) {
        panic!("image differs from what the guest wrote at byte {i}");
    }
}

fn check_image(img: &[u8], size: usize, seed: &str) {
    check_image_with(img, size, seed, &[]);
}

/// (a) The guest writes a pattern at both ends of the disk and reads it
/// back; the host finds it in the image. A second VM attaches to the same
/// export after the first quit and reads the first one's data.
#[test]
fn guest_writes_and_a_second_vm_reads_after_reconnect() {
    let ex = Export::start(&daemon_bin(), "vm-rw", &[], ",writable=on");
    let seed = seed("rw");
    let vm = Vm::boot("first VM", &ex.sock, 1, "facts,write", &seed);
    let facts = vm.expect("facts");
    assert_eq!(facts["size"], (IMAGE / 512).to_string(), "{facts:?}");
    assert_eq!(facts["ro"], "0", "{facts:?}");
    assert_eq!(facts["mq"], "1", "{facts:?}");
    let w = vm.expect("write");
    assert_eq!((w["head_rc"].as_str(), w["tail_rc"].as_str()), ("0", "0"));
    check_regions("first VM", &vm.expect("readback"));
    vm.finish();
    check_image(&ex.image(), IMAGE, &seed);

    let vm = Vm::boot("second VM", &ex.sock, 1, "read", &seed);
    check_regions("second VM", &vm.expect("read"));
    vm.finish();
    let exports = ex.daemon.qmp().cmd("query-block-exports", json!(null));
    assert_eq!(exports[0]["id"], "e", "{exports}");
}

/// A VM killed while it writes (the front end vanishes with requests in
/// flight): the daemon carries on, and the next VM attaches and works.
#[test]
fn vm_killed_mid_io_then_another_attaches() {
    let ex = Export::start(&daemon_bin(), "vm-kill", &[], ",writable=on");
    let vm = Vm::boot("killed VM", &ex.sock, 1, "hammer", "k");
    vm.expect("hammering");
    drop(vm);
    ex.daemon.qmp().alive();
    let seed = seed("kill");
    let vm = Vm::boot("next VM", &ex.sock, 1, "write", &seed);
    check_regions("next VM", &vm.expect("readback"));
    vm.finish();
    check_image(&ex.image(), IMAGE, &seed);
}

/// (b) num-queues=2: the guest's disk has two hardware queues, and two
/// writers at once (one per CPU, so one per queue) land where they
/// should.
#[test]
fn two_queues_seen_by_the_guest() {
    let ex = Export::start(&daemon_bin(), "vm-mq", &[], ",writable=on,num-queues=2");
    let seed = seed("mq");
    let vm = Vm::boot("2-queue VM", &ex.sock, 2, "facts,write,parallel", &seed);
    let facts = vm.expect("facts");
    assert_eq!(facts["mq"], "2", "{facts:?}");
    // Each queue serves a CPU of its own: the pinned writers use both.
    assert_eq!(
        (facts["cpus_q0"].as_str(), facts["cpus_q1"].as_str()),
        ("0", "1"),
        "{facts:?}"
    );
    check_regions("2-queue VM", &vm.expect("readback"));
    let mut more = Vec::new();
    for cpu in 0..2 {
        let p = vm.expect(&format!("parallel cpu={cpu}"));
        assert_eq!(p["rc"], "0", "{p:?}");
        assert_eq!(p["region"], p["pattern"], "writer on CPU {cpu}: {p:?}");
        more.push((HEAD + cpu * PAR, pattern(&format!("{seed}-cpu{cpu}"), PAR)));
    }
    vm.finish();
    check_image_with(&ex.image(), IMAGE, &seed, &more);
}

/// (c) block_resize over QMP while the guest runs: the guest sees the
/// new size and writes at the new end.
#[test]
fn resize_while_the_guest_runs() {
    let ex = Export::start(&daemon_bin(), "vm-resize", &[], ",writable=on");
    let seed = seed("rs");
    let vm = Vm::boot("resized VM", &ex.sock, 1, "resize,write", &seed);
    let before = vm.expect("waiting-resize");
    assert_eq!(before["size"], (IMAGE / 512).to_string(), "{before:?}");
    let grown = 2 * IMAGE;
    ex.daemon
        .qmp()
        .cmd("block_resize", json!({"node-name": "n", "size": grown}));
    let after = vm.expect("resized");
    assert_eq!(after["size"], (grown / 512).to_string(), "{after:?}");
    let w = vm.expect("write");
    assert_eq!(w["tail_offset"], (grown - TAIL).to_string(), "{w:?}");
    check_regions("resized VM", &vm.expect("readback"));
    vm.finish();
    check_image(&ex.image(), grown, &seed);
}

/// (d) A read-only export: the guest's disk is read-only, a write is
/// refused, and the image is untouched.
#[test]
fn read_only_export_refuses_guest_writes() {
    let seed = seed("ro");
    let init = pattern(&seed, HEAD);
    let ex = Export::start(&daemon_bin(), "vm-ro", &init, ",writable=off");
    let vm = Vm::boot("read-only VM", &ex.sock, 1, "facts,rowrite,read", &seed);
    let facts = vm.expect("facts");
    assert_eq!(facts["ro"], "1", "{facts:?}");
    let w = vm.expect("rowrite");
    assert_ne!(
        w["rc"], "0",
        "a write on the read-only disk succeeded: {w:?}"
    );
    let r = vm.expect("read");
    assert_eq!(r.get("head"), r.get("head_pattern"), "{r:?}");
    vm.finish();
    let img = ex.image();
    assert!(img[..HEAD] == init[..], "the read-only image changed");
    assert!(
        img[HEAD..].iter().all(|b| *b == 0),
        "the read-only image changed"
    );
}

/// A discard from the guest (blkdiscard) on a node with discard=unmap:
/// the guest reads back, and the image ends up, as on qsd's export.
#[test]
fn guest_discard_as_on_qsd() {
    let seed = seed("dc");
    let mut seen = Vec::new();
    for bin in [QSD.to_string(), daemon_bin()] {
        let ex = Export::start_with(&bin, "vm-discard", &[], ",discard=unmap", ",writable=on");
        let vm = Vm::boot(&format!("VM on {bin}"), &ex.sock, 1, "write,discard", &seed);
        let d = vm.expect("discard");
        vm.finish();
        seen.push((d, ex.image()));
    }
    let ((qsd, qsd_img), (ours, ours_img)) = (&seen[0], &seen[1]);
    assert_eq!(qsd, ours, "the guest's discard, qsd then ours");
    assert_eq!(qsd["rc"], "0", "{qsd:?}");
    let zeroed = &qsd_img[HEAD / 4..HEAD / 2];
    assert!(zeroed.iter().all(|b| *b == 0), "qsd kept discarded data");
    assert!(
        qsd_img == ours_img,
        "images differ after the guest's discard"
    );
}

/// A boot sector that prints "VMTEST mbr booted" and "VMTEST done" on
/// COM1 and resets the machine (QEMU exits: -no-reboot).
fn boot_sector() -> Vec<u8> {
    #[rustfmt::skip]
    let code: [u8; 0x1d] = [
        0xfa,                   // cli
        0x31, 0xc0,             // xor ax, ax
        0x8e, 0xd8,             // mov ds, ax
        0xbe, 0x1d, 0x7c,       // mov si, 0x7c1d (the text after the code)
        0xba, 0xf8, 0x03,       // mov dx, 0x3f8 (COM1)
        0xac,                   // next: lodsb
        0x84, 0xc0,             // test al, al
        0x74, 0x03,             // jz reset
        0xee,                   // out dx, al
        0xeb, 0xf8,             // jmp next
        0xb0, 0xfe,             // reset: mov al, 0xfe
        0xe6, 0x64,             // out 0x64, al (keyboard controller: reset)
        0x90, 0x90, 0x90,       // nop
        0xf4,                   // halt: hlt
        0xeb, 0xfd,             // jmp halt
    ];
    let mut mbr = code.to_vec();
    mbr.extend_from_slice(b"VMTEST mbr booted\r\nVMTEST done\r\n\0");
    mbr.resize(510, 0);
    mbr.extend_from_slice(&[0x55, 0xaa]);
    mbr
}

/// (e) The firmware's own virtio-blk driver (SeaBIOS) reads the boot
/// sector through the export and runs it: what booting a VM from a disk
/// image on the export takes.
#[test]
fn firmware_boots_from_the_export() {
    let ex = Export::start(&daemon_bin(), "vm-bios", &boot_sector(), ",writable=on");
    let vm = Vm::boot_firmware("booted VM", &ex.sock);
    vm.expect("mbr booted");
    vm.finish();
}

/// What the guest sees of our export (the config space as its block
/// layer took it, GET_ID as the disk's serial, the WCE byte written and
/// read back) equals what it sees of
/// qsd's, for a writable 2-queue export with 4 KiB blocks and a read-only
/// one.
#[test]
fn guest_sees_the_same_disk_as_on_qsd() {
    for opts in [
        ",writable=on,num-queues=2,logical-block-size=4096",
        ",writable=off",
    ] {
        let queues = if opts.contains("num-queues=2") { 2 } else { 1 };
        let mut seen = Vec::new();
        for bin in [QSD.to_string(), daemon_bin()] {
            let ex = Export::start(&bin, "vm-facts", &[], opts);
            let vm = Vm::boot(&format!("VM on {bin}"), &ex.sock, queues, "facts,wce", "f");
            let mut facts = vm.expect("facts");
            for (i, mode) in ["write_back", "write_through"].into_iter().enumerate() {
                let w = vm.expect(&format!("wce set={mode}"));
                for (k, v) in w {
                    facts.insert(format!("wce{i}_{k}"), v);
                }
            }
            seen.push(facts);
            vm.finish();
        }
        assert_eq!(seen[0], seen[1], "guest facts, qsd then ours, for {opts}");
    }
}
