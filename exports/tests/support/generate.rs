//! What the generated-input tests (`nbd_fuzz.rs`, `virtio_blk_fuzz.rs`)
//! share: a deterministic generator and their environment knobs.

#![allow(dead_code)] // each test uses part of it

/// xorshift64*: deterministic, so a failure names its case.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    pub fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len() as u64) as usize]
    }

    /// A value that often sits on a boundary.
    pub fn edgy(&mut self, around: &[u64]) -> u64 {
        let base = self.pick(around);
        match self.below(4) {
            0 => base,
            1 => base.wrapping_add(self.below(8)),
            2 => base.wrapping_sub(self.below(8)),
            _ => self.next(),
        }
    }
}

/// The number in environment variable `var`, or `default`.
pub fn env_u64(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
