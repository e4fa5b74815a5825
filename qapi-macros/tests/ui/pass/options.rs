// Every option at once, with a trailing comma; the schema also passes the
// QEMU 10.1 doc style rules.

mod qapi {
    qapi_macros::schema!(
        "../../schemas/conditional.json",
        relative_to = file,
        features_only,
        cfg("CONFIG_EXTRA") = "all()",
        cfg("CONFIG_NEVER") = r#"not(all())"#,
        doc_style,
    );
}

fn main() {
    let o = qapi::Options {
        always: 1,
        extra: None,
    };
    let _ = o;
    let _ = qapi::Mode::Fancy;
}
