//! Entry point for fuzzing the NBD server with arbitrary client bytes:
//! `exports/fuzz` (cargo-fuzz, nightly) and the stable test
//! `exports/tests/nbd_fuzz.rs` both call [`session_input`].
//!
//! The contract checked: whatever a client sends, the session neither
//! panics nor hangs once the client has stopped sending; it answers or
//! disconnects.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use storage_block::{BlockDevice, BlockStatus, BufResult, Discard, IoBuf, IoFuture, NodeInfo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::codec::*;
use super::session::{ExportLookup, serve};
use super::{NbdExport, NbdExportOptions};

/// Size of the fuzzed export: small, so that ranges often hit its end.
const SIZE: u64 = 64 * 1024;

/// How the fuzz input is framed before it reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The bytes are the client's whole conversation, handshake included.
    Handshake,
    /// A valid handshake (fixed newstyle, `NBD_OPT_GO` on export "fuzz")
    /// comes first, so the bytes reach transmission in this mode.
    Transmission(Mode),
}

/// Feeds `data` to a server session and reads everything it answers.
/// Panics (the fuzzer's "crash") if the session does not end within a few
/// seconds of the client's end of input, or if anything in it panics.
pub fn session_input(start: Start, data: &[u8]) -> Vec<u8> {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("cannot build a runtime: {e}"),
    };
    rt.block_on(async {
        let (client, server) = tokio::io::duplex(1 << 20);
        let lookup: Arc<dyn ExportLookup> =
            Arc::new(Exports(vec![export("fuzz", true), export("ro", false)]));
        let session = tokio::spawn(serve(server, lookup, Some(Duration::from_secs(2))));
        let (mut rx, mut tx) = tokio::io::split(client);
        let mut input = match start {
            Start::Handshake => Vec::new(),
            Start::Transmission(mode) => handshake(mode),
        };
        input.extend_from_slice(data);
        let writer = async move {
            // The server may stop reading (it disconnected): that is fine.
            let _ = tx.write_all(&input).await;
            let _ = tx.shutdown().await;
            tx
        };
        let reader = async move {
            let mut out = Vec::new();
            let _ = rx.read_to_end(&mut out).await;
            out
        };
        let run = async { tokio::join!(writer, reader, session) };
        match tokio::time::timeout(Duration::from_secs(10), run).await {
            Ok((_, out, Ok(_))) => out,
            Ok((_, _, Err(e))) => panic!("the session task failed: {e}"),
            Err(_) => panic!("the session did not end after the client's end of input"),
        }
    })
}

/// A client's handshake up to `NBD_OPT_GO`, asking for `mode`.
fn handshake(mode: Mode) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).to_be_bytes());
    let option = |b: &mut Vec<u8>, opt: u32, data: &[u8]| {
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        b.extend_from_slice(&OptionHeader { option: opt, len }.encode());
        b.extend_from_slice(data);
    };
    match mode {
        Mode::Extended => option(&mut b, OPT_EXTENDED_HEADERS, &[]),
        Mode::Structured => option(&mut b, OPT_STRUCTURED_REPLY, &[]),
        _ => {}
    }
    if mode >= Mode::Structured {
        // Select base:allocation so block status requests get far.
        let mut meta = Vec::new();
        meta.extend_from_slice(&4u32.to_be_bytes());
        meta.extend_from_slice(b"fuzz");
        meta.extend_from_slice(&1u32.to_be_bytes());
        let query = b"base:allocation";
        meta.extend_from_slice(&(query.len() as u32).to_be_bytes());
        meta.extend_from_slice(query);
        option(&mut b, OPT_SET_META_CONTEXT, &meta);
    }
    let mut go = Vec::new();
    go.extend_from_slice(&4u32.to_be_bytes());
    go.extend_from_slice(b"fuzz");
    go.extend_from_slice(&0u16.to_be_bytes());
    option(&mut b, OPT_GO, &go);
    b
}

struct Exports(Vec<Arc<NbdExport>>);

impl ExportLookup for Exports {
    fn exports(&self) -> Vec<Arc<NbdExport>> {
        self.0.clone()
    }
}

fn export(name: &str, writable: bool) -> Arc<NbdExport> {
    let opts = NbdExportOptions {
        name: name.to_string(),
        description: Some("fuzzing".to_string()),
        writable,
        allocation_depth: true,
    };
    NbdExport::new(opts, Arc::new(RamDisk::default()), true)
}

/// A RAM disk whose all-zero 4 KiB blocks are holes.
struct RamDisk(Mutex<Vec<u8>>);

impl Default for RamDisk {
    fn default() -> Self {
        RamDisk(Mutex::new(vec![0; SIZE as usize]))
    }
}

impl RamDisk {
    /// The byte range, or EINVAL when it leaves the disk (the session
    /// must not send such requests; the fuzzer would find it here).
    fn range(offset: u64, len: u64) -> io::Result<std::ops::Range<usize>> {
        match offset.checked_add(len) {
            Some(end) if end <= SIZE => Ok(offset as usize..end as usize),
            _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        }
    }

    fn data(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fill(&self, offset: u64, len: u64) -> io::Result<()> {
        let r = Self::range(offset, len)?;
        self.data()[r].fill(0);
        Ok(())
    }
}

impl BlockDevice for RamDisk {
    fn size(&self) -> u64 {
        SIZE
    }

    fn read(&self, offset: u64, mut buf: IoBuf) -> IoFuture<'_, BufResult> {
        let r = Self::range(offset, buf.len() as u64).map(|r| buf.copy_from_slice(&self.data()[r]));
        Box::pin(async move { (r, buf) })
    }

    fn write(&self, offset: u64, buf: IoBuf, _fua: bool) -> IoFuture<'_, BufResult> {
        let r = Self::range(offset, buf.len() as u64).map(|r| self.data()[r].copy_from_slice(&buf));
        Box::pin(async move { (r, buf) })
    }

    fn flush(&self) -> IoFuture<'_, io::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn discard(&self, offset: u64, len: u64) -> IoFuture<'_, io::Result<()>> {
        let r = self.fill(offset, len);
        Box::pin(async move { r })
    }

    fn write_zeroes(&self, offset: u64, len: u64, _unmap: bool) -> IoFuture<'_, io::Result<()>> {
        let r = self.fill(offset, len);
        Box::pin(async move { r })
    }

    fn block_status(&self, offset: u64, len: u64) -> IoFuture<'_, io::Result<BlockStatus>> {
        let r = Self::range(offset, len).map(|r| {
            let d = self.data();
            let zero = |i: usize| d[i..(i | 4095) + 1].iter().all(|&x| x == 0);
            let first = zero(r.start);
            let mut end = (r.start | 4095) + 1;
            while end < r.end && zero(end) == first {
                end += 4096;
            }
            BlockStatus {
                len: (end.min(r.end) - r.start) as u64,
                data: !first,
                zero: first,
                allocated: !first,
            }
        });
        Box::pin(async move { r })
    }

    fn resize(&self, _size: u64) -> IoFuture<'_, io::Result<()>> {
        Box::pin(async { Err(io::Error::from_raw_os_error(libc::ENOTSUP)) })
    }

    fn info(&self) -> NodeInfo {
        NodeInfo {
            discard: Discard::Unmap,
            ..NodeInfo::plain("ram", SIZE)
        }
    }
}
