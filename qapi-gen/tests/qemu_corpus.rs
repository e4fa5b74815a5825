//! QEMU's own schema-frontend test cases (../shared/qemu-qapi/tests) and the
//! real QEMU schemas, run through the `qapi-gen` binary.
//!
//! For every listed case: the verdict must match QEMU's, rejected cases must
//! report QEMU's first `FILE:LINE[:COL]`, accepted cases must dump exactly
//! QEMU's `.out`. Skips (with a message) when ../shared is absent.

mod common;

use std::path::Path;

use common::shared;
use std::process::Command;

/// The `FILE:LINE[:COL]` of the first diagnostic line in `text`.
fn first_location(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (loc, _) = line.split_once(": ")?;
        let mut parts = loc.split(':');
        let file = parts.next()?;
        let nums: Vec<&str> = parts.collect();
        let numeric = !nums.is_empty()
            && nums.len() <= 2
            && nums
                .iter()
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        (numeric && !file.contains(' ')).then(|| loc.to_string())
    })
}

fn qapi_gen(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_qapi-gen"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run qapi-gen");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn qemu_frontend_corpus() {
    let Some(shared) = shared() else { return };
    let tests = shared.join("qemu-qapi/tests");
    let list =
        std::fs::read_to_string(shared.join("qemu-qapi/tests-list.txt")).expect("tests-list.txt");
    let mut failures = Vec::new();
    let (mut verdicts, mut locations, mut dumps, mut total) = (0, 0, 0, 0);
    for name in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        total += 1;
        let file = format!("{name}.json");
        // QEMU's current generator enforces its documentation typography.
        let (ok, stdout, stderr) = qapi_gen(&tests, &["dump", "--doc-style", &file]);
        let expected_err =
            std::fs::read_to_string(tests.join(format!("{name}.err"))).unwrap_or_default();
        let should_fail = !expected_err.trim().is_empty();
        if ok == should_fail {
            failures.push(format!(
                "{name}: verdict {} but QEMU {}\n{stderr}",
                if ok { "accepted" } else { "rejected" },
                if should_fail { "rejects" } else { "accepts" }
            ));
            continue;
        }
        verdicts += 1;
        if should_fail {
            let want = first_location(&expected_err);
            let got = first_location(&stderr);
            if want == got {
                locations += 1;
            } else {
                failures.push(format!(
                    "{name}: first location {got:?}, QEMU says {want:?}\n{stderr}"
                ));
            }
        } else {
            let want =
                std::fs::read_to_string(tests.join(format!("{name}.out"))).unwrap_or_default();
            if stdout == want {
                dumps += 1;
            } else {
                failures.push(format!("{name}: dump differs from {name}.out"));
            }
        }
    }
    println!(
        "QEMU corpus: {verdicts}/{total} verdicts, {locations} locations, {dumps} dumps match"
    );
    assert!(
        failures.is_empty(),
        "{} corpus cases differ from QEMU:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(verdicts, total);
}

#[test]
fn real_qemu_schemas_check_clean() {
    let Some(shared) = shared() else { return };
    let tops = [
        ("qemu-qapi/schema/qapi/qapi-schema.json", true),
        ("qemu-qapi/schema/qga/qapi-schema.json", true),
        (
            "qemu-qapi/schema/storage-daemon/qapi/qapi-schema.json",
            true,
        ),
        // QEMU 10.0 predates the typography rules.
        (
            "qemu-qapi-10.0/schema/storage-daemon/qapi/qapi-schema.json",
            false,
        ),
    ];
    for (top, style) in tops {
        let mut args = vec!["check"];
        if style {
            args.push("--doc-style");
        }
        args.push(top);
        let (ok, stdout, stderr) = qapi_gen(&shared, &args);
        assert!(
            ok && stdout.is_empty() && stderr.is_empty(),
            "{top} must check clean:\n{stderr}"
        );
    }
}

#[test]
fn unreadable_top_file_is_one_line() {
    let dir = std::env::temp_dir();
    let (ok, _, stderr) = qapi_gen(&dir, &["check", "no-such-schema-file.json"]);
    assert!(!ok);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no-such-schema-file.json"), "{stderr}");
}
