//! Feature bits and the `virtio_blk_config` space, filled with the values
//! qemu-storage-daemon 10.0.2 gives a vhost-user-blk export.

use std::fmt;

use virtio_bindings::virtio_blk::*;
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};

use super::{BlkOptions, SECTOR_SHIFT};

/// qsd's limit on the sectors of one discard or write-zeroes request (and
/// what it advertises as `max_discard_sectors`/`max_write_zeroes_sectors`).
pub const MAX_DISCARD_SECTORS: u32 = 32768;
pub const MAX_WRITE_ZEROES_SECTORS: u32 = 32768;

/// Size of the config space: `struct virtio_blk_config` up to and including
/// the zoned block device fields, as QEMU 10.0 defines it.
pub const CONFIG_LEN: usize = 96;

// Offsets of the fields in the config space (virtio 1.2, 5.2.4).
const OFF_CAPACITY: usize = 0;
const OFF_SIZE_MAX: usize = 8;
const OFF_SEG_MAX: usize = 12;
const OFF_BLK_SIZE: usize = 20;
const OFF_PHYSICAL_BLOCK_EXP: usize = 24;
const OFF_ALIGNMENT_OFFSET: usize = 25;
const OFF_MIN_IO_SIZE: usize = 26;
const OFF_OPT_IO_SIZE: usize = 28;
/// The only byte a driver may write.
pub const OFF_WCE: usize = 32;
const OFF_NUM_QUEUES: usize = 34;
const OFF_MAX_DISCARD_SECTORS: usize = 36;
const OFF_MAX_DISCARD_SEG: usize = 40;
const OFF_DISCARD_SECTOR_ALIGNMENT: usize = 44;
const OFF_MAX_WRITE_ZEROES_SECTORS: usize = 48;
const OFF_MAX_WRITE_ZEROES_SEG: usize = 52;

/// The virtio device feature bits qsd 10.0.2 offers for `opts` (the
/// transport adds its own, e.g. vhost-user's `PROTOCOL_FEATURES`).
pub fn device_features(opts: &BlkOptions) -> u64 {
    let bits = [
        VIRTIO_BLK_F_SIZE_MAX,
        VIRTIO_BLK_F_SEG_MAX,
        VIRTIO_BLK_F_TOPOLOGY,
        VIRTIO_BLK_F_BLK_SIZE,
        VIRTIO_BLK_F_FLUSH,
        VIRTIO_BLK_F_DISCARD,
        VIRTIO_BLK_F_WRITE_ZEROES,
        VIRTIO_BLK_F_CONFIG_WCE,
        VIRTIO_BLK_F_MQ,
        VIRTIO_F_VERSION_1,
        VIRTIO_RING_F_INDIRECT_DESC,
        VIRTIO_RING_F_EVENT_IDX,
    ];
    let mut features = bits.iter().fold(0u64, |f, &b| f | 1 << b);
    if !opts.writable {
        features |= 1 << VIRTIO_BLK_F_RO;
    }
    features
}

/// A config space access outside what the device allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `offset + len` is past the end of the config space.
    OutOfRange { offset: u32, len: u32 },
    /// A write to anything but the one `wce` byte.
    ReadOnly { offset: u32, len: u32 },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::OutOfRange { offset, len } => write!(
                f,
                "config access of {len} bytes at offset {offset} is past the {CONFIG_LEN}-byte config space"
            ),
            ConfigError::ReadOnly { offset, len } => write!(
                f,
                "config write of {len} bytes at offset {offset}: only the 1-byte wce field at offset {OFF_WCE} is writable"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The virtio-blk config space, little-endian, as a driver reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlkConfig {
    bytes: [u8; CONFIG_LEN],
}

impl BlkConfig {
    /// qsd's values: no size limit, 126 segments, the logical block size
    /// as blk_size and discard alignment, min/opt I/O size 1, and `wce` 0
    /// (qsd starts with 0 whatever `writethrough` says).
    pub fn new(opts: &BlkOptions, capacity_bytes: u64) -> Self {
        let mut c = BlkConfig {
            bytes: [0; CONFIG_LEN],
        };
        c.set_capacity(capacity_bytes);
        c.put_u32(OFF_SIZE_MAX, 0);
        c.put_u32(OFF_SEG_MAX, 128 - 2);
        c.put_u32(OFF_BLK_SIZE, opts.logical_block_size);
        c.bytes[OFF_PHYSICAL_BLOCK_EXP] = 0;
        c.bytes[OFF_ALIGNMENT_OFFSET] = 0;
        c.put_u16(OFF_MIN_IO_SIZE, 1);
        c.put_u32(OFF_OPT_IO_SIZE, 1);
        c.bytes[OFF_WCE] = 0;
        c.put_u16(OFF_NUM_QUEUES, opts.num_queues);
        c.put_u32(OFF_MAX_DISCARD_SECTORS, MAX_DISCARD_SECTORS);
        c.put_u32(OFF_MAX_DISCARD_SEG, 1);
        c.put_u32(
            OFF_DISCARD_SECTOR_ALIGNMENT,
            opts.logical_block_size >> SECTOR_SHIFT,
        );
        c.put_u32(OFF_MAX_WRITE_ZEROES_SECTORS, MAX_WRITE_ZEROES_SECTORS);
        c.put_u32(OFF_MAX_WRITE_ZEROES_SEG, 1);
        c
    }

    /// Capacity in 512-byte sectors, rounded down.
    pub fn set_capacity(&mut self, capacity_bytes: u64) {
        let sectors = capacity_bytes >> SECTOR_SHIFT;
        self.bytes[OFF_CAPACITY..OFF_CAPACITY + 8].copy_from_slice(&sectors.to_le_bytes());
    }

    /// The whole config space.
    pub fn bytes(&self) -> Vec<u8> {
        self.bytes.to_vec()
    }

    /// `len` bytes at `offset`.
    pub fn read(&self, offset: u32, len: u32) -> Result<Vec<u8>, ConfigError> {
        let range = self
            .range(offset, len)
            .ok_or(ConfigError::OutOfRange { offset, len })?;
        Ok(self.bytes[range].to_vec())
    }

    /// A driver's write: qsd accepts only the `wce` byte, alone.
    pub fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), ConfigError> {
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let range = self
            .range(offset, len)
            .ok_or(ConfigError::OutOfRange { offset, len })?;
        if range.start != OFF_WCE || range.len() != 1 {
            return Err(ConfigError::ReadOnly { offset, len });
        }
        self.bytes[OFF_WCE] = data[0];
        Ok(())
    }

    /// What the `wce` byte says: any non-zero value is writeback, as qsd
    /// hands the byte to the block layer as a boolean.
    pub fn writeback(&self) -> bool {
        self.bytes[OFF_WCE] != 0
    }

    fn range(&self, offset: u32, len: u32) -> Option<std::ops::Range<usize>> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        (end <= CONFIG_LEN).then_some(start..end)
    }

    fn put_u16(&mut self, off: usize, v: u16) {
        self.bytes[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }

    fn put_u32(&mut self, off: usize, v: u32) {
        self.bytes[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
}
