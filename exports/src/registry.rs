//! The export registry: `block-export-add`/`-del`, `query-block-exports`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use qmp_types::{BlockExportInfo, BlockExportRemoveMode, BlockExportType};
use storage_block::graph::NodeUser;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// An error for the QMP reply (always `GenericError` in QEMU's export
/// layer): `desc` is QEMU's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportError {
    pub desc: String,
}

impl ExportError {
    pub fn new(desc: impl Into<String>) -> Self {
        ExportError { desc: desc.into() }
    }
}

impl std::fmt::Display for ExportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.desc)
    }
}

impl std::error::Error for ExportError {}

/// One live export of some protocol.
pub trait Export: Send + Sync {
    /// Clients currently using the export.
    fn clients(&self) -> usize;
    /// Stops accepting clients; `hard` also disconnects the current ones.
    fn shutdown(&self, hard: bool);
    /// Resolves when no client is left.
    fn drained(self: Arc<Self>) -> BoxFuture<()>;
    /// The exported node changed size (`block_resize`): tell the clients
    /// that can be told (a vhost-user front end). Most protocols cannot.
    fn resized(self: Arc<Self>) -> BoxFuture<()> {
        Box::pin(async {})
    }
}

struct Entry {
    id: String,
    ty: BlockExportType,
    node_name: String,
    /// The name clients use (NBD export name), if the protocol has one.
    name: Option<String>,
    shutting_down: bool,
    export: Arc<dyn Export>,
    /// Holds the node (and its permissions) while the export lives.
    _user: NodeUser,
}

/// Runs when an export is gone: its id and protocol-level name.
type DeletedHook = Box<dyn Fn(&str, Option<&str>) + Send + Sync>;

/// All live exports, newest first (QEMU's list order).
pub struct ExportRegistry {
    entries: Mutex<Vec<Entry>>,
    on_deleted: DeletedHook,
}

impl ExportRegistry {
    /// `on_deleted` runs when an export is gone (emit BLOCK_EXPORT_DELETED).
    pub fn new(on_deleted: impl Fn(&str, Option<&str>) + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(ExportRegistry {
            entries: Mutex::new(Vec::new()),
            on_deleted: Box::new(on_deleted),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fails when `id` is taken (checked before anything is created).
    pub fn check_id(&self, id: &str) -> Result<(), ExportError> {
        if self.lock().iter().any(|e| e.id == id) {
            return Err(ExportError::new(format!(
                "Block export id '{id}' is already in use"
            )));
        }
        Ok(())
    }

    pub fn contains(&self, id: &str) -> bool {
        self.lock().iter().any(|e| e.id == id)
    }

    /// Registers a created export.
    pub fn add(
        &self,
        id: &str,
        ty: BlockExportType,
        node_name: &str,
        name: Option<String>,
        export: Arc<dyn Export>,
        user: NodeUser,
    ) -> Result<(), ExportError> {
        let mut entries = self.lock();
        if entries.iter().any(|e| e.id == id) {
            return Err(ExportError::new(format!(
                "Block export id '{id}' is already in use"
            )));
        }
        entries.insert(
            0,
            Entry {
                id: id.to_string(),
                ty,
                node_name: node_name.to_string(),
                name,
                shutting_down: false,
                export,
                _user: user,
            },
        );
        Ok(())
    }

    /// `block-export-del`: with clients connected, `safe` refuses and
    /// `hard` disconnects them. The export disappears (and the hook runs)
    /// when its last client is gone, which is at once when there is none.
    pub fn remove(
        self: &Arc<Self>,
        id: &str,
        mode: BlockExportRemoveMode,
    ) -> Result<(), ExportError> {
        let export = {
            let mut entries = self.lock();
            let Some(e) = entries.iter_mut().find(|e| e.id == id) else {
                return Err(ExportError::new(format!("Export '{id}' is not found")));
            };
            if e.shutting_down {
                return Err(ExportError::new(format!(
                    "Export '{id}' is already shutting down"
                )));
            }
            if mode == BlockExportRemoveMode::Safe && e.export.clients() > 0 {
                return Err(ExportError::new(format!("export '{id}' still in use")));
            }
            e.shutting_down = true;
            e.export.clone()
        };
        export.shutdown(mode == BlockExportRemoveMode::Hard);
        if export.clients() == 0 {
            self.finish(id);
        } else {
            let this = self.clone();
            let id = id.to_string();
            let drained = export.clone().drained();
            tokio::spawn(async move {
                drained.await;
                this.finish(&id);
            });
        }
        Ok(())
    }

    fn finish(&self, id: &str) {
        let removed = {
            let mut entries = self.lock();
            let pos = entries.iter().position(|e| e.id == id);
            pos.map(|p| entries.remove(p))
        };
        if let Some(e) = removed {
            (self.on_deleted)(id, e.name.as_deref());
        }
    }

    /// Ids of the exports of one type (e.g. every NBD export on
    /// `nbd-server-stop`).
    pub fn ids_of(&self, ty: BlockExportType) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|e| e.ty == ty)
            .map(|e| e.id.clone())
            .collect()
    }

    /// `query-block-exports`.
    pub fn query(&self) -> Vec<BlockExportInfo> {
        self.lock()
            .iter()
            .map(|e| BlockExportInfo {
                id: e.id.clone(),
                r#type: e.ty,
                node_name: e.node_name.clone(),
                shutting_down: e.shutting_down,
            })
            .collect()
    }

    /// Daemon shutdown: every export goes, clients are disconnected.
    /// `block_resize` of `node_name` happened: its exports tell their
    /// clients.
    pub async fn node_resized(&self, node_name: &str) {
        let exports: Vec<Arc<dyn Export>> = self
            .lock()
            .iter()
            .filter(|e| e.node_name == node_name)
            .map(|e| e.export.clone())
            .collect();
        for x in exports {
            x.resized().await;
        }
    }

    pub async fn shutdown_all(self: &Arc<Self>) {
        let ids: Vec<String> = self
            .lock()
            .iter()
            .filter(|e| !e.shutting_down)
            .map(|e| e.id.clone())
            .collect();
        let mut waits = Vec::new();
        for id in ids {
            let export = self
                .lock()
                .iter()
                .find(|e| e.id == id)
                .map(|e| e.export.clone());
            if let Some(x) = export {
                let _ = self.remove(&id, BlockExportRemoveMode::Hard);
                waits.push(x.clone().drained());
            }
        }
        for w in waits {
            w.await;
        }
    }
}

// The fake export below registers as an NBD one.
#[cfg(all(test, feature = "nbd"))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use storage_block::{BlockGraph, BlockdevOptions, DriverOptions, NullOptions, Perms};
    use tokio::sync::Notify;

    /// An export whose clients the test controls.
    #[derive(Default)]
    struct Fake {
        clients: AtomicUsize,
        hard: AtomicUsize,
        changed: Notify,
        /// Clients leave only when the test says, not at a hard shutdown.
        slow: bool,
    }

    impl Export for Fake {
        fn clients(&self) -> usize {
            self.clients.load(Ordering::SeqCst)
        }
        fn shutdown(&self, hard: bool) {
            if hard {
                self.hard.fetch_add(1, Ordering::SeqCst);
                if self.slow {
                    return;
                }
                self.clients.store(0, Ordering::SeqCst);
                self.changed.notify_waiters();
            }
        }
        fn drained(self: Arc<Self>) -> BoxFuture<()> {
            Box::pin(async move {
                loop {
                    let n = self.changed.notified();
                    if self.clients() == 0 {
                        return;
                    }
                    n.await;
                }
            })
        }
    }

    fn setup() -> (
        Arc<BlockGraph>,
        Arc<ExportRegistry>,
        Arc<Mutex<Vec<String>>>,
    ) {
        let graph = Arc::new(BlockGraph::new());
        let opts = BlockdevOptions::new(DriverOptions::NullCo(NullOptions::default())).named("n0");
        graph.add(&opts).expect("add node");
        let deleted = Arc::new(Mutex::new(Vec::new()));
        let d = deleted.clone();
        let reg = ExportRegistry::new(move |id, _| {
            d.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(id.to_string())
        });
        (graph, reg, deleted)
    }

    fn add(graph: &Arc<BlockGraph>, reg: &ExportRegistry, id: &str, clients: usize) -> Arc<Fake> {
        let fake = Arc::new(Fake::default());
        fake.clients.store(clients, Ordering::SeqCst);
        let user = graph.attach("n0", Perms::export(false)).expect("attach");
        reg.add(id, BlockExportType::Nbd, "n0", None, fake.clone(), user)
            .expect("add export");
        fake
    }

    #[tokio::test]
    async fn ids_are_unique_and_listed_newest_first() {
        let (graph, reg, _) = setup();
        add(&graph, &reg, "a", 0);
        add(&graph, &reg, "b", 0);
        assert_eq!(
            reg.check_id("a"),
            Err(ExportError::new("Block export id 'a' is already in use"))
        );
        let ids: Vec<String> = reg.query().into_iter().map(|e| e.id).collect();
        assert_eq!(ids, ["b", "a"]);
    }

    #[tokio::test]
    async fn unused_export_goes_at_once_and_frees_its_node() {
        let (graph, reg, deleted) = setup();
        add(&graph, &reg, "e", 0);
        assert!(graph.remove("n0").is_err(), "node in use by the export");
        reg.remove("e", BlockExportRemoveMode::Safe)
            .expect("remove");
        assert_eq!(*deleted.lock().unwrap_or_else(|e| e.into_inner()), ["e"]);
        assert!(reg.query().is_empty());
        assert_eq!(
            reg.remove("e", BlockExportRemoveMode::Safe),
            Err(ExportError::new("Export 'e' is not found"))
        );
        graph.remove("n0").expect("node free again");
    }

    #[tokio::test]
    async fn safe_refuses_while_connected_hard_disconnects() {
        let (graph, reg, deleted) = setup();
        let fake = add(&graph, &reg, "e", 2);
        assert_eq!(
            reg.remove("e", BlockExportRemoveMode::Safe),
            Err(ExportError::new("export 'e' still in use"))
        );
        assert!(deleted.lock().unwrap_or_else(|e| e.into_inner()).is_empty());
        reg.remove("e", BlockExportRemoveMode::Hard)
            .expect("hard remove");
        assert_eq!(fake.hard.load(Ordering::SeqCst), 1);
        assert_eq!(*deleted.lock().unwrap_or_else(|e| e.into_inner()), ["e"]);
    }

    #[tokio::test]
    async fn deletion_waits_for_the_last_client() {
        let graph = Arc::new(BlockGraph::new());
        let opts = BlockdevOptions::new(DriverOptions::NullCo(NullOptions::default())).named("n0");
        graph.add(&opts).expect("add node");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let reg = ExportRegistry::new(move |id, _| {
            let _ = tx.send(id.to_string());
        });
        // Like a real export, a hard shutdown only asks the client to go:
        // its connection ends later (a request in flight finishes first).
        let fake = Arc::new(Fake {
            slow: true,
            ..Fake::default()
        });
        fake.clients.store(1, Ordering::SeqCst);
        let user = graph.attach("n0", Perms::export(false)).expect("attach");
        reg.add("e", BlockExportType::Nbd, "n0", None, fake.clone(), user)
            .expect("add export");

        reg.remove("e", BlockExportRemoveMode::Hard)
            .expect("hard remove");
        assert_eq!(fake.hard.load(Ordering::SeqCst), 1);
        // The client is still there: the export is shutting down, listed,
        // still holds its node, and is not reported deleted.
        tokio::task::yield_now().await;
        assert!(rx.try_recv().is_err(), "deleted while a client holds it");
        assert!(reg.query()[0].shutting_down);
        assert!(graph.remove("n0").is_err(), "node released too early");
        assert_eq!(
            reg.remove("e", BlockExportRemoveMode::Hard),
            Err(ExportError::new("Export 'e' is already shutting down"))
        );

        // The client goes: the deletion completes by itself.
        fake.clients.store(0, Ordering::SeqCst);
        fake.changed.notify_waiters();
        let id = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .expect("deletion never completed")
            .expect("hook dropped");
        assert_eq!(id, "e");
        assert!(reg.query().is_empty());
        graph.remove("n0").expect("node free again");
    }
}
