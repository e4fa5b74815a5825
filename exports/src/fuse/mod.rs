//! The FUSE export: the node appears as one regular file, mounted over
//! the `mountpoint` file, served by speaking the kernel's FUSE protocol
//! on `/dev/fuse` directly (no libfuse).
//!
//! - [`codec`]: the kernel ABI structs; bytes in, bytes out.
//! - [`session`]: what each request does to the node (qsd's semantics).
//! - `mount`: mount(2) or `fusermount3`, unmounting, queue descriptors.
//! - `export`: queues, buffers, tasks, and the registry's `Export`.

pub mod codec;
mod export;
mod mount;
pub mod session;

pub use export::{AllowOther, FuseExport, FuseExportOptions};
