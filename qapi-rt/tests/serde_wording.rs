//! QMP error texts are made from serde's error messages (qapi-rt's
//! `describe_decode_error` reads "missing field `x`", "invalid type: ...,
//! expected ..."). This pins both ends: serde's own wording for every form
//! we match, and the QEMU text we make of it, so a serde upgrade that
//! rewords a message fails here instead of changing our wire texts.

use qapi_rt::serde::Deserialize;
use qapi_rt::serde_json::{self, Value, json};

#[derive(Debug, Deserialize)]
#[serde(crate = "qapi_rt::serde", deny_unknown_fields)]
#[allow(dead_code)]
struct Args {
    name: String,
    count: i64,
    #[serde(default)]
    small: Option<u8>,
    #[serde(default)]
    flag: Option<bool>,
    #[serde(default)]
    mode: Option<Mode>,
    #[serde(default)]
    list: Option<Vec<i64>>,
    #[serde(default)]
    inner: Option<Inner>,
}

#[derive(Debug, Deserialize)]
#[serde(crate = "qapi_rt::serde", deny_unknown_fields)]
#[allow(dead_code)]
struct Inner {
    size: u64,
}

#[derive(Debug, Deserialize)]
#[serde(crate = "qapi_rt::serde", rename_all = "kebab-case")]
enum Mode {
    Safe,
    Hard,
}

fn args(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!("the cases are objects"),
    }
}

/// (arguments, serde's own message starts with, our QMP text)
fn cases() -> Vec<(Value, &'static str, &'static str)> {
    vec![
        (
            json!({"name": "n"}),
            "missing field `count`",
            "Parameter 'count' is missing",
        ),
        (
            json!({"name": "n", "count": 1, "bogus": 1}),
            "unknown field `bogus`, expected one of",
            "Parameter 'bogus' is unexpected",
        ),
        (
            json!({"name": 5, "count": 1}),
            "invalid type: integer `5`, expected a string",
            "Invalid parameter type for 'name', expected: string",
        ),
        (
            json!({"name": "n", "count": "1"}),
            "invalid type: string \"1\", expected i64",
            "Invalid parameter type for 'count', expected: integer",
        ),
        (
            json!({"name": "n", "count": 1, "flag": 1}),
            "invalid type: integer `1`, expected a boolean",
            "Invalid parameter type for 'flag', expected: boolean",
        ),
        (
            json!({"name": "n", "count": 1, "list": {}}),
            "invalid type: map, expected a sequence",
            "Invalid parameter type for 'list', expected: array",
        ),
        (
            json!({"name": "n", "count": 1, "mode": "soft"}),
            "unknown variant `soft`, expected `safe` or `hard`",
            "Parameter 'mode' does not accept value 'soft'",
        ),
        (
            json!({"name": "n", "count": 1, "small": 300}),
            "invalid value: integer `300`, expected u8",
            "Parameter 'small' expects integer",
        ),
        (
            json!({"name": "n", "count": 1, "inner": {"size": -1}}),
            "invalid value: integer `-1`, expected u64",
            "Parameter 'inner.size' expects integer",
        ),
        (
            json!({"name": "n", "count": 1, "inner": {}}),
            "missing field `size`",
            "Parameter 'inner.size' is missing",
        ),
    ]
}

#[test]
fn serde_wording_is_what_the_qmp_texts_are_made_from() {
    for (v, serde_says, qmp_says) in cases() {
        let raw = serde_json::from_value::<Args>(v.clone())
            .expect_err("every case is invalid")
            .to_string();
        assert!(
            raw.starts_with(serde_says),
            "serde's wording moved for {v}: now {raw:?}, expected it to start with \
             {serde_says:?}; update qapi-rt's describe_decode_error so the QMP text stays"
        );
        let ours = qapi_rt::from_args::<Args>(args(v.clone()))
            .expect_err("every case is invalid")
            .desc;
        assert_eq!(ours, qmp_says, "QMP text for {v}");
    }
}
