//! A live NBD export: its options, the transmission flags every client
//! gets, and the count of connected clients that `block-export-del`
//! waits for.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use storage_block::BlockDevice;
use tokio::sync::{Notify, watch};

use super::codec::{
    FLAG_CAN_MULTI_CONN, FLAG_HAS_FLAGS, FLAG_READ_ONLY, FLAG_SEND_CACHE, FLAG_SEND_FAST_ZERO,
    FLAG_SEND_FLUSH, FLAG_SEND_FUA, FLAG_SEND_TRIM, FLAG_SEND_WRITE_ZEROES,
};
use crate::registry::{BoxFuture, Export};

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
