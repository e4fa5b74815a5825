//! The `file` driver through the graph: data, zeroes, discard, block
//! status, resize, O_DIRECT with unaligned requests, option errors.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod util;

use std::sync::Arc;

use storage_block::{
    BlockDevice, BlockGraph, BlockStatus, DetectZeroes, Discard, IoBuf, Perms, is_zero,
};
use util::*;

fn pattern(len: usize, seed: u8) -> IoBuf {
    let mut b = IoBuf::with_len(len);
    for (i, x) in b.iter_mut().enumerate() {
        *x = (i as u8).wrapping_mul(31).wrapping_add(seed) | 1;
    }
    b
}

async fn read(dev: &dyn BlockDevice, off: u64, len: usize) -> std::io::Result<IoBuf> {
    let (r, b) = dev.read(off, IoBuf::with_len(len)).await;
    r.map(|()| b)
}

async fn write(dev: &dyn BlockDevice, off: u64, data: IoBuf) -> std::io::Result<()> {
    dev.write(off, data, false).await.0
}

#[tokio::test]
async fn read_write_roundtrip_and_bounds() {
    roundtrip_and_bounds(Scratch::new()).await;
    roundtrip_and_bounds(Scratch::on_disk()).await;
}

async fn roundtrip_and_bounds(s: Scratch) {
    let img = s.image("a.img", 1 << 20);
    let g = BlockGraph::new();
    g.add(&file("f", &img)).unwrap();
    let dev = g.get("f").unwrap();
    assert_eq!(dev.size(), 1 << 20);

    write(&*dev, 4096, pattern(8192, 3)).await.unwrap();
    assert_eq!(read(&*dev, 4096, 8192).await.unwrap(), pattern(8192, 3));
    // Unaligned, odd-sized I/O is fine with buffered I/O.
    write(&*dev, 1001, pattern(333, 9)).await.unwrap();
    assert_eq!(read(&*dev, 1001, 333).await.unwrap(), pattern(333, 9));
    let on_disk = std::fs::read(&img).unwrap();
    assert_eq!(&on_disk[1001..1334], &pattern(333, 9)[..]);
    // FUA write and flush.
    let (r, buf) = dev.write(0, pattern(512, 1), true).await;
    r.unwrap();
    assert_eq!(buf.len(), 512, "the buffer comes back");
    dev.flush().await.unwrap();

    // Past the end: EINVAL, like QEMU; a zero-length request at the end is fine.
    let e = read(&*dev, (1 << 20) - 511, 512).await.unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
    let e = write(&*dev, 1 << 20, pattern(1, 0)).await.unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
    assert_eq!(
        errno(&dev.write_zeroes(u64::MAX, 2, false).await.unwrap_err()),
        libc::EINVAL
    );
    assert_eq!(
        errno(&dev.discard(1 << 20, 1).await.unwrap_err()),
        libc::EINVAL
    );
    assert_eq!(
        errno(&dev.block_status(1 << 20, 1).await.unwrap_err()),
        libc::EINVAL
    );
    assert!(read(&*dev, 1 << 20, 0).await.unwrap().is_empty());
}

#[tokio::test]
async fn size_rounds_to_sectors_and_tail_reads_zero() {
    let s = Scratch::new();
    let img = s.image("c.img", 1000);
    std::fs::write(&img, vec![0xaa; 1000]).unwrap();
    let g = BlockGraph::new();
    g.add(&file("f", &img)).unwrap();
    let dev = g.get("f").unwrap();
    assert_eq!(dev.size(), 1024);
    let b = read(&*dev, 512, 512).await.unwrap();
    assert!(b[..488].iter().all(|&x| x == 0xaa));
    assert!(is_zero(&b[488..]));
    // Writing the tail extends the file.
    write(&*dev, 1020, pattern(4, 5)).await.unwrap();
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 1024);
}

#[tokio::test]
async fn read_only_refuses_writes_with_eperm() {
    let s = Scratch::new();
    let img = s.image("a.img", 65536);
    let g = BlockGraph::new();
    g.add(&file("f", &img).read_only(true)).unwrap();
    let dev = g.get("f").unwrap();
    assert_eq!(
        errno(&write(&*dev, 0, pattern(512, 0)).await.unwrap_err()),
        libc::EPERM
    );
    assert_eq!(
        errno(&dev.write_zeroes(0, 512, true).await.unwrap_err()),
        libc::EPERM
    );
    assert_eq!(errno(&dev.discard(0, 512).await.unwrap_err()), libc::EPERM);
    read(&*dev, 0, 512).await.unwrap();
    assert!(dev.info().read_only);
}

#[tokio::test]
async fn zeroes_discard_and_block_status() {
    zeroes_discard_status(Scratch::new()).await;
    zeroes_discard_status(Scratch::on_disk()).await;
}

async fn zeroes_discard_status(s: Scratch) {
    let img = s.image("a.img", 1 << 20);
    let g = BlockGraph::new();
    let mut o = file("f", &img);
    o.discard = Some(Discard::Unmap);
    g.add(&o).unwrap();
    let dev = g.get("f").unwrap();

    // Sparse: one hole over everything.
    let st = dev.block_status(0, 1 << 20).await.unwrap();
    assert_eq!(
        st,
        BlockStatus {
            len: 1 << 20,
            data: false,
            zero: true,
            allocated: true
        }
    );

    write(&*dev, 65536, pattern(65536, 7)).await.unwrap();
    let st = dev.block_status(0, 1 << 20).await.unwrap();
    assert!(!st.data && st.zero && st.len == 65536, "{st:?}");
    let st = dev.block_status(65536, 1 << 19).await.unwrap();
    assert!(st.data && !st.zero && st.len == 65536, "{st:?}");
    // A short request is clipped to its length.
    assert_eq!(dev.block_status(65536, 100).await.unwrap().len, 100);

    // write_zeroes without unmap keeps the range allocated but zero.
    dev.write_zeroes(65536, 4096, false).await.unwrap();
    assert!(is_zero(&read(&*dev, 65536, 4096).await.unwrap()));
    assert_eq!(
        read(&*dev, 69632, 4096).await.unwrap()[..],
        pattern(65536, 7)[4096..8192]
    );

    // write_zeroes with unmap punches a hole.
    dev.write_zeroes(65536 + 8192, 8192, true).await.unwrap();
    let st = dev.block_status(65536 + 8192, 8192).await.unwrap();
    assert!(st.zero && !st.data, "{st:?}");
    assert!(is_zero(&read(&*dev, 65536 + 8192, 8192).await.unwrap()));

    // discard=unmap: discard punches a hole.
    dev.discard(65536 + 32768, 32768).await.unwrap();
    let st = dev.block_status(65536 + 32768, 32768).await.unwrap();
    assert!(st.zero && !st.data, "{st:?}");
    assert!(is_zero(&read(&*dev, 65536 + 32768, 32768).await.unwrap()));
}

/// The driver remembers the last data extent it found; shrinking and
/// growing the image must not leave it answering "data" for the new hole.
#[tokio::test]
async fn block_status_after_shrink_and_grow() {
    let s = Scratch::new();
    let img = s.image("a.img", 1 << 20);
    let g = BlockGraph::new();
    g.add(&file("f", &img)).unwrap();
    let dev = g.get("f").unwrap();
    write(&*dev, 0, pattern(1 << 20, 3)).await.unwrap();
    let st = dev.block_status(4096, 1 << 19).await.unwrap();
    assert!(st.data && st.len == 1 << 19, "{st:?}");
    dev.resize(65536).await.unwrap();
    dev.resize(1 << 20).await.unwrap();
    let st = dev.block_status(131072, 4096).await.unwrap();
    assert!(!st.data && st.zero, "{st:?}");
    let st = dev.block_status(4096, 1 << 19).await.unwrap();
    assert!(st.data && st.len == 65536 - 4096, "{st:?}");
}

#[tokio::test]
async fn discard_is_ignored_by_default() {
    let s = Scratch::new();
    let img = s.image("a.img", 65536);
    let g = BlockGraph::new();
    g.add(&file("f", &img)).unwrap();
    let dev = g.get("f").unwrap();
    write(&*dev, 0, pattern(65536, 1)).await.unwrap();
    dev.discard(0, 65536).await.unwrap();
    assert_eq!(read(&*dev, 0, 65536).await.unwrap(), pattern(65536, 1));
    // may_unmap without discard=unmap still zeroes (whether the range
    // stays allocated is the file system's business: tmpfs reports its
    // fallocated pages as a hole).
    dev.write_zeroes(0, 4096, true).await.unwrap();
    assert!(is_zero(&read(&*dev, 0, 4096).await.unwrap()));
    assert_eq!(
        read(&*dev, 4096, 4096).await.unwrap()[..],
        pattern(65536, 1)[4096..8192]
    );
}

#[tokio::test]
async fn detect_zeroes_unmap_turns_zero_writes_into_holes() {
    let s = Scratch::new();
    let img = s.image("a.img", 65536);
    let g = BlockGraph::new();
    let mut o = file("f", &img);
    o.discard = Some(Discard::Unmap);
    o.detect_zeroes = Some(DetectZeroes::Unmap);
    g.add(&o).unwrap();
    let dev = g.get("f").unwrap();
    write(&*dev, 0, pattern(65536, 1)).await.unwrap();
    write(&*dev, 0, IoBuf::with_len(16384)).await.unwrap();
    let st = dev.block_status(0, 65536).await.unwrap();
    assert!(st.zero && !st.data && st.len == 16384, "{st:?}");

    // unmap needs discard=unmap.
    let mut o = file("g", &img);
    o.detect_zeroes = Some(DetectZeroes::Unmap);
    assert_eq!(
        g.add(&o).unwrap_err().desc(),
        "setting detect-zeroes to unmap is not allowed without setting discard operation to unmap"
    );
}

#[tokio::test]
async fn resize_grows_and_shrinks() {
    let s = Scratch::new();
    let img = s.image("a.img", 65536);
    let g = Arc::new(BlockGraph::new());
    g.add(&file("f", &img)).unwrap();
    g.resize("f", 1 << 20).await.unwrap();
    assert_eq!(g.get("f").unwrap().size(), 1 << 20);
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 1 << 20);
    g.resize("f", 1000).await.unwrap();
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 1000);
    assert_eq!(g.get("f").unwrap().size(), 1024);
}

#[tokio::test]
async fn open_errors_use_qemu_text() {
    let s = Scratch::new();
    let g = BlockGraph::new();
    let missing = format!("{}/nope.img", s.path());
    assert_eq!(
        g.add(&file("f", &missing)).unwrap_err().desc(),
        format!("Could not open '{missing}': No such file or directory")
    );
    assert_eq!(
        g.add(&file("f", s.path())).unwrap_err().desc(),
        format!("Could not open '{}': Is a directory", s.path())
    );
    assert_eq!(
        g.add(&file("f", "/dev/null")).unwrap_err().desc(),
        "'file' driver requires '/dev/null' to be a regular file"
    );
    let img = s.image("a.img", 512);
    let mut o = file("f", &img);
    o.driver = storage_block::DriverOptions::HostDevice(storage_block::FileOptions::new(&img));
    assert_eq!(
        g.add(&o).unwrap_err().desc(),
        format!("'host_device' driver requires '{img}' to be either a character or block device")
    );
    let mut o = file("f", &img);
    o.force_share = Some(true);
    assert_eq!(
        g.add(&o).unwrap_err().desc(),
        "force-share=on can only be used with read-only images"
    );
}

/// O_DIRECT (tmpfs takes it on current kernels; skipped where the file
/// system refuses it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_io_with_unaligned_requests() {
    direct_io(Scratch::new()).await;
    direct_io(Scratch::on_disk()).await;
}

async fn direct_io(s: Scratch) {
    let img = s.image("d.img", 1 << 20);
    let g = BlockGraph::new();
    let mut o = file("f", &img);
    o.cache.direct = Some(true);
    if let Err(e) = g.add(&o) {
        eprintln!("skipped: O_DIRECT not available here: {e}");
        return;
    }
    let dev = g.get("f").unwrap();
    let info = dev.info();
    assert!(info.cache_direct);
    let align = info.request_alignment as u64;
    assert!(align >= 512, "alignment {align}");

    // Aligned.
    write(&*dev, 0, pattern(8192, 1)).await.unwrap();
    assert_eq!(read(&*dev, 0, 8192).await.unwrap(), pattern(8192, 1));
    // Unaligned offset and length (read-modify-write underneath).
    write(&*dev, 100, pattern(1000, 2)).await.unwrap();
    assert_eq!(read(&*dev, 100, 1000).await.unwrap(), pattern(1000, 2));
    let all = read(&*dev, 0, 8192).await.unwrap();
    assert_eq!(all[..100], pattern(8192, 1)[..100]);
    assert_eq!(all[1100..], pattern(8192, 1)[1100..]);
    // Spanning several alignment blocks.
    write(&*dev, align - 7, pattern(3 * align as usize + 14, 3))
        .await
        .unwrap();
    assert_eq!(
        read(&*dev, align - 7, 3 * align as usize + 14)
            .await
            .unwrap(),
        pattern(3 * align as usize + 14, 3)
    );
    // Unaligned zeroes.
    dev.write_zeroes(10, 20, false).await.unwrap();
    assert!(is_zero(&read(&*dev, 10, 20).await.unwrap()));
    assert_eq!(
        read(&*dev, 0, 10).await.unwrap()[..],
        pattern(8192, 1)[..10]
    );
    let on_disk = std::fs::read(&img).unwrap();
    assert_eq!(
        on_disk[align as usize - 7..][..20],
        pattern(3 * align as usize + 14, 3)[..20]
    );

    // Concurrent unaligned writes into the same block lose nothing.
    let mut tasks = Vec::new();
    for i in 0..16u64 {
        let dev = dev.clone();
        tasks.push(tokio::spawn(async move {
            let (r, _) = dev
                .write(65536 + i * 16, IoBuf::from_slice(&[i as u8 + 1; 16]), false)
                .await;
            r.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let b = read(&*dev, 65536, 256).await.unwrap();
    for i in 0..16usize {
        assert!(
            b[i * 16..i * 16 + 16].iter().all(|&x| x == i as u8 + 1),
            "slot {i}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_requests_in_flight() {
    in_flight(Scratch::new()).await;
    in_flight(Scratch::on_disk()).await;
}

async fn in_flight(s: Scratch) {
    let img = s.image("a.img", 4 << 20);
    let g = Arc::new(BlockGraph::new());
    g.add(&file("f", &img)).unwrap();
    let user = g.attach("f", Perms::export(true)).unwrap();
    let dev = user.device().clone();
    let mut tasks = Vec::new();
    for i in 0..64u64 {
        let dev = dev.clone();
        tasks.push(tokio::spawn(async move {
            let data = pattern(65536, i as u8);
            let (r, data) = dev.write(i * 65536, data, false).await;
            r.unwrap();
            let (r, back) = dev.read(i * 65536, IoBuf::with_len(65536)).await;
            r.unwrap();
            assert_eq!(back, data);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// A block-status miss seeks (`SEEK_HOLE` walks every page on tmpfs, ~18
/// ms over 512 MiB allocated): it must run on the blocking pool, not on
/// the calling task; a hit in the one-extent cache answers inline.
#[test]
fn block_status_seeks_off_the_calling_task() {
    use std::task::{Context, Poll, Waker};
    // One pool thread, kept busy: a job sent there stays queued, so the
    // first poll of a miss is pending for sure (inline, it would be ready).
    let rt = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .build()
        .unwrap();
    rt.block_on(async {
        let s = Scratch::new();
        let img = s.image("img", 1 << 20);
        std::fs::write(&img, vec![1u8; 1 << 20]).unwrap();
        let g = BlockGraph::new();
        g.add(&file("f", &img)).unwrap();
        let dev = g.get("f").unwrap();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let busy = tokio::task::spawn_blocking(move || wait.recv());
        let mut cx = Context::from_waker(Waker::noop());
        let mut miss = dev.block_status(0, 4096);
        assert!(
            miss.as_mut().poll(&mut cx).is_pending(),
            "a cache miss seeked on the calling task"
        );
        release.send(()).unwrap();
        busy.await.unwrap().unwrap();
        let st = miss.await.unwrap();
        assert_eq!((st.len, st.data), (4096, true));
        let mut hit = dev.block_status(8192, 4096);
        match hit.as_mut().poll(&mut cx) {
            Poll::Ready(st) => assert_eq!(st.unwrap().len, 4096),
            Poll::Pending => panic!("a cache hit went to the pool"),
        }
    });
}
