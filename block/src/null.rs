//! `null-co` and `null-aio`: a node that stores nothing. Reads return
//! zeroes whatever `read-zeroes` says (QEMU leaves the buffer as it is
//! when it is off, and its buffers are reused: an earlier request's bytes,
//! maybe another client's, would go out); `read-zeroes` only decides what
//! block status reports. Writes succeed; every request waits `latency-ns`
//! first.

use std::io;
use std::time::Duration;

use serde_json::{Map, Value};

use super::graph::Error;
use super::node::{Driver, DriverInfo};
use super::{BlockStatus, BufResult, IoBuf, IoVecs, MAX_LENGTH, NullOptions};

pub(crate) struct NullDriver {
    name: &'static str,
    /// In whole sectors, as QEMU counts it.
    size: u64,
    read_zeroes: bool,
    latency: Option<Duration>,
    /// The options as given: they decide the filename.
    opts: NullOptions,
}

impl NullDriver {
    pub(crate) fn new(aio: bool, opts: NullOptions) -> Result<Self, Error> {
        let size = opts
            .size
            .unwrap_or(1 << 30)
            .checked_next_multiple_of(512)
            .filter(|&s| s <= MAX_LENGTH)
            .ok_or_else(|| Error::new("Could not refresh total sector count: File too large"))?;
        Ok(NullDriver {
            name: if aio { "null-aio" } else { "null-co" },
            size,
            read_zeroes: opts.read_zeroes.unwrap_or(false),
            latency: opts
                .latency_ns
                .filter(|&ns| ns > 0)
                .map(Duration::from_nanos),
            opts,
        })
    }

    async fn delay(&self) {
        if let Some(d) = self.latency {
            tokio::time::sleep(d).await;
        }
    }
}

impl Driver for NullDriver {
    fn size(&self) -> u64 {
        self.size
    }

    async fn read(&self, _offset: u64, mut buf: IoBuf) -> BufResult {
        self.delay().await;
        // Pooled buffers hold what the last request left in them.
        buf.fill(0);
        (Ok(()), buf)
    }

    async fn write(&self, _offset: u64, buf: IoBuf, _fua: bool) -> BufResult {
        self.delay().await;
        (Ok(()), buf)
    }

    async fn readv(&self, _offset: u64, iov: IoVecs) -> io::Result<()> {
        self.delay().await;
        iov.zero_from(0);
        Ok(())
    }

    async fn writev(&self, _offset: u64, _iov: IoVecs, _fua: bool) -> io::Result<()> {
        self.delay().await;
        Ok(())
    }

    async fn flush(&self) -> io::Result<()> {
        self.delay().await;
        Ok(())
    }

    async fn discard(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }

    async fn write_zeroes(&self, _offset: u64, _len: u64, _may_unmap: bool) -> io::Result<()> {
        self.delay().await;
        Ok(())
    }

    async fn block_status(&self, _offset: u64, len: u64) -> io::Result<BlockStatus> {
        Ok(BlockStatus {
            len,
            data: false,
            zero: self.read_zeroes,
            allocated: self.read_zeroes,
        })
    }

    async fn resize(&self, _size: u64) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "Image format driver does not support resize",
        ))
    }

    fn info(&self) -> DriverInfo {
        // Strong options: size and read-zeroes, when given.
        let mut opts = Map::new();
        opts.insert("driver".into(), Value::from(self.name));
        let mut strong = false;
        if let Some(s) = self.opts.size {
            opts.insert("size".into(), Value::from(s));
            strong = true;
        }
        if let Some(z) = self.opts.read_zeroes {
            opts.insert("read-zeroes".into(), Value::from(z));
            strong = true;
        }
        DriverInfo {
            driver: self.name,
            exact_filename: (!strong).then(|| format!("{}://", self.name)),
            full_open_options: opts,
            actual_size: Some(0),
            dirty_flag: None,
            format_specific: None,
            request_alignment: 1,
        }
    }
}
