// Without a mapping the storage daemon's rule applies: CONFIG_EXTRA is
// cargo feature "extra", which this crate does not have, so `extra` is
// compiled out. `cfg(feature = ...)` names a feature the crate does not
// declare, hence the allow.
#![allow(unexpected_cfgs)]

mod qapi {
    qapi_macros::schema!("../../schemas/conditional.json", relative_to = file);
}

fn main() {
    let o = qapi::Options { always: 1 };
    let _ = o;
}
