qapi_macros::schema!("schemas/outer.json", relative_to = file);

fn main() {}
