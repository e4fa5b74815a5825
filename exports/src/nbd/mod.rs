//! The NBD export, split as every protocol here is:
//!
//! - [`codec`]: the wire format (handshake, options, requests, replies);
//!   bytes in, bytes out, no sockets.
//! - [`session`]: one connection's state machine (handshake, then
//!   transmission with many requests in flight) over any async stream,
//!   talking to the export's `BlockDevice`; no files, no listeners.
//! - `server`: the glue: listeners, max-connections, the handshake
//!   deadline, export names and client counting for `block-export-del`.

pub mod codec;
mod server;
pub mod session;

pub use server::{
    ClientGuard, NbdExport, NbdExportOptions, NbdListen, NbdServer, NbdServerOptions,
};
pub use session::ExportLookup;
