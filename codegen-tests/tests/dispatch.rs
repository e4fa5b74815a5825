//! The generated command trait, dispatcher and descriptor table, with a
//! test handler for `commands.json`.

mod common;

use std::sync::Mutex;

use codegen_tests::ok;
use codegen_tests::ok::commands::{Commands, Conditional, JobArgs, JobSpec, JobSpecBranch, Status};
use common::{block_on, object};
use qapi_rt::{ErrorClass, QmpError};
use serde_json::{Map, Value, json};

/// Records each call with its arguments, as JSON-ish text.
#[derive(Default)]
struct Handler {
    calls: Mutex<Vec<String>>,
}

impl Handler {
    fn record(&self, call: String) {
        self.calls.lock().expect("not poisoned").push(call);
    }

    fn calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().expect("not poisoned"))
    }
}

impl Commands for Handler {
    async fn ping(&self) -> Result<(), QmpError> {
        self.record("ping".into());
        Ok(())
    }

    async fn query_status(&self) -> Result<Status, QmpError> {
        Ok(Status { running: true })
    }

    async fn query_all_status(&self) -> Result<Vec<Status>, QmpError> {
        Ok(vec![Status { running: true }, Status { running: false }])
    }

    async fn query_count(&self) -> Result<i64, QmpError> {
        Ok(-7)
    }

    async fn query_names(&self) -> Result<Vec<String>, QmpError> {
        Ok(vec!["a".into(), "b".into()])
    }

    async fn start_job(
        &self,
        id: String,
        speed: Option<i64>,
        paused: Option<bool>,
    ) -> Result<(), QmpError> {
        if id == "fail" {
            return Err(QmpError::new(ErrorClass::DeviceNotFound, "no such job"));
        }
        self.record(format!("start-job {id} {speed:?} {paused:?}"));
        Ok(())
    }

    async fn start_job_named(&self, id: String, speed: Option<i64>) -> Result<(), QmpError> {
        self.record(format!("start-job-named {id} {speed:?}"));
        Ok(())
    }

    async fn start_job_boxed(&self, arg: JobArgs) -> Result<(), QmpError> {
        self.record(format!("start-job-boxed {arg:?}"));
        Ok(())
    }

    async fn start_job_spec(&self, arg: JobSpec) -> Result<(), QmpError> {
        let JobSpecBranch::Copy(c) = &arg.branch else {
            return Err(QmpError::generic("only copy"));
        };
        self.record(format!("start-job-spec copy {}", c.target));
        Ok(())
    }

    async fn start_job_cond(&self, arg: Conditional) -> Result<(), QmpError> {
        // CONFIG_A is on: the member exists.
        self.record(format!("start-job-cond {}", arg.a));
        Ok(())
    }

    async fn old_style_reset(&self, args: Map<String, Value>) -> Result<Value, QmpError> {
        // 'gen': false: the handler gets the arguments as they came.
        self.record(format!("old_style_reset {}", Value::Object(args)));
        Ok(json!({"anything": "goes"}))
    }

    async fn fast_path(&self) -> Result<(), QmpError> {
        Ok(())
    }

    async fn slow_path(&self) -> Result<(), QmpError> {
        Ok(())
    }

    async fn optional_feature(&self) -> Result<(), QmpError> {
        self.record("optional-feature".into());
        Ok(())
    }

    async fn x_experiment(&self) -> Result<Status, QmpError> {
        Ok(Status { running: false })
    }
}

fn run(h: &Handler, name: &str, args: Value) -> Result<Value, QmpError> {
    block_on(ok::commands::dispatch(h, name, object(args)))
}

#[track_caller]
fn ok(h: &Handler, name: &str, args: Value) -> Value {
    run(h, name, args).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[track_caller]
fn err(h: &Handler, name: &str, args: Value) -> QmpError {
    match run(h, name, args.clone()) {
        Ok(v) => panic!("{name} {args}: returned {v}, expected an error"),
        Err(e) => e,
    }
}

#[track_caller]
fn generic(h: &Handler, name: &str, args: Value) -> String {
    let e = err(h, name, args);
    assert_eq!(e.class, ErrorClass::GenericError, "{e}");
    e.desc
}

#[test]
fn results_are_typed_and_encoded() {
    let h = Handler::default();
    assert_eq!(ok(&h, "ping", json!({})), json!({}));
    assert_eq!(h.calls(), ["ping"]);
    assert_eq!(ok(&h, "query-status", json!({})), json!({"running": true}));
    assert_eq!(
        ok(&h, "query-all-status", json!({})),
        json!([{"running": true}, {"running": false}])
    );
    assert_eq!(ok(&h, "query-count", json!({})), json!(-7));
    assert_eq!(ok(&h, "query-names", json!({})), json!(["a", "b"]));
    assert_eq!(ok(&h, "x-experiment", json!({})), json!({"running": false}));
    assert_eq!(ok(&h, "fast-path", json!({})), json!({}));
    assert_eq!(ok(&h, "slow-path", json!({})), json!({}));
    assert!(h.calls().is_empty());
}

#[test]
fn arguments_reach_the_handler() {
    let h = Handler::default();
    assert_eq!(
        ok(&h, "start-job", json!({"id": "j", "paused": true})),
        json!({})
    );
    ok(&h, "start-job", json!({"id": "k", "speed": 5}));
    ok(&h, "start-job-named", json!({"id": "n", "speed": -1}));
    ok(&h, "start-job-boxed", json!({"id": "b"}));
    ok(&h, "start-job-spec", json!({"kind": "copy", "target": "t"}));
    ok(&h, "start-job-cond", json!({"a": 1}));
    assert_eq!(
        ok(&h, "old_style_reset", json!({"whatever": [1]})),
        json!({"anything": "goes"})
    );
    assert_eq!(
        h.calls(),
        [
            "start-job j None Some(true)",
            "start-job k Some(5) None",
            "start-job-named n Some(-1)",
            "start-job-boxed JobArgs { id: \"b\", speed: None }",
            "start-job-spec copy t",
            "start-job-cond 1",
            "old_style_reset {\"whatever\":[1]}",
        ]
    );
}

#[test]
fn handler_errors_pass_through() {
    let h = Handler::default();
    let e = err(&h, "start-job", json!({"id": "fail"}));
    assert_eq!(e, QmpError::new(ErrorClass::DeviceNotFound, "no such job"));
    let e = err(&h, "start-job-spec", json!({"kind": "move"}));
    assert_eq!(e, QmpError::generic("only copy"));
}

#[test]
fn unknown_commands() {
    let h = Handler::default();
    for name in ["no-such-command", "start_job", "Ping", ""] {
        let e = err(&h, name, json!({}));
        assert_eq!(e.class, ErrorClass::CommandNotFound, "{name}: {e}");
        assert_eq!(e.desc, format!("The command {name} has not been found"));
        assert_eq!(e.to_json()["class"], "CommandNotFound");
    }
    assert!(h.calls().is_empty());
}

#[test]
fn bad_arguments_name_the_member() {
    let h = Handler::default();
    // Missing, unexpected, wrong type, out of range.
    assert_eq!(
        generic(&h, "start-job", json!({})),
        "Parameter 'id' is missing"
    );
    assert_eq!(
        generic(&h, "start-job", json!({"id": "j", "sped": 1})),
        "Parameter 'sped' is unexpected"
    );
    assert_eq!(
        generic(&h, "start-job", json!({"id": 1})),
        "Invalid parameter type for 'id', expected: string"
    );
    assert_eq!(
        generic(&h, "start-job", json!({"id": "j", "speed": "fast"})),
        "Invalid parameter type for 'speed', expected: integer"
    );
    assert_eq!(
        generic(&h, "start-job", json!({"id": "j", "paused": null})),
        "Invalid parameter type for 'paused', expected: boolean"
    );
    assert_eq!(
        generic(&h, "start-job-boxed", json!({"speed": 1})),
        "Parameter 'id' is missing"
    );
    assert_eq!(
        generic(&h, "start-job-named", json!({"id": "x", "extra": true})),
        "Parameter 'extra' is unexpected"
    );
    // Commands without arguments take none.
    assert_eq!(
        generic(&h, "ping", json!({"verbose": true})),
        "Parameter 'verbose' is unexpected"
    );
    // A union as arguments: its base members and its branches' members.
    assert_eq!(
        generic(&h, "start-job-spec", json!({})),
        "Parameter 'kind' is missing"
    );
    assert_eq!(
        generic(&h, "start-job-spec", json!({"kind": "copy"})),
        "Parameter 'target' is missing"
    );
    assert_eq!(
        generic(
            &h,
            "start-job-spec",
            json!({"kind": "copy", "target": "t", "speed": 1})
        ),
        "Parameter 'speed' is unexpected"
    );
    assert_eq!(
        generic(&h, "start-job-spec", json!({"kind": "move", "target": "t"})),
        "Parameter 'target' is unexpected"
    );
    assert_eq!(
        generic(&h, "start-job-spec", json!({"kind": "jump"})),
        "Parameter 'kind' does not accept value 'jump'"
    );
    assert_eq!(
        generic(&h, "start-job-spec", json!({"kind": 1})),
        "Invalid parameter type for 'kind', expected: string"
    );
    assert_eq!(
        generic(
            &h,
            "start-job-spec",
            json!({"kind": "copy", "target": false})
        ),
        "Invalid parameter type for 'target', expected: string"
    );
    // Nothing was called.
    assert!(h.calls().is_empty());
}

#[test]
fn descriptor_table() {
    let table = ok::commands::commands();
    let names: Vec<&str> = table.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "ping",
            "query-status",
            "query-all-status",
            "query-count",
            "query-names",
            "start-job",
            "start-job-named",
            "start-job-boxed",
            "start-job-spec",
            "start-job-cond",
            "old_style_reset",
            "fast-path",
            "slow-path",
            // CONFIG_OPTIONAL is on.
            "optional-feature",
            "x-experiment",
        ]
    );
    let get = |name: &str| {
        table
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("{name} not listed"))
    };
    let ping = get("ping");
    assert!(ping.success_response && ping.generated);
    assert!(!ping.allow_oob && !ping.allow_preconfig && !ping.coroutine);
    assert!(ping.features.is_empty());
    let reset = get("old_style_reset");
    assert!(!reset.success_response && !reset.generated);
    let fast = get("fast-path");
    assert!(fast.allow_oob && fast.allow_preconfig && !fast.coroutine);
    let slow = get("slow-path");
    assert!(!slow.allow_oob && slow.allow_preconfig && slow.coroutine);
    // Feature 'unstable' of optional-feature needs CONFIG_DEV, which is off.
    assert_eq!(get("optional-feature").features, ["deprecated"]);
    assert_eq!(get("x-experiment").features, ["unstable"]);

    // The introspection data lists the same commands.
    let introspected: Vec<&str> = common::introspected_commands(ok::commands::qmp_schema());
    assert_eq!(introspected, names);
}

/// `conditions.json`'s only command, `configure`, needs CONFIG_MODE and
/// CONFIG_SETTINGS; CONFIG_SETTINGS is off, so the trait has no methods.
struct NoCommands;
impl ok::conditions::Commands for NoCommands {}

#[test]
fn conditional_commands_exist_only_when_on() {
    assert!(ok::conditions::commands().is_empty());
    let e = block_on(ok::conditions::dispatch(
        &NoCommands,
        "configure",
        Map::new(),
    ));
    assert_eq!(e.map_err(|e| e.class), Err(ErrorClass::CommandNotFound));
    let schema = ok::conditions::qmp_schema().to_string();
    assert!(!schema.contains("configure"), "{schema}");
    // The event's condition, any(CONFIG_MODE, not CONFIG_QUIET), holds.
    assert!(schema.contains("CONFIGURED"), "{schema}");

    // In commands.json, optional-feature (CONFIG_OPTIONAL, on) is there.
    let h = Handler::default();
    assert_eq!(ok(&h, "optional-feature", json!({})), json!({}));
    assert_eq!(h.calls(), ["optional-feature"]);
}

/// Argument decoding names members below unions and alternates too, which
/// generated code decodes by hand.
#[test]
fn nested_members_are_named() {
    use ok::alternates::UsesAlternates;
    let desc = |args: Value| qapi_rt::from_args::<UsesAlternates>(object(args)).map_err(|e| e.desc);
    assert_eq!(
        desc(json!({"setting": {"rate": "x"}, "many": []})),
        Err("Invalid parameter type for 'setting.rate', expected: integer".into())
    );
    assert_eq!(
        desc(json!({"setting": 1, "many": [1, {"rat": 1}]})),
        Err("Parameter 'many[1].rat' is unexpected".into())
    );
    assert_eq!(
        desc(json!({"setting": 1, "many": [{}]})),
        Err("Parameter 'many[0].rate' is missing".into())
    );

    use ok::unions::Outer;
    let desc = |args: Value| qapi_rt::from_args::<Outer>(object(args)).map_err(|e| e.desc);
    assert_eq!(
        desc(json!({"level": "top", "kind": "dog", "name": "Rex", "breed": 1})),
        Err("Invalid parameter type for 'breed', expected: string".into())
    );
    assert_eq!(
        desc(json!({"level": "top", "kind": "bird", "name": "Rex"})),
        Err("Parameter 'kind' does not accept value 'bird'".into())
    );
}

/// QEMU's `blockdev-add` arguments, decoded as its dispatcher does.
#[cfg(have_shared)]
#[test]
fn blockdev_add_errors_name_nested_members() {
    use codegen_tests::qemu10::BlockdevOptions;
    let desc = |args: Value| {
        qapi_rt::from_args::<BlockdevOptions>(object(args))
            .map(|_| ())
            .map_err(|e| e.desc)
    };
    assert_eq!(
        desc(json!({"driver": "qcow2", "node-name": "n",
                    "file": {"driver": "file", "filename": "/tmp/x"}})),
        Ok(())
    );
    assert_eq!(
        desc(json!({"driver": "qcow2", "file": {"driver": "file"}})),
        Err("Parameter 'file.filename' is missing".into())
    );
    assert_eq!(
        desc(json!({"driver": "qcow2", "file": {"driver": "nope"}})),
        Err("Parameter 'file.driver' does not accept value 'nope'".into())
    );
    assert_eq!(
        desc(json!({"driver": "qcow2", "file": {"driver": "file", "filename": 1}})),
        Err("Invalid parameter type for 'file.filename', expected: string".into())
    );
    assert_eq!(
        desc(json!({"driver": "raw", "file": "f", "cache": {"direct": "yes"}})),
        Err("Invalid parameter type for 'cache.direct', expected: boolean".into())
    );
    assert_eq!(
        desc(json!({"driver": "raw", "file": "f", "filename": "x"})),
        Err("Parameter 'filename' is unexpected".into())
    );
    assert_eq!(
        desc(json!({"file": "f"})),
        Err("Parameter 'driver' is missing".into())
    );
}

/// The daemon's own schema, generated as its runtime crate does: the
/// descriptor table and introspection agree (the handlers live in the
/// runtime crate and are tested there).
#[test]
fn daemon_schema() {
    use codegen_tests::daemon;
    let table = daemon::commands();
    let introspected: Vec<&str> = common::introspected_commands(daemon::qmp_schema());
    let mut listed: Vec<&str> = table.iter().map(|c| c.name).collect();
    let mut introspected_sorted = introspected.clone();
    listed.sort_unstable();
    introspected_sorted.sort_unstable();
    assert_eq!(listed, introspected_sorted);
    let caps = table.iter().find(|c| c.name == "qmp_capabilities");
    assert!(caps.is_some_and(|c| c.allow_preconfig));
}
