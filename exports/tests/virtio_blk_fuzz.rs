//! Stable-toolchain fuzzing of the virtio-blk engine: thousands of
//! generated queues (random bytes, then descriptor tables built from
//! plausible and boundary values: headers split anywhere, every request
//! type, descriptors across the hole in guest memory, indirect tables,
//! loops, then bit flips) through `virtio_blk::fuzz::chain_input`, which
//! fails on a panic, a hang, a write outside the device-writable
//! descriptors or a used length longer than them. The same entry point
//! backs the cargo-fuzz target in `exports/fuzz` (nightly).
//!
//! `VIRTIO_BLK_FUZZ_CASES` sets the number of cases per family (default
//! 400) and `VIRTIO_BLK_FUZZ_SEED` the seed, to reproduce or to search
//! longer.
#![cfg(feature = "virtio-engine")]

use storage_exports::virtio_blk::fuzz::{FUZZ_DATA, FUZZ_REGIONS, FuzzStats, chain_input};

#[path = "support/generate.rs"]
mod generate;
use generate::{Rng, env_u64};

fn cases() -> u64 {
    env_u64("VIRTIO_BLK_FUZZ_CASES", 400)
}

fn seed() -> u64 {
    env_u64("VIRTIO_BLK_FUZZ_SEED", 0x7669_7274_696f_626b)
}

const NEXT: u16 = 1;
const WRITE: u16 = 2;
const INDIRECT: u16 = 4;

fn desc(addr: u64, len: u32, flags: u16, next: u16) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[0..8].copy_from_slice(&addr.to_le_bytes());
    d[8..12].copy_from_slice(&len.to_le_bytes());
    d[12..14].copy_from_slice(&flags.to_le_bytes());
    d[14..16].copy_from_slice(&next.to_le_bytes());
    d
}

/// Addresses worth hitting: the free data area, region ends, the hole,
/// the end of memory, the rings, overflow.
fn address(rng: &mut Rng) -> u64 {
    let (r0, r1) = (FUZZ_REGIONS[0], FUZZ_REGIONS[1]);
    rng.edgy(&[
        BUFS,
        BUFS + 0x1000,
        r0.1 as u64,
        r1.0,
        r1.0 + 0x100,
        r1.0 + r1.1 as u64,
        0,
        0x1000,
        u64::MAX,
    ])
}

fn length(rng: &mut Rng) -> u32 {
    rng.edgy(&[0, 1, 8, 15, 16, 17, 32, 512, 513, 4096, 0x8000, 0x10000]) as u32
}

/// Where the data area puts request headers (32-byte slots: header and
/// a discard range), indirect tables (64-byte slots) and buffers.
const SLOTS: usize = 8;
const TABLES: u64 = FUZZ_DATA + 32 * SLOTS as u64;
const BUFS: u64 = FUZZ_DATA + 0x1000;

/// The data area: [`SLOTS`] request headers with their ranges, then
/// indirect tables, each entry sane or not.
fn data_area(rng: &mut Rng) -> Vec<u8> {
    let mut data = Vec::new();
    for _ in 0..SLOTS {
        let t = rng.edgy(&[0, 1, 4, 8, 10, 11, 13, 14, 0x8000_0000, 0x8000_0001]) as u32;
        let sector = rng.edgy(&[0, 1, 7, 8, 64, 120, 127, 128, 1 << 55]);
        data.extend_from_slice(&t.to_le_bytes());
        data.extend_from_slice(&0u32.to_le_bytes());
        data.extend_from_slice(&sector.to_le_bytes());
        data.extend_from_slice(&rng.edgy(&[0, 1, 8, 120, 127]).to_le_bytes());
        data.extend_from_slice(&(rng.edgy(&[0, 1, 8, 16, 32768, 32769]) as u32).to_le_bytes());
        data.extend_from_slice(&(rng.pick(&[0u32, 0, 1, 2])).to_le_bytes());
    }
    for _ in 0..4 {
        let descs = well_formed(rng);
        for (i, d) in descs.iter().enumerate().take(4) {
            let mut flags = if d.2 { WRITE } else { 0 };
            if i + 1 < descs.len().min(4) {
                flags |= NEXT;
            }
            if rng.below(16) == 0 {
                flags ^= rng.pick(&[NEXT, WRITE, INDIRECT]);
            }
            data.extend_from_slice(&desc(d.0, d.1, flags, i as u16 + 1));
        }
        for _ in descs.len().min(4)..4 {
            data.extend_from_slice(&[0; 16]);
        }
    }
    data
}

/// A plausible request: a header slot (maybe cut or split), data
/// buffers, a status byte (or something close to that).
fn well_formed(rng: &mut Rng) -> Vec<(u64, u32, bool)> {
    let slot = FUZZ_DATA + 32 * rng.below(SLOTS as u64);
    let mut descs = match rng.below(6) {
        0 => vec![(slot, 5, false), (slot + 5, 11, false)],
        1 => vec![(slot, 32, false)],
        2 => vec![(slot, 16, false), (slot + 16, 16, false)],
        3 => vec![(slot, rng.pick(&[0, 8, 15, 17]), false)],
        _ => vec![(slot, 16, false)],
    };
    for _ in 0..rng.below(4) {
        let len = rng.pick(&[512, 1024, 4096, 100, 0, 513]);
        let addr = if rng.below(8) == 0 {
            address(rng)
        } else {
            BUFS + 512 * rng.below(40)
        };
        descs.push((addr, len, rng.below(8) != 0));
    }
    match rng.below(8) {
        0 => {}
        1 => descs.push((BUFS, 0, true)),
        _ => descs.push((BUFS + 0x6000 + rng.below(64), 1, true)),
    }
    descs
}

/// A whole input: options, a descriptor table holding a few chains
/// (plausible requests, indirect ones, raw junk), heads, the data area.
fn structured(rng: &mut Rng) -> Vec<u8> {
    let mut input = vec![rng.next() as u8];
    let mut table: Vec<[u8; 16]> = Vec::new();
    let mut heads = Vec::new();
    while table.len() < 12 {
        let head = table.len() as u16;
        match rng.below(4) {
            0 | 1 => {
                let descs = well_formed(rng);
                for (i, d) in descs.iter().enumerate() {
                    let mut flags = if d.2 { WRITE } else { 0 };
                    if i + 1 < descs.len() {
                        flags |= NEXT;
                    }
                    let next = if rng.below(32) == 0 {
                        rng.below(20) as u16
                    } else {
                        head + i as u16 + 1
                    };
                    table.push(desc(d.0, d.1, flags, next));
                }
            }
            2 => {
                let t = TABLES + 64 * rng.below(4);
                table.push(desc(t, 16 * rng.pick(&[1u32, 2, 3, 4]), INDIRECT, 0));
            }
            _ => {
                let flags = rng.next() as u16 & (NEXT | WRITE | INDIRECT);
                let next = rng.below(20) as u16;
                table.push(desc(address(rng), length(rng), flags, next));
            }
        }
        heads.push(if rng.below(16) == 0 {
            rng.below(20) as u16
        } else {
            head
        });
    }
    table.truncate(16);
    input.push(table.len() as u8);
    for d in &table {
        input.extend_from_slice(d);
    }
    heads.truncate(16);
    input.push(heads.len() as u8);
    for h in heads {
        input.extend_from_slice(&h.to_le_bytes());
    }
    input.extend(data_area(rng));
    input
}

/// Flips a few bits or cuts the tail.
fn mutate(rng: &mut Rng, mut data: Vec<u8>) -> Vec<u8> {
    if data.is_empty() {
        return data;
    }
    match rng.below(3) {
        0 => {
            for _ in 0..=rng.below(4) {
                let i = rng.below(data.len() as u64) as usize;
                data[i] ^= 1 << rng.below(8);
            }
        }
        1 => data.truncate(rng.below(data.len() as u64) as usize),
        _ => {}
    }
    data
}

fn run(family: &str, mut generate: impl FnMut(&mut Rng) -> Vec<u8>) {
    let seed = seed();
    for case in 0..cases() {
        let mut rng = Rng(seed ^ case.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let input = generate(&mut rng);
        let r = std::panic::catch_unwind(|| chain_input(&input));
        assert!(
            r.is_ok(),
            "{family} case {case} (VIRTIO_BLK_FUZZ_SEED={seed}) failed on input {input:02x?}"
        );
    }
}

#[test]
fn random_bytes() {
    run("random", |rng| {
        let n = rng.below(400) as usize;
        (0..n).map(|_| rng.next() as u8).collect()
    });
}

#[test]
fn structured_queues() {
    run("structured", structured);
}

#[test]
fn mutated_queues() {
    run("mutated", |rng| {
        let input = structured(rng);
        mutate(rng, input)
    });
}

/// The generator is not vacuous: over its structured cases the engine
/// serves requests with every status, and refuses broken chains.
#[test]
fn generator_reaches_every_outcome() {
    let mut total = FuzzStats::default();
    for case in 0..cases().min(400) {
        let mut rng = Rng(seed() ^ case.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let s = chain_input(&structured(&mut rng));
        total.refused += s.refused;
        total.ok += s.ok;
        total.ioerr += s.ioerr;
        total.unsupp += s.unsupp;
    }
    eprintln!("{total:?}");
    assert!(
        total.refused > 0 && total.ok > 0 && total.ioerr > 0 && total.unsupp > 0,
        "{total:?}"
    );
}
