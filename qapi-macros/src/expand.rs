//! What `schema!` expands to, as text: independent of `proc_macro` so that
//! it can be unit-tested.

use std::path::{Path, PathBuf};

use qapi_gen::rust::{CondMap, RustOptions};
use qapi_gen::{CheckOptions, Schema};

/// What the schema path is relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Base {
    /// `CARGO_MANIFEST_DIR` of the crate invoking the macro (the default).
    #[default]
    ManifestDir,
    /// The directory of the source file holding the invocation.
    File,
}

/// One `cfg("COND") = "predicate"` argument.
#[derive(Debug, Clone)]
pub struct CfgArg {
    pub cond: String,
    pub predicate: String,
}

/// The macro's arguments, values only.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub path: String,
    pub base: Base,
    pub cfgs: Vec<CfgArg>,
    pub features_only: bool,
    pub doc_style: bool,
}

/// Which argument a problem is about (its span is where the error goes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    Path,
    /// The condition name of the `cfg` argument with this index.
    CfgCond(usize),
    /// The predicate of the `cfg` argument with this index.
    CfgPredicate(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub blame: Blame,
    pub message: String,
}

impl Problem {
    fn path(message: impl Into<String>) -> Self {
        Problem {
            blame: Blame::Path,
            message: message.into(),
        }
    }
}

/// The outcome of loading and generating: the files to track for rebuilds
/// (absolute, existing) and the generated code.
#[derive(Debug)]
pub struct Expansion {
    pub files: Vec<PathBuf>,
    pub code: Result<String, Problem>,
}

/// Where the schema file is: its absolute path, and the name diagnostics
/// print for it, relative to the compiler's working directory when the
/// file is below it (as rustc prints source paths), else absolute.
pub fn locate(base_dir: &Path, path: &str, cwd: &Path) -> (PathBuf, String) {
    let abs = qapi_gen::source::absolute(&cwd.join(base_dir).join(path));
    let cwd = qapi_gen::source::absolute(cwd);
    let name = if abs.starts_with(&cwd) && cwd.parent().is_some() {
        qapi_gen::source::relative(&abs, &cwd)
    } else {
        abs.display().to_string()
    };
    (abs, name)
}

/// Loads the schema at `abs` (named `name` in diagnostics) and generates
/// its Rust code. `base_note` explains, for a missing file, what the path
/// was relative to.
pub fn expand(req: &Request, abs: &Path, name: &str, base_note: &str) -> Expansion {
    let check = CheckOptions {
        doc_style: req.doc_style,
    };
    let schema = match Schema::load(name, &check) {
        Ok(s) => s,
        Err(e) => {
            let files = tracked(e.files());
            let mut message = format!("invalid QAPI schema:\n{e}");
            if !abs.is_file() {
                message.push_str(&format!("\nnote: {base_note}"));
            }
            return Expansion {
                files,
                code: Err(Problem::path(message)),
            };
        }
    };
    let files = tracked(schema.files());
    let code = conds(req, &schema, name).map(|conds| {
        let opts = RustOptions {
            conds,
            source_name: file_name(abs),
        };
        qapi_gen::rust::generate(&schema, &opts)
    });
    Expansion { files, code }
}

/// The condition mapping the arguments ask for. A `cfg` argument naming a
/// condition the schema never uses is an error: most likely a typo, which
/// would otherwise fall back silently to the default rule.
fn conds(req: &Request, schema: &Schema, name: &str) -> Result<CondMap, Problem> {
    let mut map = if req.features_only {
        CondMap::features_only()
    } else {
        CondMap::default()
    };
    let used = qapi_gen::builder::condition_names(schema);
    for (i, c) in req.cfgs.iter().enumerate() {
        if let Some(j) = req.cfgs[..i].iter().position(|p| p.cond == c.cond) {
            return Err(Problem {
                blame: Blame::CfgCond(i),
                message: format!(
                    "condition '{}' is mapped twice (argument {} of the cfg mappings already did)",
                    c.cond,
                    j + 1
                ),
            });
        }
        if !used.contains(&c.cond) {
            let known = if used.is_empty() {
                "it uses no conditions".to_string()
            } else {
                let names: Vec<&str> = used.iter().map(String::as_str).collect();
                format!("it uses: {}", names.join(", "))
            };
            return Err(Problem {
                blame: Blame::CfgCond(i),
                message: format!(
                    "condition '{}' does not occur in QAPI schema {name} ({known})",
                    c.cond
                ),
            });
        }
        if c.predicate.trim().is_empty() {
            return Err(Problem {
                blame: Blame::CfgPredicate(i),
                message: format!("empty cfg predicate for condition '{}'", c.cond),
            });
        }
        map.set(&c.cond, &c.predicate);
    }
    Ok(map)
}

/// The files to track: absolute, and only those that exist (a missing file
/// is already a compile error, and `include_str!` of it would be another).
fn tracked(files: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for f in files {
        let abs = qapi_gen::source::absolute(f);
        if abs.is_file() && !out.contains(&abs) {
            out.push(abs);
        }
    }
    out
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schemas() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemas")
    }

    fn request(path: &str) -> Request {
        Request {
            path: path.to_string(),
            ..Request::default()
        }
    }

    fn run(req: &Request) -> Expansion {
        let cwd = Path::new(env!("CARGO_MANIFEST_DIR"));
        let (abs, name) = locate(&schemas(), &req.path, cwd);
        expand(req, &abs, &name, "paths are relative to tests/schemas")
    }

    #[test]
    fn locate_names_relative_to_cwd_when_below_it() {
        let (abs, name) = locate(Path::new("crate"), "s/../x.json", Path::new("/w"));
        assert_eq!(abs, Path::new("/w/crate/x.json"));
        assert_eq!(name, "crate/x.json");
        let (abs, name) = locate(Path::new("/elsewhere"), "x.json", Path::new("/w"));
        assert_eq!(abs, Path::new("/elsewhere/x.json"));
        assert_eq!(name, "/elsewhere/x.json");
        let (_, name) = locate(Path::new("/a"), "x.json", Path::new("/"));
        assert_eq!(name, "/a/x.json");
    }

    #[test]
    fn tracks_every_file_read() {
        let x = run(&request("api.json"));
        let code = x.code.expect("api.json generates");
        assert!(code.contains("pub trait Commands"));
        let names: Vec<String> = x
            .files
            .iter()
            .map(|f| f.file_name().unwrap_or_default().to_string_lossy().into())
            .collect();
        assert_eq!(names, ["api.json", "types.json", "common.json"]);
        assert!(x.files.iter().all(|f| f.is_absolute()));
    }

    #[test]
    fn cfg_mapping_is_applied() {
        let mut req = request("conditional.json");
        req.features_only = true;
        req.cfgs.push(CfgArg {
            cond: "CONFIG_NEVER".into(),
            predicate: "any()".into(),
        });
        let code = run(&req).code.expect("generates");
        assert!(code.contains("#[cfg(any())]"), "{code}");
        assert!(code.contains("#[cfg(feature = \"extra\")]"), "{code}");
    }

    #[test]
    fn unknown_condition_is_blamed_on_its_name() {
        let mut req = request("conditional.json");
        req.cfgs.push(CfgArg {
            cond: "CONFIG_EXTRA".into(),
            predicate: "all()".into(),
        });
        req.cfgs.push(CfgArg {
            cond: "CONFIG_EXTRAA".into(),
            predicate: "all()".into(),
        });
        let p = run(&req).code.expect_err("typo");
        assert_eq!(p.blame, Blame::CfgCond(1));
        assert!(
            p.message.contains("'CONFIG_EXTRAA' does not occur")
                && p.message.contains("it uses: CONFIG_EXTRA, CONFIG_NEVER"),
            "{}",
            p.message
        );
    }

    #[test]
    fn duplicate_and_empty_cfg() {
        let mut req = request("conditional.json");
        for pred in ["all()", "any()"] {
            req.cfgs.push(CfgArg {
                cond: "CONFIG_EXTRA".into(),
                predicate: pred.into(),
            });
        }
        let p = run(&req).code.expect_err("twice");
        assert_eq!(p.blame, Blame::CfgCond(1));
        req.cfgs.truncate(1);
        req.cfgs[0].predicate = " ".into();
        let p = run(&req).code.expect_err("empty");
        assert_eq!(p.blame, Blame::CfgPredicate(0));
    }

    #[test]
    fn missing_file_explains_the_base() {
        let x = run(&request("no-such.json"));
        let p = x.code.expect_err("missing");
        assert_eq!(p.blame, Blame::Path);
        assert!(
            p.message
                .contains("cannot read schema file 'tests/schemas/no-such.json'"),
            "{}",
            p.message
        );
        assert!(
            p.message
                .ends_with("note: paths are relative to tests/schemas")
        );
        assert!(x.files.is_empty());
    }
}
