// One mistake per call; each error points at the offending argument.

mod no_path {
    qapi_macros::schema!();
}

mod not_a_string {
    qapi_macros::schema!(api_json);
}

mod byte_string {
    qapi_macros::schema!(b"../../schemas/api.json");
}

mod concat {
    qapi_macros::schema!(concat!(env!("CARGO_MANIFEST_DIR"), "/api.json"));
}

mod unknown_option {
    qapi_macros::schema!("../../schemas/api.json", relative_to = file, fast);
}

mod bad_relative_to {
    qapi_macros::schema!("../../schemas/api.json", relative_to = here);
}

mod twice {
    qapi_macros::schema!(
        "../../schemas/api.json",
        relative_to = file,
        doc_style,
        doc_style
    );
}

mod missing_comma {
    qapi_macros::schema!("../../schemas/api.json", relative_to = file features_only);
}

mod cfg_without_value {
    qapi_macros::schema!(
        "../../schemas/conditional.json",
        relative_to = file,
        cfg("CONFIG_EXTRA")
    );
}

mod cfg_typo {
    qapi_macros::schema!(
        "../../schemas/conditional.json",
        relative_to = file,
        cfg("CONFIG_EXTRAS") = "all()",
    );
}

mod cfg_bad_tokens {
    qapi_macros::schema!(
        "../../schemas/conditional.json",
        relative_to = file,
        cfg("CONFIG_EXTRA") = "feature = \"unterminated",
    );
}

mod cfg_twice {
    qapi_macros::schema!(
        "../../schemas/conditional.json",
        relative_to = file,
        cfg("CONFIG_EXTRA") = "all()",
        cfg("CONFIG_EXTRA") = "any()",
    );
}

fn main() {}
