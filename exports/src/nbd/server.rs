//! NBD server state: `nbd-server-start`/`-stop`, export names.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use storage_block::BlockDevice;
use tokio::sync::{Notify, watch};

use crate::registry::{BoxFuture, Export, ExportError};

/// Where and how the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NbdListen {
    Unix(PathBuf),
    Tcp { host: String, port: String },
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
    clients: AtomicUsize,
    closing: AtomicBool,
    changed: Notify,
}

impl Export for NbdExport {
    fn clients(&self) -> usize {
        self.clients.load(Ordering::SeqCst)
    }

    fn shutdown(&self, _hard: bool) {
        self.closing.store(true, Ordering::SeqCst);
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
    exports: HashMap<String, Arc<NbdExport>>,
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
                        os_reason(&e)
                    ))
                })?;
                tokio::spawn(accept_unix(self.clone(), l, stop_rx));
                Some(path.clone())
            }
            NbdListen::Tcp { host, port } => {
                let host = host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string();
                let addr = std::net::ToSocketAddrs::to_socket_addrs(&(
                    host.as_str(),
                    port.parse::<u16>().unwrap_or(0),
                ))
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| {
                    ExportError::new(format!("address resolution failed for {host}:{port}"))
                })?;
                let std = std::net::TcpListener::bind(addr).map_err(|e| {
                    ExportError::new(format!("Failed to bind socket: {}", os_reason(&e)))
                })?;
                std.set_nonblocking(true)
                    .map_err(|e| ExportError::new(e.to_string()))?;
                let l = tokio::net::TcpListener::from_std(std)
                    .map_err(|e| ExportError::new(e.to_string()))?;
                tokio::spawn(accept_tcp(self.clone(), l, stop_rx));
                None
            }
        };
        *running = Some(Running {
            stop,
            opts,
            exports: HashMap::new(),
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
        Ok(r.exports.into_keys().collect())
    }

    /// Creates an export on the running server.
    pub fn add_export(
        &self,
        opts: NbdExportOptions,
        device: Arc<dyn BlockDevice>,
    ) -> Result<Arc<NbdExport>, ExportError> {
        let mut running = self.lock();
        let Some(r) = running.as_mut() else {
            return Err(ExportError::new("NBD server not running"));
        };
        if opts.name.len() > 4096 {
            return Err(ExportError::new(format!(
                "export name '{}' too long",
                opts.name
            )));
        }
        if r.exports.contains_key(&opts.name) {
            return Err(ExportError::new(format!(
                "NBD server already has export named '{}'",
                opts.name
            )));
        }
        let export = Arc::new(NbdExport {
            opts: opts.clone(),
            device,
            clients: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
            changed: Notify::new(),
        });
        r.exports.insert(opts.name, export.clone());
        Ok(export)
    }

    /// Forgets an export's name (after the registry removed it).
    pub fn remove_export(&self, name: &str) {
        if let Some(r) = self.lock().as_mut() {
            r.exports.remove(name);
        }
    }

    pub fn max_connections(&self) -> Option<u32> {
        self.lock().as_ref().map(|r| r.opts.max_connections)
    }
}

fn os_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    s.split(" (os error").next().unwrap_or(&s).to_string()
}

async fn accept_unix(
    _server: Arc<NbdServer>,
    l: tokio::net::UnixListener,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            // The protocol arrives with the NBD issue: connections close.
            c = l.accept() => drop(c),
        }
    }
}

async fn accept_tcp(
    _server: Arc<NbdServer>,
    l: tokio::net::TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            c = l.accept() => drop(c),
        }
    }
}
