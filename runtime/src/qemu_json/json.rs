//! The JSON form of option arguments (`--blockdev '{"driver": ...}'`),
//! parsed as QEMU's `qobject_from_json()` parses it: its lexer (which also
//! takes single-quoted strings and `\'`), its streamer (which cuts the input
//! into values by counting brackets) and its parser, with their error
//! messages ("JSON parse error, premature EOI", "Expecting at most one JSON
//! value", ...).
//!
//! Numbers keep QEMU's three kinds: an integer that fits `i64`, else one
//! that fits `u64`, else a double.

use serde_json::{Map, Number, Value};

/// QEMU's limits on one value.
const MAX_TOKEN_COUNT: usize = 2 << 20;
const MAX_NESTING: usize = 1 << 10;

#[derive(Debug, Clone, PartialEq)]
enum Token {
    LCurly,
    RCurly,
    LSquare,
    RSquare,
    Colon,
    Comma,
    /// Text including the quotes.
    Str(String),
    Integer(String),
    Float(String),
    Keyword(String),
}

/// Parses `text` as exactly one JSON value.
pub fn parse(text: &str) -> Result<Value, String> {
    let mut result: Option<Result<Value, String>> = None;
    let mut emit = |r: Result<Value, String>| match result {
        None => result = Some(r),
        // A second value (or error) after a value: QEMU reports that
        // instead; anything after an error is ignored.
        Some(Ok(_)) => result = Some(Err("Expecting at most one JSON value".into())),
        Some(Err(_)) => {}
    };
    let mut tokens: Vec<Token> = Vec::new();
    let (mut braces, mut brackets) = (0i64, 0i64);
    let mut lexer = Lexer {
        s: text.as_bytes(),
        pos: 0,
    };
    loop {
        match lexer.next() {
            None => break,
            Some(Err(stray)) => {
                emit(Err(format!("JSON parse error, stray '{stray}'")));
                tokens.clear();
                (braces, brackets) = (0, 0);
                lexer.recover();
            }
            Some(Ok(token)) => {
                match token {
                    Token::LCurly => braces += 1,
                    Token::RCurly => braces -= 1,
                    Token::LSquare => brackets += 1,
                    Token::RSquare => brackets -= 1,
                    _ => {}
                }
                if tokens.len() + 1 > MAX_TOKEN_COUNT {
                    emit(Err("JSON token count limit exceeded".into()));
                    tokens.clear();
                    (braces, brackets) = (0, 0);
                    continue;
                }
                if braces + brackets > MAX_NESTING as i64 {
                    emit(Err("JSON nesting depth limit exceeded".into()));
                    tokens.clear();
                    (braces, brackets) = (0, 0);
                    continue;
                }
                tokens.push(token);
                if (braces > 0 || brackets > 0) && braces >= 0 && brackets >= 0 {
                    continue;
                }
                emit(Parser::run(std::mem::take(&mut tokens)));
                (braces, brackets) = (0, 0);
            }
        }
    }
    if !tokens.is_empty() {
        emit(Parser::run(tokens));
    }
    result.unwrap_or_else(|| Err("Expecting a JSON value".into()))
}

struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    fn text(&self, start: usize, end: usize) -> String {
        String::from_utf8_lossy(&self.s[start..end]).into_owned()
    }

    /// The next token, or `Err` with the text of an invalid one (QEMU's
    /// lexer consumes the offending byte along with it).
    fn next(&mut self) -> Option<Result<Token, String>> {
        let s = self.s;
        while self.pos < s.len() && matches!(s[self.pos], b' ' | b'\t' | b'\r' | b'\n') {
            self.pos += 1;
        }
        let start = self.pos;
        let c = *s.get(start)?;
        self.pos += 1;
        let simple = match c {
            b'{' => Some(Token::LCurly),
            b'}' => Some(Token::RCurly),
            b'[' => Some(Token::LSquare),
            b']' => Some(Token::RSquare),
            b':' => Some(Token::Colon),
            b',' => Some(Token::Comma),
            _ => None,
        };
        if let Some(t) = simple {
            return Some(Ok(t));
        }
        match c {
            b'"' | b'\'' => {
                let mut escape = false;
                while let Some(&b) = s.get(self.pos) {
                    self.pos += 1;
                    // Control characters end a string in error; so do the
                    // bytes UTF-8 never uses.
                    if !(0x20..0xfe).contains(&b) {
                        return Some(Err(self.text(start, self.pos)));
                    }
                    if escape {
                        escape = false;
                    } else if b == b'\\' {
                        escape = true;
                    } else if b == c {
                        return Some(Ok(Token::Str(self.text(start, self.pos))));
                    }
                }
                Some(Err(self.text(start, self.pos)))
            }
            b'-' | b'0'..=b'9' => self.number(start, c),
            b'a'..=b'z' => {
                while s.get(self.pos).is_some_and(u8::is_ascii_lowercase) {
                    self.pos += 1;
                }
                Some(Ok(Token::Keyword(self.text(start, self.pos))))
            }
            _ => Some(Err(self.text(start, self.pos))),
        }
    }

    /// A number: `-? (0 | [1-9][0-9]*) (\.[0-9]+)? ([eE][-+]?[0-9]+)?`.
    /// A character that cannot continue a partial number is consumed into
    /// the error token, as in QEMU ("stray '-}'", "stray '01'").
    fn number(&mut self, start: usize, first: u8) -> Option<Result<Token, String>> {
        let s = self.s;
        let peek = |p: usize| s.get(p).copied();
        let bad = |lexer: &mut Self| {
            if lexer.pos < s.len() {
                lexer.pos += 1;
            }
            Some(Err(lexer.text(start, lexer.pos)))
        };
        let mut c = first;
        if c == b'-' {
            match peek(self.pos) {
                Some(d @ b'0'..=b'9') => {
                    c = d;
                    self.pos += 1;
                }
                _ => return bad(self),
            }
        }
        if c == b'0' {
            if peek(self.pos).is_some_and(|d| d.is_ascii_digit()) {
                return bad(self);
            }
        } else {
            while peek(self.pos).is_some_and(|d| d.is_ascii_digit()) {
                self.pos += 1;
            }
        }
        let mut float = false;
        if peek(self.pos) == Some(b'.') {
            self.pos += 1;
            if !peek(self.pos).is_some_and(|d| d.is_ascii_digit()) {
                return bad(self);
            }
            while peek(self.pos).is_some_and(|d| d.is_ascii_digit()) {
                self.pos += 1;
            }
            float = true;
        }
        // As in QEMU's lexer, a leading 0 takes no exponent unless a
        // fraction follows it: `0e5` is 0 and then the keyword `e`.
        if (float || c != b'0') && matches!(peek(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(peek(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !peek(self.pos).is_some_and(|d| d.is_ascii_digit()) {
                return bad(self);
            }
            while peek(self.pos).is_some_and(|d| d.is_ascii_digit()) {
                self.pos += 1;
            }
            float = true;
        }
        let text = self.text(start, self.pos);
        Some(Ok(if float {
            Token::Float(text)
        } else {
            Token::Integer(text)
        }))
    }

    /// After an error QEMU skips to a structural character (or a control
    /// character other than tab).
    fn recover(&mut self) {
        while let Some(&b) = self.s.get(self.pos) {
            if matches!(b, b'[' | b']' | b'{' | b'}' | b':' | b',') || (b < 0x20 && b != b'\t') {
                return;
            }
            self.pos += 1;
        }
    }
}

struct Parser {
    tokens: std::vec::IntoIter<Token>,
    peeked: Option<Token>,
}

type Parse<T> = Result<T, String>;

fn error(msg: &str) -> String {
    format!("JSON parse error, {msg}")
}

impl Parser {
    fn run(tokens: Vec<Token>) -> Parse<Value> {
        let mut p = Parser {
            tokens: tokens.into_iter(),
            peeked: None,
        };
        p.value()
    }

    fn peek(&mut self) -> Option<&Token> {
        if self.peeked.is_none() {
            self.peeked = self.tokens.next();
        }
        self.peeked.as_ref()
    }

    fn pop(&mut self) -> Option<Token> {
        self.peeked.take().or_else(|| self.tokens.next())
    }

    fn value(&mut self) -> Parse<Value> {
        match self.peek() {
            None => Err(error("premature EOI")),
            Some(Token::LCurly) => self.object(),
            Some(Token::LSquare) => self.array(),
            Some(Token::Str(_) | Token::Integer(_) | Token::Float(_) | Token::Keyword(_)) => {
                match self.pop() {
                    Some(Token::Str(s)) => string(&s).map(Value::String),
                    Some(Token::Integer(s)) => Ok(integer(&s)),
                    Some(Token::Float(s)) => Ok(float(&s)),
                    Some(Token::Keyword(k)) => match k.as_str() {
                        "true" => Ok(Value::Bool(true)),
                        "false" => Ok(Value::Bool(false)),
                        "null" => Ok(Value::Null),
                        _ => Err(error(&format!("invalid keyword '{k}'"))),
                    },
                    _ => unreachable!("peeked a literal"),
                }
            }
            Some(_) => Err(error("expecting value")),
        }
    }

    fn object(&mut self) -> Parse<Value> {
        self.pop();
        let mut map = Map::new();
        match self.peek() {
            None => return Err(error("premature EOI")),
            Some(Token::RCurly) => {
                self.pop();
                return Ok(Value::Object(map));
            }
            Some(_) => {}
        }
        loop {
            self.pair(&mut map)?;
            match self.pop() {
                None => return Err(error("premature EOI")),
                Some(Token::RCurly) => return Ok(Value::Object(map)),
                Some(Token::Comma) => {}
                Some(_) => return Err(error("expected separator in dict")),
            }
        }
    }

    fn pair(&mut self, map: &mut Map<String, Value>) -> Parse<()> {
        if self.peek().is_none() {
            return Err(error("premature EOI"));
        }
        let Value::String(key) = self.value()? else {
            return Err(error("key is not a string in object"));
        };
        match self.pop() {
            None => return Err(error("premature EOI")),
            Some(Token::Colon) => {}
            Some(_) => return Err(error("missing : in object pair")),
        }
        let value = self.value()?;
        if map.contains_key(&key) {
            return Err(error("duplicate key"));
        }
        map.insert(key, value);
        Ok(())
    }

    fn array(&mut self) -> Parse<Value> {
        self.pop();
        let mut list = Vec::new();
        match self.peek() {
            None => return Err(error("premature EOI")),
            Some(Token::RSquare) => {
                self.pop();
                return Ok(Value::Array(list));
            }
            Some(_) => {}
        }
        loop {
            list.push(self.value()?);
            match self.pop() {
                None => return Err(error("premature EOI")),
                Some(Token::RSquare) => return Ok(Value::Array(list)),
                Some(Token::Comma) => {}
                Some(_) => return Err(error("expected separator in list")),
            }
        }
    }
}

/// `parse_string()`: the escapes of JSON plus `\'`; `\u` escapes must make
/// valid Unicode characters (surrogates only in pairs).
fn string(token: &str) -> Parse<String> {
    let quote = token.as_bytes()[0] as char;
    let body = &token[1..token.len() - 1];
    debug_assert!(token.ends_with(quote));
    let mut out = String::new();
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some((_, e)) = chars.next() else {
            return Err(error("invalid escape sequence in string"));
        };
        match e {
            '"' => out.push('"'),
            '\'' => out.push('\''),
            '\\' => out.push('\\'),
            '/' => out.push('/'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let hex4 = |at: usize| {
                    body.get(at..at + 4)
                        .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                };
                let start = i;
                let mut end = i + 6;
                let mut cp = hex4(i + 2).map_or(-1, i64::from);
                if (0xd800..=0xdbff).contains(&cp) && body.get(end..end + 2) == Some("\\u") {
                    cp = match hex4(end + 2) {
                        Some(t) if (0xdc00..=0xdfff).contains(&t) => {
                            end += 6;
                            0x10000 + ((cp & 0x3ff) << 10) + (i64::from(t) & 0x3ff)
                        }
                        _ => -1,
                    };
                }
                let valid = u32::try_from(cp)
                    .ok()
                    .filter(|&c| !((0xfdd0..=0xfdef).contains(&c) || (c & 0xfffe) == 0xfffe))
                    .and_then(char::from_u32);
                match valid {
                    Some(ch) => out.push(ch),
                    None => {
                        let shown = body
                            .get(start..end.min(body.len()))
                            .unwrap_or(&body[start..]);
                        return Err(error(&format!("{shown} is not a valid Unicode character")));
                    }
                }
                while chars.peek().is_some_and(|&(j, _)| j < end) {
                    chars.next();
                }
            }
            _ => return Err(error("invalid escape sequence in string")),
        }
    }
    Ok(out)
}

/// An integer token: `i64` if it fits, else `u64`, else a double.
fn integer(s: &str) -> Value {
    if let Ok(i) = s.parse::<i64>() {
        return Value::from(i);
    }
    if !s.starts_with('-')
        && let Ok(u) = s.parse::<u64>()
    {
        return Value::from(u);
    }
    float(s)
}

/// A double; overflow to infinity is kept as the largest finite value
/// (JSON values here cannot hold infinities).
fn float(s: &str) -> Value {
    let f: f64 = s.parse().unwrap_or(0.0);
    let f = if f.is_finite() {
        f
    } else {
        f64::MAX.copysign(f)
    };
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values() {
        assert_eq!(
            parse(r#"{"driver": "null-co", "size": 1, "x": [1.5, true, null, -2]}"#),
            Ok(json!({ "driver": "null-co", "size": 1, "x": [1.5, true, null, -2] }))
        );
        assert_eq!(parse(" {} "), Ok(json!({})));
        // QEMU's extensions: single quotes and \'.
        assert_eq!(
            parse(r#"{'driver':'null-co','x':'it\'s "quoted"'}"#),
            Ok(json!({ "driver": "null-co", "x": "it's \"quoted\"" }))
        );
        assert_eq!(
            parse(r#"{"s": "\u00e9\ud83d\ude00\n\/"}"#),
            Ok(json!({ "s": "é😀\n/" }))
        );
    }

    #[test]
    fn number_kinds() {
        let v = parse(r#"{"a": 9223372036854775807, "b": 9223372036854775808,
                         "c": 18446744073709551616, "d": -9223372036854775809, "e": 1.0, "f": 1e999}"#)
        .expect("parses");
        assert!(v["a"].is_i64());
        assert!(v["b"].is_u64() && !v["b"].is_i64());
        assert!(v["c"].is_f64());
        assert!(v["d"].is_f64());
        assert!(v["e"].is_f64());
        assert_eq!(v["f"].as_f64(), Some(f64::MAX));
    }

    #[test]
    fn errors_as_qemu_words_them() {
        // Each text is what qemu-storage-daemon 10.0.2 printed for
        // `--blockdev TEXT`.
        for (text, msg) in [
            (r#"{"driver":"null-co""#, "JSON parse error, premature EOI"),
            ("{", "JSON parse error, premature EOI"),
            ("{ ", "JSON parse error, premature EOI"),
            (r#"{"a":{"b":"#, "JSON parse error, premature EOI"),
            ("{]", "JSON parse error, expecting value"),
            (
                r#"{"driver":"null-co",}"#,
                "JSON parse error, expecting value",
            ),
            (
                r#"{"driver":"null-co","x":[1,]}"#,
                "JSON parse error, expecting value",
            ),
            (
                r#"{"driver":"null-co"} x"#,
                "Expecting at most one JSON value",
            ),
            (
                r#"{"driver":"null-co"} {}"#,
                "Expecting at most one JSON value",
            ),
            (
                r#"{"driver":"null-co"}}"#,
                "Expecting at most one JSON value",
            ),
            (
                r#"{"driver":"null-co"}]"#,
                "Expecting at most one JSON value",
            ),
            (r#"{"driver":null-co}"#, "JSON parse error, stray '-c'"),
            (
                r#"{"driver" "null-co"}"#,
                "JSON parse error, missing : in object pair",
            ),
            ("{driver:1}", "JSON parse error, invalid keyword 'driver'"),
            ("{1:1}", "JSON parse error, key is not a string in object"),
            (
                r#"{"driver":"null-co" "x":1}"#,
                "JSON parse error, expected separator in dict",
            ),
            (
                r#"{"driver":"null-co","x":[1 2]}"#,
                "JSON parse error, expected separator in list",
            ),
            (
                r#"{"driver":"null-co","x":tru}"#,
                "JSON parse error, invalid keyword 'tru'",
            ),
            (
                r#"{"driver":"null-co","x":"\q"}"#,
                "JSON parse error, invalid escape sequence in string",
            ),
            (
                r#"{"driver":"null-co","x":"a"#,
                "JSON parse error, stray '\"a'",
            ),
            (
                r#"{"driver":"null-co","x":01}"#,
                "JSON parse error, stray '01'",
            ),
            (
                r#"{"driver":"null-co","x":-}"#,
                "JSON parse error, stray '-}'",
            ),
            (
                r#"{"driver":"null-co","x":@}"#,
                "JSON parse error, stray '@'",
            ),
            (r#"{"x":1,"x":2}"#, "JSON parse error, duplicate key"),
            (
                r#"{"driver":"null-co","x":0e5}"#,
                "JSON parse error, expected separator in dict",
            ),
            (
                r#"{"driver":"null-co","x":1.}"#,
                "JSON parse error, stray '1.}'",
            ),
            (
                r#"{"driver":"null-co","x":True}"#,
                "JSON parse error, stray 'T'",
            ),
            (
                r#"{"driver":"null-co","x":-"#,
                "JSON parse error, stray '-'",
            ),
            (
                r#"{"driver":"null-co","x":"\uffff"}"#,
                "JSON parse error, \\uffff is not a valid Unicode character",
            ),
            (
                r#"{"driver":"null-co","x":"\ud800"}"#,
                "JSON parse error, \\ud800 is not a valid Unicode character",
            ),
        ] {
            assert_eq!(parse(text), Err(msg.to_string()), "{text}");
        }
        // Accepted by qsd (the visitor complained about the member).
        assert!(parse(r#"{"driver":"null-co","x":1e999}"#).is_ok());
        assert!(parse(r#"{"driver":"null-co","x":"\u0000"}"#).is_ok());
    }
}
