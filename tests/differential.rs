//! Differential tests: the same command line and the same QMP script
//! against qemu-storage-daemon 10.0 and ours; every reply (return value,
//! error class and text), every event and its place before or after the
//! replies must be the same.
//!
//! What is normalized before comparing, and why:
//! - `package` in `query-version`: it names the implementation;
//! - each daemon's scratch directory (`$DIR`) and free ports (`$PORT`):
//!   both run at the same time, so their files and ports differ;
//! - event timestamps (checked for shape, then dropped);
//! - the digits of generated node names (`#block123`): they count
//!   QEMU-internal allocations.
//!
//! Deliberate differences are left out of the scripts, each with a comment
//! saying why (see `KNOWN DIFFERENCES` below).

// Compared with qsd's whole interface: only the default build has it all.
#![cfg(all(
    feature = "nbd",
    feature = "fuse",
    feature = "vhost-user-blk",
    feature = "vduse"
))]

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};

use common::{Daemon, OURS, QSD, Qmp, TempDir};
use serde_json::{Value, json};

/// One daemon of the pair.
struct Side {
    name: &'static str,
    dir: TempDir,
    port: u16,
    daemon: Daemon,
    qmp: Qmp,
}

impl Side {
    fn subst(&self, s: &str) -> String {
        subst(s, &self.dir, self.port)
    }

    /// Sends `text` and collects every message up to and including the
    /// next reply, normalized.
    fn step(&mut self, text: &str) -> Vec<Value> {
        self.qmp.send_raw(self.subst(text).as_bytes());
        self.until_reply()
    }

    fn until_reply(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let m = self.qmp.recv();
            let is_reply = m.get("event").is_none();
            out.push(self.normalize(m));
            if is_reply {
                return out;
            }
        }
    }

    fn normalize(&self, mut m: Value) -> Value {
        if m.get("event").is_some() {
            m = common::strip_timestamp(m);
        }
        if let Some(p) = m.pointer_mut("/return/package") {
            *p = json!("<package>");
        }
        let dir = self.dir.path().display().to_string();
        walk_strings(&mut m, &|s| {
            let s = s.replace(&dir, "$DIR");
            normalize_node_names(&s)
        });
        m
    }
}

fn walk_strings(v: &mut Value, f: &dyn Fn(&str) -> String) {
    match v {
        Value::String(s) => *s = f(s),
        Value::Array(a) => a.iter_mut().for_each(|x| walk_strings(x, f)),
        Value::Object(o) => o.values_mut().for_each(|x| walk_strings(x, f)),
        _ => {}
    }
}

fn normalize_node_names(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("#block") {
        out.push_str(&rest[..i + 6]);
        rest = rest[i + 6..].trim_start_matches(|c: char| c.is_ascii_digit());
        out.push('N');
    }
    out.push_str(rest);
    out
}

fn subst(s: &str, dir: &TempDir, port: u16) -> String {
    s.replace("$DIR", &dir.path().display().to_string())
        .replace("$PORT", &port.to_string())
}

/// Both daemons, started with the same arguments (after `$DIR`/`$PORT`
/// substitution) and `setup` run in each one's directory first.
fn pair(args: &[&str], setup: &dyn Fn(&TempDir)) -> [Side; 2] {
    common::require(QSD);
    [("qsd", QSD), ("ours", OURS)].map(|(name, bin)| {
        let dir = TempDir::new(&format!("diff-{name}"));
        setup(&dir);
        // Retries on another port when someone took `$PORT` first.
        let (daemon, port) = common::start_on_free_port(bin, &dir, |port| {
            args.iter().map(|a| subst(a, &dir, port)).collect()
        });
        let qmp = daemon.qmp();
        Side {
            name,
            dir,
            port,
            daemon,
            qmp,
        }
    })
}

/// Runs `script` on both sides, step by step; panics at the first step
/// whose messages differ. Returns qsd's transcript.
fn run(sides: &mut [Side; 2], script: &[&str]) -> Vec<Vec<Value>> {
    let mut transcript = Vec::new();
    for (i, step) in script.iter().enumerate() {
        let a = sides[0].step(step);
        let b = sides[1].step(step);
        assert_eq!(
            a,
            b,
            "step {i}: {step}\n  {}: {}\n  {}: {}",
            sides[0].name,
            Value::Array(a.clone()),
            sides[1].name,
            Value::Array(b.clone())
        );
        transcript.push(a);
    }
    transcript
}

fn image(dir: &TempDir) {
    common::create_image(&dir.join("img.raw"), "1M");
    common::create_image(&dir.join("img2.raw"), "4M");
}

#[test]
fn node_lifecycle() {
    let mut sides = pair(
        &[
            "--blockdev",
            "driver=file,node-name=cli0,filename=$DIR/img2.raw",
        ],
        &image,
    );
    let script = [
        r#"{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"n1"}}"#,
        r#"{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"n1"}}"#,
        r#"{"execute":"blockdev-add","arguments":{"driver":"null-aio","node-name":"n2","size":1048576,"read-zeroes":true}}"#,
        r#"{"execute":"blockdev-add","arguments":{"driver":"null-co"}}"#,
        r#"{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"n5","size":1000,"latency-ns":10,"read-zeroes":false}}"#,
        r#"{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"n6","cache":{"direct":true},"discard":"unmap","detect-zeroes":"unmap"}}"#,
        r#"{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"n7","detect-zeroes":"unmap"}}"#,
        r#"{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"n7","bogus":1}}"#,
        r#"{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"n7","size":"x"}}"#,
        r#"{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"9bad"}}"#,
        r#"{"execute":"blockdev-add","arguments":{"driver":"nope","node-name":"n7"}}"#,
        r#"{"execute":"blockdev-add","arguments":{"node-name":"n7"}}"#,
        r#"{"execute":"blockdev-add","arguments":{"driver":"file","node-name":"f0","filename":"/nonexistent/x"}}"#,
        r#"{"execute":"blockdev-add","arguments":{"driver":"file","node-name":"f1","filename":"$DIR/img.raw"}}"#,
        r#"{"execute":"blockdev-add","arguments":{"driver":"file","node-name":"f2","filename":"$DIR/img.raw"}}"#,
        r#"{"execute":"blockdev-add","arguments":{"driver":"file","node-name":"f3","filename":"$DIR/img.raw","read-only":true}}"#,
        r#"{"execute":"blockdev-add","arguments":{"driver":"raw","node-name":"r1","file":"f1","offset":4096,"size":65536}}"#,
        r#"{"execute":"blockdev-add","arguments":{"driver":"raw","node-name":"r9","file":"nonode"}}"#,
        r#"{"execute":"block_resize","arguments":{"node-name":"r1","size":8192}}"#,
        r#"{"execute":"block_resize","arguments":{"node-name":"n2","size":2097152}}"#,
        r#"{"execute":"block_resize","arguments":{"device":"r1","size":8192}}"#,
        r#"{"execute":"block_resize","arguments":{"node-name":"zz","size":8192}}"#,
        r#"{"execute":"block_resize","arguments":{"node-name":"r1","size":-1}}"#,
        r#"{"execute":"blockdev-del","arguments":{"node-name":"f1"}}"#,
        r#"{"execute":"blockdev-del","arguments":{"node-name":"r1"}}"#,
        r#"{"execute":"blockdev-del","arguments":{"node-name":"r1"}}"#,
        r#"{"execute":"blockdev-add","arguments":{"driver":"raw","node-name":"r2","file":"f1"}}"#,
        r#"{"execute":"block_resize","arguments":{"node-name":"r2","size":4194304}}"#,
        r#"{"execute":"block_resize","arguments":{"node-name":"f1","size":1048576}}"#,
        r#"{"execute":"block_resize","arguments":{"node-name":"r2","size":1000}}"#,
        r#"{"execute":"block_resize","arguments":{"node-name":"cli0","size":8388608}}"#,
        r#"{"execute":"blockdev-add","arguments":{"driver":"raw","node-name":"r3","file":{"driver":"file","filename":"$DIR/img.raw"},"offset":1048576}}"#,
        r#"{"execute":"blockdev-add","arguments":{"driver":"raw","node-name":"r4","file":{"driver":"file","filename":"$DIR/img.raw","locking":"off"},"size":512}}"#,
        r#"{"execute":"blockdev-add","arguments":{"driver":"raw","node-name":"r5","file":{"driver":"null-co","size":65536},"offset":512,"size":4096}}"#,
        r#"{"execute":"query-named-block-nodes"}"#,
        r#"{"execute":"query-named-block-nodes","arguments":{"flat":true}}"#,
        r#"{"execute":"blockdev-del","arguments":{"node-name":"r5"}}"#,
        r#"{"execute":"blockdev-del","arguments":{"node-name":"r4"}}"#,
        r#"{"execute":"blockdev-del","arguments":{"node-name":"f2"}}"#,
        r#"{"execute":"blockdev-del","arguments":{"node-name":"nonode"}}"#,
        r#"{"execute":"query-named-block-nodes"}"#,
        // KNOWN DIFFERENCE (block layer, reported): resizing the child
        // of a raw node with offset/size is refused by QEMU with a
        // permission conflict; our graph does not check claims of
        // parents against each other within the process yet.
    ];
    run(&mut sides, &script);
}

#[test]
fn exports() {
    let mut sides = pair(
        &[
            "--object",
            "iothread,id=io0",
            "--blockdev",
            "null-co,node-name=n1",
            "--blockdev",
            "null-co,node-name=ro,read-only=on",
            "--nbd-server",
            "addr.type=unix,addr.path=$DIR/nbd0.sock",
            "--export",
            "type=nbd,id=cli,node-name=n1,name=cli-export",
        ],
        &|_| {},
    );
    let long = "x".repeat(4097);
    let script = vec![
        r#"{"execute":"query-block-exports"}"#.to_string(),
        r#"{"execute":"nbd-server-start","arguments":{"addr":{"type":"unix","data":{"path":"$DIR/nbd1.sock"}}}}"#.into(),
        r#"{"execute":"nbd-server-stop"}"#.into(),
        r#"{"execute":"nbd-server-stop"}"#.into(),
        r#"{"execute":"query-block-exports"}"#.into(),
        r#"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e1","node-name":"n1"}}"#.into(),
        r#"{"execute":"nbd-server-add","arguments":{"device":"n1"}}"#.into(),
        r#"{"execute":"nbd-server-add","arguments":{"device":"nope"}}"#.into(),
        r#"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e1","node-name":"ro","writable":true,"iothread":"io9"}}"#.into(),
        r#"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e1","node-name":"nx","iothread":"io9"}}"#.into(),
        r#"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e1","node-name":"n1","iothread":"io9"}}"#.into(),
        r#"{"execute":"block-export-add","arguments":{"type":"nbd","id":"1bad","node-name":"n1"}}"#.into(),
        r#"{"execute":"block-export-add","arguments":{"type":"nbd","id":"","node-name":"n1"}}"#.into(),
        r#"{"execute":"nbd-server-start","arguments":{"addr":{"type":"unix","data":{"path":"/nonexistent/x"}},"tls-creds":"t"}}"#.into(),
        r#"{"execute":"nbd-server-start","arguments":{"addr":{"type":"unix","data":{"path":"$DIR/nbd2.sock"}},"tls-creds":"t"}}"#.into(),
        r#"{"execute":"nbd-server-start","arguments":{"addr":{"type":"fd","data":{"str":"3"}}}}"#.into(),
        r#"{"execute":"nbd-server-start","arguments":{"addr":{"type":"inet","data":{"host":"127.0.0.1","port":"$PORT"}},"max-connections":4}}"#.into(),
        r#"{"execute":"nbd-server-start","arguments":{"addr":{"type":"unix","data":{"path":"$DIR/nbd2.sock"}}}}"#.into(),
        r#"{"execute":"nbd-server-stop"}"#.into(),
        r#"{"execute":"nbd-server-start","arguments":{"addr":{"type":"unix","data":{"path":"$DIR/nbd3.sock"}},"handshake-max-seconds":5,"tls-authz":"a"}}"#.into(),
        r#"{"execute":"nbd-server-start","arguments":{"addr":{"type":"fd","data":{"str":"3"}}}}"#.into(),
        r#"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e1","node-name":"n1"}}"#.into(),
        r#"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e1","node-name":"n1"}}"#.into(),
        r#"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e2","node-name":"n1"}}"#.into(),
        r#"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e2","node-name":"n1","name":"other","writable":true,"description":"d"}}"#.into(),
        r#"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e3","node-name":"ro","writable":true}}"#.into(),
        format!(r#"{{"execute":"block-export-add","arguments":{{"type":"nbd","id":"e3","node-name":"n1","name":"{long}","description":"{long}"}}}}"#),
        format!(r#"{{"execute":"block-export-add","arguments":{{"type":"nbd","id":"e3","node-name":"n1","name":"d","description":"{long}"}}}}"#),
        r#"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e3","node-name":"n1","bitmaps":["x"]}}"#.into(),
        r#"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e3","node-name":"n1","name":"q","bitmaps":["x","y"]}}"#.into(),
        r#"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e3","node-name":"n1","name":"q","bitmaps":[{"node":"zz","name":"b"}]}}"#.into(),
        r#"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e3","node-name":"n1","name":"q","bitmaps":[{"node":"n1","name":"b"}]}}"#.into(),
        r#"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e3","node-name":"ro","name":"q","iothread":"io0","fixed-iothread":true,"writethrough":true,"allow-inactive":false,"allocation-depth":true}}"#.into(),
        r#"{"execute":"block-export-add","arguments":{"type":"nbd","id":"a.b-c_d","node-name":"n1","name":""}}"#.into(),
        r#"{"execute":"block-export-add","arguments":{"type":"nbd","id":"a b","node-name":"n1","name":"s"}}"#.into(),
        r#"{"execute":"block-export-add","arguments":{"type":"bogus","id":"x","node-name":"n1"}}"#.into(),
        r#"{"execute":"nbd-server-add","arguments":{"device":"n1","name":"1bad"}}"#.into(),
        r#"{"execute":"nbd-server-add","arguments":{"device":"ro","name":"w","writable":true}}"#.into(),
        r#"{"execute":"nbd-server-add","arguments":{"device":"ro","name":"b","bitmap":"bb"}}"#.into(),
        r#"{"execute":"nbd-server-add","arguments":{"device":"n1","name":"w"}}"#.into(),
        r#"{"execute":"nbd-server-add","arguments":{"device":"n1"}}"#.into(),
        r#"{"execute":"query-block-exports"}"#.into(),
        r#"{"execute":"blockdev-del","arguments":{"node-name":"n1"}}"#.into(),
        r#"{"execute":"block-export-del","arguments":{"id":"e1"}}"#.into(),
        r#"{"execute":"block-export-del","arguments":{"id":"e1"}}"#.into(),
        r#"{"execute":"block-export-del","arguments":{"id":"e2","mode":"hard"}}"#.into(),
        r#"{"execute":"block-export-del","arguments":{"id":"e3","mode":"bogus"}}"#.into(),
        r#"{"execute":"block-export-del","arguments":{}}"#.into(),
        r#"{"execute":"nbd-server-remove","arguments":{"name":"w"}}"#.into(),
        r#"{"execute":"nbd-server-remove","arguments":{"name":"w"}}"#.into(),
        r#"{"execute":"nbd-server-remove","arguments":{"name":"e3","mode":"hard"}}"#.into(),
        r#"{"execute":"query-block-exports"}"#.into(),
        // Every remaining NBD export goes, newest first, before the reply.
        r#"{"execute":"nbd-server-stop","id":"stop"}"#.into(),
        r#"{"execute":"nbd-server-stop","arguments":{"x":1}}"#.into(),
        r#"{"execute":"query-block-exports"}"#.into(),
        r#"{"execute":"blockdev-del","arguments":{"node-name":"n1"}}"#.into(),
        r#"{"execute":"nbd-server-start","arguments":{"addr":{"type":"inet","data":{"host":"localhost","port":"$PORT"}}}}"#.into(),
        r#"{"execute":"nbd-server-stop"}"#.into(),
        // KNOWN DIFFERENCES, left out:
        // - type=fuse, vhost-user-blk, vduse-blk: those backends do not
        //   exist yet ("No driver found for the requested export type");
        // - vsock addresses: not in this build ("vsock addresses are not
        //   supported by this build"; qsd's kernel-dependent bind error);
        // - inet `ipv4`/`ipv6` flags: ignored by our resolver (qsd
        //   refuses ipv6=on for 127.0.0.1), reported;
        // - max-connections=-1: qapi-rt says "expects integer" where QEMU
        //   says "expects uint32_t", reported.
    ];
    let script: Vec<&str> = script.iter().map(String::as_str).collect();
    let t = run(&mut sides, &script);
    // The stop step: four events, then the reply with its id.
    let stop = &t[script
        .iter()
        .position(|s| s.contains("\"stop\""))
        .expect("stop step")];
    assert!(
        stop.len() > 1
            && stop[..stop.len() - 1]
                .iter()
                .all(|m| m["event"] == "BLOCK_EXPORT_DELETED")
    );
}

/// Control commands: versions, command lists, schema, negotiation, quit.
#[test]
fn control() {
    let mut sides = pair(&[], &|_| {});
    run(
        &mut sides,
        &[
            r#"{"execute":"query-version"}"#,
            r#"{"execute":"qmp_capabilities"}"#,
            r#"{"execute":"qmp_capabilities","arguments":{"bogus":1}}"#,
            r#"{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}"#,
            r#"{"execute":"query-version","arguments":{"x":1}}"#,
        ],
    );
    // The greeting, package aside.
    let g: Vec<Value> = sides
        .iter()
        .map(|s| {
            let mut g = s.qmp.greeting.clone();
            g["QMP"]["version"]["package"] = json!("<package>");
            g
        })
        .collect();
    assert_eq!(g[0], g[1]);

    // query-commands: we implement a subset; it comes in qsd's order
    // (newest registered first), and we have nothing qsd lacks.
    let lists: Vec<Vec<String>> = sides
        .iter_mut()
        .map(|s| {
            s.qmp
                .cmd("query-commands", Value::Null)
                .as_array()
                .expect("list")
                .iter()
                .map(|c| c["name"].as_str().expect("name").to_string())
                .collect()
        })
        .collect();
    let ours: HashSet<&String> = lists[1].iter().collect();
    let qsd_filtered: Vec<&String> = lists[0].iter().filter(|c| ours.contains(c)).collect();
    assert_eq!(
        qsd_filtered,
        lists[1].iter().collect::<Vec<_>>(),
        "our commands are not a subset of qsd's in qsd's order"
    );
    for c in [
        "qmp_capabilities",
        "query-version",
        "query-commands",
        "quit",
        "query-qmp-schema",
        "blockdev-add",
        "blockdev-del",
        "query-named-block-nodes",
        "block_resize",
        "nbd-server-start",
        "nbd-server-add",
        "nbd-server-remove",
        "nbd-server-stop",
        "block-export-add",
        "block-export-del",
        "query-block-exports",
    ] {
        assert!(ours.contains(&c.to_string()), "we lack {c}");
    }

    // query-qmp-schema: everything we ship, as qsd describes it.
    let schemas: Vec<Value> = sides
        .iter_mut()
        .map(|s| s.qmp.cmd("query-qmp-schema", Value::Null))
        .collect();
    let notes = compare_schemas(&schemas[1], &schemas[0]);
    eprintln!("schema subsets: {notes:#?}");
    // We ship fewer block drivers and image-info branches than qsd; any
    // other difference fails above.
    assert!(
        notes
            .iter()
            .all(|n| n.contains("values") || n.contains("variants")),
        "{notes:#?}"
    );

    // quit: both answer, then exit 0.
    for s in &mut sides {
        s.qmp.send_raw(br#"{"execute":"quit","id":"bye"}"#);
        assert_eq!(
            s.qmp.reply(),
            json!({"return": {}, "id": "bye"}),
            "{}",
            s.name
        );
        assert!(s.qmp.closed(), "{}: connection not closed", s.name);
        let (status, _) = s.daemon.wait();
        assert!(status.success(), "{}: {status}", s.name);
    }
}

type Index<'a> = HashMap<&'a str, &'a Value>;

fn index(schema: &Value) -> Index<'_> {
    schema
        .as_array()
        .expect("schema is a list")
        .iter()
        .map(|e| (e["name"].as_str().expect("name"), e))
        .collect()
}

/// Walks every command and event of `ours` alongside qsd's definition
/// (type names are masked numbers, so they are matched by position in
/// the structure). Panics on any difference except enum values and union
/// variants we lack, which are returned as notes.
fn compare_schemas(ours: &Value, qsd: &Value) -> Vec<String> {
    let (o, q) = (index(ours), index(qsd));
    let mut notes = Vec::new();
    let mut seen = HashSet::new();
    let mut roots = 0;
    for (name, e) in &o {
        let mt = e["meta-type"].as_str().expect("meta-type");
        if mt == "command" || mt == "event" {
            assert!(q.contains_key(name), "qsd has no {mt} {name}");
            compare_entry(&o, &q, name, name, name, &mut seen, &mut notes);
            roots += 1;
        }
    }
    assert!(roots >= 17, "only {roots} commands and events");
    notes
}

fn compare_entry(
    o: &Index,
    q: &Index,
    on: &str,
    qn: &str,
    path: &str,
    seen: &mut HashSet<(String, String)>,
    notes: &mut Vec<String>,
) {
    if !seen.insert((on.to_string(), qn.to_string())) {
        return;
    }
    let oe = o
        .get(on)
        .unwrap_or_else(|| panic!("{path}: we lack type {on}"));
    let qe = q
        .get(qn)
        .unwrap_or_else(|| panic!("{path}: qsd lacks type {qn}"));
    let mt = oe["meta-type"].as_str().expect("meta-type");
    assert_eq!(oe["meta-type"], qe["meta-type"], "{path}: meta-type");
    assert_eq!(oe.get("features"), qe.get("features"), "{path}: features");
    let mut rec = |a: &Value, b: &Value, p: String, notes: &mut Vec<String>| {
        compare_entry(
            o,
            q,
            a.as_str().expect("type name"),
            b.as_str().expect("type name"),
            &p,
            seen,
            notes,
        );
    };
    match mt {
        "builtin" => {
            assert_eq!(on, qn, "{path}: builtin");
            assert_eq!(oe["json-type"], qe["json-type"], "{path}");
        }
        "command" => {
            assert_eq!(
                oe.get("allow-oob"),
                qe.get("allow-oob"),
                "{path}: allow-oob"
            );
            rec(
                &oe["arg-type"],
                &qe["arg-type"],
                format!("{path}.arg"),
                notes,
            );
            rec(
                &oe["ret-type"],
                &qe["ret-type"],
                format!("{path}.ret"),
                notes,
            );
        }
        "event" => rec(
            &oe["arg-type"],
            &qe["arg-type"],
            format!("{path}.arg"),
            notes,
        ),
        "array" => rec(
            &oe["element-type"],
            &qe["element-type"],
            format!("{path}[]"),
            notes,
        ),
        "enum" => {
            let ov: Vec<&Value> = oe["values"].as_array().expect("values").iter().collect();
            let qv: Vec<&Value> = qe["values"].as_array().expect("values").iter().collect();
            let qset: BTreeSet<String> = qv.iter().map(|v| v.to_string()).collect();
            for v in &ov {
                assert!(qset.contains(&v.to_string()), "{path}: qsd lacks value {v}");
            }
            if ov.len() != qv.len() {
                notes.push(format!("{path}: {} of {} values", ov.len(), qv.len()));
            }
            let members = |e: &Value| -> HashMap<String, Value> {
                e["members"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| {
                        (
                            m["name"].as_str().unwrap_or_default().to_string(),
                            m.clone(),
                        )
                    })
                    .collect()
            };
            let qm = members(qe);
            for (n, m) in members(oe) {
                assert_eq!(Some(&m), qm.get(&n), "{path}: enum member {n}");
            }
        }
        "alternate" => {
            let om = oe["members"].as_array().expect("members");
            let qm = qe["members"].as_array().expect("members");
            assert_eq!(om.len(), qm.len(), "{path}: alternate members");
            for (i, (a, b)) in om.iter().zip(qm).enumerate() {
                rec(&a["type"], &b["type"], format!("{path}|{i}"), notes);
            }
        }
        "object" => {
            let om = oe["members"].as_array().expect("members");
            let qm = qe["members"].as_array().expect("members");
            let names =
                |m: &[Value]| -> Vec<String> { m.iter().map(|x| x["name"].to_string()).collect() };
            assert_eq!(names(om), names(qm), "{path}: members");
            for (a, b) in om.iter().zip(qm) {
                let n = a["name"].as_str().unwrap_or_default();
                assert_eq!(a.get("default"), b.get("default"), "{path}.{n}: optional");
                assert_eq!(a.get("features"), b.get("features"), "{path}.{n}: features");
                rec(&a["type"], &b["type"], format!("{path}.{n}"), notes);
            }
            assert_eq!(oe.get("tag"), qe.get("tag"), "{path}: tag");
            if let Some(ov) = oe.get("variants").and_then(Value::as_array) {
                let qv = qe["variants"].as_array().expect("qsd variants");
                for v in ov {
                    let case = &v["case"];
                    let w = qv
                        .iter()
                        .find(|w| &w["case"] == case)
                        .unwrap_or_else(|| panic!("{path}: qsd lacks variant {case}"));
                    rec(&v["type"], &w["type"], format!("{path}({case})"), notes);
                }
                if ov.len() != qv.len() {
                    notes.push(format!("{path}: {} of {} variants", ov.len(), qv.len()));
                }
            }
        }
        other => panic!("{path}: unknown meta-type {other}"),
    }
}

/// Protocol-level input, good and bad, each step followed by a probe on
/// the same connection. What QEMU and we answer must be the same message
/// for message, with two exceptions noted below.
#[test]
fn protocol() {
    let mut sides = pair(&[], &|_| {});
    // KNOWN DIFFERENCES, left out:
    // - after a lexical error (a stray character, a bad number, a control
    //   character in a string) QEMU's lexer reports the rest of the value
    //   as a second error ("expecting value"); we report the first only;
    // - bytes that are not UTF-8: QEMU reports stray bytes, we report an
    //   invalid UTF-8 sequence; `\u0000`-free NUL bytes likewise;
    // - non-ASCII text in replies: QEMU escapes it (\u00E9), we send
    //   UTF-8; numbers QEMU prints with %.17g (0.1 as
    //   0.10000000000000001, -0 as 0, 1e400 as inf): replies parse to the
    //   same values except those oddities;
    // - "expected: one of the branches of BlockdevRef" (qapi-rt) where
    //   QEMU says "expected: BlockdevRef", reported.
    let cases = [
        r#"{"execute":"query-version","id":{"a":[1,2,{"b":null}]}}"#,
        r#"{"execute":"query-version","id":null}"#,
        r#"{"execute":"query-version","id":[[[[[[[[[[1]]]]]]]]]]}"#,
        r#"{"execute":"query-version","id":123456789012345678901234567890}"#,
        r#"{"execute":"query-version"} {"execute":"query-version","id":"two"}"#,
        r#"{"execute":"\u0071uery-version"}"#,
        r#"{'execute':'query-version','id':'single \'quoted\''}"#,
        "}",
        "]",
        ":",
        ",",
        "[1,2]",
        "[]",
        "{}",
        r#""str" "#,
        "42 ",
        "null ",
        "true ",
        "garbage ",
        r#"{"execute":}"#,
        r#"{"execute":"query-version",}"#,
        r#"{"a" "b"}"#,
        r#"{"execute":"query-version","id":1,"id":2}"#,
        r#"{"execute":"query-version","id":nul}"#,
        r#"{"execute":"query-version","id":"\ud800"}"#,
        r#"{"execute":"query-version","id":"\x41"}"#,
        r#"{"execute":"nope"}"#,
        r#"{"execute":1}"#,
        r#"{"execute":"query-version","arguments":[]}"#,
        r#"{"execute":"query-version","arguments":null}"#,
        r#"{"execute":"query-version","arguments":{"x":1}}"#,
        r#"{"execute":"query-version","extra":1}"#,
        r#"{"foo":2,"execute":5}"#,
        r#"{"arguments":5,"execute":5}"#,
        r#"{"arguments":{}}"#,
        r#"{"execute":"query-version","exec-oob":"query-version"}"#,
        r#"{"exec-oob":"query-version"}"#,
        r#"{"execute":"query-version\u0000"}"#,
        r#"{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":1}}"#,
        r#"{"execute":"blockdev-add","arguments":{"driver":"raw","node-name":"r","file":{"driver":"null-co","bogus":{"x":1}}}}"#,
        r#"{"execute":"blockdev-add","arguments":{"driver":"raw","node-name":"r","file":{"driver":"null-co","size":"big"}}}"#,
        r#"{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"n","cache":{"direct":"yes"}}}"#,
        r#"{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"n","size":1,"size":2}}"#,
        r#"{"execute":"block_resize","arguments":{"node-name":"n","size":1.5}}"#,
        r#"{"execute":"block_resize","arguments":{"node-name":"n","size":18446744073709551616}}"#,
        r#"{"execute":"block_resize","arguments":{"node-name":"n","size":9223372036854775807}}"#,
        r#"{"execute":"block_resize","arguments":{"node-name":"n"}}"#,
        r#"{"execute":"block-export-add","arguments":{"type":"nbd","id":"x"}}"#,
        r#"{"execute":"block-export-add","arguments":{"id":"x","node-name":"n"}}"#,
        r#"{"execute":"nbd-server-start","arguments":{"addr":{"type":"inet","data":{"host":"127.0.0.1"}}}}"#,
        r#"{"execute":"nbd-server-start","arguments":{"addr":{"type":"inet","data":{"host":"127.0.0.1","port":5}}}}"#,
        r#"{"execute":"nbd-server-start","arguments":{"addr":{"type":"unix"}}}"#,
        r#"{"execute":"query-named-block-nodes","arguments":{"flat":"yes"}}"#,
    ];
    for case in cases {
        let probe = r#"{"execute":"query-version","id":"probe"}"#;
        let mut got = Vec::new();
        for s in &mut sides {
            s.qmp.send_raw(case.as_bytes());
            s.qmp.send_raw(probe.as_bytes());
            let mut msgs = Vec::new();
            loop {
                let m = s.until_reply();
                let done = m
                    .last()
                    .is_some_and(|r| r.get("id") == Some(&json!("probe")));
                msgs.extend(m);
                if done {
                    break;
                }
            }
            got.push(msgs);
        }
        assert_eq!(got[0], got[1], "input {case}");
    }

    // Out-of-band: the same answers once it is enabled, on a second
    // connection (qsd serves one connection per monitor at a time).
    for s in &mut sides {
        let path = s.daemon.qmp_path.clone().expect("monitor");
        s.qmp.close();
        s.qmp = Qmp::connect(&path);
    }
    run(
        &mut sides,
        &[
            r#"{"exec-oob":"qmp_capabilities"}"#,
            r#"{"exec-oob":5}"#,
            r#"{"execute":"query-version"}"#,
            r#"{"execute":"qmp_capabilities","arguments":{"enable":["oob","oob"]}}"#,
            r#"{"exec-oob":"query-version","id":1}"#,
            r#"{"exec-oob":"qmp_capabilities"}"#,
            r#"{"exec-oob":5}"#,
            r#"{"execute":"query-version","exec-oob":"query-version"}"#,
            r#"{"exec-oob":"query-version","execute":"query-version"}"#,
            r#"{"exec-oob":"nope"}"#,
            r#"{"execute":"query-version","arguments":{},"exec-oob":1,"foo":2}"#,
            r#"{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}"#,
        ],
    );
}
