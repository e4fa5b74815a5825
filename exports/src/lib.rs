//! Export backends and the registry that owns live exports.
//!
//! Every backend implements [`registry::Export`]; the registry does what is
//! common to all of them (ids, node users, safe/hard removal, the
//! `BLOCK_EXPORT_DELETED` moment) as QEMU's generic export layer does.

pub mod buffers;
pub mod errno;
pub mod registry;
pub mod sockets;

#[cfg(feature = "nbd")]
pub mod nbd;

#[cfg(feature = "fuse")]
pub mod fuse;

#[cfg(feature = "virtio-engine")]
pub mod virtio_blk;

#[cfg(feature = "vhost-user-blk")]
pub mod vhost_user_blk;

#[cfg(feature = "vduse")]
pub mod vduse_blk;

pub use registry::{Export, ExportError, ExportRegistry};
