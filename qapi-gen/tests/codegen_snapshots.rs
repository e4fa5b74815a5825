//! Snapshot tests for the Rust backend: the code generated for every valid
//! test schema in `cases/ok/`. (That it compiles and behaves is checked by
//! the `codegen-tests` crate.)
//!
//! Conditions follow the default rule (cargo features), and the output is
//! the generator's own layout, without prettyplease.

use std::path::Path;

use qapi_gen::rust::{CondMap, RustOptions};
use qapi_gen::{CheckOptions, Schema};

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[test]
fn generated_code() {
    insta::glob!("cases/ok/*.json", |path| {
        let name = file_name(path);
        // As in snapshots.rs: `style-` cases follow the typography rules.
        let check = CheckOptions {
            doc_style: name.starts_with("style-"),
        };
        let schema = match Schema::load(path, &check) {
            Ok(s) => s,
            Err(e) => panic!("{name}: the schema was rejected:\n{e}"),
        };
        let opts = RustOptions {
            conds: CondMap::features_only(),
            source_name: name,
        };
        insta::assert_snapshot!(qapi_gen::rust::generate(&schema, &opts));
    });
}
