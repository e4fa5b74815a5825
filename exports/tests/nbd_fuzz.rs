//! Stable-toolchain fuzzing of the NBD session: thousands of generated
//! client conversations (random bytes, option streams, request streams in
//! every reply mode, then bit flips) through `nbd::fuzz::session_input`,
//! which fails on a panic or a session that does not end. The same entry
//! point backs the cargo-fuzz target in `exports/fuzz` (nightly).
//!
//! `NBD_FUZZ_CASES` sets the number of cases per family (default 400) and
//! `NBD_FUZZ_SEED` the seed, to reproduce or to search longer.
#![cfg(feature = "nbd")]

use storage_exports::nbd::codec::*;
use storage_exports::nbd::fuzz::{Start, session_input};

#[path = "support/generate.rs"]
mod generate;
use generate::{Rng, env_u64};

const EXPORT_SIZE: u64 = 64 * 1024;

fn cases() -> u64 {
    env_u64("NBD_FUZZ_CASES", 400)
}

fn seed() -> u64 {
    env_u64("NBD_FUZZ_SEED", 0x6e62_6466_757a_7a31)
}

/// Flips a few bits, cuts the tail or duplicates a piece.
fn mutate(rng: &mut Rng, mut data: Vec<u8>) -> Vec<u8> {
    if data.is_empty() {
        return data;
    }
    match rng.below(4) {
        0 => {
            for _ in 0..=rng.below(4) {
                let i = rng.below(data.len() as u64) as usize;
                data[i] ^= 1 << rng.below(8);
            }
        }
        1 => data.truncate(rng.below(data.len() as u64) as usize),
        2 => {
            let i = rng.below(data.len() as u64) as usize;
            let piece = data[i..].to_vec();
            data.extend_from_slice(&piece[..piece.len().min(64)]);
        }
        _ => {}
    }
    data
}

fn option(rng: &mut Rng, out: &mut Vec<u8>) {
    let opt = match rng.below(3) {
        0 => rng.below(16) as u32,
        1 => [
            OPT_GO,
            OPT_INFO,
            OPT_LIST_META_CONTEXT,
            OPT_SET_META_CONTEXT,
        ][rng.below(4) as usize],
        _ => rng.next() as u32,
    };
    let mut payload = Vec::new();
    match rng.below(3) {
        // An export name and info requests or meta queries, lengths edgy.
        0 => {
            let name: &[u8] = [&b"fuzz"[..], b"ro", b"", b"nosuch"][rng.below(4) as usize];
            let len = rng.edgy(&[name.len() as u64, 0, 4096]) as u32;
            payload.extend_from_slice(&len.to_be_bytes());
            payload.extend_from_slice(name);
            let n = rng.edgy(&[0, 1, 2, 3]) as u16;
            payload.extend_from_slice(&n.to_be_bytes());
            for _ in 0..rng.below(4) {
                if rng.below(2) == 0 {
                    payload.extend_from_slice(&(rng.below(5) as u16).to_be_bytes());
                } else {
                    let q: &[u8] = [
                        &b"base:allocation"[..],
                        b"qemu:",
                        b"qemu:allocation-depth",
                        b"base:",
                    ][rng.below(4) as usize];
                    payload.extend_from_slice(&(q.len() as u32).to_be_bytes());
                    payload.extend_from_slice(q);
                }
            }
        }
        1 => {
            let n = rng.below(40) as usize;
            payload = rng.bytes(n);
        }
        _ => {}
    }
    let len = if rng.below(8) == 0 {
        rng.edgy(&[0, payload.len() as u64, u64::from(u32::MAX)]) as u32
    } else {
        payload.len() as u32
    };
    out.extend_from_slice(&OptionHeader { option: opt, len }.encode());
    out.extend_from_slice(&payload);
}

fn request(rng: &mut Rng, extended: bool, out: &mut Vec<u8>) {
    let ty = if rng.below(8) == 0 {
        rng.next() as u16
    } else {
        [
            CMD_READ,
            CMD_WRITE,
            CMD_FLUSH,
            CMD_TRIM,
            CMD_CACHE,
            CMD_WRITE_ZEROES,
            CMD_BLOCK_STATUS,
        ][rng.below(7) as usize]
    };
    let flags = if rng.below(4) == 0 {
        rng.next() as u16
    } else {
        [
            0,
            CMD_FLAG_FUA,
            CMD_FLAG_DF,
            CMD_FLAG_REQ_ONE,
            CMD_FLAG_NO_HOLE,
            CMD_FLAG_FAST_ZERO,
        ][rng.below(6) as usize]
            | if extended && rng.below(4) == 0 {
                CMD_FLAG_PAYLOAD_LEN
            } else {
                0
            }
    };
    let offset = rng.edgy(&[0, 4096, EXPORT_SIZE - 4096, EXPORT_SIZE]);
    let len = rng.edgy(&[0, 1, 512, 4096, EXPORT_SIZE, u64::from(u32::MAX), 32 << 20]);
    let len = if extended { len } else { len & 0xffff_ffff };
    let req = Request {
        flags,
        ty,
        cookie: rng.next(),
        offset,
        len,
    };
    let mut header = req.encode(extended);
    if rng.below(16) == 0 {
        header[0] ^= 0x40; // a wrong magic
    }
    out.extend_from_slice(&header);
    let with_payload = ty == CMD_WRITE || flags & CMD_FLAG_PAYLOAD_LEN != 0;
    if with_payload && len <= 128 * 1024 {
        let n = if rng.below(4) == 0 {
            rng.below(len + 1)
        } else {
            len
        };
        out.extend_from_slice(&rng.bytes(n as usize));
    }
}

#[test]
fn random_bytes_from_the_first_byte() {
    let mut rng = Rng(seed());
    for _ in 0..cases() {
        let n = rng.below(200) as usize;
        let data = rng.bytes(n);
        session_input(Start::Handshake, &data);
    }
}

#[test]
fn option_streams() {
    let mut rng = Rng(seed() ^ 1);
    for _ in 0..cases() {
        let mut data = Vec::new();
        let flags = if rng.below(8) == 0 {
            rng.next() as u32
        } else {
            FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES
        };
        data.extend_from_slice(&flags.to_be_bytes());
        for _ in 0..=rng.below(6) {
            option(&mut rng, &mut data);
        }
        // Sometimes go on into transmission with a few requests.
        for _ in 0..rng.below(3) {
            request(&mut rng, false, &mut data);
        }
        let data = mutate(&mut rng, data);
        session_input(Start::Handshake, &data);
    }
}

#[test]
fn request_streams_in_every_mode() {
    let mut rng = Rng(seed() ^ 2);
    for mode in [Mode::Simple, Mode::Structured, Mode::Extended] {
        for _ in 0..cases() {
            let mut data = Vec::new();
            for _ in 0..=rng.below(20) {
                request(&mut rng, mode == Mode::Extended, &mut data);
            }
            let data = mutate(&mut rng, data);
            let out = session_input(Start::Transmission(mode), &data);
            // The handshake went through: the server answered something.
            assert!(!out.is_empty(), "{mode:?}: no answer at all");
        }
    }
}

/// Well-formed requests only: every one of them gets exactly one reply
/// (the last chunk flagged done), none is lost or answered twice.
#[test]
fn every_valid_request_is_answered_once() {
    let mut rng = Rng(seed() ^ 3);
    for _ in 0..cases() / 4 {
        let mut data = Vec::new();
        let mut cookies = Vec::new();
        for i in 0..=rng.below(40) {
            let ty = [
                CMD_READ,
                CMD_WRITE,
                CMD_FLUSH,
                CMD_WRITE_ZEROES,
                CMD_BLOCK_STATUS,
            ][rng.below(5) as usize];
            let len = 1 + rng.below(8192);
            let req = Request {
                flags: 0,
                ty,
                cookie: i,
                offset: rng.below(EXPORT_SIZE - len),
                len,
            };
            data.extend_from_slice(&req.encode(false));
            if ty == CMD_WRITE {
                data.extend_from_slice(&rng.bytes(len as usize));
            }
            cookies.push(i);
        }
        let out = session_input(Start::Transmission(Mode::Structured), &data);
        let mut answered = done_cookies(&out);
        answered.sort_unstable();
        assert_eq!(answered, cookies);
    }
}

/// The cookies of the final replies in a structured-mode stream (after the
/// handshake's option replies): simple replies and chunks flagged done.
fn done_cookies(out: &[u8]) -> Vec<u64> {
    let be32 = |i: usize| u32::from_be_bytes([out[i], out[i + 1], out[i + 2], out[i + 3]]);
    let be16 = |i: usize| u16::from_be_bytes([out[i], out[i + 1]]);
    let mut i = 0;
    // Greeting (18 bytes), then option replies: magic, option, type, length.
    i += 18;
    loop {
        let len = be32(i + 16) as usize;
        let ty = be32(i + 12);
        i += 20 + len;
        if ty == 1 && be32(i - 20 - len + 8) == OPT_GO {
            break; // NBD_REP_ACK of GO
        }
    }
    let mut done = Vec::new();
    while i < out.len() {
        let cookie = u64::from_be_bytes(out[i + 8..i + 16].try_into().expect("8 bytes"));
        // Structured mode still answers successful non-reads simply.
        if be32(i) == SIMPLE_REPLY_MAGIC {
            done.push(cookie);
            i += 16;
            continue;
        }
        assert_eq!(be32(i), STRUCTURED_REPLY_MAGIC, "reply magic at byte {i}");
        let flags = be16(i + 4);
        let len = be32(i + 16) as usize;
        if flags & REPLY_FLAG_DONE != 0 {
            done.push(cookie);
        }
        i += 20 + len;
    }
    done
}
