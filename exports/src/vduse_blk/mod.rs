//! The VDUSE block export (work in progress, issue 12): so far only the
//! kernel interface's definitions ([`uapi`]); `block-export-add
//! type=vduse-blk` still answers that there is no driver.

pub mod uapi;
