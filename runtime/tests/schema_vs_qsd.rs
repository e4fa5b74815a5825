//! Our QAPI schema (`schema/`) against the one of qemu-storage-daemon
//! 10.0: every command, event and type we ship must be defined exactly
//! as qsd 10.0 defines it, except for the deliberate subsets listed in
//! [`SUBSETS`], and we ship no command or event qsd 10.0 lacks.
//!
//! Two views of each definition are compared:
//!
//! - its `query-qmp-schema` entry (what clients see), for the
//!   configuration of the installed qsd, with masked type names
//!   resolved back to real ones;
//! - the checked model as `qapi-gen dump` prints it, which also covers
//!   definitions introspection never shows (base types, types only the
//!   command line uses, alternates nothing refers to) and details it
//!   folds away or evaluates: exact integer types, conditions, `boxed`,
//!   `coroutine` and `allow-preconfig`.
//!
//! qsd's side of the introspection comparison is what the installed
//! qemu-storage-daemon answers right now (started by the test; it is on
//! every machine of this project's kind, and its absence is a failure).
//! The comparison of definitions needs qsd's schema files from
//! `../shared`; without them those tests say why and pass, and
//! [`live_qsd_has_every_command_and_event_we_ship`] still runs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use qapi_gen::{CheckOptions, EntityKind, Schema, introspect};
use serde_json::Value;

/// Conditions that are false in the qsd 10.0 build whose
/// `query-qmp-schema` answer we match (Debian's; see
/// `../shared/qemu-qapi-10.0/README.txt`).  Every other condition name
/// of qsd's schema is true, for both schemas.
const QSD_DISABLED: &[&str] = &["CONFIG_BLKIO", "CONFIG_BLKIO_VHOST_VDPA_FD", "CONFIG_WIN32"];

/// Conditions of ours that qsd's schema does not have, all true in a
/// default build (so introspection is unchanged) and left out of the
/// comparison of definitions: QEMU always builds its NBD server, our
/// NBD backend is a cargo feature like the other exports.
const OURS_ONLY: &[&str] = &["CONFIG_NBD"];

/// Whether a line of `qapi-gen dump` is one of our own conditions.
fn ours_only_condition(line: &str) -> bool {
    line.trim_start()
        .strip_prefix("if ")
        .is_some_and(|c| OURS_ONLY.contains(&c))
}

/// What part of a definition we ship only a subset of.
#[derive(Clone, Copy, Debug)]
enum Part {
    EnumValues,
    UnionBranches,
}

impl Part {
    /// The introspection keys holding the parts.
    fn keys(self) -> &'static [&'static str] {
        match self {
            Part::EnumValues => &["members", "values"],
            Part::UnionBranches => &["variants"],
        }
    }

    /// How a part starts in the dump.
    fn dump_prefix(self) -> &'static str {
        match self {
            Part::EnumValues => "member ",
            Part::UnionBranches => "case ",
        }
    }
}

/// A definition of which we deliberately ship only part: ours must
/// then be a proper subset of qsd's in `part`, and equal otherwise.
struct Subset {
    name: &'static str,
    part: Part,
    reason: &'static str,
}

const DRIVERS: &str = "we implement only the block drivers file, raw, null-co and null-aio";
const IMAGE_INFO: &str = "only the file driver's information: the qcow2, vmdk, luks and rbd \
    branches would pull in information types of formats we do not implement";

const SUBSETS: &[Subset] = &[
    Subset {
        name: "BlockdevDriver",
        part: Part::EnumValues,
        reason: DRIVERS,
    },
    Subset {
        name: "BlockdevOptions",
        part: Part::UnionBranches,
        reason: DRIVERS,
    },
    Subset {
        name: "ImageInfoSpecificKind",
        part: Part::EnumValues,
        reason: IMAGE_INFO,
    },
    Subset {
        name: "ImageInfoSpecific",
        part: Part::UnionBranches,
        reason: IMAGE_INFO,
    },
];

fn subset(name: &str) -> Option<&'static Subset> {
    SUBSETS.iter().find(|s| s.name == name)
}

fn shared() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipping: {} (QEMU's reference data) does not exist",
            dir.display()
        );
        None
    }
}

fn load(path: &Path, doc_style: bool) -> Schema {
    match Schema::load(path, &CheckOptions { doc_style }) {
        Ok(s) => s,
        Err(e) => panic!("{} does not load:\n{e}", path.display()),
    }
}

struct Schemas {
    ours: Schema,
    qsd: Schema,
    shared: PathBuf,
}

fn schemas() -> Option<Schemas> {
    let shared = shared()?;
    let ours = load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema/storage-daemon.json"),
        true,
    );
    let qsd = load(
        &shared.join("qemu-qapi-10.0/schema/storage-daemon/qapi/qapi-schema.json"),
        false,
    );
    Some(Schemas { ours, qsd, shared })
}

/// Whether condition `name` holds in the qsd build we match.
fn enabled(name: &str) -> bool {
    !QSD_DISABLED.contains(&name)
}

/// The real name behind a (possibly masked, possibly array) type name.
fn real(name: &str, names: &HashMap<String, String>) -> String {
    match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(element) => format!("[{}]", real(element, names)),
        None => names.get(name).cloned().unwrap_or_else(|| name.to_string()),
    }
}

fn resolve(v: Option<&mut Value>, names: &HashMap<String, String>) {
    if let Some(Value::String(s)) = v {
        *s = real(s, names);
    }
}

/// The `query-qmp-schema` answer of `schema` under qsd's configuration,
/// keyed by real name, with every type reference resolved to its real
/// name; also the raw answer.
fn introspection(schema: &Schema) -> (BTreeMap<String, Value>, Value) {
    let entries = introspect::entries(schema);
    // Every entry with a masked name says which: `"3" = BlockdevOptions`.
    let names: HashMap<String, String> = entries
        .iter()
        .filter_map(|e| e.comment.as_deref())
        .map(|c| {
            let (masked, name) = c
                .split_once(" = ")
                .unwrap_or_else(|| panic!("unexpected comment {c:?}"));
            (masked.trim_matches('"').to_string(), name.to_string())
        })
        .collect();
    let raw = introspect::to_json(&entries, &enabled);
    let mut out = BTreeMap::new();
    for entry in raw.as_array().expect("an array").iter().cloned() {
        let mut entry = entry;
        let keys: &[&str] = match entry["meta-type"].as_str() {
            Some("command") => &["name", "arg-type", "ret-type"],
            Some("event") => &["name", "arg-type"],
            Some("array") => &["name", "element-type"],
            _ => &["name"],
        };
        for key in keys {
            resolve(entry.get_mut(*key), &names);
        }
        // Object members and variants, alternate members.
        for list in ["members", "variants"] {
            if let Some(Value::Array(items)) = entry.get_mut(list) {
                for item in items {
                    resolve(item.get_mut("type"), &names);
                }
            }
        }
        let name = entry["name"].as_str().expect("a name").to_string();
        if let Some(old) = out.insert(name.clone(), entry) {
            panic!("two entries named {name}: {old}");
        }
    }
    (out, raw)
}

/// One definition in the dump: its first line, then its items (a line
/// indented by four, with the more deeply indented lines under it).
#[derive(Debug, PartialEq)]
struct Def {
    header: String,
    items: Vec<Vec<String>>,
}

/// The definitions of `qapi-gen dump`, keyed by name; modules, include
/// directives and documentation left out.
fn definitions(schema: &Schema) -> BTreeMap<String, Def> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, Def)> = None;
    let text = qapi_gen::dump::dump(schema);
    for line in text.lines() {
        if line.starts_with("doc ") {
            break;
        }
        if ours_only_condition(line) {
            continue;
        }
        if let Some(rest) = line.strip_prefix("    ") {
            let def = &mut current.as_mut().expect("a line inside a definition").1;
            if rest.starts_with(' ') {
                let item = def.items.last_mut().expect("a nested line inside an item");
                item.push(line.to_string());
            } else {
                def.items.push(vec![line.to_string()]);
            }
            continue;
        }
        if let Some((name, def)) = current.take() {
            out.insert(name, def);
        }
        let mut words = line.split(' ');
        let kind = words.next().unwrap_or_default();
        if kind == "module" || kind == "include" {
            continue;
        }
        let name = words.next().expect("a definition name").to_string();
        let def = Def {
            header: line.to_string(),
            items: Vec::new(),
        };
        current = Some((name, def));
    }
    if let Some((name, def)) = current {
        out.insert(name, def);
    }
    out
}

/// Compares a subset entry: `ours` must lack some of `qsd`'s parts,
/// have nothing else, and equal it apart from them.  Returns what is
/// left out.
fn check_subset_entry(s: &Subset, ours: &Value, qsd: &Value) -> Result<Vec<String>, String> {
    let mut left_out = Vec::new();
    let (mut ours_rest, mut qsd_rest) = (ours.clone(), qsd.clone());
    for key in s.part.keys() {
        let list = |v: &Value| v[*key].as_array().cloned().unwrap_or_default();
        let (o, q) = (list(ours), list(qsd));
        if let Some(extra) = o.iter().find(|x| !q.contains(x)) {
            return Err(format!("{key}: {extra} is not in qsd's"));
        }
        if *key == s.part.keys()[0] {
            left_out = q
                .iter()
                .filter(|x| !o.contains(x))
                .map(|x| x.get("case").or(x.get("name")).unwrap_or(x).to_string())
                .collect();
        }
        ours_rest[*key] = Value::Null;
        qsd_rest[*key] = Value::Null;
    }
    if left_out.is_empty() {
        return Err("listed as a subset but complete: drop it from SUBSETS".into());
    }
    if ours_rest != qsd_rest {
        return Err(format!(
            "differs apart from the subset\n  ours: {ours_rest}\n  qsd:  {qsd_rest}"
        ));
    }
    Ok(left_out)
}

#[test]
fn introspection_matches_qsd() {
    let Some(Schemas { ours, qsd, shared }) = schemas() else {
        return;
    };
    let (qsd_entries, qsd_raw) = introspection(&qsd);
    let (our_entries, _) = introspection(&ours);

    // qsd's side is what the installed daemon really answers.
    let _ = shared;
    let live = live_qsd_schema();
    assert!(
        live == qsd_raw,
        "qsd's schema files do not give the installed qsd's query-qmp-schema answer"
    );

    let mut failures = Vec::new();
    let mut compared = 0;
    for (name, entry) in &our_entries {
        let Some(theirs) = qsd_entries.get(name) else {
            failures.push(format!("{name}: not in qsd 10.0's query-qmp-schema"));
            continue;
        };
        compared += 1;
        match subset(name) {
            None if entry != theirs => failures.push(format!(
                "{name}: differs\n  ours: {entry}\n  qsd:  {theirs}"
            )),
            None => {}
            Some(s) => match check_subset_entry(s, entry, theirs) {
                Ok(left_out) => eprintln!(
                    "{name}: subset ({:?}), left out {}: {}\n  because {}",
                    s.part,
                    left_out.len(),
                    left_out.join(", "),
                    s.reason
                ),
                Err(e) => failures.push(format!("{name}: {e}")),
            },
        }
    }
    for s in SUBSETS {
        if !our_entries.contains_key(s.name) {
            failures.push(format!(
                "SUBSETS lists {}, which we do not introspect",
                s.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let commands = our_entries
        .values()
        .filter(|e| e["meta-type"] == "command")
        .count();
    eprintln!(
        "{compared} query-qmp-schema entries ({commands} commands) compared, of qsd's {}",
        qsd_entries.len()
    );
}

#[test]
fn definitions_match_qsd() {
    let Some(Schemas { ours, qsd, .. }) = schemas() else {
        return;
    };
    let (our_defs, qsd_defs) = (definitions(&ours), definitions(&qsd));
    let mut failures = Vec::new();
    for (name, def) in &our_defs {
        let Some(theirs) = qsd_defs.get(name) else {
            failures.push(format!("{name}: qsd 10.0 does not define it"));
            continue;
        };
        let expected = match subset(name) {
            None => theirs,
            Some(s) => {
                // qsd's definition without the parts we leave out.
                let prefix = format!("    {}", s.part.dump_prefix());
                let items: Vec<Vec<String>> = theirs
                    .items
                    .iter()
                    .filter(|i| !i[0].starts_with(&prefix) || def.items.contains(i))
                    .cloned()
                    .collect();
                if items.len() == theirs.items.len() {
                    failures.push(format!("{name}: listed as a subset but complete"));
                }
                &Def {
                    header: theirs.header.clone(),
                    items,
                }
            }
        };
        if def != expected {
            failures.push(format!(
                "{name}: differs\n  ours: {def:?}\n  qsd:  {expected:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("{} definitions compared", our_defs.len());
}

#[test]
fn no_invented_commands_events_or_conditions() {
    let Some(Schemas { ours, qsd, .. }) = schemas() else {
        return;
    };
    let kinds = |schema: &Schema| -> BTreeSet<(String, &'static str)> {
        schema
            .definitions()
            .filter_map(|(_, e)| match e.kind {
                EntityKind::Command(_) => Some((e.name.clone(), "command")),
                EntityKind::Event(_) => Some((e.name.clone(), "event")),
                _ => None,
            })
            .collect()
    };
    let (mine, theirs) = (kinds(&ours), kinds(&qsd));
    let invented: Vec<_> = mine.difference(&theirs).collect();
    assert!(invented.is_empty(), "not in qsd 10.0: {invented:?}");
    eprintln!(
        "{} of qsd 10.0's {} commands and events shipped",
        mine.len(),
        theirs.len()
    );

    let conds = qapi_gen::builder::condition_names(&qsd);
    let ours_conds = qapi_gen::builder::condition_names(&ours);
    let unknown: Vec<_> = ours_conds
        .difference(&conds)
        .filter(|c| !OURS_ONLY.contains(&c.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "conditions qsd 10.0 does not use: {unknown:?}"
    );
}

/// The installed qemu-storage-daemon's `query-qmp-schema` answer, asked
/// over a QMP socket of a daemon this starts and stops.
fn live_qsd_schema() -> Value {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    use std::process::{Command, Stdio};
    // One directory per call: the tests of this file run in parallel.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("schema-vs-qsd-{}-{call}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let sock = dir.join("qmp.sock");
    let _ = std::fs::remove_file(&sock);
    let mut child = Command::new("qemu-storage-daemon")
        .arg("--chardev")
        .arg(format!(
            "socket,id=m,path={},server=on,wait=off",
            sock.display()
        ))
        .args(["--monitor", "chardev=m"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start qemu-storage-daemon ({e}): this test compares with the \
                 installed qsd 10.0 (Debian: qemu-utils; ./test.sh installs it)"
            )
        });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let stream = loop {
        match UnixStream::connect(&sock) {
            Ok(s) => break s,
            Err(e) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "qsd's monitor never came up: {e}"
                );
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("qemu-storage-daemon exited at startup: {status}");
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    };
    let mut w = stream.try_clone().expect("clone the socket");
    let mut lines = BufReader::new(stream);
    let mut next = || -> Value {
        let mut line = String::new();
        lines.read_line(&mut line).expect("read from qsd");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("qsd sent {line:?}: {e}"))
    };
    let greeting = next();
    assert!(greeting.get("QMP").is_some(), "greeting: {greeting}");
    w.write_all(b"{\"execute\": \"qmp_capabilities\"}\n{\"execute\": \"query-qmp-schema\"}\n")
        .expect("write to qsd");
    let mut replies = Vec::new();
    while replies.len() < 2 {
        let v = next();
        if v.get("event").is_none() {
            replies.push(v);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    match replies
        .pop()
        .and_then(|mut r| r.get_mut("return").map(Value::take))
    {
        Some(v) => v,
        None => panic!("qsd did not answer query-qmp-schema"),
    }
}

/// Without qsd's schema files: every command and event our schema
/// introspects is one the live qsd introspects too.
#[test]
fn live_qsd_has_every_command_and_event_we_ship() {
    let ours = load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema/storage-daemon.json"),
        true,
    );
    let (our_entries, _) = introspection(&ours);
    let live = live_qsd_schema();
    let theirs: BTreeSet<(String, String)> = live
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["meta-type"] == "command" || e["meta-type"] == "event")
                .map(|e| (e["name"].to_string(), e["meta-type"].to_string()))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        theirs.len() > 50,
        "qsd introspects {} commands and events",
        theirs.len()
    );
    let missing: Vec<_> = our_entries
        .values()
        .filter(|e| e["meta-type"] == "command" || e["meta-type"] == "event")
        .map(|e| (e["name"].to_string(), e["meta-type"].to_string()))
        .filter(|k| !theirs.contains(k))
        .collect();
    assert!(
        missing.is_empty(),
        "not in the live qsd's answer: {missing:?}"
    );
}
