//! Serving virtio-blk requests against a block node, as qsd 10.0.2's
//! virtio-blk handler does: the same checks in the same order, the same
//! status for each outcome, the same used length.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use storage_block::{BlockDevice, IoVecs};
use virtio_bindings::virtio_blk::*;
use virtio_queue::DescriptorChain;
use vm_memory::bitmap::Bitmap;
use vm_memory::{Address, Bytes, GuestMemory, Permissions};

use super::config::{MAX_DISCARD_SECTORS, MAX_WRITE_ZEROES_SECTORS};
use super::request::{self, ChainError, Request, Segment};
use super::{BlkOptions, SECTOR_SHIFT, SECTOR_SIZE};

/// The id qsd's vhost-user-blk export answers to `GET_ID` (NUL included).
pub const VHOST_USER_BLK_SERIAL: &str = "vhost_user_blk";

/// The largest read or write qsd accepts: the block layer's
/// `BDRV_REQUEST_MAX_SECTORS` (`INT_MAX >> 9` sectors).
pub const MAX_REQUEST_SECTORS: u64 = (i32::MAX as u64) >> SECTOR_SHIFT;

/// Reads and writes go to the node in pieces of at most this much: the
/// `file` driver moves them straight between guest memory and the file,
/// others copy through a buffer of this size, so a driver's 2 GiB
/// requests (or many aliasing one buffer) do not make us allocate 2 GiB
/// each.
pub const CHUNK: usize = 1 << 20;

/// Serves the requests of one export, on any transport and any queue.
pub struct Engine {
    dev: Arc<dyn BlockDevice>,
    block_size: u64,
    writable: bool,
    writeback: AtomicBool,
    /// The `GET_ID` answer, at most 20 bytes, NUL-terminated if shorter.
    serial: Vec<u8>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("block_size", &self.block_size)
            .field("writable", &self.writable)
            .field("writeback", &self.writeback)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine with qsd's vhost-user-blk serial; the write cache is on
    /// unless `writethrough` (qsd's export layer does that, whatever the
    /// config space's `wce` byte says at start).
    pub fn new(dev: Arc<dyn BlockDevice>, opts: &BlkOptions) -> Self {
        let mut e = Engine {
            dev,
            block_size: u64::from(opts.logical_block_size.max(1)),
            writable: opts.writable,
            writeback: AtomicBool::new(!opts.writethrough),
            serial: Vec::new(),
        };
        e.set_serial(VHOST_USER_BLK_SERIAL);
        e
    }

    /// Sets the `GET_ID` answer (VDUSE's `serial` option): the string and
    /// its NUL, cut at 20 bytes (`VIRTIO_BLK_ID_BYTES`).
    pub fn set_serial(&mut self, serial: &str) {
        let mut s = serial.as_bytes().to_vec();
        s.push(0);
        s.truncate(VIRTIO_BLK_ID_BYTES as usize);
        self.serial = s;
    }

    /// WCE from the config space: with writeback off every write is FUA.
    pub fn set_writeback(&self, on: bool) {
        self.writeback.store(on, Ordering::Relaxed);
    }

    pub fn writeback(&self) -> bool {
        self.writeback.load(Ordering::Relaxed)
    }

    /// Serves one descriptor chain and returns the used length: every
    /// device-writable byte of the chain, status included, as qsd reports
    /// it. A chain too broken to carry a status byte returns 0 and writes
    /// nothing (the caller still puts it on the used ring).
    ///
    /// Data moves straight between the guest memory the chain's `M` maps
    /// and the node; a clone of the chain goes with each piece of I/O and
    /// keeps that memory mapped even if this future is dropped half way
    /// (hence `'static`: a `GuestMemoryLoadGuard`, an `Arc` or a `&'static`).
    pub async fn process<M>(&self, chain: DescriptorChain<M>) -> u32
    where
        M: Deref + Clone + Send + Sync + 'static,
        M::Target: GuestMemory + Send + Sync,
    {
        self.process_chain(chain).await.unwrap_or(0)
    }

    /// [`Engine::process`], saying why a broken chain was not served (for
    /// the transport's log: qsd prints these and drops the chain, or, for
    /// descriptors it cannot map, stops the device).
    pub async fn process_chain<M>(&self, chain: DescriptorChain<M>) -> Result<u32, ChainError>
    where
        M: Deref + Clone + Send + Sync + 'static,
        M::Target: GuestMemory + Send + Sync,
    {
        // The chain itself keeps the memory mapped for the I/O it starts.
        let owner = Arc::new(chain);
        let mem = owner.memory();
        let req = request::parse((*owner).clone(), mem)?;
        let status = self.serve(&owner, &req).await;
        // parse() checked the status byte against guest memory.
        mem.write_slice(&[status], req.status)
            .map_err(|_| ChainError::OutsideMemory {
                addr: req.status.0,
                len: 1,
            })?;
        Ok(req.in_len)
    }

    /// The status of one parsed request over the memory `owner` maps.
    async fn serve<M>(&self, owner: &Arc<DescriptorChain<M>>, req: &Request) -> u8
    where
        M: Deref + Clone + Send + Sync + 'static,
        M::Target: GuestMemory + Send + Sync,
    {
        let mem = owner.memory();
        let status = match req.header.req_type & !VIRTIO_BLK_T_BARRIER {
            VIRTIO_BLK_T_IN => self.read(owner, req).await,
            VIRTIO_BLK_T_OUT => self.write(owner, req).await,
            VIRTIO_BLK_T_FLUSH => match self.dev.flush().await {
                Ok(()) => VIRTIO_BLK_S_OK,
                Err(_) => VIRTIO_BLK_S_IOERR,
            },
            VIRTIO_BLK_T_GET_ID => self.get_id(mem, req),
            t @ (VIRTIO_BLK_T_DISCARD | VIRTIO_BLK_T_WRITE_ZEROES) => {
                if self.writable {
                    self.discard_write_zeroes(mem, req, t).await
                } else {
                    VIRTIO_BLK_S_IOERR
                }
            }
            _ => VIRTIO_BLK_S_UNSUPP,
        };
        status as u8
    }

    /// qsd's range check: whole 512-byte sectors, at most the block
    /// layer's request size, a start aligned to the logical block size,
    /// inside the node.
    fn range_ok(&self, sector: u64, bytes: u64) -> bool {
        if !bytes.is_multiple_of(SECTOR_SIZE) {
            return false;
        }
        let sectors = bytes >> SECTOR_SHIFT;
        if sectors > MAX_REQUEST_SECTORS {
            return false;
        }
        // qsd shifts in 64 bits and lets high bits fall off; the range
        // test below refuses such sectors anyway.
        if !(sector << SECTOR_SHIFT).is_multiple_of(self.block_size) {
            return false;
        }
        let total = self.dev.size() >> SECTOR_SHIFT;
        sector <= total && sectors <= total - sector
    }

    async fn read<M>(&self, owner: &Arc<DescriptorChain<M>>, req: &Request) -> u32
    where
        M: Deref + Clone + Send + Sync + 'static,
        M::Target: GuestMemory + Send + Sync,
    {
        let len = req.in_data_len();
        if !self.range_ok(req.header.sector, len) {
            return VIRTIO_BLK_S_IOERR;
        }
        let offset = req.header.sector << SECTOR_SHIFT;
        for (at, pieces) in chunks(&req.in_data, CHUNK as u64) {
            let Some(iov) = io_vecs(owner, &pieces, Permissions::Write) else {
                return VIRTIO_BLK_S_IOERR;
            };
            let r = self.dev.readv(offset + at, iov).await;
            // A failed read may have written some of it too.
            mark_dirty(owner.memory(), &pieces);
            if r.is_err() {
                return VIRTIO_BLK_S_IOERR;
            }
        }
        VIRTIO_BLK_S_OK
    }

    async fn write<M>(&self, owner: &Arc<DescriptorChain<M>>, req: &Request) -> u32
    where
        M: Deref + Clone + Send + Sync + 'static,
        M::Target: GuestMemory + Send + Sync,
    {
        if !self.writable {
            return VIRTIO_BLK_S_IOERR;
        }
        let len = req.out_len();
        if !self.range_ok(req.header.sector, len) {
            return VIRTIO_BLK_S_IOERR;
        }
        let fua = !self.writeback();
        let offset = req.header.sector << SECTOR_SHIFT;
        for (at, pieces) in chunks(&req.out_data, CHUNK as u64) {
            let Some(iov) = io_vecs(owner, &pieces, Permissions::Read) else {
                return VIRTIO_BLK_S_IOERR;
            };
            if self.dev.writev(offset + at, iov, fua).await.is_err() {
                return VIRTIO_BLK_S_IOERR;
            }
        }
        VIRTIO_BLK_S_OK
    }

    /// The serial and its NUL, as much as fits in the buffer (and 20
    /// bytes); the rest of the buffer is left alone.
    fn get_id<G>(&self, mem: &G, req: &Request) -> u32
    where
        G: GuestMemory + ?Sized,
    {
        let room = req.in_data_len().min(self.serial.len() as u64) as usize;
        match request::write_segments(mem, &req.in_data, &self.serial[..room]) {
            Ok(()) => VIRTIO_BLK_S_OK,
            Err(_) => VIRTIO_BLK_S_IOERR,
        }
    }

    /// One `virtio_blk_discard_write_zeroes` range: qsd takes exactly one.
    async fn discard_write_zeroes<G>(&self, mem: &G, req: &Request, req_type: u32) -> u32
    where
        G: GuestMemory + Sync + ?Sized,
    {
        const RANGE_LEN: usize = 16;
        if req.out_len() > RANGE_LEN as u64 {
            return VIRTIO_BLK_S_UNSUPP;
        }
        let mut b = [0u8; RANGE_LEN];
        if request::read_segments(mem, &req.out_data, &mut b).is_err() {
            return VIRTIO_BLK_S_IOERR;
        }
        let mut sector = [0; 8];
        sector.copy_from_slice(&b[0..8]);
        let sector = u64::from_le_bytes(sector);
        let num_sectors = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        let flags = u32::from_le_bytes([b[12], b[13], b[14], b[15]]);
        let max = if req_type == VIRTIO_BLK_T_WRITE_ZEROES {
            MAX_WRITE_ZEROES_SECTORS
        } else {
            MAX_DISCARD_SECTORS
        };
        if num_sectors > max {
            return VIRTIO_BLK_S_IOERR;
        }
        let bytes = u64::from(num_sectors) << SECTOR_SHIFT;
        if !self.range_ok(sector, bytes) {
            return VIRTIO_BLK_S_IOERR;
        }
        if flags & !VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0 {
            return VIRTIO_BLK_S_UNSUPP;
        }
        let unmap = flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0;
        let offset = sector << SECTOR_SHIFT;
        let res = if req_type == VIRTIO_BLK_T_WRITE_ZEROES {
            self.dev.write_zeroes(offset, bytes, unmap).await
        } else if unmap {
            return VIRTIO_BLK_S_UNSUPP;
        } else {
            self.dev.discard(offset, bytes).await
        };
        match res {
            Ok(()) => VIRTIO_BLK_S_OK,
            Err(_) => VIRTIO_BLK_S_IOERR,
        }
    }
}

/// `segs` cut into consecutive windows of at most `max` bytes: (byte
/// offset of the window in the request, its segments).
pub(super) fn chunks(segs: &[Segment], max: u64) -> Vec<(u64, Vec<Segment>)> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let (mut start, mut fill) = (0u64, 0u64);
    for s in segs {
        let mut off = 0u32;
        while off < s.len {
            let n = (u64::from(s.len - off)).min(max - fill) as u32;
            cur.push(Segment {
                addr: s.addr.unchecked_add(u64::from(off)),
                len: n,
            });
            off += n;
            fill += u64::from(n);
            if fill == max {
                out.push((start, std::mem::take(&mut cur)));
                start += fill;
                fill = 0;
            }
        }
    }
    if !cur.is_empty() {
        out.push((start, cur));
    }
    out
}

/// The host addresses of `segs` in the memory `owner` maps, with `owner`
/// to keep them mapped; None if a segment is not (all) there.
fn io_vecs<M>(
    owner: &Arc<DescriptorChain<M>>,
    segs: &[Segment],
    access: Permissions,
) -> Option<IoVecs>
where
    M: Deref + Clone + Send + Sync + 'static,
    M::Target: GuestMemory + Send + Sync,
{
    let mem = owner.memory();
    let mut pieces = Vec::with_capacity(segs.len());
    for s in segs {
        let slices = mem.get_slices(s.addr, s.len as usize, access).ok()?;
        let mut got = 0;
        for slice in slices {
            let slice = slice.ok()?;
            pieces.push((slice.ptr_guard_mut().as_ptr(), slice.len()));
            got += slice.len();
        }
        if got != s.len as usize {
            return None;
        }
    }
    let keep: Arc<dyn Send + Sync> = owner.clone();
    // SAFETY: the pieces are host mappings of guest memory that `owner`
    // (a chain holding its `M`, in an Arc nobody mutates) derefs to, so
    // they stay mapped while it lives (vm-memory's plain mmap backend: the
    // regions are unmapped only when the memory object is dropped). The
    // guest shares them by nature; the block layer touches them only with
    // system calls and raw copies.
    Some(unsafe { IoVecs::new(keep, &pieces) })
}

/// A read wrote these segments behind vm-memory's back: tell its dirty
/// bitmap (live migration logging), if it keeps one.
fn mark_dirty<G: GuestMemory + ?Sized>(mem: &G, segs: &[Segment]) {
    for s in segs {
        if let Ok(slices) = mem.get_slices(s.addr, s.len as usize, Permissions::Write) {
            for slice in slices.flatten() {
                slice.bitmap().mark_dirty(0, slice.len());
            }
        }
    }
}
