//! QMP's text form of a JSON value, byte for byte as QEMU writes it: `": "`
//! and `", "` separators (or QEMU's `pretty=on` layout), `\r\n` after each
//! message, and object members in the iteration order of QEMU's QDict (a
//! 512-bucket hash table; within a bucket, the member added last comes
//! first). Clients parse JSON, but some tools compare text.

use serde_json::{Map, Value};

const BUCKETS: u32 = 512;

/// QDict's bucket for a key (QEMU's `tdb_hash` modulo the bucket count).
fn bucket(key: &str) -> u32 {
    let mut v: u32 = 0x238F_13AFu32.wrapping_mul(key.len() as u32);
    for (i, b) in key.bytes().enumerate() {
        v = v.wrapping_add(u32::from(b) << ((i * 5) % 24));
    }
    1_103_515_243u32.wrapping_mul(v).wrapping_add(12345) % BUCKETS
}

/// Members in QDict iteration order. The map's own order is the order
/// QEMU would have inserted them in.
fn qdict_order(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut keys: Vec<(u32, usize, &String, &Value)> = map
        .iter()
        .enumerate()
        .map(|(i, (k, v))| (bucket(k), i, k, v))
        .collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    keys.into_iter().map(|(_, _, k, v)| (k, v)).collect()
}

/// Appends `v` in QMP's compact text form.
pub fn write_qmp_json(out: &mut String, v: &Value) {
    match v {
        Value::Object(map) => {
            out.push('{');
            for (n, (k, v)) in qdict_order(map).into_iter().enumerate() {
                if n > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(": ");
                write_qmp_json(out, v);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push_str(", ");
                }
                write_qmp_json(out, item);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn pad(out: &mut String, level: usize) {
    (0..level).for_each(|_| out.push_str("    "));
}

/// Appends `v` laid out as QEMU's `pretty=on` monitors do: four-space
/// indentation, `\r\n` line ends, empty containers over two lines.
pub fn write_qmp_json_pretty(out: &mut String, v: &Value, level: usize) {
    match v {
        Value::Object(map) => {
            out.push('{');
            for (n, (k, v)) in qdict_order(map).into_iter().enumerate() {
                out.push_str(if n > 0 { ",\r\n" } else { "\r\n" });
                pad(out, level + 1);
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(": ");
                write_qmp_json_pretty(out, v, level + 1);
            }
            out.push_str("\r\n");
            pad(out, level);
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (n, item) in items.iter().enumerate() {
                out.push_str(if n > 0 { ",\r\n" } else { "\r\n" });
                pad(out, level + 1);
                write_qmp_json_pretty(out, item, level + 1);
            }
            out.push_str("\r\n");
            pad(out, level);
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// One QMP message: the value's text form and QEMU's `\r\n`.
pub fn qmp_message(v: &Value, pretty: bool) -> String {
    let mut out = String::new();
    if pretty {
        write_qmp_json_pretty(&mut out, v, 0);
    } else {
        write_qmp_json(&mut out, v);
    }
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_qemu_member_order() {
        let v = json!({"QMP": {"version": {"qemu": {"major": 10, "minor": 0, "micro": 2}, "package": "p"}, "capabilities": ["oob"]}});
        assert_eq!(
            qmp_message(&v, false),
            "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 2, \"minor\": 0, \"major\": 10}, \"package\": \"p\"}, \"capabilities\": [\"oob\"]}}\r\n"
        );
        let reply = json!({"return": {}, "id": [1, {"a": 2}]});
        assert_eq!(
            qmp_message(&reply, false),
            "{\"return\": {}, \"id\": [1, {\"a\": 2}]}\r\n"
        );
        let err = json!({"error": {"class": "C", "desc": "d"}, "id": 1});
        assert_eq!(
            qmp_message(&err, false),
            "{\"id\": 1, \"error\": {\"class\": \"C\", \"desc\": \"d\"}}\r\n"
        );
        let ev = json!({"event": "X", "data": {}, "timestamp": {"seconds": 1, "microseconds": 2}});
        assert_eq!(
            qmp_message(&ev, false),
            "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"X\", \"data\": {}}\r\n"
        );
    }

    #[test]
    fn pretty_like_qemu() {
        let v = json!({"return": {"qemu": {"major": 10, "minor": 0, "micro": 2}, "package": "p"}, "id": [1, {}]});
        assert_eq!(
            qmp_message(&v, true),
            "{\r\n    \"return\": {\r\n        \"qemu\": {\r\n            \"micro\": 2,\r\n            \"minor\": 0,\r\n            \"major\": 10\r\n        },\r\n        \"package\": \"p\"\r\n    },\r\n    \"id\": [\r\n        1,\r\n        {\r\n        }\r\n    ]\r\n}\r\n"
        );
        assert_eq!(
            qmp_message(&json!({"return": []}), true),
            "{\r\n    \"return\": [\r\n    ]\r\n}\r\n"
        );
    }
}
