//! `readv`/`writev` with [`IoVecs`] over memory the caller owns (as an
//! export's guest memory): straight `preadv`/`pwritev` in the `file`
//! driver (buffered, tmpfs inline, thread pool, O_DIRECT aligned or not),
//! forwarded by `raw`, zeroes from `null-co`, the generic checks, and the
//! memory kept alive by its owner when the caller gives up on a request.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod util;

use std::alloc::Layout;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use storage_block::{BlockDevice, BlockGraph, DetectZeroes, IoBuf, IoVecs, NullOptions};
use util::*;

/// Page-aligned memory outside Rust's references, like a guest's.
struct Mem {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: plain memory owned by this value; accessed through raw pointers.
unsafe impl Send for Mem {}
// SAFETY: as above.
unsafe impl Sync for Mem {}

impl Mem {
    fn new(len: usize) -> Arc<Mem> {
        let layout = Layout::from_size_align(len, 4096).unwrap();
        // SAFETY: len > 0 in every test.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        Arc::new(Mem { ptr, len })
    }

    /// Vectors over `(offset, len)` pieces of this memory.
    fn iov(self: &Arc<Mem>, pieces: &[(usize, usize)]) -> IoVecs {
        let raw: Vec<(*mut u8, usize)> = pieces
            .iter()
            .map(|&(o, l)| {
                assert!(o + l <= self.len);
                // SAFETY: in bounds (checked above).
                (unsafe { self.ptr.add(o) }, l)
            })
            .collect();
        // SAFETY: the pieces lie in memory `self` keeps; the tests read it
        // only through copies while no request runs.
        unsafe { IoVecs::new(self.clone(), &raw) }
    }

    fn get(&self, off: usize, len: usize) -> Vec<u8> {
        assert!(off + len <= self.len);
        let mut v = vec![0; len];
        // SAFETY: in bounds; no request runs on this memory now.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(off), v.as_mut_ptr(), len) };
        v
    }

    fn set(&self, off: usize, data: &[u8]) {
        assert!(off + data.len() <= self.len);
        // SAFETY: as in get().
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(off), data.len()) };
    }
}

impl Drop for Mem {
    fn drop(&mut self) {
        // SAFETY: allocated in new() with this layout.
        unsafe { std::alloc::dealloc(self.ptr, Layout::from_size_align(self.len, 4096).unwrap()) };
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed) | 1)
        .collect()
}

async fn read(dev: &dyn BlockDevice, off: u64, len: usize) -> Vec<u8> {
    let (r, b) = dev.read(off, IoBuf::with_len(len)).await;
    r.unwrap();
    b.to_vec()
}

/// Scatter/gather round trips against a file node; `direct` opens with
/// O_DIRECT (then returns early where the file system refuses it).
async fn roundtrip(s: Scratch, direct: bool) {
    let img = s.image("v.img", 4 << 20);
    let g = BlockGraph::new();
    let mut o = file("f", &img);
    o.cache.direct = Some(direct);
    if let Err(e) = g.add(&o) {
        assert!(direct, "{e}");
        eprintln!("O_DIRECT not available here: {e}");
        return;
    }
    let dev = g.get("f").unwrap();
    let mem = Mem::new(8 << 20);

    // Aligned pieces (what O_DIRECT takes straight), then odd ones (the
    // bounce path under O_DIRECT, straight otherwise).
    for (pieces, off) in [
        (vec![(0, 4096), (16384, 8192), (65536, 4096)], 8192u64),
        (vec![(100, 1000), (5000, 24), (9000, 3072)], 4096 + 512),
        (vec![(1 << 20, 3 << 20)], 0),
    ] {
        let len: usize = pieces.iter().map(|p| p.1).sum();
        let data = pattern(len, off as u8);
        let mut at = 0;
        for &(o, l) in &pieces {
            mem.set(o, &data[at..at + l]);
            at += l;
        }
        dev.writev(off, mem.iov(&pieces), false).await.unwrap();
        assert_eq!(read(&*dev, off, len).await, data, "write at {off}");
        assert_eq!(
            std::fs::read(&img).unwrap()[off as usize..][..len],
            data[..]
        );

        // Read into other pieces, after dirtying them.
        let back: Vec<(usize, usize)> = pieces.iter().map(|&(o, l)| (o + (4 << 20), l)).collect();
        for &(o, l) in &back {
            mem.set(o, &vec![0xee; l]);
        }
        dev.readv(off, mem.iov(&back)).await.unwrap();
        let mut got = Vec::new();
        for &(o, l) in &back {
            got.extend(mem.get(o, l));
        }
        assert_eq!(got, data, "read at {off}");
    }
    // FUA and the generic checks.
    dev.writev(0, mem.iov(&[(0, 4096)]), true).await.unwrap();
    let e = dev
        .readv((4 << 20) - 4096, mem.iov(&[(0, 8192)]))
        .await
        .unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
    let e = dev
        .writev(4 << 20, mem.iov(&[(0, 512)]), false)
        .await
        .unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
    dev.readv(4 << 20, mem.iov(&[])).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_scatter_gather() {
    roundtrip(Scratch::new(), false).await;
    roundtrip(Scratch::on_disk(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_scatter_gather_direct() {
    roundtrip(Scratch::new(), true).await;
    roundtrip(Scratch::on_disk(), true).await;
}

/// More pieces than one system call takes (UIO_MAXIOV is 1024).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_pieces_than_iov_max() {
    for s in [Scratch::new(), Scratch::on_disk()] {
        let img = s.image("m.img", 4 << 20);
        let g = BlockGraph::new();
        g.add(&file("f", &img)).unwrap();
        let dev = g.get("f").unwrap();
        let mem = Mem::new(4 << 20);
        let pieces: Vec<(usize, usize)> = (0..1500).map(|i| (i * 1024, 512)).collect();
        let data = pattern(1500 * 512, 3);
        for (i, &(o, l)) in pieces.iter().enumerate() {
            mem.set(o, &data[i * 512..i * 512 + l]);
        }
        dev.writev(4096, mem.iov(&pieces), false).await.unwrap();
        assert_eq!(read(&*dev, 4096, data.len()).await, data);
        let back: Vec<(usize, usize)> = pieces.iter().map(|&(o, l)| (o + 512, l)).collect();
        dev.readv(4096, mem.iov(&back)).await.unwrap();
        for (i, &(o, l)) in back.iter().enumerate() {
            assert_eq!(mem.get(o, l), data[i * 512..i * 512 + l], "piece {i}");
        }
    }
}

#[tokio::test]
async fn tail_past_end_of_file_reads_zeroes() {
    let s = Scratch::new();
    let img = s.image("t.img", 1000);
    std::fs::write(&img, pattern(1000, 5)).unwrap();
    let g = BlockGraph::new();
    g.add(&file("f", &img)).unwrap();
    // raw without size over the file: the sector rounding tail.
    g.add(&raw("r", reference("f"), Some(200), None)).unwrap();
    let mem = Mem::new(1 << 16);
    let f = g.get("f").unwrap();
    mem.set(0, &[0xee; 1024]);
    f.readv(0, mem.iov(&[(0, 24), (100, 1000)])).await.unwrap();
    let mut got = mem.get(0, 24);
    got.extend(mem.get(100, 1000));
    let mut expect = pattern(1000, 5);
    expect.resize(1024, 0);
    assert_eq!(got, expect);

    let r = g.get("r").unwrap();
    assert_eq!(r.size(), 1024);
    mem.set(0, &[0xee; 1024]);
    r.readv(0, mem.iov(&[(0, 1024)])).await.unwrap();
    let mut expect = pattern(1000, 5)[200..].to_vec();
    expect.resize(1024, 0);
    assert_eq!(mem.get(0, 1024), expect);
    // Writes go through raw's window.
    mem.set(0, &[7; 512]);
    r.writev(256, mem.iov(&[(0, 512)]), false).await.unwrap();
    assert_eq!(std::fs::read(&img).unwrap()[456..968], [7; 512]);
}

#[tokio::test]
async fn null_reads_zeroes_and_read_only_refuses() {
    let g = BlockGraph::new();
    g.add(&null("n", NullOptions::default())).unwrap();
    let n = g.get("n").unwrap();
    let mem = Mem::new(1 << 16);
    mem.set(0, &[0xee; 8192]);
    n.readv(0, mem.iov(&[(0, 4096), (4096, 4096)]))
        .await
        .unwrap();
    assert_eq!(mem.get(0, 8192), vec![0; 8192]);
    n.writev(0, mem.iov(&[(0, 4096)]), false).await.unwrap();

    let s = Scratch::new();
    let img = s.image("ro.img", 1 << 16);
    g.add(&file("ro", &img).read_only(true)).unwrap();
    let ro = g.get("ro").unwrap();
    let e = ro.writev(0, mem.iov(&[(0, 512)]), false).await.unwrap_err();
    assert_eq!(errno(&e), libc::EPERM);
    ro.readv(0, mem.iov(&[(0, 512)])).await.unwrap();
}

#[tokio::test]
async fn detect_zeroes_sees_vectored_writes() {
    let s = Scratch::new();
    let img = s.image("z.img", 1 << 20);
    std::fs::write(&img, pattern(1 << 20, 1)).unwrap();
    let g = BlockGraph::new();
    let mut o = file("f", &img);
    o.detect_zeroes = Some(DetectZeroes::On);
    g.add(&o).unwrap();
    let dev = g.get("f").unwrap();
    let mem = Mem::new(1 << 16);
    dev.writev(65536, mem.iov(&[(0, 8192), (16384, 8192)]), false)
        .await
        .unwrap();
    assert_eq!(read(&*dev, 65536, 16384).await, vec![0; 16384]);
}

/// A request whose future is dropped while its job runs on the thread
/// pool keeps the memory mapped until the job is done: the owner's last
/// reference goes only then.
#[test]
fn memory_outlives_an_abandoned_request() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .build()
        .unwrap();
    let s = Scratch::on_disk();
    let img = s.image("a.img", 16 << 20);
    let g = BlockGraph::new();
    g.add(&file("f", &img)).unwrap();
    let dev = g.get("f").unwrap();
    let mem = Mem::new(16 << 20);
    rt.block_on(async {
        // 16 MiB is above the inline limit: the read goes to the pool.
        let fut = dev.readv(0, mem.iov(&[(0, 16 << 20)]));
        let mut fut = std::pin::pin!(fut);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        if fut.as_mut().poll(&mut cx).is_pending() {
            // The job holds the owner now.
            assert!(Arc::strong_count(&mem) >= 2);
        }
    });
    // Dropped: the owner's reference goes when the job ends.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Arc::strong_count(&mem) > 1 {
        assert!(Instant::now() < deadline, "the pool job kept the memory");
        std::thread::yield_now();
    }
    drop(rt);
}
