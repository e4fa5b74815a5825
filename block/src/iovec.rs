//! `IoVecs`: a request's data in memory the block layer does not own
//! (a guest's memory, mapped by an export), as raw I/O vectors, so the
//! `file` driver can `preadv`/`pwritev` straight into or out of it.
//!
//! The memory must outlive any system call on it, even when the caller
//! drops the request's future half way (a thread-pool job goes on): an
//! `IoVecs` therefore holds an owner (e.g. the guard of the guest memory
//! mapping) and moves with the job, like an [`super::IoBuf`] does.

use std::borrow::Cow;
use std::io;
use std::sync::Arc;

use super::{BufResult, IoBuf};

/// Raw I/O vectors and what keeps them mapped.
pub struct IoVecs {
    iovs: Vec<libc::iovec>,
    len: usize,
    _owner: Arc<dyn Send + Sync>,
}

// SAFETY: the pointers refer to memory that `_owner` (Send + Sync) keeps
// mapped; the memory is shared with its owner's other users (a guest) by
// nature, and IoVecs only touches it through raw copies and system calls.
unsafe impl Send for IoVecs {}
// SAFETY: as above; &IoVecs hands out no references into the memory.
unsafe impl Sync for IoVecs {}

impl IoVecs {
    /// Vectors over `(pointer, length)` pieces.
    ///
    /// # Safety
    ///
    /// Every piece must stay valid for reads and writes for as long as
    /// `owner` lives, and nothing may hold a Rust reference into it (the
    /// block layer writes it through raw pointers and system calls).
    pub unsafe fn new(owner: Arc<dyn Send + Sync>, pieces: &[(*mut u8, usize)]) -> IoVecs {
        let iovs: Vec<libc::iovec> = pieces
            .iter()
            .filter(|p| p.1 > 0)
            .map(|&(ptr, len)| libc::iovec {
                iov_base: ptr.cast(),
                iov_len: len,
            })
            .collect();
        let len = iovs.iter().map(|v| v.iov_len).sum();
        IoVecs {
            iovs,
            len,
            _owner: owner,
        }
    }

    /// Total bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The vectors past the first `skip` bytes (for a system call that
    /// resumes after a short transfer); the vectors themselves, not a
    /// copy, for the usual call with `skip` 0.
    pub(crate) fn remaining(&self, skip: usize) -> Cow<'_, [libc::iovec]> {
        if skip == 0 {
            return Cow::Borrowed(&self.iovs);
        }
        let mut left = skip;
        let mut out = Vec::with_capacity(self.iovs.len());
        for v in &self.iovs {
            if left >= v.iov_len {
                left -= v.iov_len;
                continue;
            }
            out.push(libc::iovec {
                // SAFETY: left < iov_len: inside the piece.
                iov_base: unsafe { v.iov_base.cast::<u8>().add(left) }.cast(),
                iov_len: v.iov_len - left,
            });
            left = 0;
        }
        Cow::Owned(out)
    }

    /// Whether every piece starts and ends on `align` (O_DIRECT).
    pub(crate) fn aligned(&self, align: u64) -> bool {
        let a = align as usize;
        self.iovs
            .iter()
            .all(|v| (v.iov_base as usize).is_multiple_of(a) && v.iov_len.is_multiple_of(a))
    }

    /// Copies `src` into the vectors from byte `at` on (as much as fits).
    pub fn copy_from(&self, at: usize, src: &[u8]) {
        self.walk(at, src.len(), |ptr, done, n| {
            // SAFETY: `ptr` has room for n bytes (a piece, see new());
            // src[done..done + n] is in bounds; they cannot overlap since
            // nothing references the piece.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr().add(done), ptr, n) }
        });
    }

    /// Copies the vectors from byte `at` on into `dst` (as much as there
    /// is).
    pub fn copy_to(&self, at: usize, dst: &mut [u8]) {
        let len = dst.len();
        self.walk(at, len, |ptr, done, n| {
            // SAFETY: as in copy_from, the other way round.
            unsafe { std::ptr::copy_nonoverlapping(ptr, dst.as_mut_ptr().add(done), n) }
        });
    }

    /// A copy of the bytes, for a path that needs them in a buffer of its
    /// own (a driver without vectored I/O, zero detection).
    pub(crate) fn to_buf(&self) -> IoBuf {
        let mut buf = IoBuf::with_len(self.len);
        self.copy_to(0, &mut buf);
        buf
    }

    /// Ends a read made into a buffer from [`IoBuf::with_len`] of our
    /// length: its bytes go into the vectors.
    pub(crate) fn fill_from(&self, (r, buf): BufResult) -> io::Result<()> {
        r?;
        self.copy_from(0, &buf);
        Ok(())
    }

    /// Zeroes the vectors from byte `at` on (a read past end of file).
    pub fn zero_from(&self, at: usize) {
        self.walk(at, self.len.saturating_sub(at), |ptr, _, n| {
            // SAFETY: `ptr` has room for n bytes (a piece).
            unsafe { std::ptr::write_bytes(ptr, 0, n) }
        });
    }

    /// Calls `f(piece pointer, bytes done, n)` over `len` bytes from `at`.
    fn walk(&self, at: usize, len: usize, mut f: impl FnMut(*mut u8, usize, usize)) {
        let mut done = 0;
        for v in self.remaining(at).iter() {
            if done == len {
                break;
            }
            let n = v.iov_len.min(len - done);
            f(v.iov_base.cast(), done, n);
            done += n;
        }
    }
}

impl std::fmt::Debug for IoVecs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoVecs")
            .field("pieces", &self.iovs.len())
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_offsets_and_copies() {
        let mem = Arc::new(std::sync::Mutex::new(vec![0u8; 64]));
        let base = mem.lock().expect("lock").as_mut_ptr();
        // SAFETY: the pieces lie in the vector `mem` keeps; nothing else
        // references it while the IoVecs is used.
        let v = unsafe {
            IoVecs::new(
                mem.clone(),
                &[
                    (base, 10),
                    (base.add(20), 0),
                    (base.add(30), 6),
                    (base.add(40), 8),
                ],
            )
        };
        assert_eq!(v.len(), 24);
        let rest = v.remaining(12);
        assert_eq!(rest.len(), 2);
        assert_eq!(rest[0].iov_len, 4);
        assert_eq!(rest[0].iov_base as usize, base as usize + 32);
        assert!(v.remaining(24).is_empty());
        v.copy_from(8, &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let mut out = [0u8; 24];
        v.copy_to(0, &mut out);
        assert_eq!(
            out[..17],
            [0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
        );
        let m = mem.lock().expect("lock");
        assert_eq!(m[8..10], [1, 2]);
        assert_eq!(m[30..36], [3, 4, 5, 6, 7, 8]);
        assert_eq!(m[40], 9);
        assert!(v.aligned(1) && !v.aligned(4));
    }
}
