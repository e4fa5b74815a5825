//! The `raw` format: the child's bytes, optionally through a window
//! (`offset`, `size`). Without a fixed `size` the window runs to the end of
//! the child (QEMU rounds that up to whole sectors; reads past the child's
//! end return zeroes).

use std::io;
use std::sync::Arc;

use serde_json::Value;

use super::graph::Error;
use super::node::{Driver, DriverInfo};
use super::{BlockDevice, BlockStatus, BufResult, IoBuf, IoVecs};

pub(crate) struct RawDriver {
    child: Arc<dyn BlockDevice>,
    offset: u64,
    size: Option<u64>,
    /// `offset` was given (it is part of the filename even when 0).
    offset_given: bool,
}

impl RawDriver {
    /// QEMU's `raw_apply_options` checks, with its messages.
    pub(crate) fn new(
        child: Arc<dyn BlockDevice>,
        offset: Option<u64>,
        size: Option<u64>,
    ) -> Result<Self, Error> {
        let real = child.size();
        let off = offset.unwrap_or(0);
        if off > real {
            return Err(Error::new(format!(
                "Offset ({off}) cannot be greater than size of the containing file ({real})"
            )));
        }
        if let Some(s) = size {
            if real - off < s {
                return Err(Error::new(format!(
                    "The sum of offset ({off}) and size ({s}) has to be smaller or equal to the  actual size of the containing file ({real})"
                )));
            }
            if !s.is_multiple_of(512) {
                return Err(Error::new("Specified size is not multiple of 512"));
            }
        }
        Ok(RawDriver {
            child,
            offset: off,
            size,
            offset_given: offset.is_some(),
        })
    }

    /// The child is a data child (offset or size given), not a filtered
    /// one: QEMU then refuses to share resize on it.
    pub(crate) fn windowed(&self) -> bool {
        self.offset != 0 || self.size.is_some()
    }

    fn child_len(&self) -> u64 {
        self.child.size().saturating_sub(self.offset)
    }
}

impl Driver for RawDriver {
    fn size(&self) -> u64 {
        match self.size {
            Some(s) => s,
            None => self.child_len().div_ceil(512) * 512,
        }
    }

    async fn read(&self, offset: u64, buf: IoBuf) -> BufResult {
        let avail = self.child_len();
        let len = buf.len() as u64;
        if offset + len <= avail {
            return self.child.read(self.offset + offset, buf).await;
        }
        // The sector rounding tail: zeroes past the child's end.
        let keep = avail.saturating_sub(offset) as usize;
        let mut part = IoBuf::with_len(keep);
        if keep > 0 {
            let (r, p) = self.child.read(self.offset + offset, part).await;
            if let Err(e) = r {
                return (Err(e), buf);
            }
            part = p;
        }
        let mut buf = buf;
        buf[..keep].copy_from_slice(&part);
        buf[keep..].fill(0);
        (Ok(()), buf)
    }

    async fn write(&self, offset: u64, buf: IoBuf, fua: bool) -> BufResult {
        self.child.write(self.offset + offset, buf, fua).await
    }

    async fn readv(&self, offset: u64, iov: IoVecs) -> io::Result<()> {
        if offset + iov.len() as u64 <= self.child_len() {
            return self.child.readv(self.offset + offset, iov).await;
        }
        // The zeroes past the child's end: the copying path.
        iov.fill_from(self.read(offset, IoBuf::with_len(iov.len())).await)
    }

    async fn writev(&self, offset: u64, iov: IoVecs, fua: bool) -> io::Result<()> {
        self.child.writev(self.offset + offset, iov, fua).await
    }

    async fn flush(&self) -> io::Result<()> {
        self.child.flush().await
    }

    async fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.child.discard(self.offset + offset, len).await
    }

    async fn write_zeroes(&self, offset: u64, len: u64, may_unmap: bool) -> io::Result<()> {
        self.child
            .write_zeroes(self.offset + offset, len, may_unmap)
            .await
    }

    async fn block_status(&self, offset: u64, len: u64) -> io::Result<BlockStatus> {
        let avail = self.child_len();
        if offset >= avail {
            return Ok(BlockStatus::hole(len));
        }
        self.child
            .block_status(self.offset + offset, len.min(avail - offset))
            .await
    }

    async fn resize(&self, size: u64) -> io::Result<()> {
        if self.size.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "Cannot resize fixed-size raw disks",
            ));
        }
        let Some(total) = size
            .checked_add(self.offset)
            .filter(|&t| t <= i64::MAX as u64)
        else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "Disk size too large for the chosen offset",
            ));
        };
        self.child.resize(total).await
    }

    fn info(&self) -> DriverInfo {
        let child = self.child.info();
        let mut opts = serde_json::Map::new();
        opts.insert("driver".into(), Value::from("raw"));
        let mut strong = false;
        if self.offset_given {
            opts.insert("offset".into(), Value::from(self.offset));
            strong = true;
        }
        if let Some(s) = self.size {
            opts.insert("size".into(), Value::from(s));
            strong = true;
        }
        opts.insert("file".into(), Value::Object(child.full_open_options));
        DriverInfo {
            driver: "raw",
            exact_filename: if strong { None } else { child.exact_filename },
            full_open_options: opts,
            actual_size: child.actual_size,
            dirty_flag: child.dirty_flag,
            format_specific: None,
            request_alignment: child.request_alignment,
        }
    }
}
