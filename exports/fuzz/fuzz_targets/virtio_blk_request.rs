//! Arbitrary guest memory contents (descriptor table, available ring,
//! headers, indirect tables, data) against the virtio-blk engine; see
//! `storage_exports::virtio_blk::fuzz::chain_input` for the layout.
#![no_main]

use libfuzzer_sys::fuzz_target;
use storage_exports::virtio_blk::fuzz::chain_input;

fuzz_target!(|data: &[u8]| {
    chain_input(data);
});
