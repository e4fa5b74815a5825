//! One libblkio `virtio-blk-vhost-user` device: connect, start its queues,
//! one shared-memory buffer region (vhost-user passes the daemon the
//! region's fd), request completion with a timeout.

use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::time::Duration;

use blkio::{Blkio, Blkioq, Completion, MemoryRegion};

use crate::error::{Error, Result};

/// How long one wait for completions may take before the device is
/// declared stuck (a hung daemon must fail the test, not hang it).
const WAIT: Duration = Duration::from_secs(30);

pub struct Options {
    pub socket: String,
    /// Queues started (interrupt-driven, or polled with `poll`).
    pub num_queues: u32,
    pub poll: bool,
    pub read_only: bool,
}

/// The properties printed by `verify`, with their types. `path` is left
/// out: it names the socket, which differs between runs.
const U64_PROPS: &[&str] = &[
    "capacity",
    "max-discard-len",
    "max-write-zeroes-len",
    "mem-region-alignment",
    "max-mem-regions",
];
const I32_PROPS: &[&str] = &[
    "max-queues",
    "max-queue-size",
    "queue-size",
    "num-queues",
    "num-poll-queues",
    "request-alignment",
    "optimal-io-alignment",
    "optimal-io-size",
    "max-segments",
    "max-segment-len",
    "max-transfer",
    "discard-alignment",
    "discard-alignment-offset",
    "buf-alignment",
    "optimal-buf-alignment",
];
const BOOL_PROPS: &[&str] = &[
    "read-only",
    "flush-needed",
    "supports-fua-natively",
    "supports-poll-queues",
    "can-grow",
    "needs-mem-regions",
    "needs-mem-region-fd",
];

/// One finished request: the `user_data` it was submitted with, its
/// result (0 or a negative errno) and libblkio's message when the
/// library itself refused it.
pub struct Done {
    pub tag: usize,
    pub ret: i32,
    pub msg: Option<String>,
}

pub struct Device {
    // Queues first: they are dropped before the instance they belong to.
    pub queues: Vec<Blkioq>,
    blkio: Blkio,
    region: MemoryRegion,
}

impl Device {
    /// Connects to `opts.socket`, starts the queues and maps a buffer
    /// region of at least `buffer_len` bytes.
    pub fn open(opts: &Options, buffer_len: usize) -> Result<Device> {
        let mut b = Blkio::new("virtio-blk-vhost-user").map_err(Error::blkio("blkio_new"))?;
        b.set_str("path", &opts.socket)
            .map_err(Error::blkio("set path"))?;
        if opts.read_only {
            b.set_bool("read-only", true)
                .map_err(Error::blkio("set read-only"))?;
        }
        b.connect()
            .map_err(Error::blkio(format!("connect to {}", opts.socket)))?;
        let n = i32::try_from(opts.num_queues)
            .map_err(|_| Error::Usage(format!("--num-queues {} is too big", opts.num_queues)))?;
        let (irq, polled) = if opts.poll { (0, n) } else { (n, 0) };
        b.set_i32("num-queues", irq)
            .map_err(Error::blkio("set num-queues"))?;
        b.set_i32("num-poll-queues", polled)
            .map_err(Error::blkio("set num-poll-queues"))?;
        let started = b.start().map_err(Error::blkio("start"))?;
        let queues = if opts.poll {
            started.poll_queues
        } else {
            started.queues
        };
        let align = b
            .get_u64("mem-region-alignment")
            .map_err(Error::blkio("mem-region-alignment"))?
            .max(1);
        let align = usize::try_from(align)
            .map_err(|_| Error::Device(format!("mem-region-alignment {align} is too big")))?;
        let len = buffer_len.max(1).div_ceil(align) * align;
        let region = b
            .alloc_mem_region(len)
            .map_err(Error::blkio(format!("alloc_mem_region({len})")))?;
        b.map_mem_region(&region)
            .map_err(Error::blkio("map_mem_region"))?;
        Ok(Device {
            queues,
            blkio: b,
            region,
        })
    }

    pub fn capacity(&self) -> Result<u64> {
        self.blkio
            .get_u64("capacity")
            .map_err(Error::blkio("capacity"))
    }

    pub fn get_i32(&self, name: &str) -> Result<i32> {
        self.blkio.get_i32(name).map_err(Error::blkio(name))
    }

    pub fn get_u64(&self, name: &str) -> Result<u64> {
        self.blkio.get_u64(name).map_err(Error::blkio(name))
    }

    /// `name value` of every property worth comparing between daemons.
    pub fn properties(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let shown = |r: blkio::Result<String>| {
            r.unwrap_or_else(|e| format!("error {}", e.errno().raw_os_error()))
        };
        for &p in U64_PROPS {
            out.push((p, shown(self.blkio.get_u64(p).map(|v| v.to_string()))));
        }
        for &p in I32_PROPS {
            out.push((p, shown(self.blkio.get_i32(p).map(|v| v.to_string()))));
        }
        for &p in BOOL_PROPS {
            out.push((p, shown(self.blkio.get_bool(p).map(|v| v.to_string()))));
        }
        out
    }

    /// Address of byte `off` of the buffer region, for a request of
    /// `len` bytes there.
    pub fn ptr(&self, off: usize, len: usize) -> Result<*mut u8> {
        match off.checked_add(len) {
            Some(end) if end <= self.region.len => Ok((self.region.addr + off) as *mut u8),
            _ => Err(Error::Device(format!(
                "buffer {off}+{len} is outside the {}-byte region",
                self.region.len
            ))),
        }
    }

    /// Copies `data` into the buffer at `off` (no request may be in
    /// flight on that part of the buffer).
    pub fn put(&self, off: usize, data: &[u8]) -> Result<()> {
        let p = self.ptr(off, data.len())?;
        // SAFETY: `ptr` checked that the range lies in our mapped region,
        // and no request uses it now.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
        Ok(())
    }

    /// A copy of `len` buffer bytes at `off`.
    pub fn get(&self, off: usize, len: usize) -> Result<Vec<u8>> {
        let p = self.ptr(off, len)?;
        let mut v = vec![0u8; len];
        // SAFETY: as in `put`.
        unsafe { std::ptr::copy_nonoverlapping(p, v.as_mut_ptr(), len) };
        Ok(v)
    }
}

/// Waits for at least `min` completions on `q` (submitting what was
/// queued), and returns all that are there, up to `max`.
pub fn complete(q: &mut Blkioq, min: usize, max: usize) -> Result<Vec<Done>> {
    let mut slots: Vec<MaybeUninit<Completion>> = Vec::with_capacity(max);
    slots.resize_with(max.max(min), MaybeUninit::uninit);
    let mut timeout = WAIT;
    let n = q
        .do_io(&mut slots, min, Some(&mut timeout), None)
        .map_err(Error::blkio(format!("waiting for {min} completion(s)")))?;
    Ok(slots[..n]
        .iter()
        .map(|c| {
            // SAFETY: do_io filled the first `n` slots.
            let c = unsafe { c.assume_init_ref() };
            let msg = (!c.error_msg.is_null()).then(|| {
                // SAFETY: libblkio's messages are static NUL-terminated strings.
                unsafe { CStr::from_ptr(c.error_msg) }
                    .to_string_lossy()
                    .into_owned()
            });
            Done {
                tag: c.user_data,
                ret: c.ret,
                msg,
            }
        })
        .collect())
}
