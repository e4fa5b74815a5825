//! The binary's cargo features (`nbd`, `fuse`, `vhost-user-blk`, `vduse`)
//! decide which export backends exist: a backend left out is gone from
//! `query-qmp-schema`, `query-commands`, `--help` and the command line,
//! and asking for it fails the way qemu-storage-daemon fails for an
//! export type or command it has never heard of.
//!
//! Every assertion is written against `cfg!(feature = ...)`, so the same
//! file checks the default build and each `--no-default-features
//! --features X` build of `./test.sh`.

mod common;

use std::collections::BTreeSet;

use common::{Daemon, OURS, TempDir, strings};
use serde_json::{Value, json};

/// One backend: its feature, its `BlockExportType` value, and the
/// type-specific arguments of a well-formed `block-export-add`.
struct Backend {
    enabled: bool,
    ty: &'static str,
    args: fn(&TempDir) -> Value,
}

fn backends() -> [Backend; 4] {
    [
        Backend {
            enabled: cfg!(feature = "nbd"),
            ty: "nbd",
            args: |_| json!({}),
        },
        Backend {
            enabled: cfg!(feature = "fuse"),
            ty: "fuse",
            args: |d| json!({ "mountpoint": d.join("missing-mountpoint") }),
        },
        Backend {
            enabled: cfg!(feature = "vhost-user-blk"),
            ty: "vhost-user-blk",
            args: |d| json!({ "addr": { "type": "unix", "path": d.join("vub.sock") } }),
        },
        Backend {
            enabled: cfg!(feature = "vduse"),
            ty: "vduse-blk",
            args: |_| json!({ "name": "vduse0" }),
        },
    ]
}

/// The commands only the NBD backend brings.
const NBD_COMMANDS: [&str; 4] = [
    "nbd-server-start",
    "nbd-server-add",
    "nbd-server-remove",
    "nbd-server-stop",
];

fn enabled_types() -> BTreeSet<String> {
    backends()
        .iter()
        .filter(|b| b.enabled)
        .map(|b| b.ty.to_string())
        .collect()
}

/// What qsd answers for an export type it does not know (checked with
/// qemu-storage-daemon 10.0.2, on QMP and on the command line).
fn unknown_type(ty: &str) -> String {
    format!("Parameter 'type' does not accept value '{ty}'")
}

fn daemon(dir: &TempDir) -> Daemon {
    Daemon::start(OURS, dir, &strings(&["--blockdev", "null-co,node-name=n0"]))
}

/// The `query-qmp-schema` entry named `name` (type names are masked, so
/// entries are found by following references from a command).
fn entry<'a>(schema: &'a [Value], name: &str) -> &'a Value {
    schema
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("query-qmp-schema has no entry {name}"))
}

#[test]
fn export_types_follow_features() {
    let dir = TempDir::new("features-schema");
    let d = daemon(&dir);
    let mut q = d.qmp();
    let schema = q.cmd("query-qmp-schema", Value::Null);
    let schema = schema.as_array().expect("query-qmp-schema returns a list");

    let add = entry(schema, "block-export-add");
    let options = entry(schema, add["arg-type"].as_str().expect("arg-type"));
    let cases: BTreeSet<String> = options["variants"]
        .as_array()
        .expect("BlockExportOptions is a union")
        .iter()
        .map(|v| v["case"].as_str().expect("case").to_string())
        .collect();
    assert_eq!(cases, enabled_types(), "BlockExportOptions branches");

    let tag = options["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["name"] == "type")
        .expect("the union's tag");
    let ty = entry(schema, tag["type"].as_str().expect("tag type"));
    let values: BTreeSet<String> = ty["values"]
        .as_array()
        .expect("BlockExportType is an enum")
        .iter()
        .map(|v| v.as_str().expect("value").to_string())
        .collect();
    assert_eq!(values, enabled_types(), "BlockExportType values");

    // The branch types that have a condition of their own (NBD's, FUSE's)
    // are gone too. Types with no condition of their own that only a
    // left-out branch uses (BlockExportOptionsVhostUserBlk,
    // BlockExportOptionsVduseBlk, FuseExportAllowOther, SocketAddressLegacy)
    // stay as unreferenced entries, as in QEMU: its introspection lists
    // every type a conditional entry uses, under that type's own condition.
    let objects_with = |member: &str| {
        schema.iter().any(|e| {
            e["meta-type"] == "object"
                && e["members"]
                    .as_array()
                    .is_some_and(|ms| ms.iter().any(|m| m["name"] == member))
        })
    };
    for (member, feature) in [
        ("allocation-depth", cfg!(feature = "nbd")),
        ("max-connections", cfg!(feature = "nbd")),
        ("mountpoint", cfg!(feature = "fuse")),
    ] {
        assert_eq!(
            objects_with(member),
            feature,
            "an object with member {member}"
        );
    }
}

#[test]
fn nbd_commands_follow_the_nbd_feature() {
    let dir = TempDir::new("features-commands");
    let d = daemon(&dir);
    let mut q = d.qmp();
    let listed = q.cmd("query-commands", Value::Null);
    let listed: BTreeSet<&str> = listed
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let schema = q.cmd("query-qmp-schema", Value::Null);
    for name in NBD_COMMANDS {
        let introspected = schema
            .as_array()
            .expect("a list")
            .iter()
            .any(|e| e["name"] == name && e["meta-type"] == "command");
        assert_eq!(listed.contains(name), cfg!(feature = "nbd"), "{name}");
        assert_eq!(introspected, cfg!(feature = "nbd"), "{name}");
    }
    if !cfg!(feature = "nbd") {
        let e = q.err(
            "nbd-server-start",
            json!({"addr": {"type": "unix", "data": {"path": dir.join("nbd.sock")}}}),
        );
        assert_eq!(e.class, "CommandNotFound");
        assert_eq!(e.desc, "The command nbd-server-start has not been found");
    }
}

#[test]
fn left_out_export_types_are_unknown_types() {
    let dir = TempDir::new("features-qmp");
    let d = daemon(&dir);
    let mut q = d.qmp();
    let nosuch = q.err(
        "block-export-add",
        json!({"type": "nosuch", "id": "e", "node-name": "n0"}),
    );
    assert_eq!(
        (nosuch.class.as_str(), nosuch.desc.as_str()),
        ("GenericError", unknown_type("nosuch").as_str())
    );
    for b in backends() {
        let mut args = (b.args)(&dir);
        let obj = args.as_object_mut().expect("an object");
        obj.insert("type".into(), json!(b.ty));
        obj.insert("id".into(), json!(format!("e-{}", b.ty)));
        obj.insert("node-name".into(), json!("n0"));
        let r = q.execute("block-export-add", args.clone());
        if b.enabled {
            // Present types get past argument checking: whatever the
            // backend answers, it is not "unknown type".
            if let Err(e) = r {
                assert_ne!(e.desc, unknown_type(b.ty), "{args}");
            }
        } else {
            let e = r.expect_err("a left-out type must be refused");
            assert_eq!(e.class, "GenericError", "{args}");
            assert_eq!(e.desc, unknown_type(b.ty), "{args}");
        }
    }
    // Whatever was refused, the daemon is still up.
    q.alive();
}

#[test]
fn command_line_follows_features() {
    let dir = TempDir::new("features-cli");
    for b in backends() {
        let spec = format!("{},id=e,node-name=nx", b.ty);
        let (status, _, err) = common::run_to_exit(OURS, &strings(&["--export", &spec]));
        assert_eq!(status, 1, "--export {spec}: {err}");
        let refused_as_unknown = err.contains(&unknown_type(b.ty));
        assert_eq!(refused_as_unknown, !b.enabled, "--export {spec}: {err}");
        if !b.enabled {
            assert_eq!(
                err,
                format!("storage-daemon: --export {spec}: {}\n", unknown_type(b.ty))
            );
        }
    }

    // Without NBD, --nbd-server is an option this daemon does not have,
    // as nbd-server-start is a command it does not have.
    let sock = dir.join("nbd.sock");
    let (status, _, err) = common::run_to_exit(
        OURS,
        &strings(&[
            "--nbd-server",
            &format!("addr.type=unix,addr.path={sock}"),
            "--nbd-server",
            "addr.type=nosuch",
        ]),
    );
    assert_eq!(status, 1, "{err}");
    if cfg!(feature = "nbd") {
        assert!(
            err.contains("Parameter 'type' does not accept value 'nosuch'"),
            "{err}"
        );
    } else {
        assert_eq!(err, "storage-daemon: unrecognized option '--nbd-server'\n");
    }

    let (status, help, _) = common::run_to_exit(OURS, &strings(&["--help"]));
    assert_eq!(status, 0);
    assert_eq!(help.contains("--nbd-server"), cfg!(feature = "nbd"));
    for b in backends() {
        let line = format!("--export [type=]{},", b.ty);
        assert_eq!(help.contains(&line), b.enabled, "--help and {}", b.ty);
    }
}
