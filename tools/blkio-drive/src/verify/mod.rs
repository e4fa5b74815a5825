//! `verify`: a fixed, seeded sequence of requests checked against an
//! in-memory model of the disk. One transcript line per request (op,
//! offset, length, result, checksum of what was read) goes to stdout so
//! that two daemons can be compared line by line; the model ends up in
//! a file for `cmp` with the daemon's image.

mod requests;
mod sequence;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::pattern::Rng;
use requests::Session;

pub struct Plan {
    /// The image the device starts from; without it the model starts
    /// from what the first full read returns.
    pub base: Option<String>,
    pub model_out: String,
    /// The read-only sequence: reads, and writes that must be refused.
    pub read_only: bool,
}

/// The usual request size limit, the biggest request, and the buffer.
const CHUNK: usize = 1 << 20;
const BIG: usize = 6 << 20;
const BUFFER: usize = 8 << 20;
const SEED: u64 = 0x5eed_b10c_0000_0011;

/// Runs the sequence; Ok(true) when every read matched the model.
pub fn run(dev: Device, plan: &Plan) -> Result<bool> {
    let cap = dev.capacity()?;
    let bs = u64::try_from(dev.get_i32("request-alignment")?)
        .map_err(|_| Error::Device("negative request-alignment".into()))?;
    if bs == 0 || cap < 32 << 20 || cap % bs != 0 {
        return Err(Error::Device(format!(
            "verify needs a device of at least 32 MiB in whole blocks (capacity {cap}, block {bs})"
        )));
    }
    let len = usize::try_from(cap).map_err(|_| Error::Device("capacity too big".into()))?;
    for (name, value) in dev.properties() {
        println!("prop {name} {value}");
    }
    println!("queues {}", dev.queues.len());
    let model = match &plan.base {
        Some(path) => {
            let mut m = std::fs::read(path).map_err(|source| Error::File {
                path: path.clone(),
                source,
            })?;
            if m.len() != len {
                return Err(Error::Device(format!(
                    "base image {path} has {} bytes, the device {cap}",
                    m.len()
                )));
            }
            m.shrink_to_fit();
            m
        }
        None => Vec::new(),
    };
    let mut s = Session {
        dev,
        model,
        bs,
        cap,
        rng: Rng::new(SEED),
        line: 0,
        failures: Vec::new(),
    };
    if s.model.is_empty() {
        s.adopt_all()?;
    } else {
        s.read_all()?;
    }
    if plan.read_only {
        s.read_only_sequence()?;
    } else {
        s.sequence()?;
    }
    s.read_all()?;
    std::fs::write(&plan.model_out, &s.model).map_err(|source| Error::File {
        path: plan.model_out.clone(),
        source,
    })?;
    for f in &s.failures {
        eprintln!("blkio-drive verify: {f}");
    }
    println!("end {} requests, {} mismatches", s.line, s.failures.len());
    Ok(s.failures.is_empty())
}

/// The buffer `verify` needs.
pub fn buffer_len() -> usize {
    BUFFER
}
