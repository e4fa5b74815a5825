//! Plain options for [`super::BlockGraph::add`]: the subset of QAPI's
//! `BlockdevOptions` that our drivers take, with QEMU's names in the docs.
//! The QMP and command-line front ends translate the generated types into
//! these. `None` means "not given": inline children inherit such options
//! from their parent the way QEMU's `bdrv_inherited_options` does.

use serde::Serialize;

/// `BlockdevOptions`.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockdevOptions {
    /// `node-name`; required for a root node, generated for inline children.
    pub node_name: Option<String>,
    /// `read-only` (default false; children inherit the parent's).
    pub read_only: Option<bool>,
    /// `auto-read-only`: open read-only when read-write is refused.
    pub auto_read_only: Option<bool>,
    /// `force-share`: share every permission (needs read-only).
    pub force_share: Option<bool>,
    /// `discard` (default ignore; inline children default to unmap).
    pub discard: Option<Discard>,
    /// `cache` (children inherit).
    pub cache: CacheOptions,
    /// `detect-zeroes` (default off; not inherited).
    pub detect_zeroes: Option<DetectZeroes>,
    pub driver: DriverOptions,
}

impl BlockdevOptions {
    /// Options with every common member left out.
    pub fn new(driver: DriverOptions) -> Self {
        BlockdevOptions {
            node_name: None,
            read_only: None,
            auto_read_only: None,
            force_share: None,
            discard: None,
            cache: CacheOptions::default(),
            detect_zeroes: None,
            driver,
        }
    }

    /// Sets `node-name` (builder style, for tests and front ends).
    pub fn named(mut self, name: &str) -> Self {
        self.node_name = Some(name.to_owned());
        self
    }

    /// Sets `read-only`.
    pub fn read_only(mut self, ro: bool) -> Self {
        self.read_only = Some(ro);
        self
    }
}

/// The driver and its own options (the union branches of `BlockdevOptions`).
#[derive(Debug, Clone, PartialEq)]
pub enum DriverOptions {
    File(FileOptions),
    /// `host_device`: a block device, same options as `file`.
    HostDevice(FileOptions),
    Raw(RawOptions),
    NullCo(NullOptions),
    NullAio(NullOptions),
}

impl DriverOptions {
    pub fn name(&self) -> &'static str {
        match self {
            DriverOptions::File(_) => "file",
            DriverOptions::HostDevice(_) => "host_device",
            DriverOptions::Raw(_) => "raw",
            DriverOptions::NullCo(_) => "null-co",
            DriverOptions::NullAio(_) => "null-aio",
        }
    }
}

/// `BlockdevCacheOptions`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheOptions {
    /// `direct`: `O_DIRECT`.
    pub direct: Option<bool>,
    /// `no-flush`: flushes (and FUA) do nothing.
    pub no_flush: Option<bool>,
}

/// `BlockdevDiscardOptions`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Discard {
    #[default]
    Ignore,
    Unmap,
}

/// `BlockdevDetectZeroesOptions`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectZeroes {
    #[default]
    Off,
    On,
    Unmap,
}

impl DetectZeroes {
    pub fn as_str(self) -> &'static str {
        match self {
            DetectZeroes::Off => "off",
            DetectZeroes::On => "on",
            DetectZeroes::Unmap => "unmap",
        }
    }
}

/// `OnOffAuto`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnOffAuto {
    #[default]
    Auto,
    On,
    Off,
}

/// `BlockdevAioOptions`. All three run on our thread pool (there is no
/// Linux AIO or io_uring backend): `native` is accepted with QEMU's rule
/// (it needs `cache.direct=on`), `io_uring` only in builds with the
/// `io-uring` feature, as in a QEMU built with or without liburing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Aio {
    #[default]
    Threads,
    Native,
    IoUring,
}

/// `BlockdevOptionsFile`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOptions {
    pub filename: String,
    /// `locking`: QEMU's OFD byte-range locks (auto = on).
    pub locking: OnOffAuto,
    pub aio: Aio,
    /// `aio-max-batch`: accepted, no effect.
    pub aio_max_batch: Option<i64>,
    /// `drop-cache`: accepted, no effect.
    pub drop_cache: Option<bool>,
}

impl FileOptions {
    pub fn new(filename: &str) -> Self {
        FileOptions {
            filename: filename.to_owned(),
            locking: OnOffAuto::Auto,
            aio: Aio::Threads,
            aio_max_batch: None,
            drop_cache: None,
        }
    }
}

/// `BlockdevRef`: a child given by node name or defined inline.
#[derive(Debug, Clone, PartialEq)]
pub enum BlockdevRef {
    Reference(String),
    Definition(Box<BlockdevOptions>),
}

/// `BlockdevOptionsRaw`.
#[derive(Debug, Clone, PartialEq)]
pub struct RawOptions {
    pub file: BlockdevRef,
    /// `offset` into the child (default 0).
    pub offset: Option<u64>,
    /// `size` of the window (default: the rest of the child).
    pub size: Option<u64>,
}

/// `BlockdevOptionsNull`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NullOptions {
    /// `size` (default 1 GiB).
    pub size: Option<u64>,
    /// `latency-ns`: every request completes after this delay.
    pub latency_ns: Option<u64>,
    /// `read-zeroes` (default false in QEMU 10.0). Reads return zeroes
    /// either way (never a reused buffer's old bytes); with false, block
    /// status does not claim the node reads as zeroes.
    pub read_zeroes: Option<bool>,
}
