//! Type-directed conversion of option arguments to the QMP form of a QAPI
//! type, the way QEMU's QObject input visitor reads them.
//!
//! The input is a tree from [`super::keyval`] (every scalar a string) or
//! from [`super::json`] (typed JSON). The target type is looked up in
//! [`TypeInfo`], which holds entries in the format of the generated
//! `type_info()` (`query-qmp-schema` entries with real names). Members are
//! visited in schema order, as QEMU's generated visitors do, so the first
//! error reported is the one QEMU reports, worded as QEMU words it:
//!
//! - keyval strings become integers (`qemu_strtoi64`/`qemu_strtou64` with
//!   base 0, then the range of `int8` ... `uint32`), sizes (`qemu_strtosz`:
//!   `1.5G`), booleans (`on`/`yes`/`true`/`y`, `off`/`no`/`false`/`n`),
//!   numbers, enumeration values;
//! - JSON values must already have the right JSON type (a negative integer
//!   for an unsigned type wraps, as in QEMU);
//! - alternates pick their branch by the JSON type of the value: an object
//!   takes the object branch, a string the string or enumeration branch
//!   (with keyval syntax every scalar is a string, so `file=node0` is a
//!   node name and `file.driver=...` an inline definition), and so on;
//! - missing members, members nobody asked for ("Parameter 'x' is
//!   unexpected") and wrong types are reported with the member's path
//!   (`file.filename`, `server.0.host` or, for JSON, `server[0].host`);
//!   of several unexpected members, the one QEMU's hash table yields first
//!   (see [`super::order`]).
//!
//! The output has the member order of the schema and the types QMP would
//! carry, so serde decodes it into the generated types without surprises.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{Map, Number, Value};

use super::numbers;
use crate::qemu_json::order;

/// QAPI types by name, from entries in the format of the generated
/// `type_info()`.
#[derive(Debug, Clone, Default)]
pub struct TypeInfo {
    types: HashMap<String, Value>,
}

impl TypeInfo {
    /// Indexes a JSON array of type entries.
    pub fn from_entries(entries: &Value) -> TypeInfo {
        let mut t = TypeInfo::default();
        t.add_missing(entries);
        t
    }

    /// Adds the entries of `entries` whose names are not known yet.
    pub fn add_missing(&mut self, entries: &Value) {
        for e in entries.as_array().into_iter().flatten() {
            if let Some(name) = e["name"].as_str() {
                self.types
                    .entry(name.to_string())
                    .or_insert_with(|| e.clone());
            }
        }
    }

    /// The entry for type `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.types.get(name)
    }

    /// The daemon's types: the generated `type_info()` of its schema, plus
    /// the types of `--monitor` and `--object` that are not part of its QMP
    /// interface (see `types.rs`).
    pub fn daemon() -> &'static TypeInfo {
        static TYPES: OnceLock<TypeInfo> = OnceLock::new();
        TYPES.get_or_init(|| {
            let mut t = TypeInfo::from_entries(crate::qapi::type_info());
            t.add_missing(&super::types::command_line_types());
            t
        })
    }
}

/// How the argument was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `key=value,...`: every scalar is a string, converted by type.
    Keyval,
    /// `{...}`: JSON, taken as typed.
    Json,
}

/// Converts `input` to the QMP form of the object type `type_name`; the
/// error is QEMU's message.
pub fn convert(
    types: &TypeInfo,
    type_name: &str,
    input: &Map<String, Value>,
    form: Form,
) -> Result<Map<String, Value>, String> {
    let mut v = Visitor {
        types,
        keyval: form == Form::Keyval,
        path: Vec::new(),
    };
    // The top level is visited with no name, like QEMU's `visit_type_T(v,
    // NULL, ...)`.
    let entry = v.entry(type_name)?;
    v.object(entry, input)
}

/// A step in the path to a value: a member name or a list index.
#[derive(Debug, Clone)]
enum Seg {
    Member(String),
    Index(usize),
}

struct Visitor<'a> {
    types: &'a TypeInfo,
    keyval: bool,
    /// Steps to the container being visited.
    path: Vec<Seg>,
}

fn invalid_type(name: &str, expected: &str) -> String {
    format!("Invalid parameter type for '{name}', expected: {expected}")
}

fn int_value(i: i64) -> Value {
    Value::Number(Number::from(i))
}

impl<'a> Visitor<'a> {
    fn entry(&self, name: &str) -> Result<&'a Value, String> {
        self.types
            .get(name)
            .ok_or_else(|| format!("Internal error: no type information for '{name}'"))
    }

    /// QEMU's `full_name()`: the path to `seg`, `a.b.0.c` (keyval) or
    /// `a.b[0].c` (JSON).
    fn full_name(&self, seg: &Seg) -> String {
        let mut out = String::new();
        for s in self.path.iter().chain(std::iter::once(seg)) {
            match s {
                Seg::Member(m) if out.is_empty() => out.push_str(m),
                Seg::Member(m) => {
                    out.push('.');
                    out.push_str(m);
                }
                Seg::Index(i) if self.keyval => out.push_str(&format!(".{i}")),
                Seg::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }

    /// The bare name some of QEMU's messages use (`null` for list items).
    fn bare(seg: &Seg) -> &str {
        match seg {
            Seg::Member(m) => m,
            Seg::Index(_) => "null",
        }
    }

    fn visit(&mut self, ty: &str, v: &Value, seg: &Seg) -> Result<Value, String> {
        let entry = self.entry(ty)?;
        match entry["meta-type"].as_str().unwrap_or_default() {
            "builtin" => self.builtin(ty, v, seg),
            "enum" => {
                let s = self.string(v, seg)?;
                let known = entry["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|x| x == s);
                if known {
                    Ok(Value::String(s.to_string()))
                } else {
                    Err(format!(
                        "Parameter '{}' does not accept value '{s}'",
                        Self::bare(seg)
                    ))
                }
            }
            "array" => {
                let Value::Array(items) = v else {
                    return Err(invalid_type(&self.full_name(seg), "array"));
                };
                let element = entry["element-type"].as_str().unwrap_or_default();
                self.path.push(seg.clone());
                let out = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.visit(element, item, &Seg::Index(i)))
                    .collect::<Result<Vec<_>, _>>();
                self.path.pop();
                out.map(Value::Array)
            }
            "object" => {
                let Value::Object(map) = v else {
                    return Err(invalid_type(&self.full_name(seg), "object"));
                };
                self.path.push(seg.clone());
                let out = self.object(entry, map);
                self.path.pop();
                out.map(Value::Object)
            }
            "alternate" => {
                let branch = self.alternate_branch(entry, v);
                match branch {
                    Some(b) => self.visit(&b, v, seg),
                    None => Err(invalid_type(Self::bare(seg), ty)),
                }
            }
            other => Err(format!(
                "Internal error: type '{ty}' has meta-type '{other}'"
            )),
        }
    }

    /// The members of an object (with those of the branch its tag
    /// selects), then a check that nothing else is there.
    fn object(
        &mut self,
        entry: &Value,
        map: &Map<String, Value>,
    ) -> Result<Map<String, Value>, String> {
        let mut out = Map::new();
        let mut visited = Vec::new();
        self.members(entry, map, &mut out, &mut visited)?;
        if map.len() > visited.len()
            && let Some(extra) = order::first_unvisited(map.keys().map(String::as_str), &visited)
        {
            return Err(format!(
                "Parameter '{}' is unexpected",
                self.full_name(&Seg::Member(extra))
            ));
        }
        Ok(out)
    }

    fn members(
        &mut self,
        entry: &Value,
        map: &Map<String, Value>,
        out: &mut Map<String, Value>,
        visited: &mut Vec<String>,
    ) -> Result<(), String> {
        for m in entry["members"].as_array().into_iter().flatten() {
            let name = m["name"].as_str().unwrap_or_default();
            let ty = m["type"].as_str().unwrap_or_default();
            let seg = Seg::Member(name.to_string());
            match map.get(name) {
                Some(v) => {
                    visited.push(name.to_string());
                    let value = self.visit(ty, v, &seg)?;
                    out.insert(name.to_string(), value);
                }
                None if m.get("default").is_some() => {}
                None => return Err(format!("Parameter '{}' is missing", self.full_name(&seg))),
            }
        }
        if let Some(tag) = entry["tag"].as_str() {
            let value = out.get(tag).and_then(Value::as_str).unwrap_or_default();
            let branch = entry["variants"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|b| b["case"] == value)
                .and_then(|b| b["type"].as_str());
            if let Some(branch) = branch {
                let branch = self.entry(branch)?;
                self.members(branch, map, out, visited)?;
            }
        }
        Ok(())
    }

    /// The branch of an alternate that takes `v`, by its JSON type.
    fn alternate_branch(&self, entry: &Value, v: &Value) -> Option<String> {
        let fits = |ty: &str| {
            let Some(e) = self.types.get(ty) else {
                return false;
            };
            let meta = e["meta-type"].as_str().unwrap_or_default();
            let json = e["json-type"].as_str().unwrap_or_default();
            match v {
                Value::Object(_) => meta == "object",
                Value::Array(_) => meta == "array",
                Value::String(_) => meta == "enum" || (meta == "builtin" && json == "string"),
                Value::Number(_) => meta == "builtin" && (json == "int" || json == "number"),
                Value::Bool(_) => meta == "builtin" && json == "boolean",
                Value::Null => meta == "builtin" && json == "null",
            }
        };
        entry["members"]
            .as_array()?
            .iter()
            .filter_map(|m| m["type"].as_str())
            .find(|ty| fits(ty))
            .map(str::to_string)
    }

    /// A string, for `str` and enumerations.
    fn string<'v>(&self, v: &'v Value, seg: &Seg) -> Result<&'v str, String> {
        if self.keyval {
            self.keyval_str(v, seg)
        } else {
            v.as_str()
                .ok_or_else(|| invalid_type(&self.full_name(seg), "string"))
        }
    }

    /// `qobject_input_get_keyval()`: a scalar is a string; `x.y=...` where
    /// a scalar is expected leaves an object or list.
    fn keyval_str<'v>(&self, v: &'v Value, seg: &Seg) -> Result<&'v str, String> {
        match v {
            Value::String(s) => Ok(s),
            Value::Object(_) | Value::Array(_) => Err(format!(
                "Parameters '{}.*' are unexpected",
                self.full_name(seg)
            )),
            _ => Err(format!(
                "Internal error: parameter {} invalid",
                self.full_name(seg)
            )),
        }
    }

    fn int64(&self, v: &Value, seg: &Seg) -> Result<i64, String> {
        if self.keyval {
            let s = self.keyval_str(v, seg)?;
            numbers::strtoi64(s)
                .ok_or_else(|| format!("Parameter '{}' expects integer", self.full_name(seg)))
        } else {
            v.as_i64()
                .ok_or_else(|| invalid_type(&self.full_name(seg), "integer"))
        }
    }

    fn uint64(&self, v: &Value, seg: &Seg) -> Result<u64, String> {
        if self.keyval {
            let s = self.keyval_str(v, seg)?;
            numbers::strtou64(s)
                .ok_or_else(|| format!("Parameter '{}' expects integer", self.full_name(seg)))
        } else {
            // Negative values are accepted "for backward compatibility".
            v.as_u64()
                .or_else(|| v.as_i64().map(|i| i as u64))
                .ok_or_else(|| format!("Parameter '{}' expects uint64", self.full_name(seg)))
        }
    }

    fn builtin(&self, ty: &str, v: &Value, seg: &Seg) -> Result<Value, String> {
        let signed = |min: i64, max: i64, c: &str| -> Result<Value, String> {
            let i = self.int64(v, seg)?;
            if i < min || i > max {
                return Err(format!("Parameter '{}' expects {c}", Self::bare(seg)));
            }
            Ok(int_value(i))
        };
        let unsigned = |max: u64, c: &str| -> Result<Value, String> {
            let u = self.uint64(v, seg)?;
            if u > max {
                return Err(format!("Parameter '{}' expects {c}", Self::bare(seg)));
            }
            Ok(Value::from(u))
        };
        match ty {
            "str" => self.string(v, seg).map(|s| Value::String(s.to_string())),
            "bool" => {
                if self.keyval {
                    let s = self.keyval_str(v, seg)?;
                    numbers::parse_bool(s).map(Value::Bool).ok_or_else(|| {
                        format!("Parameter '{}' expects 'on' or 'off'", self.full_name(seg))
                    })
                } else {
                    match v {
                        Value::Bool(_) => Ok(v.clone()),
                        _ => Err(invalid_type(&self.full_name(seg), "boolean")),
                    }
                }
            }
            "number" => {
                let f = if self.keyval {
                    numbers::strtod_finite(self.keyval_str(v, seg)?)
                } else {
                    v.as_f64()
                };
                f.and_then(Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| invalid_type(&self.full_name(seg), "number"))
            }
            "int" | "int64" => self.int64(v, seg).map(int_value),
            "int8" => signed(i8::MIN.into(), i8::MAX.into(), "int8_t"),
            "int16" => signed(i16::MIN.into(), i16::MAX.into(), "int16_t"),
            "int32" => signed(i32::MIN.into(), i32::MAX.into(), "int32_t"),
            "uint8" => unsigned(u8::MAX.into(), "uint8_t"),
            "uint16" => unsigned(u16::MAX.into(), "uint16_t"),
            "uint32" => unsigned(u32::MAX.into(), "uint32_t"),
            "uint64" => self.uint64(v, seg).map(Value::from),
            "size" => {
                if self.keyval {
                    let s = self.keyval_str(v, seg)?;
                    numbers::strtosz(s)
                        .map(Value::from)
                        .map_err(|_| format!("Parameter '{}' expects size", self.full_name(seg)))
                } else {
                    self.uint64(v, seg).map(Value::from)
                }
            }
            "null" => match v {
                Value::Null => Ok(Value::Null),
                _ => Err(invalid_type(&self.full_name(seg), "null")),
            },
            "any" => Ok(v.clone()),
            other => Err(format!("Internal error: unknown builtin type '{other}'")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A small schema in `type_info()` form, for the conversion rules.
    fn types() -> TypeInfo {
        let builtins = [
            ("str", "string"),
            ("int", "int"),
            ("int8", "int"),
            ("int32", "int"),
            ("uint16", "int"),
            ("uint32", "int"),
            ("uint64", "int"),
            ("size", "int"),
            ("bool", "boolean"),
            ("number", "number"),
            ("null", "null"),
            ("any", "value"),
        ];
        let mut entries: Vec<Value> = builtins
            .iter()
            .map(|(n, j)| json!({ "name": n, "meta-type": "builtin", "json-type": j }))
            .collect();
        entries.extend([
            json!({ "name": "[str]", "meta-type": "array", "element-type": "str" }),
            json!({ "name": "[int]", "meta-type": "array", "element-type": "int" }),
            json!({ "name": "[Server]", "meta-type": "array", "element-type": "Server" }),
            json!({ "name": "Driver", "meta-type": "enum",
                    "members": [{ "name": "file" }, { "name": "raw" }],
                    "values": ["file", "raw"] }),
            json!({ "name": "Server", "meta-type": "object", "members": [
                { "name": "host", "type": "str" },
                { "name": "port", "type": "uint16", "default": null } ] }),
            json!({ "name": "Cache", "meta-type": "object", "members": [
                { "name": "direct", "type": "bool", "default": null } ] }),
            json!({ "name": "File", "meta-type": "object", "members": [
                { "name": "filename", "type": "str" },
                { "name": "hint", "type": "size", "default": null } ] }),
            json!({ "name": "Raw", "meta-type": "object", "members": [
                { "name": "file", "type": "Ref" },
                { "name": "offset", "type": "int", "default": null } ] }),
            json!({ "name": "Ref", "meta-type": "alternate",
                    "members": [{ "type": "Node" }, { "type": "str" }] }),
            json!({ "name": "RefOrNull", "meta-type": "alternate",
                    "members": [{ "type": "Node" }, { "type": "str" }, { "type": "null" }] }),
            json!({ "name": "IntOrBool", "meta-type": "alternate",
                    "members": [{ "type": "int" }, { "type": "bool" }] }),
            json!({ "name": "Node", "meta-type": "object",
                    "members": [
                        { "name": "driver", "type": "Driver" },
                        { "name": "node-name", "type": "str", "default": null },
                        { "name": "cache", "type": "Cache", "default": null },
                        { "name": "read-only", "type": "bool", "default": null } ],
                    "tag": "driver",
                    "variants": [{ "case": "file", "type": "File" },
                                 { "case": "raw", "type": "Raw" }] }),
            json!({ "name": "Misc", "meta-type": "object", "members": [
                { "name": "i8", "type": "int8", "default": null },
                { "name": "i32", "type": "int32", "default": null },
                { "name": "u32", "type": "uint32", "default": null },
                { "name": "u64", "type": "uint64", "default": null },
                { "name": "num", "type": "number", "default": null },
                { "name": "tags", "type": "[str]", "default": null },
                { "name": "ints", "type": "[int]", "default": null },
                { "name": "servers", "type": "[Server]", "default": null },
                { "name": "any", "type": "any", "default": null },
                { "name": "alt", "type": "IntOrBool", "default": null },
                { "name": "ref", "type": "RefOrNull", "default": null } ] }),
        ]);
        TypeInfo::from_entries(&Value::Array(entries))
    }

    fn keyval(ty: &str, text: &str) -> Result<Value, String> {
        let tree = super::super::keyval::parse_no_help(text, Some("driver"))?;
        convert(&types(), ty, &tree, Form::Keyval).map(Value::Object)
    }

    fn json_form(ty: &str, text: &str) -> Result<Value, String> {
        let Value::Object(map) = crate::qemu_json::json::parse(text)? else {
            panic!("not an object");
        };
        convert(&types(), ty, &map, Form::Json).map(Value::Object)
    }

    #[test]
    fn scalars_are_converted_by_type() {
        assert_eq!(
            keyval(
                "Node",
                "file,filename=/x,hint=1.5k,read-only=yes,node-name=0x10"
            ),
            Ok(
                json!({ "driver": "file", "node-name": "0x10", "read-only": true,
                       "filename": "/x", "hint": 1536 })
            )
        );
        assert_eq!(
            keyval("Misc", "i8=-0x80,i32=010,u32=4294967295,u64=-1,num=2.5e1"),
            Ok(json!({ "i8": -128, "i32": 8, "u32": 4294967295u64,
                       "u64": 18446744073709551615u64, "num": 25.0 }))
        );
        assert_eq!(
            keyval("Node", "file,filename=f,hint=1G").map(|v| v["hint"].clone()),
            Ok(json!(1u64 << 30))
        );
    }

    #[test]
    fn scalar_errors() {
        for (text, msg) in [
            ("i8=128", "Parameter 'i8' expects int8_t"),
            ("i32=x", "Parameter 'i32' expects integer"),
            ("u32=4294967296", "Parameter 'u32' expects uint32_t"),
            ("u32=-1", "Parameter 'u32' expects uint32_t"),
            (
                "u64=18446744073709551616",
                "Parameter 'u64' expects integer",
            ),
            (
                "num=x",
                "Invalid parameter type for 'num', expected: number",
            ),
            ("i32.x=1", "Parameters 'i32.*' are unexpected"),
        ] {
            assert_eq!(keyval("Misc", text), Err(msg.to_string()), "{text}");
        }
        for (text, msg) in [
            ("file,filename=f,hint=1.5", "Parameter 'hint' expects size"),
            ("file,filename=f,hint=-1", "Parameter 'hint' expects size"),
            (
                "file,filename=f,read-only=1",
                "Parameter 'read-only' expects 'on' or 'off'",
            ),
            (
                "file,filename=f,cache=on",
                "Invalid parameter type for 'cache', expected: object",
            ),
            (
                "file,filename=f,cache.direct=x",
                "Parameter 'cache.direct' expects 'on' or 'off'",
            ),
            ("foo", "Parameter 'driver' does not accept value 'foo'"),
            ("", "Parameter 'driver' is missing"),
            ("file", "Parameter 'filename' is missing"),
            (
                "file,filename=f,offset=1",
                "Parameter 'offset' is unexpected",
            ),
            (
                "file,filename=f,cache.foo=1",
                "Parameter 'cache.foo' is unexpected",
            ),
            (
                "file,filename.x=f",
                "Parameters 'filename.*' are unexpected",
            ),
        ] {
            assert_eq!(keyval("Node", text), Err(msg.to_string()), "{text}");
        }
    }

    #[test]
    fn alternates_take_the_branch_of_the_value() {
        // A string is a reference, dotted keys an inline definition.
        assert_eq!(
            keyval("Node", "raw,file=node0"),
            Ok(json!({ "driver": "raw", "file": "node0" }))
        );
        assert_eq!(
            keyval("Node", "raw,file.driver=file,file.filename=x,file.hint=4k"),
            Ok(json!({ "driver": "raw",
                       "file": { "driver": "file", "filename": "x", "hint": 4096 } }))
        );
        assert_eq!(
            keyval("Node", "raw,file.driver=file"),
            Err("Parameter 'file.filename' is missing".into())
        );
        assert_eq!(
            keyval("Node", "raw,file.driver=file,file.filename=x,file.x=1"),
            Err("Parameter 'file.x' is unexpected".into())
        );
        assert_eq!(
            keyval("Node", "raw,file.0=x"),
            Err("Invalid parameter type for 'file', expected: Ref".into())
        );
        // With keyval syntax only the string branch takes scalars (QEMU's
        // test-keyval: "You get the string variant if there is one, else
        // an error").
        assert_eq!(
            keyval("Misc", "alt=1"),
            Err("Invalid parameter type for 'alt', expected: IntOrBool".into())
        );
        assert_eq!(keyval("Misc", "ref=x"), Ok(json!({ "ref": "x" })));
        // JSON picks by JSON type.
        assert_eq!(json_form("Misc", r#"{"alt": 1}"#), Ok(json!({ "alt": 1 })));
        assert_eq!(
            json_form("Misc", r#"{"alt": true}"#),
            Ok(json!({ "alt": true }))
        );
        assert_eq!(
            json_form("Misc", r#"{"ref": null}"#),
            Ok(json!({ "ref": null }))
        );
        assert_eq!(
            json_form("Misc", r#"{"alt": "x"}"#),
            Err("Invalid parameter type for 'alt', expected: IntOrBool".into())
        );
        assert_eq!(
            json_form("Node", r#"{"driver": "raw", "file": 1}"#),
            Err("Invalid parameter type for 'file', expected: Ref".into())
        );
    }

    #[test]
    fn lists() {
        assert_eq!(
            keyval(
                "Misc",
                "tags.0=a,tags.1=b,ints.0=1,servers.0.host=h,servers.0.port=10809"
            ),
            Ok(json!({ "tags": ["a", "b"], "ints": [1],
                       "servers": [{ "host": "h", "port": 10809 }] }))
        );
        assert_eq!(
            keyval("Misc", "ints.0=1,ints.1=x"),
            Err("Parameter 'ints.1' expects integer".into())
        );
        assert_eq!(
            keyval("Misc", "servers.0.port=1"),
            Err("Parameter 'servers.0.host' is missing".into())
        );
        assert_eq!(
            keyval("Misc", "servers.0.host=h,servers.0.x=1"),
            Err("Parameter 'servers.0.x' is unexpected".into())
        );
        assert_eq!(
            keyval("Misc", "tags=a"),
            Err("Invalid parameter type for 'tags', expected: array".into())
        );
        assert_eq!(
            json_form("Misc", r#"{"servers": [{"host": "h"}, {"host": 1}]}"#),
            Err("Invalid parameter type for 'servers[1].host', expected: string".into())
        );
    }

    #[test]
    fn json_values_are_taken_as_typed() {
        assert_eq!(
            json_form(
                "Misc",
                r#"{"u64": -1, "i8": -5, "num": 1, "any": {"k": ["v"]}}"#
            ),
            Ok(
                json!({ "i8": -5, "u64": 18446744073709551615u64, "num": 1.0,
                       "any": { "k": ["v"] } })
            )
        );
        // Texts as qsd 10.0.2 printed them for the same mistakes in
        // --blockdev and --nbd-server.
        for (text, msg) in [
            (
                r#"{"i32": "1"}"#,
                "Invalid parameter type for 'i32', expected: integer",
            ),
            (
                r#"{"i32": 1.5}"#,
                "Invalid parameter type for 'i32', expected: integer",
            ),
            (
                r#"{"i32": 9223372036854775808}"#,
                "Invalid parameter type for 'i32', expected: integer",
            ),
            (
                r#"{"u64": 18446744073709551616}"#,
                "Parameter 'u64' expects uint64",
            ),
            (r#"{"u64": "1"}"#, "Parameter 'u64' expects uint64"),
            (r#"{"u32": 4294967296}"#, "Parameter 'u32' expects uint32_t"),
            (r#"{"u32": -1}"#, "Parameter 'u32' expects uint32_t"),
            (r#"{"foo": 1}"#, "Parameter 'foo' is unexpected"),
        ] {
            assert_eq!(json_form("Misc", text), Err(msg.to_string()), "{text}");
        }
        assert_eq!(
            json_form(
                "Node",
                r#"{"driver": "file", "filename": "f", "read-only": "on"}"#
            ),
            Err("Invalid parameter type for 'read-only', expected: boolean".into())
        );
        assert_eq!(
            json_form(
                "Node",
                r#"{"driver": "file", "filename": "f", "cache": {"direct": 1}}"#
            ),
            Err("Invalid parameter type for 'cache.direct', expected: boolean".into())
        );
        assert_eq!(
            json_form("Node", r#"{"driver": "file", "filename": "f", "hint": 1}"#),
            Ok(json!({ "driver": "file", "filename": "f", "hint": 1 }))
        );
    }

    #[test]
    fn enums_in_lists_are_named_null() {
        let mut t = types();
        t.add_missing(&json!([
            { "name": "[Driver]", "meta-type": "array", "element-type": "Driver" },
            { "name": "Drivers", "meta-type": "object",
              "members": [{ "name": "d", "type": "[Driver]" }] },
        ]));
        let tree = super::super::keyval::parse_no_help("d.0=file,d.1=x", None).expect("parses");
        assert_eq!(
            convert(&t, "Drivers", &tree, Form::Keyval),
            Err("Parameter 'null' does not accept value 'x'".into())
        );
    }
}
