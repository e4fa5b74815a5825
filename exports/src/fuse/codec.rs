//! The kernel's FUSE wire format (`<linux/fuse.h>`, protocol 7.31 as we
//! speak it): fixed-layout, host-endian structs. Requests are decoded from
//! the bytes one `read(2)` of `/dev/fuse` returned; replies are encoded
//! into small byte arrays. Nothing here touches a file descriptor.

use std::fmt;

/// Protocol version we implement; the kernel adapts to the older of its
/// own and ours.
pub const KERNEL_VERSION: u32 = 7;
pub const KERNEL_MINOR_VERSION: u32 = 31;

/// Node id of the mount's root: the only inode we have (the image file).
pub const ROOT_ID: u64 = 1;

pub const IN_HEADER_LEN: usize = 40;
pub const OUT_HEADER_LEN: usize = 16;
/// `fuse_write_in`: a WRITE's payload starts right after it.
pub const WRITE_IN_LEN: usize = 40;

/// Opcodes (`enum fuse_opcode`) we act on or must not answer.
pub mod op {
    pub const LOOKUP: u32 = 1;
    pub const FORGET: u32 = 2;
    pub const GETATTR: u32 = 3;
    pub const SETATTR: u32 = 4;
    pub const OPEN: u32 = 14;
    pub const READ: u32 = 15;
    pub const WRITE: u32 = 16;
    pub const STATFS: u32 = 17;
    pub const RELEASE: u32 = 18;
    pub const FSYNC: u32 = 20;
    pub const FLUSH: u32 = 25;
    pub const INIT: u32 = 26;
    pub const INTERRUPT: u32 = 36;
    pub const DESTROY: u32 = 38;
    pub const BATCH_FORGET: u32 = 42;
    pub const FALLOCATE: u32 = 43;
    pub const LSEEK: u32 = 46;
}

/// `FUSE_INIT` flags.
pub mod init {
    pub const ASYNC_READ: u32 = 1 << 0;
    pub const ATOMIC_O_TRUNC: u32 = 1 << 3;
    pub const BIG_WRITES: u32 = 1 << 5;
    pub const HAS_IOCTL_DIR: u32 = 1 << 11;
    pub const AUTO_INVAL_DATA: u32 = 1 << 12;
    pub const ASYNC_DIO: u32 = 1 << 15;
    pub const PARALLEL_DIROPS: u32 = 1 << 18;
    pub const HANDLE_KILLPRIV: u32 = 1 << 19;
    pub const MAX_PAGES: u32 = 1 << 22;
}

/// `FATTR_*`: which members of a SETATTR are meant.
pub mod fattr {
    pub const MODE: u32 = 1 << 0;
    pub const UID: u32 = 1 << 1;
    pub const GID: u32 = 1 << 2;
    pub const SIZE: u32 = 1 << 3;
    pub const ATIME: u32 = 1 << 4;
    pub const MTIME: u32 = 1 << 5;
    pub const FH: u32 = 1 << 6;
    pub const ATIME_NOW: u32 = 1 << 7;
    pub const MTIME_NOW: u32 = 1 << 8;
    pub const LOCKOWNER: u32 = 1 << 9;
    pub const CTIME: u32 = 1 << 10;
    pub const KILL_SUIDGID: u32 = 1 << 11;
}

/// Why a request could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the header or the opcode's argument struct.
    Short {
        opcode: u32,
        need: usize,
        got: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Short { opcode, need, got } => {
                write!(f, "opcode {opcode}: {got} argument bytes, need {need}")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Reads host-endian integers from a byte slice; out-of-range reads yield
/// zero (callers check the length first).
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn u16(&self, at: usize) -> u16 {
        self.0
            .get(at..at + 2)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u16::from_ne_bytes)
    }
    fn u32(&self, at: usize) -> u32 {
        self.0
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_ne_bytes)
    }
    fn u64(&self, at: usize) -> u64 {
        self.0
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_ne_bytes)
    }
}

/// `fuse_in_header`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InHeader {
    pub len: u32,
    pub opcode: u32,
    pub unique: u64,
    pub nodeid: u64,
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
    pub total_extlen: u16,
}

impl InHeader {
    pub fn parse(b: &[u8]) -> Option<InHeader> {
        if b.len() < IN_HEADER_LEN {
            return None;
        }
        let f = Fields(b);
        Some(InHeader {
            len: f.u32(0),
            opcode: f.u32(4),
            unique: f.u64(8),
            nodeid: f.u64(16),
            uid: f.u32(24),
            gid: f.u32(28),
            pid: f.u32(32),
            total_extlen: f.u16(36),
        })
    }

    pub fn encode(&self) -> [u8; IN_HEADER_LEN] {
        let mut b = [0u8; IN_HEADER_LEN];
        b[0..4].copy_from_slice(&self.len.to_ne_bytes());
        b[4..8].copy_from_slice(&self.opcode.to_ne_bytes());
        b[8..16].copy_from_slice(&self.unique.to_ne_bytes());
        b[16..24].copy_from_slice(&self.nodeid.to_ne_bytes());
        b[24..28].copy_from_slice(&self.uid.to_ne_bytes());
        b[28..32].copy_from_slice(&self.gid.to_ne_bytes());
        b[32..36].copy_from_slice(&self.pid.to_ne_bytes());
        b[36..38].copy_from_slice(&self.total_extlen.to_ne_bytes());
        b
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitIn {
    pub major: u32,
    pub minor: u32,
    pub max_readahead: u32,
    pub flags: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetattrIn {
    pub valid: u32,
    pub fh: u64,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadIn {
    pub fh: u64,
    pub offset: u64,
    pub size: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteIn {
    pub fh: u64,
    pub offset: u64,
    pub size: u32,
    pub write_flags: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FallocateIn {
    pub fh: u64,
    pub offset: u64,
    pub length: u64,
    pub mode: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LseekIn {
    pub fh: u64,
    pub offset: u64,
    pub whence: u32,
}

/// A decoded request. WRITE carries no payload here: the payload stays
/// in the caller's buffer (it was read straight into an aligned block
/// buffer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Init(InitIn),
    Getattr,
    Setattr(SetattrIn),
    /// The open flags (`O_*`).
    Open(u32),
    Read(ReadIn),
    Write(WriteIn),
    Statfs,
    Release,
    Flush,
    Fsync,
    Fallocate(FallocateIn),
    Lseek(LseekIn),
    Destroy,
    /// Requests the kernel expects no reply to (INTERRUPT, FORGET,
    /// BATCH_FORGET).
    NoReply,
    /// Anything else: answered with ENOSYS.
    Unsupported(u32),
}

impl Request {
    /// Decodes the argument bytes (everything after the header) of one
    /// request. `args` for WRITE need only hold the `fuse_write_in`.
    pub fn decode(opcode: u32, args: &[u8]) -> Result<Request, DecodeError> {
        let need = |n: usize| {
            if args.len() < n {
                Err(DecodeError::Short {
                    opcode,
                    need: n,
                    got: args.len(),
                })
            } else {
                Ok(Fields(args))
            }
        };
        Ok(match opcode {
            op::INIT => {
                let f = need(16)?;
                Request::Init(InitIn {
                    major: f.u32(0),
                    minor: f.u32(4),
                    max_readahead: f.u32(8),
                    flags: f.u32(12),
                })
            }
            op::GETATTR => Request::Getattr,
            op::SETATTR => {
                let f = need(88)?;
                Request::Setattr(SetattrIn {
                    valid: f.u32(0),
                    fh: f.u64(8),
                    size: f.u64(16),
                    mode: f.u32(68),
                    uid: f.u32(76),
                    gid: f.u32(80),
                })
            }
            op::OPEN => Request::Open(need(8)?.u32(0)),
            op::READ => {
                let f = need(24)?;
                Request::Read(ReadIn {
                    fh: f.u64(0),
                    offset: f.u64(8),
                    size: f.u32(16),
                })
            }
            op::WRITE => {
                let f = need(WRITE_IN_LEN)?;
                Request::Write(WriteIn {
                    fh: f.u64(0),
                    offset: f.u64(8),
                    size: f.u32(16),
                    write_flags: f.u32(20),
                })
            }
            op::STATFS => Request::Statfs,
            op::RELEASE => Request::Release,
            op::FLUSH => Request::Flush,
            op::FSYNC => Request::Fsync,
            op::FALLOCATE => {
                let f = need(28)?;
                Request::Fallocate(FallocateIn {
                    fh: f.u64(0),
                    offset: f.u64(8),
                    length: f.u64(16),
                    mode: f.u32(24),
                })
            }
            op::LSEEK => {
                let f = need(20)?;
                Request::Lseek(LseekIn {
                    fh: f.u64(0),
                    offset: f.u64(8),
                    whence: f.u32(16),
                })
            }
            op::DESTROY => Request::Destroy,
            op::INTERRUPT | op::FORGET | op::BATCH_FORGET => Request::NoReply,
            other => Request::Unsupported(other),
        })
    }
}

/// `fuse_out_header` for a reply of `payload_len` bytes.
pub fn out_header(unique: u64, error: i32, payload_len: usize) -> [u8; OUT_HEADER_LEN] {
    let mut b = [0u8; OUT_HEADER_LEN];
    let len = (OUT_HEADER_LEN + payload_len) as u32;
    b[0..4].copy_from_slice(&len.to_ne_bytes());
    b[4..8].copy_from_slice(&error.to_ne_bytes());
    b[8..16].copy_from_slice(&unique.to_ne_bytes());
    b
}

/// Writes host-endian integers into a fixed array.
struct Out<const N: usize>([u8; N]);

impl<const N: usize> Out<N> {
    fn new() -> Self {
        Out([0u8; N])
    }
    fn u16(&mut self, at: usize, v: u16) -> &mut Self {
        self.0[at..at + 2].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u32(&mut self, at: usize, v: u32) -> &mut Self {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, at: usize, v: u64) -> &mut Self {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
}

/// `fuse_init_out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitOut {
    pub major: u32,
    pub minor: u32,
    pub max_readahead: u32,
    pub flags: u32,
    pub max_background: u16,
    pub congestion_threshold: u16,
    pub max_write: u32,
    pub time_gran: u32,
    pub max_pages: u16,
}

impl InitOut {
    pub const LEN: usize = 64;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut o = Out::<{ Self::LEN }>::new();
        o.u32(0, self.major)
            .u32(4, self.minor)
            .u32(8, self.max_readahead)
            .u32(12, self.flags)
            .u16(16, self.max_background)
            .u16(18, self.congestion_threshold)
            .u32(20, self.max_write)
            .u32(24, self.time_gran)
            .u16(28, self.max_pages);
        o.0
    }
}

/// `fuse_attr`, as `fuse_attr_out` carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Attr {
    pub ino: u64,
    pub size: u64,
    pub blocks: u64,
    /// atime, mtime and ctime (seconds); we keep one time for all three.
    pub time: u64,
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub blksize: u32,
}

/// `fuse_attr_out`, valid for `valid_secs` seconds.
pub fn attr_out(a: &Attr, valid_secs: u64) -> [u8; 104] {
    let mut o = Out::<104>::new();
    o.u64(0, valid_secs)
        .u64(16, a.ino)
        .u64(24, a.size)
        .u64(32, a.blocks)
        .u64(40, a.time)
        .u64(48, a.time)
        .u64(56, a.time)
        .u32(76, a.mode)
        .u32(80, a.nlink)
        .u32(84, a.uid)
        .u32(88, a.gid)
        .u32(96, a.blksize);
    o.0
}

/// `fuse_open_out`: no file handle, no open flags (the kernel's page
/// cache is used as it is for any file).
pub fn open_out() -> [u8; 16] {
    [0u8; 16]
}

/// `fuse_write_out`.
pub fn write_out(size: u32) -> [u8; 8] {
    let mut o = Out::<8>::new();
    o.u32(0, size);
    o.0
}

/// `fuse_lseek_out`.
pub fn lseek_out(offset: u64) -> [u8; 8] {
    offset.to_ne_bytes()
}

/// `fuse_statfs_out` (`fuse_kstatfs`): no blocks, no inodes, what a
/// filesystem without a statfs operation reports.
pub fn statfs_out(bsize: u32, namelen: u32) -> [u8; 80] {
    let mut o = Out::<80>::new();
    o.u32(40, bsize).u32(44, namelen);
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(fields: &[(usize, &[u8])], len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        for (at, b) in fields {
            v[*at..*at + b.len()].copy_from_slice(b);
        }
        v
    }

    #[test]
    fn header_round_trip() {
        let h = InHeader {
            len: 80,
            opcode: op::READ,
            unique: 0x1122_3344_5566_7788,
            nodeid: ROOT_ID,
            uid: 1000,
            gid: 100,
            pid: 4242,
            total_extlen: 0,
        };
        assert_eq!(InHeader::parse(&h.encode()), Some(h));
        assert_eq!(InHeader::parse(&[0u8; 39]), None);
    }

    #[test]
    fn decodes_fixed_structs() {
        let w = args(
            &[
                (8, &4096u64.to_ne_bytes()),
                (16, &512u32.to_ne_bytes()),
                (20, &1u32.to_ne_bytes()),
            ],
            40,
        );
        assert_eq!(
            Request::decode(op::WRITE, &w),
            Ok(Request::Write(WriteIn {
                fh: 0,
                offset: 4096,
                size: 512,
                write_flags: 1
            }))
        );
        let s = args(
            &[
                (0, &(fattr::SIZE | fattr::MODE).to_ne_bytes()),
                (16, &12345u64.to_ne_bytes()),
                (68, &0o100644u32.to_ne_bytes()),
                (76, &7u32.to_ne_bytes()),
                (80, &8u32.to_ne_bytes()),
            ],
            88,
        );
        assert_eq!(
            Request::decode(op::SETATTR, &s),
            Ok(Request::Setattr(SetattrIn {
                valid: fattr::SIZE | fattr::MODE,
                fh: 0,
                size: 12345,
                mode: 0o100644,
                uid: 7,
                gid: 8
            }))
        );
        let l = args(&[(8, &99u64.to_ne_bytes()), (16, &4u32.to_ne_bytes())], 24);
        assert_eq!(
            Request::decode(op::LSEEK, &l),
            Ok(Request::Lseek(LseekIn {
                fh: 0,
                offset: 99,
                whence: 4
            }))
        );
    }

    #[test]
    fn short_arguments_are_errors_not_panics() {
        for opcode in [
            op::INIT,
            op::SETATTR,
            op::OPEN,
            op::READ,
            op::WRITE,
            op::FALLOCATE,
            op::LSEEK,
        ] {
            for len in [0, 3, 7] {
                assert!(
                    matches!(
                        Request::decode(opcode, &vec![0xff; len]),
                        Err(DecodeError::Short { .. })
                    ),
                    "opcode {opcode} len {len}"
                );
            }
        }
        assert_eq!(Request::decode(9999, &[]), Ok(Request::Unsupported(9999)));
        assert_eq!(Request::decode(op::INTERRUPT, &[]), Ok(Request::NoReply));
    }

    #[test]
    fn reply_layouts() {
        let h = out_header(5, -libc::ENOSYS, 0);
        assert_eq!(u32::from_ne_bytes([h[0], h[1], h[2], h[3]]), 16);
        assert_eq!(i32::from_ne_bytes([h[4], h[5], h[6], h[7]]), -libc::ENOSYS);
        let a = attr_out(
            &Attr {
                ino: 1,
                size: 1 << 20,
                blocks: 2048,
                time: 7,
                mode: 0o100600,
                nlink: 1,
                uid: 0,
                gid: 0,
                blksize: 512,
            },
            1,
        );
        assert_eq!(
            u64::from_ne_bytes(a[24..32].try_into().expect("field")),
            1 << 20
        );
        assert_eq!(
            u32::from_ne_bytes(a[76..80].try_into().expect("field")),
            0o100600
        );
        let i = InitOut {
            major: 7,
            minor: 31,
            max_readahead: 1,
            flags: 2,
            max_background: 3,
            congestion_threshold: 4,
            max_write: 5,
            time_gran: 6,
            max_pages: 7,
        }
        .encode();
        assert_eq!(u32::from_ne_bytes(i[20..24].try_into().expect("field")), 5);
        assert_eq!(u16::from_ne_bytes(i[28..30].try_into().expect("field")), 7);
        let st = statfs_out(512, 255);
        assert_eq!(
            u32::from_ne_bytes(st[40..44].try_into().expect("field")),
            512
        );
        assert_eq!(
            u32::from_ne_bytes(st[44..48].try_into().expect("field")),
            255
        );
    }
}
