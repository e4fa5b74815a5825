//! `verify`: a fixed, seeded sequence of requests checked against an
//! in-memory model of the disk. One transcript line per request (op,
//! offset, length, result, checksum of what was read) goes to stdout so
//! that two daemons can be compared line by line; the model ends up in
//! a file for `cmp` with the daemon's image.

use blkio::{ReqFlags, iovec};

use crate::device::{self, Device, Done};
use crate::error::{Error, Result};
use crate::pattern::{Rng, checksum, errno_name};

pub struct Plan {
    /// The image the device starts from; without it the model starts
    /// from what the first full read returns.
    pub base: Option<String>,
    pub model_out: String,
    /// The read-only sequence: reads, and writes that must be refused.
    pub read_only: bool,
}

/// The usual request size limit, the biggest request, and the buffer.
const CHUNK: usize = 1 << 20;
const BIG: usize = 6 << 20;
const BUFFER: usize = 8 << 20;
const SEED: u64 = 0x5eed_b10c_0000_0011;

struct Session {
    dev: Device,
    model: Vec<u8>,
    bs: u64,
    cap: u64,
    rng: Rng,
    line: usize,
    failures: Vec<String>,
}

/// Runs the sequence; Ok(true) when every read matched the model.
pub fn run(dev: Device, plan: &Plan) -> Result<bool> {
    let cap = dev.capacity()?;
    let bs = u64::try_from(dev.get_i32("request-alignment")?)
        .map_err(|_| Error::Device("negative request-alignment".into()))?;
    if bs == 0 || cap < 32 << 20 || cap % bs != 0 {
        return Err(Error::Device(format!(
            "verify needs a device of at least 32 MiB in whole blocks (capacity {cap}, block {bs})"
        )));
    }
    let len = usize::try_from(cap).map_err(|_| Error::Device("capacity too big".into()))?;
    for (name, value) in dev.properties() {
        println!("prop {name} {value}");
    }
    println!("queues {}", dev.queues.len());
    let model = match &plan.base {
        Some(path) => {
            let mut m = std::fs::read(path).map_err(|source| Error::File {
                path: path.clone(),
                source,
            })?;
            if m.len() != len {
                return Err(Error::Device(format!(
                    "base image {path} has {} bytes, the device {cap}",
                    m.len()
                )));
            }
            m.shrink_to_fit();
            m
        }
        None => Vec::new(),
    };
    let mut s = Session {
        dev,
        model,
        bs,
        cap,
        rng: Rng::new(SEED),
        line: 0,
        failures: Vec::new(),
    };
    if s.model.is_empty() {
        s.adopt_all()?;
    } else {
        s.read_all()?;
    }
    if plan.read_only {
        s.read_only_sequence()?;
    } else {
        s.sequence()?;
    }
    s.read_all()?;
    std::fs::write(&plan.model_out, &s.model).map_err(|source| Error::File {
        path: plan.model_out.clone(),
        source,
    })?;
    for f in &s.failures {
        eprintln!("blkio-drive verify: {f}");
    }
    println!("end {} requests, {} mismatches", s.line, s.failures.len());
    Ok(s.failures.is_empty())
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
    fn blocks(&self) -> u64 {
        self.cap / self.bs
    }

    /// A random block-aligned range of `len` bytes inside the device.
    fn range(&mut self, len: u64) -> u64 {
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

    fn read_on(&mut self, q: usize, off: u64, len: usize) -> Result<()> {
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

    fn read(&mut self, off: u64, len: usize) -> Result<()> {
        self.read_on(0, off, len)
    }

    /// A read of `off..off+len` widened by a block each side (clipped to
    /// the device): also shows that the neighbours were left alone.
    fn read_around(&mut self, off: u64, len: usize) -> Result<()> {
        let start = off.saturating_sub(self.bs);
        let end = (off + len as u64 + self.bs).min(self.cap);
        self.read(start, (end - start) as usize)
    }

    fn write_on(
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

    fn write(&mut self, off: u64, len: usize) -> Result<()> {
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

    fn writev(&mut self, off: u64, total: usize, n: usize) -> Result<()> {
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

    fn readv(&mut self, off: u64, total: usize, n: usize) -> Result<()> {
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

    fn write_zeroes(&mut self, off: u64, len: u64, no_unmap: bool) -> Result<()> {
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
    fn read_span(&mut self, off: u64, len: u64) -> Result<()> {
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
    fn discard(&mut self, off: u64, len: u64) -> Result<()> {
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

    fn flush(&mut self) -> Result<()> {
        self.queue(0)?.flush(0, ReqFlags::empty());
        let d = self.one(0)?;
        self.log(format!("flush -> {}", outcome(&d)));
        Ok(())
    }

    /// The whole device, compared with the model, in one line.
    fn read_all(&mut self) -> Result<()> {
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
    fn adopt_all(&mut self) -> Result<()> {
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
    fn batch(&mut self, n: usize) -> Result<()> {
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

    fn sequence(&mut self) -> Result<()> {
        let bs = self.bs;
        let bsz = bs as usize;
        let cap = self.cap;
        // Fixed places: the first blocks, across 4 KiB, 64 KiB and 1 MiB
        // boundaries, the last block, one big request.
        let fixed: [(u64, usize); 8] = [
            (0, bsz),
            (bs, bsz),
            (4096 + bs, 3 * bsz),
            (65536 - bs, 2 * bsz),
            ((1 << 20) - bs, (1 << 19) + bsz),
            (cap - bs, bsz),
            (cap - 8 * bs, 8 * bsz),
            (3 << 20, CHUNK),
        ];
        for (off, len) in fixed {
            self.write(off, len)?;
            self.read_around(off, len)?;
        }
        for i in 0..40u64 {
            let most = if i % 8 == 0 { 512 } else { 64 };
            let len = (1 + self.rng.below(most)) * bs;
            let off = self.range(len);
            self.write(off, len as usize)?;
            self.read_around(off, len as usize)?;
        }
        // Scattered buffers: odd-sized segments, read back with other cuts.
        let max_segs = usize::try_from(self.dev.get_i32("max-segments")?)
            .unwrap_or(1)
            .clamp(1, 16);
        for i in 0..12u64 {
            let len = (1 + self.rng.below(32)) * bs;
            let off = self.range(len);
            let n = 1 + (i as usize % max_segs);
            self.writev(off, len as usize, n)?;
            self.readv(off, len as usize, max_segs - (i as usize % max_segs))?;
            self.read(off, len as usize)?;
        }
        // As many segments as the device says it takes, one more, and
        // many more (still fewer than the queue has descriptors).
        let seg_max = usize::try_from(self.dev.get_i32("max-segments")?).unwrap_or(1);
        for n in [seg_max, seg_max + 1, 200] {
            let len = 128 * bs;
            let off = self.range(len);
            self.writev(off, len as usize, n)?;
            self.readv(off, len as usize, n)?;
            self.read(off, len as usize)?;
        }
        // Requests bigger than any chunk a daemon may split them into.
        let off = self.range(BIG as u64);
        self.write(off, BIG)?;
        self.read(off, BIG)?;
        // Past the end and misaligned: errors, and nothing changes.
        self.read(cap - bs, 2 * bsz)?;
        self.read(cap, bsz)?;
        self.read(1 << 40, bsz)?;
        self.write(cap - bs, 2 * bsz)?;
        self.write(cap, bsz)?;
        self.read(cap - bs, bsz)?;
        self.write_zeroes(cap - bs, 2 * bs, false)?;
        self.discard(cap, bs)?;
        self.read(0, bsz / 2)?;
        self.write(bs, bsz + 256)?;
        self.read_around(bs, bsz)?;
        if bs > 512 {
            self.read(512, bsz)?;
            self.write(bs + 512, bsz)?;
            self.read_around(bs, 2 * bsz)?;
        }
        // Write zeroes, with and without unmap, aligned and not to 4 KiB.
        self.write_zeroes(4096 - bs, 3 * bs, false)?;
        self.write_zeroes(8192 + bs, 5 * bs, true)?;
        for i in 0..8u64 {
            let len = (1 + self.rng.below(256)) * bs;
            let off = self.range(len);
            self.write_zeroes(off, len, i % 2 == 1)?;
            self.read_around(off, len as usize)?;
        }
        self.write_zeroes(5 << 20, 4 << 20, false)?;
        // Just over the device's limit, when it has one that fits.
        let max_wz = self.dev.get_u64("max-write-zeroes-len")?;
        if max_wz > 0 && max_wz + bs <= cap {
            self.write_zeroes(bs, max_wz, true)?;
            self.write_zeroes(0, max_wz + bs, true)?;
            self.read_span(0, max_wz + bs)?;
        }
        // Discard: blocks read back as before or as zeroes.
        self.discard(4096 + bs, 2 * bs)?;
        for _ in 0..6 {
            let len = (1 + self.rng.below(512)) * bs;
            let off = self.range(len);
            self.discard(off, len)?;
        }
        let max_discard = self.dev.get_u64("max-discard-len")?;
        if max_discard > 0 && max_discard + bs <= cap {
            self.discard(bs, max_discard + bs)?;
        }
        // FUA write (libblkio adds the flush), flush, many in flight.
        let off = self.range(8 * bs);
        self.write_on(0, "write-fua", off, 8 * bsz, ReqFlags::FUA)?;
        self.read(off, 8 * bsz)?;
        self.flush()?;
        self.batch(16)?;
        // Every queue serves requests; each reads what another wrote.
        let nq = self.dev.queues.len();
        if nq > 1 {
            let mut offs = Vec::new();
            for q in 0..nq {
                let off = self.range(4 * bs);
                self.write_on(q, "write", off, 4 * bsz, ReqFlags::empty())?;
                offs.push(off);
            }
            for (q, off) in offs.into_iter().enumerate() {
                self.read_on((q + 1) % nq, off, 4 * bsz)?;
            }
        }
        self.flush()
    }

    /// On a read-only device: reads work, every kind of write is refused.
    fn read_only_sequence(&mut self) -> Result<()> {
        let bs = self.bs;
        let bsz = bs as usize;
        for _ in 0..8 {
            let len = (1 + self.rng.below(64)) * bs;
            let off = self.range(len);
            self.read(off, len as usize)?;
        }
        self.read(self.cap - bs, bsz)?;
        self.read(self.cap, bsz)?;
        self.write(0, bsz)?;
        self.write(self.cap - bs, bsz)?;
        let iov_len = 2 * bsz;
        self.writev(bs, iov_len, 3)?;
        self.write_zeroes(0, 8 * bs, false)?;
        self.write_zeroes(0, 8 * bs, true)?;
        self.discard(0, 8 * bs)?;
        self.flush()?;
        self.read(0, 16 * bsz)
    }
}

/// The buffer `verify` needs.
pub fn buffer_len() -> usize {
    BUFFER
}
