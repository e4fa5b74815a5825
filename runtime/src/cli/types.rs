//! Type information for the options whose types are not part of the
//! daemon's QMP schema: `--monitor` (`MonitorOptions`) and `--object`
//! (`ObjectOptions`). The definitions are qemu-storage-daemon 10.0's, in
//! the format of the generated `type_info()`; `--object` knows only the
//! object type the daemon can create, `iothread`.

use serde_json::{Value, json};

/// Entries to add to the daemon's `type_info()`.
pub fn command_line_types() -> Value {
    let opt = |name: &str, ty: &str| json!({ "name": name, "type": ty, "default": null });
    json!([
        { "name": "MonitorMode", "meta-type": "enum",
          "members": [{ "name": "readline" }, { "name": "control" }],
          "values": ["readline", "control"] },
        { "name": "MonitorOptions", "meta-type": "object", "members": [
            opt("id", "str"),
            opt("mode", "MonitorMode"),
            opt("pretty", "bool"),
            { "name": "chardev", "type": "str" } ] },
        { "name": "ObjectType", "meta-type": "enum",
          "members": [{ "name": "iothread" }],
          "values": ["iothread"] },
        { "name": "EventLoopBaseProperties", "meta-type": "object", "members": [
            opt("aio-max-batch", "int"),
            opt("thread-pool-min", "int"),
            opt("thread-pool-max", "int") ] },
        { "name": "IothreadProperties", "meta-type": "object", "members": [
            opt("aio-max-batch", "int"),
            opt("thread-pool-min", "int"),
            opt("thread-pool-max", "int"),
            opt("poll-max-ns", "int"),
            opt("poll-grow", "int"),
            opt("poll-shrink", "int") ] },
        { "name": "ObjectOptions", "meta-type": "object",
          "members": [
            { "name": "qom-type", "type": "ObjectType" },
            { "name": "id", "type": "str" } ],
          "tag": "qom-type",
          "variants": [{ "case": "iothread", "type": "IothreadProperties" }] },
    ])
}
