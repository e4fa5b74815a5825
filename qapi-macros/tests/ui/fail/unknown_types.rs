qapi_macros::schema!("schemas/unknown-types.json", relative_to = file);

fn main() {}
