//! Helpers for the hand-rolled serde impls of flat unions: base members and
//! the chosen branch's members share one JSON object.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Decodes `v`, which is member `key` (`""`: the value itself) of what
/// is being decoded. Hand-rolled impls decode through a `Value`, where
/// `serde_path_to_error` in [`crate::from_args`] cannot follow, so the
/// error message starts with the member path it is about: `key.inner:
/// message` (see [`crate::split_member_path`]).
pub(crate) fn decode_member<T: DeserializeOwned, E: serde::de::Error>(
    key: &str,
    v: Value,
) -> Result<T, E> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = crate::join_path(key, &e.path().to_string());
        let msg = e.into_inner();
        if path.is_empty() {
            E::custom(msg)
        } else {
            E::custom(format_args!("{path}: {msg}"))
        }
    })
}

/// Removes and decodes a required member.
pub fn take<T: DeserializeOwned, E: serde::de::Error>(
    map: &mut Map<String, Value>,
    key: &'static str,
) -> Result<T, E> {
    match map.remove(key) {
        Some(v) => decode_member(key, v),
        None => Err(E::missing_field(key)),
    }
}

/// Removes and decodes an optional member.
pub fn take_opt<T: DeserializeOwned, E: serde::de::Error>(
    map: &mut Map<String, Value>,
    key: &'static str,
) -> Result<Option<T>, E> {
    match map.remove(key) {
        Some(v) => decode_member(key, v).map(Some),
        None => Ok(None),
    }
}

/// Decodes the remaining members as the branch type.
pub fn rest<T: DeserializeOwned, E: serde::de::Error>(map: Map<String, Value>) -> Result<T, E> {
    decode_member("", Value::Object(map))
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
