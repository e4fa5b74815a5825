//! Generates the daemon's QMP interface from schema/ with qapi-gen.

fn main() {
    let top = concat!(env!("CARGO_MANIFEST_DIR"), "/../schema/storage-daemon.json");
    // Conditions map to this crate's features (fuse, vhost-user-blk, vduse)
    // and target checks; see qapi_gen::rust::CondMap.
    if let Err(e) = qapi_gen::Config::new().doc_style(true).compile(top) {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
