//! `bench`: one queue kept at a fixed depth for a fixed time; prints
//! IOPS and MiB/s as one JSON line.

use std::time::{Duration, Instant};

use blkio::ReqFlags;

use crate::device::{self, Device};
use crate::error::{Error, Result};
use crate::pattern::Rng;

#[derive(Clone, Copy, PartialEq)]
pub enum Rw {
    RandRead,
    RandWrite,
    Read,
    Write,
}

impl Rw {
    pub fn parse(s: &str) -> Option<Rw> {
        Some(match s {
            "randread" => Rw::RandRead,
            "randwrite" => Rw::RandWrite,
            "read" => Rw::Read,
            "write" => Rw::Write,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Rw::RandRead => "randread",
            Rw::RandWrite => "randwrite",
            Rw::Read => "read",
            Rw::Write => "write",
        }
    }

    fn writes(self) -> bool {
        matches!(self, Rw::RandWrite | Rw::Write)
    }
}

pub struct Job {
    pub rw: Rw,
    pub bs: usize,
    pub iodepth: usize,
    pub seconds: f64,
    pub poll: bool,
}

/// The buffer a job needs: one block per request in flight.
pub fn buffer_len(job: &Job) -> usize {
    job.bs * job.iodepth
}

/// Where the next request goes.
struct Offsets {
    rw: Rw,
    bs: u64,
    blocks: u64,
    next: u64,
    rng: Rng,
}

impl Offsets {
    fn next(&mut self) -> u64 {
        let block = match self.rw {
            Rw::RandRead | Rw::RandWrite => self.rng.below(self.blocks),
            Rw::Read | Rw::Write => {
                let b = self.next;
                self.next = (self.next + 1) % self.blocks;
                b
            }
        };
        block * self.bs
    }
}

pub fn run(mut dev: Device, job: &Job) -> Result<String> {
    let cap = dev.capacity()?;
    let bs = job.bs as u64;
    if bs == 0 || cap < bs || job.iodepth == 0 {
        return Err(Error::Usage(format!(
            "--bs {bs} --iodepth {} does not fit a device of {cap} bytes",
            job.iodepth
        )));
    }
    let mut offsets = Offsets {
        rw: job.rw,
        bs,
        blocks: cap / bs,
        next: 0,
        rng: Rng::new(0xbe9c_4000 ^ bs),
    };
    if job.rw.writes() {
        let mut data = vec![0u8; buffer_len(job)];
        Rng::new(7).fill(&mut data);
        dev.put(0, &data)?;
    }
    let slots: Vec<*mut u8> = (0..job.iodepth)
        .map(|i| dev.ptr(i * job.bs, job.bs))
        .collect::<Result<_>>()?;
    let q = dev
        .queues
        .first_mut()
        .ok_or_else(|| Error::Device("no queue started".into()))?;
    let submit = |q: &mut blkio::Blkioq, slot: usize, off: u64| {
        if job.rw.writes() {
            q.write(off, slots[slot], job.bs, slot, ReqFlags::empty());
        } else {
            q.read(off, slots[slot], job.bs, slot, ReqFlags::empty());
        }
    };
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(job.seconds);
    for slot in 0..job.iodepth {
        submit(q, slot, offsets.next());
    }
    let mut in_flight = job.iodepth;
    let (mut ios, mut errors) = (0u64, 0u64);
    let mut first_error = None;
    while in_flight > 0 {
        let done = device::complete(q, 1, job.iodepth)?;
        let more = Instant::now() < deadline;
        for d in done {
            ios += 1;
            if d.ret != 0 {
                errors += 1;
                first_error.get_or_insert(d.ret);
            }
            if more {
                submit(q, d.tag, offsets.next());
            } else {
                in_flight -= 1;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if let Some(ret) = first_error {
        return Err(Error::Device(format!(
            "{errors} of {ios} requests failed (first: {})",
            crate::pattern::errno_name(ret)
        )));
    }
    let iops = ios as f64 / secs;
    Ok(format!(
        "{{\"rw\": \"{}\", \"bs\": {}, \"iodepth\": {}, \"poll\": {}, \"seconds\": {secs:.3}, \
         \"ios\": {ios}, \"iops\": {iops:.1}, \"mib_s\": {:.1}}}",
        job.rw.name(),
        job.bs,
        job.iodepth,
        job.poll,
        iops * job.bs as f64 / f64::from(1 << 20)
    ))
}
