// A path relative to this file that names nothing: the note says what the
// path was relative to.
qapi_macros::schema!("no-such-schema.json", relative_to = file);

fn main() {}
