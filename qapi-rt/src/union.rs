//! Helpers for the hand-rolled serde impls of flat unions: base members and
//! the chosen branch's members share one JSON object.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Removes and decodes a required member.
pub fn take<T: DeserializeOwned, E: serde::de::Error>(
    map: &mut Map<String, Value>,
    key: &'static str,
) -> Result<T, E> {
    match map.remove(key) {
        Some(v) => serde_json::from_value(v).map_err(|e| E::custom(format_args!("{key}: {e}"))),
        None => Err(E::missing_field(key)),
    }
}

/// Removes and decodes an optional member.
pub fn take_opt<T: DeserializeOwned, E: serde::de::Error>(
    map: &mut Map<String, Value>,
    key: &'static str,
) -> Result<Option<T>, E> {
    match map.remove(key) {
        Some(v) => serde_json::from_value(v)
            .map(Some)
            .map_err(|e| E::custom(format_args!("{key}: {e}"))),
        None => Ok(None),
    }
}

/// Decodes the remaining members as the branch type.
pub fn rest<T: DeserializeOwned, E: serde::de::Error>(map: Map<String, Value>) -> Result<T, E> {
    serde_json::from_value(Value::Object(map)).map_err(E::custom)
}

/// A branch without members: nothing may remain.
pub fn empty_rest<E: serde::de::Error>(map: Map<String, Value>) -> Result<(), E> {
    match map.keys().next() {
        Some(k) => Err(E::custom(format_args!(
            "unknown field `{k}`, there are no fields"
        ))),
        None => Ok(()),
    }
}

/// Adds a member.
pub fn put<T: serde::Serialize, E: serde::ser::Error>(
    map: &mut Map<String, Value>,
    key: &str,
    value: &T,
) -> Result<(), E> {
    map.insert(
        key.to_string(),
        serde_json::to_value(value).map_err(E::custom)?,
    );
    Ok(())
}

/// Adds an optional member when present.
pub fn put_opt<T: serde::Serialize, E: serde::ser::Error>(
    map: &mut Map<String, Value>,
    key: &str,
    value: &Option<T>,
) -> Result<(), E> {
    match value {
        Some(v) => put(map, key, v),
        None => Ok(()),
    }
}

/// Adds every member of a branch value (which serializes as an object).
pub fn put_flat<T: serde::Serialize, E: serde::ser::Error>(
    map: &mut Map<String, Value>,
    value: &T,
) -> Result<(), E> {
    match serde_json::to_value(value).map_err(E::custom)? {
        Value::Object(m) => {
            map.extend(m);
            Ok(())
        }
        _ => Err(E::custom("union branch must serialize as an object")),
    }
}
