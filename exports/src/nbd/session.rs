//! One NBD connection: the handshake ([`handshake`](super::handshake)),
//! then the transmission phase ([`transmission`](super::transmission)),
//! over any tokio stream. The session talks to the export's
//! [`BlockDevice`](storage_block::BlockDevice); it never opens files or
//! listens.
//!
//! Behaviour follows QEMU 10.0's NBD server: the same options, reply
//! order, error replies and messages, request checks and errno mapping.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, BufReader};

use super::handshake::Handshake;
pub use super::state::{ExportLookup, MAX_REQUESTS, SessionError};
use super::transmission::transmission;

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
