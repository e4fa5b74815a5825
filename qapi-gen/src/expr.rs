//! Expression checks: every definition has the keys its kind allows, with
//! values of the right shape and names that follow the rules. Checked
//! expressions are normalised (member shorthand expanded) for the model.

use crate::diagnostic::Diagnostic;
use crate::doc::Doc;
use crate::names::{c_name, split_name};
use crate::parser::{Expr, Pragma};
use crate::source::Info;
use crate::value::{Dict, Value};

pub const METAS: [&str; 6] = ["enum", "struct", "union", "alternate", "command", "event"];

type Check = Result<(), Diagnostic>;

fn err(info: &Info, msg: impl Into<String>) -> Diagnostic {
    Diagnostic::new(info, msg)
}

fn quoted_sorted<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let mut v: Vec<&str> = items.into_iter().collect();
    v.sort_unstable();
    v.iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_keys(
    dict: &Dict,
    info: &Info,
    source: &str,
    required: &[&str],
    optional: &[&str],
) -> Check {
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|k| !dict.contains(k))
        .collect();
    if !missing.is_empty() {
        let s = if missing.len() > 1 { "s" } else { "" };
        return Err(err(
            info,
            format!(
                "{source} lacks the required key{s} {}",
                quoted_sorted(missing)
            ),
        ));
    }
    let unknown: Vec<&str> = dict
        .keys()
        .filter(|k| !required.contains(k) && !optional.contains(k))
        .collect();
    if !unknown.is_empty() {
        let s = if unknown.len() > 1 { "s" } else { "" };
        let valid = quoted_sorted(required.iter().chain(optional.iter()).copied());
        return Err(err(
            info,
            format!(
                "{source} has unknown key{s} {}\nValid keys are {valid}.",
                quoted_sorted(unknown)
            ),
        ));
    }
    Ok(())
}

fn check_name_is_str<'a>(
    value: &'a Value,
    info: &Info,
    source: &str,
) -> Result<&'a str, Diagnostic> {
    value.as_str().ok_or_else(|| {
        err(
            info,
            format!("{source} needs a name, which must be a string"),
        )
    })
}

fn check_name_str<'a>(name: &'a str, info: &Info, source: &str) -> Result<&'a str, Diagnostic> {
    match split_name(name) {
        // 'q_' (and its spellings 'q-', 'q.') belongs to generated names.
        Some(stem)
            if !(name.starts_with('q')
                && name
                    .as_bytes()
                    .get(1)
                    .is_some_and(|c| !c.is_ascii_alphanumeric())) =>
        {
            Ok(stem)
        }
        _ => Err(err(
            info,
            format!(
                "{source} has an invalid name: names are letters, digits, '-' and '_', start with a \
                 letter, may carry an 'x-' or '__RFQDN_' prefix, and must not start with 'q_'"
            ),
        )),
    }
}

fn check_name_upper(name: &str, info: &Info, source: &str) -> Check {
    let stem = check_name_str(name, info, source)?;
    if stem.chars().any(|c| c.is_ascii_lowercase() || c == '-') {
        return Err(err(
            info,
            format!("the name of {source} must be in upper case with '_' (like 'BLOCK_JOB_READY')"),
        ));
    }
    Ok(())
}

fn check_name_lower(
    name: &str,
    info: &Info,
    source: &str,
    permit_upper: bool,
    permit_underscore: bool,
) -> Check {
    let stem = check_name_str(name, info, source)?;
    if (!permit_upper && stem.chars().any(|c| c.is_ascii_uppercase()))
        || (!permit_underscore && stem.contains('_'))
    {
        return Err(err(
            info,
            format!("the name of {source} must be in lower case with '-' (like 'node-name')"),
        ));
    }
    Ok(())
}

fn check_name_camel(name: &str, info: &Info, source: &str) -> Check {
    let stem = check_name_str(name, info, source)?;
    let b = stem.as_bytes();
    let ok = b.first().is_some_and(u8::is_ascii_uppercase)
        && b.iter().all(u8::is_ascii_alphanumeric)
        && b[1..].iter().any(u8::is_ascii_lowercase);
    if !ok {
        return Err(err(
            info,
            format!("the name of {source} must be in CamelCase (like 'BlockdevOptions')"),
        ));
    }
    Ok(())
}

fn check_defn_name(name: &str, info: &Info, meta: &str, pragma: &Pragma) -> Check {
    match meta {
        "event" => check_name_upper(name, info, meta)?,
        "command" => {
            let exempt = pragma.command_name_exceptions.iter().any(|n| n == name);
            check_name_lower(name, info, meta, false, exempt)?
        }
        _ => check_name_camel(name, info, meta)?,
    }
    if name.ends_with("List") {
        return Err(err(
            info,
            format!("{meta} names must not end in 'List' (reserved for array types)"),
        ));
    }
    Ok(())
}

/// Checks an `if` condition: an identifier, or `{'all'|'any': [..]}` or
/// `{'not': ..}`.
fn check_if(owner: &Dict, info: &Info, source: &str) -> Check {
    match owner.get("if") {
        None => Ok(()),
        Some(cond) => check_cond(cond, info, source),
    }
}

fn check_cond(cond: &Value, info: &Info, source: &str) -> Check {
    match cond {
        Value::Str(s) => {
            let b = s.as_bytes();
            let ok = b.first().is_some_and(u8::is_ascii_uppercase)
                && b.iter()
                    .all(|&c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_');
            if ok {
                Ok(())
            } else {
                Err(err(
                    info,
                    format!(
                        "'if' condition '{s}' of {source} is not a valid identifier (upper case, digits and '_', like 'CONFIG_FUSE')"
                    ),
                ))
            }
        }
        Value::Dict(d) => {
            check_keys(
                d,
                info,
                &format!("'if' condition of {source}"),
                &[],
                &["all", "any", "not"],
            )?;
            if d.len() != 1 {
                return Err(err(
                    info,
                    format!(
                        "'if' condition of {source} must have exactly one of 'all', 'any' or 'not'"
                    ),
                ));
            }
            if let Some(inner) = d.get("not") {
                return check_cond(inner, info, source);
            }
            let (op, operands) = if let Some(v) = d.get("all") {
                ("all", v)
            } else {
                ("any", d.get("any").unwrap_or(&Value::Bool(false)))
            };
            let Value::List(items) = operands else {
                return Err(err(
                    info,
                    format!("'{op}' condition of {source} must be an array"),
                ));
            };
            if items.is_empty() {
                return Err(err(
                    info,
                    format!(
                        "'if' condition [] of {source} is useless: '{op}' needs at least one operand"
                    ),
                ));
            }
            items.iter().try_for_each(|c| check_cond(c, info, source))
        }
        _ => Err(err(
            info,
            format!("'if' condition of {source} must be a string or an object"),
        )),
    }
}

/// Checks `features`: a list of names or `{'name': .., 'if': ..}`.
fn check_features(owner: &Dict, info: &Info) -> Check {
    let Some(features) = owner.get("features") else {
        return Ok(());
    };
    let Value::List(items) = features else {
        return Err(err(info, "'features' must be an array"));
    };
    let source = "'features' member";
    for item in items {
        let (name, feat) = match item {
            Value::Dict(feat) => {
                check_keys(feat, info, source, &["name"], &["if"])?;
                (feat.get("name").unwrap_or(&Value::Bool(false)), Some(feat))
            }
            other => (other, None),
        };
        let name = check_name_is_str(name, info, source)?;
        let source = format!("{source} '{name}'");
        check_name_lower(name, info, &source, false, false)?;
        if let Some(feat) = feat {
            check_if(feat, info, &source)?;
        }
    }
    Ok(())
}

/// Expands `'name': 'Type'` shorthand to `'name': {'type': 'Type'}`.
fn normalize_members(value: Option<&mut Value>) {
    if let Some(Value::Dict(d)) = value {
        for (_, v) in d.0.iter_mut() {
            if !matches!(v, Value::Dict(_)) {
                let t = std::mem::replace(v, Value::Bool(false));
                *v = Value::Dict(Dict(vec![("type".into(), t)]));
            }
        }
    }
}

fn get_mut<'a>(d: &'a mut Dict, key: &str) -> Option<&'a mut Value> {
    d.0.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn check_type_name(value: Option<&Value>, info: &Info, source: &str) -> Check {
    match value {
        None | Some(Value::Str(_)) => Ok(()),
        _ => Err(err(info, format!("{source} should be a type name"))),
    }
}

fn check_type_name_or_array(value: Option<&Value>, info: &Info, source: &str) -> Check {
    match value {
        None | Some(Value::Str(_)) => Ok(()),
        Some(Value::List(items)) => {
            if items.len() == 1 && matches!(items[0], Value::Str(_)) {
                Ok(())
            } else {
                Err(err(
                    info,
                    format!(
                        "{source}: an array type is written as a list of exactly one type name, like ['str']"
                    ),
                ))
            }
        }
        _ => Err(err(
            info,
            format!("{source} should be a type name or an array like ['str']"),
        )),
    }
}

fn check_type_implicit(
    value: Option<&Value>,
    info: &Info,
    source: &str,
    parent: Option<&str>,
    pragma: &Pragma,
) -> Check {
    let Some(Value::Dict(members)) = value else {
        return Err(err(
            info,
            format!("{source} should be an object or a type name"),
        ));
    };
    let permissive = parent.is_some_and(|p| pragma.member_name_exceptions.iter().any(|n| n == p));
    for (key, arg) in members.iter() {
        let key_source = format!("{source} member '{key}'");
        let name = key.strip_prefix('*').unwrap_or(key);
        check_name_lower(name, info, &key_source, permissive, permissive)?;
        let c = c_name(name);
        if c == "u" || c.starts_with("has_") {
            return Err(err(
                info,
                format!(
                    "{key_source} uses a reserved name ('u' and 'has-' prefixes are taken by generated code)"
                ),
            ));
        }
        let Value::Dict(arg) = arg else { continue };
        check_keys(arg, info, &key_source, &["type"], &["if", "features"])?;
        check_if(arg, info, &key_source)?;
        check_features(arg, info)?;
        check_type_name_or_array(arg.get("type"), info, &key_source)?;
    }
    Ok(())
}

fn check_type_name_or_implicit(
    value: Option<&Value>,
    info: &Info,
    source: &str,
    parent: Option<&str>,
    pragma: &Pragma,
) -> Check {
    match value {
        None | Some(Value::Str(_)) => Ok(()),
        _ => check_type_implicit(value, info, source, parent, pragma),
    }
}

/// Normalises member features in place (after their checks passed).
fn normalize_member_features(members: Option<&mut Value>) {
    if let Some(Value::Dict(d)) = members {
        for (_, v) in d.0.iter_mut() {
            if let Value::Dict(arg) = v {
                expand_features(arg);
            }
        }
    }
}

fn expand_features(owner: &mut Dict) {
    if let Some(Value::List(items)) = get_mut(owner, "features") {
        for item in items.iter_mut() {
            if !matches!(item, Value::Dict(_)) {
                let v = std::mem::replace(item, Value::Bool(false));
                *item = Value::Dict(Dict(vec![("name".into(), v)]));
            }
        }
    }
}

fn check_enum(expr: &mut Dict, info: &Info, pragma: &Pragma) -> Check {
    let name = expr.get_str("enum").unwrap_or_default().to_string();
    if !matches!(expr.get("data"), Some(Value::List(_))) {
        return Err(err(info, "'data' of an enum must be an array of values"));
    }
    if let Some(p) = expr.get("prefix")
        && !matches!(p, Value::Str(_))
    {
        return Err(err(info, "'prefix' must be a string"));
    }
    let permissive = pragma.member_name_exceptions.contains(&name);
    let Some(Value::List(members)) = get_mut(expr, "data") else {
        return Ok(());
    };
    for m in members.iter_mut() {
        if !matches!(m, Value::Dict(_)) {
            let v = std::mem::replace(m, Value::Bool(false));
            *m = Value::Dict(Dict(vec![("name".into(), v)]));
        }
        let Value::Dict(member) = m else { continue };
        let source = "'data' member";
        check_keys(member, info, source, &["name"], &["if", "features"])?;
        let mname = check_name_is_str(
            member.get("name").unwrap_or(&Value::Bool(false)),
            info,
            source,
        )?
        .to_string();
        let source = format!("{source} '{mname}'");
        // Enum values may start with a digit.
        let checked = if mname.starts_with(|c: char| c.is_ascii_digit()) {
            format!("d{mname}")
        } else {
            mname.clone()
        };
        check_name_lower(&checked, info, &source, permissive, permissive)?;
        check_if(member, info, &source)?;
        check_features(member, info)?;
        expand_features(member);
    }
    Ok(())
}

fn check_struct(expr: &Dict, info: &Info, pragma: &Pragma) -> Check {
    let name = expr.get_str("struct");
    check_type_implicit(expr.get("data"), info, "'data'", name, pragma)?;
    check_type_name(expr.get("base"), info, "'base'")
}

fn check_union(expr: &Dict, info: &Info, pragma: &Pragma) -> Check {
    let name = expr.get_str("union");
    check_type_name_or_implicit(expr.get("base"), info, "'base'", name, pragma)?;
    check_name_is_str(
        expr.get("discriminator").unwrap_or(&Value::Bool(false)),
        info,
        "'discriminator'",
    )?;
    let Some(Value::Dict(members)) = expr.get("data") else {
        return Err(err(
            info,
            "'data' of a union must be an object mapping branch names to types",
        ));
    };
    for (key, value) in members.iter() {
        let source = format!("'data' member '{key}'");
        let Value::Dict(value) = value else { continue };
        check_keys(value, info, &source, &["type"], &["if"])?;
        check_if(value, info, &source)?;
        check_type_name(value.get("type"), info, &source)?;
    }
    Ok(())
}

fn check_alternate(expr: &Dict, info: &Info) -> Check {
    let data = expr.get("data");
    let empty = match data {
        Some(Value::Dict(d)) => d.is_empty(),
        Some(Value::List(l)) => l.is_empty(),
        Some(Value::Str(s)) => s.is_empty(),
        Some(Value::Bool(b)) => !b,
        None => true,
    };
    if empty {
        return Err(err(info, "'data' of an alternate must not be empty"));
    }
    let Some(Value::Dict(members)) = data else {
        return Err(err(
            info,
            "'data' of an alternate must be an object mapping branch names to types",
        ));
    };
    for (key, value) in members.iter() {
        let source = format!("'data' member '{key}'");
        check_name_lower(key, info, &source, false, false)?;
        let Value::Dict(value) = value else { continue };
        check_keys(value, info, &source, &["type"], &["if"])?;
        check_if(value, info, &source)?;
        check_type_name_or_array(value.get("type"), info, &source)?;
    }
    Ok(())
}

fn check_command_or_event(expr: &Dict, info: &Info, pragma: &Pragma, is_command: bool) -> Check {
    if expr.get_bool("boxed") == Some(true) {
        if !expr.contains("data") {
            return Err(err(info, "'boxed': true requires 'data' (the type to box)"));
        }
        check_type_name(expr.get("data"), info, "'data'")?;
    } else {
        check_type_name_or_implicit(expr.get("data"), info, "'data'", None, pragma)?;
    }
    if is_command {
        check_type_name_or_array(expr.get("returns"), info, "'returns'")?;
    }
    Ok(())
}

fn check_flags(expr: &Dict, info: &Info) -> Check {
    for key in ["gen", "success-response"] {
        if let Some(v) = expr.get(key)
            && *v != Value::Bool(false)
        {
            return Err(err(
                info,
                format!("flag '{key}' may only be false (true is the default)"),
            ));
        }
    }
    for key in ["boxed", "allow-oob", "allow-preconfig", "coroutine"] {
        if let Some(v) = expr.get(key)
            && *v != Value::Bool(true)
        {
            return Err(err(
                info,
                format!("flag '{key}' may only be true (false is the default)"),
            ));
        }
    }
    if expr.contains("allow-oob") && expr.contains("coroutine") {
        return Err(err(
            info,
            "flags 'allow-oob' and 'coroutine' cannot be combined",
        ));
    }
    Ok(())
}

/// Checks one definition. On success `expr.info` names the definition and
/// the dictionary is normalised.
fn check_expr(expr: &mut Expr, docs: &[Doc], pragma: &Pragma) -> Check {
    let info = expr.info.clone();
    let metas: Vec<&str> = METAS
        .iter()
        .copied()
        .filter(|m| expr.dict.contains(m))
        .collect();
    if metas.len() != 1 {
        return Err(err(
            &info,
            "an expression must have exactly one of the keys 'enum', 'struct', 'union', 'alternate', 'command', 'event'",
        ));
    }
    let meta = metas[0];
    let name = check_name_is_str(
        expr.dict.get(meta).unwrap_or(&Value::Bool(false)),
        &info,
        &format!("'{meta}'"),
    )?
    .to_string();
    let info = info.with_defn(meta, &name);
    expr.info = info.clone();
    check_defn_name(&name, &info, meta, pragma)?;

    if let Some(d) = expr.doc {
        let doc = &docs[d];
        if doc.symbol.as_deref() != Some(name.as_str()) {
            return Err(err(
                &info,
                format!(
                    "the documentation block before this definition is for '{}'",
                    doc.symbol.as_deref().unwrap_or("")
                ),
            ));
        }
        doc.check_expr(meta == "command", expr.dict.contains("returns"))?;
    } else if pragma.doc_required {
        return Err(err(
            &info,
            "this definition needs a documentation block (pragma 'doc-required' is set)",
        ));
    }

    let d = &mut expr.dict;
    match meta {
        "enum" => {
            check_keys(
                d,
                &info,
                meta,
                &["enum", "data"],
                &["if", "features", "prefix"],
            )?;
            check_enum(d, &info, pragma)?;
        }
        "union" => {
            check_keys(
                d,
                &info,
                meta,
                &["union", "base", "discriminator", "data"],
                &["if", "features"],
            )?;
            normalize_members(get_mut(d, "base"));
            normalize_members(get_mut(d, "data"));
            check_union(d, &info, pragma)?;
            normalize_member_features(get_mut(d, "base"));
        }
        "alternate" => {
            check_keys(d, &info, meta, &["alternate", "data"], &["if", "features"])?;
            normalize_members(get_mut(d, "data"));
            check_alternate(d, &info)?;
        }
        "struct" => {
            check_keys(
                d,
                &info,
                meta,
                &["struct", "data"],
                &["base", "if", "features"],
            )?;
            normalize_members(get_mut(d, "data"));
            check_struct(d, &info, pragma)?;
            normalize_member_features(get_mut(d, "data"));
        }
        "command" => {
            check_keys(
                d,
                &info,
                meta,
                &["command"],
                &[
                    "data",
                    "returns",
                    "boxed",
                    "if",
                    "features",
                    "gen",
                    "success-response",
                    "allow-oob",
                    "allow-preconfig",
                    "coroutine",
                ],
            )?;
            normalize_members(get_mut(d, "data"));
            check_command_or_event(d, &info, pragma, true)?;
            normalize_member_features(get_mut(d, "data"));
        }
        _ => {
            check_keys(
                d,
                &info,
                meta,
                &["event"],
                &["data", "boxed", "if", "features"],
            )?;
            normalize_members(get_mut(d, "data"));
            check_command_or_event(d, &info, pragma, false)?;
            normalize_member_features(get_mut(d, "data"));
        }
    }
    check_if(d, &info, meta)?;
    check_features(d, &info)?;
    expand_features(d);
    check_flags(d, &info)
}

/// Checks every definition, collecting one diagnostic per bad definition.
pub fn check_exprs(exprs: &mut [Expr], docs: &[Doc], pragma: &Pragma) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for expr in exprs.iter_mut() {
        if expr.include.is_some() {
            continue;
        }
        if let Err(d) = check_expr(expr, docs, pragma) {
            out.push(d);
        }
    }
    out
}
