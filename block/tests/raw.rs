//! `raw` over a child: the offset/size window, its checks, read-only and
//! option inheritance, resize.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod util;

use std::sync::Arc;

use storage_block::{BlockGraph, IoBuf, NullOptions, Perms};
use util::*;

#[tokio::test]
async fn window_maps_offsets_and_refuses_outside() {
    let s = Scratch::new();
    let img = s.image("a.img", 1 << 20);
    let g = BlockGraph::new();
    g.add(&file("f", &img)).unwrap();
    g.add(&raw("r", reference("f"), Some(4096), Some(8192)))
        .unwrap();
    let r = g.get("r").unwrap();
    assert_eq!(r.size(), 8192);

    let (res, _) = r.write(0, IoBuf::from_slice(&[7; 512]), false).await;
    res.unwrap();
    let (res, _) = r
        .write(8192 - 512, IoBuf::from_slice(&[9; 512]), false)
        .await;
    res.unwrap();
    let disk = std::fs::read(&img).unwrap();
    assert_eq!(&disk[4096..4608], &[7; 512]);
    assert_eq!(&disk[4096 + 8192 - 512..4096 + 8192], &[9; 512]);
    assert!(disk[..4096].iter().all(|&b| b == 0));

    for (off, len) in [(8192u64, 1usize), (8000, 512), (u64::MAX - 10, 20)] {
        let (res, _) = r.read(off, IoBuf::with_len(len)).await;
        assert_eq!(errno(&res.unwrap_err()), libc::EINVAL, "read {off}+{len}");
        let (res, _) = r.write(off, IoBuf::with_len(len), false).await;
        assert_eq!(errno(&res.unwrap_err()), libc::EINVAL, "write {off}+{len}");
    }
    assert_eq!(
        errno(&r.write_zeroes(8000, 512, false).await.unwrap_err()),
        libc::EINVAL
    );

    // Block status is relative to the window.
    g.add(&raw("big", reference("f"), Some(65536), Some(1 << 19)))
        .unwrap();
    let big = g.get("big").unwrap();
    let (res, _) = big.write(65536, IoBuf::from_slice(&[7; 4096]), false).await;
    res.unwrap();
    let st = big.block_status(0, 1 << 19).await.unwrap();
    assert!(!st.data && st.zero && st.len == 65536, "{st:?}");
    let st = big.block_status(65536, 1 << 18).await.unwrap();
    assert!(st.data && st.len == 4096, "{st:?}");
}

#[tokio::test]
async fn default_size_is_rest_of_child() {
    let s = Scratch::new();
    let img = s.image("a.img", 1 << 20);
    let g = BlockGraph::new();
    g.add(&raw("r", inline(file_inline(&img)), Some(65536), None))
        .unwrap();
    assert_eq!(g.get("r").unwrap().size(), (1 << 20) - 65536);
    g.add(&raw("r0", inline(file_inline(&img)), None, None))
        .unwrap();
    assert_eq!(g.get("r0").unwrap().size(), 1 << 20);
    // Unaligned offset: the size rounds up to a sector, the tail reads zero.
    g.add(&raw("r1", inline(file_inline(&img)), Some(100), None))
        .unwrap();
    let r1 = g.get("r1").unwrap();
    assert_eq!(r1.size(), 1 << 20);
    let (res, b) = r1.read((1 << 20) - 512, IoBuf::from_slice(&[1; 512])).await;
    res.unwrap();
    assert!(b.iter().all(|&x| x == 0));
}

#[tokio::test]
async fn window_checks_use_qemu_text() {
    let s = Scratch::new();
    let img = s.image("a.img", 1 << 20);
    let g = BlockGraph::new();
    g.add(&file("f", &img)).unwrap();
    let cases = [
        (
            Some(2_000_000),
            None,
            "Offset (2000000) cannot be greater than size of the containing file (1048576)",
        ),
        (
            Some(1_048_000),
            Some(1000),
            "The sum of offset (1048000) and size (1000) has to be smaller or equal to the  actual size of the containing file (1048576)",
        ),
        (
            Some(100),
            Some(1000),
            "Specified size is not multiple of 512",
        ),
    ];
    for (off, size, msg) in cases {
        assert_eq!(
            g.add(&raw("r", reference("f"), off, size))
                .unwrap_err()
                .desc(),
            msg
        );
    }
    assert_eq!(
        g.add(&raw("r", reference("nosuch"), None, None))
            .unwrap_err()
            .desc(),
        "Cannot find device='nosuch' nor node-name='nosuch'"
    );
    // A failed inline open leaves no child behind.
    assert_eq!(
        g.add(&raw("r", inline(file_inline(&img)), Some(1 << 21), None))
            .unwrap_err()
            .desc(),
        "Offset (2097152) cannot be greater than size of the containing file (1048576)"
    );
    assert_eq!(g.names(), vec!["f".to_owned()]);
}

#[tokio::test]
async fn read_only_and_cache_are_inherited_by_inline_children() {
    let s = Scratch::new();
    let img = s.image("a.img", 65536);
    let g = Arc::new(BlockGraph::new());
    let mut o = raw("r", inline(file_inline(&img)), None, None).read_only(true);
    o.cache.no_flush = Some(true);
    g.add(&o).unwrap();
    let q = g.query();
    assert_eq!(q.len(), 2);
    assert_eq!(q[0].node_name, "r");
    let child = &q[1];
    assert!(child.node_name.starts_with("#block"));
    assert!(child.ro && child.cache.no_flush && !child.cache.direct);
    let r = g.get("r").unwrap();
    let (res, _) = r.write(0, IoBuf::with_len(512), false).await;
    assert_eq!(errno(&res.unwrap_err()), libc::EPERM);
    // A writable user of a read-only node is refused.
    assert_eq!(
        g.attach("r", Perms::export(true)).unwrap_err().desc(),
        "Block node is read-only"
    );
    g.attach("r", Perms::export(false)).unwrap();

    // A read-write raw over a read-only referenced node opens, but nothing
    // can write through it.
    g.add(&file("ro", &img).read_only(true)).unwrap();
    g.add(&raw("rw", reference("ro"), None, None)).unwrap();
    assert_eq!(
        g.attach("rw", Perms::export(true)).unwrap_err().desc(),
        "Block node is read-only"
    );
    let (res, _) = g
        .get("rw")
        .unwrap()
        .write(0, IoBuf::with_len(512), false)
        .await;
    assert_eq!(errno(&res.unwrap_err()), libc::EPERM);
}

#[tokio::test]
async fn resize_through_raw() {
    let s = Scratch::new();
    let img = s.image("a.img", 65536);
    let g = Arc::new(BlockGraph::new());
    g.add(&raw("r", inline(file_inline(&img)), Some(512), None))
        .unwrap();
    g.resize("r", 1 << 20).await.unwrap();
    assert_eq!(std::fs::metadata(&img).unwrap().len(), (1 << 20) + 512);
    assert_eq!(g.get("r").unwrap().size(), 1 << 20);

    // A window on the image keeps everyone else (here: another node on the
    // same file) from resizing it, as in QEMU.
    g.add(&raw("fixed", inline(file_inline(&img)), None, Some(4096)))
        .unwrap();
    assert_eq!(
        g.resize("fixed", 8192).await.unwrap_err().desc(),
        "Failed to get \"resize\" lock"
    );
    g.remove("r").unwrap();
    assert_eq!(
        g.resize("fixed", 8192).await.unwrap_err().desc(),
        "Cannot resize fixed-size raw disks"
    );

    g.add(&null("n", NullOptions::default())).unwrap();
    g.add(&raw("rn", reference("n"), None, None)).unwrap();
    assert_eq!(
        g.resize("rn", 8192).await.unwrap_err().desc(),
        "Image format driver does not support resize"
    );
}
