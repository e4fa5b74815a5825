//! Serving virtio-blk requests against a block node, as qsd 10.0.2's
//! virtio-blk handler does: the same checks in the same order, the same
//! status for each outcome, the same used length.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use storage_block::BlockDevice;
use virtio_bindings::virtio_blk::*;
use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestMemory};

use super::config::{MAX_DISCARD_SECTORS, MAX_WRITE_ZEROES_SECTORS};
use super::request::{self, ChainError, Cursor, Request};
use super::{BlkOptions, SECTOR_SHIFT, SECTOR_SIZE};
use crate::buffers::BufferPool;

/// The id qsd's vhost-user-blk export answers to `GET_ID` (NUL included).
pub const VHOST_USER_BLK_SERIAL: &str = "vhost_user_blk";

/// The largest read or write qsd accepts: the block layer's
/// `BDRV_REQUEST_MAX_SECTORS` (`INT_MAX >> 9` sectors).
pub const MAX_REQUEST_SECTORS: u64 = (i32::MAX as u64) >> SECTOR_SHIFT;

/// Data moves between guest memory and the node in pieces of at most this
/// much, so a driver's 2 GiB request does not make us allocate 2 GiB.
pub const CHUNK: usize = 1 << 20;

/// Serves the requests of one export, on any transport and any queue.
pub struct Engine {
    dev: Arc<dyn BlockDevice>,
    block_size: u64,
    writable: bool,
    writeback: AtomicBool,
    /// The `GET_ID` answer, at most 20 bytes, NUL-terminated if shorter.
    serial: Vec<u8>,
    bufs: BufferPool,
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
            bufs: BufferPool::new(64, CHUNK),
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
    pub async fn process<M>(&self, chain: DescriptorChain<M>) -> u32
    where
        M: Deref + Clone + Send + Sync,
        M::Target: GuestMemory + Send + Sync,
    {
        self.process_chain(chain).await.unwrap_or(0)
    }

    /// [`Engine::process`], saying why a broken chain was not served (for
    /// the transport's log: qsd prints these and drops the chain, or, for
    /// descriptors it cannot map, stops the device).
    pub async fn process_chain<M>(&self, chain: DescriptorChain<M>) -> Result<u32, ChainError>
    where
        M: Deref + Clone + Send + Sync,
        M::Target: GuestMemory + Send + Sync,
    {
        let mem = chain.memory();
        let req = request::parse(chain.clone(), mem)?;
        let status = self.serve(mem, &req).await;
        // parse() checked the status byte against guest memory.
        mem.write_slice(&[status], req.status)
            .map_err(|_| ChainError::OutsideMemory {
                addr: req.status.0,
                len: 1,
            })?;
        Ok(req.in_len)
    }

    /// The status of one parsed request.
    pub async fn serve<G>(&self, mem: &G, req: &Request) -> u8
    where
        G: GuestMemory + Sync + ?Sized,
    {
        let status = match req.header.req_type & !VIRTIO_BLK_T_BARRIER {
            VIRTIO_BLK_T_IN => self.read(mem, req).await,
            VIRTIO_BLK_T_OUT => self.write(mem, req).await,
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

    async fn read<G>(&self, mem: &G, req: &Request) -> u32
    where
        G: GuestMemory + Sync + ?Sized,
    {
        let len = req.in_data_len();
        if !self.range_ok(req.header.sector, len) {
            return VIRTIO_BLK_S_IOERR;
        }
        let mut offset = req.header.sector << SECTOR_SHIFT;
        let mut cursor = Cursor::default();
        let mut left = len;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            let (res, buf) = self.dev.read(offset, self.bufs.take(n)).await;
            let ok = res.is_ok() && cursor.write(mem, &req.in_data, &buf).is_ok();
            self.bufs.put(buf);
            if !ok {
                return VIRTIO_BLK_S_IOERR;
            }
            offset += n as u64;
            left -= n as u64;
        }
        VIRTIO_BLK_S_OK
    }

    async fn write<G>(&self, mem: &G, req: &Request) -> u32
    where
        G: GuestMemory + Sync + ?Sized,
    {
        if !self.writable {
            return VIRTIO_BLK_S_IOERR;
        }
        let len = req.out_len();
        if !self.range_ok(req.header.sector, len) {
            return VIRTIO_BLK_S_IOERR;
        }
        let fua = !self.writeback();
        let mut offset = req.header.sector << SECTOR_SHIFT;
        let mut cursor = Cursor::default();
        let mut left = len;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            let mut buf = self.bufs.take(n);
            if cursor.read(mem, &req.out_data, &mut buf).is_err() {
                self.bufs.put(buf);
                return VIRTIO_BLK_S_IOERR;
            }
            let (res, buf) = self.dev.write(offset, buf, fua).await;
            self.bufs.put(buf);
            if res.is_err() {
                return VIRTIO_BLK_S_IOERR;
            }
            offset += n as u64;
            left -= n as u64;
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
        match Cursor::default().write(mem, &req.in_data, &self.serial[..room]) {
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
