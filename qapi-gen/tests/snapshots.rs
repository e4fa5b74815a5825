//! Snapshot tests for the schema front end.
//!
//! Every file in `cases/err/` is a schema that must be rejected; its
//! diagnostics are snapshotted. Every file in `cases/ok/` must load; the
//! dump of its model is snapshotted. Files whose name starts with `style-`
//! are loaded with the documentation typography rules enabled.

use std::path::Path;

use qapi_gen::{CheckOptions, Schema};

/// The case's path relative to the package directory (the working directory
/// of `cargo test`), so that diagnostics in snapshots do not depend on where
/// the workspace lives.
fn relative_path(path: &Path) -> String {
    let rel = path
        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path);
    rel.to_string_lossy().into_owned()
}

fn options(path: &Path) -> CheckOptions {
    let stem = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    CheckOptions {
        doc_style: stem.starts_with("style-"),
    }
}

#[test]
fn err_cases() {
    insta::glob!("cases/err/*.json", |path| {
        let rel = relative_path(path);
        match Schema::load(&rel, &options(path)) {
            Ok(_) => panic!("{rel}: the schema was accepted, but it must be rejected"),
            Err(e) => insta::assert_snapshot!(e.to_string()),
        }
    });
}

#[test]
fn ok_cases() {
    insta::glob!("cases/ok/*.json", |path| {
        let rel = relative_path(path);
        match Schema::load(&rel, &options(path)) {
            Ok(schema) => insta::assert_snapshot!(qapi_gen::dump::dump(&schema)),
            Err(e) => panic!("{rel}: the schema was rejected:\n{e}"),
        }
    });
}
