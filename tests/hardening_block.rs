//! Hardening of the block layer (issue 22): sizes and offsets out of
//! range, options refused as qsd refuses them (tests/hardening_nbd.rs has
//! the inherited-descriptor and pooled-buffer cases). Every test drives
//! the real binary.

mod common;

use serde_json::json;

use common::{Daemon, OURS, TempDir, run_to_exit, strings};

/// `BDRV_MAX_LENGTH`: i64::MAX rounded down to 1 GiB.
const MAX_LENGTH: u64 = 9_223_372_035_781_033_984;

#[test]
fn negative_size_on_the_command_line_is_refused() {
    // qsd 10.0.2 aborts (exit 134) here; we refuse the option.
    let (code, _, err) = run_to_exit(
        OURS,
        &strings(&["--blockdev", "null-co,node-name=n,size=-1"]),
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(
            "--blockdev null-co,node-name=n,size=-1: Value '-1' is out of range for parameter 'size'"
        ),
        "{err}"
    );
}

#[test]
fn negative_sizes_and_offsets_over_qmp_are_refused_and_the_daemon_goes_on() {
    let dir = TempDir::new("negsize");
    let d = Daemon::start(OURS, &dir, &[]);
    let mut q = d.qmp();
    let e = q.err(
        "blockdev-add",
        json!({"driver": "null-co", "node-name": "a", "size": -1}),
    );
    assert_eq!(e.desc, "Value '-1' is out of range for parameter 'size'");
    q.cmd(
        "blockdev-add",
        json!({"driver": "null-co", "node-name": "b", "size": 4096}),
    );
    // The texts of qsd, which does not abort on these.
    let e = q.err(
        "blockdev-add",
        json!({"driver": "raw", "node-name": "r", "file": "b", "offset": -1}),
    );
    assert_eq!(e.desc, "Value '-1' is out of range for parameter 'offset'");
    let e = q.err(
        "blockdev-add",
        json!({"driver": "raw", "node-name": "r", "file": "b", "size": -512}),
    );
    assert_eq!(e.desc, "Value '-512' is out of range for parameter 'size'");
    let e = q.err(
        "blockdev-add",
        json!({"driver": "raw", "node-name": "r", "file":
            {"driver": "null-co", "size": -7}}),
    );
    assert_eq!(e.desc, "Value '-7' is out of range for parameter 'size'");
    let e = q.err("block_resize", json!({"node-name": "b", "size": -1}));
    assert_eq!(e.desc, "Parameter 'size' expects a >0 size");
    let nodes = q.cmd("query-named-block-nodes", json!(null));
    let names: Vec<_> = nodes
        .as_array()
        .expect("node list")
        .iter()
        .map(|n| n["node-name"].clone())
        .collect();
    assert_eq!(names, vec![json!("b")]);
}

#[test]
fn sizes_near_the_maximum_are_refused_as_qsd_refuses_them() {
    let dir = TempDir::new("hugesize");
    let d = Daemon::start(OURS, &dir, &[]);
    let mut q = d.qmp();
    for size in [i64::MAX as u64, MAX_LENGTH + 1] {
        let e = q.err(
            "blockdev-add",
            json!({"driver": "null-co", "node-name": "a", "size": size}),
        );
        assert_eq!(
            e.desc,
            "Could not refresh total sector count: File too large"
        );
    }
    q.cmd(
        "blockdev-add",
        json!({"driver": "null-co", "node-name": "max", "size": MAX_LENGTH}),
    );
    let nodes = q.cmd("query-named-block-nodes", json!(null));
    assert_eq!(nodes[0]["image"]["virtual-size"], json!(MAX_LENGTH));

    // A sparse file larger than the maximum: tmpfs allows i64::MAX bytes.
    let img = format!("/dev/shm/sd-it-{}-huge", std::process::id());
    let _gone = RemoveOnDrop(img.clone());
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(i64::MAX as u64))
        .expect("sparse i64::MAX file on /dev/shm");
    for opts in [
        json!({"driver": "file", "node-name": "f", "filename": img}),
        json!({"driver": "raw", "node-name": "r",
               "file": {"driver": "file", "filename": img}}),
    ] {
        let e = q.err("blockdev-add", opts);
        assert_eq!(
            e.desc,
            "Could not refresh total sector count: File too large"
        );
    }
    // The inline child went with its parent.
    let nodes = q.cmd("query-named-block-nodes", json!(null));
    assert_eq!(nodes.as_array().map(Vec::len), Some(1), "{nodes}");

    let small = dir.join("small");
    std::fs::File::create(&small)
        .and_then(|f| f.set_len(1 << 20))
        .expect("small image");
    q.cmd(
        "blockdev-add",
        json!({"driver": "file", "node-name": "s", "filename": small}),
    );
    q.cmd(
        "blockdev-add",
        json!({"driver": "raw", "node-name": "w", "file": "s", "offset": 512}),
    );
    for (node, size) in [
        ("s", i64::MAX as u64),
        ("s", MAX_LENGTH + 1),
        ("w", i64::MAX as u64 - 807),
    ] {
        let e = q.err("block_resize", json!({"node-name": node, "size": size}));
        assert_eq!(
            e.desc,
            format!("offset({size}) exceeds maximum({MAX_LENGTH})")
        );
    }
}

#[test]
fn aio_native_without_direct_is_refused_as_qsd_refuses_it() {
    let dir = TempDir::new("aio-native");
    let img = dir.join("img");
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(1 << 20))
        .expect("image");
    let opt = format!("file,filename={img},node-name=f,aio=native");
    for (bin, prog) in [
        (OURS, "storage-daemon"),
        (common::QSD, "qemu-storage-daemon"),
    ] {
        let (code, _, err) = run_to_exit(bin, &strings(&["--blockdev", &opt]));
        assert_eq!(code, 1, "{bin}: {err}");
        assert_eq!(
            err,
            format!(
                "{prog}: --blockdev {opt}: aio=native was specified, but it requires \
                 cache.direct=on, which was not specified.\n"
            ),
            "{bin}"
        );
    }
    // With O_DIRECT it opens (/tmp supports it on this project's machines).
    let d = Daemon::start(OURS, &dir, &[]);
    let mut q = d.qmp();
    q.cmd(
        "blockdev-add",
        json!({"driver": "file", "node-name": "f", "filename": img,
               "aio": "native", "cache": {"direct": true}}),
    );
}

struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
