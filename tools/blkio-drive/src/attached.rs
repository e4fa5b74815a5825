//! `watch-capacity` and `hold`: front ends that stay connected.
//!
//! `watch-capacity` stays connected while someone resizes the exported
//! node, and shows what the front end sees. libblkio reads the capacity
//! from the config space again on every query (vhost-user GET_CONFIG), so
//! the new size shows without a reconnect; then I/O at the new end must
//! work.

use std::io::Write;
use std::time::{Duration, Instant};

use blkio::ReqFlags;

use crate::device::{self, Device};
use crate::error::{Error, Result};
use crate::pattern::{Rng, checksum, errno_name};

/// How long the new capacity may take to show.
const WAIT: Duration = Duration::from_secs(10);

/// Prints `capacity OLD` (the caller resizes after that line), waits
/// until the capacity is `until`, prints it, and writes then reads the
/// last block of the new size. Ok(false) when the capacity never came.
pub fn watch_capacity(mut dev: Device, until: u64) -> Result<bool> {
    let old = dev.capacity()?;
    println!("capacity {old}");
    std::io::stdout().flush().map_err(|source| Error::File {
        path: "stdout".into(),
        source,
    })?;
    let deadline = Instant::now() + WAIT;
    let cap = loop {
        let cap = dev.capacity()?;
        if cap == until {
            break cap;
        }
        if Instant::now() > deadline {
            println!("capacity {cap} after {WAIT:?}, not {until}");
            return Ok(false);
        }
        // Polling the condition itself (each query is a GET_CONFIG
        // round trip to the daemon), at a modest rate.
        std::thread::sleep(Duration::from_millis(2));
    };
    println!("capacity {cap}");
    let bs = u64::try_from(dev.get_i32("request-alignment")?)
        .map_err(|_| Error::Device("negative request-alignment".into()))?;
    let len = usize::try_from(bs).map_err(|_| Error::Device("block too big".into()))?;
    let off = cap
        .checked_sub(bs)
        .ok_or_else(|| Error::Device(format!("capacity {cap} is less than a block")))?;
    let mut data = vec![0u8; len];
    Rng::new(cap).fill(&mut data);
    dev.put(0, &data)?;
    let p = dev.ptr(0, len)?;
    let q = dev
        .queues
        .first_mut()
        .ok_or_else(|| Error::Device("no queue started".into()))?;
    q.write(off, p, len, 0, ReqFlags::empty());
    let w = one(q)?;
    println!("write {off} {len} -> {}", shown(w));
    let p = dev.ptr(len, len)?;
    let q = dev
        .queues
        .first_mut()
        .ok_or_else(|| Error::Device("no queue started".into()))?;
    q.read(off, p, len, 0, ReqFlags::empty());
    let r = one(q)?;
    let got = dev.get(len, len)?;
    let same = r == 0 && got == data;
    println!(
        "read {off} {len} -> {} {:016x}{}",
        shown(r),
        checksum(&got),
        if same { "" } else { " (not what was written)" }
    );
    Ok(w == 0 && same)
}

fn one(q: &mut blkio::Blkioq) -> Result<i32> {
    let d = device::complete(q, 1, 1)?;
    d.first()
        .map(|d| d.ret)
        .ok_or_else(|| Error::Device("do_io returned no completion".into()))
}

fn shown(ret: i32) -> String {
    if ret == 0 {
        "ok".into()
    } else {
        errno_name(ret)
    }
}

/// `hold`: connected until stdin closes (another front end can be tried
/// meanwhile), then one read to show the connection still serves.
pub fn hold(mut dev: Device) -> Result<bool> {
    println!("connected capacity {}", dev.capacity()?);
    std::io::stdout().flush().map_err(|source| Error::File {
        path: "stdout".into(),
        source,
    })?;
    let mut sink = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink).map_err(|source| Error::File {
        path: "stdin".into(),
        source,
    })?;
    let p = dev.ptr(0, 4096)?;
    let q = dev
        .queues
        .first_mut()
        .ok_or_else(|| Error::Device("no queue started".into()))?;
    q.read(0, p, 4096, 0, ReqFlags::empty());
    let r = one(q)?;
    println!("read 0 4096 -> {}", shown(r));
    Ok(r == 0)
}
