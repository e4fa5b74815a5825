//! `qapi-gen`: check a QAPI schema, dump its model, generate Rust.

use std::path::PathBuf;
use std::process::ExitCode;

use qapi_gen::rust::{CondMap, RustOptions};
use qapi_gen::{CheckOptions, Schema};

const USAGE: &str = "\
usage: qapi-gen <command> [options] SCHEMA.json

commands:
  check SCHEMA.json      parse and check; diagnostics on stderr, exit 1 if any
  dump SCHEMA.json       check, then print the schema model (QEMU test-dump format)
  introspect SCHEMA.json check, then print what query-qmp-schema answers (JSON)
  rust SCHEMA.json --out-dir DIR
                         generate Rust into DIR/qapi.rs (conditions become
                         cargo features by the default rule, except the
                         storage daemon's mapping: CONFIG_FUSE -> fuse, ...)
  crate SCHEMA.json --name NAME --out-dir DIR
                         write a standalone crate: Cargo.toml with one cargo
                         feature per condition name, src/lib.rs

options:
  --doc-style            also apply QEMU 10.1+ doc typography rules (70 columns,
                         two spaces between sentences)
  --enable COND          introspect: condition name COND is true (repeatable;
                         names not enabled are false)
  --enable-all           introspect: every condition name is true
  --pretty               rust, crate: check the output with syn and lay it out
                         with prettyplease (slower)
  --rt-path DIR          crate: path of the qapi-rt crate to depend on
                         (default: the one next to this qapi-gen's sources)
  -h, --help             this text
";

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("qapi-gen: {msg}\n{USAGE}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{USAGE}");
        return if args.is_empty() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    let mut opts = CheckOptions::default();
    let mut positional = Vec::new();
    let mut enabled: Vec<&str> = Vec::new();
    let mut enable_all = false;
    let mut pretty = false;
    let mut out_dir: Option<PathBuf> = None;
    let mut crate_name: Option<&str> = None;
    let mut rt_path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../qapi-rt"));
    let mut iter = args.iter();
    while let Some(a) = iter.next() {
        let mut value = |what: &str| {
            iter.next()
                .ok_or_else(|| usage_error(&format!("{a} needs {what}")))
        };
        match a.as_str() {
            "--doc-style" => opts.doc_style = true,
            "--enable-all" => enable_all = true,
            "--pretty" => pretty = true,
            "--enable" => match value("a condition name") {
                Ok(c) => enabled.push(c),
                Err(e) => return e,
            },
            "--out-dir" => match value("a directory") {
                Ok(d) => out_dir = Some(PathBuf::from(d)),
                Err(e) => return e,
            },
            "--name" => match value("a crate name") {
                Ok(n) => crate_name = Some(n),
                Err(e) => return e,
            },
            "--rt-path" => match value("a directory") {
                Ok(d) => rt_path = PathBuf::from(d),
                Err(e) => return e,
            },
            s if s.starts_with('-') => return usage_error(&format!("unknown option '{s}'")),
            s => positional.push(s),
        }
    }
    let (cmd, file) = match positional.as_slice() {
        [cmd, file] => (*cmd, *file),
        _ => return usage_error("expected a command and one schema file"),
    };
    if !matches!(cmd, "check" | "dump" | "introspect" | "rust" | "crate") {
        return usage_error(&format!("unknown command '{cmd}'"));
    }
    if matches!(cmd, "rust" | "crate") && out_dir.is_none() {
        return usage_error(&format!("{cmd} needs --out-dir DIR"));
    }
    if cmd == "crate" && crate_name.is_none() {
        return usage_error("crate needs --name NAME");
    }
    let schema = match Schema::load(file, &opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let source_name = std::path::Path::new(file)
        .file_name()
        .map_or_else(|| file.to_string(), |n| n.to_string_lossy().into_owned());
    let result: Result<(), String> = match cmd {
        "dump" => {
            print!("{}", qapi_gen::dump::dump(&schema));
            Ok(())
        }
        "introspect" => {
            let entries = qapi_gen::introspect::entries(&schema);
            let on = |c: &str| enable_all || enabled.contains(&c);
            let json = qapi_gen::introspect::to_json(&entries, &on);
            serde_json::to_string_pretty(&json)
                .map(|text| println!("{text}"))
                .map_err(|e| e.to_string())
        }
        "rust" => {
            let opts = RustOptions {
                conds: CondMap::default(),
                source_name,
            };
            let code = qapi_gen::rust::generate(&schema, &opts);
            let path = out_dir.unwrap_or_default().join("qapi.rs");
            let code = if pretty {
                qapi_gen::rust::pretty(&code)
            } else {
                Ok(code)
            };
            code.and_then(|c| {
                qapi_gen::builder::write_if_changed(&path, &c).map_err(|e| e.to_string())
            })
        }
        "crate" => qapi_gen::builder::write_crate(
            &schema,
            &source_name,
            crate_name.unwrap_or_default(),
            &out_dir.unwrap_or_default(),
            &rt_path,
            pretty,
        )
        .map_err(|e| e.to_string()),
        _ => Ok(()),
    };
    // The process ends here: freeing the model would only cost time.
    std::mem::forget(schema);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qapi-gen: {e}");
            ExitCode::from(1)
        }
    }
}
