//! `schema!`: a QAPI schema turned into Rust at compile time.
//!
//! ```ignore
//! mod qapi {
//!     qapi_macros::schema!("schema/storage-daemon.json");
//! }
//! ```
//!
//! expands to what `qapi_gen::rust::generate` writes for the schema: types
//! with serde, the `Commands` trait, `dispatch`, `commands()`, event types
//! and `qmp_schema()`. The generated code names `::qapi_rt`, so the crate
//! using the macro depends on `qapi-rt`.
//!
//! # Arguments
//!
//! The schema path comes first, then options separated by commas:
//!
//! ```ignore
//! qapi_macros::schema!(
//!     "schema/qapi.json",
//!     relative_to = file,            // path relative to this source file
//!     features_only,                 // conditions are cargo features...
//!     cfg("CONFIG_LINUX") = "target_os = \"linux\"", // ...except these
//!     doc_style,                     // QEMU 10.1 doc typography checks
//! );
//! ```
//!
//! - The path is relative to the invoking crate's `CARGO_MANIFEST_DIR`, or
//!   with `relative_to = file` to the directory of the source file holding
//!   the call (as for `include_str!`). `relative_to = manifest_dir` is the
//!   default, spelled out.
//! - Conditions map to `cfg` predicates as `qapi_gen::rust::CondMap`
//!   says: by default the storage daemon's mapping, with `features_only`
//!   every condition is a cargo feature by the default rule
//!   (`CONFIG_FOO_BAR` becomes `feature = "foo-bar"`). Each
//!   `cfg("COND") = "PREDICATE"` overrides one condition; naming a condition
//!   the schema does not use is an error (a typo would otherwise go
//!   unnoticed).
//! - `doc_style` turns on QEMU 10.1's documentation typography rules.
//!
//! # Rebuilds and errors
//!
//! The expansion holds `const _: &str = include_str!("...")` for every
//! schema file read, so editing any of them rebuilds the crate. A schema
//! that does not check is a compile error at the path argument, with the
//! diagnostics as `qapi-gen check` prints them (`FILE:LINE: message`, FILE
//! relative to the compiler's working directory when below it).
//!
//! # Lints in the expansion
//!
//! The items are `pub`; in a binary or test crate the unused ones draw
//! `dead_code` warnings, so put the call in a module with
//! `#[allow(dead_code)]`. Conditions that map to cargo features the crate
//! does not declare draw `unexpected_cfgs`: declare the features, map the
//! conditions with `cfg(...)`, or allow the lint.
//!
//! Under trybuild, `CARGO_MANIFEST_DIR` is trybuild's generated project,
//! not the crate holding the test: UI tests name schemas with
//! `relative_to = file`.

use std::path::{Path, PathBuf};

use proc_macro::{Delimiter, Group, Ident, Literal, Punct, Spacing, Span, TokenStream, TokenTree};

mod cfg_pred;
mod expand;
mod lit;

use expand::{Base, Blame, CfgArg, Request};

/// Expands to the Rust code generated from a QAPI schema; see the crate
/// documentation for the arguments.
#[proc_macro]
pub fn schema(input: TokenStream) -> TokenStream {
    match schema_impl(input) {
        Ok(tokens) => tokens,
        Err(e) => e.into_tokens(),
    }
}

/// A compile error at a span.
struct Error {
    span: Span,
    message: String,
}

impl Error {
    fn new(span: Span, message: impl Into<String>) -> Self {
        Error {
            span,
            message: message.into(),
        }
    }

    /// `::core::compile_error!("...");` with every token at the error's span.
    fn into_tokens(self) -> TokenStream {
        let span = self.span;
        let mut msg = Literal::string(&self.message);
        msg.set_span(span);
        let mut args = Group::new(Delimiter::Parenthesis, TokenTree::from(msg).into());
        args.set_span(span);
        let tokens: Vec<TokenTree> = vec![
            punct(':', Spacing::Joint, span),
            punct(':', Spacing::Alone, span),
            Ident::new("core", span).into(),
            punct(':', Spacing::Joint, span),
            punct(':', Spacing::Alone, span),
            Ident::new("compile_error", span).into(),
            punct('!', Spacing::Alone, span),
            args.into(),
            punct(';', Spacing::Alone, span),
        ];
        tokens.into_iter().collect()
    }
}

fn punct(c: char, spacing: Spacing, span: Span) -> TokenTree {
    let mut p = Punct::new(c, spacing);
    p.set_span(span);
    p.into()
}

/// The parsed arguments with the spans errors point at.
struct Args {
    req: Request,
    path_span: Span,
    /// (condition, predicate) literal spans of each `cfg` argument.
    cfg_spans: Vec<(Span, Span)>,
}

fn schema_impl(input: TokenStream) -> Result<TokenStream, Error> {
    let args = parse_args(input)?;
    let base_dir = base_dir(&args)?;
    // The compiler's working directory; "/" makes every name absolute.
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let (abs, name) = expand::locate(&base_dir.dir, &args.req.path, &cwd);
    let expansion = expand::expand(&args.req, &abs, &name, &base_dir.note);

    let mut out = TokenStream::new();
    for f in &expansion.files {
        out.extend(include_str_const(f, args.path_span)?);
    }
    let code = expansion.code.map_err(|p| {
        let span = match p.blame {
            Blame::Path => args.path_span,
            Blame::CfgCond(i) => args.cfg_spans.get(i).map_or(args.path_span, |s| s.0),
            Blame::CfgPredicate(i) => args.cfg_spans.get(i).map_or(args.path_span, |s| s.1),
        };
        Error::new(span, p.message)
    });
    match code {
        Ok(code) => {
            out.extend(parse_generated(&code, &name, args.path_span)?);
        }
        Err(e) => out.extend(e.into_tokens()),
    }
    Ok(out)
}

/// The generated code as tokens. Generated text that does not lex is a
/// bug in qapi-gen; the compiler reports lexer errors itself and unwinds
/// out of `parse`, so the unwinding is caught to add what happened.
fn parse_generated(code: &str, name: &str, span: Span) -> Result<TokenStream, Error> {
    let bug = |detail: String| {
        Error::new(
            span,
            format!(
                "qapi-gen generated Rust for {name} that does not lex (a bug in qapi-gen){detail}"
            ),
        )
    };
    match std::panic::catch_unwind(|| code.parse::<TokenStream>()) {
        Ok(Ok(tokens)) => Ok(tokens),
        Ok(Err(e)) => Err(bug(format!(": {e}"))),
        Err(_) => Err(bug(String::new())),
    }
}

/// The directory the schema path is relative to, and how to say so.
struct BaseDir {
    dir: PathBuf,
    note: String,
}

fn base_dir(args: &Args) -> Result<BaseDir, Error> {
    match args.req.base {
        Base::ManifestDir => {
            let dir = std::env::var_os("CARGO_MANIFEST_DIR").ok_or_else(|| {
                Error::new(
                    args.path_span,
                    "CARGO_MANIFEST_DIR is not set (not built by cargo?); \
                     write `relative_to = file` for a path relative to this source file",
                )
            })?;
            let dir = PathBuf::from(dir);
            let note = format!(
                "the path is relative to CARGO_MANIFEST_DIR ({}); \
                 write `relative_to = file` for a path relative to this source file",
                dir.display()
            );
            Ok(BaseDir { dir, note })
        }
        Base::File => {
            let file = args.path_span.local_file().ok_or_else(|| {
                Error::new(
                    args.path_span,
                    "`relative_to = file`: the compiler does not tell which file holds \
                     this call; use a path relative to CARGO_MANIFEST_DIR",
                )
            })?;
            let dir = file.parent().map_or_else(PathBuf::new, Path::to_path_buf);
            let note = format!(
                "with `relative_to = file` the path is relative to {}",
                if dir.as_os_str().is_empty() {
                    ".".into()
                } else {
                    dir.display().to_string()
                }
            );
            Ok(BaseDir { dir, note })
        }
    }
}

/// `const _: &str = ::core::include_str!("FILE");`
fn include_str_const(file: &Path, span: Span) -> Result<TokenStream, Error> {
    let path = file.to_str().ok_or_else(|| {
        Error::new(
            span,
            format!(
                "cannot track {} for rebuilds: the path is not UTF-8",
                file.display()
            ),
        )
    })?;
    let mut code: TokenStream = "const _: &str = ::core::include_str!"
        .parse()
        .map_err(|e| Error::new(span, format!("internal error: {e}")))?;
    let mut lit = Literal::string(path);
    lit.set_span(span);
    let mut group = Group::new(Delimiter::Parenthesis, TokenTree::from(lit).into());
    group.set_span(span);
    code.extend([TokenTree::from(group), punct(';', Spacing::Alone, span)]);
    Ok(code)
}

const USAGE: &str = "expected `schema!(\"path/to/schema.json\", OPTION, ...)` with options \
                     `relative_to = file`, `relative_to = manifest_dir`, `features_only`, \
                     `doc_style`, `cfg(\"CONDITION\") = \"cfg predicate\"`";

/// Tokens with invisible groups (from `macro_rules!` fragments) opened.
fn flatten(input: TokenStream) -> Vec<TokenTree> {
    let mut out = Vec::new();
    for t in input {
        match t {
            TokenTree::Group(g) if g.delimiter() == Delimiter::None => {
                out.extend(flatten(g.stream()));
            }
            t => out.push(t),
        }
    }
    out
}

/// A string literal's value, or an error at its span.
fn string_lit(t: &TokenTree, what: &str) -> Result<(String, Span), Error> {
    match t {
        TokenTree::Literal(l) => lit::str_value(&l.to_string())
            .map(|v| (v, l.span()))
            .map_err(|e| Error::new(l.span(), format!("{what}: {e}"))),
        other => Err(Error::new(
            other.span(),
            format!("{what}: expected a string literal, found `{other}`"),
        )),
    }
}

fn parse_args(input: TokenStream) -> Result<Args, Error> {
    let tokens = flatten(input);
    let mut options = tokens.split(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == ','));
    let first = options.next().unwrap_or(&[]);
    let [path_tok] = first else {
        let span = first.first().map_or_else(Span::call_site, TokenTree::span);
        let is_macro = matches!(first.get(1), Some(TokenTree::Punct(p)) if p.as_char() == '!');
        let message = if is_macro {
            "the schema path must be a string literal: macros such as `concat!` are not \
             expanded here (write `relative_to = file` for a path relative to this file)"
                .to_string()
        } else {
            format!("the first argument is the schema path; {USAGE}")
        };
        return Err(Error::new(span, message));
    };
    let (path, path_span) = string_lit(path_tok, "the schema path")?;
    let mut args = Args {
        req: Request {
            path,
            ..Request::default()
        },
        path_span,
        cfg_spans: Vec::new(),
    };
    let mut seen: Vec<String> = Vec::new();
    let mut options = options.peekable();
    while let Some(option) = options.next() {
        if option.is_empty() {
            if options.peek().is_none() {
                break; // trailing comma
            }
            return Err(Error::new(path_span, format!("empty argument; {USAGE}")));
        }
        parse_option(option, &mut args, &mut seen)?;
    }
    Ok(args)
}

fn parse_option(
    option: &[TokenTree],
    args: &mut Args,
    seen: &mut Vec<String>,
) -> Result<(), Error> {
    let TokenTree::Ident(name) = &option[0] else {
        return Err(Error::new(
            option[0].span(),
            format!("unexpected `{}`; {USAGE}", option[0]),
        ));
    };
    let key = name.to_string();
    if key != "cfg" {
        if seen.contains(&key) {
            return Err(Error::new(name.span(), format!("`{key}` given twice")));
        }
        seen.push(key.clone());
    }
    let rest = &option[1..];
    let trailing = |rest: &[TokenTree]| -> Result<(), Error> {
        match rest.first() {
            None => Ok(()),
            Some(t) => Err(Error::new(
                t.span(),
                format!("unexpected `{t}` after `{key}`; options are separated by commas"),
            )),
        }
    };
    match key.as_str() {
        "features_only" => {
            trailing(rest)?;
            args.req.features_only = true;
        }
        "doc_style" => {
            trailing(rest)?;
            args.req.doc_style = true;
        }
        "relative_to" => {
            let value = equals_value(
                &option[..1],
                rest,
                "`relative_to = file` or `relative_to = manifest_dir`",
            )?;
            let TokenTree::Ident(v) = value else {
                return Err(Error::new(
                    value.span(),
                    format!("expected `file` or `manifest_dir`, found `{value}`"),
                ));
            };
            args.req.base = match v.to_string().as_str() {
                "file" => Base::File,
                "manifest_dir" => Base::ManifestDir,
                other => {
                    return Err(Error::new(
                        v.span(),
                        format!("expected `file` or `manifest_dir`, found `{other}`"),
                    ));
                }
            };
            trailing(&rest[2..])?;
        }
        "cfg" => {
            let shape = "`cfg(\"CONDITION\") = \"cfg predicate\"`";
            let cond = match rest.first() {
                Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis => {
                    let inner = flatten(g.stream());
                    match inner.as_slice() {
                        [t] => string_lit(t, "the condition name")?,
                        _ => {
                            return Err(Error::new(
                                g.span(),
                                format!("expected one condition name in quotes: {shape}"),
                            ));
                        }
                    }
                }
                _ => {
                    return Err(Error::new(name.span(), format!("expected {shape}")));
                }
            };
            let value = equals_value(&option[..2], &rest[1..], shape)?;
            let (predicate, pred_span) = string_lit(value, "the cfg predicate")?;
            if let Err(e) = cfg_pred::check(&predicate) {
                return Err(Error::new(
                    pred_span,
                    format!("`{predicate}` is not a cfg predicate: {e}"),
                ));
            }
            trailing(&rest[3..])?;
            args.req.cfgs.push(CfgArg {
                cond: cond.0,
                predicate,
            });
            args.cfg_spans.push((cond.1, pred_span));
        }
        other => {
            return Err(Error::new(
                name.span(),
                format!("unknown option `{other}`; {USAGE}"),
            ));
        }
    }
    Ok(())
}

/// The token after `=` in `NAME = VALUE`; `before` is what precedes the
/// `=`, where an error about a missing `=` points.
fn equals_value<'a>(
    before: &[TokenTree],
    rest: &'a [TokenTree],
    shape: &str,
) -> Result<&'a TokenTree, Error> {
    match rest {
        [TokenTree::Punct(p), value, ..] if p.as_char() == '=' => Ok(value),
        [TokenTree::Punct(p)] if p.as_char() == '=' => Err(Error::new(
            p.span(),
            format!("a value must follow `=`: {shape}"),
        )),
        [t, ..] => Err(Error::new(t.span(), format!("expected `=`: {shape}"))),
        [] => {
            let span = before.last().map_or_else(Span::call_site, TokenTree::span);
            let written: Vec<String> = before.iter().map(ToString::to_string).collect();
            Err(Error::new(
                span,
                format!("`{}` needs a value: {shape}", written.join("")),
            ))
        }
    }
}
