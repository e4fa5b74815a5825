//! The node graph: names, add/remove and their errors, users, resize, and
//! query-named-block-nodes against what qemu-storage-daemon 10.0 answers
//! (fixtures/block/qsd-*.json, recorded by fixtures/block/record.py).
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod util;

use std::sync::Arc;

use serde_json::Value;
use storage_block::{
    Aio, BlockGraph, BlockdevOptions, DetectZeroes, Discard, DriverOptions, NullOptions, OnOffAuto,
    Perms,
};
use util::*;

#[test]
fn node_names_follow_qemu() {
    let g = BlockGraph::new();
    assert_eq!(
        g.add(&BlockdevOptions::new(DriverOptions::NullCo(
            NullOptions::default()
        )))
        .unwrap_err()
        .desc(),
        "'node-name' must be specified for the root node"
    );
    g.add(&null("n1", NullOptions::default())).unwrap();
    assert_eq!(
        g.add(&null("n1", NullOptions::default()))
            .unwrap_err()
            .desc(),
        "Duplicate nodes with node-name='n1'"
    );
    for bad in ["#x", "1a", "a b", ""] {
        assert_eq!(
            g.add(&null(bad, NullOptions::default()))
                .unwrap_err()
                .desc(),
            format!("Invalid node-name: '{bad}'")
        );
    }
    assert_eq!(
        g.add(&null(&"a".repeat(32), NullOptions::default()))
            .unwrap_err()
            .desc(),
        "Node name too long"
    );
    g.add(&null(&"a".repeat(31), NullOptions::default()))
        .unwrap();
    // The parent is named after its children, so a clash with an inline
    // child's name is the parent's error, and the child goes away.
    let kid = BlockdevOptions::new(DriverOptions::NullCo(NullOptions::default())).named("x");
    assert_eq!(
        g.add(&raw("x", inline(kid), None, None))
            .unwrap_err()
            .desc(),
        "Duplicate nodes with node-name='x'"
    );
    assert!(!g.names().contains(&"x".to_owned()));
    g.add(&null("a-b.c_d", NullOptions::default())).unwrap();

    // Inline children get QEMU's generated names: "#block", a counter, and
    // two random digits.
    let inline_null = || {
        inline(BlockdevOptions::new(DriverOptions::NullCo(
            NullOptions::default(),
        )))
    };
    g.add(&raw("r1", inline_null(), None, None)).unwrap();
    g.add(&raw("r2", inline_null(), None, None)).unwrap();
    let auto: Vec<String> = g
        .names()
        .into_iter()
        .filter(|n| n.starts_with('#'))
        .collect();
    assert_eq!(auto.len(), 2);
    // Newest first: the second child has counter 1.
    for (name, counter) in auto.iter().zip(["1", "0"]) {
        let rest = name.strip_prefix("#block").unwrap();
        assert_eq!(rest.len(), counter.len() + 2, "{name}");
        assert!(
            rest.starts_with(counter) && rest.bytes().all(|b| b.is_ascii_digit()),
            "{name}"
        );
    }
}

#[test]
fn remove_refuses_nodes_in_use() {
    let g = Arc::new(BlockGraph::new());
    g.add(&null("n1", NullOptions::default())).unwrap();
    g.add(&raw("r", reference("n1"), None, None)).unwrap();
    assert_eq!(
        g.remove("n1").unwrap_err().desc(),
        "Block device n1 is in use"
    );
    assert_eq!(
        g.remove("nope").unwrap_err().desc(),
        "Failed to find node with node-name='nope'"
    );

    let user = g.attach("r", Perms::export(true)).unwrap();
    assert_eq!(g.users("r"), 1);
    assert_eq!(g.remove("r").unwrap_err().desc(), "Node r is in use");
    drop(user);
    assert_eq!(g.users("r"), 0);
    g.remove("r").unwrap();
    // The referenced child stays, and is free now.
    g.remove("n1").unwrap();
    assert!(g.names().is_empty());

    // Inline children belong to their parent.
    let inline_null = inline(BlockdevOptions::new(DriverOptions::NullCo(
        NullOptions::default(),
    )));
    g.add(&raw("r", inline_null, None, None)).unwrap();
    let child = g.names().pop().unwrap();
    assert_eq!(
        g.remove(&child).unwrap_err().desc(),
        format!("Node {child} is not owned by the monitor")
    );
    g.remove("r").unwrap();
    assert!(
        g.names().is_empty(),
        "the inline child went with its parent"
    );

    assert_eq!(
        g.attach("zz", Perms::export(false)).unwrap_err().desc(),
        "Cannot find device='' nor node-name='zz'"
    );
    assert_eq!(
        g.get("zz").err().unwrap().desc(),
        "Cannot find device='' nor node-name='zz'"
    );
}

#[tokio::test]
async fn resize_errors() {
    let s = Scratch::new();
    let img = s.image("a.img", 65536);
    let g = Arc::new(BlockGraph::new());
    g.add(&file("ro", &img).read_only(true)).unwrap();
    assert_eq!(
        g.resize("ro", 4096).await.unwrap_err().desc(),
        "Image is read-only"
    );
    assert_eq!(
        g.resize("ro", -1).await.unwrap_err().desc(),
        "Parameter 'size' expects a >0 size"
    );
    assert_eq!(
        g.resize("zz", 4096).await.unwrap_err().desc(),
        "Cannot find device='' nor node-name='zz'"
    );
    assert_eq!(g.users("ro"), 0, "resize let go of the node");
}

#[tokio::test]
async fn flush_all_flushes_every_node() {
    let s = Scratch::new();
    let img = s.image("a.img", 65536);
    let g = BlockGraph::new();
    g.add(&raw("r", inline(file_inline(&img)), None, None))
        .unwrap();
    g.add(&null("n", NullOptions::default())).unwrap();
    g.flush_all().await.unwrap();
}

/// The fixture's answer with @DIR@ filled in and generated names reduced
/// to "#block".
fn expected(fixture: &str, dir: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/block/{fixture}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path).unwrap().replace("@DIR@", dir);
    let v: Value = serde_json::from_str(&text).unwrap();
    normalize(v["return"].clone())
}

fn normalize(mut v: Value) -> Value {
    for node in v.as_array_mut().unwrap() {
        let name = node["node-name"].as_str().unwrap();
        if let Some(rest) = name.strip_prefix("#block") {
            assert!(
                rest.len() >= 3 && rest.bytes().all(|b| b.is_ascii_digit()),
                "{name}"
            );
            node["node-name"] = Value::from("#block");
        }
    }
    v
}

fn ours(g: &BlockGraph) -> Value {
    normalize(serde_json::to_value(g.query()).unwrap())
}

#[test]
fn query_matches_qsd_for_null_nodes() {
    let g = BlockGraph::new();
    g.add(&null("nc", NullOptions::default())).unwrap();
    let na = NullOptions {
        size: Some(1_000_000),
        read_zeroes: Some(true),
        latency_ns: Some(5),
    };
    g.add(&BlockdevOptions::new(DriverOptions::NullAio(na)).named("na"))
        .unwrap();
    let n3 = NullOptions {
        size: None,
        read_zeroes: Some(false),
        latency_ns: Some(100),
    };
    g.add(&null("n3", n3)).unwrap();
    assert_eq!(ours(&g), expected("qsd-null.json", ""));
}

#[test]
fn query_matches_qsd_for_raw_over_null() {
    let g = BlockGraph::new();
    g.add(&null(
        "n",
        NullOptions {
            size: Some(1000),
            ..NullOptions::default()
        },
    ))
    .unwrap();
    g.add(&raw("r", reference("n"), None, None)).unwrap();
    let lat = NullOptions {
        latency_ns: Some(5),
        ..NullOptions::default()
    };
    let child = BlockdevOptions::new(DriverOptions::NullCo(lat));
    g.add(&raw("r2", inline(child), Some(0), None)).unwrap();
    let zeroes = NullOptions {
        read_zeroes: Some(true),
        ..NullOptions::default()
    };
    let kid = BlockdevOptions::new(DriverOptions::NullAio(zeroes)).named("kid");
    let mut r3 = raw("r3", inline(kid), None, Some(4096));
    r3.discard = Some(Discard::Unmap);
    g.add(&r3).unwrap();
    assert_eq!(ours(&g), expected("qsd-raw-null.json", ""));
}

#[test]
fn query_matches_qsd_for_file_and_raw() {
    let s = Scratch::new();
    let a = s.image("a.img", 64 << 20);
    let b = s.image("b.img", 1 << 20);
    let c = s.image("c.img", 1000);
    let g = BlockGraph::new();
    g.add(&raw("r1", inline(file_inline(&a)), None, None))
        .unwrap();
    let mut f2 = file("f2", &b);
    f2.cache.direct = Some(true);
    f2.discard = Some(Discard::Unmap);
    f2.detect_zeroes = Some(DetectZeroes::Unmap);
    if g.add(&f2).is_err() {
        eprintln!("skipped: no O_DIRECT on {}", s.path());
        return;
    }
    g.add(&raw("r3", reference("f2"), Some(4096), Some(8192)))
        .unwrap();
    g.add(&raw("r4", inline(file_inline(&c)), None, None).read_only(true))
        .unwrap();
    let mut f5 = file("f5", &a).read_only(true);
    f5.cache.no_flush = Some(true);
    f5.detect_zeroes = Some(DetectZeroes::On);
    if let DriverOptions::File(fo) = &mut f5.driver {
        fo.locking = OnOffAuto::Off;
        fo.aio = Aio::Threads;
    }
    g.add(&f5).unwrap();
    assert_eq!(ours(&g), expected("qsd-file-raw.json", s.path()));
}
