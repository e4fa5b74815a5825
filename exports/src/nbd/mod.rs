//! The NBD export: the server (listener, limits, export names) and its
//! exports. The protocol itself (handshake and transmission: wire codec and
//! session state) comes with the NBD issue; until then a connection is
//! accepted, counted as a client and closed.

mod server;

pub use server::{NbdExport, NbdExportOptions, NbdListen, NbdServer, NbdServerOptions};
