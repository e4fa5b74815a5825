//! Checks our QAPI schema with the qapi-gen front end on every build.

fn main() {
    let top = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema/storage-daemon.json");
    match qapi_gen::Schema::load(&top, &qapi_gen::CheckOptions::default()) {
        Ok(schema) => {
            for file in schema.files() {
                println!("cargo:rerun-if-changed={}", file.display());
            }
        }
        Err(err) => {
            for file in err.files() {
                println!("cargo:rerun-if-changed={}", file.display());
            }
            eprintln!("{err}");
            std::process::exit(1);
        }
    }
}
