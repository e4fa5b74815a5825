//! Reading schema files: the pest grammar turns text into values and doc
//! blocks, one top-level item at a time; directives (`include`, `pragma`)
//! are carried out as they are met, as QEMU does.

use std::collections::HashSet;
use std::path::PathBuf;
use std::rc::Rc;

use pest::Parser as _;
use pest::error::{ErrorVariant, InputLocation};
use pest::iterators::Pair;

use crate::diagnostic::Diagnostic;
use crate::doc::{Doc, DocLine, DocOptions};
use crate::source::{Info, SourceFile, absolute, dirname, join};
use crate::value::{Dict, Value};

#[derive(pest_derive::Parser)]
#[grammar = "grammar.pest"]
struct Grammar;

/// Schema-wide settings made by `pragma` directives.
#[derive(Debug, Clone, Default)]
pub struct Pragma {
    pub doc_required: bool,
    pub command_name_exceptions: Vec<String>,
    pub command_returns_exceptions: Vec<String>,
    pub documentation_exceptions: Vec<String>,
    pub member_name_exceptions: Vec<String>,
}

/// A top-level expression with its location and documentation.
#[derive(Debug, Clone)]
pub struct Expr {
    pub dict: Dict,
    pub info: Info,
    /// Index into [`Parsed::docs`].
    pub doc: Option<usize>,
    /// For `include` expressions: the included file's name as
    /// `join(dirname(including file), include)`.
    pub include: Option<String>,
}

/// Everything read from a top file and its includes.
#[derive(Debug, Default)]
pub struct Parsed {
    pub exprs: Vec<Expr>,
    pub docs: Vec<Doc>,
    pub pragma: Pragma,
    pub files: Vec<PathBuf>,
}

/// Reads `name` and everything it includes.
/// On failure, also the files read so far (for rebuild tracking).
pub fn parse_schema(
    name: &str,
    doc_opts: DocOptions,
) -> Result<Parsed, (Diagnostic, Vec<PathBuf>)> {
    let mut parser = SchemaParser {
        out: Parsed::default(),
        included: HashSet::new(),
        doc_opts,
    };
    let file = Rc::new(SourceFile {
        name: name.to_string(),
        abs: absolute(name.as_ref()),
        included_from: None,
    });
    let text = match std::fs::read(name) {
        Ok(bytes) => bytes,
        Err(e) => {
            let msg = format!("cannot read schema file '{name}': {}", os_reason(&e));
            return Err((Diagnostic::bare(msg), vec![file.abs.clone()]));
        }
    };
    match parser.parse_file(file, &text) {
        Ok(()) => Ok(parser.out),
        Err(d) => Err((d, parser.out.files)),
    }
}

/// The OS reason without Rust's "(os error N)" suffix.
fn os_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

struct SchemaParser {
    out: Parsed,
    included: HashSet<PathBuf>,
    doc_opts: DocOptions,
}

/// Line and column arithmetic over one file's text, QEMU style: lines
/// counted by `\n`, columns with tabs expanded to the next multiple of 8.
pub(crate) struct Text<'a> {
    pub src: &'a str,
    pub file: Rc<SourceFile>,
    /// Byte offset of the start of every line.
    line_starts: Vec<usize>,
}

impl<'a> Text<'a> {
    pub fn new(src: &'a str, file: Rc<SourceFile>) -> Self {
        let line_starts = std::iter::once(0)
            .chain(memchr::memchr_iter(b'\n', src.as_bytes()).map(|i| i + 1))
            .collect();
        Text {
            src,
            file,
            line_starts,
        }
    }

    pub fn line_of(&self, pos: usize) -> u32 {
        self.line_starts.partition_point(|&s| s <= pos) as u32
    }

    pub fn line_start(&self, pos: usize) -> usize {
        let line = self.line_of(pos) as usize;
        self.line_starts[line.saturating_sub(1)]
    }

    pub fn col_of(&self, pos: usize) -> u32 {
        let start = self.line_start(pos);
        let mut col = 1u32;
        for ch in self.src[start..pos.min(self.src.len())].chars() {
            col = if ch == '\t' {
                (col + 7) % 8 + 1
            } else {
                col + 1
            };
        }
        col
    }

    pub fn info_at(&self, pos: usize) -> Info {
        Info::new(self.file.clone(), self.line_of(pos))
    }

    pub fn error_at(&self, pos: usize, msg: impl Into<String>) -> Diagnostic {
        Diagnostic::at_col(&self.info_at(pos), self.col_of(pos), msg)
    }
}

impl SchemaParser {
    fn parse_file(&mut self, file: Rc<SourceFile>, bytes: &[u8]) -> Result<(), Diagnostic> {
        self.included.insert(file.abs.clone());
        self.out.files.push(file.abs.clone());
        let src = match std::str::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => {
                let text = Text::new(
                    std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""),
                    file,
                );
                let pos = text.src.len();
                return Err(text.error_at(pos, "file is not valid UTF-8 text"));
            }
        };
        let text = Text::new(src, file.clone());
        let mut cur_doc: Option<usize> = None;
        if let Ok(mut pairs) = Grammar::parse(Rule::schema, src) {
            let items = pairs
                .next()
                .map(|p| p.into_inner().filter(|p| p.as_rule() == Rule::item));
            for item in items.into_iter().flatten() {
                let end = item.as_span().end();
                check_token(&text, skip_gap(src, end))?;
                self.item(&text, item, 0, &mut cur_doc)?;
            }
            return self.reject_expr_doc(cur_doc);
        }
        let mut pos = skip_gap(src, 0);
        while pos < src.len() {
            let item = match Grammar::parse(Rule::item, &src[pos..]) {
                Ok(mut pairs) => pairs
                    .next()
                    .ok_or_else(|| text.error_at(pos, "empty item"))?,
                Err(e) => return Err(explain_failure(&text, pos, &e)),
            };
            let next = skip_gap(src, pos + item.as_span().end());
            // QEMU's lexer reads the token after an item before the item is
            // acted on: a malformed token there is reported first.
            check_token(&text, next)?;
            self.item(&text, item, pos, &mut cur_doc)?;
            pos = next;
        }
        self.reject_expr_doc(cur_doc)
    }

    /// Acts on one top-level item found at byte offset `base` + its span.
    fn item(
        &mut self,
        text: &Text<'_>,
        item: Pair<'_, Rule>,
        base: usize,
        cur_doc: &mut Option<usize>,
    ) -> Result<(), Diagnostic> {
        let pos = base + item.as_span().start();
        let item = item
            .into_inner()
            .next()
            .ok_or_else(|| text.error_at(pos, "empty item"))?;
        match item.as_rule() {
            Rule::doc_block => {
                self.reject_expr_doc(*cur_doc)?;
                let lines: Vec<DocLine> = item
                    .into_inner()
                    .map(|p| DocLine {
                        text: p.as_str(),
                        pos: base + p.as_span().start(),
                    })
                    .collect();
                let doc = Doc::parse(text, &lines, self.doc_opts)?;
                self.out.docs.push(doc);
                *cur_doc = Some(self.out.docs.len() - 1);
            }
            _ => {
                let info = text.info_at(pos);
                let value = walk_value(text, base, first_child(item, text, pos)?)?;
                let Value::Dict(dict) = value else {
                    return Err(Diagnostic::new(
                        &info,
                        "a top-level expression must be an object",
                    ));
                };
                if dict.contains("include") {
                    self.reject_expr_doc(*cur_doc)?;
                    self.include(text, dict, info)?;
                } else if dict.contains("pragma") {
                    self.reject_expr_doc(*cur_doc)?;
                    self.pragma(dict, &info)?;
                } else {
                    if let Some(d) = *cur_doc {
                        let doc = &self.out.docs[d];
                        if doc.symbol.is_none() {
                            return Err(Diagnostic::new(
                                &doc.info,
                                "this documentation block must name the definition it documents (start it with '@NAME:')",
                            ));
                        }
                    }
                    self.out.exprs.push(Expr {
                        dict,
                        info,
                        doc: *cur_doc,
                        include: None,
                    });
                }
                *cur_doc = None;
            }
        }
        Ok(())
    }

    fn reject_expr_doc(&self, doc: Option<usize>) -> Result<(), Diagnostic> {
        if let Some(d) = doc {
            let doc = &self.out.docs[d];
            if let Some(sym) = &doc.symbol {
                return Err(Diagnostic::new(
                    &doc.info,
                    format!(
                        "documentation for '{sym}' must be followed directly by its definition"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn include(&mut self, text: &Text<'_>, dict: Dict, info: Info) -> Result<(), Diagnostic> {
        if dict.len() != 1 {
            return Err(Diagnostic::new(
                &info,
                "an 'include' directive takes the single key 'include'",
            ));
        }
        let Some(include) = dict.get_str("include") else {
            return Err(Diagnostic::new(
                &info,
                "the value of 'include' must be a string (a file name)",
            ));
        };
        let incl_name = join(dirname(&text.file.name), include);
        let incl_abs = absolute(incl_name.as_ref());
        self.out.exprs.push(Expr {
            dict: dict.clone(),
            info: info.clone(),
            doc: None,
            include: Some(incl_name.clone()),
        });
        // A file may not include itself, directly or through others.
        let mut ancestor = Some(info.clone());
        while let Some(a) = ancestor {
            if a.file.abs == incl_abs {
                return Err(Diagnostic::new(
                    &info,
                    format!("including {include} here would make an inclusion loop"),
                ));
            }
            ancestor = a.file.included_from.clone();
        }
        if self.included.contains(&incl_abs) {
            return Ok(());
        }
        let bytes = std::fs::read(&incl_name).map_err(|e| {
            Diagnostic::new(
                &info,
                format!("cannot read include file '{incl_name}': {}", os_reason(&e)),
            )
        })?;
        let file = Rc::new(SourceFile {
            name: incl_name,
            abs: incl_abs,
            included_from: Some(info),
        });
        self.parse_file(file, &bytes)
    }

    fn pragma(&mut self, dict: Dict, info: &Info) -> Result<(), Diagnostic> {
        if dict.len() != 1 {
            return Err(Diagnostic::new(
                info,
                "a 'pragma' directive takes the single key 'pragma'",
            ));
        }
        let Some(Value::Dict(settings)) = dict.get("pragma") else {
            return Err(Diagnostic::new(
                info,
                "the value of 'pragma' must be an object",
            ));
        };
        for (name, value) in settings.iter() {
            let list = || -> Result<Vec<String>, Diagnostic> {
                match value {
                    Value::List(items) => items
                        .iter()
                        .map(|v| v.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| {
                            Diagnostic::new(
                                info,
                                format!("pragma {name} must be a list of strings"),
                            )
                        }),
                    _ => Err(Diagnostic::new(
                        info,
                        format!("pragma {name} must be a list of strings"),
                    )),
                }
            };
            let p = &mut self.out.pragma;
            match name {
                "doc-required" => match value {
                    Value::Bool(b) => p.doc_required = *b,
                    _ => {
                        return Err(Diagnostic::new(
                            info,
                            "pragma 'doc-required' must be true or false",
                        ));
                    }
                },
                "command-name-exceptions" => p.command_name_exceptions = list()?,
                "command-returns-exceptions" => p.command_returns_exceptions = list()?,
                "documentation-exceptions" => p.documentation_exceptions = list()?,
                "member-name-exceptions" => p.member_name_exceptions = list()?,
                other => {
                    return Err(Diagnostic::new(
                        info,
                        format!(
                            "unknown pragma '{other}'; known pragmas are 'doc-required', \
                             'command-name-exceptions', 'command-returns-exceptions', \
                             'documentation-exceptions' and 'member-name-exceptions'"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn first_child<'a>(
    pair: Pair<'a, Rule>,
    text: &Text<'_>,
    pos: usize,
) -> Result<Pair<'a, Rule>, Diagnostic> {
    children(pair)
        .next()
        .ok_or_else(|| text.error_at(pos, "expected a value"))
}

/// Inner pairs without the comments between tokens.
fn children(pair: Pair<'_, Rule>) -> impl Iterator<Item = Pair<'_, Rule>> {
    pair.into_inner()
        .filter(|p| p.as_rule() != Rule::comment_text)
}

/// Skips blanks and plain `#` comments (not `##` lines).
fn skip_gap(src: &str, mut pos: usize) -> usize {
    let bytes = src.as_bytes();
    while pos < bytes.len() {
        match bytes[pos] {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0x1c..=0x1f => pos += 1,
            b'#' if bytes.get(pos + 1) != Some(&b'#') => {
                pos = src[pos..].find('\n').map_or(src.len(), |i| pos + i);
            }
            _ => break,
        }
    }
    pos
}

/// Converts a parsed value, validating strings the way QEMU's lexer does.
fn walk_value(text: &Text<'_>, base: usize, pair: Pair<'_, Rule>) -> Result<Value, Diagnostic> {
    let at = base + pair.as_span().start();
    match pair.as_rule() {
        Rule::string => Ok(Value::Str(decode_string(text, at, pair.as_str())?)),
        Rule::boolean => Ok(Value::Bool(pair.as_str() == "true")),
        Rule::array => {
            let mut items = Vec::new();
            for p in children(pair) {
                if matches!(
                    p.as_rule(),
                    Rule::object | Rule::array | Rule::string | Rule::boolean
                ) {
                    items.push(walk_value(text, base, p)?);
                }
            }
            Ok(Value::List(items))
        }
        Rule::object => {
            let mut dict = Dict::default();
            for p in children(pair).filter(|p| p.as_rule() == Rule::pair) {
                let mut inner = children(p);
                let (Some(key), Some(_colon), Some(val)) =
                    (inner.next(), inner.next(), inner.next())
                else {
                    return Err(text.error_at(at, "malformed member"));
                };
                let key = walk_value(text, base, key)?;
                let val_pos = base + val.as_span().start();
                // QEMU reads the value's first token before checking the key.
                if val.as_rule() == Rule::string {
                    decode_string(text, val_pos, val.as_str())?;
                }
                let Value::Str(key) = key else {
                    return Err(text.error_at(at, "malformed key"));
                };
                if dict.contains(&key) {
                    return Err(
                        text.error_at(val_pos, format!("key '{key}' appears twice in this object"))
                    );
                }
                let val = walk_value(text, base, val)?;
                dict.0.push((key, val));
            }
            Ok(Value::Dict(dict))
        }
        _ => Err(text.error_at(at, "expected a value")),
    }
}

/// Decodes a quoted string: only `\\` escapes, only printable ASCII.
/// Errors point at the opening quote, as QEMU's do.
fn decode_string(text: &Text<'_>, at: usize, raw: &str) -> Result<String, Diagnostic> {
    // Fast path: closed, no escapes, printable ASCII.
    if raw.len() >= 2 && raw.ends_with('\'') {
        let inner = &raw[1..raw.len() - 1];
        if inner
            .bytes()
            .all(|b| (32..127).contains(&b) && b != b'\\' && b != b'\'')
        {
            return Ok(inner.to_string());
        }
    }
    let body = raw.strip_prefix('\'').unwrap_or(raw);
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(ch) = chars.next() {
        let ch = match ch {
            '\'' => return Ok(out),
            '\\' => match chars.next() {
                Some('\\') => '\\',
                Some(other) => {
                    return Err(text.error_at(
                        at,
                        format!(
                            "unknown escape \\{other} (the only escape in QAPI strings is \\\\)"
                        ),
                    ));
                }
                None => break,
            },
            c => c,
        };
        if (ch as u32) < 32 || (ch as u32) >= 127 {
            return Err(text.error_at(at, "strings may hold printable ASCII characters only"));
        }
        out.push(ch);
    }
    Err(text.error_at(
        at,
        "string is not closed: missing \"'\" before the end of the line",
    ))
}

/// The token starting at `pos`, as the lexer sees it.
fn lexeme_at<'a>(text: &Text<'a>, pos: usize) -> Option<Pair<'a, Rule>> {
    let lexeme = Grammar::parse(Rule::lexeme, &text.src[pos..])
        .ok()?
        .next()?;
    lexeme.into_inner().next()
}

/// Reports the token at `pos` if it is malformed (stray text, bad string).
fn check_token(text: &Text<'_>, pos: usize) -> Result<(), Diagnostic> {
    if pos >= text.src.len()
        || matches!(
            text.src.as_bytes()[pos],
            b'{' | b'}' | b'[' | b']' | b':' | b',' | b'#'
        )
    {
        return Ok(());
    }
    let Some(tok) = lexeme_at(text, pos) else {
        return Ok(());
    };
    match tok.as_rule() {
        Rule::string | Rule::unterminated_string => {
            decode_string(text, pos, tok.as_str()).map(|_| ())
        }
        Rule::stray => Err(text.error_at(pos, format!("stray '{}'", tok.as_str()))),
        _ => Ok(()),
    }
}

/// Turns a pest failure into QEMU's diagnosis: the first malformed token up
/// to the failure point, or else "expected ..." at the offending token.
fn explain_failure(text: &Text<'_>, base: usize, err: &pest::error::Error<Rule>) -> Diagnostic {
    let fail = base
        + match err.location {
            InputLocation::Pos(p) => p,
            InputLocation::Span((s, _)) => s,
        };
    // Walk the tokens from the start of the item up to the failure.
    let mut pos = base;
    while pos <= fail && pos < text.src.len() {
        let Some(lexeme) = Grammar::parse(Rule::lexeme, &text.src[pos..])
            .ok()
            .and_then(|mut p| p.next())
        else {
            break;
        };
        let tok = lexeme;
        if let Err(d) = check_token(text, pos) {
            return d;
        }
        let len = tok.as_str().len();
        if len == 0 {
            break;
        }
        pos += len;
    }
    let positives = match &err.variant {
        ErrorVariant::ParsingError { positives, .. } => positives.clone(),
        ErrorVariant::CustomError { .. } => Vec::new(),
    };
    // At the end of input QEMU points at the final newline.
    let at_eof = text.src[fail.min(text.src.len())..].trim_start().is_empty();
    let where_ = if at_eof {
        if text.src.ends_with('\n') {
            text.src.len() - 1
        } else {
            text.src.len()
        }
    } else {
        fail
    };
    if positives
        .iter()
        .any(|r| matches!(r, Rule::doc_text | Rule::doc_fence))
    {
        return text.error_at(
            where_,
            "documentation block is not closed: expected a '#' line or the closing '##'",
        );
    }
    let mut words: Vec<&str> = Vec::new();
    for r in &positives {
        let w = match r {
            Rule::object | Rule::open_brace => "'{'",
            Rule::array | Rule::open_bracket => "'['",
            Rule::close_brace => "'}'",
            Rule::close_bracket => "']'",
            Rule::comma => "','",
            Rule::colon => "':'",
            Rule::string | Rule::pair => "a string",
            Rule::boolean => "true or false",
            Rule::doc_block => "'##'",
            _ => continue,
        };
        if !words.contains(&w) {
            words.push(w);
        }
    }
    let found = if at_eof {
        "end of file".to_string()
    } else {
        describe_token(text, fail)
    };
    let expected = match words.len() {
        0 => "a value".to_string(),
        1 => words[0].to_string(),
        n => format!("{} or {}", words[..n - 1].join(", "), words[n - 1]),
    };
    text.error_at(where_, format!("expected {expected}, found {found}"))
}

fn describe_token(text: &Text<'_>, pos: usize) -> String {
    match lexeme_at(text, pos) {
        Some(t) if t.as_rule() == Rule::line_comment => {
            "a '##' line inside an expression".to_string()
        }
        Some(t) => {
            let s = t.as_str();
            let short: String = s.chars().take(20).collect();
            format!("'{short}'")
        }
        None => "end of file".to_string(),
    }
}
