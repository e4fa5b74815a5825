//! Rust names for QAPI names.

use std::collections::{HashMap, HashSet};

use crate::model::{EntityId, EntityKind};
use crate::schema::Schema;

const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "dyn", "else", "enum", "extern", "false",
    "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref",
    "return", "static", "struct", "trait", "true", "type", "unsafe", "use", "where", "while",
    "abstract", "become", "box", "do", "final", "gen", "macro", "override", "priv", "try",
    "typeof", "unsized", "virtual", "yield",
];

/// `block-export-add` -> `BlockExportAdd`, `BLOCK_JOB_READY` ->
/// `BlockJobReady`, `BlockdevOptions` stays as it is.
pub fn camel(name: &str) -> String {
    let mut out = String::new();
    for part in name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
    {
        let all_upper = part.chars().all(|c| !c.is_ascii_lowercase());
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            if all_upper {
                out.extend(chars.map(|c| c.to_ascii_lowercase()));
            } else {
                out.extend(chars);
            }
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'N');
    }
    out
}

/// `node-name` -> `node_name`, `type` -> `r#type`, `backingFile` ->
/// `backing_file`.
pub fn snake(name: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            if prev_lower {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        } else {
            out.push('_');
            prev_lower = false;
        }
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'n');
    }
    match out.as_str() {
        "self" | "Self" | "super" | "crate" | "_" => format!("{out}_"),
        s if KEYWORDS.contains(&s) => format!("r#{out}"),
        _ => out,
    }
}

/// Rust type names of every entity that becomes a Rust type, unique.
pub struct TypeNames {
    names: HashMap<EntityId, String>,
}

/// Names the generated API itself uses in the type namespace, and Rust's
/// own `Self`: a schema type with one of these names gets a suffix.
const RESERVED: &[&str] = &["Commands", "Self"];

impl TypeNames {
    pub fn new(schema: &Schema) -> Self {
        let mut names = HashMap::new();
        let mut taken: HashSet<String> = RESERVED.iter().map(|s| s.to_string()).collect();
        let candidates: Vec<(EntityId, bool, String)> = schema
            .definitions()
            .filter_map(|(id, e)| {
                let name = match &e.kind {
                    EntityKind::Builtin { .. }
                    | EntityKind::Array { .. }
                    | EntityKind::Command(_) => {
                        return None;
                    }
                    EntityKind::Event(_) => format!("{}Event", camel(&e.name)),
                    _ => implicit_name(schema, &e.name),
                };
                let user_defined = e.info.is_some() && !e.is_implicit();
                Some((id, user_defined, name))
            })
            .collect();
        // Types written in the schema keep their own names; implicit types
        // (argument structs, bases, events) give way on a clash.
        for pass_user in [true, false] {
            for (id, user, base) in &candidates {
                if *user != pass_user {
                    continue;
                }
                let mut name = base.clone();
                while taken.contains(&name) {
                    name.push_str("Qapi");
                }
                taken.insert(name.clone());
                names.insert(*id, name);
            }
        }
        TypeNames { names }
    }

    pub fn get(&self, id: EntityId) -> &str {
        self.names.get(&id).map_or("UnknownType", String::as_str)
    }
}

fn implicit_name(schema: &Schema, name: &str) -> String {
    if name == "q_empty" {
        return "Empty".into();
    }
    if let Some(rest) = name.strip_prefix("q_obj_") {
        if let Some(owner) = rest.strip_suffix("-arg") {
            let is_event = schema
                .lookup(owner)
                .is_some_and(|e| matches!(e.kind, EntityKind::Event(_)));
            // An event's implicit argument type is the event's value;
            // the event entity itself gets a distinct name below.
            return if is_event {
                format!("{}Data", camel(owner))
            } else {
                format!("{}Args", camel(owner))
            };
        }
        if let Some(owner) = rest.strip_suffix("-base") {
            return format!("{}Base", camel(owner));
        }
    }
    camel(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_names() {
        assert_eq!(camel("block-export-add"), "BlockExportAdd");
        assert_eq!(camel("BLOCK_JOB_READY"), "BlockJobReady");
        assert_eq!(camel("BlockdevOptions"), "BlockdevOptions");
        assert_eq!(camel("io_uring"), "IoUring");
        assert_eq!(camel("1"), "N1");
        assert_eq!(camel("__com.redhat_Foo"), "ComRedhatFoo");
        assert_eq!(snake("node-name"), "node_name");
        assert_eq!(snake("type"), "r#type");
        assert_eq!(snake("backingFile"), "backing_file");
        assert_eq!(snake("self"), "self_");
    }
}
