//! The glue: one FUSE export = one mount, several request queues on
//! `/dev/fuse` descriptors, and the registry's [`Export`] interface.
//!
//! Each queue is a tokio task reading its own (cloned, non-blocking)
//! `/dev/fuse` descriptor through [`AsyncFd`] rather than a thread blocked
//! in `read(2)`: a blocked reader cannot be woken when the export is
//! deleted while a process still holds the file open (the connection stays
//! alive, nothing arrives), whereas a task simply stops polling. Every
//! request then runs as its own task, so one queue keeps many block
//! requests in flight, and its reply goes back on the descriptor it came
//! from (the kernel matches replies per descriptor). Requests are read
//! with `readv` into an 80-byte header array and a pooled, page-aligned
//! block buffer, so a WRITE's payload lands aligned in the buffer that is
//! handed to the block layer, and a READ's data is read into a pooled
//! buffer and written back from it: no copies, no allocation per request.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use storage_block::{BlockDevice, IoBuf};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::{Notify, watch};

use super::codec::{self, IN_HEADER_LEN, InHeader, Request, WRITE_IN_LEN, op};
use super::mount::{self, Mount};
use super::session::{MAX_WRITE, Reply, Session, SessionOptions};
use crate::buffers::BufferPool;
use crate::registry::{BoxFuture, Export, ExportError};

/// `allow-other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowOther {
    Off,
    On,
    /// Try with allow_other, then without.
    Auto,
}

/// `block-export-add type=fuse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuseExportOptions {
    pub mountpoint: String,
    pub writable: bool,
    pub growable: bool,
    pub allow_other: AllowOther,
}

/// The header array: `fuse_in_header` plus room for `fuse_write_in`.
const HEAD: usize = IN_HEADER_LEN + WRITE_IN_LEN;
/// The block buffer part of a read: the kernel wants room for a whole
/// WRITE (`max_write` after the two headers) in every read.
const BUF_LEN: usize = MAX_WRITE as usize + 4096;
/// WRITE payloads up to this size are copied out of the receive buffer.
const COPY_MAX: usize = 128 << 10;
/// Idle buffers a queue keeps (of each kind).
const POOL_MAX: usize = 128;
/// Receive buffers a READ grew beyond this go back to the allocator.
const BIG_KEEP: usize = 4 << 20;
/// Queues per export: one per core, within reason.
const MAX_QUEUES: usize = 8;
/// Requests a queue reads in one go before it lets other tasks run.
const BATCH: usize = 64;
/// Read errors in a row after which a queue gives up (having waited
/// about a second in all).
const MAX_FAILURES: u32 = 10;

/// Mountpoints of the live FUSE exports of this process (qsd refuses a
/// second export on the same mountpoint string).
fn mountpoints() -> MutexGuard<'static, BTreeSet<String>> {
    static SET: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    SET.lock().unwrap_or_else(|e| e.into_inner())
}

/// A mountpoint claimed in [`mountpoints`] until dropped.
struct Reservation(String);

impl Reservation {
    fn take(mountpoint: &str) -> Result<Reservation, ExportError> {
        if !mountpoints().insert(mountpoint.to_owned()) {
            return Err(ExportError::new(format!(
                "There already is a FUSE export on '{mountpoint}'"
            )));
        }
        Ok(Reservation(mountpoint.to_owned()))
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        mountpoints().remove(&self.0);
    }
}

/// State shared by the export, its queues and its request tasks.
struct Shared {
    session: Session,
    /// Queue tasks and request tasks still running.
    active: AtomicUsize,
    idle: Notify,
    stop: watch::Sender<bool>,
    /// One warning per export about unexpected kernel errors.
    warned: AtomicBool,
}

impl Shared {
    fn warn(&self, what: &str, e: &io::Error) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            eprintln!("fuse export: {what}: {e}");
        }
    }
}

/// Counts a running task until dropped.
struct Active(Arc<Shared>);

impl Active {
    fn new(s: &Arc<Shared>) -> Active {
        s.active.fetch_add(1, Ordering::SeqCst);
        Active(s.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// One request queue: a `/dev/fuse` descriptor and its buffers.
///
/// Every read of `/dev/fuse` needs room for a whole WRITE (`BUF_LEN`),
/// but only large WRITEs keep that buffer: they take it (its payload is
/// their data) and the queue takes a fresh one. Other requests (small
/// WRITEs with a copy of their payload) get a buffer
/// from the pool of small ones (a READ grows it to its size), so a deep
/// queue of 4 KiB reads holds 4 KiB buffers, not 1 MiB ones.
///
/// The descriptor sits behind a lock that the reader and the replies
/// share and only [`Queue::close`] takes exclusively: the export closes
/// every descriptor of the connection before it unmounts, however many
/// request tasks still hold the queue, so a file left open finds the
/// connection gone (ENOTCONN) once the mount is, as with qsd.
struct Queue {
    fd: RwLock<Option<AsyncFd<OwnedFd>>>,
    big: BufferPool,
    small: BufferPool,
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How one turn of a queue's reader ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// A whole batch was read; more may be waiting.
    Busy,
    /// The queue is closed or the connection is gone (unmounted).
    Closed,
    /// An unexpected error (errno) from polling or reading.
    Failed(i32),
}

impl Queue {
    fn new(fd: AsyncFd<OwnedFd>, shared: &Arc<Shared>) -> Queue {
        Queue {
            fd: RwLock::new(Some(fd)),
            big: BufferPool::new(POOL_MAX, BIG_KEEP),
            // Only buffers smaller than BUF_LEN go there.
            small: BufferPool::new(POOL_MAX, BUF_LEN),
            shared: shared.clone(),
        }
    }

    fn take_big(&self) -> IoBuf {
        self.big.take(BUF_LEN)
    }

    fn take_small(&self) -> IoBuf {
        self.small.take(0)
    }

    fn put_buf(&self, b: IoBuf) {
        if b.capacity() >= BUF_LEN {
            self.big.put(b);
        } else {
            self.small.put(b);
        }
    }

    fn fd(&self) -> RwLockReadGuard<'_, Option<AsyncFd<OwnedFd>>> {
        self.fd.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the descriptor once the read or reply in progress on it is
    /// done; later replies are dropped. Dropping the [`AsyncFd`] takes
    /// the descriptor out of the runtime's poller before closing it.
    fn close(&self) {
        let fd = self.fd.write().unwrap_or_else(|e| e.into_inner()).take();
        drop(fd);
    }

    /// Sends a reply unless the queue is closed.
    fn send(&self, unique: u64, reply: &Reply, buf: &IoBuf) {
        if let Some(fd) = self.fd().as_ref() {
            send_on(&self.shared, fd.as_raw_fd(), unique, reply, buf);
        }
    }

    /// One turn of the reader: waits until the descriptor is readable,
    /// then reads and dispatches requests until it would block (and
    /// waits again) or a batch is done. `rbuf` is the receive buffer,
    /// kept across reads unless a WRITE took it; `failures` counts read
    /// errors in a row (every request read resets it).
    fn poll_turn(
        self: &Arc<Self>,
        cx: &mut Context<'_>,
        rbuf: &mut Option<IoBuf>,
        failures: &mut u32,
    ) -> Poll<Turn> {
        // Held for the whole turn: dispatch answers malformed requests
        // on `raw` without taking the lock again.
        let guard = self.fd();
        let Some(afd) = guard.as_ref() else {
            return Poll::Ready(Turn::Closed);
        };
        let raw = afd.as_raw_fd();
        loop {
            let mut ready = match afd.poll_read_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(r)) => r,
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Turn::Failed(e.raw_os_error().unwrap_or(libc::EIO)));
                }
            };
            let mut drained = false;
            for _ in 0..BATCH {
                let mut head = [0u8; HEAD];
                let mut buf = rbuf.take().unwrap_or_else(|| self.take_big());
                match read_request(raw, &mut head, &mut buf) {
                    // The kernel never sends an empty request: a descriptor
                    // at its end is as broken as one that fails.
                    Ok(0) => {
                        *rbuf = Some(buf);
                        return Poll::Ready(Turn::Failed(libc::EIO));
                    }
                    Ok(n) => {
                        *failures = 0;
                        *rbuf = dispatch(self, raw, head, buf, n);
                    }
                    Err(e) => {
                        *rbuf = Some(buf);
                        match e {
                            libc::EAGAIN => {
                                drained = true;
                                break;
                            }
                            // The request was interrupted before we got it.
                            libc::ENOENT | libc::EINTR => {}
                            // Unmounted (or aborted): nothing more will come.
                            libc::ENODEV => return Poll::Ready(Turn::Closed),
                            // Readiness stays set: the next turn reads again.
                            e => return Poll::Ready(Turn::Failed(e)),
                        }
                    }
                }
            }
            if !drained {
                return Poll::Ready(Turn::Busy);
            }
            ready.clear_ready();
        }
    }
}

/// Reads one request from `fd`: its length, or the errno.
fn read_request(fd: RawFd, head: &mut [u8; HEAD], buf: &mut IoBuf) -> Result<usize, i32> {
    let iov = [
        libc::iovec {
            iov_base: head.as_mut_ptr().cast(),
            iov_len: HEAD,
        },
        libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        },
    ];
    // SAFETY: both iovecs point at live, exclusively borrowed memory.
    let n = unsafe { libc::readv(fd, iov.as_ptr(), 2) };
    if n < 0 {
        return Err(io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO));
    }
    Ok(n as usize)
}

/// Sends a reply on `fd`; the kernel may have dropped the request
/// meanwhile (ENOENT), which is fine.
fn send_on(shared: &Shared, fd: RawFd, unique: u64, reply: &Reply, buf: &IoBuf) {
    let (error, payload): (i32, &[u8]) = match reply {
        Reply::None => return,
        Reply::Err(e) => (-e, &[]),
        Reply::Small { bytes, len } => (0, &bytes[..*len]),
        Reply::Buf(n) => (0, buf.get(..*n).unwrap_or(&[])),
    };
    let hdr = codec::out_header(unique, error, payload.len());
    let iov = [
        libc::iovec {
            iov_base: hdr.as_ptr() as *mut _,
            iov_len: hdr.len(),
        },
        libc::iovec {
            iov_base: payload.as_ptr() as *mut _,
            iov_len: payload.len(),
        },
    ];
    let cnt = if payload.is_empty() { 1 } else { 2 };
    // SAFETY: the iovecs point at live memory the kernel only reads.
    let n = unsafe { libc::writev(fd, iov.as_ptr(), cnt) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if !matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENODEV)) {
            shared.warn("cannot send a reply", &e);
        }
    }
}

/// Serves one queue until the export stops, the connection goes away or
/// reading keeps failing.
async fn serve_queue(q: Arc<Queue>, _active: Active) {
    let mut stop = q.shared.stop.subscribe();
    let mut rbuf: Option<IoBuf> = None;
    let mut failures = 0u32;
    loop {
        let turn = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            t = std::future::poll_fn(|cx| q.poll_turn(cx, &mut rbuf, &mut failures)) => t,
        };
        match turn {
            Turn::Busy => {
                // Under a steady stream of requests, let the request tasks
                // spawned on this worker run now and then.
                tokio::task::yield_now().await;
            }
            Turn::Closed => return,
            Turn::Failed(e) => {
                let e = io::Error::from_raw_os_error(e);
                failures += 1;
                q.shared.warn("cannot read /dev/fuse", &e);
                // Back off rather than spin on an error that persists.
                let Some(pause) = backoff(failures) else {
                    eprintln!(
                        "fuse export: a request queue gives up after {MAX_FAILURES} read errors in a row: {e}"
                    );
                    return;
                };
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}

/// How long a queue waits after `failures` read errors in a row (1, 2,
/// 4, ... ms), or `None` when it should give up.
fn backoff(failures: u32) -> Option<Duration> {
    (failures <= MAX_FAILURES).then(|| Duration::from_millis(1 << failures.saturating_sub(1)))
}

/// Decodes one request (read from `raw`, where malformed ones are
/// answered) and runs it as a task of its own. Returns the receive buffer
/// unless the request took it.
fn dispatch(q: &Arc<Queue>, raw: RawFd, head: [u8; HEAD], buf: IoBuf, n: usize) -> Option<IoBuf> {
    let Some(h) = InHeader::parse(&head[..n.min(HEAD)]) else {
        // Not even a header: nothing to answer to.
        return Some(buf);
    };
    let refuse = |buf: &IoBuf| send_on(&q.shared, raw, h.unique, &Reply::Err(libc::EINVAL), buf);
    if h.len as usize != n {
        refuse(&buf);
        return Some(buf);
    }
    // A WRITE's payload is at the start of `buf`; anything else is small
    // and is decoded from a contiguous copy of its arguments.
    let (decoded, payload) = if h.opcode == op::WRITE {
        let args = &head[IN_HEADER_LEN..n.min(HEAD)];
        (Request::decode(h.opcode, args), n.saturating_sub(HEAD))
    } else if n <= HEAD {
        (Request::decode(h.opcode, &head[IN_HEADER_LEN..n]), 0)
    } else {
        let mut args = head[IN_HEADER_LEN..].to_vec();
        args.extend_from_slice(buf.get(..n - HEAD).unwrap_or(&[]));
        (Request::decode(h.opcode, &args), 0)
    };
    let req = match decoded {
        Ok(r) => r,
        Err(e) => {
            q.shared
                .warn("malformed request", &io::Error::other(e.to_string()));
            refuse(&buf);
            return Some(buf);
        }
    };
    if matches!(req, Request::NoReply) {
        return Some(buf);
    }
    let (mut req_buf, keep) = match req {
        Request::Write(_) if payload > COPY_MAX => (buf, None),
        Request::Write(_) => {
            // Copying a small payload is cheaper than tying up (and
            // zeroing, the first time) another 1 MiB buffer.
            let mut small = q.take_small();
            small.set_len(payload);
            small.copy_from_slice(buf.get(..payload).unwrap_or(&[]));
            (small, Some(buf))
        }
        _ => (q.take_small(), Some(buf)),
    };
    let active = Active::new(&q.shared);
    let q = q.clone();
    tokio::spawn(async move {
        let _active = active;
        // Stopping the export abandons the request (its connection is
        // closed, nobody waits for the answer): a slow node must not keep
        // a deleted export, or daemon shutdown, waiting.
        let mut stop = q.shared.stop.subscribe();
        let reply = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            r = q.shared.session.handle(req, &mut req_buf, payload) => r,
        };
        q.send(h.unique, &reply, &req_buf);
        q.put_buf(req_buf);
    });
    keep
}

/// A live FUSE export.
pub struct FuseExport {
    shared: Arc<Shared>,
    /// Closed on stop, before the unmount.
    queues: Mutex<Vec<Arc<Queue>>>,
    mount: Mutex<Option<Mount>>,
    reservation: Mutex<Option<Reservation>>,
}

impl FuseExport {
    /// Mounts the export and starts its queues (qsd's checks and texts).
    pub fn create(
        opts: FuseExportOptions,
        dev: Arc<dyn BlockDevice>,
    ) -> Result<Arc<FuseExport>, ExportError> {
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|_| ExportError::new("FUSE exports need a running tokio runtime"))?;
        // Mounting blocks (stat, mount(2), fusermount3), and a stat may
        // even reach another export of ours: let the runtime move its
        // other tasks off this thread meanwhile.
        if rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
            tokio::task::block_in_place(|| Self::create_on(&rt, opts, dev))
        } else {
            Self::create_on(&rt, opts, dev)
        }
    }

    fn create_on(
        rt: &tokio::runtime::Handle,
        opts: FuseExportOptions,
        dev: Arc<dyn BlockDevice>,
    ) -> Result<Arc<FuseExport>, ExportError> {
        let reservation = Reservation::take(&opts.mountpoint)?;
        mount::check_mountpoint(&opts.mountpoint).map_err(ExportError::new)?;
        let path = Path::new(&opts.mountpoint);
        let mounted = match opts.allow_other {
            AllowOther::On => Mount::create(path, true).map(|(m, fd)| (m, fd, true)),
            AllowOther::Off => Mount::create(path, false).map(|(m, fd)| (m, fd, false)),
            AllowOther::Auto => Mount::create(path, true)
                .map(|(m, fd)| (m, fd, true))
                .or_else(|_| Mount::create(path, false).map(|(m, fd)| (m, fd, false))),
        };
        let (mount, fd, allow_other) = mounted.map_err(|e| {
            ExportError::new(format!(
                "Failed to mount FUSE session to export: {}",
                storage_block::strerror(&e)
            ))
        })?;
        let shared = Arc::new(Shared {
            session: Session::new(
                dev,
                SessionOptions {
                    writable: opts.writable,
                    growable: opts.growable,
                    allow_other,
                },
            ),
            active: AtomicUsize::new(0),
            idle: Notify::new(),
            stop: watch::Sender::new(false),
            warned: AtomicBool::new(false),
        });
        let export = Arc::new(FuseExport {
            shared: shared.clone(),
            queues: Mutex::new(Vec::new()),
            mount: Mutex::new(Some(mount)),
            reservation: Mutex::new(Some(reservation)),
        });
        let want = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_QUEUES);
        let mut fds = Vec::with_capacity(want);
        for _ in 1..want {
            // Fewer queues is not fatal: the first one serves everything.
            match mount::clone_fd(&fd) {
                Ok(c) => fds.push(c),
                Err(e) => {
                    shared.warn("cannot clone /dev/fuse", &e);
                    break;
                }
            }
        }
        fds.insert(0, fd);
        let _enter = rt.enter();
        for fd in fds {
            // Dropping `export` on error unmounts and stops the queues
            // started so far.
            // SAFETY: an OwnedFd keeps its descriptor open and unchanged
            // for as long as the AsyncFd owns it.
            let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(
                |e| {
                    ExportError::new(format!(
                        "Failed to mount FUSE session to export: {}",
                        storage_block::strerror(&io::Error::from(e))
                    ))
                },
            )?;
            let q = Arc::new(Queue::new(fd, &shared));
            lock(&export.queues).push(q.clone());
            tokio::spawn(serve_queue(q, Active::new(&shared)));
        }
        Ok(export)
    }

    /// Stops the queues and the requests in flight, closes the
    /// connection, then unmounts: the order of libfuse's unmount. Closing
    /// first means a file still open finds the connection gone (ENOTCONN)
    /// by the time the mount is; the other way round, a request it sends
    /// meanwhile would wait for a reader that is gone, then fail with
    /// ECONNABORTED at the close.
    ///
    /// The unmount (umount2, or waiting for `fusermount3 -u`) runs on the
    /// blocking pool, counted as active, so a slow one stalls neither the
    /// monitor that asked nor anything else; the export is gone (and the
    /// mountpoint free) once it is done.
    fn stop(&self) {
        self.shared.stop.send_replace(true);
        for q in std::mem::take(&mut *lock(&self.queues)) {
            q.close();
        }
        let mount = lock(&self.mount).take();
        let reservation = lock(&self.reservation).take();
        let (Some(mut mount), Ok(rt)) = (mount, tokio::runtime::Handle::try_current()) else {
            // Nothing mounted, or no runtime to wait on: Mount's drop
            // unmounts here.
            return;
        };
        let active = Active::new(&self.shared);
        // If the pool refuses the job (runtime shutting down), dropping
        // the closure unmounts through Mount's drop.
        rt.spawn_blocking(move || {
            mount.unmount();
            drop(reservation);
            drop(active);
        });
    }

    /// Whether `stop` ran and something of the export still runs.
    fn stopping(&self) -> bool {
        *self.shared.stop.borrow() && self.shared.active.load(Ordering::SeqCst) > 0
    }
}

impl Export for FuseExport {
    /// A FUSE export has no connections to wait for: as in qsd, deleting
    /// it (even in safe mode) unmounts it while files are open, and their
    /// users get ENOTCONN once the queues are gone. Once stopped, what is
    /// left to end (queues, abandoned requests, the unmount) counts, so
    /// the export is gone only when nothing of it runs.
    fn clients(&self) -> usize {
        usize::from(self.stopping())
    }

    fn shutdown(&self, _hard: bool) {
        self.stop();
    }

    fn drained(self: Arc<Self>) -> BoxFuture<()> {
        let shared = self.shared.clone();
        Box::pin(async move {
            loop {
                let idle = shared.idle.notified();
                if shared.active.load(Ordering::SeqCst) == 0 {
                    return;
                }
                idle.await;
            }
        })
    }
}

impl Drop for FuseExport {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;
    use std::time::Instant;
    use storage_block::{BlockGraph, BlockdevOptions, DriverOptions, NullOptions};

    fn shared() -> Arc<Shared> {
        let graph = BlockGraph::new();
        let opts = BlockdevOptions::new(DriverOptions::NullCo(NullOptions::default())).named("n");
        graph.add(&opts).expect("add node");
        let dev = graph.get("n").expect("node");
        Arc::new(Shared {
            session: Session::new(
                dev,
                SessionOptions {
                    writable: false,
                    growable: false,
                    allow_other: false,
                },
            ),
            active: AtomicUsize::new(0),
            idle: Notify::new(),
            stop: watch::Sender::new(false),
            warned: AtomicBool::new(false),
        })
    }

    /// A queue on the read end of a pipe whose write end is closed: always
    /// readable, every read at end of file, like a descriptor that fails
    /// for good.
    fn broken_queue(shared: &Arc<Shared>) -> Arc<Queue> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two descriptors we then own.
        let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        assert_eq!(r, 0, "pipe2: {}", io::Error::last_os_error());
        // SAFETY: fresh descriptors from pipe2.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        drop(wr);
        // SAFETY: the OwnedFd stays open and unchanged inside the AsyncFd.
        let fd = unsafe { AsyncFd::register_with_interest(rd, Interest::READABLE) }
            .expect("register the pipe");
        Arc::new(Queue::new(fd, shared))
    }

    #[test]
    fn backoff_doubles_then_gives_up() {
        assert_eq!(backoff(1), Some(Duration::from_millis(1)));
        assert_eq!(backoff(4), Some(Duration::from_millis(8)));
        assert_eq!(backoff(MAX_FAILURES), Some(Duration::from_millis(512)));
        assert_eq!(backoff(MAX_FAILURES + 1), None);
    }

    #[tokio::test]
    async fn a_queue_that_keeps_failing_backs_off_and_ends() {
        let shared = shared();
        let q = broken_queue(&shared);
        let start = Instant::now();
        let served = tokio::time::timeout(
            Duration::from_secs(30),
            serve_queue(q, Active::new(&shared)),
        )
        .await;
        assert!(served.is_ok(), "the queue kept retrying");
        // It waited between attempts rather than giving up at once (or
        // spinning until the timeout).
        assert!(
            start.elapsed() >= Duration::from_millis(900),
            "{:?}",
            start.elapsed()
        );
        assert!(shared.warned.load(Ordering::Relaxed));
        assert_eq!(shared.active.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_closed_queue_stops_and_drops_replies() {
        let shared = shared();
        let q = broken_queue(&shared);
        q.close();
        // Nothing to send on, and nothing said about it.
        q.send(1, &Reply::Err(libc::EIO), &IoBuf::new());
        assert!(!shared.warned.load(Ordering::Relaxed));
        let served =
            tokio::time::timeout(Duration::from_secs(5), serve_queue(q, Active::new(&shared)))
                .await;
        assert!(served.is_ok(), "a closed queue kept running");
    }
}
