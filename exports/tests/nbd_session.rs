//! The NBD session over an in-memory stream: a hand-written client (built
//! on the codec) against `session::serve` and an in-memory block device.
#![cfg(feature = "nbd")]

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use storage_block::{BlockDevice, BlockStatus, BufResult, IoBuf, IoFuture, NodeInfo};
use storage_exports::Export;
use storage_exports::nbd::codec::*;
use storage_exports::nbd::session::serve;
use storage_exports::nbd::{ExportLookup, NbdExport, NbdExportOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const SIZE: u64 = 1 << 20;
const BLOCK: u64 = 4096;

/// A RAM disk: 4 KiB blocks that are all zero read as holes; reads at
/// offset `slow` take 200 ms (to see replies come out of order).
struct MemDisk {
    data: Mutex<Vec<u8>>,
    slow: Option<u64>,
}

fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

impl MemDisk {
    fn new(slow: Option<u64>) -> Arc<Self> {
        Arc::new(MemDisk {
            data: Mutex::new(vec![0; SIZE as usize]),
            slow,
        })
    }

    fn check(&self, offset: u64, len: u64) -> io::Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= SIZE => Ok(()),
            _ => Err(errno(libc::EINVAL)),
        }
    }

    fn fill(&self, offset: u64, len: u64, byte: u8) {
        let mut d = self.data.lock().expect("lock");
        d[offset as usize..(offset + len) as usize].fill(byte);
    }
}

impl BlockDevice for MemDisk {
    fn size(&self) -> u64 {
        SIZE
    }

    fn read(&self, offset: u64, mut buf: IoBuf) -> IoFuture<'_, BufResult> {
        Box::pin(async move {
            if let Err(e) = self.check(offset, buf.len() as u64) {
                return (Err(e), buf);
            }
            if self.slow == Some(offset) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let d = self.data.lock().expect("lock");
            let len = buf.len();
            buf.copy_from_slice(&d[offset as usize..offset as usize + len]);
            drop(d);
            (Ok(()), buf)
        })
    }

    fn write(&self, offset: u64, buf: IoBuf, _fua: bool) -> IoFuture<'_, BufResult> {
        Box::pin(async move {
            if let Err(e) = self.check(offset, buf.len() as u64) {
                return (Err(e), buf);
            }
            let mut d = self.data.lock().expect("lock");
            d[offset as usize..offset as usize + buf.len()].copy_from_slice(&buf);
            drop(d);
            (Ok(()), buf)
        })
    }

    fn flush(&self) -> IoFuture<'_, io::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn discard(&self, offset: u64, len: u64) -> IoFuture<'_, io::Result<()>> {
        Box::pin(async move { self.check(offset, len) })
    }

    fn write_zeroes(&self, offset: u64, len: u64, _unmap: bool) -> IoFuture<'_, io::Result<()>> {
        Box::pin(async move {
            self.check(offset, len)?;
            self.fill(offset, len, 0);
            Ok(())
        })
    }

    fn block_status(&self, offset: u64, len: u64) -> IoFuture<'_, io::Result<BlockStatus>> {
        Box::pin(async move {
            self.check(offset, len)?;
            let d = self.data.lock().expect("lock");
            let zero_at = |o: u64| {
                let b = o / BLOCK * BLOCK;
                d[b as usize..(b + BLOCK) as usize].iter().all(|&x| x == 0)
            };
            let first = zero_at(offset);
            let mut end = (offset / BLOCK + 1) * BLOCK;
            while end < offset + len && zero_at(end) == first {
                end += BLOCK;
            }
            let n = end.min(offset + len) - offset;
            Ok(BlockStatus {
                len: n,
                data: !first,
                zero: first,
                allocated: !first,
            })
        })
    }

    fn resize(&self, _size: u64) -> IoFuture<'_, io::Result<()>> {
        Box::pin(async { Err(errno(libc::ENOTSUP)) })
    }

    fn info(&self) -> NodeInfo {
        NodeInfo::plain("mem", SIZE)
    }
}

struct Exports(Vec<Arc<NbdExport>>);

impl ExportLookup for Exports {
    fn exports(&self) -> Vec<Arc<NbdExport>> {
        self.0.iter().filter(|e| !e.is_closing()).cloned().collect()
    }
}

fn export(name: &str, desc: Option<&str>, writable: bool, disk: Arc<MemDisk>) -> Arc<NbdExport> {
    NbdExport::new(
        NbdExportOptions {
            name: name.into(),
            description: desc.map(Into::into),
            writable,
            allocation_depth: true,
        },
        disk,
        true,
    )
}

/// A client speaking raw bytes, with a few helpers.
struct Client {
    s: DuplexStream,
}

impl Client {
    fn start(exports: Vec<Arc<NbdExport>>) -> Client {
        let (a, b) = tokio::io::duplex(1 << 20);
        let lookup: Arc<dyn ExportLookup> = Arc::new(Exports(exports));
        tokio::spawn(async move {
            let _ = serve(b, lookup, Some(Duration::from_secs(5))).await;
        });
        Client { s: a }
    }

    async fn hello(&mut self) {
        let mut g = [0; GREETING_SIZE];
        self.s.read_exact(&mut g).await.expect("greeting");
        assert_eq!(g, greeting());
        self.s
            .write_u32(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)
            .await
            .expect("flags");
    }

    async fn opt(&mut self, option: u32, data: &[u8]) {
        let h = OptionHeader {
            option,
            len: data.len() as u32,
        };
        self.s.write_all(&h.encode()).await.expect("write");
        self.s.write_all(data).await.expect("write");
    }

    /// One option reply: (option, type, payload).
    async fn rep(&mut self) -> (u32, u32, Vec<u8>) {
        assert_eq!(self.s.read_u64().await.expect("magic"), REPLY_MAGIC);
        let opt = self.s.read_u32().await.expect("opt");
        let ty = self.s.read_u32().await.expect("type");
        let len = self.s.read_u32().await.expect("len");
        let mut p = vec![0; len as usize];
        self.s.read_exact(&mut p).await.expect("payload");
        (opt, ty, p)
    }

    /// Replies up to the final one (ACK or an error).
    async fn reps(&mut self) -> Vec<(u32, u32, Vec<u8>)> {
        let mut v = Vec::new();
        loop {
            let r = self.rep().await;
            let last = r.1 == REP_ACK || r.1 & (1 << 31) != 0;
            v.push(r);
            if last {
                return v;
            }
        }
    }

    /// GO to `name`; returns the transmission flags.
    async fn go(&mut self, name: &str) -> u16 {
        self.opt(OPT_GO, &info_payload(name, &[])).await;
        let reps = self.reps().await;
        let (_, ty, _) = reps.last().expect("reply");
        assert_eq!(*ty, REP_ACK, "{reps:?}");
        let exp = reps
            .iter()
            .find(|r| r.1 == REP_INFO && r.2[..2] == INFO_EXPORT.to_be_bytes())
            .expect("NBD_INFO_EXPORT");
        u16::from_be_bytes([exp.2[10], exp.2[11]])
    }

    async fn request(&mut self, ext: bool, ty: u16, flags: u16, cookie: u64, off: u64, len: u64) {
        let r = Request {
            flags,
            ty,
            cookie,
            offset: off,
            len,
        };
        self.s.write_all(&r.encode(ext)).await.expect("request");
    }

    /// Reads one reply header and its payload (`data` bytes for a
    /// successful simple read reply).
    async fn reply(&mut self, data: usize) -> (ReplyHeader, Vec<u8>) {
        let magic = self.s.read_u32().await.expect("reply magic");
        let size = ReplyHeader::size_for(magic).expect("known magic");
        let mut b = magic.to_be_bytes().to_vec();
        b.resize(size, 0);
        self.s.read_exact(&mut b[4..]).await.expect("header");
        let h = ReplyHeader::decode(&b).expect("header");
        let len = match h {
            ReplyHeader::Simple { error: 0, .. } => data,
            ReplyHeader::Simple { .. } => 0,
            ReplyHeader::Chunk { len, .. } => len as usize,
        };
        let mut p = vec![0; len];
        self.s.read_exact(&mut p).await.expect("payload");
        (h, p)
    }

    /// All chunks of one structured reply.
    async fn chunks(&mut self) -> Vec<(u16, u16, Vec<u8>)> {
        let mut v = Vec::new();
        loop {
            let (h, p) = self.reply(0).await;
            let ReplyHeader::Chunk { flags, ty, .. } = h else {
                panic!("simple reply where a chunk was expected: {h:?}");
            };
            v.push((flags, ty, p));
            if flags & REPLY_FLAG_DONE != 0 {
                return v;
            }
        }
    }

    async fn eof(&mut self) -> bool {
        let mut b = [0; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(2), self.s.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

fn info_payload(name: &str, reqs: &[u16]) -> Vec<u8> {
    let mut p = (name.len() as u32).to_be_bytes().to_vec();
    p.extend_from_slice(name.as_bytes());
    p.extend_from_slice(&(reqs.len() as u16).to_be_bytes());
    for r in reqs {
        p.extend_from_slice(&r.to_be_bytes());
    }
    p
}

fn meta_payload(name: &str, queries: &[&str]) -> Vec<u8> {
    let mut p = (name.len() as u32).to_be_bytes().to_vec();
    p.extend_from_slice(name.as_bytes());
    p.extend_from_slice(&(queries.len() as u32).to_be_bytes());
    for q in queries {
        p.extend_from_slice(&(q.len() as u32).to_be_bytes());
        p.extend_from_slice(q.as_bytes());
    }
    p
}

#[tokio::test]
async fn list_info_and_unknown_options_keep_the_session_in_sync() {
    let a = export("a", Some("first"), true, MemDisk::new(None));
    let b = export("b", None, false, MemDisk::new(None));
    let mut c = Client::start(vec![a, b]);
    c.hello().await;
    c.opt(OPT_LIST, &[]).await;
    let reps = c.reps().await;
    assert_eq!(reps.len(), 3);
    assert_eq!(reps[0].2, server_entry("a", "first"));
    assert_eq!(reps[1].2, server_entry("b", ""));
    // Unknown options are refused and the next option still works.
    c.opt(42, b"some payload").await;
    let (opt, ty, msg) = c.rep().await;
    assert_eq!((opt, ty), (42, REP_ERR_UNSUP));
    assert_eq!(msg, b"Unsupported option 42 (<unknown>)");
    c.opt(OPT_STARTTLS, &[]).await;
    assert_eq!(c.rep().await.1, REP_ERR_POLICY);
    c.opt(OPT_INFO, &info_payload("nope", &[])).await;
    let (_, ty, msg) = c.rep().await;
    assert_eq!(ty, REP_ERR_UNKNOWN);
    assert_eq!(msg, b"export 'nope' not present");
    c.opt(OPT_INFO, &info_payload("a", &[INFO_NAME, INFO_BLOCK_SIZE]))
        .await;
    let reps = c.reps().await;
    let types: Vec<u16> = reps[..reps.len() - 1]
        .iter()
        .map(|r| u16::from_be_bytes([r.2[0], r.2[1]]))
        .collect();
    assert_eq!(
        types,
        [INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE, INFO_EXPORT]
    );
    assert_eq!(reps[2].2[2..], block_size_info(1, 4096, 32 << 20));
    // Lengths that do not add up: an error, still in sync.
    c.opt(OPT_GO, &[0, 0]).await;
    let (_, ty, msg) = c.rep().await;
    assert_eq!(ty, REP_ERR_INVALID);
    assert_eq!(msg, b"Inconsistent lengths in option go");
    c.opt(OPT_LIST, b"x").await;
    assert_eq!(c.rep().await.1, REP_ERR_INVALID);
    let flags = c.go("b").await;
    assert_eq!(
        flags,
        FLAG_HAS_FLAGS
            | FLAG_READ_ONLY
            | FLAG_SEND_FLUSH
            | FLAG_SEND_FUA
            | FLAG_SEND_CACHE
            | FLAG_CAN_MULTI_CONN
    );
}

#[tokio::test]
async fn export_name_and_abort() {
    let a = export("a", None, true, MemDisk::new(None));
    let mut c = Client::start(vec![a.clone()]);
    c.hello().await;
    c.opt(OPT_EXPORT_NAME, b"a").await;
    let size = c.s.read_u64().await.expect("size");
    let flags = c.s.read_u16().await.expect("flags");
    assert_eq!(size, SIZE);
    assert_eq!(
        flags,
        FLAG_HAS_FLAGS
            | FLAG_SEND_FLUSH
            | FLAG_SEND_FUA
            | FLAG_SEND_CACHE
            | FLAG_CAN_MULTI_CONN
            | FLAG_SEND_TRIM
            | FLAG_SEND_WRITE_ZEROES
            | FLAG_SEND_FAST_ZERO
    );
    assert_eq!(a.clients(), 1);
    c.request(false, CMD_DISC, 0, 1, 0, 0).await;
    assert!(c.eof().await);
    // The session ends after the peer saw EOF: wait for it to uncount.
    tokio::time::timeout(Duration::from_secs(5), a.clone().drained())
        .await
        .expect("client uncounted");
    assert_eq!(a.clients(), 0);

    // An unknown name ends the connection: there is no way to say no.
    let mut c = Client::start(vec![a.clone()]);
    c.hello().await;
    c.opt(OPT_EXPORT_NAME, b"").await;
    assert!(c.eof().await);

    let mut c = Client::start(vec![a]);
    c.hello().await;
    c.opt(OPT_ABORT, &[]).await;
    assert_eq!(c.rep().await.1, REP_ACK);
    assert!(c.eof().await);
}

#[tokio::test]
async fn simple_replies_write_read_and_errors() {
    let disk = MemDisk::new(None);
    let mut c = Client::start(vec![export("a", None, true, disk.clone())]);
    c.hello().await;
    c.go("a").await;
    c.request(false, CMD_WRITE, CMD_FLAG_FUA, 7, 4096, 512)
        .await;
    c.s.write_all(&[0xab; 512]).await.expect("data");
    let (h, _) = c.reply(0).await;
    assert_eq!(
        h,
        ReplyHeader::Simple {
            error: 0,
            cookie: 7
        }
    );
    c.request(false, CMD_READ, 0, 8, 4096, 1024).await;
    let (h, data) = c.reply(1024).await;
    assert_eq!(
        h,
        ReplyHeader::Simple {
            error: 0,
            cookie: 8
        }
    );
    assert_eq!(&data[..512], &[0xab; 512]);
    assert_eq!(&data[512..], &[0; 512]);
    // Past the end, bad flags, unknown commands, block status without
    // contexts, a read over 32 MiB: EINVAL and the connection goes on.
    for (ty, flags, off, len) in [
        (CMD_READ, 0, SIZE - 512, 1024),
        (CMD_READ, CMD_FLAG_DF, 0, 512),
        (99, 0, 0, 0),
        (CMD_BLOCK_STATUS, 0, 0, 4096),
        (CMD_READ, 0, 0, 64 << 20),
    ] {
        c.request(false, ty, flags, 9, off, len).await;
        let (h, _) = c.reply(0).await;
        assert_eq!(
            h,
            ReplyHeader::Simple {
                error: EINVAL,
                cookie: 9
            }
        );
    }
    c.request(false, CMD_WRITE_ZEROES, CMD_FLAG_NO_HOLE, 10, 4096, 4096)
        .await;
    assert_eq!(
        c.reply(0).await.0,
        ReplyHeader::Simple {
            error: 0,
            cookie: 10
        }
    );
    assert!(
        disk.data.lock().expect("lock")[4096..8192]
            .iter()
            .all(|&b| b == 0)
    );
    for ty in [CMD_FLUSH, CMD_TRIM, CMD_CACHE] {
        c.request(false, ty, 0, 11, 0, 4096).await;
        assert_eq!(
            c.reply(0).await.0,
            ReplyHeader::Simple {
                error: 0,
                cookie: 11
            }
        );
    }
    // A write too big to read: answered, then the connection ends.
    c.request(false, CMD_WRITE, 0, 12, 0, 33 << 20).await;
    assert_eq!(
        c.reply(0).await.0,
        ReplyHeader::Simple {
            error: EINVAL,
            cookie: 12
        }
    );
    assert!(c.eof().await);
}

#[tokio::test]
async fn read_only_export_refuses_writes() {
    let mut c = Client::start(vec![export("r", None, false, MemDisk::new(None))]);
    c.hello().await;
    c.opt(OPT_STRUCTURED_REPLY, &[]).await;
    assert_eq!(c.rep().await.1, REP_ACK);
    c.go("r").await;
    c.request(false, CMD_WRITE, 0, 1, 0, 512).await;
    c.s.write_all(&[1; 512]).await.expect("data");
    let ch = c.chunks().await;
    assert_eq!(ch[0].1, REPLY_TYPE_ERROR);
    // QEMU 10.0 sends EINVAL here, with the reason as the message.
    assert_eq!(ch[0].2[..4], EINVAL.to_be_bytes());
    assert_eq!(&ch[0].2[6..], b"Export is read-only");
}

#[tokio::test]
async fn structured_reads_holes_and_block_status() {
    let disk = MemDisk::new(None);
    disk.fill(8192, 4096, 0x5a);
    let mut c = Client::start(vec![export("a", None, true, disk)]);
    c.hello().await;
    c.opt(OPT_STRUCTURED_REPLY, &[]).await;
    assert_eq!(c.rep().await.1, REP_ACK);
    c.opt(OPT_LIST_META_CONTEXT, &meta_payload("a", &[])).await;
    let reps = c.reps().await;
    assert_eq!(reps[0].2, meta_context_entry(0, "base:allocation"));
    assert_eq!(reps[1].2, meta_context_entry(0, "qemu:allocation-depth"));
    c.opt(
        OPT_SET_META_CONTEXT,
        &meta_payload("a", &["base:allocation", "nope:x"]),
    )
    .await;
    let reps = c.reps().await;
    assert_eq!(reps.len(), 2);
    assert_eq!(reps[0].2, meta_context_entry(0, "base:allocation"));
    assert_eq!(c.go("a").await & FLAG_SEND_DF, FLAG_SEND_DF);

    c.request(false, CMD_READ, 0, 1, 4096, 12288).await;
    let ch = c.chunks().await;
    let kinds: Vec<u16> = ch.iter().map(|c| c.1).collect();
    assert_eq!(
        kinds,
        [
            REPLY_TYPE_OFFSET_HOLE,
            REPLY_TYPE_OFFSET_DATA,
            REPLY_TYPE_OFFSET_HOLE
        ]
    );
    assert_eq!(
        ch[0].2,
        [&4096u64.to_be_bytes()[..], &4096u32.to_be_bytes()].concat()
    );
    assert_eq!(ch[1].2[..8], 8192u64.to_be_bytes());
    assert!(ch[1].2[8..].iter().all(|&b| b == 0x5a));
    assert_eq!(ch[2].0, REPLY_FLAG_DONE);

    // DF: one data chunk.
    c.request(false, CMD_READ, CMD_FLAG_DF, 2, 4096, 12288)
        .await;
    let ch = c.chunks().await;
    assert_eq!(ch.len(), 1);
    assert_eq!(ch[0].2.len(), 8 + 12288);

    c.request(false, CMD_BLOCK_STATUS, 0, 3, 0, 16384).await;
    let ch = c.chunks().await;
    assert_eq!(ch[0].1, REPLY_TYPE_BLOCK_STATUS);
    let mut want = 0u32.to_be_bytes().to_vec();
    for (len, flags) in [(8192u32, 3u32), (4096, 0), (4096, 3)] {
        want.extend_from_slice(&len.to_be_bytes());
        want.extend_from_slice(&flags.to_be_bytes());
    }
    assert_eq!(ch[0].2, want);
    c.request(false, CMD_BLOCK_STATUS, CMD_FLAG_REQ_ONE, 4, 0, 16384)
        .await;
    let ch = c.chunks().await;
    assert_eq!(ch[0].2, want[..12]);

    // Errors carry QEMU's message.
    c.request(false, CMD_READ, 0, 5, SIZE, 1).await;
    let ch = c.chunks().await;
    assert_eq!(ch[0].1, REPLY_TYPE_ERROR);
    assert_eq!(
        &ch[0].2[6..],
        format!("operation past EOF; From: {SIZE}, Len: 1, Size: {SIZE}").as_bytes()
    );
}

#[tokio::test]
async fn extended_headers() {
    let disk = MemDisk::new(None);
    disk.fill(0, 4096, 1);
    let mut c = Client::start(vec![export("a", None, true, disk)]);
    c.hello().await;
    c.opt(OPT_EXTENDED_HEADERS, &[]).await;
    assert_eq!(c.rep().await.1, REP_ACK);
    c.opt(OPT_STRUCTURED_REPLY, &[]).await;
    assert_eq!(c.rep().await.1, REP_ERR_EXT_HEADER_REQD);
    c.opt(
        OPT_SET_META_CONTEXT,
        &meta_payload("a", &["base:allocation", "qemu:allocation-depth"]),
    )
    .await;
    assert_eq!(c.reps().await.len(), 3);
    c.go("a").await;
    c.request(true, CMD_WRITE, CMD_FLAG_PAYLOAD_LEN, 1, 4096, 4)
        .await;
    c.s.write_all(b"abcd").await.expect("data");
    let ch = c.chunks().await;
    assert_eq!((ch[0].0, ch[0].1), (REPLY_FLAG_DONE, REPLY_TYPE_NONE));
    c.request(true, CMD_BLOCK_STATUS, 0, 2, 0, 3 * 4096).await;
    let ch = c.chunks().await;
    assert_eq!(ch.len(), 2);
    assert_eq!(ch[0].1, REPLY_TYPE_BLOCK_STATUS_EXT);
    // base:allocation, 1 extent of data (8 KiB), 1 hole.
    assert_eq!(ch[0].2[..8], [0, 0, 0, 0, 0, 0, 0, 2]);
    assert_eq!(ch[0].2[8..16], 8192u64.to_be_bytes());
    // qemu:allocation-depth.
    assert_eq!(ch[1].2[..4], 1u32.to_be_bytes());
    assert_eq!(ch[1].0, REPLY_FLAG_DONE);
}

#[tokio::test]
async fn replies_come_out_of_order_without_interleaving() {
    let disk = MemDisk::new(Some(0));
    disk.fill(0, 65536, 7);
    let mut c = Client::start(vec![export("a", None, true, disk)]);
    c.hello().await;
    c.go("a").await;
    c.request(false, CMD_READ, 0, 1, 0, 65536).await;
    for cookie in 2..10 {
        c.request(false, CMD_READ, 0, cookie, 65536, 65536).await;
    }
    let mut order = Vec::new();
    for _ in 1..10 {
        let (h, data) = c.reply(65536).await;
        let ReplyHeader::Simple { error: 0, cookie } = h else {
            panic!("{h:?}");
        };
        let want = if cookie == 1 { 7 } else { 0 };
        assert!(data.iter().all(|&b| b == want));
        order.push(cookie);
    }
    assert_eq!(
        order.last(),
        Some(&1),
        "the slow read finishes last: {order:?}"
    );
}

#[tokio::test]
async fn bad_input_ends_the_connection_cleanly() {
    let a = export("a", None, true, MemDisk::new(None));
    // Wrong request magic: QEMU answers EINVAL, then hangs up.
    let mut c = Client::start(vec![a.clone()]);
    c.hello().await;
    c.go("a").await;
    c.s.write_all(&[0; REQUEST_SIZE]).await.expect("write");
    let (h, _) = c.reply(0).await;
    assert_eq!(
        h,
        ReplyHeader::Simple {
            error: EINVAL,
            cookie: 0
        }
    );
    assert!(c.eof().await);
    // A truncated request.
    let mut c = Client::start(vec![a.clone()]);
    c.hello().await;
    c.go("a").await;
    c.s.write_all(&[0x25, 0x60]).await.expect("write");
    c.s.shutdown().await.expect("shutdown");
    assert!(c.eof().await);
    // Garbage instead of an option.
    let mut c = Client::start(vec![a.clone()]);
    c.hello().await;
    c.s.write_all(b"GET / HTTP/1.1\r\n\r\n")
        .await
        .expect("write");
    assert!(c.eof().await);
    // An option longer than 32 MiB.
    let mut c = Client::start(vec![a.clone()]);
    c.hello().await;
    let h = OptionHeader {
        option: OPT_GO,
        len: 0,
    };
    let mut b = h.encode();
    b[12..].copy_from_slice(&(64u32 << 20).to_be_bytes());
    c.s.write_all(&b).await.expect("write");
    assert!(c.eof().await);
    // Unknown client flags.
    let mut c = Client::start(vec![a.clone()]);
    let mut g = [0; GREETING_SIZE];
    c.s.read_exact(&mut g).await.expect("greeting");
    c.s.write_u32(0x80).await.expect("flags");
    assert!(c.eof().await);
    // The session ends after the peer saw EOF: wait for it to uncount.
    tokio::time::timeout(Duration::from_secs(5), a.clone().drained())
        .await
        .expect("client uncounted");
    assert_eq!(a.clients(), 0);
}

#[tokio::test]
async fn export_shutdown_disconnects_clients() {
    let a = export("a", None, true, MemDisk::new(None));
    let mut c = Client::start(vec![a.clone()]);
    c.hello().await;
    c.go("a").await;
    assert_eq!(a.clients(), 1);
    a.shutdown(true);
    assert!(c.eof().await);
    tokio::time::timeout(Duration::from_secs(2), a.clone().drained())
        .await
        .expect("drained");
    // Gone for new clients too.
    let mut c = Client::start(vec![a]);
    c.hello().await;
    c.opt(OPT_GO, &info_payload("a", &[])).await;
    assert_eq!(c.rep().await.1, REP_ERR_UNKNOWN);
}

#[tokio::test]
async fn handshake_timeout() {
    let (a, b) = tokio::io::duplex(4096);
    let lookup: Arc<dyn ExportLookup> = Arc::new(Exports(Vec::new()));
    let r = serve(b, lookup, Some(Duration::from_millis(100))).await;
    drop(a);
    assert!(matches!(
        r,
        Err(storage_exports::nbd::session::SessionError::HandshakeTimeout)
    ));
}
