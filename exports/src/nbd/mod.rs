//! The NBD export, split as every protocol here is:
//!
//! - [`codec`]: the wire format (handshake, options, requests, replies);
//!   bytes in, bytes out, no sockets.
//! - `export`: a live export (flags, client count); `state`: what a
//!   connection negotiated, shared by the two phases below.
//! - [`session`]: one connection over any async stream: [`handshake`]
//!   (option haggling), then [`transmission`] (many requests in flight,
//!   talking to the export's `BlockDevice`); no files, no listeners.
//! - `server`: the glue: listeners, max-connections, the handshake
//!   deadline, export names and client counting for `block-export-del`.

//!
//! The arrows go one way: codec <- export <- state <- handshake and
//! transmission <- session <- server.

pub mod codec;
mod export;
#[doc(hidden)]
pub mod fuzz;
pub mod handshake;
mod server;
pub mod session;
mod state;
pub mod transmission;

pub use export::{ClientGuard, NbdExport, NbdExportOptions};
pub use server::{NbdListen, NbdServer, NbdServerOptions};
pub use session::ExportLookup;
