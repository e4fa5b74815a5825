//! blkio-drive: a libblkio front end (driver `virtio-blk-vhost-user`) for
//! a vhost-user-blk export, the same for our daemon and for
//! qemu-storage-daemon.
//!
//!   blkio-drive info   --socket S [--num-queues N] [--read-only]
//!   blkio-drive verify --socket S --model FILE [--base IMG] [--num-queues N] [--read-only]
//!   blkio-drive bench  --socket S --rw randread|randwrite|read|write --bs N
//!                      --iodepth N --seconds N [--poll]
//!   blkio-drive watch-capacity --socket S --until BYTES
//!   blkio-drive hold --socket S     (connected until stdin closes)
//!
//! Exit status: 0 done, 1 the device failed or disagreed with the model,
//! 2 bad command line.

mod attached;
mod bench;
mod device;
mod error;
mod pattern;
mod verify;

use std::collections::HashMap;
use std::process::ExitCode;

use error::{Error, Result};

const USAGE: &str =
    "usage: blkio-drive info|verify|bench --socket PATH [options] (see the source's head)";

/// `--name value` pairs and `--flag`s after the mode.
struct Args {
    values: HashMap<String, String>,
    flags: Vec<String>,
}

/// Options that take no value.
const FLAGS: &[&str] = &["--poll", "--read-only"];

impl Args {
    fn parse(rest: &[String], allowed: &[&str]) -> Result<Args> {
        let mut values = HashMap::new();
        let mut flags = Vec::new();
        let mut it = rest.iter();
        while let Some(a) = it.next() {
            if !allowed.contains(&a.as_str()) {
                return Err(Error::Usage(format!("unknown option {a}\n{USAGE}")));
            }
            if FLAGS.contains(&a.as_str()) {
                flags.push(a.clone());
            } else {
                let v = it
                    .next()
                    .ok_or_else(|| Error::Usage(format!("{a} needs a value")))?;
                values.insert(a.clone(), v.clone());
            }
        }
        Ok(Args { values, flags })
    }

    fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    fn opt(&self, name: &str) -> Option<String> {
        self.values.get(name).cloned()
    }

    fn req(&self, name: &str) -> Result<String> {
        self.opt(name)
            .ok_or_else(|| Error::Usage(format!("{name} is required\n{USAGE}")))
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: Option<T>) -> Result<T> {
        match (self.opt(name), default) {
            (Some(v), _) => v
                .parse()
                .map_err(|_| Error::Usage(format!("{name} {v}: not a number"))),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(Error::Usage(format!("{name} is required\n{USAGE}"))),
        }
    }

    fn device(&self, poll: bool) -> Result<device::Options> {
        Ok(device::Options {
            socket: self.req("--socket")?,
            num_queues: self.num("--num-queues", Some(1))?,
            poll,
            read_only: self.flag("--read-only"),
        })
    }
}

fn run(argv: &[String]) -> Result<bool> {
    let (mode, rest) = argv
        .split_first()
        .ok_or_else(|| Error::Usage(USAGE.into()))?;
    match mode.as_str() {
        "info" => {
            let a = Args::parse(rest, &["--socket", "--num-queues", "--read-only"])?;
            let dev = device::Device::open(&a.device(false)?, 4096)?;
            for (name, value) in dev.properties() {
                println!("prop {name} {value}");
            }
            println!("queues {}", dev.queues.len());
            Ok(true)
        }
        "watch-capacity" => {
            let a = Args::parse(rest, &["--socket", "--until"])?;
            let until = a.num("--until", None)?;
            let dev = device::Device::open(&a.device(false)?, 64 << 10)?;
            attached::watch_capacity(dev, until)
        }
        "hold" => {
            let a = Args::parse(rest, &["--socket"])?;
            let dev = device::Device::open(&a.device(false)?, 4096)?;
            attached::hold(dev)
        }
        "verify" => {
            let a = Args::parse(
                rest,
                &[
                    "--socket",
                    "--model",
                    "--base",
                    "--num-queues",
                    "--read-only",
                ],
            )?;
            let plan = verify::Plan {
                base: a.opt("--base"),
                model_out: a.req("--model")?,
                read_only: a.flag("--read-only"),
            };
            let dev = device::Device::open(&a.device(false)?, verify::buffer_len())?;
            verify::run(dev, &plan)
        }
        "bench" => {
            let a = Args::parse(
                rest,
                &[
                    "--socket",
                    "--rw",
                    "--bs",
                    "--iodepth",
                    "--seconds",
                    "--poll",
                ],
            )?;
            let rw = a.req("--rw")?;
            let job = bench::Job {
                rw: bench::Rw::parse(&rw).ok_or_else(|| {
                    Error::Usage(format!("--rw {rw}: randread|randwrite|read|write"))
                })?,
                bs: a.num("--bs", Some(4096))?,
                iodepth: a.num("--iodepth", Some(1))?,
                seconds: a.num("--seconds", None)?,
                poll: a.flag("--poll"),
            };
            let dev = device::Device::open(&a.device(job.poll)?, bench::buffer_len(&job))?;
            println!("{}", bench::run(dev, &job)?);
            Ok(true)
        }
        _ => Err(Error::Usage(USAGE.into())),
    }
}

fn main() -> ExitCode {
    // A closed stdout (`| head`) ends the program quietly, as it does
    // for other command-line tools, instead of making println! panic.
    // SAFETY: setting a signal's disposition to the default is sound.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match run(&argv) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e @ Error::Usage(_)) => {
            eprintln!("blkio-drive: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("blkio-drive: {e}");
            ExitCode::from(1)
        }
    }
}
