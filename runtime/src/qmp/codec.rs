//! QMP wire framing: a byte stream of JSON values with no delimiters between
//! them, split the way QEMU's JSON streamer splits it. The codec never
//! touches sockets.

/// Largest single message accepted; QEMU's limit on one JSON value.
pub const MAX_MESSAGE: usize = 64 << 20;
/// Deepest nesting accepted (QEMU: 1024).
pub const MAX_NESTING: usize = 1024;

/// What the splitter found in the input.
#[derive(Debug, PartialEq)]
pub enum Frame {
    /// The text of one complete JSON value (object, array or scalar).
    Value(String),
    /// Input that cannot be a JSON value; the splitter has resynchronised.
    Error(String),
}

/// Incremental splitter state.
///
/// Work is linear in the bytes received: consumed input only moves an
/// offset (`base`), and the buffer is compacted once per [`push`], never
/// per byte or per frame.
///
/// [`push`]: Splitter::push
#[derive(Debug, Default)]
pub struct Splitter {
    buf: Vec<u8>,
    /// Bytes of `buf` already returned as frames or skipped.
    base: usize,
    /// Bytes of `buf` already scanned (`base <= scanned`).
    scanned: usize,
    /// Start of the value being scanned, if one has begun.
    start: Option<usize>,
    depth: usize,
    in_string: Option<u8>,
    escape: bool,
    /// A bare word or number at depth 0: ends at a delimiter.
    in_atom: bool,
    /// Bytes of the value being scanned that were already dropped.
    dropped: usize,
    /// The value being scanned passed [`MAX_MESSAGE`]: its bytes are
    /// dropped as they come and it ends in an error, so the stream stays
    /// in step with the client (as QEMU's streamer, which reports the
    /// limit once the value is complete).
    oversize: bool,
    /// Bytes moved by compaction, so tests can check the work is linear.
    moved: usize,
}

fn is_delimiter(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'\t' | b'\r' | b'\n' | b'{' | b'}' | b'[' | b']' | b':' | b',' | b'"' | b'\''
    )
}

impl Splitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds received bytes, first dropping what earlier frames consumed
    /// (and the scanned part of an oversized value, whose text is never
    /// needed).
    pub fn push(&mut self, data: &[u8]) {
        let keep_from = match (self.start, self.oversize) {
            (_, true) => self.scanned,
            (Some(s), false) => s,
            (None, _) => self.base,
        };
        self.compact(keep_from);
        self.buf.extend_from_slice(data);
    }

    /// Drops `buf[..at]`, shifting the offsets.
    fn compact(&mut self, at: usize) {
        if at == 0 {
            return;
        }
        self.moved += self.buf.len() - at;
        self.buf.drain(..at);
        self.base = self.base.saturating_sub(at);
        self.scanned -= at;
        if let Some(s) = self.start.as_mut() {
            let gone = at.saturating_sub(*s);
            *s = s.saturating_sub(at);
            self.dropped += gone;
        }
    }

    /// Bytes held but not yet returned as frames.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.base
    }

    /// Bytes moved inside the buffer so far (a work measure for tests).
    pub fn bytes_moved(&self) -> usize {
        self.moved
    }

    fn reset_value(&mut self) {
        self.start = None;
        self.depth = 0;
        self.in_string = None;
        self.escape = false;
        self.in_atom = false;
        self.oversize = false;
        self.dropped = 0;
    }

    /// Ends the value at `end` (exclusive): its text, or the error that
    /// it was too long or not UTF-8.
    fn take(&mut self, end: usize) -> Frame {
        let start = self.start.unwrap_or(self.base);
        let frame = if self.oversize {
            Frame::Error("JSON token size limit exceeded".into())
        } else {
            match std::str::from_utf8(&self.buf[start..end]) {
                Ok(text) => Frame::Value(text.to_owned()),
                // QEMU's parser: a string that is not UTF-8 (outside strings
                // its lexer finds a stray byte first).
                Err(_) => Frame::Error("JSON parse error, invalid UTF-8 sequence in string".into()),
            }
        };
        self.consume(end);
        frame
    }

    /// Everything before `end` is done with; the next value starts after.
    fn consume(&mut self, end: usize) {
        self.base = end;
        self.scanned = end;
        self.reset_value();
    }

    /// QEMU's streamer hands a lone `}`, `]`, `:` or `,` to its parser,
    /// which expects a value there.
    fn stray(&mut self, i: usize) -> Frame {
        self.consume(i + 1);
        Frame::Error("JSON parse error, expecting value".into())
    }

    /// The next complete frame, if the buffered input holds one.
    pub fn next_frame(&mut self) -> Option<Frame> {
        while self.scanned < self.buf.len() {
            let i = self.scanned;
            let b = self.buf[i];
            self.scanned += 1;
            if let Some(s) = self.start
                && !self.oversize
                && self.dropped + self.scanned - s > MAX_MESSAGE
            {
                self.oversize = true;
            }
            if self.in_atom {
                if is_delimiter(b) {
                    self.scanned -= 1;
                    return Some(self.take(i));
                }
                continue;
            }
            if let Some(q) = self.in_string {
                if self.escape {
                    self.escape = false;
                } else if b == b'\\' {
                    self.escape = true;
                } else if b == q {
                    self.in_string = None;
                    if self.depth == 0 {
                        return Some(self.take(i + 1));
                    }
                }
                continue;
            }
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => {
                    if self.start.is_none() {
                        self.base = i + 1;
                    }
                }
                b'{' | b'[' => {
                    self.start.get_or_insert(i);
                    self.depth += 1;
                    if self.depth > MAX_NESTING {
                        self.consume(i + 1);
                        return Some(Frame::Error("JSON nesting depth limit exceeded".into()));
                    }
                }
                b'}' | b']' => {
                    if self.depth == 0 {
                        return Some(self.stray(i));
                    }
                    self.depth -= 1;
                    if self.depth == 0 {
                        return Some(self.take(i + 1));
                    }
                }
                b'"' | b'\'' => {
                    self.start.get_or_insert(i);
                    self.in_string = Some(b);
                }
                b':' | b',' if self.depth == 0 => return Some(self.stray(i)),
                _ => {
                    if self.depth == 0 {
                        self.start = Some(i);
                        self.in_atom = true;
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &str) -> Vec<Frame> {
        let mut s = Splitter::new();
        s.push(input.as_bytes());
        std::iter::from_fn(|| s.next_frame()).collect()
    }

    #[test]
    fn splits_values_without_delimiters() {
        assert_eq!(
            frames("{\"a\": \"}\"}[1,[2]]  {}"),
            vec![
                Frame::Value("{\"a\": \"}\"}".into()),
                Frame::Value("[1,[2]]".into()),
                Frame::Value("{}".into())
            ]
        );
    }

    #[test]
    fn bare_words_end_at_a_delimiter() {
        // Like QEMU: "garbage" is only complete once something follows.
        assert_eq!(frames("garbage"), vec![]);
        assert_eq!(
            frames("garbage {}"),
            vec![Frame::Value("garbage".into()), Frame::Value("{}".into())]
        );
        assert_eq!(
            frames("1 2 "),
            vec![Frame::Value("1".into()), Frame::Value("2".into())]
        );
    }

    #[test]
    fn stray_closers_resynchronise() {
        assert_eq!(
            frames("}{\"x\":1}"),
            vec![
                Frame::Error("JSON parse error, expecting value".into()),
                Frame::Value("{\"x\":1}".into())
            ]
        );
    }

    #[test]
    fn oversized_values_end_in_one_error_and_resynchronise() {
        let mut s = Splitter::new();
        s.push(b"{\"id\": \"");
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..(MAX_MESSAGE >> 20) + 1 {
            s.push(&chunk);
            assert_eq!(s.next_frame(), None);
            assert!(s.pending() <= MAX_MESSAGE + chunk.len() + 16);
        }
        s.push(b"\"} {\"x\":1}");
        assert_eq!(
            s.next_frame(),
            Some(Frame::Error("JSON token size limit exceeded".into()))
        );
        assert_eq!(s.next_frame(), Some(Frame::Value("{\"x\":1}".into())));
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut s = Splitter::new();
        s.push(b"{\"id\": \"\xc3\x28\"} {}");
        assert_eq!(
            s.next_frame(),
            Some(Frame::Error(
                "JSON parse error, invalid UTF-8 sequence in string".into()
            ))
        );
        assert_eq!(s.next_frame(), Some(Frame::Value("{}".into())));
    }

    #[test]
    fn partial_input_waits() {
        let mut s = Splitter::new();
        s.push(b"{\"execute\": \"qu");
        assert_eq!(s.next_frame(), None);
        s.push(b"it\"}");
        assert_eq!(
            s.next_frame(),
            Some(Frame::Value("{\"execute\": \"quit\"}".into()))
        );
    }

    #[test]
    fn work_is_linear_in_the_input() {
        // 4 MiB of whitespace in 4 KiB reads, then a command, then the
        // same after a frame: each byte moves at most once.
        let mut s = Splitter::new();
        let ws = vec![b' '; 4096];
        let mut total = 0;
        for round in 0..2 {
            for _ in 0..1024 {
                s.push(&ws);
                total += ws.len();
                assert_eq!(s.next_frame(), None);
            }
            s.push(b"{\"execute\": \"x\"}");
            total += 17;
            assert_eq!(
                s.next_frame(),
                Some(Frame::Value("{\"execute\": \"x\"}".into())),
                "round {round}"
            );
        }
        assert!(
            s.bytes_moved() <= total,
            "{} bytes moved for {total} received",
            s.bytes_moved()
        );
        // Many small frames in one read: the buffer is not shifted per frame.
        let mut s = Splitter::new();
        let many = "{} ".repeat(100_000);
        s.push(many.as_bytes());
        let n = std::iter::from_fn(|| s.next_frame()).count();
        assert_eq!(n, 100_000);
        assert_eq!(s.bytes_moved(), 0);
        s.push(b"[1]");
        assert_eq!(s.next_frame(), Some(Frame::Value("[1]".into())));
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn a_value_split_across_reads_keeps_its_start() {
        let mut s = Splitter::new();
        s.push(b"   {} {\"a\"");
        assert_eq!(s.next_frame(), Some(Frame::Value("{}".into())));
        assert_eq!(s.next_frame(), None);
        s.push(b": [1, 2]");
        assert_eq!(s.next_frame(), None);
        s.push(b"}  7 ");
        assert_eq!(s.next_frame(), Some(Frame::Value("{\"a\": [1, 2]}".into())));
        assert_eq!(s.next_frame(), Some(Frame::Value("7".into())));
        assert_eq!(s.next_frame(), None);
    }
}
