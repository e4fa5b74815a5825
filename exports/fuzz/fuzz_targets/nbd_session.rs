//! Arbitrary client bytes against one NBD session. The first byte picks
//! where they start: the handshake, or transmission after a valid
//! handshake in simple, structured or extended mode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use storage_exports::nbd::codec::Mode;
use storage_exports::nbd::fuzz::{Start, session_input};

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let start = match first % 4 {
        0 => Start::Handshake,
        1 => Start::Transmission(Mode::Simple),
        2 => Start::Transmission(Mode::Structured),
        _ => Start::Transmission(Mode::Extended),
    };
    session_input(start, rest);
});
