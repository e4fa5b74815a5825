//! QMP introspection (`query-qmp-schema`): the storage daemon's schema
//! against what the installed qemu-storage-daemon answers, plus small
//! inline schemas for masking, integer folding and conditions.

mod common;

use std::path::Path;

use common::shared;

use qapi_gen::introspect::{self, eval_cond};
use qapi_gen::{CheckOptions, IfCond, Schema};
use serde_json::{Value, json};

fn load(path: &Path) -> Schema {
    match Schema::load(path, &CheckOptions::default()) {
        Ok(s) => s,
        Err(e) => panic!("{} does not load:\n{e}", path.display()),
    }
}

#[test]
fn storage_daemon_matches_live_query_qmp_schema() {
    let Some(shared) = shared() else { return };
    let base = shared.join("qemu-qapi-10.0");
    let schema = load(&base.join("schema/storage-daemon/qapi/qapi-schema.json"));

    // The Debian build that answered has every condition on but these.
    let disabled = ["CONFIG_BLKIO", "CONFIG_BLKIO_VHOST_VDPA_FD", "CONFIG_WIN32"];
    let names = qapi_gen::builder::condition_names(&schema);
    assert_eq!(names.len(), 22, "condition names: {names:?}");
    for d in disabled {
        assert!(names.iter().any(|n| n == d), "{d} not used by the schema");
    }
    let enabled = |c: &str| names.iter().any(|n| n == c) && !disabled.contains(&c);

    let entries = introspect::entries(&schema);
    let ours = introspect::to_json(&entries, &enabled);

    let path = base.join("expected/qsd-query-qmp-schema.json");
    let text = std::fs::read_to_string(&path).expect("read expected output");
    let mut expected: Value = serde_json::from_str(&text).expect("expected output is JSON");
    // Accept a raw QMP reply as well as the bare array.
    if let Some(inner) = expected.get_mut("return") {
        expected = inner.take();
    }

    let (ours, expected) = (
        ours.as_array().expect("array"),
        expected.as_array().expect("array"),
    );
    let commands = ours.iter().filter(|e| e["meta-type"] == "command").count();
    eprintln!(
        "{} entries ({commands} commands), expected {}",
        ours.len(),
        expected.len()
    );
    if let Some(i) = (0..ours.len().min(expected.len())).find(|&i| ours[i] != expected[i]) {
        panic!(
            "first difference at entry {i}\n  ours:     {}\n  expected: {}",
            ours[i], expected[i]
        );
    }
    assert_eq!(
        ours.len(),
        expected.len(),
        "entry count differs (common prefix is equal)"
    );
    assert_eq!(commands, 76);
}

/// Writes `text` as a schema file in a fresh temporary directory and loads it.
fn inline(name: &str, text: &str) -> Schema {
    let dir =
        std::env::temp_dir().join(format!("qapi-gen-introspect-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, text).expect("write schema");
    let schema = load(&path);
    let _ = std::fs::remove_dir_all(&dir);
    schema
}

#[test]
fn masking_and_integer_folding() {
    let schema = inline(
        "masking",
        "
{ 'struct': 'Foo',
  'data': { 'a': 'int8', '*b': ['uint16'], 'c': 'Bar', 'd': ['Bar'] } }
{ 'struct': 'Bar', 'data': { 'x': 'size' } }
{ 'command': 'cmd', 'data': 'Foo', 'returns': 'Bar', 'allow-oob': true }
{ 'event': 'EV' }
",
    );
    let got = introspect::to_json(&introspect::entries(&schema), &|_| true);
    let want = json!([
        { "name": "cmd", "meta-type": "command", "arg-type": "0", "ret-type": "1",
          "allow-oob": true },
        { "name": "EV", "meta-type": "event", "arg-type": "2" },
        { "name": "0", "meta-type": "object", "members": [
            { "name": "a", "type": "int" },
            { "name": "b", "type": "[int]", "default": null },
            { "name": "c", "type": "1" },
            { "name": "d", "type": "[1]" } ] },
        { "name": "1", "meta-type": "object", "members": [ { "name": "x", "type": "int" } ] },
        { "name": "2", "meta-type": "object", "members": [] },
        { "name": "int", "meta-type": "builtin", "json-type": "int" },
        { "name": "[int]", "meta-type": "array", "element-type": "int" },
        { "name": "[1]", "meta-type": "array", "element-type": "1" },
    ]);
    assert_eq!(
        got,
        want,
        "{}",
        serde_json::to_string_pretty(&got).unwrap_or_default()
    );
    // Key order as QEMU's generator writes it.
    let keys: Vec<&String> = got[0].as_object().expect("object").keys().collect();
    assert_eq!(
        keys,
        ["name", "meta-type", "arg-type", "ret-type", "allow-oob"]
    );
}

const CONDITIONAL: &str = "
{ 'enum': 'Letter', 'data': [ 'a', { 'name': 'b', 'if': 'B' } ] }
{ 'struct': 'Sample', 'data': { 'e': 'Letter' }, 'if': 'S' }
{ 'struct': 'Thing',
  'data': { 'x': 'str', '*y': { 'type': 'Letter', 'if': { 'not': 'B' } } } }
{ 'command': 'c1', 'data': { 's': 'Sample' }, 'if': 'S' }
{ 'command': 'c2', 'data': 'Thing', 'boxed': true,
  'features': [ { 'name': 'f', 'if': { 'all': [ 'B', 'S' ] } } ] }
{ 'alternate': 'Choice',
  'data': { 'i': 'int', 's': { 'type': 'Letter', 'if': { 'any': [ 'B', 'S' ] } } } }
{ 'event': 'EV_ONE', 'data': { 'alt': 'Choice' } }
";

#[test]
fn conditions_drop_items_and_keep_numbering_gaps() {
    let schema = inline("conditional", CONDITIONAL);
    let entries = introspect::entries(&schema);

    let none = introspect::to_json(&entries, &|_| false);
    // "0" (c1's arguments) and "4" (Sample) exist only under S: gaps remain.
    let want = json!([
        { "name": "c2", "meta-type": "command", "arg-type": "2", "ret-type": "1",
          "features": [] },
        { "name": "EV_ONE", "meta-type": "event", "arg-type": "3" },
        { "name": "1", "meta-type": "object", "members": [] },
        { "name": "2", "meta-type": "object", "members": [
            { "name": "x", "type": "str" },
            { "name": "y", "type": "5", "default": null } ] },
        { "name": "3", "meta-type": "object", "members": [ { "name": "alt", "type": "6" } ] },
        { "name": "str", "meta-type": "builtin", "json-type": "string" },
        { "name": "5", "meta-type": "enum", "members": [ { "name": "a" } ], "values": [ "a" ] },
        { "name": "6", "meta-type": "alternate", "members": [ { "type": "int" } ] },
        { "name": "int", "meta-type": "builtin", "json-type": "int" },
    ]);
    assert_eq!(
        none,
        want,
        "{}",
        serde_json::to_string_pretty(&none).unwrap_or_default()
    );

    let all = introspect::to_json(&entries, &|_| true);
    let names: Vec<&str> = all
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [
            "c1", "c2", "EV_ONE", "0", "1", "2", "3", "4", "str", "5", "6", "int"
        ]
    );
    assert_eq!(all[1]["features"], json!(["f"]));
    assert_eq!(all[5]["members"], json!([{ "name": "x", "type": "str" }]));
    assert_eq!(all[9]["values"], json!(["a", "b"]));
    assert_eq!(
        all[10]["members"],
        json!([{ "type": "int" }, { "type": "5" }])
    );

    // Only S: c1 and Sample appear, f needs B as well, Choice's 's' needs either.
    let only_s = introspect::to_json(&entries, &|c| c == "S");
    assert_eq!(only_s[0]["name"], "c1");
    assert_eq!(only_s[1]["features"], json!([]));
    assert_eq!(only_s[7]["name"], "4");
    assert_eq!(only_s[7]["members"], json!([{ "name": "e", "type": "5" }]));
    assert_eq!(
        only_s[10]["members"],
        json!([{ "type": "int" }, { "type": "5" }])
    );
}

#[test]
fn conditions_keep_their_ifcond_in_the_tree() {
    let schema = inline("tree", CONDITIONAL);
    let entries = introspect::entries(&schema);
    // c1, then c2: c1 carries 'S' and a comment-free name.
    assert_eq!(entries[0].ifcond.dump(), "S");
    assert!(entries[0].comment.is_none());
    assert!(!entries[1].ifcond.is_present());
    // Masked entries say which type they are.
    assert_eq!(entries[3].comment.as_deref(), Some("\"0\" = q_obj_c1-arg"));
    assert_eq!(entries[3].ifcond.dump(), "S");
}

#[test]
fn condition_evaluation() {
    let schema = inline(
        "eval",
        "
{ 'struct': 'Alpha', 'data': {}, 'if': { 'all': [ 'X', { 'not': 'Y' } ] } }
{ 'struct': 'Beta', 'data': {}, 'if': { 'any': [ 'X', { 'all': [ 'Y', 'Z' ] } ] } }
",
    );
    let cond = |name: &str| schema.lookup(name).expect("defined").ifcond.clone();
    let (a, b) = (cond("Alpha"), cond("Beta"));
    let on = |set: &'static [&'static str]| move |c: &str| set.contains(&c);
    assert!(eval_cond(&a, &on(&["X"])));
    assert!(!eval_cond(&a, &on(&["X", "Y"])));
    assert!(!eval_cond(&a, &on(&[])));
    assert!(eval_cond(&b, &on(&["X"])));
    assert!(!eval_cond(&b, &on(&["Y"])));
    assert!(eval_cond(&b, &on(&["Y", "Z"])));
    assert!(eval_cond(&IfCond::default(), &on(&[])));
}

#[test]
fn type_entries_use_real_names_and_types() {
    let schema = inline(
        "types",
        "
{ 'struct': 'Foo',
  'data': { 'a': 'int8', '*b': ['uint16'], 'c': 'Bar', 'd': ['Bar'] } }
{ 'struct': 'Bar', 'data': { 'x': 'size' } }
{ 'struct': 'Unused', 'data': { 'e': 'Letter' }, 'if': 'S' }
{ 'enum': 'Letter', 'data': [ 'a', { 'name': 'b', 'if': 'B' } ] }
{ 'union': 'Pick', 'base': { 'kind': 'Letter' }, 'discriminator': 'kind',
  'data': { 'a': 'Bar' } }
{ 'alternate': 'BarOrName', 'data': { 'bar': 'Bar', 'name': 'str' } }
{ 'command': 'cmd', 'data': 'Foo', 'returns': 'Bar' }
{ 'command': 'other', 'data': { 'x': 'BarOrName' } }
{ 'event': 'EV' }
",
    );
    let entries = introspect::type_entries(&schema);
    let all = introspect::to_json(&entries, &|_| true);
    let all = all.as_array().expect("array");
    let find = |name: &str| {
        all.iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no entry {name}"))
    };
    // No masking, no integer folding, unused and implicit types included.
    assert_eq!(
        find("Foo"),
        &json!({ "name": "Foo", "meta-type": "object", "members": [
            { "name": "a", "type": "int8" },
            { "name": "b", "type": "[uint16]", "default": null },
            { "name": "c", "type": "Bar" },
            { "name": "d", "type": "[Bar]" } ] })
    );
    assert_eq!(
        find("Bar")["members"],
        json!([{ "name": "x", "type": "size" }])
    );
    assert_eq!(find("Unused")["members"][0]["type"], "Letter");
    assert_eq!(find("size")["json-type"], "int");
    assert_eq!(find("[uint16]")["element-type"], "uint16");
    assert_eq!(find("[Bar]")["element-type"], "Bar");
    assert_eq!(
        find("q_obj_other-arg")["members"],
        json!([{ "name": "x", "type": "BarOrName" }])
    );
    assert_eq!(find("q_obj_Pick-base")["members"][0]["type"], "Letter");
    assert_eq!(find("Pick")["tag"], "kind");
    assert_eq!(
        find("Pick")["variants"],
        json!([{ "case": "a", "type": "Bar" }, { "case": "b", "type": "q_empty" }])
    );
    assert_eq!(
        find("BarOrName")["members"],
        json!([{ "type": "Bar" }, { "type": "str" }])
    );
    // Types only: no commands or events, and no comments.
    assert!(
        all.iter()
            .all(|e| e["meta-type"] != "command" && e["meta-type"] != "event")
    );
    assert!(entries.iter().all(|e| e.comment.is_none()));
    // Conditions stay with their items.
    let unused = entries
        .iter()
        .position(|e| e.value.to_json(&|_| true)["name"] == "Unused")
        .expect("Unused");
    assert_eq!(entries[unused].ifcond.dump(), "S");
    let none = introspect::to_json(&entries, &|_| false);
    let none = none.as_array().expect("array");
    assert!(none.iter().all(|e| e["name"] != "Unused"));
    let letter = none.iter().find(|e| e["name"] == "Letter").expect("Letter");
    assert_eq!(letter["values"], json!(["a"]));
}

/// Every type name an entry refers to has an entry of its own.
fn assert_closed(all: &[Value]) {
    let names: std::collections::HashSet<&str> =
        all.iter().filter_map(|e| e["name"].as_str()).collect();
    let mut refs = Vec::new();
    for e in all {
        refs.extend(e["element-type"].as_str());
        for key in ["members", "variants"] {
            for m in e[key].as_array().into_iter().flatten() {
                refs.extend(m["type"].as_str());
            }
        }
    }
    for r in refs {
        assert!(names.contains(r), "{r} is referred to but has no entry");
    }
}

#[test]
fn type_entries_cover_qemu_storage_daemon_schema() {
    let Some(shared) = shared() else { return };
    let schema = load(&shared.join("qemu-qapi-10.0/schema/storage-daemon/qapi/qapi-schema.json"));
    let entries = introspect::type_entries(&schema);
    let types = schema.definitions().filter(|(_, e)| e.is_type()).count();
    assert_eq!(entries.len(), types);
    let all = introspect::to_json(&entries, &|_| true);
    let all = all.as_array().expect("array");
    assert_closed(all);
    // Types no command reaches are there, with their real member types.
    let find = |name: &str| all.iter().find(|e| e["name"] == name);
    let null = find("BlockdevOptionsNull").expect("BlockdevOptionsNull");
    assert_eq!(
        null["members"][1],
        json!({ "name": "latency-ns", "type": "uint64", "default": null })
    );
    assert!(find("MonitorOptions").is_some());
    assert!(find("q_obj_BlockdevOptions-base").is_some());
    // query-qmp-schema is unaffected.
    let masked = introspect::to_json(&introspect::entries(&schema), &|_| true);
    assert!(masked.as_array().expect("array").iter().all(|e| {
        let name = e["name"].as_str().unwrap_or_default();
        e["meta-type"] != "object" || name.chars().all(|c| c.is_ascii_digit())
    }));
}
