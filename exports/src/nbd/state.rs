//! What a connection has negotiated and what every phase of it shares:
//! the selected export and meta contexts, the session's error type, the
//! export lookup. A leaf below the handshake and transmission phases.

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::codec::{Mode, ProtocolError};
use super::export::{ClientGuard, NbdExport};

/// Requests in flight per connection (QEMU's `MAX_NBD_REQUESTS`).
pub const MAX_REQUESTS: usize = 16;
/// Meta context ids, as QEMU numbers them.
pub const META_BASE_ALLOCATION: u32 = 0;
pub const META_ALLOCATION_DEPTH: u32 = 1;

/// Where the session finds exports by name.
pub trait ExportLookup: Send + Sync {
    /// Exports clients may select, in creation order.
    fn exports(&self) -> Vec<Arc<NbdExport>>;

    fn find(&self, name: &str) -> Option<Arc<NbdExport>> {
        self.exports().into_iter().find(|e| e.opts.name == name)
    }
}

/// Why a connection ended before the client said goodbye.
#[derive(Debug)]
pub enum SessionError {
    Io(io::Error),
    /// The client broke the protocol (QEMU drops it too).
    Protocol(String),
    /// The handshake took longer than `handshake-max-seconds`.
    HandshakeTimeout,
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Io(e) => write!(f, "{e}"),
            SessionError::Protocol(m) => f.write_str(m),
            SessionError::HandshakeTimeout => f.write_str("handshake timed out"),
        }
    }
}

impl std::error::Error for SessionError {}

impl From<io::Error> for SessionError {
    fn from(e: io::Error) -> Self {
        SessionError::Io(e)
    }
}

impl From<ProtocolError> for SessionError {
    fn from(e: ProtocolError) -> Self {
        SessionError::Protocol(e.0)
    }
}

pub(super) fn protocol(msg: impl Into<String>) -> SessionError {
    SessionError::Protocol(msg.into())
}

/// The meta contexts a client selected with `NBD_OPT_SET_META_CONTEXT`.
#[derive(Clone, Default)]
pub(super) struct Contexts {
    pub export: Option<Arc<NbdExport>>,
    pub base_allocation: bool,
    pub allocation_depth: bool,
}

impl Contexts {
    pub fn count(&self) -> usize {
        usize::from(self.base_allocation) + usize::from(self.allocation_depth)
    }
}

/// What the handshake hands to the transmission phase.
pub(super) struct Negotiated {
    pub export: Arc<NbdExport>,
    /// Counts the client against the export while the connection lives.
    pub _client: ClientGuard,
    pub mode: Mode,
    pub contexts: Contexts,
}

pub(super) async fn drop_bytes<R: AsyncRead + Unpin>(r: &mut R, n: u64) -> io::Result<()> {
    let copied = tokio::io::copy(&mut r.take(n), &mut tokio::io::sink()).await?;
    if copied < n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}
