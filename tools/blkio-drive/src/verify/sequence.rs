//! What `verify` sends, in order: the same on every run.

use blkio::ReqFlags;

use super::requests::Session;
use super::{BIG, CHUNK};
use crate::error::Result;

impl Session {
    /// On a writable device: every kind of request, checked.
    pub(super) fn sequence(&mut self) -> Result<()> {
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
    pub(super) fn read_only_sequence(&mut self) -> Result<()> {
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
