//! QMP introspection: the value of `query-qmp-schema`, built the way QEMU
//! builds it.
//!
//! The result describes every command and event, then every type reachable
//! from them. Type names other than builtins are hidden behind decimal
//! strings ("0", "1", ...) handed out in order of first use, and all
//! integer types are folded into `int` (arrays of them into `[int]`).
//!
//! [`entries`] produces a tree in which every item that can be conditional
//! keeps its [`IfCond`], so a code generator can emit `#[cfg]` for it;
//! [`to_json`] evaluates the conditions for a given configuration and gives
//! the JSON the daemon answers with.
//!
//! Masked numbers are handed out over the whole schema before any condition
//! is evaluated, so a configuration that disables items leaves gaps in the
//! numbering, exactly like QEMU (whose conditions become `#if` in C).
//!
//! [`type_entries`] is a variant for programs rather than QMP clients: the
//! same entry format, but for every type of the schema (reachable from a
//! command or not, implicit ones included), under its real name and with
//! its real builtin types (`uint32`, `size`, ...). A command line parser
//! that converts strings by target type, as QEMU's keyval visitor does,
//! needs exactly that.

use std::collections::{HashMap, HashSet};

use crate::model::{EntityId, EntityKind, Feature, IfCond, JsonType, Member, Variants};
use crate::schema::Schema;
use crate::value::Value;

/// A value with the condition under which it is present.
#[derive(Debug, Clone, PartialEq)]
pub struct Annotated<T> {
    pub value: T,
    pub ifcond: IfCond,
    /// For entries whose name is masked: `"N" = RealName`, to make the
    /// generated output readable.
    pub comment: Option<String>,
}

impl<T> Annotated<T> {
    pub fn new(value: T, ifcond: IfCond) -> Self {
        Annotated {
            value,
            ifcond,
            comment: None,
        }
    }
}

/// A JSON-like tree. Only list items can be conditional: in QEMU's format
/// the keys of an object are never conditional, the lists they hold are.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Str(String),
    List(Vec<Annotated<Node>>),
    /// Keys in output order.
    Dict(Vec<(String, Node)>),
}

impl Node {
    fn str(s: impl Into<String>) -> Node {
        Node::Str(s.into())
    }

    /// Converts to JSON, dropping list items whose condition is false.
    pub fn to_json(&self, enabled: &dyn Fn(&str) -> bool) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Node::Null => J::Null,
            Node::Bool(b) => J::Bool(*b),
            Node::Str(s) => J::String(s.clone()),
            Node::List(items) => J::Array(
                items
                    .iter()
                    .filter(|a| eval_cond(&a.ifcond, enabled))
                    .map(|a| a.value.to_json(enabled))
                    .collect(),
            ),
            Node::Dict(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json(enabled)))
                    .collect(),
            ),
        }
    }
}

/// Evaluates a QAPI condition: a name (looked up with `enabled`), or
/// `{'all': [...]}`, `{'any': [...]}`, `{'not': ...}`. No condition is true.
pub fn eval_cond(cond: &IfCond, enabled: &dyn Fn(&str) -> bool) -> bool {
    cond.0.as_ref().is_none_or(|v| eval_value(v, enabled))
}

fn eval_value(v: &Value, enabled: &dyn Fn(&str) -> bool) -> bool {
    match v {
        Value::Str(name) => enabled(name),
        Value::Bool(b) => *b,
        Value::List(items) => items.iter().all(|i| eval_value(i, enabled)),
        Value::Dict(d) => d.iter().all(|(op, arg)| {
            let items = || arg.as_list().unwrap_or_default().iter();
            match op {
                "all" => items().all(|i| eval_value(i, enabled)),
                "any" => items().any(|i| eval_value(i, enabled)),
                "not" => !eval_value(arg, enabled),
                // The front end rejects other operators.
                _ => false,
            }
        }),
    }
}

/// The introspection entries of `schema`, in QEMU's order: commands and
/// events (module by module), then the types they use, breadth first.
pub fn entries(schema: &Schema) -> Vec<Annotated<Node>> {
    let mut g = Generator {
        schema,
        real_names: false,
        int: schema.by_name.get("int").copied(),
        int_list: schema.by_name.get("intList").copied(),
        empty: schema.by_name.get("q_empty").copied(),
        used: Vec::new(),
        used_set: HashSet::new(),
        masks: HashMap::new(),
        out: Vec::new(),
    };
    for module in &schema.modules {
        for &id in &module.entities {
            match &schema.entities[id].kind {
                EntityKind::Command(_) | EntityKind::Event(_) => g.entity(id),
                _ => {}
            }
        }
    }
    // The queue grows while it is processed.
    let mut i = 0;
    while i < g.used.len() {
        g.entity(g.used[i]);
        i += 1;
    }
    g.out
}

/// Type information for programs: an entry for every type of the schema
/// (builtins, enumerations, arrays, objects including implicit ones such as
/// `q_obj_...-arg` and `q_empty`, alternates), in definition order, in the
/// format of [`entries`] but with real names everywhere and without folding
/// integer types. Commands and events are not included. Array types are
/// named `[element]` as in `query-qmp-schema`, e.g. `[uint32]`.
pub fn type_entries(schema: &Schema) -> Vec<Annotated<Node>> {
    let mut g = Generator {
        schema,
        real_names: true,
        int: None,
        int_list: None,
        empty: None,
        used: Vec::new(),
        used_set: HashSet::new(),
        masks: HashMap::new(),
        out: Vec::new(),
    };
    for (id, e) in schema.definitions() {
        if e.is_type() {
            g.entity(id);
        }
    }
    g.out
}

/// JSON for `entries` with the conditions evaluated by `enabled`.
pub fn to_json(entries: &[Annotated<Node>], enabled: &dyn Fn(&str) -> bool) -> serde_json::Value {
    serde_json::Value::Array(
        entries
            .iter()
            .filter(|e| eval_cond(&e.ifcond, enabled))
            .map(|e| e.value.to_json(enabled))
            .collect(),
    )
}

struct Generator<'a> {
    schema: &'a Schema,
    /// Real names and real integer types ([`type_entries`]) rather than
    /// masked names and `int` for every integer type ([`entries`]).
    real_names: bool,
    int: Option<EntityId>,
    int_list: Option<EntityId>,
    empty: Option<EntityId>,
    used: Vec<EntityId>,
    used_set: HashSet<EntityId>,
    masks: HashMap<String, usize>,
    out: Vec<Annotated<Node>>,
}

impl Generator<'_> {
    fn masked(&mut self, name: &str) -> String {
        let next = self.masks.len();
        self.masks
            .entry(name.to_string())
            .or_insert(next)
            .to_string()
    }

    fn is_int(&self, id: EntityId) -> bool {
        matches!(
            self.schema.entities[id].kind,
            EntityKind::Builtin {
                json: JsonType::Int
            }
        )
    }

    /// Records `id` as used and returns the name to write for it.
    fn use_type(&mut self, mut id: EntityId) -> String {
        if self.real_names {
            let e = &self.schema.entities[id];
            return match e.kind {
                EntityKind::Array { element, .. } => {
                    let element = element.expect("array element resolved by checking");
                    format!("[{}]", self.use_type(element))
                }
                _ => e.name.clone(),
            };
        }
        if self.is_int(id) {
            id = self.int.unwrap_or(id);
        } else if let EntityKind::Array {
            element: Some(el), ..
        } = self.schema.entities[id].kind
            && self.is_int(el)
        {
            id = self.int_list.unwrap_or(id);
        }
        if self.used_set.insert(id) {
            self.used.push(id);
        }
        let e = &self.schema.entities[id];
        match &e.kind {
            EntityKind::Builtin { .. } => e.name.clone(),
            EntityKind::Array { element, .. } => {
                let element = element.expect("array element resolved by checking");
                format!("[{}]", self.use_type(element))
            }
            _ => {
                let name = e.name.clone();
                self.masked(&name)
            }
        }
    }

    fn use_opt(&mut self, id: Option<EntityId>) -> String {
        let id = id.or(self.empty).expect("q_empty is predefined");
        self.use_type(id)
    }

    fn features(features: &[Feature]) -> Option<Node> {
        (!features.is_empty()).then(|| {
            Node::List(
                features
                    .iter()
                    .map(|f| Annotated::new(Node::str(&f.name), f.ifcond.clone()))
                    .collect(),
            )
        })
    }

    fn member(&mut self, m: &Member) -> Annotated<Node> {
        let mut obj = vec![
            ("name".to_string(), Node::str(&m.name)),
            ("type".to_string(), Node::str(self.use_type(member_type(m)))),
        ];
        if m.optional {
            obj.push(("default".into(), Node::Null));
        }
        if let Some(f) = Self::features(&m.features) {
            obj.push(("features".into(), f));
        }
        Annotated::new(Node::Dict(obj), m.ifcond.clone())
    }

    fn variants(&mut self, v: &Variants) -> Vec<(String, Node)> {
        let tag = v
            .tag_member
            .as_ref()
            .map_or(v.tag_name.as_str(), |t| t.name.as_str());
        let cases = v
            .variants
            .iter()
            .map(|b| {
                let obj = vec![
                    ("case".to_string(), Node::str(&b.name)),
                    ("type".to_string(), Node::str(self.use_type(member_type(b)))),
                ];
                Annotated::new(Node::Dict(obj), b.ifcond.clone())
            })
            .collect();
        vec![
            ("tag".into(), Node::str(tag)),
            ("variants".into(), Node::List(cases)),
        ]
    }

    /// Emits the entry for one command, event or used type.
    fn entity(&mut self, id: EntityId) {
        let schema = self.schema;
        let e = &schema.entities[id];
        let (meta, body): (&str, Vec<(String, Node)>) = match &e.kind {
            EntityKind::Command(c) => {
                let mut body = vec![
                    ("arg-type".to_string(), Node::str(self.use_opt(c.arg_type))),
                    ("ret-type".to_string(), Node::str(self.use_opt(c.ret_type))),
                ];
                if c.allow_oob {
                    body.push(("allow-oob".into(), Node::Bool(true)));
                }
                ("command", body)
            }
            EntityKind::Event(ev) => (
                "event",
                vec![("arg-type".to_string(), Node::str(self.use_opt(ev.arg_type)))],
            ),
            EntityKind::Builtin { json } => (
                "builtin",
                vec![("json-type".to_string(), Node::str(json_type_name(*json)))],
            ),
            EntityKind::Enum { members, .. } => {
                let mems = members
                    .iter()
                    .map(|m| {
                        let mut obj = vec![("name".to_string(), Node::str(&m.name))];
                        if let Some(f) = Self::features(&m.features) {
                            obj.push(("features".into(), f));
                        }
                        Annotated::new(Node::Dict(obj), m.ifcond.clone())
                    })
                    .collect();
                let values = members
                    .iter()
                    .map(|m| Annotated::new(Node::str(&m.name), m.ifcond.clone()))
                    .collect();
                (
                    "enum",
                    vec![
                        ("members".into(), Node::List(mems)),
                        ("values".into(), Node::List(values)),
                    ],
                )
            }
            EntityKind::Array { element, .. } => {
                let element = element.expect("array element resolved by checking");
                // An array exists exactly when its element type does.
                let ifcond = schema.entities[element].ifcond.clone();
                let name = self.use_type(element);
                let body = vec![
                    ("name".to_string(), Node::str(format!("[{name}]"))),
                    ("meta-type".to_string(), Node::str("array")),
                    ("element-type".to_string(), Node::str(name)),
                ];
                self.out.push(Annotated::new(Node::Dict(body), ifcond));
                return;
            }
            EntityKind::Object(o) => {
                let mems = o.members.iter().map(|m| self.member(m)).collect();
                let mut body = vec![("members".to_string(), Node::List(mems))];
                if let Some(v) = &o.branches {
                    body.extend(self.variants(v));
                }
                ("object", body)
            }
            EntityKind::Alternate(v) => {
                let mems = v
                    .variants
                    .iter()
                    .map(|b| {
                        let ty = Node::str(self.use_type(member_type(b)));
                        Annotated::new(Node::Dict(vec![("type".into(), ty)]), b.ifcond.clone())
                    })
                    .collect();
                ("alternate", vec![("members".to_string(), Node::List(mems))])
            }
            EntityKind::Include { .. } => return,
        };
        let (name, comment) = match meta {
            _ if self.real_names => (e.name.clone(), None),
            "command" | "event" | "builtin" => (e.name.clone(), None),
            _ => {
                let masked = self.masked(&e.name);
                let comment = format!("\"{masked}\" = {}", e.name);
                (masked, Some(comment))
            }
        };
        let mut obj = vec![
            ("name".to_string(), Node::Str(name)),
            ("meta-type".to_string(), Node::str(meta)),
        ];
        obj.extend(body);
        if let Some(f) = Self::features(&e.features) {
            obj.push(("features".into(), f));
        }
        let ifcond = e.ifcond.clone();
        self.out.push(Annotated {
            value: Node::Dict(obj),
            ifcond,
            comment,
        });
    }
}

fn member_type(m: &Member) -> EntityId {
    m.ty.expect("member type resolved by checking")
}

fn json_type_name(j: JsonType) -> &'static str {
    match j {
        JsonType::String => "string",
        JsonType::Number => "number",
        JsonType::Int => "int",
        JsonType::Boolean => "boolean",
        JsonType::Null => "null",
        JsonType::Value => "value",
    }
}
