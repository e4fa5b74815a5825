//! Glue between sockets and QMP sessions: listeners from chardev specs,
//! one task per connection, events to every negotiated monitor.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use qapi_rt::{CommandInfo, QmpError};
use serde_json::{Map, Value};
use storage_exports::sockets;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{broadcast, watch};

use super::codec::Splitter;
use super::session::{Action, Session, error_reply, return_reply};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a monitor serves: the greeting, the command table and execution.
pub trait Backend: Send + Sync + 'static {
    fn greeting(&self) -> Value;
    fn command(&self, name: &str) -> Option<&CommandInfo>;
    fn execute(
        &self,
        name: String,
        args: Map<String, Value>,
    ) -> BoxFuture<'_, Result<Value, QmpError>>;
    /// Called once a command's reply has been written (`quit` exits then).
    fn reply_sent(&self, _name: &str) {}
}

/// Where a monitor listens (a `--chardev socket` with `server=on`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddress {
    Unix(PathBuf),
    Tcp {
        host: String,
        port: String,
    },
    /// An already listening socket inherited from the parent.
    Fd(i32),
}

/// The events channel: every monitor subscribes; only negotiated ones
/// forward what they receive.
#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<Arc<Value>>,
    /// Every monitor connection holds a read lock while it lives, so
    /// shutdown can wait until the last events have gone out.
    open: Arc<tokio::sync::RwLock<()>>,
}

impl Default for Events {
    fn default() -> Self {
        Self::new()
    }
}

impl Events {
    pub fn new() -> Self {
        // Generous: a client that stops reading loses events only after
        // this many, and is told nothing else goes wrong.
        let (tx, _) = broadcast::channel(4096);
        Events {
            tx,
            open: Arc::new(tokio::sync::RwLock::new(())),
        }
    }

    /// Resolves when every monitor connection has ended (after the
    /// daemon's shutdown was requested), or after `limit`.
    pub async fn connections_closed(&self, limit: std::time::Duration) {
        let _ = tokio::time::timeout(limit, self.open.write()).await;
    }

    /// Sends an event message (`{"event", "data", "timestamp"}`).
    pub fn emit(&self, message: Value) {
        let _ = self.tx.send(Arc::new(message));
    }

    pub fn emit_event<E: qapi_rt::Event>(&self, event: &E) {
        self.emit(qapi_rt::event_message(event, qapi_rt::Timestamp::now()));
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Value>> {
        self.tx.subscribe()
    }
}

/// A bound listening socket.
pub enum Listener {
    Unix(tokio::net::UnixListener, PathBuf),
    Tcp(Vec<tokio::net::TcpListener>),
}

impl Listener {
    /// Binds (or adopts) the address. Must run inside the tokio runtime.
    pub fn bind(addr: &ListenAddress) -> io::Result<Listener> {
        match addr {
            ListenAddress::Unix(path) => Ok(Listener::Unix(
                sockets::unix_listener(path).map_err(io::Error::other)?,
                path.clone(),
            )),
            // Every address the name resolves to, as NBD's listener and QEMU.
            ListenAddress::Tcp { host, port } => Ok(Listener::Tcp(
                sockets::tcp_listeners(host, port, None, None).map_err(io::Error::other)?,
            )),
            ListenAddress::Fd(fd) => {
                // Checked first: a descriptor that is not an open socket
                // must not be taken over (and later closed).
                sockets::socket_domain(*fd)?;
                match sockets::inherit_listener(*fd).map_err(io::Error::from)? {
                    sockets::Inherited::Unix(l) => Ok(Listener::Unix(l, PathBuf::new())),
                    sockets::Inherited::Tcp(l) => Ok(Listener::Tcp(vec![l])),
                }
            }
        }
    }

    /// Removes the socket file of a unix listener.
    pub fn cleanup(&self) {
        if let Listener::Unix(_, path) = self
            && !path.as_os_str().is_empty()
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Accepts monitor connections until `stop` turns true.
pub async fn serve(
    listener: Listener,
    backend: Arc<dyn Backend>,
    events: Events,
    pretty: bool,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            conn = accept(&listener) => match conn {
                Ok(Conn::Unix(s)) => {
                    tokio::spawn(connection(s, backend.clone(), events.clone(), pretty, stop.clone()));
                }
                Ok(Conn::Tcp(s)) => {
                    let _ = s.set_nodelay(true);
                    tokio::spawn(connection(s, backend.clone(), events.clone(), pretty, stop.clone()));
                }
                // Out of descriptors and the like: keep serving.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            },
        }
    }
    listener.cleanup();
}

enum Conn {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

async fn accept(l: &Listener) -> io::Result<Conn> {
    match l {
        Listener::Unix(u, _) => u.accept().await.map(|(s, _)| Conn::Unix(s)),
        Listener::Tcp(ts) => {
            // The first of the listeners with a connection waiting.
            std::future::poll_fn(|cx| {
                for t in ts {
                    if let std::task::Poll::Ready(r) = t.poll_accept(cx) {
                        return std::task::Poll::Ready(r.map(|(s, _)| Conn::Tcp(s)));
                    }
                }
                std::task::Poll::Pending
            })
            .await
        }
    }
}

/// Writes messages to one client.
struct Out<W> {
    w: W,
    pretty: bool,
}

impl<W: AsyncWrite + Unpin> Out<W> {
    async fn send(&mut self, v: &Value) -> io::Result<()> {
        self.w
            .write_all(qapi_rt::qmp_message(v, self.pretty).as_bytes())
            .await
    }
}

/// One monitor connection: greeting, then requests in order. Events that
/// arrive while a command runs go out before its reply, as in QEMU where
/// both are queued on the monitor in the order they happen.
async fn connection<S: AsyncRead + AsyncWrite + Unpin + Send>(
    stream: S,
    backend: Arc<dyn Backend>,
    events: Events,
    pretty: bool,
    mut stop: watch::Receiver<bool>,
) {
    let _open = events.open.clone().read_owned().await;
    let (mut rd, wr) = tokio::io::split(stream);
    let mut out = Out { w: wr, pretty };
    let mut ev = events.subscribe();
    if out.send(&backend.greeting()).await.is_err() {
        return;
    }
    let mut session = Session::new();
    let mut splitter = Splitter::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            _ = stop.changed() => {
                // Events of the shutdown itself (BLOCK_EXPORT_DELETED) go
                // out before the monitor closes, as in QEMU.
                while let Ok(m) = ev.try_recv() {
                    if session.negotiated() && out.send(&m).await.is_err() {
                        return;
                    }
                }
                let _ = out.w.shutdown().await;
                break;
            }
            msg = ev.recv() => match msg {
                Ok(m) if session.negotiated() => {
                    if out.send(&m).await.is_err() {
                        break;
                    }
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
            n = rd.read(&mut buf) => {
                let n = match n {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                splitter.push(&buf[..n]);
                while let Some(frame) = splitter.next_frame() {
                    let action = session.on_frame(frame, |name| backend.command(name));
                    let reply = match action {
                        Action::Reply(v) => Some(v),
                        Action::Negotiated(id) => Some(return_reply(Value::Object(Map::new()), id.as_ref())),
                        Action::Execute(e) => {
                            let name = e.name.clone();
                            let result = backend.execute(e.name, e.args).await;
                            // Events raised by the command precede its reply.
                            while let Ok(m) = ev.try_recv() {
                                if out.send(&m).await.is_err() {
                                    return;
                                }
                            }
                            let reply = match result {
                                Ok(ret) if e.reply => Some(return_reply(ret, e.id.as_ref())),
                                Ok(_) => None,
                                Err(err) => Some(error_reply(&err, e.id.as_ref())),
                            };
                            if let Some(r) = reply
                                && out.send(&r).await.is_err()
                            {
                                return;
                            }
                            backend.reply_sent(&name);
                            None
                        }
                    };
                    if let Some(r) = reply
                        && out.send(&r).await.is_err()
                    {
                        return;
                    }
                }
            }
        }
    }
}
