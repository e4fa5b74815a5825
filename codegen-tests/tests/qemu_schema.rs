//! QEMU 10.0's storage daemon schema, generated with the conditions of the
//! Debian build whose answer to `query-qmp-schema` is in
//! `../shared/qemu-qapi-10.0/expected/`: the generated `SchemaInfo` types
//! read that answer and write it back unchanged, and the generated
//! `qmp_schema()` is that answer.

#[cfg(have_shared)]
mod common;

#[cfg(not(have_shared))]
fn skip() {
    eprintln!(
        "skipped: {}/../../shared does not exist, so build.rs did not generate QEMU's schema \
         (QEMU reference data is only in the project checkout)",
        env!("CARGO_MANIFEST_DIR")
    );
}

#[cfg(have_shared)]
fn expected() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/qemu-qapi-10.0/expected/qsd-query-qmp-schema.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Index and both sides of the first entry where `got` and `want` differ.
#[cfg(have_shared)]
fn first_difference(got: &[serde_json::Value], want: &[serde_json::Value]) -> Option<String> {
    let i = got
        .iter()
        .zip(want)
        .position(|(g, w)| g != w)
        .or((got.len() != want.len()).then(|| got.len().min(want.len())))?;
    let show = |v: Option<&serde_json::Value>| v.map_or("(none)".into(), |v| v.to_string());
    Some(format!(
        "{} entries, {} expected; first difference at index {i}:\n  got:      {}\n  expected: {}",
        got.len(),
        want.len(),
        show(got.get(i)),
        show(want.get(i))
    ))
}

#[test]
fn schema_info_round_trip() {
    #[cfg(not(have_shared))]
    skip();
    #[cfg(have_shared)]
    {
        use codegen_tests::qemu10::SchemaInfo;
        let want = expected();
        let infos: Vec<SchemaInfo> = common::decode(want.clone());
        assert_eq!(infos.len(), 513);
        let got = common::encode(&infos);
        let (serde_json::Value::Array(got), serde_json::Value::Array(want)) = (&got, &want) else {
            panic!("not arrays");
        };
        if let Some(diff) = first_difference(got, want) {
            panic!("SchemaInfo round trip: {diff}");
        }
    }
}

#[test]
fn generated_qmp_schema_is_the_live_answer() {
    #[cfg(not(have_shared))]
    skip();
    #[cfg(have_shared)]
    {
        let want = expected();
        let got = codegen_tests::qemu10::qmp_schema();
        let (serde_json::Value::Array(got), serde_json::Value::Array(want)) = (got, &want) else {
            panic!("not arrays");
        };
        if let Some(diff) = first_difference(got, want) {
            panic!("qmp_schema(): {diff}");
        }
        assert_eq!(got.len(), 513);
    }
}

#[test]
fn generated_commands_match_the_schema() {
    #[cfg(not(have_shared))]
    skip();
    #[cfg(have_shared)]
    {
        // The descriptor table and the introspection data agree on which
        // commands this build has: 76, as the live daemon.
        let from_table: Vec<&str> = codegen_tests::qemu10::commands()
            .iter()
            .map(|c| c.name)
            .collect();
        let from_schema: Vec<&str> =
            common::introspected_commands(codegen_tests::qemu10::qmp_schema());
        let mut sorted = from_schema.clone();
        sorted.sort_unstable();
        let mut table_sorted = from_table.clone();
        table_sorted.sort_unstable();
        assert_eq!(table_sorted, sorted);
        assert_eq!(from_table.len(), 76);
        let add = codegen_tests::qemu10::commands()
            .into_iter()
            .find(|c| c.name == "blockdev-add");
        assert!(add.is_some_and(|c| c.allow_preconfig && c.success_response && c.generated));
    }
}
