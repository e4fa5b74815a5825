//! `null-co` / `null-aio`: size, read-zeroes, latency, no resize.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod util;

use std::sync::Arc;
use std::time::{Duration, Instant};

use storage_block::{BlockGraph, BlockdevOptions, DriverOptions, IoBuf, NullOptions};
use util::*;

#[tokio::test]
async fn defaults_and_reads_clear_the_buffer() {
    let g = BlockGraph::new();
    g.add(&null("n", NullOptions::default())).unwrap();
    let dev = g.get("n").unwrap();
    assert_eq!(dev.size(), 1 << 30);
    // read-zeroes is off by default in QEMU 10.0, which then leaves the
    // buffer as it was: a reused buffer's old bytes must not come back.
    let (r, b) = dev.read(0, IoBuf::from_slice(&[0xab; 512])).await;
    r.unwrap();
    assert_eq!(&b[..], &[0; 512]);
    let (r, _) = dev.write(4096, IoBuf::with_len(4096), true).await;
    r.unwrap();
    dev.flush().await.unwrap();
    dev.discard(0, 4096).await.unwrap();
    dev.write_zeroes(0, 1 << 30, true).await.unwrap();
    let st = dev.block_status(0, 1 << 30).await.unwrap();
    assert_eq!((st.len, st.data, st.zero), (1 << 30, false, false));
    let (r, _) = dev.read(1 << 30, IoBuf::with_len(1)).await;
    assert_eq!(errno(&r.unwrap_err()), libc::EINVAL);
}

#[tokio::test]
async fn read_zeroes_size_and_status() {
    let g = BlockGraph::new();
    let opts = NullOptions {
        size: Some(1000),
        read_zeroes: Some(true),
        latency_ns: None,
    };
    g.add(&BlockdevOptions::new(DriverOptions::NullAio(opts)).named("n"))
        .unwrap();
    let dev = g.get("n").unwrap();
    assert_eq!(dev.size(), 1024, "whole sectors, like QEMU's virtual-size");
    let (r, b) = dev.read(0, IoBuf::from_slice(&[0xab; 1024])).await;
    r.unwrap();
    assert!(b.iter().all(|&x| x == 0));
    let st = dev.block_status(512, 512).await.unwrap();
    assert_eq!(
        (st.len, st.data, st.zero, st.allocated),
        (512, false, true, true)
    );
    assert_eq!(dev.info().driver, "null-aio");
}

#[tokio::test]
async fn latency_delays_requests() {
    let g = BlockGraph::new();
    let opts = NullOptions {
        latency_ns: Some(20_000_000),
        ..NullOptions::default()
    };
    g.add(&null("n", opts)).unwrap();
    let dev = g.get("n").unwrap();
    let t = Instant::now();
    let (r, _) = dev.read(0, IoBuf::with_len(512)).await;
    r.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(20));
}

#[tokio::test]
async fn resize_is_not_supported() {
    let g = Arc::new(BlockGraph::new());
    g.add(&null("n", NullOptions::default())).unwrap();
    assert_eq!(
        g.resize("n", 4096).await.unwrap_err().desc(),
        "Image format driver does not support resize"
    );
}
