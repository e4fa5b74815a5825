//! The NBD wire format (doc/proto.md of the NBD project): constants,
//! handshake messages, option replies, request headers and reply headers.
//!
//! Everything here works on byte slices and `Vec<u8>`; nothing touches a
//! socket. Every decoder of peer bytes returns an error instead of
//! panicking.

use std::io;

/// `"NBDMAGIC"`: the first eight bytes the server sends.
pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
/// `"IHAVEOPT"`: newstyle negotiation, and the magic of every option.
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// Magic of every option reply.
pub const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;

pub const REQUEST_MAGIC: u32 = 0x2560_9513;
pub const EXTENDED_REQUEST_MAGIC: u32 = 0x21e4_1c71;
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;
pub const EXTENDED_REPLY_MAGIC: u32 = 0x6e8a_278c;

/// Handshake flags (server) and client flags.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
pub const FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
pub const FLAG_C_NO_ZEROES: u32 = 1 << 1;

/// Options.
pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_ABORT: u32 = 2;
pub const OPT_LIST: u32 = 3;
pub const OPT_STARTTLS: u32 = 5;
pub const OPT_INFO: u32 = 6;
pub const OPT_GO: u32 = 7;
pub const OPT_STRUCTURED_REPLY: u32 = 8;
pub const OPT_LIST_META_CONTEXT: u32 = 9;
pub const OPT_SET_META_CONTEXT: u32 = 10;
pub const OPT_EXTENDED_HEADERS: u32 = 11;

/// Option reply types.
pub const REP_ACK: u32 = 1;
pub const REP_SERVER: u32 = 2;
pub const REP_INFO: u32 = 3;
pub const REP_META_CONTEXT: u32 = 4;
const REP_ERR: u32 = 1 << 31;
pub const REP_ERR_UNSUP: u32 = REP_ERR | 1;
pub const REP_ERR_POLICY: u32 = REP_ERR | 2;
pub const REP_ERR_INVALID: u32 = REP_ERR | 3;
pub const REP_ERR_PLATFORM: u32 = REP_ERR | 4;
pub const REP_ERR_TLS_REQD: u32 = REP_ERR | 5;
pub const REP_ERR_UNKNOWN: u32 = REP_ERR | 6;
pub const REP_ERR_SHUTDOWN: u32 = REP_ERR | 7;
pub const REP_ERR_BLOCK_SIZE_REQD: u32 = REP_ERR | 8;
pub const REP_ERR_TOO_BIG: u32 = REP_ERR | 9;
pub const REP_ERR_EXT_HEADER_REQD: u32 = REP_ERR | 10;

/// `NBD_REP_INFO` types.
pub const INFO_EXPORT: u16 = 0;
pub const INFO_NAME: u16 = 1;
pub const INFO_DESCRIPTION: u16 = 2;
pub const INFO_BLOCK_SIZE: u16 = 3;

/// Transmission flags.
pub const FLAG_HAS_FLAGS: u16 = 1 << 0;
pub const FLAG_READ_ONLY: u16 = 1 << 1;
pub const FLAG_SEND_FLUSH: u16 = 1 << 2;
pub const FLAG_SEND_FUA: u16 = 1 << 3;
pub const FLAG_ROTATIONAL: u16 = 1 << 4;
pub const FLAG_SEND_TRIM: u16 = 1 << 5;
pub const FLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;
pub const FLAG_SEND_DF: u16 = 1 << 7;
pub const FLAG_CAN_MULTI_CONN: u16 = 1 << 8;
pub const FLAG_SEND_RESIZE: u16 = 1 << 9;
pub const FLAG_SEND_CACHE: u16 = 1 << 10;
pub const FLAG_SEND_FAST_ZERO: u16 = 1 << 11;
pub const FLAG_BLOCK_STAT_PAYLOAD: u16 = 1 << 12;

/// Commands.
pub const CMD_READ: u16 = 0;
pub const CMD_WRITE: u16 = 1;
pub const CMD_DISC: u16 = 2;
pub const CMD_FLUSH: u16 = 3;
pub const CMD_TRIM: u16 = 4;
pub const CMD_CACHE: u16 = 5;
pub const CMD_WRITE_ZEROES: u16 = 6;
pub const CMD_BLOCK_STATUS: u16 = 7;

/// Command flags.
pub const CMD_FLAG_FUA: u16 = 1 << 0;
pub const CMD_FLAG_NO_HOLE: u16 = 1 << 1;
pub const CMD_FLAG_DF: u16 = 1 << 2;
pub const CMD_FLAG_REQ_ONE: u16 = 1 << 3;
pub const CMD_FLAG_FAST_ZERO: u16 = 1 << 4;
pub const CMD_FLAG_PAYLOAD_LEN: u16 = 1 << 5;

/// Structured reply flags and chunk types.
pub const REPLY_FLAG_DONE: u16 = 1 << 0;
pub const REPLY_TYPE_NONE: u16 = 0;
pub const REPLY_TYPE_OFFSET_DATA: u16 = 1;
pub const REPLY_TYPE_OFFSET_HOLE: u16 = 2;
pub const REPLY_TYPE_BLOCK_STATUS: u16 = 5;
pub const REPLY_TYPE_BLOCK_STATUS_EXT: u16 = 6;
pub const REPLY_TYPE_ERROR: u16 = (1 << 15) | 1;
pub const REPLY_TYPE_ERROR_OFFSET: u16 = (1 << 15) | 2;

/// `base:allocation` extent flags.
pub const STATE_HOLE: u32 = 1 << 0;
pub const STATE_ZERO: u32 = 1 << 1;

/// Errors on the wire (not the host's errno values).
pub const EPERM: u32 = 1;
pub const EIO: u32 = 5;
pub const ENOMEM: u32 = 12;
pub const EINVAL: u32 = 22;
pub const ENOSPC: u32 = 28;
pub const EOVERFLOW: u32 = 75;
pub const ENOTSUP: u32 = 95;
pub const ESHUTDOWN: u32 = 108;

/// Largest payload (option, write, read) QEMU accepts: 32 MiB.
pub const MAX_BUFFER_SIZE: u32 = 32 * 1024 * 1024;
/// Longest export name, description or meta context query.
pub const MAX_STRING_SIZE: u32 = 4096;

/// Size of the greeting, a client option header, a request header.
pub const GREETING_SIZE: usize = 18;
pub const OPTION_HEADER_SIZE: usize = 16;
pub const REQUEST_SIZE: usize = 28;
pub const EXTENDED_REQUEST_SIZE: usize = 32;
/// `NBD_OPT_EXPORT_NAME` reply without `NO_ZEROES`: 8 + 2 + 124 zeroes.
pub const EXPORT_NAME_REPLY_SIZE: usize = 134;

/// The host errno of an I/O error as NBD sends it (QEMU's
/// `system_errno_to_nbd_errno`).
pub fn nbd_errno(e: &io::Error) -> u32 {
    match crate::errno::of(e) {
        libc::EPERM | libc::EROFS => EPERM,
        libc::EIO => EIO,
        libc::ENOMEM => ENOMEM,
        libc::EDQUOT | libc::EFBIG | libc::ENOSPC => ENOSPC,
        libc::EOVERFLOW => EOVERFLOW,
        libc::ENOTSUP => ENOTSUP,
        libc::ESHUTDOWN => ESHUTDOWN,
        _ => EINVAL,
    }
}

/// QEMU's names for options in messages (`nbd_opt_lookup`).
pub fn opt_name(opt: u32) -> &'static str {
    match opt {
        OPT_EXPORT_NAME => "export name",
        OPT_ABORT => "abort",
        OPT_LIST => "list",
        4 => "peek export",
        OPT_STARTTLS => "starttls",
        OPT_INFO => "info",
        OPT_GO => "go",
        OPT_STRUCTURED_REPLY => "structured reply",
        OPT_LIST_META_CONTEXT => "list meta context",
        OPT_SET_META_CONTEXT => "set meta context",
        OPT_EXTENDED_HEADERS => "extended headers",
        _ => "<unknown>",
    }
}

/// QEMU's names for commands in messages (`nbd_cmd_lookup`).
pub fn cmd_name(cmd: u16) -> &'static str {
    match cmd {
        CMD_READ => "read",
        CMD_WRITE => "write",
        CMD_DISC => "disconnect",
        CMD_FLUSH => "flush",
        CMD_TRIM => "trim",
        CMD_CACHE => "cache",
        CMD_WRITE_ZEROES => "write zeroes",
        CMD_BLOCK_STATUS => "block status",
        _ => "<unknown>",
    }
}

/// A violation of the protocol that ends the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProtocolError {}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

/// The server's first message: fixed newstyle, no zeroes.
pub fn greeting() -> [u8; GREETING_SIZE] {
    let mut b = [0; GREETING_SIZE];
    b[..8].copy_from_slice(&NBDMAGIC.to_be_bytes());
    b[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
    b[16..].copy_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    b
}

/// The header of a client option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionHeader {
    pub option: u32,
    pub len: u32,
}

impl OptionHeader {
    pub fn decode(b: &[u8; OPTION_HEADER_SIZE]) -> Result<Self, ProtocolError> {
        if be64(b, 0) != IHAVEOPT {
            return Err(ProtocolError("Bad magic received".into()));
        }
        let h = OptionHeader {
            option: be32(b, 8),
            len: be32(b, 12),
        };
        if h.len > MAX_BUFFER_SIZE {
            return Err(ProtocolError(format!(
                "len ({}) is larger than max len ({MAX_BUFFER_SIZE})",
                h.len
            )));
        }
        Ok(h)
    }

    pub fn encode(&self) -> [u8; OPTION_HEADER_SIZE] {
        let mut b = [0; OPTION_HEADER_SIZE];
        b[..8].copy_from_slice(&IHAVEOPT.to_be_bytes());
        b[8..12].copy_from_slice(&self.option.to_be_bytes());
        b[12..].copy_from_slice(&self.len.to_be_bytes());
        b
    }
}

/// Appends one option reply.
pub fn put_option_reply(out: &mut Vec<u8>, option: u32, reply: u32, payload: &[u8]) {
    out.extend_from_slice(&REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&reply.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Appends an `NBD_REP_INFO` reply of `info` type.
pub fn put_info(out: &mut Vec<u8>, option: u32, info: u16, data: &[u8]) {
    let mut p = Vec::with_capacity(2 + data.len());
    p.extend_from_slice(&info.to_be_bytes());
    p.extend_from_slice(data);
    put_option_reply(out, option, REP_INFO, &p);
}

/// The payload of `NBD_INFO_EXPORT` (and of the `EXPORT_NAME` reply).
pub fn export_info(size: u64, flags: u16) -> [u8; 10] {
    let mut b = [0; 10];
    b[..8].copy_from_slice(&size.to_be_bytes());
    b[8..].copy_from_slice(&flags.to_be_bytes());
    b
}

/// The payload of `NBD_INFO_BLOCK_SIZE`.
pub fn block_size_info(min: u32, preferred: u32, max: u32) -> [u8; 12] {
    let mut b = [0; 12];
    b[..4].copy_from_slice(&min.to_be_bytes());
    b[4..8].copy_from_slice(&preferred.to_be_bytes());
    b[8..].copy_from_slice(&max.to_be_bytes());
    b
}

/// The payload of `NBD_REP_SERVER`: name and description.
pub fn server_entry(name: &str, description: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(4 + name.len() + description.len());
    p.extend_from_slice(&(name.len() as u32).to_be_bytes());
    p.extend_from_slice(name.as_bytes());
    p.extend_from_slice(description.as_bytes());
    p
}

/// The payload of `NBD_REP_META_CONTEXT`.
pub fn meta_context_entry(id: u32, name: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(4 + name.len());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(name.as_bytes());
    p
}

/// Why an option's payload is unusable: the reply says so and the
/// connection goes on (QEMU's `nbd_opt_invalid`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptInvalid(pub String);

/// Reads the parts of an option payload the way QEMU does, with its
/// messages for lengths that do not add up.
pub struct OptReader<'a> {
    data: &'a [u8],
    option: u32,
}

impl<'a> OptReader<'a> {
    pub fn new(option: u32, data: &'a [u8]) -> Self {
        OptReader { data, option }
    }

    pub fn remaining(&self) -> usize {
        self.data.len()
    }

    fn inconsistent(&self) -> OptInvalid {
        OptInvalid(format!(
            "Inconsistent lengths in option {}",
            opt_name(self.option)
        ))
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], OptInvalid> {
        if n > self.data.len() {
            return Err(self.inconsistent());
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    pub fn u16(&mut self) -> Result<u16, OptInvalid> {
        self.bytes(2).map(|b| be16(b, 0))
    }

    pub fn u32(&mut self) -> Result<u32, OptInvalid> {
        self.bytes(4).map(|b| be32(b, 0))
    }

    /// `len` bytes without NUL, as text (lossy: names are compared as
    /// bytes by QEMU, and non-UTF-8 names never match ours).
    pub fn text(&mut self, len: usize) -> Result<String, OptInvalid> {
        let b = self.bytes(len)?;
        if b.contains(&0) {
            return Err(OptInvalid(format!(
                "Unexpected embedded NUL in option {}",
                opt_name(self.option)
            )));
        }
        Ok(String::from_utf8_lossy(b).into_owned())
    }

    /// A 32-bit length and a name of at most [`MAX_STRING_SIZE`] bytes.
    pub fn name(&mut self) -> Result<String, OptInvalid> {
        let len = self.u32()?;
        if len > MAX_STRING_SIZE {
            return Err(OptInvalid(format!("Invalid name length: {len}")));
        }
        self.text(len as usize)
    }
}

/// The payload of `NBD_OPT_INFO` / `NBD_OPT_GO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoRequest {
    pub name: String,
    pub want_name: bool,
    pub want_block_size: bool,
}

impl InfoRequest {
    pub fn decode(option: u32, data: &[u8]) -> Result<Self, OptInvalid> {
        let mut r = OptReader::new(option, data);
        let name = r.name()?;
        let n = r.u16()?;
        let mut req = InfoRequest {
            name,
            want_name: false,
            want_block_size: false,
        };
        for _ in 0..n {
            match r.u16()? {
                INFO_NAME => req.want_name = true,
                INFO_BLOCK_SIZE => req.want_block_size = true,
                _ => {}
            }
        }
        if r.remaining() > 0 {
            return Err(unexpected_length(option));
        }
        Ok(req)
    }
}

/// QEMU's `nbd_reject_length` message.
pub fn unexpected_length(option: u32) -> OptInvalid {
    OptInvalid(format!(
        "option '{}' has unexpected length",
        opt_name(option)
    ))
}

/// A request header that cannot be served: the fields, when there are
/// any, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest {
    pub req: Option<Request>,
    pub msg: String,
}

/// A decoded request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub flags: u16,
    pub ty: u16,
    pub cookie: u64,
    pub offset: u64,
    /// 32 bits on the wire unless extended headers were negotiated.
    pub len: u64,
}

impl Request {
    /// Decodes a compact (28 bytes) or extended (32 bytes) header; which
    /// one is told by `b.len()`. With a wrong magic the fields are still
    /// returned: QEMU answers such a request (then hangs up).
    pub fn decode(b: &[u8]) -> Result<Self, BadRequest> {
        let (expect, extended) = match b.len() {
            REQUEST_SIZE => (REQUEST_MAGIC, false),
            EXTENDED_REQUEST_SIZE => (EXTENDED_REQUEST_MAGIC, true),
            n => {
                return Err(BadRequest {
                    req: None,
                    msg: format!("bad request header size {n}"),
                });
            }
        };
        let req = Request {
            flags: be16(b, 4),
            ty: be16(b, 6),
            cookie: be64(b, 8),
            offset: be64(b, 16),
            len: if extended {
                be64(b, 24)
            } else {
                u64::from(be32(b, 24))
            },
        };
        let magic = be32(b, 0);
        if magic != expect {
            return Err(BadRequest {
                req: Some(req),
                msg: format!("invalid magic (got 0x{magic:x}, expected 0x{expect:x})"),
            });
        }
        Ok(req)
    }

    /// The header as a client sends it (tests, clients).
    pub fn encode(&self, extended: bool) -> Vec<u8> {
        let mut b = Vec::with_capacity(EXTENDED_REQUEST_SIZE);
        let magic = if extended {
            EXTENDED_REQUEST_MAGIC
        } else {
            REQUEST_MAGIC
        };
        b.extend_from_slice(&magic.to_be_bytes());
        b.extend_from_slice(&self.flags.to_be_bytes());
        b.extend_from_slice(&self.ty.to_be_bytes());
        b.extend_from_slice(&self.cookie.to_be_bytes());
        b.extend_from_slice(&self.offset.to_be_bytes());
        if extended {
            b.extend_from_slice(&self.len.to_be_bytes());
        } else {
            b.extend_from_slice(&(self.len as u32).to_be_bytes());
        }
        b
    }
}

/// Which reply headers the client negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    /// Old (non-fixed) newstyle: only `NBD_OPT_EXPORT_NAME`.
    ExportName,
    /// Fixed newstyle, simple replies.
    Simple,
    /// `NBD_OPT_STRUCTURED_REPLY`.
    Structured,
    /// `NBD_OPT_EXTENDED_HEADERS`.
    Extended,
}

impl Mode {
    pub fn request_size(self) -> usize {
        if self >= Mode::Extended {
            EXTENDED_REQUEST_SIZE
        } else {
            REQUEST_SIZE
        }
    }
}

/// Appends a simple reply header (16 bytes).
pub fn put_simple_reply(out: &mut Vec<u8>, error: u32, cookie: u64) {
    out.extend_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&error.to_be_bytes());
    out.extend_from_slice(&cookie.to_be_bytes());
}

/// Appends a structured (20 bytes) or extended (32 bytes) chunk header;
/// `len` is the length of the chunk's payload.
pub fn put_chunk_header(
    out: &mut Vec<u8>,
    extended: bool,
    flags: u16,
    ty: u16,
    req: &Request,
    len: u64,
) {
    if extended {
        out.extend_from_slice(&EXTENDED_REPLY_MAGIC.to_be_bytes());
        out.extend_from_slice(&flags.to_be_bytes());
        out.extend_from_slice(&ty.to_be_bytes());
        out.extend_from_slice(&req.cookie.to_be_bytes());
        out.extend_from_slice(&req.offset.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.extend_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
        out.extend_from_slice(&flags.to_be_bytes());
        out.extend_from_slice(&ty.to_be_bytes());
        out.extend_from_slice(&req.cookie.to_be_bytes());
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

/// Appends an `NBD_REPLY_TYPE_ERROR` chunk (always the last one).
pub fn put_error_chunk(out: &mut Vec<u8>, extended: bool, req: &Request, error: u32, msg: &str) {
    // The message is at most 4096 bytes (it goes out as a u16 length).
    let mut end = msg.len().min(MAX_STRING_SIZE as usize);
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    let msg = &msg[..end];
    put_chunk_header(
        out,
        extended,
        REPLY_FLAG_DONE,
        REPLY_TYPE_ERROR,
        req,
        6 + msg.len() as u64,
    );
    out.extend_from_slice(&error.to_be_bytes());
    out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    out.extend_from_slice(msg.as_bytes());
}

/// Appends the header of an `NBD_REPLY_TYPE_OFFSET_DATA` chunk; `len`
/// bytes of data follow it.
pub fn put_data_chunk_header(
    out: &mut Vec<u8>,
    extended: bool,
    done: bool,
    req: &Request,
    offset: u64,
    len: u64,
) {
    let flags = if done { REPLY_FLAG_DONE } else { 0 };
    put_chunk_header(out, extended, flags, REPLY_TYPE_OFFSET_DATA, req, 8 + len);
    out.extend_from_slice(&offset.to_be_bytes());
}

/// Appends an `NBD_REPLY_TYPE_OFFSET_HOLE` chunk.
pub fn put_hole_chunk(
    out: &mut Vec<u8>,
    extended: bool,
    done: bool,
    req: &Request,
    offset: u64,
    len: u32,
) {
    let flags = if done { REPLY_FLAG_DONE } else { 0 };
    put_chunk_header(out, extended, flags, REPLY_TYPE_OFFSET_HOLE, req, 12);
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
}

/// One block status extent: length and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub len: u64,
    pub flags: u32,
}

/// Appends a block status chunk for one meta context: the compact form
/// (32-bit lengths) unless extended headers are in use.
pub fn put_block_status_chunk(
    out: &mut Vec<u8>,
    extended: bool,
    done: bool,
    req: &Request,
    context: u32,
    extents: &[Extent],
) {
    let flags = if done { REPLY_FLAG_DONE } else { 0 };
    if extended {
        let len = 8 + 16 * extents.len() as u64;
        put_chunk_header(out, true, flags, REPLY_TYPE_BLOCK_STATUS_EXT, req, len);
        out.extend_from_slice(&context.to_be_bytes());
        out.extend_from_slice(&(extents.len() as u32).to_be_bytes());
        for e in extents {
            out.extend_from_slice(&e.len.to_be_bytes());
            out.extend_from_slice(&u64::from(e.flags).to_be_bytes());
        }
    } else {
        let len = 4 + 8 * extents.len() as u64;
        put_chunk_header(out, false, flags, REPLY_TYPE_BLOCK_STATUS, req, len);
        out.extend_from_slice(&context.to_be_bytes());
        for e in extents {
            out.extend_from_slice(&(e.len.min(u64::from(u32::MAX)) as u32).to_be_bytes());
            out.extend_from_slice(&e.flags.to_be_bytes());
        }
    }
}

/// The header of any reply the server sends, as a client decodes it
/// (tests and clients; the server never reads replies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyHeader {
    Simple {
        error: u32,
        cookie: u64,
    },
    Chunk {
        flags: u16,
        ty: u16,
        cookie: u64,
        offset: u64,
        len: u64,
    },
}

impl ReplyHeader {
    /// Size of the header that starts with `magic` (the first 4 bytes).
    pub fn size_for(magic: u32) -> Option<usize> {
        match magic {
            SIMPLE_REPLY_MAGIC => Some(16),
            STRUCTURED_REPLY_MAGIC => Some(20),
            EXTENDED_REPLY_MAGIC => Some(32),
            _ => None,
        }
    }

    pub fn decode(b: &[u8]) -> Result<Self, ProtocolError> {
        if b.len() < 4 {
            return Err(ProtocolError("short reply header".into()));
        }
        let magic = be32(b, 0);
        if Self::size_for(magic) != Some(b.len()) {
            return Err(ProtocolError(format!("bad reply magic 0x{magic:x}")));
        }
        Ok(match magic {
            SIMPLE_REPLY_MAGIC => ReplyHeader::Simple {
                error: be32(b, 4),
                cookie: be64(b, 8),
            },
            STRUCTURED_REPLY_MAGIC => ReplyHeader::Chunk {
                flags: be16(b, 4),
                ty: be16(b, 6),
                cookie: be64(b, 8),
                offset: 0,
                len: u64::from(be32(b, 16)),
            },
            _ => ReplyHeader::Chunk {
                flags: be16(b, 4),
                ty: be16(b, 6),
                cookie: be64(b, 8),
                offset: be64(b, 16),
                len: be64(b, 24),
            },
        })
    }
}
