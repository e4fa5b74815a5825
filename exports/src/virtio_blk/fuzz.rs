//! The driver's side of a split virtqueue, laid out in real guest memory
//! (`GuestMemoryMmap` behind a `GuestMemoryAtomic`, as vhost-user maps it),
//! and the fuzzing entry point built on it: `exports/fuzz` (cargo-fuzz,
//! nightly) and the stable test `exports/tests/virtio_blk_fuzz.rs` both
//! call [`chain_input`]. The engine's unit tests use [`Driver`] and
//! [`MemDisk`] too.
//!
//! The contract checked: whatever the driver put in memory, the engine
//! neither panics nor hangs, writes guest memory only inside the chain's
//! device-writable descriptors, and reports a used length no larger than
//! those descriptors.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use storage_block::{BlockDevice, BlockStatus, BufResult, IoBuf, IoFuture, NodeInfo};
use virtio_bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::split::Descriptor;
use virtio_queue::{DescriptorChain, Queue, QueueT};
use vm_memory::{
    Bytes, GuestAddress, GuestAddressSpace, GuestMemory, GuestMemoryAtomic, GuestMemoryError,
    GuestMemoryLoadGuard, GuestMemoryMmap, Permissions,
};

use super::{BlkOptions, Engine};

/// Guest memory as the vhost-user transport holds it.
pub type Memory = GuestMemoryAtomic<GuestMemoryMmap<()>>;
/// What a popped chain carries: a guard that keeps the mapping alive.
pub type MemoryGuard = GuestMemoryLoadGuard<GuestMemoryMmap<()>>;

/// Where the rings live: in the first region, below [`DATA`].
pub const DESC_TABLE: u64 = 0x0;
pub const AVAIL_RING: u64 = 0x1000;
pub const USED_RING: u64 = 0x2000;
/// Start of the memory free for request buffers.
pub const DATA: u64 = 0x4000;
/// The largest queue the ring layout above holds.
pub const MAX_QUEUE_SIZE: u16 = 256;

/// One descriptor of a chain to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
    /// Device-writable.
    pub write: bool,
}

impl Desc {
    /// Device-readable.
    pub fn r(addr: u64, len: u32) -> Desc {
        Desc {
            addr,
            len,
            write: false,
        }
    }

    /// Device-writable.
    pub fn w(addr: u64, len: u32) -> Desc {
        Desc {
            addr,
            len,
            write: true,
        }
    }
}

/// Setting up the driver side failed (a test's own mistake, not the
/// engine's).
#[derive(Debug)]
pub enum DriverError {
    Memory(String),
    Queue(virtio_queue::Error),
}

impl std::fmt::Display for DriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DriverError::Memory(e) => write!(f, "guest memory: {e}"),
            DriverError::Queue(e) => write!(f, "virtqueue: {e}"),
        }
    }
}

impl std::error::Error for DriverError {}

impl From<GuestMemoryError> for DriverError {
    fn from(e: GuestMemoryError) -> Self {
        DriverError::Memory(e.to_string())
    }
}

/// A driver: guest memory with a split virtqueue in it, the device's
/// [`Queue`] over it, and a simple descriptor allocator.
pub struct Driver {
    mem: Memory,
    queue: Queue,
    size: u16,
    next_desc: u16,
    avail_idx: u16,
}

impl Driver {
    /// Guest memory of the given `(start, len)` regions (the first must
    /// start at 0 and hold the rings) and a ready queue of `size` entries.
    pub fn new(regions: &[(u64, usize)], size: u16) -> Result<Driver, DriverError> {
        if size > MAX_QUEUE_SIZE {
            return Err(DriverError::Queue(virtio_queue::Error::InvalidSize));
        }
        let ranges: Vec<_> = regions.iter().map(|&(a, l)| (GuestAddress(a), l)).collect();
        let mmap = GuestMemoryMmap::<()>::from_ranges(&ranges)
            .map_err(|e| DriverError::Memory(e.to_string()))?;
        if !mmap.check_range(GuestAddress(0), DATA as usize, Permissions::ReadWrite) {
            return Err(DriverError::Memory(
                "the rings need memory at [0, DATA)".into(),
            ));
        }
        let mut queue = Queue::new(size).map_err(DriverError::Queue)?;
        queue.set_desc_table_address(Some(DESC_TABLE as u32), Some(0));
        queue.set_avail_ring_address(Some(AVAIL_RING as u32), Some(0));
        queue.set_used_ring_address(Some(USED_RING as u32), Some(0));
        queue.set_ready(true);
        Ok(Driver {
            mem: GuestMemoryAtomic::new(mmap),
            queue,
            size,
            next_desc: 0,
            avail_idx: 0,
        })
    }

    pub fn memory(&self) -> MemoryGuard {
        self.mem.memory()
    }

    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), DriverError> {
        Ok(self.mem.memory().write_slice(data, GuestAddress(addr))?)
    }

    pub fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>, DriverError> {
        let mut v = vec![0; len];
        self.mem.memory().read_slice(&mut v, GuestAddress(addr))?;
        Ok(v)
    }

    /// Writes descriptor `index` of the table at `table` as given.
    pub fn put_desc(&self, table: u64, index: u16, d: Descriptor) -> Result<(), DriverError> {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&d.addr().0.to_le_bytes());
        b[8..12].copy_from_slice(&d.len().to_le_bytes());
        b[12..14].copy_from_slice(&d.flags().to_le_bytes());
        b[14..16].copy_from_slice(&d.next().to_le_bytes());
        self.write(table + 16 * u64::from(index), &b)
    }

    /// Puts `descs` into the ring's table as one chain and makes it
    /// available; returns its head.
    pub fn add_chain(&mut self, descs: &[Desc]) -> Result<u16, DriverError> {
        let head = self.next_desc;
        for (i, d) in descs.iter().enumerate() {
            let idx = (head as usize + i) as u16 % self.size;
            let next = (idx + 1) % self.size;
            let mut flags = if d.write { VRING_DESC_F_WRITE } else { 0 };
            if i + 1 < descs.len() {
                flags |= VRING_DESC_F_NEXT;
            }
            self.put_desc(
                DESC_TABLE,
                idx,
                Descriptor::new(d.addr, d.len, flags as u16, next),
            )?;
        }
        self.next_desc = ((head as usize + descs.len().max(1)) % self.size as usize) as u16;
        self.make_available(head)?;
        Ok(head)
    }

    /// Writes `descs` as an indirect table at `table` and makes available
    /// a one-descriptor chain pointing at it.
    pub fn add_indirect(&mut self, table: u64, descs: &[Desc]) -> Result<u16, DriverError> {
        for (i, d) in descs.iter().enumerate() {
            let mut flags = if d.write { VRING_DESC_F_WRITE } else { 0 };
            if i + 1 < descs.len() {
                flags |= VRING_DESC_F_NEXT;
            }
            self.put_desc(
                table,
                i as u16,
                Descriptor::new(d.addr, d.len, flags as u16, i as u16 + 1),
            )?;
        }
        let head = self.next_desc;
        let len = 16 * descs.len() as u32;
        self.put_desc(
            DESC_TABLE,
            head,
            Descriptor::new(table, len, VRING_DESC_F_INDIRECT as u16, 0),
        )?;
        self.next_desc = (head + 1) % self.size;
        self.make_available(head)?;
        Ok(head)
    }

    /// Publishes `head` in the available ring.
    pub fn make_available(&mut self, head: u16) -> Result<(), DriverError> {
        let slot = u64::from(self.avail_idx % self.size);
        self.write(AVAIL_RING + 4 + 2 * slot, &head.to_le_bytes())?;
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.write(AVAIL_RING + 2, &self.avail_idx.to_le_bytes())
    }

    /// The device side: the next available chain.
    pub fn pop(&mut self) -> Option<DescriptorChain<MemoryGuard>> {
        self.queue.pop_descriptor_chain(self.mem.memory())
    }

    /// The device side: puts a served chain on the used ring.
    pub fn add_used(&mut self, head: u16, len: u32) -> Result<(), DriverError> {
        let mem = self.mem.memory();
        self.queue
            .add_used(&*mem, head, len)
            .map_err(DriverError::Queue)
    }

    /// The driver's view of used ring entry `i`: (head, length).
    pub fn used(&self, i: u16) -> Result<(u32, u32), DriverError> {
        let b = self.read(USED_RING + 4 + 8 * u64::from(i % self.size), 8)?;
        let id = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let len = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        Ok((id, len))
    }
}

/// A RAM disk that records how it was asked, and fails on request.
pub struct MemDisk {
    state: Mutex<MemDiskState>,
}

/// What a [`MemDisk`] holds and saw.
#[derive(Debug, Default, Clone)]
pub struct MemDiskState {
    pub data: Vec<u8>,
    /// Every request fails with EIO.
    pub fail: bool,
    /// `fua` of every write, in order.
    pub writes_fua: Vec<bool>,
    pub flushes: usize,
    /// `(offset, len)` of discards, `(offset, len, may_unmap)` of
    /// write-zeroes.
    pub discards: Vec<(u64, u64)>,
    pub write_zeroes: Vec<(u64, u64, bool)>,
}

impl MemDisk {
    pub fn new(size: usize) -> Arc<MemDisk> {
        Arc::new(MemDisk {
            state: Mutex::new(MemDiskState {
                data: vec![0; size],
                ..MemDiskState::default()
            }),
        })
    }

    pub fn state(&self) -> MutexGuard<'_, MemDiskState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn range(&self, s: &MemDiskState, offset: u64, len: u64) -> io::Result<std::ops::Range<usize>> {
        if s.fail {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        match offset.checked_add(len) {
            Some(end) if end <= s.data.len() as u64 => Ok(offset as usize..end as usize),
            _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        }
    }
}

impl BlockDevice for MemDisk {
    fn size(&self) -> u64 {
        self.state().data.len() as u64
    }

    fn read(&self, offset: u64, mut buf: IoBuf) -> IoFuture<'_, BufResult> {
        let s = self.state();
        let r = self
            .range(&s, offset, buf.len() as u64)
            .map(|r| buf.copy_from_slice(&s.data[r]));
        drop(s);
        Box::pin(async move { (r, buf) })
    }

    fn write(&self, offset: u64, buf: IoBuf, fua: bool) -> IoFuture<'_, BufResult> {
        let mut s = self.state();
        let r = self.range(&s, offset, buf.len() as u64);
        let r = r.map(|r| {
            s.data[r].copy_from_slice(&buf);
            s.writes_fua.push(fua);
        });
        drop(s);
        Box::pin(async move { (r, buf) })
    }

    fn flush(&self) -> IoFuture<'_, io::Result<()>> {
        let mut s = self.state();
        let r = self.range(&s, 0, 0).map(|_| s.flushes += 1);
        drop(s);
        Box::pin(async move { r })
    }

    fn discard(&self, offset: u64, len: u64) -> IoFuture<'_, io::Result<()>> {
        let mut s = self.state();
        let r = self
            .range(&s, offset, len)
            .map(|_| s.discards.push((offset, len)));
        drop(s);
        Box::pin(async move { r })
    }

    fn write_zeroes(&self, offset: u64, len: u64, may_unmap: bool) -> IoFuture<'_, io::Result<()>> {
        let mut s = self.state();
        let r = self.range(&s, offset, len).map(|r| {
            s.data[r].fill(0);
            s.write_zeroes.push((offset, len, may_unmap));
        });
        drop(s);
        Box::pin(async move { r })
    }

    fn block_status(&self, offset: u64, len: u64) -> IoFuture<'_, io::Result<BlockStatus>> {
        let s = self.state();
        let r = self.range(&s, offset, len).map(|_| BlockStatus {
            len,
            data: true,
            zero: false,
            allocated: true,
        });
        drop(s);
        Box::pin(async move { r })
    }

    fn resize(&self, size: u64) -> IoFuture<'_, io::Result<()>> {
        self.state().data.resize(size as usize, 0);
        Box::pin(async { Ok(()) })
    }

    fn info(&self) -> NodeInfo {
        NodeInfo::plain("memdisk", self.size())
    }
}

/// Size of the fuzzed disk: small, so that ranges often hit its end.
pub const FUZZ_DISK_SIZE: usize = 64 * 1024;
/// Guest memory of the fuzzed device: two regions with a hole between
/// them, so that descriptors straddle region ends and hit the hole.
pub const FUZZ_REGIONS: [(u64, usize); 2] = [(0, 0x10000), (0x20000, 0x10000)];
/// Where [`chain_input`] copies its free-form bytes (headers, indirect
/// tables, data).
pub const FUZZ_DATA: u64 = 0x8000;
const FUZZ_QUEUE_SIZE: u16 = 16;

/// Runs the engine over whatever `data` describes:
///
/// - byte 0: options (bit 0 writable, bit 1 writethrough, bits 2-3 the
///   logical block size 512 << (0, 1, 3, 6));
/// - byte 1: `n`, then `n % 17` raw 16-byte descriptors for the ring's
///   table;
/// - then `k`, then `k % 17` little-endian u16 heads made available;
/// - the rest is copied to guest memory at [`FUZZ_DATA`].
///
/// Panics (the fuzzer's "crash") if serving a chain panics or takes more
/// than a few seconds, writes guest memory outside the chain's
/// device-writable descriptors, or reports a used length longer than
/// them. Returns what happened to the chains, so a generator can check it
/// reaches the engine's request paths.
pub fn chain_input(data: &[u8]) -> FuzzStats {
    let mut input = data.iter().copied();
    let opts_byte = input.next().unwrap_or(0);
    let opts = BlkOptions {
        logical_block_size: 512 << [0, 1, 3, 6][usize::from(opts_byte >> 2 & 3)],
        num_queues: 1,
        writable: opts_byte & 1 != 0,
        writethrough: opts_byte & 2 != 0,
    };
    let mut driver = match Driver::new(&FUZZ_REGIONS, FUZZ_QUEUE_SIZE) {
        Ok(d) => d,
        Err(e) => panic!("cannot set up the fuzzed queue: {e}"),
    };
    let mut take = |n: usize| -> Vec<u8> { input.by_ref().take(n).collect() };
    let n = usize::from(take(1).first().copied().unwrap_or(0)) % 17;
    for i in 0..n {
        let mut raw = take(16);
        raw.resize(16, 0);
        setup(driver.write(DESC_TABLE + 16 * i as u64, &raw));
    }
    let k = usize::from(take(1).first().copied().unwrap_or(0)) % 17;
    let heads: Vec<u16> = (0..k)
        .map(|_| {
            let b = take(2);
            u16::from_le_bytes([
                b.first().copied().unwrap_or(0),
                b.get(1).copied().unwrap_or(0),
            ])
        })
        .collect();
    let rest = take(usize::MAX);
    let room = (FUZZ_REGIONS[0].1 as u64 - FUZZ_DATA) as usize;
    setup(driver.write(FUZZ_DATA, &rest[..rest.len().min(room)]));
    for h in heads {
        setup(driver.make_available(h));
    }

    let disk = MemDisk::new(FUZZ_DISK_SIZE);
    let engine = Engine::new(disk, &opts);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("cannot build a runtime: {e}"),
    };
    let mut stats = FuzzStats::default();
    while let Some(chain) = driver.pop() {
        let before = snapshot(&driver);
        let head = chain.head_index();
        let writable = writable_ranges(chain.clone());
        let served = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), engine.process_chain(chain)).await
        });
        let used = match served {
            Ok(Ok(n)) => {
                // The status byte: the last byte of the last writable
                // descriptor.
                let at = writable.last().map_or(0, |r| r.1 - 1);
                match driver.read(at, 1).map(|b| b[0]) {
                    Ok(0) => stats.ok += 1,
                    Ok(1) => stats.ioerr += 1,
                    Ok(2) => stats.unsupp += 1,
                    other => panic!("chain {head} served with status {other:?}"),
                }
                n
            }
            Ok(Err(_)) => {
                stats.refused += 1;
                0
            }
            Err(_) => panic!("serving chain {head} did not finish"),
        };
        let after = snapshot(&driver);
        check_writes(&before, &after, &writable);
        let max: u64 = writable.iter().map(|r| r.1 - r.0).sum();
        assert!(
            u64::from(used) <= max,
            "used length {used} exceeds the chain's {max} device-writable bytes"
        );
        // An out-of-range head cannot go on the used ring; the transport
        // handles that, not the engine.
        let _ = driver.add_used(head, used);
    }
    stats
}

/// What [`chain_input`] saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FuzzStats {
    /// Chains refused (used length 0).
    pub refused: usize,
    /// Chains served, by status byte: OK, IOERR, UNSUPP.
    pub ok: usize,
    pub ioerr: usize,
    pub unsupp: usize,
}

/// A driver-side setup step that cannot fail for in-range addresses.
fn setup(r: Result<(), DriverError>) {
    if let Err(e) = r {
        panic!("fuzz setup: {e}");
    }
}

/// The guest-physical `[start, end)` ranges of the chain's device-writable
/// descriptors (as far as the iterator walks).
fn writable_ranges(chain: DescriptorChain<MemoryGuard>) -> Vec<(u64, u64)> {
    chain
        .filter(|d| d.is_write_only())
        .map(|d| (d.addr().0, d.addr().0.saturating_add(u64::from(d.len()))))
        .collect()
}

fn snapshot(driver: &Driver) -> Vec<Vec<u8>> {
    FUZZ_REGIONS
        .iter()
        .map(|&(a, l)| match driver.read(a, l) {
            Ok(v) => v,
            Err(e) => panic!("cannot read guest memory back: {e}"),
        })
        .collect()
}

fn check_writes(before: &[Vec<u8>], after: &[Vec<u8>], writable: &[(u64, u64)]) {
    const PIECE: usize = 1024;
    for (r, (b, a)) in FUZZ_REGIONS.iter().zip(before.iter().zip(after)) {
        // Compare in pieces first: most of memory is unchanged.
        for (p, (bp, ap)) in b.chunks(PIECE).zip(a.chunks(PIECE)).enumerate() {
            if bp == ap {
                continue;
            }
            for (i, (x, y)) in bp.iter().zip(ap).enumerate() {
                let addr = r.0 + (p * PIECE + i) as u64;
                if x != y && !writable.iter().any(|&(s, e)| s <= addr && addr < e) {
                    panic!(
                        "the engine wrote guest memory at {addr:#x}, outside the device-writable descriptors"
                    );
                }
            }
        }
    }
}
