//! Proc-macro front end over the `qapi-gen` library.
//!
//! The Rust backend lands with the code generator; until then this crate only
//! links the front end so the workspace layout is in place.

pub use qapi_gen as _front_end;
