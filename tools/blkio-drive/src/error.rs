//! What can go wrong in blkio-drive, as one error type.

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad command line.
    #[error("{0}")]
    Usage(String),
    /// A libblkio call failed (connecting, a property, a memory region...).
    #[error("{what}: {source} (errno {errno})", errno = source.errno().raw_os_error())]
    Blkio {
        what: String,
        #[source]
        source: blkio::Error,
    },
    /// Reading the base image or writing the model image.
    #[error("{path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The device did something the sequence cannot carry on after.
    #[error("{0}")]
    Device(String),
}

impl Error {
    pub fn blkio(what: impl fmt::Display) -> impl FnOnce(blkio::Error) -> Error {
        let what = what.to_string();
        move |source| Error::Blkio { what, source }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
