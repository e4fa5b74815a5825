//! qapi-gen: a front end and code generator for QAPI, the schema language
//! of QEMU's QMP protocol.
//!
//! ```no_run
//! let schema = qapi_gen::Schema::load("qapi-schema.json", &Default::default())?;
//! print!("{}", qapi_gen::dump::dump(&schema));
//! # Ok::<(), qapi_gen::SchemaError>(())
//! ```

pub mod builder;
pub mod diagnostic;
pub mod doc;
pub mod dump;
pub mod expr;
pub mod introspect;
pub mod model;
pub mod names;
pub mod parser;
pub mod rust;
pub mod schema;
pub mod source;
pub mod value;

pub use builder::{BuildError, Config};
pub use diagnostic::{Diagnostic, SchemaError};
pub use model::*;
pub use schema::{CheckOptions, Schema};
