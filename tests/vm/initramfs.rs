//! The guest of the VM tests: the installed Debian kernel and a small
//! initramfs (cpio newc, gzip) with busybox-static, the kernel's modules
//! for virtio-blk over PCI and `init.sh`. The initramfs is built once and
//! cached under the target directory, keyed by the kernel version and a
//! hash of what goes in.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The guest's init script.
const INIT: &str = include_str!("init.sh");
/// The statically linked busybox of Debian's busybox-static.
const BUSYBOX: &str = "/bin/busybox";
/// Modules the guest needs (their dependencies come from modules.dep).
const MODULES: &[&str] = &["virtio_pci", "virtio_blk"];

/// A kernel image and the initramfs to boot it with.
pub struct Guest {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub version: String,
}

/// The newest installed kernel (`/boot/vmlinuz-VERSION` with its
/// `/lib/modules/VERSION`) and its initramfs, built unless cached.
pub fn guest() -> Result<Guest, String> {
    let (version, kernel) = kernel()?;
    let moddir = PathBuf::from(format!("/lib/modules/{version}"));
    let modules = resolve_modules(&moddir)?;
    let busybox = std::fs::read(BUSYBOX)
        .map_err(|e| format!("{BUSYBOX}: {e} (install busybox-static; ./test.sh installs it)"))?;

    let mut key = Fnv::new();
    key.add(INIT.as_bytes());
    key.add(&busybox);
    for m in &modules {
        key.add(m.as_os_str().as_encoded_bytes());
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let initrd = dir.join(format!("vm-initramfs-{version}-{:016x}.cpio.gz", key.0));
    if !initrd.exists() {
        let cpio = archive(&busybox, &modules)?;
        let gz = gzip(&cpio)?;
        // Written aside and renamed: tests running at once never see
        // half a file.
        let tmp = dir.join(format!("{}.tmp{}", initrd.display(), std::process::id()));
        std::fs::write(&tmp, gz).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &initrd).map_err(|e| format!("{}: {e}", initrd.display()))?;
        remove_stale(&dir, &initrd);
    }
    Ok(Guest {
        kernel,
        initrd,
        version,
    })
}

/// Removes the initramfs files of other keys (an older init.sh, an older
/// kernel): each is 1 MiB.
fn remove_stale(dir: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("vm-initramfs-") && name.ends_with(".cpio.gz") && e.path() != keep {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Whether a 64-bit little-endian ELF file names a program interpreter
/// (a PT_INTERP program header): dynamically linked.
fn has_interpreter(elf: &[u8]) -> bool {
    let num = |at: usize, len: usize| {
        elf.get(at..at + len).map_or(0, |b| {
            b.iter().rev().fold(0u64, |n, x| (n << 8) | u64::from(*x))
        })
    };
    let (phoff, phentsize, phnum) = (num(0x20, 8), num(0x36, 2), num(0x38, 2));
    (0..phnum).any(|i| usize::try_from(phoff + i * phentsize).is_ok_and(|at| num(at, 4) == 3))
}

/// The newest `/boot/vmlinuz-*` whose modules are installed.
fn kernel() -> Result<(String, PathBuf), String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/boot").map_err(|e| format!("/boot: {e}"))? {
        let entry = entry.map_err(|e| format!("/boot: {e}"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(version) = name.strip_prefix("vmlinuz-")
            && Path::new(&format!("/lib/modules/{version}/modules.dep")).exists()
        {
            found.push((version_key(version), version.to_string(), entry.path()));
        }
    }
    found.sort();
    found.pop().map(|(_, v, p)| (v, p)).ok_or_else(|| {
        "no /boot/vmlinuz-* with /lib/modules/*/modules.dep: install linux-image-amd64 \
         (./test.sh installs it)"
            .to_string()
    })
}

/// Orders "6.1.0-57-amd64" after "6.1.0-9-amd64": numbers by value.
fn version_key(v: &str) -> Vec<u64> {
    v.split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// The module name of a modules.dep path: "kernel/x/virtio-foo.ko.xz" is
/// "virtio_foo".
fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.split(".ko").next().unwrap_or(base);
    stem.replace('-', "_")
}

/// The module files to load, dependencies first; built-in modules
/// (modules.builtin) need no file.
fn resolve_modules(moddir: &Path) -> Result<Vec<PathBuf>, String> {
    let read = |name: &str| {
        std::fs::read_to_string(moddir.join(name))
            .map_err(|e| format!("{}/{name}: {e}", moddir.display()))
    };
    let builtin: BTreeSet<String> = read("modules.builtin")?.lines().map(module_name).collect();
    let mut deps = BTreeMap::new();
    for line in read("modules.dep")?.lines() {
        if let Some((module, rest)) = line.split_once(':') {
            let d: Vec<String> = rest.split_whitespace().map(str::to_string).collect();
            deps.insert(module_name(module), (module.to_string(), d));
        }
    }
    let mut order = Vec::new();
    for m in MODULES {
        add_module(m, &deps, &builtin, &mut order, 0)?;
    }
    Ok(order.into_iter().map(|p| moddir.join(p)).collect())
}

fn add_module(
    name: &str,
    deps: &BTreeMap<String, (String, Vec<String>)>,
    builtin: &BTreeSet<String>,
    order: &mut Vec<String>,
    depth: usize,
) -> Result<(), String> {
    if builtin.contains(name) {
        return Ok(());
    }
    let (path, needs) = deps
        .get(name)
        .ok_or_else(|| format!("module {name} is neither in modules.dep nor built in"))?;
    if order.contains(path) {
        return Ok(());
    }
    if depth > 64 {
        return Err(format!("modules.dep: dependency loop at {name}"));
    }
    for d in needs {
        add_module(&module_name(d), deps, builtin, order, depth + 1)?;
    }
    order.push(path.clone());
    Ok(())
}

/// A module file's bytes, uncompressed (busybox insmod takes plain .ko).
fn module_bytes(path: &Path) -> Result<Vec<u8>, String> {
    let name = path.display().to_string();
    let tool: &[&str] = if name.ends_with(".ko") {
        return std::fs::read(path).map_err(|e| format!("{name}: {e}"));
    } else if name.ends_with(".ko.xz") {
        &[BUSYBOX, "xzcat"]
    } else if name.ends_with(".ko.gz") {
        &[BUSYBOX, "zcat"]
    } else if name.ends_with(".ko.zst") {
        &["zstd", "-dcq"]
    } else {
        return Err(format!("{name}: unknown module compression"));
    };
    let out = Command::new(tool[0])
        .args(&tool[1..])
        .arg(path)
        .output()
        .map_err(|e| format!("{}: {e} (decompressing {name})", tool[0]))?;
    if !out.status.success() {
        return Err(format!(
            "{tool:?} {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out.stdout)
}

/// The cpio archive (newc): directories, /dev/console (the kernel opens
/// it for init before anything is mounted), busybox, /init, the modules
/// and /modules/order.
fn archive(busybox: &[u8], modules: &[PathBuf]) -> Result<Vec<u8>, String> {
    let mut c = Cpio::default();
    for d in ["bin", "dev", "proc", "sys", "tmp", "modules"] {
        c.entry(d, 0o040755, 0, &[]);
    }
    c.entry("dev/console", 0o020600, (5 << 8) | 1, &[]);
    c.entry("bin/busybox", 0o100755, 0, busybox);
    c.entry("init", 0o100755, 0, INIT.as_bytes());
    let mut order = String::new();
    for m in modules {
        let file = m
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .ok_or_else(|| format!("{}: no file name", m.display()))?;
        let file = file.split(".ko").next().unwrap_or(&file).to_string() + ".ko";
        c.entry(&format!("modules/{file}"), 0o100644, 0, &module_bytes(m)?);
        order.push_str(&file);
        order.push('\n');
    }
    c.entry("modules/order", 0o100644, 0, order.as_bytes());
    Ok(c.finish())
}

/// `gzip -n` of the archive (gzip is part of every Debian system).
fn gzip(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut child = Command::new("gzip")
        .args(["-n", "-6"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("gzip: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("gzip: no stdin")?;
    // Fed from a thread: gzip writes while it reads.
    let input = data.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().map_err(|e| format!("gzip: {e}"))?;
    feeder
        .join()
        .map_err(|_| "gzip feeder panicked".to_string())?
        .map_err(|e| format!("gzip: {e}"))?;
    if !out.status.success() {
        return Err(format!("gzip: {}", out.status));
    }
    Ok(out.stdout)
}

/// A cpio "newc" writer: a 110-byte ASCII header per entry, the name with
/// its NUL, the data, each padded to 4 bytes; "TRAILER!!!" at the end.
#[derive(Default)]
struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: u32, data: &[u8]) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            if mode & 0o170000 == 0o040000 { 2 } else { 1 },
            0, // mtime: fixed, so the archive is reproducible
            u32::try_from(data.len()).unwrap_or(u32::MAX),
            0,
            0, // devmajor, devminor
            rdev >> 8,
            rdev & 0xff,
            u32::try_from(name.len() + 1).unwrap_or(u32::MAX),
            0, // check
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, 0, &[]);
        self.out
    }
}

/// FNV-1a, 64 bits: a hash that stays the same across Rust releases.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn add(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        // A separator, so that ("ab", "c") and ("a", "bc") differ.
        self.0 = (self.0 ^ 0xff).wrapping_mul(0x0100_0000_01b3);
    }
}

#[test]
fn static_busybox_is_told_from_dynamic_binaries() {
    let read = |p: &str| std::fs::read(p).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert!(!has_interpreter(&read(BUSYBOX)), "{BUSYBOX} looks dynamic");
    assert!(has_interpreter(&read("/bin/ls")), "/bin/ls looks static");
}

#[test]
fn compressed_modules_are_unpacked() {
    let (version, _) = kernel().unwrap_or_else(|e| panic!("{e}"));
    let modules = resolve_modules(Path::new(&format!("/lib/modules/{version}")))
        .unwrap_or_else(|e| panic!("{e}"));
    let first = modules.first().expect("at least one module");
    let plain = module_bytes(first).unwrap_or_else(|e| panic!("{e}"));
    let dir = std::env::temp_dir().join(format!("vm-modules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for (tool, ext) in [("gzip", "gz"), ("xz", "xz")] {
        let packed = dir.join(format!("m.ko.{ext}"));
        let file = std::fs::File::create(&packed).expect("create");
        let status = Command::new(tool)
            .arg("-c")
            .stdin(Stdio::piped())
            .stdout(file)
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().expect("stdin").write_all(&plain)?;
                c.wait()
            })
            .unwrap_or_else(|e| panic!("{tool}: {e} (./test.sh installs it)"));
        assert!(status.success(), "{tool}: {status}");
        let got = module_bytes(&packed).unwrap_or_else(|e| panic!("{e}"));
        assert!(got == plain, ".ko.{ext} unpacked to other bytes");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
