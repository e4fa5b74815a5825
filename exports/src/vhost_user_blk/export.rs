//! The glue: one vhost-user-blk export = one listening socket, at most
//! one front end at a time, and the registry's [`Export`] interface.
//!
//! As in qsd, a second front end waits in the listen backlog until the
//! first one goes, then gets served (and sees the first one's data). Each
//! front end gets a fresh vhost-user-backend daemon (features, memory
//! table and rings start from scratch), fed through the relay.
//!
//! `block-export-del`: as qsd, safe mode refuses only while requests are
//! in flight (an idle front end does not keep the export in use), and
//! either mode cuts the front end off; the export is gone (and
//! `BLOCK_EXPORT_DELETED` sent) once its session has ended.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use storage_block::BlockDevice;
use tokio::sync::{Notify, watch};
use vhost::vhost_user::Listener;
use vhost_user_backend::VhostUserDaemon;
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};

use super::backend::{BlkBackend, Inflight};
use super::options::{VhostUserBlkOptions, VhostUserListen};
use super::relay::{self, BackendChannel};
use crate::registry::{BoxFuture, Export, ExportError};
use crate::sockets::{self, Inherited};
use crate::virtio_blk::{BlkConfig, BlkOptions, Engine};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A connection to vhost's listener that only we can make: the listener
/// is bound in a fresh directory of mode 0700, we connect, and the socket
/// file and its directory are gone again before the library accepts (the
/// connection waits in the backlog). Nothing is left on disk, even when
/// the daemon is killed later.
fn private_pair() -> Result<(Listener, UnixStream), String> {
    let template = std::env::temp_dir().join("storage-daemon-vhost-XXXXXX");
    let mut bytes = std::ffi::CString::new(template.into_os_string().into_encoded_bytes())
        .map_err(|_| "temporary directory name has a NUL byte".to_string())?
        .into_bytes_with_nul();
    // SAFETY: mkdtemp rewrites the XXXXXX of a NUL-terminated buffer.
    if unsafe { libc::mkdtemp(bytes.as_mut_ptr().cast()) }.is_null() {
        return Err(format!(
            "Failed to create a private directory: {}",
            storage_block::strerror(&std::io::Error::last_os_error())
        ));
    }
    bytes.pop();
    let dir = PathBuf::from(std::ffi::OsString::from(
        String::from_utf8_lossy(&bytes).into_owned(),
    ));
    let path = dir.join("backend.sock");
    let made = Listener::new(&path, true)
        .map_err(|e| format!("Failed to create the back-end socket: {e}"))
        .and_then(|l| {
            UnixStream::connect(&path)
                .map(|c| (l, c))
                .map_err(|e| format!("Failed to connect to the back-end socket: {e}"))
        });
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_dir(&dir);
    made
}

struct Shared {
    device: Arc<dyn BlockDevice>,
    engine: Arc<Engine>,
    config: Arc<Mutex<BlkConfig>>,
    opts: BlkOptions,
    inflight: Arc<Inflight>,
    runtime: tokio::runtime::Handle,
    channel: Mutex<BackendChannel>,
    /// The attached front end (a clone of its socket), to cut it off.
    front: Mutex<Option<UnixStream>>,
    session_alive: AtomicBool,
    shutting_down: AtomicBool,
    stop: watch::Sender<bool>,
    /// The unix socket path we created, removed when the export goes.
    unlink: Mutex<Option<PathBuf>>,
    changed: Arc<Notify>,
}

/// A live vhost-user-blk export.
pub struct VhostUserBlkExport {
    shared: Arc<Shared>,
}

impl VhostUserBlkExport {
    /// Checks the options (qsd's order and texts), listens, and serves
    /// front ends from then on. Must run in the runtime.
    pub fn create(
        opts: VhostUserBlkOptions,
        device: Arc<dyn BlockDevice>,
    ) -> Result<Arc<VhostUserBlkExport>, ExportError> {
        let checked = opts.check().map_err(ExportError::new)?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| ExportError::new(format!("no runtime: {e}")))?;
        let blk = BlkOptions {
            logical_block_size: checked.logical_block_size,
            num_queues: checked.num_queues,
            writable: opts.writable,
            writethrough: opts.writethrough,
        };
        let (listener, unlink) = match &opts.listen {
            VhostUserListen::Unix(path) => (
                sockets::unix_listener(path).map_err(ExportError::new)?,
                Some(path.clone()),
            ),
            VhostUserListen::Fd(fd) => match sockets::inherit_listener(*fd) {
                // qsd removes an inherited socket's path too when the
                // export goes.
                Ok(Inherited::Unix(l)) => {
                    let path = l
                        .local_addr()
                        .ok()
                        .and_then(|a| a.as_pathname().map(PathBuf::from));
                    (l, path)
                }
                Ok(Inherited::Tcp(_)) => {
                    return Err(ExportError::new(format!(
                        "File descriptor '{fd}' is not a unix socket"
                    )));
                }
                Err(e) => return Err(ExportError::new(e.to_string())),
            },
        };
        let changed = Arc::new(Notify::new());
        let on_idle = {
            let changed = changed.clone();
            Arc::new(move || changed.notify_waiters())
        };
        let config = BlkConfig::new(&blk, device.size());
        let shared = Arc::new(Shared {
            engine: Arc::new(Engine::new(device.clone(), &blk)),
            device,
            config: Arc::new(Mutex::new(config)),
            opts: blk,
            inflight: Arc::new(Inflight::new(usize::from(blk.num_queues), on_idle)),
            runtime,
            channel: Mutex::new(BackendChannel::default()),
            front: Mutex::new(None),
            session_alive: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
            stop: watch::channel(false).0,
            unlink: Mutex::new(unlink),
            changed,
        });
        shared.runtime.spawn(accept_loop(shared.clone(), listener));
        Ok(Arc::new(VhostUserBlkExport { shared }))
    }
}

/// Serves front ends one at a time until the export stops.
async fn accept_loop(shared: Arc<Shared>, listener: tokio::net::UnixListener) {
    let mut stop = shared.stop.subscribe();
    let mut warned = false;
    loop {
        let conn = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            c = listener.accept() => c,
        };
        let front = match conn.and_then(|(s, _)| s.into_std()) {
            Ok(s) => s,
            Err(e) => {
                if !std::mem::replace(&mut warned, true) {
                    eprintln!("vhost-user-blk export: cannot accept a connection: {e}");
                }
                // Out of descriptors, say: wait for the export to stop
                // rather than spin (the listener stays readable).
                if accept_backoff(&mut stop).await {
                    break;
                }
                continue;
            }
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sh = shared.clone();
        shared.session_alive.store(true, Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name("vhost-user-blk".into())
            .spawn(move || {
                sh.run_session(front);
                let _ = tx.send(());
            });
        match spawned {
            Ok(_) => {
                let _ = rx.await;
            }
            Err(e) => eprintln!("vhost-user-blk export: cannot start a session: {e}"),
        }
        shared.session_alive.store(false, Ordering::SeqCst);
        shared.changed.notify_waiters();
    }
}

/// Pauses after a failed accept; true when the export stopped meanwhile.
async fn accept_backoff(stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = stop.wait_for(|s| *s) => true,
        _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => false,
    }
}

/// Why a session ended other than by a clean close.
#[derive(Debug)]
enum SessionError {
    Setup(String),
    Relay(relay::RelayError),
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Setup(e) => write!(f, "cannot serve a front end: {e}"),
            SessionError::Relay(e) => write!(f, "front end connection ended: {e}"),
        }
    }
}

impl Shared {
    fn run_session(self: &Arc<Self>, front: UnixStream) {
        if let Err(e) = self.session(front) {
            eprintln!("vhost-user-blk export: {e}");
        }
        *lock(&self.front) = None;
        *lock(&self.channel) = BackendChannel::default();
    }

    fn session(self: &Arc<Self>, front: UnixStream) -> Result<(), SessionError> {
        let setup = |e: &dyn std::fmt::Display| SessionError::Setup(e.to_string());
        front.set_nonblocking(false).map_err(|e| setup(&e))?;
        *lock(&self.front) = Some(front.try_clone().map_err(|e| setup(&e))?);
        // A shutdown that came between accept and here cuts it now.
        if *self.stop.borrow() {
            let _ = front.shutdown(std::net::Shutdown::Both);
        }
        let mem = GuestMemoryAtomic::new(GuestMemoryMmap::new());
        let backend = Arc::new(BlkBackend::new(
            self.engine.clone(),
            self.device.clone(),
            self.config.clone(),
            self.opts,
            mem.clone(),
            self.inflight.clone(),
            self.runtime.clone(),
        ));
        let mut daemon =
            VhostUserDaemon::new("vhost-user-blk".into(), backend, mem).map_err(|e| setup(&e))?;
        let (mut listener, back) = private_pair().map_err(|e| setup(&e))?;
        daemon.start(&mut listener).map_err(|e| setup(&e))?;
        drop(listener);
        let relayed = relay::relay(&front, &back, &self.channel);
        let _ = back.shutdown(std::net::Shutdown::Both);
        let _ = front.shutdown(std::net::Shutdown::Both);
        // Errors here are the front end's going away (or breaking the
        // protocol), which ends the session either way.
        let _ = daemon.wait();
        for h in daemon.get_epoll_handlers() {
            h.send_exit_event();
        }
        // Requests still running write into this front end's memory,
        // which their guards keep mapped; the next front end starts
        // with none in flight.
        self.inflight.wait_all();
        drop(daemon);
        relayed.map_err(SessionError::Relay)
    }

    fn clients(&self) -> usize {
        let ending =
            self.shutting_down.load(Ordering::SeqCst) && self.session_alive.load(Ordering::SeqCst);
        self.inflight.total() + usize::from(ending)
    }

    /// Tells the attached front end that the capacity changed.
    fn notify_resize(&self) -> Result<(), relay::RelayError> {
        let fd = match lock(&self.channel).fd.as_ref() {
            Some(fd) => fd.try_clone()?,
            None => return Ok(()),
        };
        relay::send_config_change(&fd)
    }
}

impl Export for VhostUserBlkExport {
    fn clients(&self) -> usize {
        self.shared.clients()
    }

    fn shutdown(&self, _hard: bool) {
        let s = &self.shared;
        s.shutting_down.store(true, Ordering::SeqCst);
        let _ = s.stop.send(true);
        // qsd removes the socket and drops the front end in either mode.
        if let Some(p) = lock(&s.unlink).take() {
            let _ = std::fs::remove_file(p);
        }
        if let Some(f) = lock(&s.front).as_ref() {
            let _ = f.shutdown(std::net::Shutdown::Both);
        }
        s.changed.notify_waiters();
    }

    fn drained(self: Arc<Self>) -> BoxFuture<()> {
        Box::pin(async move {
            loop {
                let n = self.shared.changed.notified();
                if self.shared.clients() == 0 {
                    return;
                }
                n.await;
            }
        })
    }

    /// The config space reads the node's size on every GET_CONFIG; an
    /// attached front end that gave us a backend channel is told to read
    /// it again.
    fn resized(self: Arc<Self>) -> BoxFuture<()> {
        Box::pin(async move {
            let sh = self.shared.clone();
            let sent = tokio::task::spawn_blocking(move || sh.notify_resize()).await;
            if let Ok(Err(e)) = sent {
                eprintln!("vhost-user-blk export: cannot notify the front end of a resize: {e}");
            }
        })
    }
}

impl Drop for VhostUserBlkExport {
    fn drop(&mut self) {
        // Dropped without a shutdown (an export that failed to register).
        if !self.shared.shutting_down.load(Ordering::SeqCst) {
            self.shutdown(true);
        }
    }
}
