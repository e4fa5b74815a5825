//! Checking `cfg` predicates given as text before they go into generated
//! code: the compiler's lexer does not return errors to a proc macro but
//! reports them itself (and unwinds), so a predicate must be known good
//! before it is parsed.

/// Checks that `text` is one `cfg` predicate: `name`, `name = "value"`,
/// `all(...)`, `any(...)`, `not(...)`, `true` or `false`.
pub fn check(text: &str) -> Result<(), String> {
    let mut p = Parser { text, pos: 0 };
    p.predicate()?;
    p.skip_ws();
    match p.rest().chars().next() {
        None => Ok(()),
        Some(_) => Err(format!("unexpected `{}` after the predicate", p.rest())),
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.rest().starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn found(&self) -> String {
        match self.rest().chars().next() {
            None => "the end".into(),
            Some(c) => format!("`{c}`"),
        }
    }

    fn ident(&mut self) -> Result<&'a str, String> {
        self.skip_ws();
        let rest = self.rest();
        let len = rest
            .char_indices()
            .find(|&(i, c)| !(c == '_' || c.is_alphanumeric()) || (i == 0 && c.is_numeric()))
            .map_or(rest.len(), |(i, _)| i);
        if len == 0 {
            return Err(format!("expected a name, found {}", self.found()));
        }
        self.pos += len;
        Ok(&rest[..len])
    }

    fn predicate(&mut self) -> Result<(), String> {
        let name = self.ident()?;
        match name {
            "all" | "any" | "not" => {
                if !self.eat('(') {
                    return Err(format!(
                        "expected `(` after `{name}`, found {}",
                        self.found()
                    ));
                }
                let mut count = 0;
                loop {
                    if self.eat(')') {
                        break;
                    }
                    self.predicate()?;
                    count += 1;
                    if !self.eat(',') {
                        if self.eat(')') {
                            break;
                        }
                        return Err(format!(
                            "expected `,` or `)` in `{name}(...)`, found {}",
                            self.found()
                        ));
                    }
                }
                if name == "not" && count != 1 {
                    return Err(format!("`not(...)` takes one predicate, not {count}"));
                }
                Ok(())
            }
            _ => {
                if self.eat('=') {
                    self.string()?;
                }
                Ok(())
            }
        }
    }

    /// A string literal: `"..."` with escapes or a raw string.
    fn string(&mut self) -> Result<(), String> {
        self.skip_ws();
        let rest = self.rest();
        let end = if let Some(raw) = rest.strip_prefix('r') {
            let hashes = raw.len() - raw.trim_start_matches('#').len();
            let close = format!("\"{}", "#".repeat(hashes));
            raw[hashes..]
                .strip_prefix('"')
                .and_then(|body| body.find(&close))
                .map(|i| 1 + hashes + 1 + i + close.len())
        } else if let Some(body) = rest.strip_prefix('"') {
            let mut escaped = false;
            body.char_indices()
                .find(|&(_, c)| {
                    let end = c == '"' && !escaped;
                    escaped = c == '\\' && !escaped;
                    end
                })
                .map(|(i, _)| 1 + i + 1)
        } else {
            return Err(format!(
                "expected a string in quotes after `=`, found {}",
                self.found()
            ));
        };
        let Some(end) = end else {
            return Err("unterminated string".into());
        };
        crate::lit::str_value(&rest[..end])?;
        self.pos += end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn good() {
        for p in [
            "unix",
            "feature = \"fuse\"",
            "target_os=\"linux\"",
            "all()",
            "any()",
            "all(unix, not(windows), any(feature = \"a\", feature = \"b\",),)",
            "feature = r#\"odd \"name\"\"#",
            "feature = \"esc\\\"aped\"",
            "  true ",
        ] {
            assert_eq!(check(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn bad() {
        for (p, why) in [
            ("", "expected a name, found the end"),
            ("feature = \"unterminated", "unterminated string"),
            ("feature = fuse", "expected a string in quotes"),
            ("all(unix", "expected `,` or `)`"),
            ("not(unix, windows)", "takes one predicate, not 2"),
            ("not()", "takes one predicate, not 0"),
            ("unix windows", "unexpected `windows`"),
            ("1abc", "expected a name"),
            ("any(=)", "expected a name, found `=`"),
            ("feature = \"\\q\"", "escapes"),
            ("all", "expected `(` after `all`"),
        ] {
            let e = check(p).expect_err(p);
            assert!(e.contains(why), "{p}: {e}");
        }
    }
}
