//! QMP events: typed values turned into `{"event", "data", "timestamp"}`.

use serde_json::{Value, json};

/// Implemented by every generated event type.
pub trait Event: serde::Serialize {
    /// The event name on the wire, e.g. `BLOCK_EXPORT_DELETED`.
    const NAME: &'static str;
    /// Whether the event carries a `data` member.
    const HAS_DATA: bool;
}

/// Wall-clock time of an event, split as QMP sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    pub seconds: i64,
    pub microseconds: i64,
}

impl Timestamp {
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp {
            seconds: d.as_secs() as i64,
            microseconds: i64::from(d.subsec_micros()),
        }
    }
}

/// The QMP message for `event` at `ts`. Members are ordered as QEMU sends
/// them: event, data, timestamp.
pub fn event_message<E: Event>(event: &E, ts: Timestamp) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("event".into(), Value::String(E::NAME.into()));
    if E::HAS_DATA {
        m.insert(
            "data".into(),
            serde_json::to_value(event).unwrap_or(Value::Null),
        );
    }
    m.insert(
        "timestamp".into(),
        json!({ "seconds": ts.seconds, "microseconds": ts.microseconds }),
    );
    Value::Object(m)
}
