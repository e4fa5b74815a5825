//! Runtime of the storage daemon: QMP server, block graph, command line.

/// Entry point used by the `storage-daemon` binary; returns the exit code.
pub fn main_entry(args: Vec<String>) -> i32 {
    let prog = args.first().map(String::as_str).unwrap_or("storage-daemon");
    eprintln!("{prog}: the daemon is not implemented yet; see README.md");
    1
}
