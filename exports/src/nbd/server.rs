//! NBD server state and glue: `nbd-server-start`/`-stop`, export names,
//! the accept loop that hands connections to [`session`](super::session)
//! (max-connections, handshake timeout) and client counting per export.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use storage_block::BlockDevice;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};

use super::codec::{
    FLAG_CAN_MULTI_CONN, FLAG_HAS_FLAGS, FLAG_READ_ONLY, FLAG_SEND_CACHE, FLAG_SEND_FAST_ZERO,
    FLAG_SEND_FLUSH, FLAG_SEND_FUA, FLAG_SEND_TRIM, FLAG_SEND_WRITE_ZEROES,
};
use super::session::{self, ExportLookup};
use crate::registry::{BoxFuture, Export, ExportError};
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

/// One NBD export's options (`block-export-add type=nbd`, `nbd-server-add`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NbdExportOptions {
    pub name: String,
    pub description: Option<String>,
    pub writable: bool,
    pub allocation_depth: bool,
}

/// A live NBD export.
pub struct NbdExport {
    pub opts: NbdExportOptions,
    pub device: Arc<dyn BlockDevice>,
    /// Transmission flags every client gets (QEMU's `exp->nbdflags`).
    flags: u16,
    clients: AtomicUsize,
    /// Turns true on shutdown: new clients are refused, connected ones
    /// are disconnected.
    closing: watch::Sender<bool>,
    changed: Notify,
}

impl NbdExport {
    /// `multi_conn` is false when the server allows one connection only.
    pub fn new(
        opts: NbdExportOptions,
        device: Arc<dyn BlockDevice>,
        multi_conn: bool,
    ) -> Arc<Self> {
        // The flags QEMU's nbd_export_create() sets.
        let mut flags = FLAG_HAS_FLAGS | FLAG_SEND_FLUSH | FLAG_SEND_FUA | FLAG_SEND_CACHE;
        if multi_conn {
            flags |= FLAG_CAN_MULTI_CONN;
        }
        if opts.writable {
            flags |= FLAG_SEND_TRIM | FLAG_SEND_WRITE_ZEROES | FLAG_SEND_FAST_ZERO;
        } else {
            flags |= FLAG_READ_ONLY;
        }
        Arc::new(NbdExport {
            opts,
            device,
            flags,
            clients: AtomicUsize::new(0),
            closing: watch::Sender::new(false),
            changed: Notify::new(),
        })
    }

    /// The transmission flags before per-client additions (`SEND_DF`).
    pub fn flags(&self) -> u16 {
        self.flags
    }

    pub fn is_closing(&self) -> bool {
        *self.closing.borrow()
    }

    /// Counts a client that selected this export, until the guard drops;
    /// `None` once the export is shutting down.
    pub fn attach(self: &Arc<Self>) -> Option<ClientGuard> {
        self.clients.fetch_add(1, Ordering::SeqCst);
        let guard = ClientGuard(self.clone());
        // Checked after counting, so shutdown() either sees the client
        // or the client sees the flag.
        if self.is_closing() {
            return None;
        }
        Some(guard)
    }

    /// Resolves when the export shuts down (the client must go).
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.closing.subscribe();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }
}

/// A connected client of an [`NbdExport`].
pub struct ClientGuard(Arc<NbdExport>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

impl Export for NbdExport {
    fn clients(&self) -> usize {
        self.clients.load(Ordering::SeqCst)
    }

    fn shutdown(&self, _hard: bool) {
        // QEMU closes the clients in either mode: safe mode only gets here
        // when there are none.
        self.closing.send_replace(true);
        self.changed.notify_waiters();
    }

    fn drained(self: Arc<Self>) -> BoxFuture<()> {
        Box::pin(async move {
            loop {
                let changed = self.changed.notified();
                if self.clients() == 0 {
                    return;
                }
                changed.await;
            }
        })
    }
}

struct Running {
    stop: watch::Sender<bool>,
    opts: NbdServerOptions,
    /// In creation order (`NBD_OPT_LIST` order).
    exports: Vec<Arc<NbdExport>>,
    socket_path: Option<PathBuf>,
}

/// The daemon's one NBD server.
#[derive(Default)]
pub struct NbdServer {
    running: Mutex<Option<Running>>,
}

impl NbdServer {
    pub fn new() -> Arc<Self> {
        Arc::new(NbdServer::default())
    }

    fn lock(&self) -> MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_running(&self) -> bool {
        self.lock().is_some()
    }

    /// Binds the listener and starts accepting. Must run in the runtime.
    pub fn start(self: &Arc<Self>, opts: NbdServerOptions) -> Result<(), ExportError> {
        let mut running = self.lock();
        if running.is_some() {
            return Err(ExportError::new("NBD server already running"));
        }
        let (stop, stop_rx) = watch::channel(false);
        let socket_path = match &opts.listen {
            NbdListen::Unix(path) => {
                let l = tokio::net::UnixListener::bind(path).map_err(|e| {
                    ExportError::new(format!(
                        "Failed to bind socket to {}: {}",
                        path.display(),
                        storage_block::strerror(&e)
                    ))
                })?;
                tokio::spawn(accept_unix(self.clone(), l, opts.clone(), stop_rx));
                Some(path.clone())
            }
            NbdListen::Tcp {
                host,
                port,
                ipv4,
                ipv6,
            } => {
                for l in
                    sockets::tcp_listeners(host, port, *ipv4, *ipv6).map_err(ExportError::new)?
                {
                    tokio::spawn(accept_tcp(self.clone(), l, opts.clone(), stop_rx.clone()));
                }
                None
            }
            NbdListen::Fd(fd) => {
                self.listen_fd(*fd, &opts, stop_rx)?;
                None
            }
        };
        *running = Some(Running {
            stop,
            opts,
            exports: Vec::new(),
            socket_path,
        });
        Ok(())
    }

    /// Serves on an inherited listening socket. Like QEMU, the server
    /// takes the descriptor over (it is closed when the server stops).
    fn listen_fd(
        self: &Arc<Self>,
        fd: i32,
        opts: &NbdServerOptions,
        stop_rx: watch::Receiver<bool>,
    ) -> Result<(), ExportError> {
        match sockets::inherit_listener(fd).map_err(ExportError::new)? {
            sockets::Inherited::Unix(l) => {
                tokio::spawn(accept_unix(self.clone(), l, opts.clone(), stop_rx));
            }
            sockets::Inherited::Tcp(l) => {
                tokio::spawn(accept_tcp(self.clone(), l, opts.clone(), stop_rx));
            }
        }
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

    pub fn max_connections(&self) -> Option<u32> {
        self.lock().as_ref().map(|r| r.opts.max_connections)
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

/// What every accept loop shares: the connection limit and the handshake
/// deadline of the server it belongs to.
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

macro_rules! accept_loop {
    ($name:ident, $listener:ty, $prepare:expr) => {
        async fn $name(
            server: Arc<NbdServer>,
            l: $listener,
            opts: NbdServerOptions,
            mut stop: watch::Receiver<bool>,
        ) {
            let acc = Accepting::new(server, &opts);
            loop {
                let slot = tokio::select! {
                    _ = stop.changed() => break,
                    s = acc.slot() => s,
                };
                tokio::select! {
                    _ = stop.changed() => break,
                    c = l.accept() => match c {
                        Ok((stream, _)) => {
                            $prepare(&stream);
                            acc.spawn(stream, slot, &stop)
                        }
                        // EMFILE and friends: back off instead of spinning.
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    },
                }
            }
        }
    };
}

accept_loop!(
    accept_unix,
    tokio::net::UnixListener,
    |_: &tokio::net::UnixStream| {}
);
// Replies go out whole; Nagle would only delay them.
accept_loop!(
    accept_tcp,
    tokio::net::TcpListener,
    |s: &tokio::net::TcpStream| {
        let _ = s.set_nodelay(true);
    }
);
