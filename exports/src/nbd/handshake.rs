//! The NBD handshake (fixed newstyle): option haggling up to `NBD_OPT_GO`
//! or `NBD_OPT_EXPORT_NAME`, answered as QEMU 10.0 answers each option.

use std::io;
use std::sync::Arc;

use storage_block::BlockDevice;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::codec::*;
use super::export::{ClientGuard, NbdExport};
use super::state::{
    Contexts, ExportLookup, META_ALLOCATION_DEPTH, META_BASE_ALLOCATION, Negotiated, SessionError,
    drop_bytes, protocol,
};

/// Option payloads we read into memory; longer ones of the options that
/// have a payload cannot be valid (QEMU streams them and fails them too).
const MAX_OPTION_READ: u32 = 1024 * 1024;

pub(super) struct Handshake<'a, R, W> {
    r: &'a mut R,
    w: &'a mut W,
    lookup: &'a dyn ExportLookup,
    mode: Mode,
    no_zeroes: bool,
    contexts: Contexts,
    /// The option being answered.
    opt: u32,
}

impl<'a, R, W> Handshake<'a, R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    pub fn new(r: &'a mut R, w: &'a mut W, lookup: &'a dyn ExportLookup) -> Self {
        Handshake {
            r,
            w,
            lookup,
            mode: Mode::ExportName,
            no_zeroes: false,
            contexts: Contexts::default(),
            opt: 0,
        }
    }

    /// `Ok(None)` when the client aborted.
    pub async fn run(mut self) -> Result<Option<Negotiated>, SessionError> {
        self.w.write_all(&greeting()).await?;
        self.w.flush().await?;
        let mut flags = self.r.read_u32().await?;
        if flags & FLAG_C_FIXED_NEWSTYLE != 0 {
            self.mode = Mode::Simple;
            flags &= !FLAG_C_FIXED_NEWSTYLE;
        }
        if flags & FLAG_C_NO_ZEROES != 0 {
            self.no_zeroes = true;
            flags &= !FLAG_C_NO_ZEROES;
        }
        if flags != 0 {
            return Err(protocol(format!(
                "Unknown client flags 0x{flags:x} received"
            )));
        }
        loop {
            let mut hdr = [0; OPTION_HEADER_SIZE];
            self.r.read_exact(&mut hdr).await?;
            let h = OptionHeader::decode(&hdr)?;
            self.opt = h.option;
            // Old-style newstyle clients can only name an export.
            if self.mode == Mode::ExportName && h.option != OPT_EXPORT_NAME {
                return Err(protocol(format!(
                    "Unsupported option {} ({})",
                    h.option,
                    opt_name(h.option)
                )));
            }
            let mut out = Vec::new();
            match h.option {
                OPT_EXPORT_NAME => return self.export_name(h.len).await.map(Some),
                OPT_ABORT => {
                    // The client may not wait for this: ignore errors.
                    put_option_reply(&mut out, h.option, REP_ACK, &[]);
                    let _ = self.w.write_all(&out).await;
                    let _ = self.w.flush().await;
                    return Ok(None);
                }
                OPT_LIST if h.len > 0 => self.reject_length(&mut out, h.len).await?,
                OPT_LIST => {
                    for e in self.lookup.exports() {
                        let desc = e.opts.description.as_deref().unwrap_or("");
                        put_option_reply(
                            &mut out,
                            h.option,
                            REP_SERVER,
                            &server_entry(&e.opts.name, desc),
                        );
                    }
                    put_option_reply(&mut out, h.option, REP_ACK, &[]);
                }
                OPT_INFO | OPT_GO => {
                    if let Some(data) = self.payload(&mut out, h.len).await?
                        && let Some(n) = self.info(&mut out, &data)
                    {
                        self.w.write_all(&out).await?;
                        self.w.flush().await?;
                        return Ok(Some(n));
                    }
                }
                OPT_STARTTLS if h.len > 0 => self.reject_length(&mut out, h.len).await?,
                // No TLS credentials: QEMU's answer.
                OPT_STARTTLS => self.error(&mut out, REP_ERR_POLICY, "TLS not configured"),
                OPT_STRUCTURED_REPLY if h.len > 0 => self.reject_length(&mut out, h.len).await?,
                OPT_STRUCTURED_REPLY => match self.mode {
                    Mode::Extended => self.error(
                        &mut out,
                        REP_ERR_EXT_HEADER_REQD,
                        "extended headers already negotiated",
                    ),
                    Mode::Structured => self.error(
                        &mut out,
                        REP_ERR_INVALID,
                        "structured reply already negotiated",
                    ),
                    _ => {
                        put_option_reply(&mut out, h.option, REP_ACK, &[]);
                        self.mode = Mode::Structured;
                    }
                },
                OPT_EXTENDED_HEADERS if h.len > 0 => self.reject_length(&mut out, h.len).await?,
                OPT_EXTENDED_HEADERS => {
                    if self.mode == Mode::Extended {
                        self.error(
                            &mut out,
                            REP_ERR_INVALID,
                            "extended headers already negotiated",
                        );
                    } else {
                        put_option_reply(&mut out, h.option, REP_ACK, &[]);
                        self.mode = Mode::Extended;
                    }
                }
                OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
                    if h.option == OPT_SET_META_CONTEXT {
                        // A failed SET leaves nothing selected.
                        self.contexts = Contexts::default();
                    }
                    if h.option == OPT_SET_META_CONTEXT && self.mode < Mode::Structured {
                        drop_bytes(self.r, u64::from(h.len)).await?;
                        let msg = format!(
                            "request option '{}' when structured reply is not negotiated",
                            opt_name(h.option)
                        );
                        self.error(&mut out, REP_ERR_INVALID, &msg);
                    } else if let Some(data) = self.payload(&mut out, h.len).await? {
                        self.meta_contexts(&mut out, &data);
                    }
                }
                other => {
                    drop_bytes(self.r, u64::from(h.len)).await?;
                    let msg = format!("Unsupported option {other} ({})", opt_name(other));
                    self.error(&mut out, REP_ERR_UNSUP, &msg);
                }
            }
            self.w.write_all(&out).await?;
            self.w.flush().await?;
        }
    }

    fn error(&self, out: &mut Vec<u8>, reply: u32, msg: &str) {
        put_option_reply(out, self.opt, reply, msg.as_bytes());
    }

    /// Drops a payload the option must not have and says so.
    async fn reject_length(&mut self, out: &mut Vec<u8>, len: u32) -> io::Result<()> {
        drop_bytes(self.r, u64::from(len)).await?;
        let OptInvalid(msg) = unexpected_length(self.opt);
        self.error(out, REP_ERR_INVALID, &msg);
        Ok(())
    }

    /// Reads an option's payload; one too long to be valid is dropped and
    /// answered here (`None`).
    async fn payload(&mut self, out: &mut Vec<u8>, len: u32) -> io::Result<Option<Vec<u8>>> {
        if len > MAX_OPTION_READ {
            self.reject_length(out, len).await?;
            return Ok(None);
        }
        let mut data = vec![0; len as usize];
        self.r.read_exact(&mut data).await?;
        Ok(Some(data))
    }

    async fn export_name(&mut self, len: u32) -> Result<Negotiated, SessionError> {
        if self.mode == Mode::Extended {
            return Err(protocol("Extended headers already negotiated"));
        }
        if len > MAX_STRING_SIZE {
            return Err(protocol("Bad length received"));
        }
        let mut name = vec![0; len as usize];
        self.r.read_exact(&mut name).await?;
        // There is no way to send an error: the connection just ends.
        let export = std::str::from_utf8(&name)
            .ok()
            .and_then(|n| self.lookup.find(n))
            .ok_or_else(|| protocol("export not found"))?;
        let client = export
            .attach()
            .ok_or_else(|| protocol("export not found"))?;
        let flags = self.client_flags(&export, false);
        let mut reply = export_info(export.device.size(), flags).to_vec();
        if !self.no_zeroes {
            reply.resize(EXPORT_NAME_REPLY_SIZE, 0);
        }
        self.w.write_all(&reply).await?;
        self.w.flush().await?;
        Ok(self.negotiated(export, client))
    }

    fn negotiated(&mut self, export: Arc<NbdExport>, client: ClientGuard) -> Negotiated {
        let mut contexts = std::mem::take(&mut self.contexts);
        // Contexts selected for another export do not apply.
        if !contexts
            .export
            .as_ref()
            .is_some_and(|e| Arc::ptr_eq(e, &export))
        {
            contexts = Contexts::default();
        }
        Negotiated {
            export,
            _client: client,
            mode: self.mode.max(Mode::Simple),
            contexts,
        }
    }

    /// The transmission flags this client sees.
    fn client_flags(&self, export: &NbdExport, info: bool) -> u16 {
        let mut flags = export.flags();
        if self.mode >= Mode::Structured {
            flags |= FLAG_SEND_DF;
        }
        if self.mode >= Mode::Extended && (self.contexts.count() > 0 || info) {
            flags |= FLAG_BLOCK_STAT_PAYLOAD;
        }
        flags
    }

    /// `NBD_OPT_INFO` and `NBD_OPT_GO`; `Some` when GO succeeded.
    fn info(&mut self, out: &mut Vec<u8>, data: &[u8]) -> Option<Negotiated> {
        let req = match InfoRequest::decode(self.opt, data) {
            Ok(r) => r,
            Err(OptInvalid(msg)) => {
                self.error(out, REP_ERR_INVALID, &msg);
                return None;
            }
        };
        let found = self.lookup.find(&req.name);
        let go = self.opt == OPT_GO;
        let (export, client) = match (found, go) {
            (Some(e), false) => (e, None),
            (Some(e), true) => match e.attach() {
                Some(c) => (e, Some(c)),
                None => (e, None),
            },
            (None, _) => (self.unknown(out, &req.name)?, None),
        };
        if go && client.is_none() {
            self.unknown::<()>(out, &req.name);
            return None;
        }
        let opt = self.opt;
        if req.want_name {
            put_info(out, opt, INFO_NAME, req.name.as_bytes());
        }
        if let Some(d) = &export.opts.description {
            put_info(out, opt, INFO_DESCRIPTION, d.as_bytes());
        }
        let align = request_alignment(export.device.as_ref());
        // Minimum 1 unless the client promised to honour it (QEMU).
        let min = if !go || req.want_block_size { align } else { 1 };
        let sizes = block_size_info(min, min.max(4096), MAX_BUFFER_SIZE);
        put_info(out, opt, INFO_BLOCK_SIZE, &sizes);
        let flags = self.client_flags(&export, !go);
        put_info(
            out,
            opt,
            INFO_EXPORT,
            &export_info(export.device.size(), flags),
        );
        if !go && !req.want_block_size && align > 1 {
            self.error(
                out,
                REP_ERR_BLOCK_SIZE_REQD,
                "request NBD_INFO_BLOCK_SIZE to use this export",
            );
            return None;
        }
        put_option_reply(out, opt, REP_ACK, &[]);
        let client = client?;
        Some(self.negotiated(export, client))
    }

    /// Answers `NBD_REP_ERR_UNKNOWN` for `name`; always `None`.
    fn unknown<T>(&self, out: &mut Vec<u8>, name: &str) -> Option<T> {
        self.error(
            out,
            REP_ERR_UNKNOWN,
            &format!("export '{}' not present", sanitize(name)),
        );
        None
    }

    /// `NBD_OPT_LIST_META_CONTEXT` and `NBD_OPT_SET_META_CONTEXT`.
    fn meta_contexts(&mut self, out: &mut Vec<u8>, data: &[u8]) {
        let list = self.opt == OPT_LIST_META_CONTEXT;
        let parsed = parse_meta_request(self.lookup, self.opt, data);
        let sel = match parsed {
            Ok(Ok(sel)) => sel,
            Ok(Err(name)) => {
                self.unknown::<()>(out, &name);
                return;
            }
            Err(OptInvalid(msg)) => {
                self.error(out, REP_ERR_INVALID, &msg);
                return;
            }
        };
        let id = |real| if list { 0 } else { real };
        if sel.base_allocation {
            let p = meta_context_entry(id(META_BASE_ALLOCATION), "base:allocation");
            put_option_reply(out, self.opt, REP_META_CONTEXT, &p);
        }
        if sel.allocation_depth {
            let p = meta_context_entry(id(META_ALLOCATION_DEPTH), "qemu:allocation-depth");
            put_option_reply(out, self.opt, REP_META_CONTEXT, &p);
        }
        put_option_reply(out, self.opt, REP_ACK, &[]);
        if !list {
            self.contexts = sel;
        }
    }
}

/// The payload of a meta context option: the export (`Err(name)` when
/// there is none of that name) and the contexts the queries select.
fn parse_meta_request(
    lookup: &dyn ExportLookup,
    opt: u32,
    data: &[u8],
) -> Result<Result<Contexts, String>, OptInvalid> {
    let list = opt == OPT_LIST_META_CONTEXT;
    let mut r = OptReader::new(opt, data);
    let name = r.name()?;
    let Some(export) = lookup.find(&name) else {
        return Ok(Err(name));
    };
    let mut sel = Contexts {
        export: Some(export.clone()),
        ..Contexts::default()
    };
    let n = r.u32()?;
    if list && n == 0 {
        sel.base_allocation = true;
        sel.allocation_depth = export.opts.allocation_depth;
    }
    for _ in 0..n {
        let len = r.u32()?;
        // Too long to be any context of ours: skipped, not an error.
        if len > MAX_STRING_SIZE {
            r.bytes(len as usize)?;
            continue;
        }
        let query = r.text(len as usize)?;
        select_context(&mut sel, &export, &query, list);
    }
    Ok(Ok(sel))
}

/// One meta context query (QEMU's `nbd_meta_{base,qemu}_query`): an empty
/// name after the namespace selects all of it, for LIST only.
fn select_context(sel: &mut Contexts, export: &NbdExport, query: &str, list: bool) {
    if let Some(rest) = query.strip_prefix("base:") {
        if (rest.is_empty() && list) || rest == "allocation" {
            sel.base_allocation = true;
        }
    } else if let Some(rest) = query.strip_prefix("qemu:")
        && ((rest.is_empty() && list) || rest == "allocation-depth")
    {
        sel.allocation_depth = export.opts.allocation_depth;
    }
}

/// A name as QEMU quotes it in error replies: at most 80 bytes.
fn sanitize(name: &str) -> String {
    if name.len() < 80 {
        return name.to_string();
    }
    let mut end = 80;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &name[..end])
}

/// The export's minimum block size (QEMU's `blk_get_request_alignment`).
fn request_alignment(dev: &dyn BlockDevice) -> u32 {
    let info = dev.info();
    let align = info.request_alignment.max(1);
    if info.cache_direct {
        align.max(512)
    } else {
        align
    }
}
