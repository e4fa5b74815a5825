qapi_macros::schema!("schemas/syntax-error.json", relative_to = file);

fn main() {}
