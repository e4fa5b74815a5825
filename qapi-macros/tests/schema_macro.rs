//! `schema!` on the schemas in tests/schemas, exercised at run time: serde
//! round trips of the generated types, commands through `dispatch`, events
//! and introspection.

use std::future::Future;
use std::pin::pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use qapi_rt::serde_json::{self, Map, Value, json};
use qapi_rt::{ErrorClass, QmpError};

/// Types, commands and events, with an include two levels deep.
#[allow(dead_code)]
mod api {
    qapi_macros::schema!("tests/schemas/api.json");
}

/// The same types, by a path relative to this file.
#[allow(dead_code)]
mod types_by_file {
    qapi_macros::schema!("schemas/types.json", relative_to = file);
}

/// Conditions with a cfg mapping: CONFIG_EXTRA is always on, CONFIG_NEVER
/// always off.
#[allow(dead_code)]
mod cond {
    qapi_macros::schema!(
        "tests/schemas/conditional.json",
        features_only,
        cfg("CONFIG_EXTRA") = "all()",
        cfg("CONFIG_NEVER") = "any()",
    );
}

/// Polls a future to completion on this thread: the handlers below never
/// wait, so this is all the executor the tests need.
fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

fn round_trip<T>(value: &T, expected: Value)
where
    T: qapi_rt::serde::Serialize
        + qapi_rt::serde::de::DeserializeOwned
        + PartialEq
        + std::fmt::Debug,
{
    let json = serde_json::to_value(value).expect("serializes");
    assert_eq!(json, expected);
    let back: T = serde_json::from_value(json).expect("deserializes");
    assert_eq!(&back, value);
}

fn args(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

#[test]
fn struct_round_trip() {
    let mut p = api::Point {
        x: 1,
        y: -2,
        label: None,
        colour: api::Colour::Red,
    };
    round_trip(&p, json!({ "x": 1, "y": -2, "colour": "red" }));
    p.label = Some("origin".into());
    round_trip(
        &p,
        json!({ "x": 1, "y": -2, "label": "origin", "colour": "red" }),
    );
    let unknown = json!({ "x": 1, "y": 2, "colour": "red", "z": 3 });
    assert!(serde_json::from_value::<api::Point>(unknown).is_err());
    let missing = json!({ "x": 1, "colour": "red" });
    assert!(serde_json::from_value::<api::Point>(missing).is_err());
}

#[test]
fn enum_round_trip() {
    round_trip(&api::Colour::LightBlue, json!("light-blue"));
    assert_eq!(api::Colour::LightBlue.as_str(), "light-blue");
    assert_eq!(api::Colour::Green.to_string(), "green");
    assert!(serde_json::from_value::<api::Colour>(json!("LightBlue")).is_err());
}

#[test]
fn union_round_trip() {
    let circle = api::Shape {
        name: "wheel".into(),
        branch: api::ShapeBranch::Circle(api::Circle { radius: 1.5 }),
    };
    assert_eq!(circle.kind(), api::ShapeKind::Circle);
    round_trip(
        &circle,
        json!({ "kind": "circle", "name": "wheel", "radius": 1.5 }),
    );
    let square = api::Shape {
        name: "tile".into(),
        branch: api::ShapeBranch::Square(api::Square { side: 3 }),
    };
    round_trip(
        &square,
        json!({ "kind": "square", "name": "tile", "side": 3 }),
    );
    // A tag value without a branch type: no members of its own.
    let dot = api::Shape {
        name: "point".into(),
        branch: api::ShapeBranch::Dot,
    };
    round_trip(&dot, json!({ "kind": "dot", "name": "point" }));
    let wrong = json!({ "kind": "dot", "name": "point", "radius": 1.0 });
    assert!(serde_json::from_value::<api::Shape>(wrong).is_err());
    let no_tag = json!({ "name": "point" });
    assert!(serde_json::from_value::<api::Shape>(no_tag).is_err());
}

#[test]
fn alternate_round_trip() {
    round_trip(&api::Size::Bytes(4096), json!(4096));
    round_trip(
        &api::Size::Square(api::Square { side: 2 }),
        json!({ "side": 2 }),
    );
    assert!(serde_json::from_value::<api::Size>(json!("4k")).is_err());
}

#[test]
fn relative_to_file_finds_the_same_schema() {
    let p = types_by_file::Point {
        x: 0,
        y: 0,
        label: None,
        colour: types_by_file::Colour::Green,
    };
    round_trip(&p, json!({ "x": 0, "y": 0, "colour": "green" }));
}

/// A handler keeping points in memory.
#[derive(Default)]
struct Store {
    points: Mutex<Vec<api::Point>>,
    radius: Mutex<Option<f64>>,
}

impl Store {
    fn points(&self) -> std::sync::MutexGuard<'_, Vec<api::Point>> {
        self.points.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl api::Commands for Store {
    async fn add_point(&self, point: api::Point) -> Result<api::Count, QmpError> {
        if point.label.as_deref() == Some("bad") {
            return Err(QmpError::generic("bad label"));
        }
        let mut points = self.points();
        points.push(point);
        Ok(api::Count {
            count: points.len() as i64,
        })
    }

    async fn query_points(&self) -> Result<Vec<api::Point>, QmpError> {
        Ok(self.points().clone())
    }

    async fn clear(&self) -> Result<(), QmpError> {
        self.points().clear();
        Ok(())
    }

    async fn resize(&self, arg: api::Circle) -> Result<(), QmpError> {
        *self.radius.lock().unwrap_or_else(|e| e.into_inner()) = Some(arg.radius);
        Ok(())
    }
}

#[test]
fn dispatch_commands() {
    let store = Store::default();
    let run = |name: &str, a: Value| block_on(api::dispatch(&store, name, args(a)));
    let point = json!({ "x": 3, "y": 4, "colour": "light-blue" });

    assert_eq!(
        run("add-point", json!({ "point": point })),
        Ok(json!({ "count": 1 }))
    );
    assert_eq!(
        run("add-point", json!({ "point": point })),
        Ok(json!({ "count": 2 }))
    );
    assert_eq!(run("query-points", json!({})), Ok(json!([point, point])));
    assert_eq!(run("clear", json!({})), Ok(json!({})));
    assert_eq!(run("query-points", json!({})), Ok(json!([])));
    assert_eq!(run("resize", json!({ "radius": 2.5 })), Ok(json!({})));
    assert_eq!(*store.radius.lock().expect("lock"), Some(2.5));

    // Errors: the handler's, decoding, unknown commands.
    let bad = json!({ "point": { "x": 0, "y": 0, "label": "bad", "colour": "red" } });
    assert_eq!(run("add-point", bad), Err(QmpError::generic("bad label")));
    let e = run("add-point", json!({})).expect_err("missing argument");
    assert_eq!(e.class, ErrorClass::GenericError);
    assert_eq!(e.desc, "Parameter 'point' is missing");
    let e = run("clear", json!({ "all": true })).expect_err("unexpected argument");
    assert_eq!(e.desc, "Parameter 'all' is unexpected");
    let e = run("no-such-command", json!({})).expect_err("unknown command");
    assert_eq!(e.class, ErrorClass::CommandNotFound);
}

#[test]
fn command_table() {
    let names: Vec<&str> = api::commands().iter().map(|c| c.name).collect();
    assert_eq!(names, ["add-point", "query-points", "clear", "resize"]);
    assert!(
        api::commands()
            .iter()
            .all(|c| c.success_response && c.generated)
    );
}

#[test]
fn events() {
    let ts = qapi_rt::Timestamp {
        seconds: 10,
        microseconds: 20,
    };
    let added = api::PointAddedEvent(api::PointAddedData {
        point: api::Point {
            x: 1,
            y: 2,
            label: None,
            colour: api::Colour::Green,
        },
    });
    assert_eq!(
        qapi_rt::event_message(&added, ts),
        json!({
            "event": "POINT_ADDED",
            "data": { "point": { "x": 1, "y": 2, "colour": "green" } },
            "timestamp": { "seconds": 10, "microseconds": 20 },
        })
    );
    assert_eq!(
        qapi_rt::event_message(&api::ClearedEvent, ts),
        json!({ "event": "CLEARED", "timestamp": { "seconds": 10, "microseconds": 20 } })
    );
}

fn introspected_names(schema: &Value) -> Vec<&str> {
    let Value::Array(entries) = schema else {
        panic!("qmp_schema() is not an array: {schema}");
    };
    entries
        .iter()
        .filter_map(|e| e.get("name").and_then(Value::as_str))
        .collect()
}

#[test]
fn introspection() {
    let schema = api::qmp_schema();
    assert!(schema.is_array());
    let names = introspected_names(schema);
    for n in [
        "add-point",
        "query-points",
        "clear",
        "resize",
        "POINT_ADDED",
        "CLEARED",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    // Built once.
    assert!(std::ptr::eq(schema, api::qmp_schema()));
}

/// A handler for the conditional schema: `never-command` is compiled out,
/// so the trait has one method.
struct Options(Mutex<Vec<cond::Options>>);

impl cond::Commands for Options {
    async fn set_options(&self, options: cond::Options) -> Result<(), QmpError> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(options);
        Ok(())
    }
}

#[test]
fn conditional_members() {
    // `extra` is there (CONFIG_EXTRA = all()), `never` is not.
    let o = cond::Options {
        always: 1,
        extra: Some("yes".into()),
    };
    round_trip(&o, json!({ "always": 1, "extra": "yes" }));
    let never = json!({ "always": 1, "never": "x" });
    assert!(serde_json::from_value::<cond::Options>(never).is_err());
    // all(CONFIG_EXTRA, not(CONFIG_NEVER)) holds.
    round_trip(&cond::Mode::Fancy, json!("fancy"));
}

#[test]
fn conditional_commands() {
    let handler = Options(Mutex::new(Vec::new()));
    let set = json!({ "options": { "always": 7 } });
    assert_eq!(
        block_on(cond::dispatch(&handler, "set-options", args(set))),
        Ok(json!({}))
    );
    let stored = handler.0.lock().expect("lock").clone();
    assert_eq!(
        stored,
        [cond::Options {
            always: 7,
            extra: None
        }]
    );
    let e =
        block_on(cond::dispatch(&handler, "never-command", Map::new())).expect_err("compiled out");
    assert_eq!(e.class, ErrorClass::CommandNotFound);
    let names: Vec<&str> = cond::commands().iter().map(|c| c.name).collect();
    assert_eq!(names, ["set-options"]);
    let introspected = introspected_names(cond::qmp_schema());
    assert!(introspected.contains(&"set-options"));
    assert!(!introspected.contains(&"never-command"));
}
