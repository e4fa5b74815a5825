//! The virtio-blk request engine: what a virtio-blk device does with the
//! requests a driver puts on its queues, as qemu-storage-daemon 10.0.2
//! does it, with no knowledge of the transport. vhost-user-blk and VDUSE
//! both hand it descriptor chains over guest memory they mapped.
//!
//! - [`config`]: the offered feature bits and the config space;
//! - [`request`]: a descriptor chain turned into a request (header,
//!   data segments, status byte), checked against guest memory;
//! - [`engine`]: serving a request against a [`storage_block::BlockDevice`],
//!   data moving straight between guest memory and the node
//!   ([`storage_block::IoVecs`]: the `file` driver does `preadv`/`pwritev`
//!   on the guest's pages);
//! - [`fuzz`]: a driver side that lays out a split virtqueue in guest
//!   memory, used by the tests and the fuzz targets.

pub mod config;
pub mod engine;
pub mod fuzz;
pub mod request;
#[cfg(test)]
mod tests;

pub use config::{BlkConfig, ConfigError, device_features};
pub use engine::Engine;
pub use request::ChainError;

/// What an export asks of its virtio-blk device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlkOptions {
    /// Power of two, 512..=32768 (checked by the export glue with qsd's
    /// messages).
    pub logical_block_size: u32,
    pub num_queues: u16,
    pub writable: bool,
    pub writethrough: bool,
}

/// virtio-blk addresses in 512-byte sectors whatever the block size.
pub const SECTOR_SHIFT: u32 = 9;
pub const SECTOR_SIZE: u64 = 1 << SECTOR_SHIFT;
