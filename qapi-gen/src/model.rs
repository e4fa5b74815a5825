//! The resolved schema model: every entity (definitions, implicit types,
//! arrays, includes) with resolved type references, flattened members,
//! conditions and features.

use crate::source::Info;
use crate::value::Value;

/// Index of an entity in [`crate::Schema::entities`].
pub type EntityId = usize;

/// A QAPI `if` condition, kept as written: a name, or `all`/`any`/`not`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IfCond(pub Option<Value>);

impl IfCond {
    pub fn is_present(&self) -> bool {
        self.0.is_some()
    }

    /// The condition in the notation of QEMU's test dumps.
    pub fn dump(&self) -> String {
        match &self.0 {
            Some(Value::Str(s)) => s.clone(),
            Some(v) => v.python_repr(),
            None => String::new(),
        }
    }

    /// Every condition name used, in order of appearance.
    pub fn names(&self, out: &mut Vec<String>) {
        fn walk(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Str(s) => {
                    if !out.contains(s) {
                        out.push(s.clone());
                    }
                }
                Value::List(items) => items.iter().for_each(|i| walk(i, out)),
                Value::Dict(d) => d.0.iter().for_each(|(_, v)| walk(v, out)),
                Value::Bool(_) => {}
            }
        }
        if let Some(v) = &self.0 {
            walk(v, out);
        }
    }
}

#[derive(Debug, Clone)]
pub struct Feature {
    pub name: String,
    pub info: Option<Info>,
    pub ifcond: IfCond,
}

impl Feature {
    /// `deprecated` and `unstable` have meaning to QEMU itself.
    pub fn is_special(&self) -> bool {
        self.name == "deprecated" || self.name == "unstable"
    }
}

#[derive(Debug, Clone)]
pub struct EnumMember {
    pub name: String,
    pub info: Option<Info>,
    pub ifcond: IfCond,
    pub features: Vec<Feature>,
}

/// A member of an object type (also used for union and alternate branches).
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub info: Option<Info>,
    pub type_name: String,
    /// Resolved during checking.
    pub ty: Option<EntityId>,
    pub optional: bool,
    pub ifcond: IfCond,
    pub features: Vec<Feature>,
    /// Name of the type that declares the member.
    pub defined_in: String,
    /// "member", "value", "branch" or "feature": used in messages.
    pub role: &'static str,
}

/// The branches of a union (chosen by a tag member) or an alternate.
#[derive(Debug, Clone)]
pub struct Variants {
    pub info: Option<Info>,
    /// Union: the discriminator name as written.
    pub tag_name: String,
    /// Resolved tag member (for alternates the implicit `type: QType`).
    pub tag_member: Option<Member>,
    pub variants: Vec<Member>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckState {
    Unchecked,
    Checking,
    Done,
    Failed,
}

#[derive(Debug, Clone)]
pub struct ObjectType {
    pub base_name: Option<String>,
    pub base: Option<EntityId>,
    pub local_members: Vec<Member>,
    /// Base members followed by local members (after checking).
    pub members: Vec<Member>,
    pub branches: Option<Variants>,
    pub state: CheckState,
}

#[derive(Debug, Clone)]
pub struct Command {
    pub arg_type_name: Option<String>,
    pub arg_type: Option<EntityId>,
    pub ret_type_name: Option<String>,
    pub ret_type: Option<EntityId>,
    pub generate: bool,
    pub success_response: bool,
    pub boxed: bool,
    pub allow_oob: bool,
    pub allow_preconfig: bool,
    pub coroutine: bool,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub arg_type_name: Option<String>,
    pub arg_type: Option<EntityId>,
    pub boxed: bool,
}

/// JSON type of a builtin, as QEMU names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonType {
    String,
    Number,
    Int,
    Boolean,
    Null,
    Value,
}

#[derive(Debug, Clone)]
pub enum EntityKind {
    /// An `include` directive, naming the included module.
    Include {
        module: String,
    },
    Builtin {
        json: JsonType,
    },
    Enum {
        members: Vec<EnumMember>,
        prefix: Option<String>,
    },
    Array {
        element_name: String,
        element: Option<EntityId>,
    },
    Object(ObjectType),
    Alternate(Variants),
    Command(Command),
    Event(Event),
}

#[derive(Debug, Clone)]
pub struct Entity {
    /// Empty for includes.
    pub name: String,
    /// `None` for builtins and builtin arrays.
    pub info: Option<Info>,
    /// Index into the schema's docs.
    pub doc: Option<usize>,
    pub ifcond: IfCond,
    pub features: Vec<Feature>,
    pub kind: EntityKind,
    /// Module (index into the schema's modules), set after checking.
    pub module: usize,
}

impl Entity {
    /// QEMU's "meta" word: `struct`, `union`, `enum`, ...
    pub fn meta(&self) -> &'static str {
        match &self.kind {
            EntityKind::Include { .. } => "include",
            EntityKind::Builtin { .. } => "built-in",
            EntityKind::Enum { .. } => "enum",
            EntityKind::Array { .. } => "array",
            EntityKind::Object(o) => {
                if o.branches.is_some() {
                    "union"
                } else {
                    "struct"
                }
            }
            EntityKind::Alternate(_) => "alternate",
            EntityKind::Command(_) => "command",
            EntityKind::Event(_) => "event",
        }
    }

    pub fn is_type(&self) -> bool {
        !matches!(
            self.kind,
            EntityKind::Include { .. } | EntityKind::Command(_) | EntityKind::Event(_)
        )
    }

    /// Implicit types: `q_obj_*`, `q_empty`, `QType`, arrays, builtins'
    /// arrays.
    pub fn is_implicit(&self) -> bool {
        match &self.kind {
            EntityKind::Object(_) => self.name.starts_with("q_"),
            EntityKind::Enum { .. } => self.name == "QType",
            EntityKind::Array { .. } => true,
            _ => self.info.is_none(),
        }
    }

    pub fn json_type(&self) -> Option<JsonType> {
        match &self.kind {
            EntityKind::Builtin { json } => Some(*json),
            EntityKind::Enum { .. } => Some(JsonType::String),
            _ => None,
        }
    }

    /// e.g. `struct type 'Foo'`, `array type ['int']`.
    pub fn describe(&self) -> String {
        match &self.kind {
            EntityKind::Array { element_name, .. } => format!("array type ['{element_name}']"),
            EntityKind::Command(_) | EntityKind::Event(_) => {
                format!("{} '{}'", self.meta(), self.name)
            }
            _ => format!("{} type '{}'", self.meta(), self.name),
        }
    }

    pub fn as_object(&self) -> Option<&ObjectType> {
        match &self.kind {
            EntityKind::Object(o) => Some(o),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Module {
    pub name: String,
    pub entities: Vec<EntityId>,
}

impl Member {
    /// How messages refer to the member, relative to the definition being
    /// reported on (`info`).
    pub fn describe(&self, info: Option<&Info>) -> String {
        let mut role = self.role.to_string();
        let mut meta = "type";
        let mut defined_in = self.defined_in.as_str();
        if let Some(rest) = defined_in.strip_prefix("q_obj_") {
            if let Some(cmd) = rest.strip_suffix("-arg") {
                role = "parameter".into();
                meta = "command";
                defined_in = cmd;
            } else if let Some(base) = rest.strip_suffix("-base") {
                role = format!("base {role}");
                defined_in = base;
            } else {
                defined_in = rest;
            }
        }
        if info.and_then(Info::defn_name) != Some(defined_in) {
            format!("{role} '{}' of {meta} '{defined_in}'", self.name)
        } else {
            format!("{role} '{}'", self.name)
        }
    }
}
