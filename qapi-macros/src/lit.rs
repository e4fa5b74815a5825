//! String literals as the compiler prints them, back to their value.
//!
//! `proc_macro::Literal` has no stable accessor for a literal's value, so
//! the macro reads its source form (`"a\tb"`, `r#"..."#`) instead.

/// The value of a string literal in source form: `"..."` with escapes, or a
/// raw string `r"..."` / `r#"..."#`. Byte, C and suffixed literals, and
/// anything else, are refused with a description of what was found.
pub fn str_value(src: &str) -> Result<String, String> {
    if let Some(raw) = src.strip_prefix('r') {
        let hashes = raw.len() - raw.trim_start_matches('#').len();
        let fence = "#".repeat(hashes);
        let body = raw[hashes..]
            .strip_prefix('"')
            .and_then(|b| b.strip_suffix(&format!("\"{fence}")));
        return body.map(str::to_string).ok_or_else(|| not_a_string(src));
    }
    let body = src
        .strip_prefix('"')
        .and_then(|b| b.strip_suffix('"'))
        .ok_or_else(|| not_a_string(src))?;
    unescape(body).ok_or_else(|| format!("cannot read the escapes in {src}"))
}

fn not_a_string(src: &str) -> String {
    let what = if src.starts_with("b\"") || src.starts_with("br") {
        "a byte string"
    } else if src.starts_with("c\"") || src.starts_with("cr") {
        "a C string"
    } else if src.ends_with(|c: char| c.is_alphanumeric() || c == '_') && src.contains('"') {
        "a string with a suffix"
    } else {
        "not a string"
    };
    format!("expected a string literal, found `{src}` ({what})")
}

/// Rust's string escapes: `\n \r \t \\ \0 \' \"`, `\x7F`, `\u{...}` and a
/// backslash before a line break, which skips the break and the
/// whitespace after it.
fn unescape(body: &str) -> Option<String> {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            '\\' => out.push('\\'),
            '0' => out.push('\0'),
            '\'' => out.push('\''),
            '"' => out.push('"'),
            'x' => {
                let hex: String = [chars.next()?, chars.next()?].iter().collect();
                let v = u8::from_str_radix(&hex, 16).ok().filter(|v| *v <= 0x7f)?;
                out.push(char::from(v));
            }
            'u' => {
                if chars.next()? != '{' {
                    return None;
                }
                let mut hex = String::new();
                loop {
                    match chars.next()? {
                        '}' => break,
                        '_' => {}
                        h => hex.push(h),
                    }
                }
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
            }
            '\n' | '\r' => {
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::str_value;

    #[test]
    fn plain_and_escaped() {
        assert_eq!(str_value(r#""a.json""#).as_deref(), Ok("a.json"));
        assert_eq!(
            str_value(r#""feature = \"foo\"""#).as_deref(),
            Ok("feature = \"foo\"")
        );
        assert_eq!(
            str_value(r#""\t\n\r\\\0\'\x41\u{e9}\u{1_F600}""#).as_deref(),
            Ok("\t\n\r\\\0'A\u{e9}\u{1F600}")
        );
        assert_eq!(str_value("\"a\\\n    b\"").as_deref(), Ok("ab"));
        assert_eq!(str_value(r#""""#).as_deref(), Ok(""));
    }

    #[test]
    fn raw() {
        assert_eq!(str_value(r#"r"a\b""#).as_deref(), Ok(r"a\b"));
        assert_eq!(
            str_value(r###"r##"say "#hi""##"###).as_deref(),
            Ok(r##"say "#hi""##)
        );
    }

    #[test]
    fn refused() {
        for (src, what) in [
            (r#"b"x""#, "byte string"),
            (r#"br"x""#, "byte string"),
            (r#"c"x""#, "C string"),
            (r#""x"suffix"#, "suffix"),
            ("42", "not a string"),
            ("'c'", "not a string"),
        ] {
            let e = str_value(src).expect_err(src);
            assert!(e.contains(what), "{src}: {e}");
        }
        assert!(str_value(r#""\q""#).is_err());
        assert!(str_value(r#""\x80""#).is_err());
        assert!(str_value(r#""\u{110000}""#).is_err());
        assert!(str_value(r#""\u{12""#).is_err());
    }
}
