//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

/// `../shared` (QEMU reference data), or `None` after saying why the
/// caller skips.
pub fn shared() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: {} does not exist (QEMU reference data is only in the project checkout)",
            dir.display()
        );
        None
    }
}
