//! The daemon's state and its QMP command handlers (the generated
//! `Commands` trait), shared by every monitor.

use std::sync::{Arc, Mutex, OnceLock};

use qapi_rt::{CommandInfo, QmpError};
use qmp_types as q;
use serde_json::{Map, Value};
use storage_block::{BlockGraph, Perms};
#[cfg(feature = "nbd")]
use storage_exports::nbd::{NbdExportOptions, NbdServer, NbdServerOptions};
use storage_exports::{ExportError, ExportRegistry};
use tokio::sync::watch;

use crate::convert;
use crate::qmp::server::{Backend, BoxFuture, Events};

/// The QEMU release whose QMP interface our schema matches.
pub const QEMU_VERSION: (i64, i64, i64) = (10, 0, 2);

/// What `query-version` and the greeting name as the package.
pub fn package() -> String {
    format!("storage-daemon {}", env!("CARGO_PKG_VERSION"))
}

pub struct Daemon {
    pub graph: Arc<BlockGraph>,
    pub exports: Arc<ExportRegistry>,
    #[cfg(feature = "nbd")]
    pub nbd: Arc<NbdServer>,
    pub events: Events,
    /// Turns true when the daemon should shut down.
    pub shutdown: watch::Sender<bool>,
    /// Ids of the `--object iothread` objects (exports name them).
    pub iothreads: Mutex<Vec<String>>,
    commands: Vec<CommandInfo>,
}

#[cfg(feature = "nbd")]
fn start_nbd_server(
    nbd: &Arc<NbdServer>,
    addr: &q::SocketAddress,
    max_connections: Option<u32>,
    handshake: Option<u32>,
    tls_creds: Option<&str>,
) -> Result<(), QmpError> {
    if nbd.is_running() {
        return Err(generic("NBD server already running"));
    }
    let listen = convert::nbd_listen(addr).map_err(generic)?;
    nbd.start(NbdServerOptions {
        listen,
        max_connections: max_connections.unwrap_or(100),
        handshake_max_seconds: handshake.unwrap_or(10),
    })
    .map_err(generic)?;
    if let Some(id) = tls_creds {
        // There are no TLS credential objects.
        let _ = nbd.stop();
        return Err(generic(format!("No TLS credentials with id '{id}'")));
    }
    Ok(())
}

fn generic(e: impl ToString) -> QmpError {
    QmpError::generic(e.to_string())
}

impl Daemon {
    pub fn new() -> Arc<Daemon> {
        let events = Events::new();
        #[cfg(feature = "nbd")]
        let nbd = NbdServer::new();
        let ev = events.clone();
        #[cfg(feature = "nbd")]
        let nbd_for_hook = Arc::downgrade(&nbd);
        let exports = ExportRegistry::new(move |id, _name| {
            #[cfg(feature = "nbd")]
            if let (Some(n), Some(name)) = (nbd_for_hook.upgrade(), _name) {
                n.remove_export(name);
            }
            ev.emit_event(&q::BlockExportDeletedEvent(q::BlockExportDeletedData {
                id: id.to_string(),
            }));
        });
        let (shutdown, _) = watch::channel(false);
        Arc::new(Daemon {
            graph: Arc::new(BlockGraph::new()),
            exports,
            #[cfg(feature = "nbd")]
            nbd,
            events,
            shutdown,
            iothreads: Mutex::new(Vec::new()),
            commands: q::commands(),
        })
    }

    pub fn version(&self) -> q::VersionInfo {
        let (major, minor, micro) = QEMU_VERSION;
        q::VersionInfo {
            qemu: q::VersionTriple {
                major,
                minor,
                micro,
            },
            package: package(),
        }
    }

    pub fn request_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Stops the NBD server and ends every export (`quit`, signals).
    pub async fn end_exports(&self) {
        #[cfg(feature = "nbd")]
        let _ = self.nbd.stop();
        self.exports.shutdown_all().await;
    }

    /// `blockdev-add` and `--blockdev`.
    pub fn blockdev_add_sync(&self, arg: &q::BlockdevOptions) -> Result<(), QmpError> {
        let opts = convert::blockdev(arg).map_err(generic)?;
        self.graph
            .add(&opts)
            .map(|_| ())
            .map_err(|e| generic(e.desc()))
    }

    /// `nbd-server-start` and `--nbd-server`: as in QEMU, the socket is
    /// bound before TLS options are looked at. Blocks while a host name
    /// resolves: monitors call [`Daemon::nbd_start_async`].
    #[cfg(feature = "nbd")]
    pub fn nbd_start(
        &self,
        addr: &q::SocketAddress,
        max_connections: Option<u32>,
        handshake: Option<u32>,
        tls_creds: Option<&str>,
    ) -> Result<(), QmpError> {
        start_nbd_server(&self.nbd, addr, max_connections, handshake, tls_creds)
    }

    /// [`Daemon::nbd_start`] on the blocking pool: getaddrinfo() may wait
    /// seconds for a DNS answer, and must not hold a worker thread that
    /// other monitors and exports need meanwhile.
    #[cfg(feature = "nbd")]
    pub async fn nbd_start_async(
        &self,
        addr: q::SocketAddress,
        max_connections: Option<u32>,
        handshake: Option<u32>,
        tls_creds: Option<String>,
    ) -> Result<(), QmpError> {
        let nbd = self.nbd.clone();
        tokio::task::spawn_blocking(move || {
            start_nbd_server(
                &nbd,
                &addr,
                max_connections,
                handshake,
                tls_creds.as_deref(),
            )
        })
        .await
        .map_err(|e| generic(format!("NBD server start failed: {e}")))?
    }

    /// `block-export-add` and `--export`, with QEMU's checks in QEMU's
    /// order (`blk_exp_add()`, then the driver's create).
    pub fn export_add(&self, arg: &q::BlockExportOptions) -> Result<(), QmpError> {
        self.export_add_via(arg, false)
    }

    /// [`Daemon::export_add`]; `monitor` says a QMP monitor asked, which
    /// holds no file descriptors to listen on.
    fn export_add_via(&self, arg: &q::BlockExportOptions, monitor: bool) -> Result<(), QmpError> {
        let _ = monitor;
        if !storage_block::id_wellformed(&arg.id) {
            return Err(generic("Invalid block export id"));
        }
        self.exports.check_id(&arg.id).map_err(generic)?;
        if !has_driver(&arg.branch) {
            return Err(generic("No driver found for the requested export type"));
        }
        let node = self.graph.get(&arg.node_name).map_err(|_| {
            generic(format!(
                "Cannot find device='' nor node-name='{}'",
                arg.node_name
            ))
        })?;
        let writable = arg.writable.unwrap_or(false);
        if writable && node.info().read_only {
            return Err(generic("Cannot export read-only node as writable"));
        }
        if let Some(id) = &arg.iothread {
            let known = self
                .iothreads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(id);
            if !known {
                return Err(generic(format!("iothread \"{id}\" not found")));
            }
        }
        #[allow(unused_mut)]
        let mut perms = Perms::export(writable);
        // FUSE exports that may change the size hold the resize permission.
        #[cfg(feature = "fuse")]
        if let q::BlockExportOptionsBranch::Fuse(f) = &arg.branch
            && (writable || f.growable.unwrap_or(false))
        {
            perms.perm |= Perms::RESIZE;
        }
        let user = self
            .graph
            .attach(&arg.node_name, perms)
            .map_err(|e| generic(e.desc()))?;
        match &arg.branch {
            #[cfg(feature = "nbd")]
            q::BlockExportOptionsBranch::Nbd(n) => self.nbd_export_add(arg, n, writable, user),
            #[cfg(feature = "fuse")]
            q::BlockExportOptionsBranch::Fuse(f) => {
                use storage_exports::fuse::{AllowOther, FuseExport, FuseExportOptions};
                let opts = FuseExportOptions {
                    mountpoint: f.mountpoint.clone(),
                    writable,
                    growable: f.growable.unwrap_or(false),
                    allow_other: match f.allow_other {
                        Some(q::FuseExportAllowOther::Off) => AllowOther::Off,
                        Some(q::FuseExportAllowOther::On) => AllowOther::On,
                        Some(q::FuseExportAllowOther::Auto) | None => AllowOther::Auto,
                    },
                };
                let export = FuseExport::create(opts, user.device().clone()).map_err(generic)?;
                self.exports
                    .add(
                        &arg.id,
                        q::BlockExportType::Fuse,
                        &arg.node_name,
                        None,
                        export,
                        user,
                    )
                    .map_err(generic)
            }
            #[cfg(feature = "vhost-user-blk")]
            q::BlockExportOptionsBranch::VhostUserBlk(v) => {
                self.vhost_user_blk_export_add(arg, v, writable, monitor, user)
            }
            // has_driver() turned every other type away.
            #[allow(unreachable_patterns)]
            _ => {
                drop(user);
                Err(generic("No driver found for the requested export type"))
            }
        }
    }

    /// The vhost-user-blk part of `export_add`, after the generic checks.
    #[cfg(feature = "vhost-user-blk")]
    fn vhost_user_blk_export_add(
        &self,
        arg: &q::BlockExportOptions,
        v: &q::BlockExportOptionsVhostUserBlk,
        writable: bool,
        monitor: bool,
        user: storage_block::graph::NodeUser,
    ) -> Result<(), QmpError> {
        use storage_exports::vhost_user_blk::{
            VhostUserBlkExport, VhostUserBlkOptions, VhostUserListen,
        };
        let mut opts = VhostUserBlkOptions {
            // Replaced below; the options are checked before the address.
            listen: VhostUserListen::Fd(-1),
            logical_block_size: v.logical_block_size,
            num_queues: v.num_queues,
            writable,
            writethrough: arg.writethrough.unwrap_or(false),
        };
        opts.check().map_err(generic)?;
        opts.listen = match &v.addr.branch {
            q::SocketAddressBranch::Unix(u) => VhostUserListen::Unix(u.path.clone().into()),
            // What qsd answers: its monitors hold no file descriptors.
            q::SocketAddressBranch::Fd(_) if monitor => {
                return Err(generic("only QEMU supports file descriptor passing"));
            }
            q::SocketAddressBranch::Fd(f) => {
                VhostUserListen::Fd(crate::cli::parse_fd(&f.str).map_err(generic)?)
            }
            _ => {
                return Err(generic(
                    "Only socket address types 'unix' and 'fd' are supported",
                ));
            }
        };
        let export = VhostUserBlkExport::create(opts, user.device().clone()).map_err(generic)?;
        self.exports
            .add(
                &arg.id,
                q::BlockExportType::VhostUserBlk,
                &arg.node_name,
                None,
                export,
                user,
            )
            .map_err(generic)
    }

    /// The NBD part of `export_add`, after the generic checks.
    #[cfg(feature = "nbd")]
    fn nbd_export_add(
        &self,
        arg: &q::BlockExportOptions,
        n: &q::BlockExportOptionsNbd,
        writable: bool,
        user: storage_block::graph::NodeUser,
    ) -> Result<(), QmpError> {
        let name = n.name.clone().unwrap_or_else(|| arg.node_name.clone());
        let opts = NbdExportOptions {
            name: name.clone(),
            description: n.description.clone(),
            writable,
            allocation_depth: n.allocation_depth.unwrap_or(false),
        };
        self.nbd.check_export(&opts).map_err(generic)?;
        // There are no dirty bitmaps (no command creates one).
        if let Some(b) = n.bitmaps.as_ref().and_then(|b| b.first()) {
            return Err(generic(match b {
                q::BlockDirtyBitmapOrStr::Local(name) => {
                    format!("Bitmap '{name}' is not found")
                }
                q::BlockDirtyBitmapOrStr::External(b) => match self.graph.get(&b.node) {
                    Ok(_) => format!("Dirty bitmap '{}' not found", b.name),
                    Err(_) => format!("Node '{}' not found", b.node),
                },
            }));
        }
        let export = self
            .nbd
            .add_export(opts, user.device().clone())
            .map_err(generic)?;
        self.exports
            .add(
                &arg.id,
                q::BlockExportType::Nbd,
                &arg.node_name,
                Some(name),
                export,
                user,
            )
            .map_err(generic)
    }
}

/// Whether this build has a backend for the export type: QEMU's
/// `blk_exp_find_driver()`. VDUSE exports are in the schema (when their
/// feature is on) but not implemented yet.
fn has_driver(branch: &q::BlockExportOptionsBranch) -> bool {
    match branch {
        #[cfg(feature = "nbd")]
        q::BlockExportOptionsBranch::Nbd(_) => true,
        #[cfg(feature = "fuse")]
        q::BlockExportOptionsBranch::Fuse(_) => true,
        #[cfg(feature = "vhost-user-blk")]
        q::BlockExportOptionsBranch::VhostUserBlk(_) => true,
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

impl Backend for Daemon {
    fn greeting(&self) -> Value {
        let version = serde_json::to_value(self.version()).unwrap_or(Value::Null);
        serde_json::json!({ "QMP": { "version": version, "capabilities": crate::qmp::session::CAPABILITIES } })
    }

    fn command(&self, name: &str) -> Option<&CommandInfo> {
        self.commands.iter().find(|c| c.name == name)
    }

    fn execute(
        &self,
        name: String,
        args: Map<String, Value>,
    ) -> BoxFuture<'_, Result<Value, QmpError>> {
        Box::pin(async move { q::dispatch(self, &name, args).await })
    }

    fn reply_sent(&self, name: &str) {
        // QEMU answers `quit` before it goes.
        if name == "quit" {
            self.request_shutdown();
        }
    }
}

fn export_err(e: ExportError) -> QmpError {
    generic(e)
}

impl q::Commands for Daemon {
    async fn qmp_capabilities(
        &self,
        _enable: Option<Vec<q::QMPCapability>>,
    ) -> Result<(), QmpError> {
        // Negotiation is per session and handled by the session itself.
        Err(QmpError::new(
            qapi_rt::ErrorClass::CommandNotFound,
            "Capabilities negotiation is already complete, command ignored",
        ))
    }

    async fn query_version(&self) -> Result<q::VersionInfo, QmpError> {
        Ok(self.version())
    }

    async fn query_commands(&self) -> Result<Vec<q::CommandInfo>, QmpError> {
        // QEMU lists commands newest-registered first.
        Ok(self
            .commands
            .iter()
            .rev()
            .map(|c| q::CommandInfo {
                name: c.name.to_string(),
            })
            .collect())
    }

    async fn quit(&self) -> Result<(), QmpError> {
        // qsd closes its exports before it answers: the events come first.
        self.end_exports().await;
        Ok(())
    }

    async fn query_qmp_schema(&self) -> Result<Vec<q::SchemaInfo>, QmpError> {
        static SCHEMA: OnceLock<Vec<q::SchemaInfo>> = OnceLock::new();
        if let Some(s) = SCHEMA.get() {
            return Ok(s.clone());
        }
        let parsed: Vec<q::SchemaInfo> =
            serde_json::from_value(q::qmp_schema().clone()).map_err(generic)?;
        Ok(SCHEMA.get_or_init(|| parsed).clone())
    }

    async fn blockdev_add(&self, arg: q::BlockdevOptions) -> Result<(), QmpError> {
        self.blockdev_add_sync(&arg)
    }

    async fn blockdev_del(&self, node_name: String) -> Result<(), QmpError> {
        self.graph.remove(&node_name).map_err(|e| generic(e.desc()))
    }

    async fn query_named_block_nodes(
        &self,
        _flat: Option<bool>,
    ) -> Result<Vec<q::BlockDeviceInfo>, QmpError> {
        let info = serde_json::to_value(self.graph.query()).map_err(generic)?;
        serde_json::from_value(info).map_err(generic)
    }

    async fn block_resize(
        &self,
        device: Option<String>,
        node_name: Option<String>,
        size: i64,
    ) -> Result<(), QmpError> {
        // There are no named block backends in the storage daemon.
        if device.is_some() || node_name.is_none() {
            return Err(generic(format!(
                "Cannot find device='{}' nor node-name='{}'",
                device.unwrap_or_default(),
                node_name.unwrap_or_default()
            )));
        }
        let name = node_name.unwrap_or_default();
        self.graph
            .resize(&name, size)
            .await
            .map_err(|e| generic(e.desc()))?;
        self.exports.node_resized(&name).await;
        Ok(())
    }

    #[cfg(feature = "nbd")]
    async fn nbd_server_start(
        &self,
        handshake_max_seconds: Option<u32>,
        tls_creds: Option<String>,
        _tls_authz: Option<String>,
        max_connections: Option<u32>,
        addr: q::SocketAddressLegacy,
    ) -> Result<(), QmpError> {
        let addr = convert::socket_address(addr);
        if matches!(addr.branch, q::SocketAddressBranch::Fd(_)) && !self.nbd.is_running() {
            // What qsd answers: its monitors hold no file descriptors
            // (the command line's `addr.type=fd` is another matter).
            return Err(generic("only QEMU supports file descriptor passing"));
        }
        self.nbd_start_async(addr, max_connections, handshake_max_seconds, tls_creds)
            .await
    }

    #[cfg(feature = "nbd")]
    async fn nbd_server_add(&self, arg: q::NbdServerAddOptions) -> Result<(), QmpError> {
        // The device is looked up first, as a device or a node name.
        let node = self.graph.get(&arg.device).map_err(|_| {
            generic(format!(
                "Cannot find device='{0}' nor node-name='{0}'",
                arg.device
            ))
        })?;
        let name = arg.name.clone().unwrap_or_else(|| arg.device.clone());
        // nbd-server-add quietly exports a read-only node read-only.
        let writable = if node.info().read_only {
            Some(false)
        } else {
            arg.writable
        };
        let export = q::BlockExportOptions {
            id: name.clone(),
            fixed_iothread: None,
            iothread: None,
            node_name: arg.device.clone(),
            writable,
            writethrough: None,
            allow_inactive: None,
            branch: q::BlockExportOptionsBranch::Nbd(q::BlockExportOptionsNbd {
                name: Some(name),
                description: arg.description,
                bitmaps: arg.bitmap.map(|b| vec![q::BlockDirtyBitmapOrStr::Local(b)]),
                allocation_depth: None,
            }),
        };
        self.export_add(&export)
    }

    #[cfg(feature = "nbd")]
    async fn nbd_server_remove(
        &self,
        name: String,
        mode: Option<q::BlockExportRemoveMode>,
    ) -> Result<(), QmpError> {
        self.exports
            .remove(&name, mode.unwrap_or(q::BlockExportRemoveMode::Safe))
            .map_err(export_err)
    }

    #[cfg(feature = "nbd")]
    async fn nbd_server_stop(&self) -> Result<(), QmpError> {
        if !self.nbd.is_running() {
            return Err(generic("NBD server not running"));
        }
        for id in self.exports.ids_of(q::BlockExportType::Nbd) {
            let _ = self.exports.remove(&id, q::BlockExportRemoveMode::Hard);
        }
        self.nbd.stop().map(|_| ()).map_err(export_err)
    }

    async fn block_export_add(&self, arg: q::BlockExportOptions) -> Result<(), QmpError> {
        self.export_add_via(&arg, true)
    }

    async fn block_export_del(
        &self,
        id: String,
        mode: Option<q::BlockExportRemoveMode>,
    ) -> Result<(), QmpError> {
        self.exports
            .remove(&id, mode.unwrap_or(q::BlockExportRemoveMode::Safe))
            .map_err(export_err)
    }

    async fn query_block_exports(&self) -> Result<Vec<q::BlockExportInfo>, QmpError> {
        Ok(self.exports.query())
    }
}
