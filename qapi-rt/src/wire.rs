//! QMP's text form of a JSON value, byte for byte as QEMU writes it: `": "`
//! and `", "` separators, and object members in the iteration order of
//! QEMU's QDict (a 512-bucket hash table; within a bucket, the member added
//! last comes first). Clients parse JSON, but some tools compare text.

use serde_json::Value;

const BUCKETS: u32 = 512;

/// QDict's bucket for a key (QEMU's `tdb_hash` modulo the bucket count).
fn bucket(key: &str) -> u32 {
    let mut v: u32 = 0x238F_13AFu32.wrapping_mul(key.len() as u32);
    for (i, b) in key.bytes().enumerate() {
        v = v.wrapping_add(u32::from(b) << ((i * 5) % 24));
    }
    1_103_515_243u32.wrapping_mul(v).wrapping_add(12345) % BUCKETS
}

/// Appends `v` to `out` in QMP's text form.
pub fn write_qmp_json(out: &mut String, v: &Value) {
    match v {
        Value::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            // Insertion order is the map's order; QDict walks buckets in
            // order and, inside one, newest first.
            let mut keys: Vec<(u32, usize, &String, &Value)> = map
                .iter()
                .enumerate()
                .map(|(i, (k, v))| (bucket(k), i, k, v))
                .collect();
            keys.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            out.push('{');
            for (n, (_, _, k, v)) in keys.into_iter().enumerate() {
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

/// One QMP message: the value in QMP's text form and QEMU's `\r\n`.
pub fn qmp_message(v: &Value) -> String {
    let mut out = String::new();
    write_qmp_json(&mut out, v);
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
            qmp_message(&v),
            "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 2, \"minor\": 0, \"major\": 10}, \"package\": \"p\"}, \"capabilities\": [\"oob\"]}}\r\n"
        );
        assert_eq!(
            qmp_message(&json!({"return": {}, "id": [1, {"a": 2}]})),
            "{\"return\": {}, \"id\": [1, {\"a\": 2}]}\r\n"
        );
        assert_eq!(
            qmp_message(&json!({"error": {"class": "C", "desc": "d"}, "id": 1})),
            "{\"id\": 1, \"error\": {\"class\": \"C\", \"desc\": \"d\"}}\r\n"
        );
        let ev = json!({"event": "X", "data": {}, "timestamp": {"seconds": 1, "microseconds": 2}});
        assert_eq!(
            qmp_message(&ev),
            "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"X\", \"data\": {}}\r\n"
        );
    }
}
