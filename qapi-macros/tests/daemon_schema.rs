//! The storage daemon's own schema through `schema!`, with the daemon's
//! condition mapping (the default).

// The mapping names cargo features (`fuse`, `vduse`, ...) this crate does
// not declare.
#![allow(unexpected_cfgs)]

#[allow(dead_code)]
mod daemon {
    qapi_macros::schema!("../schema/storage-daemon.json");
}

#[test]
fn daemon_schema_expands() {
    let commands = daemon::commands();
    assert!(!commands.is_empty());
    let schema = daemon::qmp_schema();
    let entries = schema.as_array().expect("qmp_schema() is an array");
    let mut introspected: Vec<&str> = entries
        .iter()
        .filter(|e| e.get("meta-type").and_then(|m| m.as_str()) == Some("command"))
        .filter_map(|e| e.get("name").and_then(|n| n.as_str()))
        .collect();
    let mut listed: Vec<&str> = commands.iter().map(|c| c.name).collect();
    introspected.sort_unstable();
    listed.sort_unstable();
    assert_eq!(introspected, listed);
}
