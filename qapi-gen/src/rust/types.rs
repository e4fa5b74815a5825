//! Types: structs, enums, flat unions and alternates, with serde impls that
//! are wire-identical to QMP's JSON.

use super::Gen;
use super::names::{camel, snake};
use super::writer::Writer;
use crate::doc::Doc;
use crate::model::{Entity, EntityId, EntityKind, JsonType, Member, ObjectType, Variants};
use crate::schema::Schema;

const SERDE_ATTR: &str = "#[serde(crate = \"::qapi_rt::serde\")]";

/// The signatures of the hand-written serde impls.
const SERIALIZE_FN: &str = "fn serialize<S: ::qapi_rt::serde::Serializer>(&self, serializer: S) -> ::core::result::Result<S::Ok, S::Error> {";
const DESERIALIZE_FN: &str = "fn deserialize<D: ::qapi_rt::serde::Deserializer<'de>>(deserializer: D) -> ::core::result::Result<Self, D::Error> {";

/// Opens `impl Serialize for NAME {`.
fn open_serialize_impl(w: &mut Writer, name: &str) {
    w.linef(format_args!(
        "impl ::qapi_rt::serde::Serialize for {name} {{"
    ));
    w.indent();
}

/// Opens `impl<'de> Deserialize<'de> for NAME {`.
fn open_deserialize_impl(w: &mut Writer, name: &str) {
    w.linef(format_args!(
        "impl<'de> ::qapi_rt::serde::Deserialize<'de> for {name} {{"
    ));
    w.indent();
}

/// Tarjan's strongly connected components over "contains by value" edges
/// (members, branches; arrays are indirect and break cycles).
pub fn components(schema: &Schema) -> Vec<usize> {
    let n = schema.entities.len();
    let edges: Vec<Vec<EntityId>> = schema
        .entities
        .iter()
        .map(|e| by_value_children(schema, e))
        .collect();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut comp = vec![usize::MAX; n];
    let mut next_index = 0;
    let mut next_comp = 0;
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        // Iterative DFS: (node, next edge position).
        let mut work = vec![(root, 0usize)];
        index[root] = next_index;
        low[root] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut pos)) = work.last_mut() {
            if let Some(&w) = edges[v].get(*pos) {
                *pos += 1;
                if index[w] == usize::MAX {
                    index[w] = next_index;
                    low[w] = next_index;
                    next_index += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    comp[w] = next_comp;
                    if w == v {
                        break;
                    }
                }
                next_comp += 1;
            }
        }
    }
    comp
}

fn by_value_children(schema: &Schema, e: &Entity) -> Vec<EntityId> {
    let direct = |m: &Member| {
        m.ty.filter(|&t| {
            schema.entities[t].as_object().is_some()
                || matches!(schema.entities[t].kind, EntityKind::Alternate(_))
        })
    };
    match &e.kind {
        EntityKind::Object(o) => {
            let mut v: Vec<EntityId> = o.members.iter().filter_map(direct).collect();
            if let Some(b) = &o.branches {
                v.extend(b.variants.iter().filter_map(direct));
            }
            v
        }
        EntityKind::Alternate(a) => a.variants.iter().filter_map(direct).collect(),
        _ => Vec::new(),
    }
}

impl Gen<'_> {
    /// The Rust type for a QAPI type.
    pub fn rust_type(&self, id: EntityId) -> String {
        let e = &self.schema.entities[id];
        match &e.kind {
            EntityKind::Builtin { .. } => match e.name.as_str() {
                "str" => "::std::string::String",
                "int" | "int64" => "i64",
                "int8" => "i8",
                "int16" => "i16",
                "int32" => "i32",
                "uint8" => "u8",
                "uint16" => "u16",
                "uint32" => "u32",
                "uint64" | "size" => "u64",
                "number" => "f64",
                "bool" => "bool",
                "null" => "()",
                _ => "::qapi_rt::serde_json::Value",
            }
            .to_string(),
            EntityKind::Array { element, .. } => format!(
                "::std::vec::Vec<{}>",
                element.map_or("()".into(), |t| self.rust_type(t))
            ),
            _ => self.names.get(id).to_string(),
        }
    }

    /// The field type of member `m` inside `owner`: boxed when recursive,
    /// `Option` when optional.
    pub fn field_type(&self, owner: EntityId, m: &Member) -> String {
        let Some(ty) = m.ty else { return "()".into() };
        let mut t = self.rust_type(ty);
        if self.scc[ty] == self.scc[owner] {
            t = format!("::std::boxed::Box<{t}>");
        }
        if m.optional {
            format!("::std::option::Option<{t}>")
        } else {
            t
        }
    }

    pub fn cfg(&self, c: &crate::model::IfCond) -> Option<String> {
        self.opts.conds.predicate(c)
    }

    /// The documentation block of the definition that declares `m`.
    pub fn member_doc(&self, m: &Member) -> Option<&str> {
        let owner = self.schema.lookup(&m.defined_in)?;
        let doc = self.doc_for(owner)?;
        doc.arg(&m.name)
            .map(|s| s.text.as_str())
            .filter(|t| !t.is_empty())
    }

    /// The doc block of an entity; implicit types use their owner's.
    pub fn doc_for(&self, e: &Entity) -> Option<&Doc> {
        if let Some(d) = e.doc {
            return self.schema.docs.get(d);
        }
        let rest = e.name.strip_prefix("q_obj_")?;
        let owner = rest
            .strip_suffix("-arg")
            .or_else(|| rest.strip_suffix("-base"))?;
        self.doc_for(self.schema.lookup(owner)?)
    }

    /// Writes an entity's doc: description, then tagged sections.
    pub fn write_doc(&self, w: &mut Writer, e: &Entity) {
        let Some(doc) = self.doc_for(e) else {
            w.doc(&format!("QAPI {} `{}`.", e.meta(), e.name));
            return;
        };
        let mut text = doc.body().text.clone();
        for &i in &doc.sections {
            let s = &doc.store[i];
            // A section whose text starts on the line after its tag (an
            // indented list, typically) keeps it on a line of its own.
            let tag = match s.kind {
                crate::doc::SectionKind::Plain => String::new(),
                k if s.text.starts_with([' ', '\n']) => format!("{}:\n", k.dump_name()),
                k => format!("{}: ", k.dump_name()),
            };
            text.push_str(&format!("\n\n{tag}{}", s.text));
        }
        if !doc.features.is_empty() {
            text.push_str("\n\nFeatures:");
            for &i in &doc.features {
                let s = &doc.store[i];
                text.push_str(&format!(
                    "\n\n{}: {}",
                    s.name.as_deref().unwrap_or(""),
                    s.text
                ));
            }
        }
        if text.trim().is_empty() {
            text = format!("QAPI {} `{}`.", e.meta(), e.name);
        }
        w.doc(&text);
    }
}

pub fn emit(g: &Gen<'_>, w: &mut Writer) {
    for (id, e) in g.schema.definitions() {
        match &e.kind {
            EntityKind::Enum { members, .. } => emit_enum(g, w, id, e, members),
            EntityKind::Object(o) if o.branches.is_some() => emit_union(g, w, id, e, o),
            EntityKind::Object(o) => emit_struct(g, w, id, e, &o.members),
            EntityKind::Alternate(a) => emit_alternate(g, w, id, e, a),
            _ => {}
        }
    }
}

fn emit_fields(
    g: &Gen<'_>,
    w: &mut Writer,
    owner: EntityId,
    members: &[Member],
    skip: Option<&str>,
    serde_attrs: bool,
) {
    for m in members.iter().filter(|m| Some(m.name.as_str()) != skip) {
        if let Some(d) = g.member_doc(m) {
            w.doc(d);
        }
        w.cfg(&g.cfg(&m.ifcond));
        let field = snake(&m.name);
        let bare = field.trim_start_matches("r#");
        let mut serde = Vec::new();
        if bare != m.name {
            serde.push(format!("rename = \"{}\"", m.name));
        }
        if m.optional {
            // Absent is `None`; a present `null` is a value (of `any`, or
            // of an alternate with a `null` branch) or an error, as in QEMU.
            serde.push(
                "default, deserialize_with = \"::qapi_rt::present\", skip_serializing_if = \"::std::option::Option::is_none\"".into(),
            );
        }
        if serde_attrs && !serde.is_empty() {
            w.linef(format_args!("#[serde({})]", serde.join(", ")));
        }
        w.linef(format_args!("pub {field}: {},", g.field_type(owner, m)));
    }
}

fn emit_struct(g: &Gen<'_>, w: &mut Writer, id: EntityId, e: &Entity, members: &[Member]) {
    let name = g.names.get(id);
    g.write_doc(w, e);
    w.cfg(&g.cfg(&e.ifcond));
    w.line("#[derive(Debug, Clone, PartialEq, ::qapi_rt::serde::Serialize, ::qapi_rt::serde::Deserialize)]");
    w.line(SERDE_ATTR);
    // `remote = "Self"`: the derive makes inherent (de)serialize functions;
    // the trait impls below wrap them so that only a JSON object (not an
    // array of member values, which serde's derive would also take) is
    // accepted, as QMP requires.
    w.line("#[serde(deny_unknown_fields, remote = \"Self\")]");
    if members.is_empty() {
        w.linef(format_args!("pub struct {name} {{}}"));
    } else {
        w.open(&format!("pub struct {name} {{"));
        emit_fields(g, w, id, members, None, true);
        w.close("}");
    }
    w.blank();
    let ecfg = g.cfg(&e.ifcond);
    w.cfg(&ecfg);
    open_serialize_impl(w, name);
    w.open(SERIALIZE_FN);
    w.linef(format_args!("{name}::serialize(self, serializer)"));
    w.close("}");
    w.close("}");
    w.blank();
    w.cfg(&ecfg);
    open_deserialize_impl(w, name);
    w.open(DESERIALIZE_FN);
    w.linef(format_args!(
        "{name}::deserialize(::qapi_rt::ObjectOnly(deserializer))"
    ));
    w.close("}");
    w.close("}");
    w.blank();
}

/// Variant names of an enum, made unique after case folding.
pub fn variant_names(values: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        let mut n = camel(v);
        while out.contains(&n) {
            n.push('_');
        }
        out.push(n);
    }
    out
}

fn emit_enum(
    g: &Gen<'_>,
    w: &mut Writer,
    id: EntityId,
    e: &Entity,
    members: &[crate::model::EnumMember],
) {
    let name = g.names.get(id);
    let variants = variant_names(&members.iter().map(|m| m.name.clone()).collect::<Vec<_>>());
    let doc = g.doc_for(e);
    g.write_doc(w, e);
    let ecfg = g.cfg(&e.ifcond);
    w.cfg(&ecfg);
    // Deserialize is hand-rolled: serde's derive would also accept
    // `{"value": null}` for a value.
    w.line("#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ::qapi_rt::serde::Serialize)]");
    w.line(SERDE_ATTR);
    w.open(&format!("pub enum {name} {{"));
    for (m, v) in members.iter().zip(&variants) {
        if let Some(text) = doc
            .and_then(|d| d.arg(&m.name))
            .map(|s| s.text.as_str())
            .filter(|t| !t.is_empty())
        {
            w.doc(text);
        }
        w.cfg(&g.cfg(&m.ifcond));
        w.linef(format_args!("#[serde(rename = \"{}\")]", m.name));
        w.linef(format_args!("{v},"));
    }
    w.close("}");
    w.blank();
    w.cfg(&ecfg);
    w.open(&format!("impl {name} {{"));
    w.line("/// The value's name on the wire.");
    w.open("pub const fn as_str(self) -> &'static str {");
    w.open("match self {");
    for (m, v) in members.iter().zip(&variants) {
        w.cfg(&g.cfg(&m.ifcond));
        w.linef(format_args!("Self::{v} => \"{}\",", m.name));
    }
    w.close("}");
    w.close("}");
    w.blank();
    w.line("/// The values of this build on the wire, in schema order.");
    w.open("pub const VALUES: &'static [&'static str] = &[");
    for m in members {
        w.cfg(&g.cfg(&m.ifcond));
        w.linef(format_args!("\"{}\",", m.name));
    }
    w.close("];");
    w.blank();
    w.line("/// The value named `name` on the wire.");
    w.open("pub fn from_name(name: &str) -> ::core::option::Option<Self> {");
    if members.iter().all(|m| m.ifcond.is_present()) {
        // Only the fallback arm is left when conditions leave no value.
        w.line("#[allow(clippy::match_single_binding)]");
    }
    w.open("match name {");
    for (m, v) in members.iter().zip(&variants) {
        w.cfg(&g.cfg(&m.ifcond));
        w.linef(format_args!(
            "\"{}\" => ::core::option::Option::Some(Self::{v}),",
            m.name
        ));
    }
    w.line("_ => ::core::option::Option::None,");
    w.close("}");
    w.close("}");
    w.close("}");
    w.blank();
    w.cfg(&ecfg);
    open_deserialize_impl(w, name);
    w.open(DESERIALIZE_FN);
    w.line("::qapi_rt::enum_value(deserializer, Self::VALUES, Self::from_name)");
    w.close("}");
    w.close("}");
    w.blank();
    w.cfg(&ecfg);
    w.open(&format!("impl ::core::fmt::Display for {name} {{"));
    w.open("fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {");
    w.line("f.write_str(self.as_str())");
    w.close("}");
    w.close("}");
    w.blank();
}

/// The branch of a union or alternate as a Rust variant payload: `None`
/// for the empty object.
fn branch_payload(g: &Gen<'_>, owner: EntityId, v: &Member) -> Option<String> {
    let ty = v.ty?;
    if g.schema.entities[ty].name == "q_empty" {
        return None;
    }
    let mut t = g.rust_type(ty);
    if g.scc[ty] == g.scc[owner] {
        t = format!("::std::boxed::Box<{t}>");
    }
    Some(t)
}

fn emit_union(g: &Gen<'_>, w: &mut Writer, id: EntityId, e: &Entity, o: &ObjectType) {
    let name = g.names.get(id);
    let branch_name = format!("{name}Branch");
    let Some(b) = &o.branches else { return };
    let Some(tag) = &b.tag_member else { return };
    let Some(tag_ty) = tag.ty else { return };
    let tag_enum = g.names.get(tag_ty).to_string();
    let EntityKind::Enum {
        members: values, ..
    } = &g.schema.entities[tag_ty].kind
    else {
        return;
    };
    let value_names: Vec<String> = values.iter().map(|v| v.name.clone()).collect();
    let enum_variants = variant_names(&value_names);
    let variant_of = |case: &str| {
        value_names
            .iter()
            .position(|v| v == case)
            .map_or_else(|| camel(case), |i| enum_variants[i].clone())
    };
    let ecfg = g.cfg(&e.ifcond);
    let tag_field = snake(&tag.name);
    // Whether conditions can leave the branch enum empty.
    let all_conditional = b.variants.iter().all(|v| v.ifcond.is_present());

    g.write_doc(w, e);
    w.cfg(&ecfg);
    w.line("#[derive(Debug, Clone, PartialEq)]");
    w.open(&format!("pub struct {name} {{"));
    emit_fields(g, w, id, &o.members, Some(&tag.name), false);
    w.linef(format_args!(
        "/// The branch chosen by `{}`, with its members.",
        tag.name
    ));
    w.linef(format_args!("pub branch: {branch_name},"));
    w.close("}");
    w.blank();

    w.linef(format_args!("/// The branches of [`{name}`]."));
    w.cfg(&ecfg);
    w.line("#[derive(Debug, Clone, PartialEq)]");
    w.line("#[allow(clippy::large_enum_variant)]");
    w.open(&format!("pub enum {branch_name} {{"));
    for v in &b.variants {
        w.cfg(&g.cfg(&v.ifcond));
        match branch_payload(g, id, v) {
            Some(t) => w.linef(format_args!("{}({t}),", variant_of(&v.name))),
            None => w.linef(format_args!("{},", variant_of(&v.name))),
        }
    }
    w.close("}");
    w.blank();

    // The tag is implied by the branch. Branches are matched by place
    // (`self.branch`, `ref` bindings), not through a reference: when
    // conditions leave no branch, the enum is empty and only a place of
    // an empty type may be matched without arms.
    w.cfg(&ecfg);
    w.open(&format!("impl {name} {{"));
    w.linef(format_args!(
        "/// The `{}` member: which branch this is.",
        tag.name
    ));
    w.open(&format!("pub fn {}(&self) -> {tag_enum} {{", tag_field));
    w.open("match self.branch {");
    for v in &b.variants {
        w.cfg(&g.cfg(&v.ifcond));
        let vn = variant_of(&v.name);
        let pat = if branch_payload(g, id, v).is_some() {
            format!("{branch_name}::{vn}(_)")
        } else {
            format!("{branch_name}::{vn}")
        };
        w.linef(format_args!("{pat} => {tag_enum}::{vn},"));
    }
    w.close("}");
    w.close("}");
    w.close("}");
    w.blank();

    // Serialize: base members in order (the tag among them), then the
    // branch's members, all in one object.
    w.cfg(&ecfg);
    open_serialize_impl(w, name);
    // When conditions can leave no branch, the branch match diverges.
    if all_conditional {
        w.line("#[allow(unreachable_code, unused_variables)]");
    }
    w.open(SERIALIZE_FN);
    w.line("let mut map = ::qapi_rt::serde_json::Map::new();");
    for m in &o.members {
        w.cfg(&g.cfg(&m.ifcond));
        if m.name == tag.name {
            w.linef(format_args!(
                "::qapi_rt::put(&mut map, \"{}\", &self.{}())?;",
                m.name, tag_field
            ));
        } else if m.optional {
            w.linef(format_args!(
                "::qapi_rt::put_opt(&mut map, \"{}\", &self.{})?;",
                m.name,
                snake(&m.name)
            ));
        } else {
            w.linef(format_args!(
                "::qapi_rt::put(&mut map, \"{}\", &self.{})?;",
                m.name,
                snake(&m.name)
            ));
        }
    }
    w.open("match self.branch {");
    for v in &b.variants {
        w.cfg(&g.cfg(&v.ifcond));
        let vn = variant_of(&v.name);
        if branch_payload(g, id, v).is_some() {
            w.linef(format_args!(
                "{branch_name}::{vn}(ref v) => ::qapi_rt::put_flat(&mut map, v)?,"
            ));
        } else {
            w.linef(format_args!("{branch_name}::{vn} => {{}}"));
        }
    }
    w.close("}");
    w.line("::qapi_rt::serde::Serialize::serialize(&map, serializer)");
    w.close("}");
    w.close("}");
    w.blank();

    // Deserialize: take the base members, then hand the rest to the branch.
    w.cfg(&ecfg);
    open_deserialize_impl(w, name);
    // With no branch compiled in, every tag is an error and what follows
    // the match is unreachable.
    if all_conditional {
        w.line("#[allow(unreachable_code, unused_variables)]");
    }
    w.open(DESERIALIZE_FN);
    w.line("#[allow(unused_mut)]");
    w.line("let mut map: ::qapi_rt::serde_json::Map<::std::string::String, ::qapi_rt::serde_json::Value> = ::qapi_rt::serde::Deserialize::deserialize(deserializer)?;");
    w.linef(format_args!(
        "let tag: {tag_enum} = ::qapi_rt::take(&mut map, \"{}\")?;",
        tag.name
    ));
    for m in o.members.iter().filter(|m| m.name != tag.name) {
        w.cfg(&g.cfg(&m.ifcond));
        let f = if m.optional { "take_opt" } else { "take" };
        w.linef(format_args!(
            "let {} = ::qapi_rt::{f}(&mut map, \"{}\")?;",
            snake(&m.name),
            m.name
        ));
    }
    w.line("#[allow(unreachable_patterns)]");
    w.open("let branch = match tag {");
    for v in &b.variants {
        w.cfg(&g.cfg(&v.ifcond));
        let vn = variant_of(&v.name);
        if branch_payload(g, id, v).is_some() {
            w.linef(format_args!(
                "{tag_enum}::{vn} => {branch_name}::{vn}(::qapi_rt::rest(map)?),"
            ));
        } else {
            w.open(&format!("{tag_enum}::{vn} => {{"));
            w.line("::qapi_rt::empty_rest(map)?;");
            w.linef(format_args!("{branch_name}::{vn}"));
            w.close("}");
        }
    }
    w.linef(format_args!(
        "other => return Err(<D::Error as ::qapi_rt::serde::de::Error>::custom(format_args!(\"'{}' value '{{other}}' is not available in this build\"))),",
        tag.name
    ));
    w.close("};");
    let fields: Vec<String> = o
        .members
        .iter()
        .filter(|m| m.name != tag.name)
        .map(|m| match g.cfg(&m.ifcond) {
            Some(p) => format!("#[cfg({p})] {}", snake(&m.name)),
            None => snake(&m.name),
        })
        .collect();
    if fields.is_empty() {
        w.linef(format_args!("Ok({name} {{ branch }})"));
    } else {
        w.linef(format_args!(
            "Ok({name} {{ {}, branch }})",
            fields.join(", ")
        ));
    }
    w.close("}");
    w.close("}");
    w.blank();
}

/// The JSON kind an alternate branch accepts (see QEMU's QType rules).
fn json_kind(g: &Gen<'_>, ty: EntityId) -> &'static str {
    let e = &g.schema.entities[ty];
    match &e.kind {
        EntityKind::Builtin { json } => match json {
            JsonType::String => "string",
            JsonType::Number | JsonType::Int => "number",
            JsonType::Boolean => "boolean",
            JsonType::Null => "null",
            JsonType::Value => "any",
        },
        EntityKind::Enum { .. } => "string",
        EntityKind::Array { .. } => "array",
        _ => "object",
    }
}

fn emit_alternate(g: &Gen<'_>, w: &mut Writer, id: EntityId, e: &Entity, a: &Variants) {
    let name = g.names.get(id);
    let ecfg = g.cfg(&e.ifcond);
    g.write_doc(w, e);
    w.cfg(&ecfg);
    w.line("#[derive(Debug, Clone, PartialEq)]");
    w.line("#[allow(clippy::large_enum_variant)]");
    w.open(&format!("pub enum {name} {{"));
    for v in &a.variants {
        if let Some(d) = g.member_doc(v) {
            w.doc(d);
        }
        w.cfg(&g.cfg(&v.ifcond));
        let t = branch_payload(g, id, v).unwrap_or_else(|| "Empty".into());
        w.linef(format_args!("{}({t}),", camel(&v.name)));
    }
    w.close("}");
    w.blank();

    w.cfg(&ecfg);
    open_serialize_impl(w, name);
    // Matched by place, so that an alternate that conditions leave
    // without branches still compiles (`serializer` is unused then).
    if a.variants.iter().all(|v| v.ifcond.is_present()) {
        w.line("#[allow(unused_variables)]");
    }
    w.open(SERIALIZE_FN);
    w.open("match *self {");
    for v in &a.variants {
        w.cfg(&g.cfg(&v.ifcond));
        w.linef(format_args!(
            "Self::{}(ref v) => ::qapi_rt::serde::Serialize::serialize(v, serializer),",
            camel(&v.name)
        ));
    }
    w.close("}");
    w.close("}");
    w.close("}");
    w.blank();

    // Deserialize: the JSON type picks the branch.
    w.cfg(&ecfg);
    open_deserialize_impl(w, name);
    w.open(DESERIALIZE_FN);
    w.line("let value: ::qapi_rt::serde_json::Value = ::qapi_rt::serde::Deserialize::deserialize(deserializer)?;");
    w.line("#[allow(clippy::match_single_binding)]");
    w.open("match ::qapi_rt::json_kind(&value) {");
    for v in &a.variants {
        let Some(ty) = v.ty else { continue };
        w.cfg(&g.cfg(&v.ifcond));
        let payload_is_box =
            branch_payload(g, id, v).is_some_and(|t| t.starts_with("::std::boxed::Box<"));
        let conv = if payload_is_box {
            "::qapi_rt::from_value(value).map(::std::boxed::Box::new)"
        } else {
            "::qapi_rt::from_value(value)"
        };
        w.linef(format_args!(
            "\"{}\" => {conv}.map(Self::{}),",
            json_kind(g, ty),
            camel(&v.name)
        ));
    }
    w.linef(format_args!(
        "other => Err(<D::Error as ::qapi_rt::serde::de::Error>::custom(format_args!(\"invalid type: {{other}}, expected one of the branches of {}\"))),",
        e.name
    ));
    w.close("}");
    w.close("}");
    w.close("}");
    w.blank();
}
