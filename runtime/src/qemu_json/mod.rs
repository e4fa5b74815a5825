//! QEMU's JSON as both the QMP monitor and the command line read it: its
//! parser's dialect (single-quoted strings, its error texts) and the
//! member order of its QDicts. Below both `qmp` and `cli`.

pub mod json;
pub mod order;
