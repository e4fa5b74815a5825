//! NBD server state and glue: `nbd-server-start`/`-stop`, export names,
//! the accept loop that hands connections to [`session`](super::session)
//! (max-connections, handshake timeout) and client counting per export.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use storage_block::BlockDevice;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::export::{NbdExport, NbdExportOptions};
use super::session::{self, ExportLookup};
use crate::registry::ExportError;
use crate::sockets;

/// Where and how the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NbdListen {
    Unix(PathBuf),
    /// `ipv4`/`ipv6` as in QEMU's InetSocketAddress: `Some(false)` leaves
    /// that family out.
    Tcp {
        host: String,
        port: String,
        ipv4: Option<bool>,
        ipv6: Option<bool>,
    },
    /// An inherited listening socket (`addr.type=fd,addr.str=N`).
    Fd(i32),
}

/// `nbd-server-start` / `--nbd-server` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NbdServerOptions {
    pub listen: NbdListen,
    /// 0 = unlimited; QEMU's default is 100.
    pub max_connections: u32,
    /// Clients that do not finish the handshake in time are dropped.
    pub handshake_max_seconds: u32,
}

struct Running {
    stop: watch::Sender<bool>,
    opts: NbdServerOptions,
    /// In creation order (`NBD_OPT_LIST` order).
    exports: Vec<Arc<NbdExport>>,
    socket_path: Option<PathBuf>,
}

/// The daemon's one NBD server.
pub struct NbdServer {
    running: Mutex<Option<Running>>,
    /// True while connections wait in the backlog (see [`NbdServer::hold`]).
    held: watch::Sender<bool>,
}

impl NbdServer {
    pub fn new() -> Arc<Self> {
        Arc::new(NbdServer {
            running: Mutex::new(None),
            held: watch::Sender::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_running(&self) -> bool {
        self.lock().is_some()
    }

    /// Holds new connections in the listen backlog until [`release`]
    /// (while the daemon applies its command line: qsd's main loop only
    /// runs after that, so no client sees a server without its exports).
    ///
    /// [`release`]: NbdServer::release
    pub fn hold(&self) {
        self.held.send_replace(true);
    }

    pub fn release(&self) {
        self.held.send_replace(false);
    }

    /// Binds the listener and starts accepting. Must run in the runtime.
    pub fn start(self: &Arc<Self>, opts: NbdServerOptions) -> Result<(), ExportError> {
        let mut running = self.lock();
        if running.is_some() {
            return Err(ExportError::new("NBD server already running"));
        }
        let mut socket_path = None;
        let listeners = match &opts.listen {
            NbdListen::Unix(path) => {
                let l = sockets::unix_listener(path).map_err(ExportError::new)?;
                socket_path = Some(path.clone());
                vec![Listener::Unix(l)]
            }
            NbdListen::Tcp {
                host,
                port,
                ipv4,
                ipv6,
            } => sockets::tcp_listeners(host, port, *ipv4, *ipv6)
                .map_err(ExportError::new)?
                .into_iter()
                .map(Listener::Tcp)
                .collect(),
            // Like QEMU, the server takes the descriptor over (it is
            // closed when the server stops).
            NbdListen::Fd(fd) => match sockets::inherit_listener(*fd).map_err(ExportError::new)? {
                sockets::Inherited::Unix(l) => vec![Listener::Unix(l)],
                sockets::Inherited::Tcp(l) => vec![Listener::Tcp(l)],
            },
        };
        let (stop, stop_rx) = watch::channel(false);
        let acc = Accepting::new(self.clone(), &opts);
        tokio::spawn(accept_loop(acc, listeners, stop_rx, self.held.subscribe()));
        *running = Some(Running {
            stop,
            opts,
            exports: Vec::new(),
            socket_path,
        });
        Ok(())
    }

    /// Stops listening; returns the names of the exports that were on it.
    pub fn stop(&self) -> Result<Vec<String>, ExportError> {
        let Some(r) = self.lock().take() else {
            return Err(ExportError::new("NBD server not running"));
        };
        let _ = r.stop.send(true);
        if let Some(p) = r.socket_path {
            let _ = std::fs::remove_file(p);
        }
        Ok(r.exports.iter().map(|e| e.opts.name.clone()).collect())
    }

    /// Creates an export on the running server.
    pub fn add_export(
        &self,
        opts: NbdExportOptions,
        device: Arc<dyn BlockDevice>,
    ) -> Result<Arc<NbdExport>, ExportError> {
        let mut running = self.lock();
        check_export(running.as_ref(), &opts)?;
        let Some(r) = running.as_mut() else {
            return Err(ExportError::new("NBD server not running"));
        };
        let export = NbdExport::new(opts, device, r.opts.max_connections != 1);
        r.exports.push(export.clone());
        Ok(export)
    }

    /// What QEMU checks before it creates an NBD export, in its order:
    /// the server runs, name and description fit (4096 bytes, the NBD
    /// protocol's limit), the name is free.
    pub fn check_export(&self, opts: &NbdExportOptions) -> Result<(), ExportError> {
        check_export(self.lock().as_ref(), opts)
    }

    /// Forgets an export's name (after the registry removed it).
    pub fn remove_export(&self, name: &str) {
        if let Some(r) = self.lock().as_mut() {
            // The one that shut down, not a new export of the same name.
            let pos = r
                .exports
                .iter()
                .position(|e| e.opts.name == name && e.is_closing())
                .or_else(|| r.exports.iter().position(|e| e.opts.name == name));
            if let Some(p) = pos {
                r.exports.remove(p);
            }
        }
    }
}

fn check_export(running: Option<&Running>, opts: &NbdExportOptions) -> Result<(), ExportError> {
    let Some(r) = running else {
        return Err(ExportError::new("NBD server not running"));
    };
    if opts.name.len() > 4096 {
        return Err(ExportError::new(format!(
            "export name '{}' too long",
            opts.name
        )));
    }
    if let Some(d) = opts.description.as_ref().filter(|d| d.len() > 4096) {
        return Err(ExportError::new(format!("description '{d}' too long")));
    }
    if r.exports
        .iter()
        .any(|e| e.opts.name == opts.name && !e.is_closing())
    {
        return Err(ExportError::new(format!(
            "NBD server already has export named '{}'",
            opts.name
        )));
    }
    Ok(())
}

impl ExportLookup for NbdServer {
    fn exports(&self) -> Vec<Arc<NbdExport>> {
        match self.lock().as_ref() {
            Some(r) => r
                .exports
                .iter()
                .filter(|e| !e.is_closing())
                .cloned()
                .collect(),
            None => Vec::new(),
        }
    }
}

/// What the accept loop hands connections: the connection limit (one
/// for the whole server, whatever the number of addresses it listens
/// on, as in QEMU) and the handshake deadline.
struct Accepting {
    server: Arc<NbdServer>,
    /// `None` when max-connections is 0 (unlimited).
    slots: Option<Arc<Semaphore>>,
    handshake_limit: Option<Duration>,
}

impl Accepting {
    fn new(server: Arc<NbdServer>, opts: &NbdServerOptions) -> Self {
        Accepting {
            server,
            slots: (opts.max_connections > 0)
                .then(|| Arc::new(Semaphore::new(opts.max_connections as usize))),
            handshake_limit: (opts.handshake_max_seconds > 0)
                .then(|| Duration::from_secs(u64::from(opts.handshake_max_seconds))),
        }
    }

    /// Waits for a free connection slot. Like QEMU, a full server stops
    /// accepting (clients wait in the backlog) instead of refusing.
    async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        match &self.slots {
            Some(s) => s.clone().acquire_owned().await.ok(),
            None => None,
        }
    }

    /// Serves one connection until it ends or the server stops (which
    /// also cuts clients still in the handshake, as QEMU does).
    fn spawn<S>(&self, stream: S, slot: Option<OwnedSemaphorePermit>, stop: &watch::Receiver<bool>)
    where
        S: AsyncRead + AsyncWrite + std::os::fd::AsRawFd + Send + 'static,
    {
        let fd = Some(stream.as_raw_fd());
        let lookup: Arc<dyn ExportLookup> = self.server.clone();
        let limit = self.handshake_limit;
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            // Errors end this connection only; nobody else is told.
            let _ = session::serve_socket(stream, fd, lookup, limit, stopped).await;
            drop(slot);
        });
    }
}

/// One of the server's listening sockets.
enum Listener {
    Unix(tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener),
}

enum Conn {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

/// The next connection on any of `ls`; the first listener asked turns
/// with `turn`, so a busy address cannot starve the others.
fn poll_accept(
    ls: &[Listener],
    turn: usize,
    cx: &mut std::task::Context<'_>,
) -> std::task::Poll<std::io::Result<Conn>> {
    use std::task::Poll;
    for i in 0..ls.len() {
        let polled = match &ls[(turn + i) % ls.len()] {
            Listener::Unix(l) => l.poll_accept(cx).map_ok(|(s, _)| Conn::Unix(s)),
            Listener::Tcp(l) => l.poll_accept(cx).map_ok(|(s, _)| Conn::Tcp(s)),
        };
        if polled.is_ready() {
            return polled;
        }
    }
    Poll::Pending
}

/// Accepts on every listener of the server, one connection slot per
/// client, until the server stops.
async fn accept_loop(
    acc: Accepting,
    listeners: Vec<Listener>,
    mut stop: watch::Receiver<bool>,
    mut held: watch::Receiver<bool>,
) {
    tokio::select! {
        _ = stop.wait_for(|s| *s) => return,
        _ = held.wait_for(|h| !*h) => {}
    }
    let mut turn = 0usize;
    loop {
        let slot = tokio::select! {
            _ = stop.changed() => break,
            s = acc.slot() => s,
        };
        turn = turn.wrapping_add(1);
        tokio::select! {
            _ = stop.changed() => break,
            c = std::future::poll_fn(|cx| poll_accept(&listeners, turn, cx)) => match c {
                Ok(Conn::Unix(stream)) => acc.spawn(stream, slot, &stop),
                Ok(Conn::Tcp(stream)) => {
                    // Replies go out whole; Nagle would only delay them.
                    let _ = stream.set_nodelay(true);
                    acc.spawn(stream, slot, &stop)
                }
                // EMFILE and friends: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            },
        }
    }
}
