//! QEMU's keyval syntax (`util/keyval.c`): `key=value,...` into a tree.
//!
//! - Keys are dotted paths: `cache.direct=on` nests, `server.0.host=a`
//!   makes a list once every key of a level is a number (`0`, `1`, ...).
//! - A value runs to the next single comma; `,,` stands for a comma.
//! - With an implied key, the first parameter may be a bare value
//!   (`null-co,node-name=n` means `driver=null-co,...`); it runs to the first
//!   `,` or `=`, with no escaping.
//! - A later value for the same key replaces the earlier one.
//! - A bare `help` or `?` is a help request rather than a parameter.
//!
//! Every value in the tree is a string; the conversion to the target type
//! happens later (see [`super::convert`]). Error texts are QEMU's.

use serde_json::{Map, Value};

use crate::qemu_json::order;

/// Longest key fragment QEMU accepts is 127 bytes.
const MAX_FRAGMENT: usize = 128;

/// The result of parsing: the tree (always an object) and whether help
/// was asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub tree: Map<String, Value>,
    pub help: bool,
}

/// Parses `params`. `implied_key` names the key of a bare first value.
pub fn parse(params: &str, implied_key: Option<&str>) -> Result<Parsed, String> {
    let mut root = Map::new();
    let mut help = false;
    let mut pos = 0;
    let mut implied = implied_key;
    while pos < params.len() {
        pos = parse_one(&mut root, params, pos, implied, &mut help)?;
        implied = None;
    }
    let tree = listify(root, &mut Vec::new())?;
    let Value::Object(tree) = tree else {
        unreachable!("the top level has no index keys");
    };
    Ok(Parsed { tree, help })
}

/// Like [`parse`], but a help request is an error, as for options that
/// offer no help (`--blockdev`, `--export`, `--nbd-server`, `--monitor`).
pub fn parse_no_help(
    params: &str,
    implied_key: Option<&str>,
) -> Result<Map<String, Value>, String> {
    let parsed = parse(params, implied_key)?;
    if parsed.help {
        return Err("Help is not available for this option".into());
    }
    Ok(parsed.tree)
}

/// `parse_qapi_name(s, false)`: length of the QAPI name `s` starts with
/// (an optional downstream prefix `__RFQDN_`, a letter, then letters,
/// digits, `-` and `_`), or 0.
fn qapi_name_len(s: &[u8]) -> usize {
    let mut p = 0;
    if s.first() == Some(&b'_') {
        if s.get(1) != Some(&b'_') {
            return 0;
        }
        p = 2;
        while p < s.len() && (s[p].is_ascii_alphanumeric() || s[p] == b'-' || s[p] == b'.') {
            p += 1;
        }
        if s.get(p) != Some(&b'_') {
            return 0;
        }
        p += 1;
    }
    if !s.get(p).is_some_and(u8::is_ascii_alphabetic) {
        return 0;
    }
    p += 1;
    while p < s.len() && (s[p].is_ascii_alphanumeric() || s[p] == b'-' || s[p] == b'_') {
        p += 1;
    }
    p
}

/// `key_to_index()`: the number of leading digits of `s`, if any.
fn index_len(s: &[u8]) -> usize {
    s.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// `key_to_index(key, NULL)`: the list index a whole key stands for
/// (capped at `i32::MAX`), if it is all digits.
fn key_index(key: &str) -> Option<usize> {
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let max = i32::MAX as usize;
    Some(key.parse::<usize>().map_or(max, |i| i.min(max)))
}

/// The object at `path` below `root`; every step exists and is an object.
fn dict_at<'a>(root: &'a mut Map<String, Value>, path: &[String]) -> &'a mut Map<String, Value> {
    let mut cur = root;
    for step in path {
        cur = match cur.get_mut(step) {
            Some(Value::Object(next)) => next,
            _ => unreachable!("keyval_parse_put made {step} an object"),
        };
    }
    cur
}

/// `keyval_parse_put()`: makes `key` of the object at `path` an object
/// (`value` is `None`) or the string `value`. `shown` is the key as far as
/// error messages quote it.
fn put(
    root: &mut Map<String, Value>,
    path: &[String],
    key: &str,
    value: Option<String>,
    shown: &str,
) -> Result<(), String> {
    let cur = dict_at(root, path);
    match (cur.get(key), value) {
        (Some(Value::Object(_)), None) => Ok(()),
        (Some(Value::String(_)) | None, Some(v)) => {
            cur.insert(key.to_string(), Value::String(v));
            Ok(())
        }
        (None, None) => {
            cur.insert(key.to_string(), Value::Object(Map::new()));
            Ok(())
        }
        _ => Err(format!("Parameters '{shown}.*' used inconsistently")),
    }
}

/// `keyval_parse_one()`: parses the parameter at `pos`, returns where the
/// next one starts.
fn parse_one(
    root: &mut Map<String, Value>,
    params: &str,
    pos: usize,
    implied_key: Option<&str>,
    help: &mut bool,
) -> Result<usize, String> {
    let p = params.as_bytes();
    let rest = &p[pos..];
    let mut len = rest
        .iter()
        .position(|&b| b == b'=' || b == b',')
        .unwrap_or(rest.len());
    let mut key: &[u8] = rest;
    let mut val_end = None;
    if len > 0 && rest.get(len) != Some(&b'=') {
        let help_len = if rest[0] == b'?' {
            1
        } else if rest.starts_with(b"help") {
            4
        } else {
            0
        };
        if help_len == len {
            *help = true;
            let next = pos + len;
            return Ok(if p.get(next) == Some(&b',') {
                next + 1
            } else {
                next
            });
        }
        if let Some(implied) = implied_key {
            key = implied.as_bytes();
            val_end = Some(pos + len);
            len = implied.len();
        }
    }
    let key_end = len;
    let key_text = |end: usize| String::from_utf8_lossy(&key[..end]).into_owned();

    // Fragments: a QAPI name first, then names or list indexes.
    let mut path: Vec<String> = Vec::new();
    let mut s = 0;
    let mut key_in_cur;
    loop {
        let frag = &key[s..key_end];
        let n = if s != 0 && index_len(frag) > 0 {
            index_len(frag)
        } else {
            qapi_name_len(frag)
        };
        if n == 0 || (s + n < key_end && key[s + n] != b'.') {
            return Err(format!("Invalid parameter '{}'", key_text(key_end)));
        }
        if n >= MAX_FRAGMENT {
            let fragment = if s != 0 || s + n != key_end {
                " fragment"
            } else {
                ""
            };
            return Err(format!(
                "Parameter{fragment} '{}' is too long",
                String::from_utf8_lossy(&key[s..s + n])
            ));
        }
        if s != 0 {
            // The previous fragment names an object.
            let (prev, parents) = path.split_last().expect("a previous fragment");
            put(root, parents, prev, None, &key_text(s - 1))?;
        }
        key_in_cur = String::from_utf8_lossy(&key[s..s + n]).into_owned();
        path.push(key_in_cur.clone());
        s += n;
        if key.get(s) != Some(&b'.') || s >= key_end {
            break;
        }
        s += 1;
    }
    path.pop();

    let (value, next) = match val_end {
        Some(end) => {
            let value = params[pos..end].to_string();
            let next = if p.get(end) == Some(&b',') {
                end + 1
            } else {
                end
            };
            (value, next)
        }
        None => {
            if rest.get(key_end) != Some(&b'=') {
                return Err(format!("Expected '=' after parameter '{}'", key_text(s)));
            }
            let mut i = pos + key_end + 1;
            let mut value = Vec::new();
            while i < p.len() {
                if p[i] == b',' {
                    i += 1;
                    if p.get(i) != Some(&b',') {
                        break;
                    }
                }
                value.push(p[i]);
                i += 1;
            }
            (String::from_utf8_lossy(&value).into_owned(), i)
        }
    };
    put(root, &path, &key_in_cur, Some(value), &key_text(key_end))?;
    Ok(next)
}

/// `keyval_listify()`: turns objects whose keys are all list indexes into
/// arrays, depth first. `key_of_cur` holds the fragments leading here.
fn listify(mut cur: Map<String, Value>, key_of_cur: &mut Vec<String>) -> Result<Value, String> {
    let mut has_index = false;
    let mut has_member = false;
    // In QDict order, which decides which of several errors comes first.
    let keys: Vec<String> = order::qdict_order(cur.keys().map(String::as_str))
        .into_iter()
        .map(str::to_string)
        .collect();
    for k in keys {
        if key_index(&k).is_some() {
            has_index = true;
        } else {
            has_member = true;
        }
        if let Some(Value::Object(child)) = cur.get_mut(&k) {
            let child = std::mem::take(child);
            key_of_cur.push(k.clone());
            let listed = listify(child, key_of_cur)?;
            key_of_cur.pop();
            cur.insert(k, listed);
        }
    }
    let prefix: String = key_of_cur.iter().map(|k| format!("{k}.")).collect();
    if has_index && has_member {
        return Err(format!("Parameters '{prefix}*' used inconsistently"));
    }
    if !has_index {
        return Ok(Value::Object(cur));
    }
    // One slot more than there are keys: an index beyond that means a gap.
    let nelt = cur.len() + 1;
    let mut elt: Vec<Option<Value>> = vec![None; nelt];
    let mut max_index = 0;
    for (k, v) in cur {
        let index = key_index(&k).expect("checked above");
        max_index = max_index.max(index);
        if index < nelt - 1 {
            elt[index] = Some(v);
        }
    }
    let mut list = Vec::new();
    for (i, slot) in elt.into_iter().enumerate().take(nelt.min(max_index + 1)) {
        match slot {
            Some(v) => list.push(v),
            None => return Err(format!("Parameter '{prefix}{i}' missing")),
        }
    }
    Ok(Value::Array(list))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(params: &str, implied: Option<&str>) -> Value {
        match parse(params, implied) {
            Ok(p) => {
                assert!(!p.help, "{params}: help");
                Value::Object(p.tree)
            }
            Err(e) => panic!("{params}: {e}"),
        }
    }

    fn err(params: &str, implied: Option<&str>) -> String {
        match parse_no_help(params, implied) {
            Ok(t) => panic!("{params}: parsed as {t:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn flat_and_nested_keys() {
        assert_eq!(
            ok(
                "driver=file,filename=/tmp/x,cache.direct=on,cache.no-flush=off",
                None
            ),
            json!({ "driver": "file", "filename": "/tmp/x",
                    "cache": { "direct": "on", "no-flush": "off" } })
        );
        assert_eq!(ok("", None), json!({}));
        assert_eq!(ok("a=", None), json!({ "a": "" }));
        assert_eq!(ok("a.b.c=1", None), json!({ "a": { "b": { "c": "1" } } }));
    }

    #[test]
    fn double_comma_is_a_literal_comma() {
        assert_eq!(
            ok("filename=a,,b,,,,c,node-name=n", None),
            json!({ "filename": "a,b,,c", "node-name": "n" })
        );
        assert_eq!(ok("a=x,,", None), json!({ "a": "x," }));
        // No escaping in an implied value: `null-co,,x` is `null-co` and
        // then an empty key (qsd: "Invalid parameter ''").
        assert_eq!(err("null-co,,x", Some("driver")), "Invalid parameter ''");
    }

    #[test]
    fn implied_key() {
        assert_eq!(
            ok("null-co,node-name=n", Some("driver")),
            json!({ "driver": "null-co", "node-name": "n" })
        );
        assert_eq!(ok("nbd", Some("type")), json!({ "type": "nbd" }));
        // Only the first parameter, and only without '='.
        assert_eq!(
            ok("driver=raw,file=f", Some("driver")),
            json!({ "driver": "raw", "file": "f" })
        );
        assert_eq!(err("a=1,b", Some("x")), "Expected '=' after parameter 'b'");
        // Without an implied key a bare word is a key without a value.
        assert_eq!(err("unix", None), "Expected '=' after parameter 'unix'");
        // The implied value itself may look like a dotted key.
        assert_eq!(ok("a.b", Some("k")), json!({ "k": "a.b" }));
    }

    #[test]
    fn later_values_replace_earlier_ones() {
        assert_eq!(
            ok("null-co,node-name=a,node-name=b,driver=raw", Some("driver")),
            json!({ "driver": "raw", "node-name": "b" })
        );
    }

    #[test]
    fn lists_from_numbered_keys() {
        assert_eq!(
            ok("x.0=a,x.1=b,y.1.k=2,y.0.k=1", None),
            json!({ "x": ["a", "b"], "y": [{ "k": "1" }, { "k": "2" }] })
        );
        assert_eq!(ok("x.1=b,x.0=a", None), json!({ "x": ["a", "b"] }));
        assert_eq!(ok("a.b.0.0=z", None), json!({ "a": { "b": [["z"]] } }));
        // Texts as qsd 10.0.2 printed them.
        assert_eq!(err("file=x,a.1=y", None), "Parameter 'a.0' missing");
        assert_eq!(err("a.0=y,a.2=z", None), "Parameter 'a.1' missing");
        assert_eq!(err("a.99999999999999=y", None), "Parameter 'a.0' missing");
        assert_eq!(
            err("a.0=y,a.b=z", None),
            "Parameters 'a.*' used inconsistently"
        );
        assert_eq!(
            err("p.q.0=y,p.q.b=z", None),
            "Parameters 'p.q.*' used inconsistently"
        );
    }

    #[test]
    fn inconsistent_use() {
        assert_eq!(
            err("file=node0,file.driver=x", None),
            "Parameters 'file.*' used inconsistently"
        );
        assert_eq!(
            err("file.driver=file,file=x", None),
            "Parameters 'file.*' used inconsistently"
        );
        assert_eq!(
            err("a.b=1,a.b.c=2", None),
            "Parameters 'a.b.*' used inconsistently"
        );
    }

    #[test]
    fn invalid_keys() {
        // Texts as qsd 10.0.2 printed them for --blockdev null-co,KEY=1.
        for (key, msg) in [
            ("=1", "Invalid parameter ''"),
            ("a..b=1", "Invalid parameter 'a..b'"),
            ("a.=1", "Invalid parameter 'a.'"),
            ("0=x", "Invalid parameter '0'"),
            ("a.0x=x", "Invalid parameter 'a.0x'"),
            ("_x=1", "Invalid parameter '_x'"),
            ("a", "Expected '=' after parameter 'a'"),
        ] {
            assert_eq!(err(&format!("null-co,{key}"), Some("driver")), msg, "{key}");
        }
        assert_eq!(err(",node-name=x", Some("driver")), "Invalid parameter ''");
        // Downstream extension names may contain dots.
        assert_eq!(
            ok("__com.redhat_x=1,x-y_z=2", None),
            json!({ "__com.redhat_x": "1", "x-y_z": "2" })
        );
        let long = "a".repeat(128);
        assert_eq!(
            err(&format!("{long}=1"), None),
            format!("Parameter '{long}' is too long")
        );
        assert_eq!(
            err(&format!("x.{long}=1"), None),
            format!("Parameter fragment '{long}' is too long")
        );
        assert!(parse(&format!("{}=1", "a".repeat(127)), None).is_ok());
    }

    #[test]
    fn help_requests() {
        let p = parse("help", Some("qom-type")).expect("parses");
        assert!(p.help);
        assert_eq!(p.tree, Map::new());
        let p = parse("iothread,help,id=x", Some("qom-type")).expect("parses");
        assert!(p.help);
        assert_eq!(
            Value::Object(p.tree),
            json!({ "qom-type": "iothread", "id": "x" })
        );
        assert!(parse("?", None).expect("parses").help);
        // Errors in other parameters still count.
        assert_eq!(
            parse("iothread,id=a,help,x..y=1", Some("qom-type")),
            Err("Invalid parameter 'x..y'".into())
        );
        assert_eq!(
            err("help", Some("driver")),
            "Help is not available for this option"
        );
        assert_eq!(
            err("null-co,help", Some("driver")),
            "Help is not available for this option"
        );
        // `help=x` is an ordinary key.
        assert_eq!(ok("help=x", None), json!({ "help": "x" }));
    }
}
