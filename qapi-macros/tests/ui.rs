//! Compile tests of `schema!`: schemas that must compile (tests/ui/pass) and
//! broken schemas or arguments whose compile errors must read as recorded
//! (tests/ui/fail/*.stderr; regenerate with TRYBUILD=overwrite).
//!
//! trybuild builds the cases in a project of its own under target/, so its
//! CARGO_MANIFEST_DIR is not this crate's: the cases name their schemas
//! with `relative_to = file`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
