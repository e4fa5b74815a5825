//! The block layer: nodes that exports (NBD, FUSE, vhost-user-blk, VDUSE)
//! read and write through one object-safe async trait, [`BlockDevice`], and
//! the graph that names them ([`graph::BlockGraph`]).
//!
//! Drivers: `file` (and `host_device`), `raw` (a window over a child node),
//! `null-co` and `null-aio`. Every driver sits inside a generic [`node`]
//! layer that does what QEMU's generic block layer does around a driver:
//! request bounds, read-only refusal, the `discard` policy and
//! `detect-zeroes`.

mod buf;
mod file;
pub mod graph;
mod iovec;
mod node;
mod null;
pub mod options;
mod perm;
mod query;
mod raw;

use std::future::Future;
use std::io;
use std::pin::Pin;

pub use buf::{IoBuf, is_zero};
pub use graph::{BlockGraph, Error, NodeUser, id_wellformed};
pub use iovec::IoVecs;
pub use options::{
    Aio, BlockdevOptions, BlockdevRef, CacheOptions, DetectZeroes, Discard, DriverOptions,
    FileOptions, NullOptions, OnOffAuto, RawOptions,
};
pub use perm::Perms;
pub use query::{BlockDeviceInfo, BlockdevCacheInfo, ImageInfo};

/// The largest size a node may have (QEMU's `BDRV_MAX_LENGTH`): below
/// `i64::MAX` by a whole 1 GiB alignment, so `offset + len` of any request
/// inside a node, rounded up to any alignment, stays in range.
pub const MAX_LENGTH: u64 = (i64::MAX as u64) & !((1 << 30) - 1);

/// A boxed, sendable future: what every [`BlockDevice`] method returns.
pub type IoFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The outcome of a request that carried a buffer: the result and the
/// buffer, handed back so the caller can reuse it.
pub type BufResult = (io::Result<()>, IoBuf);

/// What an export sees of a block node.
///
/// Buffers are owned ([`IoBuf`]), not borrowed: a request moves its buffer
/// in and gets it back with the result. With borrowed slices a request could
/// not leave the caller's stack: a thread-pool job (or an io_uring SQE)
/// would write into memory the caller may free by dropping the future (an
/// NBD connection closing with requests in flight), so every request would
/// need a copy into an owned buffer anyway. Owned, page-aligned buffers let
/// `O_DIRECT` and the thread pool use the caller's memory directly, and
/// exports pool them, so the data path neither copies nor allocates per
/// request (beyond the one boxed future).
///
/// Errors follow QEMU's block layer: a request past the end of the node
/// gets `EINVAL`, a write, discard or write-zeroes on a read-only node gets
/// `EPERM`. Reads must fill the whole buffer (past the end of a file, with
/// zeroes). `offset + buf.len()` and `offset + len` are byte ranges.
pub trait BlockDevice: Send + Sync {
    /// Size in bytes (QEMU's `bdrv_getlength`: a multiple of 512 for
    /// `file` and `null` nodes).
    fn size(&self) -> u64;
    /// Fills `buf` with the bytes at `offset`.
    fn read(&self, offset: u64, buf: IoBuf) -> IoFuture<'_, BufResult>;
    /// Writes `buf` at `offset`; with `fua`, the data is on stable storage
    /// when the future completes.
    fn write(&self, offset: u64, buf: IoBuf, fua: bool) -> IoFuture<'_, BufResult>;
    /// [`BlockDevice::read`] into memory the caller maps (a guest's): the
    /// `file` driver reads straight into it; the default copies through
    /// an [`IoBuf`].
    fn readv(&self, offset: u64, iov: IoVecs) -> IoFuture<'_, io::Result<()>> {
        Box::pin(async move { iov.fill_from(self.read(offset, IoBuf::with_len(iov.len())).await) })
    }
    /// [`BlockDevice::write`] from memory the caller maps.
    fn writev(&self, offset: u64, iov: IoVecs, fua: bool) -> IoFuture<'_, io::Result<()>> {
        Box::pin(async move { self.write(offset, iov.to_buf(), fua).await.0 })
    }
    fn flush(&self) -> IoFuture<'_, io::Result<()>>;
    /// A hint: ignored unless the node was opened with `discard=unmap`.
    fn discard(&self, offset: u64, len: u64) -> IoFuture<'_, io::Result<()>>;
    /// Makes the range read as zeroes; `may_unmap` allows deallocating it
    /// (honoured only with `discard=unmap`).
    fn write_zeroes(&self, offset: u64, len: u64, may_unmap: bool) -> IoFuture<'_, io::Result<()>>;
    /// The allocation status of the extent starting at `offset`: its length
    /// (at most `len`, more than 0 when `len` is) and whether it holds data
    /// and reads as zeroes, like QEMU's `bdrv_block_status`.
    fn block_status(&self, offset: u64, len: u64) -> IoFuture<'_, io::Result<BlockStatus>>;
    /// Changes the size (QEMU's `bdrv_co_truncate`); the error's text is
    /// QEMU's message.
    fn resize(&self, size: u64) -> IoFuture<'_, io::Result<()>>;
    /// A description of the node (query-named-block-nodes, export setup).
    fn info(&self) -> NodeInfo;
}

/// One extent of [`BlockDevice::block_status`]; the flags are QEMU's
/// `BDRV_BLOCK_DATA`, `BDRV_BLOCK_ZERO` and `BDRV_BLOCK_ALLOCATED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockStatus {
    pub len: u64,
    /// The range is backed by storage (NBD: not a hole).
    pub data: bool,
    /// The range reads as zeroes.
    pub zero: bool,
    /// This node (not a backing file) defines the content.
    pub allocated: bool,
}

impl BlockStatus {
    pub(crate) fn data(len: u64) -> Self {
        BlockStatus {
            len,
            data: true,
            zero: false,
            allocated: true,
        }
    }

    pub(crate) fn hole(len: u64) -> Self {
        BlockStatus {
            len,
            data: false,
            zero: true,
            allocated: true,
        }
    }
}

/// What a node says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInfo {
    /// The driver's name (`drv`).
    pub driver: &'static str,
    /// QEMU's `filename`: the plain file name, `null-co://`, or
    /// `json:{...}` built from [`NodeInfo::full_open_options`].
    pub filename: String,
    /// A filename that needs no options (`exact_filename`), if any.
    pub exact_filename: Option<String>,
    /// The options that define the node's data (QEMU's
    /// `full_open_options`): driver, strong options, children.
    pub full_open_options: serde_json::Map<String, serde_json::Value>,
    pub read_only: bool,
    pub virtual_size: u64,
    pub actual_size: Option<u64>,
    pub dirty_flag: Option<bool>,
    pub format_specific: Option<serde_json::Value>,
    pub cache_direct: bool,
    pub cache_no_flush: bool,
    pub detect_zeroes: DetectZeroes,
    pub discard: Discard,
    /// Requests aligned to this many bytes avoid read-modify-write (1 when
    /// any alignment is fine).
    pub request_alignment: u32,
}

impl NodeInfo {
    /// A writable node of `size` bytes with default options, for devices
    /// that live outside the graph (tests, fuzzing).
    pub fn plain(driver: &'static str, size: u64) -> Self {
        NodeInfo {
            driver,
            filename: driver.to_string(),
            exact_filename: None,
            full_open_options: serde_json::Map::new(),
            read_only: false,
            virtual_size: size,
            actual_size: None,
            dirty_flag: None,
            format_specific: None,
            cache_direct: false,
            cache_no_flush: false,
            detect_zeroes: DetectZeroes::Off,
            discard: Discard::Ignore,
            request_alignment: 1,
        }
    }
}

/// `io::Error` for an errno.
pub(crate) fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

/// The text of an error without Rust's " (os error N)" suffix, like QEMU's
/// `strerror()`.
pub fn strerror(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => {
            let s = io::Error::from_raw_os_error(n).to_string();
            match s.rfind(" (os error ") {
                Some(i) => s[..i].to_owned(),
                None => s,
            }
        }
        None => e.to_string(),
    }
}
