//! Generated event types and `qapi_rt::event_message`.

use codegen_tests::ok::events::{
    AlarmBoxedEvent, AlarmData, AlarmDetail, AlarmDetailBranch, AlarmDetailEvent, AlarmEvent,
    AlarmInfo, ErrorInfo, OldAlarmData, OldAlarmEvent, PowerOnEvent, Severity, XDebugTraceEvent,
};
use qapi_rt::{Event, Timestamp, event_message};
use serde_json::{Value, json};

const TS: Timestamp = Timestamp {
    seconds: 1_700_000_000,
    microseconds: 123_456,
};

fn message<E: Event>(e: &E) -> Value {
    event_message(e, TS)
}

/// The member names of a message, in order.
fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn events_without_data_have_no_data_member() {
    let m = message(&PowerOnEvent);
    assert_eq!(
        m,
        json!({"event": "POWER_ON", "timestamp": {"seconds": 1_700_000_000, "microseconds": 123_456}})
    );
    assert_eq!(keys(&m), ["event", "timestamp"]);
    assert_eq!(message(&XDebugTraceEvent)["event"], "X-DEBUG_TRACE");
    const { assert!(!PowerOnEvent::HAS_DATA) };
}

#[test]
fn events_with_data() {
    let m = message(&AlarmEvent(AlarmData {
        severity: Severity::Warning,
        text: None,
    }));
    assert_eq!(
        m,
        json!({"event": "ALARM", "data": {"severity": "warning"},
               "timestamp": {"seconds": 1_700_000_000, "microseconds": 123_456}})
    );
    assert_eq!(keys(&m), ["event", "data", "timestamp"]);
    assert_eq!(keys(&m["timestamp"]), ["seconds", "microseconds"]);

    let boxed = AlarmBoxedEvent(AlarmInfo {
        severity: Severity::Info,
        text: "hello".into(),
    });
    assert_eq!(
        message(&boxed)["data"],
        json!({"severity": "info", "text": "hello"})
    );
    assert_eq!(AlarmBoxedEvent::NAME, "ALARM_BOXED");

    // A flat union as data.
    let detail = AlarmDetailEvent(AlarmDetail {
        branch: AlarmDetailBranch::Error(ErrorInfo {
            code: 7,
            hint: Some("retry".into()),
        }),
    });
    assert_eq!(
        message(&detail)["data"],
        json!({"severity": "error", "code": 7, "hint": "retry"})
    );

    // OLD_ALARM's condition, not CONFIG_NEW_ALARMS, holds.
    assert_eq!(
        message(&OldAlarmEvent(OldAlarmData { code: 1 }))["data"],
        json!({"code": 1})
    );
}

#[test]
fn event_data_reads_back() {
    // A client side decodes `data` into the same types.
    let m = message(&AlarmEvent(AlarmData {
        severity: Severity::Error,
        text: Some("disk full".into()),
    }));
    let data: AlarmData = serde_json::from_value(m["data"].clone()).expect("decodes");
    assert_eq!(data.text.as_deref(), Some("disk full"));
    let event: AlarmEvent = serde_json::from_value(m["data"].clone()).expect("decodes");
    assert_eq!(event.0, data);
}

#[test]
fn timestamp_now_is_split() {
    let m = event_message(&PowerOnEvent, Timestamp::now());
    let ts = &m["timestamp"];
    assert!(
        ts["seconds"].as_i64().is_some_and(|s| s > 1_600_000_000),
        "{ts}"
    );
    assert!(
        ts["microseconds"]
            .as_i64()
            .is_some_and(|u| (0..1_000_000).contains(&u)),
        "{ts}"
    );
}
