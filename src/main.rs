//! `storage-daemon`: the qemu-storage-daemon compatible binary.

fn main() {
    std::process::exit(storage_runtime::main_entry(std::env::args().collect()));
}
