//! `IoBuf`: the owned, page-aligned byte buffer every request carries.

use std::alloc::{self, Layout};
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// An owned byte buffer whose storage is aligned to [`IoBuf::ALIGN`], so
/// that `O_DIRECT` (and, later, registered io_uring buffers) can use it
/// without a bounce copy.
///
/// A request hands its buffer to the block layer and gets it back with the
/// result ([`super::BufResult`]), so the I/O may run on another thread (or
/// in the kernel) even if the caller's future is dropped half way. Callers
/// keep buffers in a pool: [`IoBuf::set_len`] reuses the allocation and
/// only zeroes bytes that were never initialized.
pub struct IoBuf {
    ptr: NonNull<u8>,
    len: usize,
    /// Bytes `[0, init)` have been written at least once.
    init: usize,
    cap: usize,
}

// SAFETY: IoBuf owns its allocation exclusively, like Vec<u8>.
unsafe impl Send for IoBuf {}
// SAFETY: shared access only hands out &[u8].
unsafe impl Sync for IoBuf {}

impl IoBuf {
    /// Alignment of the storage: a page, enough for any logical block size.
    pub const ALIGN: usize = 4096;

    /// An empty buffer; allocates nothing.
    pub const fn new() -> Self {
        IoBuf {
            ptr: NonNull::dangling(),
            len: 0,
            init: 0,
            cap: 0,
        }
    }

    /// A zero-filled buffer of `len` bytes.
    pub fn with_len(len: usize) -> Self {
        let mut b = IoBuf::new();
        b.set_len(len);
        b
    }

    /// A buffer holding a copy of `data`.
    pub fn from_slice(data: &[u8]) -> Self {
        let mut b = IoBuf::new();
        b.reserve(data.len());
        // SAFETY: the allocation holds at least data.len() bytes and does not
        // overlap `data`.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), b.ptr.as_ptr(), data.len()) };
        b.len = data.len();
        b.init = data.len();
        b
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Sets the length. Bytes already in the buffer keep their value
    /// (including bytes past the old length that an earlier, longer use
    /// wrote); bytes never written are zeroed. Grows the allocation if
    /// needed.
    pub fn set_len(&mut self, len: usize) {
        self.reserve(len);
        if len > self.init {
            // SAFETY: [init, len) lies inside the allocation.
            unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(self.init), 0, len - self.init) };
            self.init = len;
        }
        self.len = len;
    }

    /// Makes the capacity at least `cap`, keeping the initialized bytes.
    fn reserve(&mut self, cap: usize) {
        if cap <= self.cap {
            return;
        }
        let new_cap = cap.next_multiple_of(Self::ALIGN);
        let layout =
            Layout::from_size_align(new_cap, Self::ALIGN).expect("buffer size overflows isize");
        // SAFETY: new_cap > 0.
        let raw = unsafe { alloc::alloc(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        if self.cap > 0 {
            // SAFETY: both allocations hold at least `init` bytes.
            unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), ptr.as_ptr(), self.init) };
            // SAFETY: allocated by us with this layout.
            unsafe { alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.cap)) };
        }
        self.ptr = ptr;
        self.cap = new_cap;
    }

    fn layout(cap: usize) -> Layout {
        // Valid: checked when the allocation was made.
        Layout::from_size_align(cap, Self::ALIGN).expect("layout checked at allocation")
    }
}

impl Default for IoBuf {
    fn default() -> Self {
        IoBuf::new()
    }
}

impl Drop for IoBuf {
    fn drop(&mut self) {
        if self.cap > 0 {
            // SAFETY: allocated by `reserve` with this layout.
            unsafe { alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.cap)) };
        }
    }
}

impl Deref for IoBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: [0, len) is initialized (len <= init) and owned by self;
        // for cap == 0 the pointer is dangling but len == 0.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for IoBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in deref, and &mut self gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Clone for IoBuf {
    fn clone(&self) -> Self {
        IoBuf::from_slice(self)
    }
}

impl fmt::Debug for IoBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoBuf")
            .field("len", &self.len)
            .field("cap", &self.cap)
            .finish()
    }
}

impl PartialEq for IoBuf {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for IoBuf {}

/// Whether every byte of `buf` is zero (detect-zeroes, tests).
pub fn is_zero(buf: &[u8]) -> bool {
    // SAFETY: u128 has no invalid bit patterns.
    let (head, body, tail) = unsafe { buf.align_to::<u128>() };
    head.iter().all(|&b| b == 0) && body.iter().all(|&w| w == 0) && tail.iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_zeroed_and_reused() {
        let mut b = IoBuf::with_len(10);
        assert_eq!(b.as_ptr() as usize % IoBuf::ALIGN, 0);
        assert!(is_zero(&b));
        b.fill(7);
        b.set_len(4);
        b.set_len(10);
        assert_eq!(&b[..], &[7; 10]);
        b.set_len(5000);
        assert_eq!(&b[..10], &[7; 10]);
        assert!(is_zero(&b[10..]));
        assert_eq!(IoBuf::new().len(), 0);
        assert_eq!(IoBuf::from_slice(b"abc").clone(), IoBuf::from_slice(b"abc"));
    }
}
