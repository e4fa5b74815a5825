//! Helpers shared by the block_* tests: scratch images and option builders.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use storage_block::{
    BlockdevOptions, BlockdevRef, DriverOptions, FileOptions, NullOptions, RawOptions,
};

/// A scratch directory (on /dev/shm when there is one), removed on drop.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new() -> Self {
        if Path::new("/dev/shm").is_dir() {
            Scratch::under(PathBuf::from("/dev/shm"))
        } else {
            Scratch::on_disk()
        }
    }

    /// A scratch directory in the temporary directory (a disk file system
    /// here, where requests take the thread pool, not the tmpfs fast path).
    pub fn on_disk() -> Self {
        Scratch::under(std::env::temp_dir())
    }

    fn under(base: PathBuf) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = base.join(format!(
            "block-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch { dir }
    }

    /// A sparse image of `size` bytes; returns its path.
    pub fn image(&self, name: &str, size: u64) -> String {
        let p = self.dir.join(name);
        let f = std::fs::File::create(&p).expect("create image");
        f.set_len(size).expect("size image");
        p.to_str().expect("utf-8 path").to_owned()
    }

    pub fn path(&self) -> &str {
        self.dir.to_str().expect("utf-8 path")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn file(name: &str, filename: &str) -> BlockdevOptions {
    BlockdevOptions::new(DriverOptions::File(FileOptions::new(filename))).named(name)
}

pub fn file_inline(filename: &str) -> BlockdevOptions {
    BlockdevOptions::new(DriverOptions::File(FileOptions::new(filename)))
}

pub fn raw(
    name: &str,
    child: BlockdevRef,
    offset: Option<u64>,
    size: Option<u64>,
) -> BlockdevOptions {
    BlockdevOptions::new(DriverOptions::Raw(RawOptions {
        file: child,
        offset,
        size,
    }))
    .named(name)
}

pub fn reference(name: &str) -> BlockdevRef {
    BlockdevRef::Reference(name.to_owned())
}

pub fn inline(opts: BlockdevOptions) -> BlockdevRef {
    BlockdevRef::Definition(Box::new(opts))
}

pub fn null(name: &str, opts: NullOptions) -> BlockdevOptions {
    BlockdevOptions::new(DriverOptions::NullCo(opts)).named(name)
}

/// The errno of an I/O error.
pub fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

/// Whether a program is installed (tests that drive qemu-img skip without).
pub fn have(prog: &str) -> bool {
    std::process::Command::new(prog)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}
