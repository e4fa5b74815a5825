//! The generic layer around every driver, QEMU's `block/io.c` in small:
//! request bounds (`EINVAL`), read-only refusal (`EPERM`), the `discard`
//! policy and `detect-zeroes`. Drivers implement [`Driver`] with static
//! dispatch; [`Node`] boxes their futures once, for [`BlockDevice`].

use std::future::Future;
use std::io;

use serde_json::{Map, Value};

use super::{
    BlockDevice, BlockStatus, BufResult, DetectZeroes, Discard, IoBuf, IoFuture, IoVecs, NodeInfo,
    errno, is_zero,
};

/// What a driver implements; [`Node`] has checked the request already.
pub(crate) trait Driver: Send + Sync + 'static {
    fn size(&self) -> u64;
    fn read(&self, offset: u64, buf: IoBuf) -> impl Future<Output = BufResult> + Send;
    fn write(&self, offset: u64, buf: IoBuf, fua: bool) -> impl Future<Output = BufResult> + Send;
    /// Vectored read; by default through an [`IoBuf`].
    fn readv(&self, offset: u64, iov: IoVecs) -> impl Future<Output = io::Result<()>> + Send {
        async move { iov.fill_from(self.read(offset, IoBuf::with_len(iov.len())).await) }
    }
    /// Vectored write; by default through an [`IoBuf`].
    fn writev(
        &self,
        offset: u64,
        iov: IoVecs,
        fua: bool,
    ) -> impl Future<Output = io::Result<()>> + Send {
        async move { self.write(offset, iov.to_buf(), fua).await.0 }
    }
    fn flush(&self) -> impl Future<Output = io::Result<()>> + Send;
    fn discard(&self, offset: u64, len: u64) -> impl Future<Output = io::Result<()>> + Send;
    fn write_zeroes(
        &self,
        offset: u64,
        len: u64,
        may_unmap: bool,
    ) -> impl Future<Output = io::Result<()>> + Send;
    fn block_status(
        &self,
        offset: u64,
        len: u64,
    ) -> impl Future<Output = io::Result<BlockStatus>> + Send;
    fn resize(&self, size: u64) -> impl Future<Output = io::Result<()>> + Send;
    fn info(&self) -> DriverInfo;
}

/// The driver's part of [`NodeInfo`].
pub(crate) struct DriverInfo {
    pub driver: &'static str,
    pub exact_filename: Option<String>,
    pub full_open_options: Map<String, Value>,
    pub actual_size: Option<u64>,
    pub dirty_flag: Option<bool>,
    pub format_specific: Option<Value>,
    pub request_alignment: u32,
}

/// Options every node has.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Common {
    pub read_only: bool,
    pub discard: Discard,
    pub detect_zeroes: DetectZeroes,
    pub cache_direct: bool,
    pub cache_no_flush: bool,
}

pub(crate) struct Node<D> {
    pub common: Common,
    pub drv: D,
}

impl<D: Driver> Node<D> {
    fn check(&self, offset: u64, len: u64) -> io::Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.drv.size() => Ok(()),
            _ => Err(errno(libc::EINVAL)),
        }
    }

    fn check_write(&self, offset: u64, len: u64) -> io::Result<()> {
        if self.common.read_only {
            return Err(errno(libc::EPERM));
        }
        self.check(offset, len)
    }

    fn unmap(&self) -> bool {
        self.common.discard == Discard::Unmap
    }
}

impl<D: Driver> BlockDevice for Node<D> {
    fn size(&self) -> u64 {
        self.drv.size()
    }

    fn read(&self, offset: u64, buf: IoBuf) -> IoFuture<'_, BufResult> {
        Box::pin(async move {
            if let Err(e) = self.check(offset, buf.len() as u64) {
                return (Err(e), buf);
            }
            if buf.is_empty() {
                return (Ok(()), buf);
            }
            self.drv.read(offset, buf).await
        })
    }

    fn write(&self, offset: u64, buf: IoBuf, fua: bool) -> IoFuture<'_, BufResult> {
        Box::pin(async move {
            let len = buf.len() as u64;
            if let Err(e) = self.check_write(offset, len) {
                return (Err(e), buf);
            }
            if buf.is_empty() {
                return (Ok(()), buf);
            }
            if self.common.detect_zeroes != DetectZeroes::Off && is_zero(&buf) {
                let unmap = self.common.detect_zeroes == DetectZeroes::Unmap && self.unmap();
                let mut r = self.drv.write_zeroes(offset, len, unmap).await;
                if r.is_ok() && fua {
                    r = self.drv.flush().await;
                }
                return (r, buf);
            }
            self.drv.write(offset, buf, fua).await
        })
    }

    fn readv(&self, offset: u64, iov: IoVecs) -> IoFuture<'_, io::Result<()>> {
        Box::pin(async move {
            self.check(offset, iov.len() as u64)?;
            if iov.is_empty() {
                return Ok(());
            }
            self.drv.readv(offset, iov).await
        })
    }

    fn writev(&self, offset: u64, iov: IoVecs, fua: bool) -> IoFuture<'_, io::Result<()>> {
        Box::pin(async move {
            self.check_write(offset, iov.len() as u64)?;
            if iov.is_empty() {
                return Ok(());
            }
            if self.common.detect_zeroes != DetectZeroes::Off {
                // Zero detection looks at the data: take a copy, and the
                // plain write path.
                return BlockDevice::write(self, offset, iov.to_buf(), fua).await.0;
            }
            self.drv.writev(offset, iov, fua).await
        })
    }

    fn flush(&self) -> IoFuture<'_, io::Result<()>> {
        Box::pin(self.drv.flush())
    }

    fn discard(&self, offset: u64, len: u64) -> IoFuture<'_, io::Result<()>> {
        Box::pin(async move {
            self.check_write(offset, len)?;
            if !self.unmap() || len == 0 {
                return Ok(());
            }
            self.drv.discard(offset, len).await
        })
    }

    fn write_zeroes(&self, offset: u64, len: u64, may_unmap: bool) -> IoFuture<'_, io::Result<()>> {
        Box::pin(async move {
            self.check_write(offset, len)?;
            if len == 0 {
                return Ok(());
            }
            self.drv
                .write_zeroes(offset, len, may_unmap && self.unmap())
                .await
        })
    }

    fn block_status(&self, offset: u64, len: u64) -> IoFuture<'_, io::Result<BlockStatus>> {
        Box::pin(async move {
            self.check(offset, len)?;
            if len == 0 {
                return Ok(BlockStatus {
                    len: 0,
                    data: false,
                    zero: false,
                    allocated: false,
                });
            }
            let mut st = self.drv.block_status(offset, len).await?;
            st.len = st.len.clamp(1, len);
            Ok(st)
        })
    }

    fn resize(&self, size: u64) -> IoFuture<'_, io::Result<()>> {
        Box::pin(async move {
            if self.common.read_only {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "Image is read-only",
                ));
            }
            self.drv.resize(size).await
        })
    }

    fn info(&self) -> NodeInfo {
        let d = self.drv.info();
        let filename = match &d.exact_filename {
            Some(f) => f.clone(),
            None => {
                let mut s = String::from("json:");
                qapi_rt::write_qmp_json(&mut s, &Value::Object(d.full_open_options.clone()));
                s
            }
        };
        NodeInfo {
            driver: d.driver,
            filename,
            exact_filename: d.exact_filename,
            full_open_options: d.full_open_options,
            read_only: self.common.read_only,
            virtual_size: self.drv.size(),
            actual_size: d.actual_size,
            dirty_flag: d.dirty_flag,
            format_specific: d.format_specific,
            cache_direct: self.common.cache_direct,
            cache_no_flush: self.common.cache_no_flush,
            detect_zeroes: self.common.detect_zeroes,
            discard: self.common.discard,
            request_alignment: d.request_alignment,
        }
    }
}
