//! `qapi-gen crate` for QEMU's three top-level schemas, then `cargo check`
//! of each generated crate with no features and with all of them.
//!
//! Slow (minutes), so ignored by default; `./test.sh` runs it with
//! `--ignored`. Skips, saying why, when ../shared is absent.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

#[test]
#[ignore = "builds three large generated crates; run by ./test.sh"]
fn qemu_schemas_generate_crates_that_build() {
    let Some(shared) = common::shared() else {
        return;
    };
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("generated-crates");
    let target = work.join("target");
    let schemas = [
        ("qemu-qapi", "qemu-qapi/schema/qapi/qapi-schema.json"),
        ("qemu-qga", "qemu-qapi/schema/qga/qapi-schema.json"),
        (
            "qemu-storage-daemon",
            "qemu-qapi/schema/storage-daemon/qapi/qapi-schema.json",
        ),
    ];
    let mut failures = Vec::new();
    for (name, schema) in schemas {
        let dir = work.join(name);
        let out = Command::new(env!("CARGO_BIN_EXE_qapi-gen"))
            .args([
                "crate",
                &shared.join(schema).to_string_lossy(),
                "--name",
                name,
                "--out-dir",
            ])
            .arg(&dir)
            .output()
            .expect("run qapi-gen");
        assert!(
            out.status.success(),
            "qapi-gen crate {schema}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for features in [&[][..], &["--all-features"][..]] {
            let start = Instant::now();
            let out = Command::new(env!("CARGO"))
                .arg("check")
                .args(features)
                .arg("--quiet")
                .current_dir(&dir)
                .env("CARGO_TARGET_DIR", &target)
                .output()
                .expect("run cargo check");
            let label = if features.is_empty() {
                "no features"
            } else {
                "all features"
            };
            println!(
                "{name} ({label}): cargo check {} in {:.1}s",
                if out.status.success() { "ok" } else { "FAILED" },
                start.elapsed().as_secs_f64()
            );
            if !out.status.success() {
                failures.push(format!(
                    "{name} ({label}):\n{}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
