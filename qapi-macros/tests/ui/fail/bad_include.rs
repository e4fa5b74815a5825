qapi_macros::schema!("schemas/bad-include.json", relative_to = file);

fn main() {}
