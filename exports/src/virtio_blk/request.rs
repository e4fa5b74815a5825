//! A descriptor chain as a virtio-blk request: the 16-byte header at the
//! front of the device-readable part, the status byte at the very end of
//! the device-writable part, data segments in between.
//!
//! Every segment is checked against guest memory here, before anything is
//! read or written, so a chain that points outside it fails as a whole and
//! leaves guest memory untouched.

use std::fmt;

use virtio_queue::desc::split::Descriptor;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, Permissions};

/// Length of `struct virtio_blk_outhdr` (type, ioprio, sector).
pub const OUT_HEADER_LEN: u32 = 16;

/// One guest-physical buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub addr: GuestAddress,
    pub len: u32,
}

/// `struct virtio_blk_outhdr`, little-endian on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub req_type: u32,
    pub ioprio: u32,
    pub sector: u64,
}

impl Header {
    pub fn decode(b: &[u8; OUT_HEADER_LEN as usize]) -> Header {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut sector = [0; 8];
        sector.copy_from_slice(&b[8..16]);
        Header {
            req_type: u32_at(0),
            ioprio: u32_at(4),
            sector: u64::from_le_bytes(sector),
        }
    }
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub header: Header,
    /// Device-readable bytes after the header (OUT data, discard ranges).
    pub out_data: Vec<Segment>,
    /// Device-writable bytes before the status byte (IN data, the id).
    pub in_data: Vec<Segment>,
    /// Where the status byte goes: the last byte of the last
    /// device-writable descriptor.
    pub status: GuestAddress,
    /// All device-writable bytes, status included: what qsd reports as the
    /// used length whatever the request did.
    pub in_len: u32,
}

impl Request {
    pub fn out_len(&self) -> u64 {
        total(&self.out_data)
    }

    pub fn in_data_len(&self) -> u64 {
        total(&self.in_data)
    }
}

pub fn total(segs: &[Segment]) -> u64 {
    segs.iter().map(|s| u64::from(s.len)).sum()
}

/// Why a chain cannot be served (qsd drops such chains and logs; the
/// engine completes them with a used length of 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainError {
    /// No device-readable or no device-writable descriptor.
    MissingHeaders,
    /// Fewer than 16 device-readable bytes.
    OutHeaderTooShort,
    /// The last device-writable descriptor is empty: no room for status.
    InHeaderTooShort,
    /// A device-readable descriptor after a device-writable one.
    WrongOrder,
    /// A descriptor reaches outside guest memory.
    OutsideMemory { addr: u64, len: u32 },
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainError::MissingHeaders => f.write_str("virtio-blk request missing headers"),
            ChainError::OutHeaderTooShort => f.write_str("virtio-blk request outhdr too short"),
            ChainError::InHeaderTooShort => f.write_str("virtio-blk request inhdr too short"),
            ChainError::WrongOrder => f.write_str(
                "virtio-blk request has a device-readable descriptor after a device-writable one",
            ),
            ChainError::OutsideMemory { addr, len } => write!(
                f,
                "virtio-blk request descriptor {addr:#x}+{len:#x} is outside guest memory"
            ),
        }
    }
}

impl std::error::Error for ChainError {}

/// Parses the descriptors of one chain (as virtio-queue's iterator yields
/// them: indirect tables followed, loops cut) against `mem`.
pub fn parse<G>(descs: impl Iterator<Item = Descriptor>, mem: &G) -> Result<Request, ChainError>
where
    G: GuestMemory + ?Sized,
{
    let mut readable = Vec::new();
    let mut writable = Vec::new();
    for d in descs {
        let seg = Segment {
            addr: d.addr(),
            len: d.len(),
        };
        let access = if d.is_write_only() {
            Permissions::Write
        } else {
            Permissions::Read
        };
        if seg.len > 0 && !mem.check_range(seg.addr, seg.len as usize, access) {
            return Err(ChainError::OutsideMemory {
                addr: seg.addr.raw_value(),
                len: seg.len,
            });
        }
        if d.is_write_only() {
            writable.push(seg);
        } else if !writable.is_empty() {
            return Err(ChainError::WrongOrder);
        } else {
            readable.push(seg);
        }
    }
    if readable.is_empty() || writable.is_empty() {
        return Err(ChainError::MissingHeaders);
    }

    let mut hdr = [0u8; OUT_HEADER_LEN as usize];
    let out_data = split_front(&readable, OUT_HEADER_LEN).ok_or(ChainError::OutHeaderTooShort)?;
    read_segments(mem, &readable, &mut hdr).map_err(|_| ChainError::OutHeaderTooShort)?;

    let in_len = writable
        .iter()
        .try_fold(0u32, |acc, s| acc.checked_add(s.len))
        .ok_or(ChainError::InHeaderTooShort)?;
    let (mut in_data, last) = (writable.clone(), writable[writable.len() - 1]);
    if last.len == 0 {
        return Err(ChainError::InHeaderTooShort);
    }
    let status = last.addr.unchecked_add(u64::from(last.len) - 1);
    let n = in_data.len();
    in_data[n - 1].len -= 1;
    in_data.retain(|s| s.len > 0);

    Ok(Request {
        header: Header::decode(&hdr),
        out_data,
        in_data,
        status,
        in_len,
    })
}

/// The segments past the first `skip` bytes, or None if there are fewer.
fn split_front(segs: &[Segment], skip: u32) -> Option<Vec<Segment>> {
    let mut left = skip;
    let mut out = Vec::with_capacity(segs.len());
    for s in segs {
        if left >= s.len {
            left -= s.len;
        } else {
            out.push(Segment {
                addr: s.addr.unchecked_add(u64::from(left)),
                len: s.len - left,
            });
            left = 0;
        }
    }
    (left == 0).then_some(out)
}

/// Fills `buf` from the front of `segs` (all of `buf`, or an error).
pub fn read_segments<G>(
    mem: &G,
    segs: &[Segment],
    buf: &mut [u8],
) -> Result<(), vm_memory::GuestMemoryError>
where
    G: GuestMemory + ?Sized,
{
    let mut pos = 0;
    for s in segs {
        if pos == buf.len() {
            break;
        }
        let n = (s.len as usize).min(buf.len() - pos);
        mem.read_slice(&mut buf[pos..pos + n], s.addr)?;
        pos += n;
    }
    if pos < buf.len() {
        return Err(vm_memory::GuestMemoryError::PartialBuffer {
            expected: buf.len(),
            completed: pos,
        });
    }
    Ok(())
}

/// Writes `data` over the front of `segs` (all of it, or an error).
pub fn write_segments<G>(
    mem: &G,
    segs: &[Segment],
    data: &[u8],
) -> Result<(), vm_memory::GuestMemoryError>
where
    G: GuestMemory + ?Sized,
{
    let mut pos = 0;
    for s in segs {
        if pos == data.len() {
            break;
        }
        let n = (s.len as usize).min(data.len() - pos);
        mem.write_slice(&data[pos..pos + n], s.addr)?;
        pos += n;
    }
    if pos < data.len() {
        return Err(vm_memory::GuestMemoryError::PartialBuffer {
            expected: data.len(),
            completed: pos,
        });
    }
    Ok(())
}
