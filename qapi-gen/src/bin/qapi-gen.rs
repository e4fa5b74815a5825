//! `qapi-gen`: check a QAPI schema, dump its model, generate Rust.

use std::process::ExitCode;

use qapi_gen::{CheckOptions, Schema};

const USAGE: &str = "\
usage: qapi-gen <command> [options] SCHEMA.json

commands:
  check SCHEMA.json      parse and check; diagnostics on stderr, exit 1 if any
  dump SCHEMA.json       check, then print the schema model (QEMU test-dump format)

options:
  --doc-style            also apply QEMU 10.1+ doc typography rules (70 columns,
                         two spaces between sentences)
  -h, --help             this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{USAGE}");
        return if args.is_empty() { ExitCode::from(2) } else { ExitCode::SUCCESS };
    }
    let mut opts = CheckOptions::default();
    let mut positional = Vec::new();
    for a in &args {
        match a.as_str() {
            "--doc-style" => opts.doc_style = true,
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
    if !matches!(cmd, "check" | "dump") {
        eprintln!("qapi-gen: unknown command '{cmd}'\n{USAGE}");
        return ExitCode::from(2);
    }
    match Schema::load(file, &opts) {
        Ok(schema) => {
            if cmd == "dump" {
                print!("{}", qapi_gen::dump::dump(&schema));
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
