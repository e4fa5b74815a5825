//! The NBD export, split as every protocol here is:
//!
//! - [`codec`]: the wire format (handshake, options, requests, replies);
//!   bytes in, bytes out, no sockets.
//! - [`session`]: one connection over any async stream: [`handshake`]
//!   (option haggling), then [`transmission`] (many requests in flight,
//!   talking to the export's `BlockDevice`); no files, no listeners.
//! - `server`: the glue: listeners, max-connections, the handshake
//!   deadline, export names and client counting for `block-export-del`.

pub mod codec;
#[doc(hidden)]
pub mod fuzz;
pub mod handshake;
mod server;
pub mod session;
pub mod transmission;

pub use server::{
    ClientGuard, NbdExport, NbdExportOptions, NbdListen, NbdServer, NbdServerOptions,
};
pub use session::ExportLookup;
