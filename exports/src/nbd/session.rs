//! One NBD connection: the handshake ([`handshake`](super::handshake)),
//! then the transmission phase ([`transmission`](super::transmission)),
//! over any tokio stream. The session talks to the export's
//! [`BlockDevice`](storage_block::BlockDevice); it never opens files or
//! listens.
//!
//! Behaviour follows QEMU 10.0's NBD server: the same options, reply
//! order, error replies and messages, request checks and errno mapping.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, BufReader};

use super::codec::{Mode, ProtocolError};
use super::handshake::Handshake;
use super::server::{ClientGuard, NbdExport};
use super::transmission::transmission;

/// Requests in flight per connection (QEMU's `MAX_NBD_REQUESTS`).
pub const MAX_REQUESTS: usize = 16;
/// Meta context ids, as QEMU numbers them.
pub(super) const META_BASE_ALLOCATION: u32 = 0;
pub(super) const META_ALLOCATION_DEPTH: u32 = 1;

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

/// Serves one connection: handshake (within `handshake_limit`), then
/// transmission until the client disconnects or the export goes away.
pub async fn serve<S>(
    stream: S,
    lookup: Arc<dyn ExportLookup>,
    handshake_limit: Option<Duration>,
) -> Result<(), SessionError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    serve_socket(
        stream,
        None,
        lookup,
        handshake_limit,
        std::future::pending(),
    )
    .await
}

/// [`serve`] on a socket whose descriptor the transmission phase may
/// poll briefly before it sleeps (see `transmission::Poller`), until
/// `stop` resolves: then the client is cut off at once, after the block
/// I/O it started has finished.
pub async fn serve_socket<S>(
    stream: S,
    fd: Option<std::os::fd::RawFd>,
    lookup: Arc<dyn ExportLookup>,
    handshake_limit: Option<Duration>,
    stop: impl Future<Output = ()>,
) -> Result<(), SessionError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (r, w) = tokio::io::split(stream);
    let mut reader = BufReader::with_capacity(64 * 1024, r);
    let mut writer = w;
    let mut stop = std::pin::pin!(stop);
    let hs = Handshake::new(&mut reader, &mut writer, lookup.as_ref());
    let limit = handshake_limit.unwrap_or(Duration::MAX);
    let negotiated = tokio::select! {
        r = tokio::time::timeout(limit, hs.run()) => {
            r.map_err(|_| SessionError::HandshakeTimeout)??
        }
        // A stopping server cuts clients in the handshake too (as QEMU).
        () = &mut stop => return Ok(()),
    };
    match negotiated {
        Some(n) => transmission(reader, writer, n, fd, stop).await,
        // NBD_OPT_ABORT
        None => Ok(()),
    }
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
