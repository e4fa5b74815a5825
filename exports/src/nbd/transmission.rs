//! The NBD transmission phase: requests are read by one loop and run
//! concurrently (at most [`MAX_REQUESTS`] per connection, as QEMU); each
//! reply is written whole under the connection's writer lock, so replies
//! may come out of order but never interleave.

use std::future::Future;
use std::io;
use std::sync::Arc;

use storage_block::{BlockDevice, IoBuf, strerror};
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadHalf,
    WriteHalf,
};
use tokio::task::JoinSet;

use super::codec::*;
use super::export::NbdExport;
use super::state::{
    Contexts, MAX_REQUESTS, META_ALLOCATION_DEPTH, META_BASE_ALLOCATION, Negotiated, SessionError,
    drop_bytes, protocol,
};
use crate::buffers::BufferPool;

/// Extents in one block status chunk (QEMU: 1 MiB of compact extents).
const MAX_EXTENTS: usize = 1024 * 1024 / 8;

/// State shared by the requests of one connection.
struct Conn {
    dev: Arc<dyn BlockDevice>,
    mode: Mode,
    contexts: Contexts,
    /// Buffers of finished reads and writes, reused (they are aligned and
    /// zeroed once); a few ordinary-sized ones, giant ones go back to the
    /// allocator.
    pool: BufferPool,
}

/// A request as the reader loop hands it to its task.
struct Incoming {
    req: Request,
    /// The data of a write.
    payload: Option<IoBuf>,
    /// Contexts of a block status request (its own, with a payload).
    contexts: Option<Contexts>,
    /// The request failed its checks: this errno and message go back.
    error: Option<(u32, String)>,
}

/// How the reader loop goes on after a request.
enum Next {
    Go(Incoming),
    /// Reply, then disconnect: the request's payload was not read.
    ReplyAndClose(Incoming),
    Disconnect,
}

/// Replies waiting to be written: whole replies only, in completion order.
/// Small data is copied so that a burst of replies leaves in one `write`.
#[derive(Default)]
struct Outbox {
    parts: Vec<Part>,
    /// Replies queued (each holds a request slot until written).
    replies: usize,
    /// The bytes buffer of the last flush, kept for the next burst.
    spare: Vec<u8>,
}

/// Data up to this size is copied into the outgoing bytes.
const COPY_MAX: usize = 64 * 1024;

impl Outbox {
    fn push(&mut self, conn: &Conn, reply: Reply) {
        for part in reply.parts.into_iter().chain([Part::Bytes(reply.tail)]) {
            match part {
                Part::Data(buf, range) if range.len() <= COPY_MAX => {
                    self.bytes().extend_from_slice(&buf[range]);
                    if let Ok(buf) = Arc::try_unwrap(buf) {
                        conn.recycle(buf);
                    }
                }
                Part::Bytes(b) if b.is_empty() => {}
                Part::Bytes(b) => self.bytes().extend_from_slice(&b),
                data => self.parts.push(data),
            }
        }
        self.replies += 1;
    }

    fn bytes(&mut self) -> &mut Vec<u8> {
        if !matches!(self.parts.last(), Some(Part::Bytes(_))) {
            let buf = match std::mem::take(&mut self.spare) {
                b if b.capacity() > 0 => b,
                _ => Vec::with_capacity(COPY_MAX),
            };
            self.parts.push(Part::Bytes(buf));
        }
        match self.parts.last_mut() {
            Some(Part::Bytes(b)) => b,
            _ => unreachable!("a bytes part was just pushed"),
        }
    }

    /// Writes everything queued with as few `writev` calls as the socket
    /// takes: a chunk header and its data leave in one segment.
    async fn flush<W: AsyncWrite + Unpin>(&mut self, conn: &Conn, w: &mut W) -> io::Result<()> {
        let mut slices: Vec<io::IoSlice<'_>> = self
            .parts
            .iter()
            .map(|p| io::IoSlice::new(p.as_slice()))
            .collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            let n = w.write_vectored(rest).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            io::IoSlice::advance_slices(&mut rest, n);
        }
        for part in self.parts.drain(..) {
            match part {
                Part::Data(buf, _) => {
                    if let Ok(buf) = Arc::try_unwrap(buf) {
                        conn.recycle(buf);
                    }
                }
                Part::Bytes(mut b) if b.capacity() <= 4 * COPY_MAX => {
                    b.clear();
                    self.spare = b;
                }
                Part::Bytes(_) => {}
            }
        }
        self.replies = 0;
        Ok(())
    }
}

/// Serves requests until the client disconnects, the export closes or
/// `stop` resolves (the server stops).
///
/// One task per connection: requests whose block I/O completes at once
/// (tmpfs, page cache, null) are answered inline and their replies are
/// batched into one write per burst; a request whose I/O has to wait
/// goes on in a task of its own, so up to [`MAX_REQUESTS`] run
/// concurrently and their replies come back in completion order.
pub(super) async fn transmission<S>(
    reader: BufReader<ReadHalf<S>>,
    writer: WriteHalf<S>,
    n: Negotiated,
    fd: Option<std::os::fd::RawFd>,
    stop: impl Future<Output = ()>,
) -> Result<(), SessionError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let conn = Arc::new(Conn {
        dev: n.export.device.clone(),
        mode: n.mode,
        contexts: n.contexts,
        pool: BufferPool::new(MAX_REQUESTS, 4 << 20),
    });
    let mut tasks: JoinSet<Reply> = JoinSet::new();
    // Every await on the peer (request headers, payloads, reply writes)
    // lives in `serve_requests`: removal or a server stop drops it at any
    // of them, which closes the socket (a hard disconnect).
    let result = tokio::select! {
        r = serve_requests(reader, writer, &conn, &n.export, &mut tasks, fd) => r,
        () = n.export.closed() => Ok(()),
        () = stop => Ok(()),
    };
    // Block I/O already started runs to its end (QEMU drains it too)
    // before the client stops counting: once the export is reported gone,
    // nothing of this connection touches its node any more. Its replies
    // have nowhere to go.
    while tasks.join_next().await.is_some() {}
    drop(n._client);
    result
}

/// The request loop of [`transmission`]; returns when the client is done.
async fn serve_requests<S>(
    mut reader: BufReader<ReadHalf<S>>,
    mut writer: WriteHalf<S>,
    conn: &Arc<Conn>,
    export: &NbdExport,
    tasks: &mut JoinSet<Reply>,
    fd: Option<std::os::fd::RawFd>,
) -> Result<(), SessionError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let header = conn.mode.request_size();
    let mut out = Outbox::default();
    let mut eof = false;
    let mut poller = Poller::new(fd);
    // Requests started since the connection last slept.
    let mut started = 0usize;
    let result = loop {
        let mut lost = None;
        while let Some(done) = tasks.try_join_next() {
            match done {
                Ok(reply) => out.push(conn, reply),
                Err(e) => lost = Some(e),
            }
        }
        // A request task that panicked lost its reply: end the connection.
        if let Some(e) = lost {
            break Err(io::Error::other(e).into());
        }
        let busy = tasks.len() + out.replies;
        // Requests already buffered are taken before anything is written,
        // so a burst of requests gets a burst of replies.
        if !eof && busy < MAX_REQUESTS && reader.buffer().len() >= header {
            started += 1;
            match next_request(&mut reader, conn, export, tasks, &mut out).await {
                Ok(more) => eof = !more,
                Err(e) => break Err(e),
            }
            continue;
        }
        if !out.parts.is_empty() {
            if let Err(e) = out.flush(conn, &mut writer).await {
                break Err(e.into());
            }
            continue;
        }
        if eof && tasks.is_empty() {
            break Ok(());
        }
        let idle = tasks.is_empty() && !eof;
        if idle {
            poller.spin(started);
        }
        started = 0;
        let waited = std::time::Instant::now();
        tokio::select! {
            biased;
            Some(done) = tasks.join_next(), if !tasks.is_empty() => match done {
                Ok(reply) => out.push(conn, reply),
                Err(e) => break Err(io::Error::other(e).into()),
            },
            filled = async { reader.fill_buf().await.map(<[u8]>::len) }, if !eof && busy < MAX_REQUESTS => match filled {
                Ok(0) => eof = true,
                // A partial header: read the rest of this request now.
                Ok(got) if got < header => {
                    started += 1;
                    match next_request(&mut reader, conn, export, tasks, &mut out).await {
                        Ok(more) => eof = !more,
                        Err(e) => break Err(e),
                    }
                }
                Ok(_) => {}
                Err(e) => break Err(e.into()),
            },
        }
        if idle {
            poller.waited(waited.elapsed());
        }
    };
    // The spec asks servers to finish what is in flight before closing
    // (QEMU does); the replies are sent when the client is still there.
    while let Some(Ok(reply)) = tasks.join_next().await {
        out.push(conn, reply);
    }
    let _ = out.flush(conn, &mut writer).await;
    let _ = writer.shutdown().await;
    result
}

/// Reads and starts the next request; `Ok(false)` when no other request
/// may follow (the client said goodbye or broke the framing).
async fn next_request<R: AsyncRead + Unpin>(
    reader: &mut R,
    conn: &Arc<Conn>,
    export: &NbdExport,
    tasks: &mut JoinSet<Reply>,
    out: &mut Outbox,
) -> Result<bool, SessionError> {
    match receive(reader, conn, export).await? {
        Next::Go(inc) => {
            start(conn, inc, tasks, out).await;
            Ok(true)
        }
        Next::ReplyAndClose(inc) => {
            out.push(conn, handle(conn.clone(), inc).await);
            Ok(false)
        }
        Next::Disconnect => Ok(false),
    }
}

/// Adaptive polling of an idle connection's socket before it sleeps, as
/// QEMU's iothreads poll (`poll-max-ns`): a client at queue depth 1 sends
/// its next request tens of microseconds after our reply, and catching it
/// awake saves a sleep and a cross-CPU wake-up per request. The budget
/// grows while requests arrive within the maximum and shrinks when they
/// do not, so an idle or slow client costs next to nothing.
struct Poller {
    fd: Option<std::os::fd::RawFd>,
    budget: std::time::Duration,
}

const POLL_MAX: std::time::Duration = std::time::Duration::from_micros(64);
const POLL_MIN: std::time::Duration = std::time::Duration::from_micros(4);

impl Poller {
    fn new(fd: Option<std::os::fd::RawFd>) -> Self {
        Poller {
            fd,
            budget: std::time::Duration::ZERO,
        }
    }

    /// Spins until the socket is readable or the budget is spent, when
    /// the client looks like it waits for each reply (`served` requests
    /// came in since the last sleep: one). Deeper queues keep the
    /// connection busy by themselves; polling there only burns CPU.
    fn spin(&mut self, served: usize) {
        let Some(fd) = self.fd else { return };
        if self.budget.is_zero() || served > 1 {
            return;
        }
        let start = std::time::Instant::now();
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        while start.elapsed() < self.budget {
            // SAFETY: one pollfd, no timeout.
            if unsafe { libc::poll(&mut p, 1, 0) } != 0 {
                return;
            }
            std::hint::spin_loop();
        }
    }

    /// Adapts the budget to how long the connection then slept.
    fn waited(&mut self, slept: std::time::Duration) {
        if slept <= POLL_MAX {
            self.budget = (self.budget * 2).clamp(POLL_MIN, POLL_MAX);
        } else {
            self.budget /= 2;
            if self.budget < POLL_MIN {
                self.budget = std::time::Duration::ZERO;
            }
        }
    }
}

/// Runs a request: inline when its I/O completes at once, else in a task.
async fn start(conn: &Arc<Conn>, inc: Incoming, tasks: &mut JoinSet<Reply>, out: &mut Outbox) {
    let mut fut = Box::pin(handle(conn.clone(), inc));
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx))).await;
    match first {
        std::task::Poll::Ready(reply) => out.push(conn, reply),
        std::task::Poll::Pending => {
            tasks.spawn(fut);
        }
    }
}

/// Reads the whole header, or `Ok(false)` at a clean end of file.
async fn read_header<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        let n = r.read(&mut buf[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(false);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "Unexpected end-of-file before all bytes were read",
            ));
        }
        got += n;
    }
    Ok(true)
}

impl Conn {
    fn buffer(&self, len: usize) -> IoBuf {
        self.pool.take(len)
    }

    fn recycle(&self, buf: IoBuf) {
        self.pool.put(buf);
    }
}

/// Reads one request and checks it as QEMU's `nbd_co_receive_request`.
async fn receive<R>(r: &mut R, conn: &Conn, export: &NbdExport) -> Result<Next, SessionError>
where
    R: AsyncRead + Unpin,
{
    let mut hdr = [0; EXTENDED_REQUEST_SIZE];
    let hdr = &mut hdr[..conn.mode.request_size()];
    if !read_header(r, hdr).await? {
        return Ok(Next::Disconnect);
    }
    let mut req = match Request::decode(hdr) {
        Ok(r) => r,
        Err(BadRequest { req: Some(r), msg }) => {
            return Ok(Next::ReplyAndClose(failed(r, EINVAL, msg)));
        }
        Err(BadRequest { req: None, msg }) => return Err(protocol(msg)),
    };
    let extended = conn.mode >= Mode::Extended;
    let with_payload = extended && req.flags & CMD_FLAG_PAYLOAD_LEN != 0;
    let mut payload_len = if with_payload { req.len } else { 0 };
    let mut check_length = with_payload;
    let mut check_rofs = false;
    let mut payload_okay = false;
    let mut valid = CMD_FLAG_FUA;
    let mut contexts = None;
    let mut inc_error = None;
    match req.ty {
        // No reply, whatever the rest of the header says.
        CMD_DISC => return Ok(Next::Disconnect),
        CMD_READ => {
            if conn.mode >= Mode::Structured {
                valid |= CMD_FLAG_DF;
            }
            check_length = true;
        }
        CMD_WRITE => {
            if extended {
                valid |= CMD_FLAG_PAYLOAD_LEN;
            }
            payload_okay = true;
            payload_len = req.len;
            check_length = true;
            check_rofs = true;
        }
        CMD_FLUSH => {}
        CMD_TRIM => check_rofs = true,
        CMD_CACHE => check_length = true,
        CMD_WRITE_ZEROES => {
            valid |= CMD_FLAG_NO_HOLE | CMD_FLAG_FAST_ZERO;
            check_rofs = true;
        }
        CMD_BLOCK_STATUS => {
            if with_payload {
                if req.len > u64::from(MAX_BUFFER_SIZE) {
                    let msg = too_long(req.len);
                    return Ok(Next::ReplyAndClose(failed(req, EINVAL, msg)));
                }
                contexts = Some(status_payload(r, conn, &mut req).await?);
                payload_len = 0;
                check_length = false;
                valid |= CMD_FLAG_PAYLOAD_LEN;
            }
            valid |= CMD_FLAG_REQ_ONE;
        }
        _ => {}
    }
    if check_length && req.len > u64::from(MAX_BUFFER_SIZE) {
        let inc = failed(req, EINVAL, too_long(req.len));
        return Ok(if payload_len > 0 {
            Next::ReplyAndClose(inc)
        } else {
            Next::Go(inc)
        });
    }
    let mut payload = None;
    if payload_len > 0 {
        if payload_okay {
            let mut buf = conn.buffer(payload_len as usize);
            r.read_exact(&mut buf).await?;
            payload = Some(buf);
        } else {
            // Payloads on other commands are dropped; the command fails
            // below for its flag, not for its length.
            drop_bytes(r, payload_len).await?;
            req.len = 0;
        }
    }
    // QEMU answers every failed check with EINVAL (even EROFS/ENOSPC).
    let size = conn.dev.size();
    if export.flags() & FLAG_READ_ONLY != 0 && check_rofs {
        inc_error = Some((EINVAL, "Export is read-only".to_string()));
    } else if req.offset > size || req.len > size - req.offset {
        let msg = format!(
            "operation past EOF; From: {}, Len: {}, Size: {size}",
            req.offset, req.len
        );
        inc_error = Some((EINVAL, msg));
    } else if req.flags & !valid != 0 {
        let msg = format!(
            "unsupported flags for command {} (got 0x{:x})",
            cmd_name(req.ty),
            req.flags
        );
        inc_error = Some((EINVAL, msg));
    }
    Ok(Next::Go(Incoming {
        req,
        payload,
        contexts,
        error: inc_error,
    }))
}

fn too_long(len: u64) -> String {
    format!("len ({len}) is larger than max len ({MAX_BUFFER_SIZE})")
}

fn failed(req: Request, err: u32, msg: String) -> Incoming {
    Incoming {
        req,
        payload: None,
        contexts: None,
        error: Some((err, msg)),
    }
}

/// The payload of an extended block status request: an effect length and
/// the context ids wanted. Anything odd selects nothing (and the request
/// then fails), as in QEMU.
async fn status_payload<R>(
    r: &mut R,
    conn: &Conn,
    req: &mut Request,
) -> Result<Contexts, SessionError>
where
    R: AsyncRead + Unpin,
{
    let len = req.len;
    let mut sel = Contexts::default();
    req.len = 0;
    let max = 8 + 4 * conn.contexts.count() as u64;
    if !len.is_multiple_of(4) || !(8..=max).contains(&len) {
        drop_bytes(r, len).await?;
        return Ok(sel);
    }
    let mut buf = vec![0; len as usize];
    r.read_exact(&mut buf).await?;
    let mut effect = [0; 8];
    effect.copy_from_slice(&buf[..8]);
    for id in buf[8..].chunks_exact(4) {
        let id = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
        let slot = match id {
            META_BASE_ALLOCATION if conn.contexts.base_allocation => &mut sel.base_allocation,
            META_ALLOCATION_DEPTH if conn.contexts.allocation_depth => &mut sel.allocation_depth,
            _ => return Ok(Contexts::default()),
        };
        if *slot {
            return Ok(Contexts::default());
        }
        *slot = true;
    }
    req.len = u64::from_be_bytes(effect);
    Ok(sel)
}

/// A reply being built: header bytes with data buffers spliced in.
#[derive(Default)]
struct Reply {
    parts: Vec<Part>,
    /// Bytes after the last data part.
    tail: Vec<u8>,
}

enum Part {
    Bytes(Vec<u8>),
    Data(Arc<IoBuf>, std::ops::Range<usize>),
}

impl Part {
    fn as_slice(&self) -> &[u8] {
        match self {
            Part::Bytes(b) => b,
            Part::Data(buf, range) => &buf[range.clone()],
        }
    }
}

impl Reply {
    /// Where headers are appended.
    fn bytes(&mut self) -> &mut Vec<u8> {
        &mut self.tail
    }

    fn data(&mut self, buf: &Arc<IoBuf>, range: std::ops::Range<usize>) {
        self.parts.push(Part::Bytes(std::mem::take(&mut self.tail)));
        self.parts.push(Part::Data(buf.clone(), range));
    }
}

impl Conn {
    fn extended(&self) -> bool {
        self.mode >= Mode::Extended
    }

    /// QEMU's `nbd_send_generic_reply`: an error chunk (structured), a
    /// done chunk (extended, success) or a simple reply.
    fn generic(&self, out: &mut Reply, req: &Request, result: Result<(), (u32, &str)>) {
        let b = out.bytes();
        match result {
            Err((err, msg)) if self.mode >= Mode::Structured => {
                put_error_chunk(b, self.extended(), req, err, msg)
            }
            Ok(()) if self.extended() => {
                put_chunk_header(b, true, REPLY_FLAG_DONE, REPLY_TYPE_NONE, req, 0)
            }
            Ok(()) => put_simple_reply(b, 0, req.cookie),
            Err((err, _)) => put_simple_reply(b, err, req.cookie),
        }
    }

    fn io_result(&self, out: &mut Reply, req: &Request, r: io::Result<()>, what: &'static str) {
        let r = r.as_ref().map(|_| ()).map_err(|e| (nbd_errno(e), what));
        self.generic(out, req, r);
    }
}

/// Runs one request and sends its reply.
async fn handle(conn: Arc<Conn>, inc: Incoming) -> Reply {
    let conn = conn.as_ref();
    let req = inc.req;
    let mut out = Reply::default();
    if let Some((err, msg)) = &inc.error {
        if let Some(buf) = inc.payload {
            conn.recycle(buf);
        }
        conn.generic(&mut out, &req, Err((*err, msg)));
        return out;
    }
    let dev = conn.dev.as_ref();
    let fua = req.flags & CMD_FLAG_FUA != 0;
    match req.ty {
        CMD_READ => read(conn, &req, &mut out).await,
        CMD_WRITE => {
            let buf = inc.payload.unwrap_or_default();
            let (r, buf) = dev.write(req.offset, buf, fua).await;
            conn.recycle(buf);
            conn.io_result(&mut out, &req, r, "writing to file failed");
        }
        CMD_WRITE_ZEROES => {
            let may_unmap = req.flags & CMD_FLAG_NO_HOLE == 0;
            let mut r = dev.write_zeroes(req.offset, req.len, may_unmap).await;
            if r.is_ok() && fua {
                r = dev.flush().await;
            }
            conn.io_result(&mut out, &req, r, "writing to file failed");
        }
        CMD_FLUSH => {
            let r = dev.flush().await;
            conn.io_result(&mut out, &req, r, "flush failed");
        }
        CMD_TRIM => {
            let mut r = dev.discard(req.offset, req.len).await;
            if r.is_ok() && fua {
                r = dev.flush().await;
            }
            conn.io_result(&mut out, &req, r, "discard failed");
        }
        CMD_CACHE => {
            // QEMU prefetches with copy-on-read, which only reads what a
            // backing file would supply; a node without one does no I/O.
            // Reading here would pull zeroed (unwritten) extents into the
            // page cache, and ext4's SEEK_DATA then reports them as data.
            conn.io_result(&mut out, &req, Ok(()), "caching data failed");
        }
        CMD_BLOCK_STATUS => {
            let contexts = inc.contexts.as_ref().unwrap_or(&conn.contexts);
            if contexts.count() == 0 {
                let msg = if conn.contexts.count() > 0 {
                    "CMD_BLOCK_STATUS payload not valid"
                } else {
                    "CMD_BLOCK_STATUS not negotiated"
                };
                conn.generic(&mut out, &req, Err((EINVAL, msg)));
            } else if req.len == 0 {
                conn.generic(&mut out, &req, Err((EINVAL, "need non-zero length")));
            } else {
                block_status(conn, &req, contexts, &mut out).await;
            }
        }
        ty => {
            let msg = format!("invalid request type ({ty}) received");
            conn.generic(&mut out, &req, Err((EINVAL, &msg)));
        }
    }
    out
}

/// `NBD_CMD_READ`: structured clients get holes as `OFFSET_HOLE` chunks
/// unless they asked for one piece (`DF`).
async fn read(conn: &Conn, req: &Request, out: &mut Reply) {
    let dev = conn.dev.as_ref();
    let ext = conn.extended();
    if req.flags & CMD_FLAG_FUA != 0
        && let Err(e) = dev.flush().await
    {
        conn.generic(out, req, Err((nbd_errno(&e), "flush failed")));
        return;
    }
    let len = req.len as usize;
    if conn.mode >= Mode::Structured && req.flags & CMD_FLAG_DF == 0 && len > 0 {
        return sparse_read(conn, req, out).await;
    }
    let (r, buf) = dev.read(req.offset, conn.buffer(len)).await;
    if let Err(e) = r {
        conn.recycle(buf);
        conn.generic(out, req, Err((nbd_errno(&e), "reading from file failed")));
        return;
    }
    let buf = Arc::new(buf);
    if conn.mode >= Mode::Structured {
        if len > 0 {
            put_data_chunk_header(out.bytes(), ext, true, req, req.offset, len as u64);
            out.data(&buf, 0..len);
        } else {
            put_chunk_header(out.bytes(), ext, REPLY_FLAG_DONE, REPLY_TYPE_NONE, req, 0);
        }
    } else {
        put_simple_reply(out.bytes(), 0, req.cookie);
        out.data(&buf, 0..len);
    }
}

/// QEMU's `nbd_co_send_sparse_read`: one chunk per extent, holes without
/// data. Only the data extents are read.
async fn sparse_read(conn: &Conn, req: &Request, out: &mut Reply) {
    let dev = conn.dev.as_ref();
    let ext = conn.extended();
    // (offset in request, length, is a hole), merged.
    let mut extents: Vec<(u64, u64, bool)> = Vec::new();
    let mut progress = 0;
    while progress < req.len {
        let st = match dev
            .block_status(req.offset + progress, req.len - progress)
            .await
        {
            Ok(st) => st,
            Err(e) => {
                let msg = format!("unable to check for holes: {}", strerror(&e));
                conn.generic(out, req, Err((nbd_errno(&e), &msg)));
                return;
            }
        };
        let n = st.len.clamp(1, req.len - progress);
        match extents.last_mut() {
            Some(last) if last.2 == st.zero => last.1 += n,
            _ => extents.push((progress, n, st.zero)),
        }
        progress += n;
    }
    // One read when everything is data (the common case).
    let mut whole = None;
    if extents.len() == 1 && !extents[0].2 {
        let (r, buf) = dev.read(req.offset, conn.buffer(req.len as usize)).await;
        if let Err(e) = r {
            conn.recycle(buf);
            conn.generic(out, req, Err((nbd_errno(&e), "reading from file failed")));
            return;
        }
        whole = Some(Arc::new(buf));
    }
    let last = extents.len() - 1;
    for (i, (off, n, hole)) in extents.into_iter().enumerate() {
        let done = i == last;
        let offset = req.offset + off;
        if hole {
            put_hole_chunk(out.bytes(), ext, done, req, offset, n as u32);
            continue;
        }
        let buf = match &whole {
            Some(b) => b.clone(),
            None => {
                let (r, buf) = dev.read(offset, conn.buffer(n as usize)).await;
                if let Err(e) = r {
                    conn.recycle(buf);
                    // Earlier chunks are valid; the error chunk ends the reply.
                    conn.generic(out, req, Err((nbd_errno(&e), "reading from file failed")));
                    return;
                }
                Arc::new(buf)
            }
        };
        let start = if whole.is_some() { off as usize } else { 0 };
        put_data_chunk_header(out.bytes(), ext, done, req, offset, n);
        out.data(&buf, start..start + n as usize);
    }
}

/// `NBD_CMD_BLOCK_STATUS`: one chunk per selected context, the last one
/// flagged done.
async fn block_status(conn: &Conn, req: &Request, contexts: &Contexts, out: &mut Reply) {
    let one = req.flags & CMD_FLAG_REQ_ONE != 0;
    let max = if one { 1 } else { MAX_EXTENTS };
    let mut wanted = Vec::new();
    if contexts.base_allocation {
        wanted.push(META_BASE_ALLOCATION);
    }
    if contexts.allocation_depth {
        wanted.push(META_ALLOCATION_DEPTH);
    }
    let n = wanted.len();
    for (i, id) in wanted.into_iter().enumerate() {
        match extents(conn, req, id, max).await {
            Ok(ex) => {
                put_block_status_chunk(out.bytes(), conn.extended(), i + 1 == n, req, id, &ex)
            }
            Err(e) => {
                conn.generic(out, req, Err((nbd_errno(&e), "can't get block status")));
                return;
            }
        }
    }
}

/// Extents of one context from `BlockDevice::block_status`, merged as
/// QEMU's `nbd_extent_array_add` does (32-bit lengths unless extended).
async fn extents(conn: &Conn, req: &Request, context: u32, max: usize) -> io::Result<Vec<Extent>> {
    let limit = if conn.mode >= Mode::Extended {
        u64::MAX
    } else {
        u64::from(u32::MAX)
    };
    let mut out: Vec<Extent> = Vec::new();
    let mut offset = req.offset;
    let end = req.offset + req.len;
    while offset < end {
        let st = conn.dev.block_status(offset, end - offset).await?;
        let len = st.len.clamp(1, end - offset);
        let flags = if context == META_BASE_ALLOCATION {
            (if st.data { 0 } else { STATE_HOLE }) | (if st.zero { STATE_ZERO } else { 0 })
        } else {
            u32::from(st.allocated)
        };
        offset += len;
        if let Some(last) = out.last_mut()
            && last.flags == flags
            && last.len.saturating_add(len) <= limit
        {
            last.len += len;
            continue;
        }
        if out.len() == max {
            break;
        }
        out.push(Extent { len, flags });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::time::{Duration, Instant};

    #[test]
    fn poll_budget_grows_with_quick_clients_and_fades_with_slow_ones() {
        let mut p = Poller::new(Some(0));
        assert!(p.budget.is_zero());
        p.waited(Duration::from_micros(20));
        assert_eq!(p.budget, POLL_MIN);
        for _ in 0..10 {
            p.waited(Duration::from_micros(20));
        }
        assert_eq!(p.budget, POLL_MAX);
        for _ in 0..5 {
            p.waited(Duration::from_millis(5));
        }
        assert!(p.budget.is_zero(), "{:?}", p.budget);
    }

    #[test]
    fn spin_stops_at_data_and_skips_deep_queues() {
        let (a, mut b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        let mut p = Poller::new(Some(a.as_raw_fd()));
        p.budget = Duration::from_millis(50);
        // Nothing to read: the whole budget is spent.
        let t = Instant::now();
        p.spin(1);
        assert!(t.elapsed() >= Duration::from_millis(50));
        // More than one request since the last sleep: no polling at all.
        let t = Instant::now();
        p.spin(2);
        assert!(t.elapsed() < Duration::from_millis(20));
        // Data waiting: back at once.
        std::io::Write::write_all(&mut b, b"x").expect("write");
        let t = Instant::now();
        p.spin(1);
        assert!(t.elapsed() < Duration::from_millis(20));
    }
}
