//! The QMP monitor: wire codec, session state machine, server glue.

pub mod codec;
pub mod server;
pub mod session;
