//! Ways into the Rust backend for build scripts and the CLI: a builder in
//! the style of `prost-build`, and a standalone-crate writer.
//!
//! ```no_run
//! // build.rs
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     qapi_gen::Config::new()
//!         .cfg("CONFIG_FUSE", "feature = \"fuse\"")
//!         .compile("schema/storage-daemon.json")?;
//!     Ok(())
//! }
//! // lib.rs: include!(concat!(env!("OUT_DIR"), "/qapi.rs"));
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::diagnostic::SchemaError;
use crate::rust::{CondMap, RustOptions, generate};
use crate::schema::{CheckOptions, Schema};

/// Errors of the build front ends.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Schema(#[from] SchemaError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no output directory: set OUT_DIR (cargo does in build scripts) or call out_dir()")]
    NoOutDir,
    /// The generator produced something that is not Rust: a qapi-gen bug.
    #[error("qapi-gen bug: {0}")]
    Generated(String),
}

/// Configuration for generating Rust from a schema in a build script.
#[derive(Debug, Clone)]
pub struct Config {
    out_dir: Option<PathBuf>,
    file_name: String,
    conds: CondMap,
    check: CheckOptions,
    emit_rerun: bool,
    pretty: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

impl Config {
    /// Defaults: output to `$OUT_DIR/qapi.rs`, the storage daemon's
    /// condition mapping (see [`CondMap`]), `cargo:rerun-if-changed` lines.
    pub fn new() -> Self {
        Config {
            out_dir: None,
            file_name: "qapi.rs".into(),
            conds: CondMap::default(),
            check: CheckOptions::default(),
            emit_rerun: true,
            pretty: true,
        }
    }

    pub fn out_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.out_dir = Some(dir.into());
        self
    }

    pub fn file_name(&mut self, name: impl Into<String>) -> &mut Self {
        self.file_name = name.into();
        self
    }

    /// Maps condition `cond` to the `cfg` predicate `predicate`.
    pub fn cfg(&mut self, cond: &str, predicate: &str) -> &mut Self {
        self.conds.set(cond, predicate);
        self
    }

    /// Replaces the whole condition mapping.
    pub fn conds(&mut self, conds: CondMap) -> &mut Self {
        self.conds = conds;
        self
    }

    pub fn doc_style(&mut self, on: bool) -> &mut Self {
        self.check.doc_style = on;
        self
    }

    /// Whether to check the output with syn and lay it out with
    /// prettyplease (default: yes).
    pub fn pretty(&mut self, on: bool) -> &mut Self {
        self.pretty = on;
        self
    }

    /// Whether to print `cargo:rerun-if-changed` for every schema file.
    pub fn emit_rerun_if_changed(&mut self, on: bool) -> &mut Self {
        self.emit_rerun = on;
        self
    }

    /// Checks the schema and writes the generated module (only when its
    /// content changed). Returns the path written.
    pub fn compile(&self, schema: impl AsRef<Path>) -> Result<PathBuf, BuildError> {
        let schema_path = schema.as_ref();
        let loaded = Schema::load(schema_path, &self.check);
        if self.emit_rerun {
            let files = match &loaded {
                Ok(s) => s.files().to_vec(),
                Err(e) => e.files().to_vec(),
            };
            for f in files {
                println!("cargo:rerun-if-changed={}", f.display());
            }
        }
        let loaded = loaded?;
        let out_dir = match &self.out_dir {
            Some(d) => d.clone(),
            None => std::env::var_os("OUT_DIR")
                .map(PathBuf::from)
                .ok_or(BuildError::NoOutDir)?,
        };
        let opts = RustOptions {
            conds: self.conds.clone(),
            source_name: file_name_of(schema_path),
        };
        let mut code = generate(&loaded, &opts);
        if self.pretty {
            code = crate::rust::pretty(&code).map_err(BuildError::Generated)?;
        }
        let path = out_dir.join(&self.file_name);
        write_if_changed(&path, &code)?;
        Ok(path)
    }
}

fn file_name_of(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Writes `content` unless the file already holds exactly that, so that
/// unchanged output does not trigger rebuilds.
pub fn write_if_changed(path: &Path, content: &str) -> Result<(), BuildError> {
    if std::fs::read(path).is_ok_and(|old| old == content.as_bytes()) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| BuildError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(path, content).map_err(|source| BuildError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Every condition name used anywhere in the schema, sorted.
pub fn condition_names(schema: &Schema) -> BTreeSet<String> {
    let mut names = Vec::new();
    let feats = |f: &[crate::model::Feature], names: &mut Vec<String>| {
        f.iter().for_each(|f| f.ifcond.names(names))
    };
    let members = |ms: &[crate::model::Member], names: &mut Vec<String>| {
        for m in ms {
            m.ifcond.names(names);
            m.features.iter().for_each(|f| f.ifcond.names(names));
        }
    };
    for e in &schema.entities {
        e.ifcond.names(&mut names);
        feats(&e.features, &mut names);
        match &e.kind {
            crate::model::EntityKind::Enum { members: ms, .. } => {
                for m in ms {
                    m.ifcond.names(&mut names);
                    feats(&m.features, &mut names);
                }
            }
            crate::model::EntityKind::Object(o) => {
                members(&o.local_members, &mut names);
                if let Some(b) = &o.branches {
                    members(&b.variants, &mut names);
                }
            }
            crate::model::EntityKind::Alternate(a) => members(&a.variants, &mut names),
            _ => {}
        }
    }
    names.into_iter().collect()
}

/// Writes a standalone crate for `schema`: `Cargo.toml` with one cargo
/// feature per condition name (named by [`CondMap`]'s default rule) and
/// `src/lib.rs` holding the generated code. `rt_path` is the `qapi-rt`
/// crate the generated code depends on; `pretty` lays the code out with
/// prettyplease.
pub fn write_crate(
    schema: &Schema,
    source_name: &str,
    name: &str,
    out_dir: &Path,
    rt_path: &Path,
    pretty: bool,
) -> Result<(), BuildError> {
    let features: BTreeSet<String> = condition_names(schema)
        .iter()
        .map(|c| CondMap::feature_name(c))
        .collect();
    let mut toml = format!(
        "# @generated by qapi-gen from {source_name}\n[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n[dependencies]\nqapi-rt = {{ path = \"{}\" }}\n\n[features]\n",
        rt_path.display()
    );
    for f in &features {
        toml.push_str(&format!("\"{f}\" = []\n"));
    }
    toml.push_str("\n# Not part of any enclosing workspace.\n[workspace]\n");
    write_if_changed(&out_dir.join("Cargo.toml"), &toml)?;
    let opts = RustOptions {
        conds: CondMap::features_only(),
        source_name: source_name.to_string(),
    };
    let mut code = generate(schema, &opts);
    if pretty {
        code = crate::rust::pretty(&code).map_err(BuildError::Generated)?;
    }
    let lib = format!(
        "//! QAPI types, commands, events and introspection generated from `{source_name}`.\n#![allow(clippy::all, rustdoc::all, dead_code)]\n\n{code}"
    );
    write_if_changed(&out_dir.join("src/lib.rs"), &lib)
}
