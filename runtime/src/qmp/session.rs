//! One QMP session: capabilities negotiation and request validation, as a
//! state machine over frames. It decides what to run or answer; it does not
//! run commands or touch sockets.

use qapi_rt::{CommandInfo, ErrorClass, QmpError};
use serde_json::{Map, Value};

use super::codec::Frame;

/// A command to run, already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Exec {
    pub name: String,
    pub args: Map<String, Value>,
    pub id: Option<Value>,
    pub oob: bool,
    /// Whether a reply is sent (`success-response`).
    pub reply: bool,
}

/// What to do with an incoming frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this message now.
    Reply(Value),
    /// Run the command, then reply (unless `reply` is false).
    Execute(Exec),
    /// `qmp_capabilities` succeeded: answer `{"return": {}}`.
    Negotiated(Option<Value>),
}

/// The capabilities a server offers in its greeting.
pub const CAPABILITIES: &[&str] = &["oob"];

#[derive(Debug, Default)]
pub struct Session {
    negotiated: bool,
    oob: bool,
}

/// The `{"error": ...}` reply, with `id` when the request had one.
pub fn error_reply(err: &QmpError, id: Option<&Value>) -> Value {
    let mut m = Map::new();
    m.insert("error".into(), err.to_json());
    if let Some(id) = id {
        m.insert("id".into(), id.clone());
    }
    Value::Object(m)
}

/// The `{"return": ...}` reply.
pub fn return_reply(ret: Value, id: Option<&Value>) -> Value {
    let mut m = Map::new();
    m.insert("return".into(), ret);
    if let Some(id) = id {
        m.insert("id".into(), id.clone());
    }
    Value::Object(m)
}

fn generic(desc: impl Into<String>) -> QmpError {
    QmpError::generic(desc)
}

impl Session {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn negotiated(&self) -> bool {
        self.negotiated
    }

    pub fn oob_enabled(&self) -> bool {
        self.oob
    }

    /// Decides what a frame asks for. `lookup` finds a command's descriptor.
    pub fn on_frame<'a>(
        &mut self,
        frame: Frame,
        lookup: impl Fn(&str) -> Option<&'a CommandInfo>,
    ) -> Action {
        let text = match frame {
            Frame::Error(msg) => return Action::Reply(error_reply(&generic(msg), None)),
            Frame::Value(text) => text,
        };
        // QEMU's own JSON dialect (single-quoted strings, duplicate keys
        // refused) with its parser's error texts.
        let value = match crate::qemu_json::json::parse(&text) {
            Ok(v) => v,
            Err(e) => return Action::Reply(error_reply(&generic(e), None)),
        };
        let Value::Object(mut req) = value else {
            return Action::Reply(error_reply(
                &generic("QMP input must be a JSON object"),
                None,
            ));
        };
        let id = req.shift_remove("id");
        match self.check(req, lookup) {
            Ok(Action::Negotiated(_)) => Action::Negotiated(id),
            Ok(Action::Execute(mut e)) => {
                e.id = id;
                Action::Execute(e)
            }
            Ok(other) => other,
            Err(err) => Action::Reply(error_reply(&err, id.as_ref())),
        }
    }

    /// QEMU's `qmp_dispatch_check_obj()` and `qmp_dispatch()`: members are
    /// checked in the order a QDict iterates them, so that the same one is
    /// reported when several are wrong; `exec-oob` is only a member once
    /// out-of-band execution was enabled.
    fn check<'a>(
        &mut self,
        mut req: Map<String, Value>,
        lookup: impl Fn(&str) -> Option<&'a CommandInfo>,
    ) -> Result<Action, QmpError> {
        let mut exec_key: Option<&'static str> = None;
        for k in crate::qemu_json::order::qdict_order(req.keys().map(String::as_str)) {
            match k {
                "execute" | "exec-oob" if k == "execute" || self.oob => {
                    if !req[k].is_string() {
                        return Err(generic(format!("QMP input member '{k}' must be a string")));
                    }
                    if let Some(prev) = exec_key {
                        return Err(generic(format!(
                            "QMP input member '{k}' clashes with '{prev}'"
                        )));
                    }
                    exec_key = Some(if k == "execute" {
                        "execute"
                    } else {
                        "exec-oob"
                    });
                }
                "arguments" if !req[k].is_object() => {
                    return Err(generic("QMP input member 'arguments' must be an object"));
                }
                "arguments" => {}
                other => return Err(generic(format!("QMP input member '{other}' is unexpected"))),
            }
        }
        let Some(key) = exec_key else {
            return Err(generic("QMP input lacks member 'execute'"));
        };
        let oob = key == "exec-oob";
        let name = match req.remove(key) {
            Some(Value::String(n)) => n,
            _ => String::new(),
        };
        let args = match req.remove("arguments") {
            Some(Value::Object(a)) => a,
            _ => Map::new(),
        };
        if !self.negotiated {
            // Only qmp_capabilities exists before negotiation; QEMU then
            // words "not found" this way.
            if name != "qmp_capabilities" {
                return Err(QmpError::new(
                    ErrorClass::CommandNotFound,
                    "Expecting capabilities negotiation with 'qmp_capabilities'",
                ));
            }
            if oob {
                return Err(generic("The command qmp_capabilities does not support OOB"));
            }
            return self.negotiate(args);
        }
        let Some(info) = lookup(&name) else {
            return Err(QmpError::command_not_found(&name));
        };
        if oob && !info.allow_oob {
            return Err(generic(format!("The command {name} does not support OOB")));
        }
        // After negotiation qmp_capabilities is an ordinary command whose
        // handler refuses (once its arguments were checked).
        Ok(Action::Execute(Exec {
            reply: info.success_response,
            name,
            args,
            id: None,
            oob,
        }))
    }

    fn negotiate(&mut self, args: Map<String, Value>) -> Result<Action, QmpError> {
        let mut oob = false;
        for (k, v) in args {
            if k != "enable" {
                return Err(generic(format!("Parameter '{k}' is unexpected")));
            }
            let Value::Array(caps) = v else {
                return Err(generic(
                    "Invalid parameter type for 'enable', expected: array",
                ));
            };
            for (i, c) in caps.iter().enumerate() {
                match c.as_str() {
                    Some("oob") => oob = true,
                    Some(other) => {
                        return Err(generic(format!(
                            "Parameter 'enable[{i}]' does not accept value '{other}'"
                        )));
                    }
                    None => {
                        return Err(generic(format!(
                            "Invalid parameter type for 'enable[{i}]', expected: string"
                        )));
                    }
                }
            }
        }
        self.negotiated = true;
        self.oob = oob;
        Ok(Action::Negotiated(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(name: &'static str, allow_oob: bool) -> CommandInfo {
        CommandInfo {
            name,
            success_response: true,
            allow_oob,
            allow_preconfig: false,
            coroutine: false,
            generated: true,
            features: Vec::new(),
        }
    }

    fn run(s: &mut Session, text: &str) -> Action {
        let table = [
            info("query-version", false),
            info("qmp_capabilities", false),
            info("x-oob", true),
        ];
        s.on_frame(Frame::Value(text.into()), |n| {
            table.iter().find(|c| c.name == n)
        })
    }

    fn err_desc(a: Action) -> String {
        match a {
            Action::Reply(v) => v["error"]["desc"].as_str().unwrap_or_default().to_string(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn negotiation_first() {
        let mut s = Session::new();
        assert_eq!(
            err_desc(run(&mut s, r#"{"execute":"query-version"}"#)),
            "Expecting capabilities negotiation with 'qmp_capabilities'"
        );
        assert_eq!(
            run(&mut s, r#"{"execute":"qmp_capabilities","id":7}"#),
            Action::Negotiated(Some(json!(7)))
        );
        // Now an ordinary command: the handler refuses it.
        assert!(matches!(
            run(&mut s, r#"{"execute":"qmp_capabilities"}"#),
            Action::Execute(e) if e.name == "qmp_capabilities"
        ));
        match run(&mut s, r#"{"execute":"query-version","id":[1,{"a":2}]}"#) {
            Action::Execute(e) => assert_eq!(e.id, Some(json!([1, {"a": 2}]))),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_requests() {
        let mut s = Session::new();
        run(
            &mut s,
            r#"{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}"#,
        );
        assert_eq!(
            err_desc(run(&mut s, "[1,2]")),
            "QMP input must be a JSON object"
        );
        assert_eq!(
            err_desc(run(&mut s, r#"{"exec":1}"#)),
            "QMP input member 'exec' is unexpected"
        );
        assert_eq!(
            err_desc(run(&mut s, r#"{"execute":5}"#)),
            "QMP input member 'execute' must be a string"
        );
        assert_eq!(
            err_desc(run(&mut s, r#"{"id":1}"#)),
            "QMP input lacks member 'execute'"
        );
        assert_eq!(
            err_desc(run(&mut s, r#"{"execute":"a","arguments":5}"#)),
            "QMP input member 'arguments' must be an object"
        );
        assert_eq!(
            err_desc(run(&mut s, r#"{"exec-oob":"query-version"}"#)),
            "The command query-version does not support OOB"
        );
        assert_eq!(
            err_desc(run(&mut s, r#"{"execute":"nope"}"#)),
            "The command nope has not been found"
        );
        assert_eq!(
            err_desc(run(&mut s, "garbage")),
            "JSON parse error, invalid keyword 'garbage'"
        );
        assert_eq!(
            err_desc(run(&mut s, r#"{"execute":"a","execute":"b"}"#)),
            "JSON parse error, duplicate key"
        );
        assert!(matches!(
            run(&mut s, "{'execute':'query-version'}"),
            Action::Execute(_)
        ));
    }
}
