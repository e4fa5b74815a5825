//! Startup and shutdown: options take effect in order; any error names its
//! option, undoes everything (sockets, pid file, locks) and exits 1.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use qmp_types as q;

use crate::daemon::Daemon;
use crate::lifecycle::{self, Pidfile};
use crate::qmp::server::{self, ListenAddress, Listener};

/// One command-line option, already parsed and converted.
#[derive(Debug, Clone)]
pub enum Startup {
    Blockdev(Box<q::BlockdevOptions>),
    Export(Box<q::BlockExportOptions>),
    #[cfg(feature = "nbd")]
    NbdServer(Box<q::NbdServerOptions>),
    Chardev {
        id: String,
        listen: ListenAddress,
    },
    Monitor {
        chardev: String,
        pretty: bool,
    },
    /// `--object`: only `iothread` objects exist (they have no effect yet:
    /// exports run on the shared runtime); ids must be unique.
    Object {
        qom_type: String,
        id: String,
    },
    /// Help asked for inside an option: print it and exit with `status`
    /// (after the options before it took effect, as qsd does).
    PrintHelp {
        text: String,
        status: i32,
    },
}

/// An option that failed: `--blockdev ARGS: message`.
#[derive(Debug)]
pub struct StartupError {
    /// The option as typed, or `None` for errors of no single option.
    pub option: Option<String>,
    pub message: String,
}

impl std::fmt::Display for StartupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.option {
            Some(o) => write!(f, "{o}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Runs the daemon until `quit` or a termination signal; returns the exit
/// code. `options` yields each option (with the text it came from) when it
/// is reached, so one takes effect before the next is even parsed, as in
/// qsd. The pid file is written once all of them took effect.
pub fn run(
    daemonize: bool,
    pidfile: Option<PathBuf>,
    options: impl Iterator<Item = Result<(String, Startup), StartupError>>,
    prog: &str,
) -> i32 {
    let mut daemon_child = None;
    if daemonize {
        // Forking must happen before any thread exists.
        match lifecycle::daemonize() {
            Ok(c) => daemon_child = Some(c),
            Err(e) => {
                eprintln!("{prog}: --daemonize: {e}");
                return 1;
            }
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{prog}: cannot start the runtime: {e}");
            return 1;
        }
    };
    let code = rt.block_on(async move {
        let daemon = Daemon::new();
        // Before anything is reported as started.
        let signals = lifecycle::termination_signal();
        let mut started = Started::default();
        let code = match start(&daemon, options, pidfile, &mut started).await {
            Ok(Some(status)) => status,
            Ok(None) => {
                if let Some(c) = daemon_child.as_mut() {
                    c.ready();
                }
                let mut stop = daemon.shutdown.subscribe();
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => {}
                    _ = signals => {}
                }
                0
            }
            Err(e) => {
                eprintln!("{prog}: {e}");
                if let Some(c) = daemon_child.as_mut() {
                    c.failed();
                }
                1
            }
        };
        shutdown(&daemon, started).await;
        code
    });
    // Connection tasks may still be parked on sockets; do not wait for them.
    rt.shutdown_background();
    code
}

/// What startup created, to undo on shutdown.
#[derive(Default)]
struct Started {
    pidfile: Option<Pidfile>,
    /// Unix socket files of monitors, removed on exit.
    sockets: Vec<PathBuf>,
}

/// Applies the options; `Ok(Some(status))` asks to exit at once.
async fn start(
    daemon: &Arc<Daemon>,
    options: impl Iterator<Item = Result<(String, Startup), StartupError>>,
    pidfile: Option<PathBuf>,
    started: &mut Started,
) -> Result<Option<i32>, StartupError> {
    let mut chardevs: HashMap<String, Option<Listener>> = HashMap::new();
    let mut objects: Vec<String> = Vec::new();
    // Monitors start serving once every option has taken effect, as in
    // qsd, whose main loop only runs then: a client never sees an export
    // of the command line mounted but not yet listed.
    let mut monitors = Vec::new();
    // The same for NBD clients: they wait in the backlog meanwhile.
    #[cfg(feature = "nbd")]
    daemon.nbd.hold();
    for item in options {
        let (text, opt) = item?;
        let fail = |message: String| StartupError {
            option: Some(text.clone()),
            message,
        };
        match opt {
            Startup::Blockdev(b) => daemon.blockdev_add_sync(&b).map_err(|e| fail(e.desc))?,
            Startup::Export(e) => daemon.export_add(&e).map_err(|e| fail(e.desc))?,
            #[cfg(feature = "nbd")]
            Startup::NbdServer(n) => daemon
                .nbd_start(
                    &n.addr,
                    n.max_connections,
                    n.handshake_max_seconds,
                    n.tls_creds.as_deref(),
                )
                .map_err(|e| fail(e.desc))?,
            Startup::Chardev { id, listen } => {
                if chardevs.contains_key(&id) {
                    // A socket chardev registers its yank instance (named
                    // after the id) first: that is what QEMU finds taken.
                    return Err(fail("duplicate yank instance".into()));
                }
                let l = Listener::bind(&listen).map_err(|e| {
                    fail(match &listen {
                        // QEMU checks that an inherited descriptor is a
                        // socket (a closed one is not either).
                        ListenAddress::Fd(_) if e.kind() == std::io::ErrorKind::AddrInUse => {
                            e.to_string()
                        }
                        ListenAddress::Fd(n) => format!("File descriptor '{n}' is not a socket"),
                        // exports::sockets words these as QEMU does.
                        _ => e.to_string(),
                    })
                })?;
                if let ListenAddress::Unix(p) = &listen {
                    started.sockets.push(p.clone());
                }
                chardevs.insert(id, Some(l));
            }
            Startup::Monitor { chardev, pretty } => {
                let Some(slot) = chardevs.get_mut(&chardev) else {
                    return Err(fail(format!("chardev \"{chardev}\" not found")));
                };
                let Some(listener) = slot.take() else {
                    return Err(fail(format!("chardev '{chardev}' is already in use")));
                };
                let backend: Arc<dyn server::Backend> = daemon.clone();
                let stop = daemon.shutdown.subscribe();
                monitors.push(server::serve(
                    listener,
                    backend,
                    daemon.events.clone(),
                    pretty,
                    stop,
                ));
            }
            Startup::Object { qom_type, id } => {
                if qom_type != "iothread" {
                    return Err(fail(format!("invalid object type: {qom_type}")));
                }
                if objects.contains(&id) {
                    return Err(fail(format!(
                        "attempt to add duplicate property '{id}' to object (type 'container')"
                    )));
                }
                objects.push(id.clone());
                daemon
                    .iothreads
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(id);
            }
            Startup::PrintHelp { text, status } => {
                print!("{text}");
                return Ok(Some(status));
            }
        }
    }
    for m in monitors {
        tokio::spawn(m);
    }
    #[cfg(feature = "nbd")]
    daemon.nbd.release();
    if let Some(p) = pidfile {
        let pf = Pidfile::create(&p).map_err(|e| StartupError {
            option: None,
            message: format!("cannot create PID file: {e}"),
        })?;
        started.pidfile = Some(pf);
    }
    Ok(None)
}

/// Stops accepting, ends exports, flushes every node, removes the pid file
/// and socket files.
async fn shutdown(daemon: &Arc<Daemon>, started: Started) {
    // Exports first, so monitors still send their BLOCK_EXPORT_DELETED.
    daemon.end_exports().await;
    daemon.request_shutdown();
    daemon
        .events
        .connections_closed(std::time::Duration::from_secs(1))
        .await;
    let _ = daemon.graph.flush_all().await;
    for s in started.sockets {
        let _ = std::fs::remove_file(s);
    }
    drop(started.pidfile);
}
