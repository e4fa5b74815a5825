//! The vhost-user-blk export: a block node served to one vhost-user front
//! end at a time (a VM, libblkio) over a unix socket, requests carried in
//! the front end's shared memory and answered by the virtio-blk engine.
//!
//! - [`options`]: the export's options, checked with qsd's texts;
//! - `wire`: the vhost-user message header (what the relay reads);
//! - `relay`: the control channel between the front end and
//!   vhost-user-backend, and the config-change message;
//! - `backend`: the device vhost-user-backend serves (features, config
//!   space, queues handed to the tokio runtime);
//! - `export`: the glue (listener, sessions, registry, resize).
//!
//! The arrows go one way: wire <- relay <- export -> backend -> virtio_blk.

mod backend;
mod export;
pub mod options;
mod relay;
mod wire;

pub use backend::{MAX_QUEUE_SIZE, features, protocol_features};
pub use export::VhostUserBlkExport;
pub use options::{VhostUserBlkOptions, VhostUserListen};
