//! Helpers shared by the tests.

#![allow(dead_code)] // each test crate uses some of them

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use qapi_rt::serde;
use serde_json::{Map, Value};

/// Runs a future to completion on this thread: polls, and parks until
/// woken. Enough for the generated dispatcher, which awaits nothing but
/// the handler.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// The object `v`; panics for anything else.
pub fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not a JSON object: {other}"),
    }
}

/// Decodes `v` as `T`, panicking with the error.
#[track_caller]
pub fn decode<T: serde::de::DeserializeOwned>(v: Value) -> T {
    match serde_json::from_value(v.clone()) {
        Ok(t) => t,
        Err(e) => panic!("{v} does not decode: {e}"),
    }
}

/// Decoding `v` as `T` fails; returns the error message.
#[track_caller]
pub fn reject<T: serde::de::DeserializeOwned + std::fmt::Debug>(v: Value) -> String {
    match serde_json::from_value::<T>(v.clone()) {
        Ok(t) => panic!("{v} decodes, as {t:?}, but must be rejected"),
        Err(e) => e.to_string(),
    }
}

/// Encodes `t`, panicking with the error.
#[track_caller]
pub fn encode<T: serde::Serialize>(t: &T) -> Value {
    match serde_json::to_value(t) {
        Ok(v) => v,
        Err(e) => panic!("does not encode: {e}"),
    }
}

/// `v` decodes as `T` and encodes back to exactly `v`; returns the value.
#[track_caller]
pub fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(v: Value) -> T {
    let t: T = decode(v.clone());
    assert_eq!(encode(&t), v, "round trip of {v}");
    t
}

/// Names of the commands an introspection answer lists, in its order.
pub fn introspected_commands(schema: &Value) -> Vec<&str> {
    schema
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["meta-type"] == "command")
        .filter_map(|e| e["name"].as_str())
        .collect()
}
