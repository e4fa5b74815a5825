//! Commands (handler trait, dispatcher, descriptor table), events and the
//! introspection data.

use super::Gen;
use super::names::snake;
use super::writer::Writer;
use crate::introspect::{self, Annotated, Node};
use crate::model::{Command, EntityKind, Event, Member};

pub fn emit(g: &Gen<'_>, w: &mut Writer) {
    let commands: Vec<(&crate::model::Entity, &Command)> = g
        .schema
        .definitions()
        .filter_map(|(_, e)| match &e.kind {
            EntityKind::Command(c) => Some((e, c)),
            _ => None,
        })
        .collect();
    emit_trait(g, w, &commands);
    emit_dispatch(g, w, &commands);
    emit_descriptors(g, w, &commands);
    emit_events(g, w);
    emit_introspection(g, w);
}

/// Parameters of a command: the boxed argument struct, or one per member.
fn params<'a>(g: &'a Gen<'_>, c: &Command) -> Vec<&'a Member> {
    match c.arg_type {
        Some(a) if !c.boxed => g.schema.entities[a]
            .as_object()
            .map(|o| o.members.iter().collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn ret_type(g: &Gen<'_>, c: &Command) -> String {
    c.ret_type.map_or_else(|| "()".into(), |r| g.rust_type(r))
}

fn method(name: &str) -> String {
    snake(name)
}

const MAP: &str = "::qapi_rt::serde_json::Map<::std::string::String, ::qapi_rt::serde_json::Value>";

fn emit_trait(g: &Gen<'_>, w: &mut Writer, commands: &[(&crate::model::Entity, &Command)]) {
    w.line("/// One method per QMP command; the generated [`dispatch`] decodes");
    w.line("/// arguments and calls them.");
    w.line("#[allow(clippy::too_many_arguments)]");
    w.open("pub trait Commands: ::core::marker::Send + ::core::marker::Sync {");
    for (e, c) in commands {
        g.write_doc(w, e);
        w.cfg(&g.cfg(&e.ifcond));
        let m = method(&e.name);
        if !c.generate {
            w.linef(format_args!(
                "fn {m}(&self, args: {MAP}) -> impl ::core::future::Future<Output = ::core::result::Result<::qapi_rt::serde_json::Value, ::qapi_rt::QmpError>> + ::core::marker::Send;"
            ));
            continue;
        }
        let mut ps = Vec::new();
        if c.boxed {
            if let Some(a) = c.arg_type {
                ps.push(format!("arg: {}", g.rust_type(a)));
            }
        } else if let Some(a) = c.arg_type {
            for p in params(g, c) {
                ps.push(format!("{}: {}", snake(&p.name), g.field_type(a, p)));
            }
        }
        let args = if ps.is_empty() {
            String::new()
        } else {
            format!(", {}", ps.join(", "))
        };
        w.linef(format_args!(
            "fn {m}(&self{args}) -> impl ::core::future::Future<Output = ::core::result::Result<{}, ::qapi_rt::QmpError>> + ::core::marker::Send;",
            ret_type(g, c)
        ));
    }
    w.close("}");
    w.blank();
}

fn emit_dispatch(g: &Gen<'_>, w: &mut Writer, commands: &[(&crate::model::Entity, &Command)]) {
    w.line("/// Runs command `name` with its `arguments` on `handler`: the typed");
    w.line("/// result as JSON (`{}` for commands without one), or a QMP error.");
    w.open(&format!(
        "pub async fn dispatch<H: Commands>(handler: &H, name: &str, args: {MAP}) -> ::core::result::Result<::qapi_rt::serde_json::Value, ::qapi_rt::QmpError> {{"
    ));
    // Neither is used when conditions leave no command.
    w.line("#[allow(unused_variables)]");
    w.line("let (handler, args) = (handler, args);");
    // Only the fallback arm is left when conditions leave no command.
    w.line("#[allow(clippy::match_single_binding)]");
    w.open("match name {");
    for (e, c) in commands {
        w.cfg(&g.cfg(&e.ifcond));
        w.open(&format!("\"{}\" => {{", e.name));
        let m = method(&e.name);
        if !c.generate {
            w.linef(format_args!("handler.{m}(args).await"));
            w.close("}");
            continue;
        }
        let call = match c.arg_type {
            Some(a) if c.boxed => {
                w.linef(format_args!(
                    "let arg: {} = ::qapi_rt::from_args(args)?;",
                    g.rust_type(a)
                ));
                format!("handler.{m}(arg)")
            }
            Some(a) => {
                w.linef(format_args!(
                    "let arg: {} = ::qapi_rt::from_args(args)?;",
                    g.rust_type(a)
                ));
                let fields: Vec<String> = params(g, c)
                    .iter()
                    .map(|p| format!("arg.{}", snake(&p.name)))
                    .collect();
                format!("handler.{m}({})", fields.join(", "))
            }
            None => {
                w.line("::qapi_rt::no_args(args)?;");
                format!("handler.{m}()")
            }
        };
        if c.ret_type.is_some() {
            w.linef(format_args!("let ret = {call}.await?;"));
            w.line("::qapi_rt::to_reply(&ret)");
        } else {
            w.linef(format_args!("{call}.await?;"));
            w.line("Ok(::qapi_rt::serde_json::Value::Object(::qapi_rt::serde_json::Map::new()))");
        }
        w.close("}");
    }
    w.line("_ => Err(::qapi_rt::QmpError::command_not_found(name)),");
    w.close("}");
    w.close("}");
    w.blank();
}

fn emit_features_vec(g: &Gen<'_>, w: &mut Writer, var: &str, features: &[crate::model::Feature]) {
    for f in features {
        w.cfg(&g.cfg(&f.ifcond));
        w.linef(format_args!("{var}.push(\"{}\");", f.name));
    }
}

fn emit_descriptors(g: &Gen<'_>, w: &mut Writer, commands: &[(&crate::model::Entity, &Command)]) {
    w.line("/// Every command of this build with its flags (also what");
    w.line("/// `query-commands` lists).");
    // Lists are built by `push`es so that each item can carry its `#[cfg]`.
    w.line("#[allow(clippy::vec_init_then_push)]");
    w.open("pub fn commands() -> ::std::vec::Vec<::qapi_rt::CommandInfo> {");
    w.line("#[allow(unused_mut)]");
    w.line("let mut v = ::std::vec::Vec::new();");
    for (e, c) in commands {
        w.cfg(&g.cfg(&e.ifcond));
        w.open("{");
        w.line("#[allow(unused_mut)]");
        w.line("let mut features = ::std::vec::Vec::new();");
        emit_features_vec(g, w, "features", &e.features);
        w.linef(format_args!(
            "v.push(::qapi_rt::CommandInfo {{ name: \"{}\", success_response: {}, allow_oob: {}, allow_preconfig: {}, coroutine: {}, generated: {}, features }});",
            e.name, c.success_response, c.allow_oob, c.allow_preconfig, c.coroutine, c.generate
        ));
        w.close("}");
    }
    w.line("v");
    w.close("}");
    w.blank();
}

fn emit_events(g: &Gen<'_>, w: &mut Writer) {
    for (id, e) in g.schema.definitions() {
        let EntityKind::Event(Event { arg_type, .. }) = &e.kind else {
            continue;
        };
        let name = g.names.get(id);
        let ecfg = g.cfg(&e.ifcond);
        g.write_doc(w, e);
        w.cfg(&ecfg);
        w.line("#[derive(Debug, Clone, PartialEq, ::qapi_rt::serde::Serialize, ::qapi_rt::serde::Deserialize)]");
        w.line("#[serde(crate = \"::qapi_rt::serde\")]");
        match arg_type {
            Some(a) => w.linef(format_args!("pub struct {name}(pub {});", g.rust_type(*a))),
            None => w.linef(format_args!("pub struct {name};")),
        }
        w.blank();
        w.cfg(&ecfg);
        w.open(&format!("impl ::qapi_rt::Event for {name} {{"));
        w.linef(format_args!("const NAME: &'static str = \"{}\";", e.name));
        w.linef(format_args!(
            "const HAS_DATA: bool = {};",
            arg_type.is_some()
        ));
        w.close("}");
        w.blank();
    }
}

/// A raw string literal that can hold `s`.
fn raw_str(s: &str) -> String {
    let mut hashes = String::from("#");
    while s.contains(&format!("\"{hashes}")) {
        hashes.push('#');
    }
    format!("r{hashes}\"{s}\"{hashes}")
}

fn has_cond(n: &Node) -> bool {
    match n {
        Node::List(items) => items
            .iter()
            .any(|i| i.ifcond.is_present() || has_cond(&i.value)),
        Node::Dict(kv) => kv.iter().any(|(_, v)| has_cond(v)),
        _ => false,
    }
}

/// A JSON literal for a part of the tree without conditions.
fn literal(n: &Node) -> String {
    let mut text = String::new();
    write_json(n, &mut text);
    format!("::qapi_rt::json_literal({})", raw_str(&text))
}

/// Compact JSON text of a tree without conditions.
fn write_json(n: &Node, out: &mut String) {
    match n {
        Node::Null => out.push_str("null"),
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Str(s) => write_json_str(s, out),
        Node::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(&item.value, out);
            }
            out.push(']');
        }
        Node::Dict(kv) => {
            out.push('{');
            for (i, (k, v)) in kv.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_str(k, out);
                out.push(':');
                write_json(v, out);
            }
            out.push('}');
        }
    }
}

fn write_json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn emit_introspection(g: &Gen<'_>, w: &mut Writer) {
    w.line("/// The answer to `query-qmp-schema` for this build, built once.");
    emit_json_list(g, w, "qmp_schema", &introspect::entries(g.schema));
    w.line("/// Every type of the schema with its real name, in the entry format");
    w.line("/// of `query-qmp-schema` (but integer types keep their own names,");
    w.line("/// e.g. `uint32`, `size`), for this build, built once. Unlike");
    w.line("/// [`qmp_schema`] it includes types no command uses and implicit");
    w.line("/// ones; it has no commands or events. Code that converts untyped");
    w.line("/// input by target type (QEMU's keyval syntax) looks types up here.");
    emit_json_list(g, w, "type_info", &introspect::type_entries(g.schema));
}

/// Emits `pub fn NAME() -> &'static Value`: `entries` as a JSON array,
/// each entry and each conditional part under its `#[cfg]`.
fn emit_json_list(g: &Gen<'_>, w: &mut Writer, name: &str, entries: &[Annotated<Node>]) {
    w.line("#[allow(clippy::vec_init_then_push)]");
    w.open(&format!(
        "pub fn {name}() -> &'static ::qapi_rt::serde_json::Value {{"
    ));
    w.line("static VALUE: ::std::sync::OnceLock<::qapi_rt::serde_json::Value> = ::std::sync::OnceLock::new();");
    w.open("VALUE.get_or_init(|| {");
    w.line("#[allow(unused_mut)]");
    w.line("let mut list = ::std::vec::Vec::new();");
    for entry in entries {
        if let Some(c) = &entry.comment {
            w.linef(format_args!("// {c}"));
        }
        w.cfg(&g.cfg(&entry.ifcond));
        emit_value(g, w, &entry.value, "list.push({})");
    }
    w.line("::qapi_rt::serde_json::Value::Array(list)");
    w.close("})");
    w.close("}");
    w.blank();
}

/// Emits a statement that stores `n` through `store` (a pattern with `{}`
/// for the value). Conditional parts are built in a block of their own.
fn emit_value(g: &Gen<'_>, w: &mut Writer, n: &Node, store: &str) {
    if !has_cond(n) {
        w.linef(format_args!("{};", store.replace("{}", &literal(n))));
        return;
    }
    w.open("{");
    match n {
        Node::List(items) => {
            w.line("#[allow(unused_mut)]");
            w.line("let mut items = ::std::vec::Vec::new();");
            for i in items {
                w.cfg(&g.cfg(&i.ifcond));
                emit_value(g, w, &i.value, "items.push({})");
            }
            w.linef(format_args!(
                "{};",
                store.replace("{}", "::qapi_rt::serde_json::Value::Array(items)")
            ));
        }
        Node::Dict(kv) => {
            w.line("let mut obj = ::qapi_rt::serde_json::Map::new();");
            for (k, v) in kv {
                emit_value(g, w, v, &format!("obj.insert(\"{k}\".into(), {{}})"));
            }
            w.linef(format_args!(
                "{};",
                store.replace("{}", "::qapi_rt::serde_json::Value::Object(obj)")
            ));
        }
        _ => {}
    }
    w.close("}");
}
