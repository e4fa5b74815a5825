//! qapi-gen's output for the test schemas, the daemon's schema and QEMU
//! 10.0's storage daemon schema, compiled; the tests in `tests/` check how
//! it behaves. See `build.rs` for which conditions are on.
//!
//! The generated modules need no `#[allow]`: generated code is meant to
//! compile without warnings, clippy's included, and this crate checks that.

/// One module per valid test schema (`qapi-gen/tests/cases/ok/*.json`),
/// named after the file (`-` becomes `_`).
pub mod ok {
    include!(concat!(env!("OUT_DIR"), "/ok_cases.rs"));
}

/// The daemon's schema (`schema/storage-daemon.json`).
pub mod daemon {
    include!(concat!(env!("OUT_DIR"), "/daemon.rs"));
}

/// QEMU 10.0's storage daemon schema, configured like the Debian build
/// whose `query-qmp-schema` answer is in `../shared`.
#[cfg(have_shared)]
pub mod qemu10 {
    include!(concat!(env!("OUT_DIR"), "/qemu10.rs"));
}
