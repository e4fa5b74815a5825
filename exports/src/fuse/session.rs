//! What each FUSE request does to the exported node: the semantics of
//! qemu-storage-daemon's FUSE export (one regular file, inode 1, whose
//! content is the node) over any [`BlockDevice`]. No file descriptors
//! here: requests come in decoded, replies go out as values.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use storage_block::{BlockDevice, IoBuf};

use super::codec::{self, Attr, InitIn, InitOut, Request, fattr, init};

/// Largest WRITE payload we accept (and tell the kernel about).
pub const MAX_WRITE: u32 = 1 << 20;
/// `max_pages` to go with [`MAX_WRITE`].
pub const MAX_PAGES: u16 = (MAX_WRITE / 4096) as u16;
/// The `max_read` mount option (also the largest READ served), as in qsd.
pub const MAX_READ: u32 = 64 << 20;
/// How many background requests (readahead, async direct I/O) the kernel
/// keeps in flight. Its default of 12 would cap a queue depth of 32.
const MAX_BACKGROUND: u16 = 64;
const CONGESTION_THRESHOLD: u16 = 48;
/// Seconds the kernel may cache attributes.
const ATTR_VALID_SECS: u64 = 1;
/// How long a measured allocation (st_blocks) is reused while nothing of
/// ours changed the node: as long as the kernel keeps the attributes.
const ALLOC_VALID: Duration = Duration::from_secs(ATTR_VALID_SECS);
/// Largest size or end of a request the block layer can represent
/// (QEMU's sizes are `int64_t`); beyond it qsd answers EINVAL.
const MAX_END: u64 = i64::MAX as u64;

const FALLOC_FL_KEEP_SIZE: u32 = 0x01;
const FALLOC_FL_PUNCH_HOLE: u32 = 0x02;
const FALLOC_FL_ZERO_RANGE: u32 = 0x10;

/// The answer to one request.
#[derive(Debug)]
pub enum Reply {
    /// Nothing is sent (INTERRUPT, FORGET).
    None,
    /// Failure with a positive errno.
    Err(i32),
    /// Success with a small fixed payload (`len` bytes of `bytes`).
    Small { bytes: [u8; 104], len: usize },
    /// Success whose payload is the first `len` bytes of the request's
    /// buffer (READ).
    Buf(usize),
}

impl Reply {
    fn empty() -> Reply {
        Reply::Small {
            bytes: [0; 104],
            len: 0,
        }
    }

    fn small(src: &[u8]) -> Reply {
        let mut bytes = [0u8; 104];
        let len = src.len().min(bytes.len());
        bytes[..len].copy_from_slice(&src[..len]);
        Reply::Small { bytes, len }
    }
}

/// Export options the session needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOptions {
    pub writable: bool,
    pub growable: bool,
    /// Mounted with allow_other: chown/chgrp are allowed.
    pub allow_other: bool,
}

/// One export's file: its node and the attributes users may change.
pub struct Session {
    dev: Arc<dyn BlockDevice>,
    opts: SessionOptions,
    mode: AtomicU32,
    uid: AtomicU32,
    gid: AtomicU32,
    /// atime = mtime = ctime: when the export was created.
    time: u64,
    /// Serializes size changes, so two writes growing the node at once
    /// cannot shrink it back; the data path does not take it.
    resize: tokio::sync::Mutex<()>,
    /// st_blksize: the node's alignment, fixed when it was opened.
    blksize: u32,
    /// The last measured allocation (an fstat plus the node's whole
    /// description, too slow for every GETATTR on a worker thread).
    alloc: Mutex<Option<(Option<u64>, Instant)>>,
    /// Set by every request of ours that may change the allocation.
    alloc_stale: AtomicBool,
}

use crate::errno::of as errno_of;

fn result(r: io::Result<()>) -> Reply {
    match r {
        Ok(()) => Reply::empty(),
        Err(e) => Reply::Err(errno_of(&e)),
    }
}

impl Session {
    pub fn new(dev: Arc<dyn BlockDevice>, opts: SessionOptions) -> Session {
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut mode = libc::S_IFREG | libc::S_IRUSR;
        if opts.writable {
            mode |= libc::S_IWUSR;
        }
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        // Export setup may block (it mounts); requests may not.
        let info = dev.info();
        Session {
            dev,
            opts,
            mode: AtomicU32::new(mode),
            uid: AtomicU32::new(uid),
            gid: AtomicU32::new(gid),
            time,
            resize: tokio::sync::Mutex::new(()),
            blksize: info.request_alignment.max(1),
            alloc: Mutex::new(Some((info.actual_size, Instant::now()))),
            alloc_stale: AtomicBool::new(false),
        }
    }

    /// Handles one request. `buf` is the request's buffer: it holds a
    /// WRITE's payload (`payload` bytes of it) and receives a READ's data.
    pub async fn handle(&self, req: Request, buf: &mut IoBuf, payload: usize) -> Reply {
        match req {
            Request::Init(i) => Reply::small(&self.init(i).encode()),
            Request::Getattr => self.getattr().await,
            Request::Setattr(s) => self.setattr(s).await,
            // O_TRUNC (atomic with FUSE_ATOMIC_O_TRUNC) is ignored, as qsd
            // ignores it: opening the image never truncates it.
            Request::Open(_) => Reply::small(&codec::open_out()),
            Request::Read(r) => self.read(r.offset, r.size, buf).await,
            Request::Write(w) => self.write(w.offset, w.size, buf, payload).await,
            Request::Statfs => Reply::small(&codec::statfs_out(512, 255)),
            Request::Release | Request::Destroy => Reply::empty(),
            Request::Flush | Request::Fsync => result(self.dev.flush().await),
            Request::Fallocate(f) => self.fallocate(f.offset, f.length, f.mode).await,
            Request::Lseek(l) => self.lseek(l.offset, l.whence).await,
            Request::NoReply => Reply::None,
            Request::Unsupported(_) => Reply::Err(libc::ENOSYS),
        }
    }

    /// Our side of the INIT negotiation. HANDLE_KILLPRIV is left out, as
    /// qsd's libfuse leaves it out: the kernel then clears set-user-ID and
    /// set-group-ID itself (a chown comes with a MODE change), so the mode
    /// we report is what a local file system would show.
    pub fn init(&self, i: InitIn) -> InitOut {
        let want = init::ASYNC_READ
            | init::ATOMIC_O_TRUNC
            | init::BIG_WRITES
            | init::HAS_IOCTL_DIR
            | init::AUTO_INVAL_DATA
            | init::ASYNC_DIO
            | init::PARALLEL_DIROPS
            | init::MAX_PAGES;
        InitOut {
            major: codec::KERNEL_VERSION,
            minor: codec::KERNEL_MINOR_VERSION,
            max_readahead: i.max_readahead,
            flags: i.flags & want,
            max_background: MAX_BACKGROUND,
            congestion_threshold: CONGESTION_THRESHOLD,
            max_write: MAX_WRITE,
            time_gran: 1,
            max_pages: MAX_PAGES,
        }
    }

    /// The file's attributes: st_blocks from what the node allocates (its
    /// whole length when it cannot tell), st_blksize its alignment.
    pub async fn attr(&self) -> Attr {
        let allocated = self.allocated().await;
        // Read after the allocation: a resize in between shows its size.
        let size = self.dev.size();
        let allocated = match allocated {
            Some(a) if a > 0 => a,
            _ => size,
        };
        Attr {
            ino: codec::ROOT_ID,
            size,
            blocks: allocated.div_ceil(512),
            time: self.time,
            mode: self.mode.load(Ordering::Relaxed),
            nlink: 1,
            uid: self.uid.load(Ordering::Relaxed),
            gid: self.gid.load(Ordering::Relaxed),
            blksize: self.blksize,
        }
    }

    /// Notes that a request may have changed what the node allocates.
    fn changed(&self) {
        self.alloc_stale.store(true, Ordering::Release);
    }

    /// What the node allocates: the cached measure while it is fresh and
    /// none of our requests changed the node, else a new one taken on the
    /// blocking pool (fstat, and the description built around it).
    async fn allocated(&self) -> Option<u64> {
        let cached = *self.alloc.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((a, at)) = cached
            && !self.alloc_stale.load(Ordering::Acquire)
            && at.elapsed() < ALLOC_VALID
        {
            return a;
        }
        // Cleared before measuring: a change meanwhile measures again.
        self.alloc_stale.store(false, Ordering::Release);
        let dev = self.dev.clone();
        let measured = match tokio::runtime::Handle::try_current() {
            Ok(rt) => rt
                .spawn_blocking(move || dev.info().actual_size)
                .await
                .unwrap_or(None),
            Err(_) => dev.info().actual_size,
        };
        *self.alloc.lock().unwrap_or_else(|e| e.into_inner()) = Some((measured, Instant::now()));
        measured
    }

    async fn getattr(&self) -> Reply {
        Reply::small(&codec::attr_out(&self.attr().await, ATTR_VALID_SECS))
    }

    async fn setattr(&self, s: codec::SetattrIn) -> Reply {
        // The file handle and lock owner only say who asks.
        let valid = s.valid & !(fattr::FH | fattr::LOCKOWNER | fattr::KILL_SUIDGID);
        let mut supported = fattr::MODE | fattr::SIZE;
        if self.opts.allow_other {
            supported |= fattr::UID | fattr::GID;
        }
        if valid & !supported != 0 {
            // Times, and ownership without allow_other.
            return Reply::Err(libc::ENOTSUP);
        }
        // Every check before any change.
        if valid & fattr::SIZE != 0 && !self.opts.writable {
            return Reply::Err(libc::EACCES);
        }
        if valid & fattr::MODE != 0 && s.mode & libc::S_IFMT != libc::S_IFREG {
            return Reply::Err(libc::EINVAL);
        }
        if valid & fattr::SIZE != 0 && s.size > MAX_END {
            // A size the block layer cannot hold (negative to qsd).
            return Reply::Err(libc::EINVAL);
        }
        if valid & fattr::SIZE != 0 {
            let _g = self.resize.lock().await;
            self.changed();
            if let Err(e) = self.dev.resize(s.size).await {
                return Reply::Err(errno_of(&e));
            }
        }
        if valid & fattr::MODE != 0 {
            self.mode
                .store((s.mode & 0o7777) | libc::S_IFREG, Ordering::Relaxed);
        }
        if valid & fattr::UID != 0 {
            self.uid.store(s.uid, Ordering::Relaxed);
        }
        if valid & fattr::GID != 0 {
            self.gid.store(s.gid, Ordering::Relaxed);
        }
        self.getattr().await
    }

    /// Grows the node to at least `end` bytes.
    async fn grow(&self, end: u64) -> Result<(), i32> {
        if end > MAX_END {
            return Err(libc::EINVAL);
        }
        let _g = self.resize.lock().await;
        if self.dev.size() >= end {
            return Ok(());
        }
        self.changed();
        self.dev.resize(end).await.map_err(|e| errno_of(&e))
    }

    async fn read(&self, offset: u64, size: u32, buf: &mut IoBuf) -> Reply {
        if size > MAX_READ {
            return Reply::Err(libc::EINVAL);
        }
        let end = self.dev.size();
        if offset >= end {
            return Reply::Buf(0);
        }
        // Short at the end of the image; at most MAX_READ, so it fits.
        let Ok(len) = usize::try_from(u64::from(size).min(end - offset)) else {
            return Reply::Err(libc::EINVAL);
        };
        let mut b = std::mem::take(buf);
        b.set_len(len);
        let (r, b) = self.dev.read(offset, b).await;
        *buf = b;
        match r {
            Ok(()) => Reply::Buf(len),
            Err(e) => Reply::Err(errno_of(&e)),
        }
    }

    async fn write(&self, offset: u64, size: u32, buf: &mut IoBuf, payload: usize) -> Reply {
        if !self.opts.writable {
            return Reply::Err(libc::EACCES);
        }
        let size = size as usize;
        if size > payload || size > buf.len() {
            return Reply::Err(libc::EINVAL);
        }
        let Some(end) = offset.checked_add(size as u64).filter(|&e| e <= MAX_END) else {
            return Reply::Err(libc::EINVAL);
        };
        let mut len = size;
        let cur = self.dev.size();
        if end > cur {
            if self.opts.growable {
                if let Err(e) = self.grow(end).await {
                    return Reply::Err(e);
                }
            } else if offset >= cur {
                return Reply::Err(libc::EIO);
            } else {
                // A short write up to the end (less than `size`).
                len = usize::try_from(cur - offset).unwrap_or(size).min(size);
            }
        }
        self.changed();
        let mut b = std::mem::take(buf);
        b.set_len(len);
        let (r, b) = self.dev.write(offset, b, false).await;
        *buf = b;
        match r {
            Ok(()) => Reply::small(&codec::write_out(len as u32)),
            Err(e) => Reply::Err(errno_of(&e)),
        }
    }

    /// `len` clipped to the end of the node for KEEP_SIZE requests; a
    /// start past the end is an I/O error, as in qsd.
    fn keep_size_len(&self, offset: u64, len: u64) -> Result<u64, i32> {
        let end = self.dev.size();
        if offset > end {
            return Err(libc::EIO);
        }
        Ok(len.min(end - offset))
    }

    async fn fallocate(&self, offset: u64, len: u64, mode: u32) -> Reply {
        if !self.opts.writable {
            return Reply::Err(libc::EACCES);
        }
        let Some(end) = offset.checked_add(len).filter(|&e| e <= MAX_END) else {
            return Reply::Err(libc::EINVAL);
        };
        self.changed();
        let keep = mode & FALLOC_FL_KEEP_SIZE != 0;
        if mode & FALLOC_FL_PUNCH_HOLE != 0 {
            if !keep {
                return Reply::Err(libc::EINVAL);
            }
            let len = match self.keep_size_len(offset, len) {
                Ok(l) => l,
                Err(e) => return Reply::Err(e),
            };
            if len == 0 {
                return Reply::empty();
            }
            result(self.dev.write_zeroes(offset, len, true).await)
        } else if mode & FALLOC_FL_ZERO_RANGE != 0 {
            let len = if keep {
                match self.keep_size_len(offset, len) {
                    Ok(l) => l,
                    Err(e) => return Reply::Err(e),
                }
            } else {
                if end > self.dev.size() {
                    // Writable exports may change their size; the new
                    // part reads as zeroes already.
                    if let Err(e) = self.grow(end).await {
                        return Reply::Err(e);
                    }
                }
                len
            };
            if len == 0 {
                return Reply::empty();
            }
            result(self.dev.write_zeroes(offset, len, false).await)
        } else if mode == 0 {
            // Plain allocation is only possible by growing the file.
            if offset < self.dev.size() {
                return Reply::Err(libc::ENOTSUP);
            }
            match self.grow(end).await {
                Ok(()) => Reply::empty(),
                Err(e) => Reply::Err(e),
            }
        } else {
            Reply::Err(libc::ENOTSUP)
        }
    }

    /// SEEK_DATA / SEEK_HOLE from the node's block status.
    async fn lseek(&self, offset: u64, whence: u32) -> Reply {
        let whence = whence as i32;
        if whence != libc::SEEK_DATA && whence != libc::SEEK_HOLE {
            return Reply::Err(libc::EINVAL);
        }
        let want_data = whence == libc::SEEK_DATA;
        let mut off = offset;
        loop {
            let size = self.dev.size();
            if off >= size {
                // The end of the file counts as a hole (as in qsd and
                // POSIX); past it there is nothing.
                if !want_data && off == size {
                    return Reply::small(&codec::lseek_out(off));
                }
                return Reply::Err(libc::ENXIO);
            }
            let st = match self.dev.block_status(off, size - off).await {
                Ok(st) => st,
                Err(e) => return Reply::Err(errno_of(&e)),
            };
            if st.data == want_data {
                return Reply::small(&codec::lseek_out(off));
            }
            // A driver's extent never ends past the node; if one did, stop
            // rather than wrap.
            match off.checked_add(st.len) {
                Some(next) if st.len > 0 => off = next,
                _ => return Reply::Err(libc::ENXIO),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage_block::{BlockGraph, BlockdevOptions, DriverOptions, FileOptions};

    fn file_node(len: u64) -> (tempdir::Dir, Arc<dyn BlockDevice>) {
        let dir = tempdir::Dir::new();
        let path = dir.path().join("img");
        let f = std::fs::File::create(&path).expect("create image");
        f.set_len(len).expect("size image");
        let graph = Arc::new(BlockGraph::new());
        let opts = BlockdevOptions::new(DriverOptions::File(FileOptions::new(
            &path.to_string_lossy(),
        )))
        .named("f");
        graph.add(&opts).expect("add node");
        let dev = graph.get("f").expect("node");
        (dir, dev)
    }

    /// A private scratch directory, removed on drop.
    mod tempdir {
        use std::path::{Path, PathBuf};
        use std::sync::atomic::{AtomicU32, Ordering};

        pub struct Dir(PathBuf);

        impl Dir {
            pub fn new() -> Dir {
                static N: AtomicU32 = AtomicU32::new(0);
                let p = std::env::temp_dir().join(format!(
                    "fuse-session-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::SeqCst)
                ));
                std::fs::create_dir_all(&p).expect("scratch dir");
                Dir(p)
            }
            pub fn path(&self) -> &Path {
                &self.0
            }
        }

        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn session(dev: Arc<dyn BlockDevice>, writable: bool, growable: bool) -> Session {
        Session::new(
            dev,
            SessionOptions {
                writable,
                growable,
                allow_other: false,
            },
        )
    }

    fn err(r: Reply) -> i32 {
        match r {
            Reply::Err(e) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    async fn write(s: &Session, off: u64, data: &[u8]) -> Reply {
        let mut b = IoBuf::from_slice(data);
        let n = data.len();
        s.handle(
            Request::Write(codec::WriteIn {
                fh: 0,
                offset: off,
                size: n as u32,
                write_flags: 0,
            }),
            &mut b,
            n,
        )
        .await
    }

    async fn read(s: &Session, off: u64, size: u32) -> Vec<u8> {
        let mut b = IoBuf::with_len(MAX_WRITE as usize);
        match s
            .handle(
                Request::Read(codec::ReadIn {
                    fh: 0,
                    offset: off,
                    size,
                }),
                &mut b,
                0,
            )
            .await
        {
            Reply::Buf(n) => b[..n].to_vec(),
            other => panic!("read: {other:?}"),
        }
    }

    fn written(r: Reply) -> u32 {
        match r {
            Reply::Small { bytes, len: 8 } => {
                u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
            }
            other => panic!("write: {other:?}"),
        }
    }

    #[tokio::test]
    async fn reads_and_writes_are_short_at_the_end() {
        let (_d, dev) = file_node(8192);
        let s = session(dev.clone(), true, false);
        assert_eq!(written(write(&s, 8190, b"abcd").await), 2);
        assert_eq!(err(write(&s, 8192, b"x").await), libc::EIO);
        assert_eq!(read(&s, 8188, 100).await, b"\0\0ab");
        assert!(read(&s, 9000, 10).await.is_empty());
        assert_eq!(dev.size(), 8192);
    }

    #[tokio::test]
    async fn growable_writes_grow_read_only_refuses() {
        let (_d, dev) = file_node(4096);
        let s = session(dev.clone(), true, true);
        assert_eq!(written(write(&s, 10000, b"xyz").await), 3);
        assert!(dev.size() >= 10003);
        assert_eq!(read(&s, 9999, 4).await, b"\0xyz");
        let ro = session(dev, false, false);
        assert_eq!(err(write(&ro, 0, b"x").await), libc::EACCES);
    }

    /// Offsets and sizes near u64::MAX and i64::MAX, as a hostile or
    /// buggy kernel could send them: errors (EINVAL, what qsd's int64_t
    /// sizes give), never a panic or a wrapped range.
    #[tokio::test]
    async fn offsets_and_sizes_at_the_integer_limits() {
        let (_d, dev) = file_node(8192);
        let s = session(dev.clone(), true, true);
        let mut b = IoBuf::new();
        // The end wraps around u64.
        assert_eq!(err(write(&s, u64::MAX - 1, b"abcd").await), libc::EINVAL);
        // The end fits in u64 but not in the block layer's int64_t.
        assert_eq!(err(write(&s, i64::MAX as u64, b"ab").await), libc::EINVAL);
        assert_eq!(err(write(&s, u64::MAX, b"").await), libc::EINVAL);
        let set_size = |size| {
            Request::Setattr(codec::SetattrIn {
                valid: fattr::SIZE,
                fh: 0,
                size,
                mode: 0,
                uid: 0,
                gid: 0,
            })
        };
        for size in [u64::MAX, i64::MAX as u64 + 1] {
            assert_eq!(err(s.handle(set_size(size), &mut b, 0).await), libc::EINVAL);
        }
        let fa = fallocate;
        for (off, len, mode) in [
            (u64::MAX, 2, 0),
            (i64::MAX as u64, 1, 0),
            (1, i64::MAX as u64, 0x10),
            (u64::MAX - 1, 4, 3),
        ] {
            assert_eq!(
                err(s.handle(fa(off, len, mode), &mut b, 0).await),
                libc::EINVAL,
                "fallocate {off} {len} {mode:#x}"
            );
        }
        // Reads and seeks past the end: empty, ENXIO.
        assert!(read(&s, u64::MAX, MAX_READ).await.is_empty());
        let seek = |offset| {
            Request::Lseek(codec::LseekIn {
                fh: 0,
                offset,
                whence: libc::SEEK_DATA as u32,
            })
        };
        assert_eq!(err(s.handle(seek(u64::MAX), &mut b, 0).await), libc::ENXIO);
        let mut big = IoBuf::new();
        let too_big = Request::Read(codec::ReadIn {
            fh: 0,
            offset: 0,
            size: u32::MAX,
        });
        assert_eq!(err(s.handle(too_big, &mut big, 0).await), libc::EINVAL);
        // Nothing of that changed the node.
        assert_eq!(dev.size(), 8192);
    }

    /// GETATTR's st_blocks comes from a cached measure: one of our own
    /// writes must show at once, not after the cache expires.
    #[tokio::test]
    async fn cached_allocation_follows_our_writes() {
        let (_d, dev) = file_node(1 << 20);
        let s = session(dev.clone(), true, false);
        // Sparse: nothing allocated, so st_blocks falls back to the size.
        let before = s.attr().await.blocks;
        assert_eq!(before, 2048);
        written(write(&s, 0, &[1; 65536]).await);
        let after = s.attr().await.blocks;
        assert!((128..2048).contains(&after), "{before} -> {after}");
        // Unchanged and fresh: served from the cache, same answer.
        assert_eq!(s.attr().await.blocks, after);
        assert_eq!(s.attr().await.blksize, dev.info().request_alignment.max(1));
    }

    #[test]
    fn init_leaves_killing_suid_to_the_kernel() {
        let (_d, dev) = file_node(4096);
        let s = session(dev, true, false);
        let out = s.init(InitIn {
            major: 7,
            minor: 31,
            max_readahead: 1 << 17,
            flags: u32::MAX,
        });
        // Not negotiated, as by qsd's libfuse: the kernel then turns a
        // chown into a chown plus a MODE without set-user-ID.
        assert_eq!(out.flags & init::HANDLE_KILLPRIV, 0);
        assert_ne!(out.flags & init::ASYNC_DIO, 0);
        assert_eq!(out.max_write, MAX_WRITE);
    }

    #[tokio::test]
    async fn setattr_truncates_and_changes_mode_only() {
        let (_d, dev) = file_node(4096);
        let s = session(dev.clone(), true, false);
        let set = |valid, size, mode| {
            Request::Setattr(codec::SetattrIn {
                valid,
                fh: 0,
                size,
                mode,
                uid: 5,
                gid: 6,
            })
        };
        let mut b = IoBuf::new();
        let r = s
            .handle(set(fattr::SIZE | fattr::FH, 1 << 20, 0), &mut b, 0)
            .await;
        assert!(matches!(r, Reply::Small { len: 104, .. }));
        assert_eq!(dev.size(), 1 << 20);
        let r = s.handle(set(fattr::MODE, 0, 0o100644), &mut b, 0).await;
        assert!(matches!(r, Reply::Small { len: 104, .. }));
        assert_eq!(s.attr().await.mode, 0o100644);
        assert_eq!(
            err(s.handle(set(fattr::MODE, 0, 0o040755), &mut b, 0).await),
            libc::EINVAL
        );
        assert_eq!(
            err(s.handle(set(fattr::UID, 0, 0), &mut b, 0).await),
            libc::ENOTSUP
        );
        assert_eq!(
            err(s.handle(set(fattr::MTIME, 0, 0), &mut b, 0).await),
            libc::ENOTSUP
        );
        let ro = session(dev, false, false);
        assert_eq!(
            err(ro.handle(set(fattr::SIZE, 0, 0), &mut b, 0).await),
            libc::EACCES
        );
    }

    fn fallocate(offset: u64, length: u64, mode: u32) -> Request {
        Request::Fallocate(codec::FallocateIn {
            fh: 0,
            offset,
            length,
            mode,
        })
    }

    #[tokio::test]
    async fn fallocate_modes() {
        let (_d, dev) = file_node(1 << 20);
        let s = session(dev.clone(), true, false);
        let fa = fallocate;
        let mut b = IoBuf::new();
        written(write(&s, 0, &[0xaa; 8192]).await);
        let ok = |r: Reply| assert!(matches!(r, Reply::Small { len: 0, .. }), "{r:?}");
        ok(s.handle(fa(0, 4096, 3), &mut b, 0).await);
        assert_eq!(read(&s, 0, 8192).await[..4096], [0; 4096]);
        assert_eq!(read(&s, 4096, 4096).await, vec![0xaa; 4096]);
        ok(s.handle(fa(4096, 4096, 0x10), &mut b, 0).await);
        assert_eq!(read(&s, 4096, 4096).await, vec![0; 4096]);
        assert_eq!(
            err(s.handle(fa(0, 4096, 0), &mut b, 0).await),
            libc::ENOTSUP
        );
        assert_eq!(err(s.handle(fa(0, 4096, 2), &mut b, 0).await), libc::EINVAL);
        assert_eq!(
            err(s.handle(fa(2 << 20, 4096, 3), &mut b, 0).await),
            libc::EIO
        );
        ok(s.handle(fa((1 << 20) - 4096, 65536, 3), &mut b, 0).await);
        assert_eq!(dev.size(), 1 << 20);
        ok(s.handle(fa(1 << 20, 4096, 0), &mut b, 0).await);
        assert_eq!(dev.size(), (1 << 20) + 4096);
        ok(s.handle(fa(2 << 20, 4096, 0x10), &mut b, 0).await);
        assert_eq!(dev.size(), (2 << 20) + 4096);
    }

    #[tokio::test]
    async fn seek_data_and_hole() {
        let (_d, dev) = file_node(1 << 20);
        let s = session(dev, true, false);
        written(write(&s, 65536, &[1; 4096]).await);
        let seek = |offset, whence: i32| {
            Request::Lseek(codec::LseekIn {
                fh: 0,
                offset,
                whence: whence as u32,
            })
        };
        let pos = |r: Reply| match r {
            Reply::Small { bytes, len: 8 } => {
                u64::from_ne_bytes(bytes[..8].try_into().expect("8 bytes"))
            }
            other => panic!("lseek: {other:?}"),
        };
        let mut b = IoBuf::new();
        assert_eq!(
            pos(s.handle(seek(0, libc::SEEK_DATA), &mut b, 0).await),
            65536
        );
        assert_eq!(pos(s.handle(seek(0, libc::SEEK_HOLE), &mut b, 0).await), 0);
        assert_eq!(
            pos(s.handle(seek(65536, libc::SEEK_HOLE), &mut b, 0).await),
            69632
        );
        assert_eq!(
            err(s.handle(seek(70000, libc::SEEK_DATA), &mut b, 0).await),
            libc::ENXIO
        );
        assert_eq!(
            pos(s.handle(seek(1 << 20, libc::SEEK_HOLE), &mut b, 0).await),
            1 << 20
        );
        assert_eq!(
            err(s
                .handle(seek((1 << 20) + 1, libc::SEEK_HOLE), &mut b, 0)
                .await),
            libc::ENXIO
        );
        assert_eq!(
            err(s.handle(seek(0, libc::SEEK_END), &mut b, 0).await),
            libc::EINVAL
        );
    }
}
