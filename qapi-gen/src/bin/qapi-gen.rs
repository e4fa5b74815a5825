//! `qapi-gen`: check a QAPI schema, dump its model, generate Rust.

use std::process::ExitCode;

use qapi_gen::{CheckOptions, Schema};

const USAGE: &str = "\
usage: qapi-gen <command> [options] SCHEMA.json

commands:
  check SCHEMA.json      parse and check; diagnostics on stderr, exit 1 if any
  dump SCHEMA.json       check, then print the schema model (QEMU test-dump format)
  introspect SCHEMA.json check, then print what query-qmp-schema answers (JSON)

options:
  --doc-style            also apply QEMU 10.1+ doc typography rules (70 columns,
                         two spaces between sentences)
  --enable COND          introspect: condition name COND is true (repeatable;
                         names not enabled are false)
  --enable-all           introspect: every condition name is true
  -h, --help             this text
";

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
    let mut iter = args.iter();
    while let Some(a) = iter.next() {
        match a.as_str() {
            "--doc-style" => opts.doc_style = true,
            "--enable-all" => enable_all = true,
            "--enable" => match iter.next() {
                Some(c) => enabled.push(c),
                None => {
                    eprintln!("qapi-gen: --enable needs a condition name\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            s if s.starts_with('-') => {
                eprintln!("qapi-gen: unknown option '{s}'\n{USAGE}");
                return ExitCode::from(2);
            }
            s => positional.push(s),
        }
    }
    let (cmd, file) = match positional.as_slice() {
        [cmd, file] => (*cmd, *file),
        _ => {
            eprintln!("qapi-gen: expected a command and one schema file\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if !matches!(cmd, "check" | "dump" | "introspect") {
        eprintln!("qapi-gen: unknown command '{cmd}'\n{USAGE}");
        return ExitCode::from(2);
    }
    match Schema::load(file, &opts) {
        Ok(schema) => {
            if cmd == "dump" {
                print!("{}", qapi_gen::dump::dump(&schema));
            } else if cmd == "introspect" {
                let entries = qapi_gen::introspect::entries(&schema);
                let on = |c: &str| enable_all || enabled.contains(&c);
                let json = qapi_gen::introspect::to_json(&entries, &on);
                match serde_json::to_string_pretty(&json) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("qapi-gen: {e}");
                        return ExitCode::from(1);
                    }
                }
            }
            // The process ends here: freeing the model would only cost time.
            std::mem::forget(schema);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
