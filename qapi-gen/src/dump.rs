//! The schema model as text, in the format of QEMU's QAPI test dumps
//! (`tests/qapi-schema/*.out`), used to compare our front end with QEMU's.

use std::fmt::Write;

use crate::model::*;
use crate::schema::Schema;

fn print_if(out: &mut String, ifcond: &IfCond, indent: usize) {
    if ifcond.is_present() {
        let _ = writeln!(out, "{:indent$}if {}", "", ifcond.dump());
    }
}

fn print_features(out: &mut String, features: &[Feature], indent: usize) {
    for f in features {
        let _ = writeln!(out, "{:indent$}feature {}", "", f.name);
        print_if(out, &f.ifcond, indent + 4);
    }
}

fn print_variants(out: &mut String, schema: &Schema, v: &Variants) {
    if let Some(tag) = &v.tag_member {
        let _ = writeln!(out, "    tag {}", tag.name);
    }
    for b in &v.variants {
        let _ = writeln!(out, "    case {}: {}", b.name, schema.type_name(b.ty));
        print_if(out, &b.ifcond, 8);
    }
}

fn py_bool(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// Renders the whole schema: modules and their entities, then the
/// documentation blocks.
pub fn dump(schema: &Schema) -> String {
    let mut out = String::new();
    for module in &schema.modules {
        let _ = writeln!(out, "module {}", module.name);
        for &id in &module.entities {
            dump_entity(&mut out, schema, schema.entity(id));
        }
    }
    for doc in &schema.docs {
        match &doc.symbol {
            Some(s) => {
                let _ = writeln!(out, "doc symbol={s}");
            }
            None => out.push_str("doc freeform\n"),
        }
        let _ = writeln!(out, "    body=\n{}", doc.body().text);
        for &i in &doc.args {
            let s = &doc.store[i];
            let _ = writeln!(
                out,
                "    arg={}\n{}",
                s.name.as_deref().unwrap_or(""),
                s.text
            );
        }
        for &i in &doc.features {
            let s = &doc.store[i];
            let _ = writeln!(
                out,
                "    feature={}\n{}",
                s.name.as_deref().unwrap_or(""),
                s.text
            );
        }
        for &i in &doc.sections {
            let s = &doc.store[i];
            let _ = writeln!(out, "    section={}\n{}", s.kind.dump_name(), s.text);
        }
    }
    out
}

fn dump_entity(out: &mut String, schema: &Schema, e: &Entity) {
    match &e.kind {
        EntityKind::Include { module } => {
            let _ = writeln!(out, "include {module}");
        }
        EntityKind::Builtin { .. } => {}
        EntityKind::Enum { members, prefix } => {
            let _ = writeln!(out, "enum {}", e.name);
            if let Some(p) = prefix {
                let _ = writeln!(out, "    prefix {p}");
            }
            for m in members {
                let _ = writeln!(out, "    member {}", m.name);
                print_if(out, &m.ifcond, 8);
                print_features(out, &m.features, 8);
            }
            print_if(out, &e.ifcond, 4);
            print_features(out, &e.features, 4);
        }
        EntityKind::Array { element, .. } => {
            if e.info.is_none() {
                return;
            }
            let _ = writeln!(out, "array {} {}", e.name, schema.type_name(*element));
            if let Some(el) = element {
                print_if(out, &schema.entity(*el).ifcond, 4);
            }
        }
        EntityKind::Object(o) => {
            let _ = writeln!(out, "object {}", e.name);
            if let Some(b) = o.base {
                let _ = writeln!(out, "    base {}", schema.entity(b).name);
            }
            for m in &o.local_members {
                let _ = writeln!(
                    out,
                    "    member {}: {} optional={}",
                    m.name,
                    schema.type_name(m.ty),
                    py_bool(m.optional)
                );
                print_if(out, &m.ifcond, 8);
                print_features(out, &m.features, 8);
            }
            if let Some(b) = &o.branches {
                print_variants(out, schema, b);
            }
            print_if(out, &e.ifcond, 4);
            print_features(out, &e.features, 4);
        }
        EntityKind::Alternate(v) => {
            let _ = writeln!(out, "alternate {}", e.name);
            print_variants(out, schema, v);
            print_if(out, &e.ifcond, 4);
            print_features(out, &e.features, 4);
        }
        EntityKind::Command(c) => {
            let _ = writeln!(
                out,
                "command {} {} -> {}",
                e.name,
                schema.type_name(c.arg_type),
                schema.type_name(c.ret_type)
            );
            let _ = writeln!(
                out,
                "    gen={} success_response={} boxed={} oob={} preconfig={}{}",
                py_bool(c.generate),
                py_bool(c.success_response),
                py_bool(c.boxed),
                py_bool(c.allow_oob),
                py_bool(c.allow_preconfig),
                if c.coroutine { " coroutine=True" } else { "" }
            );
            print_if(out, &e.ifcond, 4);
            print_features(out, &e.features, 4);
        }
        EntityKind::Event(ev) => {
            let _ = writeln!(out, "event {} {}", e.name, schema.type_name(ev.arg_type));
            let _ = writeln!(out, "    boxed={}", py_bool(ev.boxed));
            print_if(out, &e.ifcond, 4);
            print_features(out, &e.features, 4);
        }
    }
}
