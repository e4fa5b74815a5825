//! The requests of the sequence, each checked against the model and
//! logged as one transcript line.

use blkio::{ReqFlags, iovec};

use super::CHUNK;
use crate::device::{self, Device, Done};
use crate::error::{Error, Result};
use crate::pattern::{Rng, checksum, errno_name};

/// A device, the model of what it holds, and the transcript so far.
pub(super) struct Session {
    pub(super) dev: Device,
    pub(super) model: Vec<u8>,
    pub(super) bs: u64,
    pub(super) cap: u64,
    pub(super) rng: Rng,
    pub(super) line: usize,
    pub(super) failures: Vec<String>,
}

/// How a finished request reads in the transcript.
fn outcome(d: &Done) -> String {
    if d.ret == 0 {
        return "ok".into();
    }
    match &d.msg {
        Some(m) => format!("{} ({m})", errno_name(d.ret)),
        None => errno_name(d.ret),
    }
}

impl Session {
    pub(super) fn blocks(&self) -> u64 {
        self.cap / self.bs
    }

    /// A random block-aligned range of `len` bytes inside the device.
    pub(super) fn range(&mut self, len: u64) -> u64 {
        self.rng.below(self.blocks() - len / self.bs) * self.bs
    }

    fn log(&mut self, text: String) {
        self.line += 1;
        println!("{:04} {text}", self.line);
    }

    /// The model's bytes for a range inside the device.
    fn model_range(&self, off: u64, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(off).ok()?;
        self.model.get(start..start.checked_add(len)?)
    }

    fn check(&mut self, what: &str, off: u64, got: &[u8]) {
        let Some(want) = self.model_range(off, got.len()) else {
            self.failures.push(format!(
                "{what} at {off}+{} succeeded past the end",
                got.len()
            ));
            return;
        };
        if want == got {
            return;
        }
        if let Some(i) = want.iter().zip(got).position(|(a, b)| a != b) {
            let f = format!(
                "{what} at {off}+{}: byte {} is {:#04x}, the model says {:#04x}",
                got.len(),
                off + i as u64,
                got[i],
                want[i]
            );
            println!("MISMATCH {f}");
            self.failures.push(f);
        }
    }

    fn model_write(&mut self, off: u64, data: &[u8]) {
        let (Ok(start), len) = (usize::try_from(off), data.len()) else {
            return;
        };
        if let Some(m) = self.model.get_mut(start..start + len) {
            m.copy_from_slice(data);
        } else {
            self.failures
                .push(format!("write at {off}+{len} succeeded past the end"));
        }
    }

    fn one(&mut self, q: usize) -> Result<Done> {
        let queue = self
            .dev
            .queues
            .get_mut(q)
            .ok_or_else(|| Error::Device(format!("no queue {q}")))?;
        let mut d = device::complete(queue, 1, 1)?;
        d.pop()
            .ok_or_else(|| Error::Device("do_io returned no completion".into()))
    }

    fn queue(&mut self, q: usize) -> Result<&mut blkio::Blkioq> {
        self.dev
            .queues
            .get_mut(q)
            .ok_or_else(|| Error::Device(format!("no queue {q}")))
    }

    pub(super) fn read_on(&mut self, q: usize, off: u64, len: usize) -> Result<()> {
        let p = self.dev.ptr(0, len)?;
        self.queue(q)?.read(off, p, len, 0, ReqFlags::empty());
        let d = self.one(q)?;
        let data = self.dev.get(0, len)?;
        let sum = if d.ret == 0 {
            self.check("read", off, &data);
            format!(" {:016x}", checksum(&data))
        } else {
            String::new()
        };
        let qn = if q == 0 {
            String::new()
        } else {
            format!(" q{q}")
        };
        self.log(format!("read{qn} {off} {len} -> {}{sum}", outcome(&d)));
        Ok(())
    }

    pub(super) fn read(&mut self, off: u64, len: usize) -> Result<()> {
        self.read_on(0, off, len)
    }

    /// A read of `off..off+len` widened by a block each side (clipped to
    /// the device): also shows that the neighbours were left alone.
    pub(super) fn read_around(&mut self, off: u64, len: usize) -> Result<()> {
        let start = off.saturating_sub(self.bs);
        let end = (off + len as u64 + self.bs).min(self.cap);
        self.read(start, (end - start) as usize)
    }

    pub(super) fn write_on(
        &mut self,
        q: usize,
        op: &str,
        off: u64,
        len: usize,
        flags: ReqFlags,
    ) -> Result<()> {
        let mut data = vec![0u8; len];
        self.rng.fill(&mut data);
        self.dev.put(0, &data)?;
        let p = self.dev.ptr(0, len)?;
        self.queue(q)?.write(off, p, len, 0, flags);
        let d = self.one(q)?;
        if d.ret == 0 {
            self.model_write(off, &data);
        }
        let qn = if q == 0 {
            String::new()
        } else {
            format!(" q{q}")
        };
        self.log(format!(
            "{op}{qn} {off} {len} {:016x} -> {}",
            checksum(&data),
            outcome(&d)
        ));
        Ok(())
    }

    pub(super) fn write(&mut self, off: u64, len: usize) -> Result<()> {
        self.write_on(0, "write", off, len, ReqFlags::empty())
    }

    /// Cuts `total` bytes into `n` segments at random byte boundaries
    /// (segments of any size, as virtio allows), each placed in the
    /// buffer with a gap before it so that they really are scattered.
    fn segments(&mut self, total: usize, n: usize) -> Result<Vec<iovec>> {
        // n - 1 distinct cut points (fewer only if `total` is too small).
        let n = n.clamp(1, total.max(1));
        let mut cuts = std::collections::BTreeSet::from([0, total]);
        while cuts.len() < n + 1 {
            cuts.insert(1 + self.rng.below(total as u64 - 1) as usize);
        }
        let cuts: Vec<usize> = cuts.into_iter().collect();
        let mut iov = Vec::new();
        let mut at = 0;
        for w in cuts.windows(2) {
            let len = w[1] - w[0];
            at += 64 + self.rng.below(64) as usize;
            iov.push(iovec {
                iov_base: self.dev.ptr(at, len)?.cast(),
                iov_len: len,
            });
            at += len;
        }
        Ok(iov)
    }

    fn gather(&self, iov: &[iovec]) -> Result<Vec<u8>> {
        let base = self.dev.ptr(0, 0)? as usize;
        let mut out = Vec::new();
        for v in iov {
            out.extend(self.dev.get(v.iov_base as usize - base, v.iov_len)?);
        }
        Ok(out)
    }

    fn scatter(&self, iov: &[iovec], data: &[u8]) -> Result<()> {
        let base = self.dev.ptr(0, 0)? as usize;
        let mut from = 0;
        for v in iov {
            self.dev
                .put(v.iov_base as usize - base, &data[from..from + v.iov_len])?;
            from += v.iov_len;
        }
        Ok(())
    }

    /// The segment sizes, or just their number when there are many.
    fn sizes(iov: &[iovec]) -> String {
        if iov.len() > 16 {
            return format!("{} segments", iov.len());
        }
        let s: Vec<String> = iov.iter().map(|v| v.iov_len.to_string()).collect();
        s.join(",")
    }

    pub(super) fn writev(&mut self, off: u64, total: usize, n: usize) -> Result<()> {
        let iov = self.segments(total, n)?;
        let mut data = vec![0u8; total];
        self.rng.fill(&mut data);
        self.scatter(&iov, &data)?;
        let cnt =
            u32::try_from(iov.len()).map_err(|_| Error::Device("too many segments".into()))?;
        self.queue(0)?
            .writev(off, iov.as_ptr(), cnt, 0, ReqFlags::empty());
        let d = self.one(0)?;
        if d.ret == 0 {
            self.model_write(off, &data);
        }
        self.log(format!(
            "writev {off} {total} [{}] {:016x} -> {}",
            Self::sizes(&iov),
            checksum(&data),
            outcome(&d)
        ));
        Ok(())
    }

    pub(super) fn readv(&mut self, off: u64, total: usize, n: usize) -> Result<()> {
        let iov = self.segments(total, n)?;
        let cnt =
            u32::try_from(iov.len()).map_err(|_| Error::Device("too many segments".into()))?;
        self.queue(0)?
            .readv(off, iov.as_ptr(), cnt, 0, ReqFlags::empty());
        let d = self.one(0)?;
        let sum = if d.ret == 0 {
            let data = self.gather(&iov)?;
            self.check("readv", off, &data);
            format!(" {:016x}", checksum(&data))
        } else {
            String::new()
        };
        self.log(format!(
            "readv {off} {total} [{}] -> {}{sum}",
            Self::sizes(&iov),
            outcome(&d)
        ));
        Ok(())
    }

    pub(super) fn write_zeroes(&mut self, off: u64, len: u64, no_unmap: bool) -> Result<()> {
        let flags = if no_unmap {
            ReqFlags::NO_UNMAP
        } else {
            ReqFlags::empty()
        };
        self.queue(0)?.write_zeroes(off, len, 0, flags);
        let d = self.one(0)?;
        if d.ret == 0 {
            let zeroes = vec![0u8; len as usize];
            self.model_write(off, &zeroes);
        }
        let op = if no_unmap {
            "write-zeroes-no-unmap"
        } else {
            "write-zeroes"
        };
        self.log(format!("{op} {off} {len} -> {}", outcome(&d)));
        if d.ret == 0 && off + len <= self.cap {
            self.read_span(off, len)?;
        }
        Ok(())
    }

    /// Reads `off..off+len` in chunks, each checked against the model.
    pub(super) fn read_span(&mut self, off: u64, len: u64) -> Result<()> {
        let mut at = off;
        while at < off + len {
            let n = (off + len - at).min(CHUNK as u64) as usize;
            self.read(at, n)?;
            at += n as u64;
        }
        Ok(())
    }

    /// Discarded blocks may read back as they were or as zeroes (the
    /// block layer decides): read the range back, accept per block
    /// either, and take what the device returned into the model.
    pub(super) fn discard(&mut self, off: u64, len: u64) -> Result<()> {
        self.queue(0)?.discard(off, len, 0, ReqFlags::empty());
        let d = self.one(0)?;
        self.log(format!("discard {off} {len} -> {}", outcome(&d)));
        if d.ret != 0 || off + len > self.cap {
            if d.ret == 0 {
                self.failures
                    .push(format!("discard at {off}+{len} succeeded past the end"));
            }
            return Ok(());
        }
        let mut at = off;
        while at < off + len {
            let n = (off + len - at).min(CHUNK as u64) as usize;
            let p = self.dev.ptr(0, n)?;
            self.queue(0)?.read(at, p, n, 0, ReqFlags::empty());
            let r = self.one(0)?;
            if r.ret != 0 {
                self.log(format!("read {at} {n} -> {}", outcome(&r)));
                self.failures
                    .push(format!("read after discard at {at} failed"));
                return Ok(());
            }
            let got = self.dev.get(0, n)?;
            let bs = self.bs as usize;
            for (i, block) in got.chunks(bs).enumerate() {
                let b_off = at + (i * bs) as u64;
                let zero = block.iter().all(|&b| b == 0);
                let same = self.model_range(b_off, block.len()) == Some(block);
                if !zero && !same {
                    let f =
                        format!("block {b_off} after discard is neither zeroes nor its old data");
                    println!("MISMATCH {f}");
                    self.failures.push(f);
                }
            }
            self.model_write(at, &got);
            self.log(format!("read {at} {n} -> ok {:016x}", checksum(&got)));
            at += n as u64;
        }
        Ok(())
    }

    pub(super) fn flush(&mut self) -> Result<()> {
        self.queue(0)?.flush(0, ReqFlags::empty());
        let d = self.one(0)?;
        self.log(format!("flush -> {}", outcome(&d)));
        Ok(())
    }

    /// The whole device, compared with the model, in one line.
    pub(super) fn read_all(&mut self) -> Result<()> {
        let mut sum = Vec::new();
        let mut at = 0;
        while at < self.cap {
            let n = (self.cap - at).min(CHUNK as u64) as usize;
            let p = self.dev.ptr(0, n)?;
            self.queue(0)?.read(at, p, n, 0, ReqFlags::empty());
            let d = self.one(0)?;
            if d.ret != 0 {
                self.log(format!("read-all {at} {n} -> {}", outcome(&d)));
                self.failures.push(format!("full read failed at {at}"));
                return Ok(());
            }
            let data = self.dev.get(0, n)?;
            self.check("read-all", at, &data);
            sum.extend(checksum(&data).to_le_bytes());
            at += n as u64;
        }
        self.log(format!(
            "read-all 0 {} -> ok {:016x}",
            self.cap,
            checksum(&sum)
        ));
        Ok(())
    }

    /// No base image: the model starts as the device's content.
    pub(super) fn adopt_all(&mut self) -> Result<()> {
        let mut at = 0;
        while at < self.cap {
            let n = (self.cap - at).min(CHUNK as u64) as usize;
            let p = self.dev.ptr(0, n)?;
            self.queue(0)?.read(at, p, n, 0, ReqFlags::empty());
            let d = self.one(0)?;
            if d.ret != 0 {
                return Err(Error::Device(format!(
                    "initial read at {at} failed: {}",
                    outcome(&d)
                )));
            }
            let data = self.dev.get(0, n)?;
            self.model.extend(data);
            at += n as u64;
        }
        Ok(())
    }

    /// Many requests in flight at once on queue 0: writes to disjoint
    /// ranges, then reads of the same ranges; lines in submission order.
    pub(super) fn batch(&mut self, n: usize) -> Result<()> {
        let slice = self.blocks() / n as u64 * self.bs;
        let mut reqs = Vec::new();
        for i in 0..n {
            let len = (1 + self.rng.below(32)) * self.bs;
            let off = i as u64 * slice + self.rng.below((slice - len) / self.bs) * self.bs;
            let mut data = vec![0u8; len as usize];
            self.rng.fill(&mut data);
            reqs.push((off, data));
        }
        // Each request has its own part of the buffer.
        let stride = 32 * self.bs as usize;
        for (i, (off, data)) in reqs.iter().enumerate() {
            self.dev.put(i * stride, data)?;
            let p = self.dev.ptr(i * stride, data.len())?;
            self.queue(0)?
                .write(*off, p, data.len(), i, ReqFlags::empty());
        }
        let done = self.all(n)?;
        for (i, (off, data)) in reqs.iter().enumerate() {
            if done[i].ret == 0 {
                self.model_write(*off, data);
            }
            let line = format!(
                "batch-write {off} {} {:016x} -> {}",
                data.len(),
                checksum(data),
                outcome(&done[i])
            );
            self.log(line);
        }
        for (i, (off, data)) in reqs.iter().enumerate() {
            let p = self.dev.ptr(i * stride, data.len())?;
            self.queue(0)?
                .read(*off, p, data.len(), i, ReqFlags::empty());
        }
        let done = self.all(n)?;
        for (i, (off, data)) in reqs.iter().enumerate() {
            let got = self.dev.get(i * stride, data.len())?;
            let sum = if done[i].ret == 0 {
                self.check("batch-read", *off, &got);
                format!(" {:016x}", checksum(&got))
            } else {
                String::new()
            };
            let line = format!(
                "batch-read {off} {} -> {}{sum}",
                data.len(),
                outcome(&done[i])
            );
            self.log(line);
        }
        Ok(())
    }

    /// Waits for `n` completions on queue 0, sorted by tag.
    fn all(&mut self, n: usize) -> Result<Vec<Done>> {
        let mut done = Vec::new();
        while done.len() < n {
            let left = n - done.len();
            done.extend(device::complete(self.queue(0)?, 1, left)?);
        }
        done.sort_by_key(|d| d.tag);
        if done.iter().enumerate().any(|(i, d)| d.tag != i) {
            return Err(Error::Device("completions with unexpected tags".into()));
        }
        Ok(done)
    }
}
