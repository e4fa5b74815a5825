//! A pool of page-aligned block buffers ([`IoBuf`]) that an export reuses
//! across requests, so the data path does not allocate (and the kernel
//! does not fault in fresh pages) per request.
//!
//! A buffer keeps its allocation and its bytes while pooled: [`IoBuf`]
//! zeroes only bytes that were never written, so what a caller hands to
//! a peer must be bytes a driver or the peer wrote for this request.

use std::sync::{Mutex, MutexGuard};

use storage_block::IoBuf;

/// Idle buffers, at most `max_bufs` of them, none larger than `max_cap`.
#[derive(Debug)]
pub struct BufferPool {
    bufs: Mutex<Vec<IoBuf>>,
    max_bufs: usize,
    max_cap: usize,
}

impl BufferPool {
    /// A pool keeping up to `max_bufs` idle buffers of at most `max_cap`
    /// bytes of capacity each; larger ones go back to the allocator.
    pub const fn new(max_bufs: usize, max_cap: usize) -> BufferPool {
        BufferPool {
            bufs: Mutex::new(Vec::new()),
            max_bufs,
            max_cap,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<IoBuf>> {
        self.bufs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A buffer of `len` bytes: a pooled one when there is one (grown if
    /// needed), a new one otherwise.
    pub fn take(&self, len: usize) -> IoBuf {
        let mut b = self.lock().pop().unwrap_or_default();
        b.set_len(len);
        b
    }

    /// Gives a buffer back for reuse (or frees it when the pool is full
    /// or the buffer is too large to keep).
    pub fn put(&self, buf: IoBuf) {
        if buf.capacity() == 0 || buf.capacity() > self.max_cap {
            return;
        }
        let mut bufs = self.lock();
        if bufs.len() < self.max_bufs {
            bufs.push(buf);
        }
    }

    /// Idle buffers in the pool.
    pub fn idle(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_within_limits() {
        let pool = BufferPool::new(2, 1 << 20);
        let a = pool.take(4096);
        assert_eq!(a.len(), 4096);
        assert_eq!(a.as_ptr() as usize % IoBuf::ALIGN, 0);
        let ptr = a.as_ptr();
        pool.put(a);
        assert_eq!(pool.idle(), 1);
        // The same allocation comes back, at the length asked for.
        let b = pool.take(512);
        assert_eq!((b.as_ptr(), b.len()), (ptr, 512));
        pool.put(b);
        pool.put(IoBuf::with_len(8192));
        pool.put(IoBuf::with_len(8192));
        assert_eq!(pool.idle(), 2, "more than max_bufs kept");
    }

    #[test]
    fn large_and_empty_buffers_are_not_kept() {
        let pool = BufferPool::new(8, 1 << 20);
        pool.put(IoBuf::with_len(2 << 20));
        pool.put(IoBuf::new());
        assert_eq!(pool.idle(), 0);
        // An empty pool still hands out buffers.
        assert_eq!(pool.take(100).len(), 100);
    }
}
