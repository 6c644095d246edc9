//! Framing: test_decoding messages out of a byte stream that arrives in chunks.
//!
//! pg_recvlogical prints each message followed by `\n`, but a message may itself span several
//! physical lines (quoted values, quoted identifiers and logical-message contents hold raw
//! newlines). A message ends at:
//! - for `message: ...`: the byte after the `sz: N` content bytes (which must be `\n`);
//! - otherwise: the first `\n` outside quotes, where quotes toggle on `'` and `"` (doubling
//!   `''` / `""` inside a quoted part is a close immediately followed by a re-open, so it needs
//!   no special case and no look-ahead).
//!
//! Common case first: the first newline after the message start is tried as its end, and if the
//! line parses, that is the message (a line cut inside a quoted value or identifier never
//! parses: each is closed by its own quote). A chunk framer with a digest hook offers that line
//! to the hook first ([`FrameScan::try_line`]), which takes only lines that parse. Otherwise the
//! quote-tracking scan takes over. Both scans, and the logical-message header search, remember
//! where they stopped, so bytes arriving in small chunks are looked at a bounded number of
//! times: no quadratic re-scanning of huge values.
use memchr::memchr;

use super::framing::{locate, Located, Scan, FRESH};
use super::{parse_message_utf8, Message, ParseError};

/// Capacity kept around after a huge message was consumed; beyond this the buffer shrinks.
const KEEP_CAPACITY: usize = 1 << 20;

/// One framed message.
#[derive(Debug)]
pub struct Frame<'a> {
    /// 1-based physical line the message starts on.
    pub line: u64,
    /// The message's bytes without the trailing newline (what the WAL stores).
    pub raw: &'a [u8],
    /// The parsed message, borrowing from `raw`.
    pub message: Message<'a>,
    /// The parser found all of `raw` valid UTF-8 (`false`: invalid, or not checked as a whole).
    pub utf8: bool,
}

/// Frames messages out of bytes pushed in chunks of any size.
///
/// Holds only the bytes not yet returned as frames (plus spare capacity). Blank lines between
/// messages are skipped. After an error the offending message is skipped (as far as it could be
/// delimited), so `next_frame` can be called again.
#[derive(Debug)]
pub struct MessageStream {
    buf: Vec<u8>,
    at: FrameScan,
    /// No more input will come.
    eof: bool,
}

/// Where framing stands in a buffer: the offset and line of the next message, and how far the
/// search for its end got. Kept apart from the buffer so that frames can borrow the buffer
/// while framing goes on ([`super::chunk`] collects a whole chunk's frames this way).
#[derive(Debug, Clone, Copy)]
pub(super) struct FrameScan {
    /// Start of the unconsumed bytes.
    pub(super) start: usize,
    /// Physical line number of the byte at `start`.
    pub(super) line: u64,
    scan: Scan,
}

impl FrameScan {
    /// Line 1 at offset 0.
    pub(super) const fn new() -> Self {
        FrameScan {
            start: 0,
            line: 1,
            scan: FRESH,
        }
    }

    /// The next complete message of `buf` from `start` on, or `None` when more input is needed
    /// (or, with `eof`, when everything was consumed). A message that does not parse is skipped
    /// and returned as the error.
    pub(super) fn next<'a>(
        &mut self,
        buf: &'a [u8],
        eof: bool,
    ) -> Result<Option<Frame<'a>>, ParseError> {
        if self.scan == FRESH {
            self.skip_blank_lines(buf);
        }
        let avail = buf.get(self.start..).unwrap_or_default();
        if avail.is_empty() {
            return Ok(None);
        }
        if let Scan::Line { searched } = self.scan {
            if avail.starts_with(b"message:") {
                self.scan = Scan::LogicalHeader { from: 8 };
            } else if avail.len() < 8 && b"message:".starts_with(avail) && !eof {
                return Ok(None);
            } else if let Some(k) = memchr(b'\n', avail.get(searched..).unwrap_or_default()) {
                let nl = searched + k;
                let raw = avail.get(..nl).unwrap_or_default();
                if let Ok((message, utf8)) = parse_message_utf8(raw, self.line) {
                    let line = self.line;
                    self.line += 1;
                    self.start += nl + 1;
                    self.scan = FRESH;
                    return Ok(Some(Frame {
                        line,
                        raw,
                        message,
                        utf8,
                    }));
                }
                // A newline inside quotes, or a bad message: frame it carefully.
                self.scan = Scan::Quotes {
                    pos: 0,
                    quote: None,
                };
            } else if eof {
                // The last message, without a trailing newline.
                self.scan = Scan::Quotes {
                    pos: 0,
                    quote: None,
                };
            } else {
                self.scan = Scan::Line {
                    searched: avail.len(),
                };
                return Ok(None);
            }
        }
        let located = locate(avail, &mut self.scan, eof, self.line);
        match located {
            Located::NeedMore => Ok(None),
            Located::Corrupt { error, skip } => {
                let skipped = avail.get(..skip).unwrap_or_default();
                self.line += memchr::memchr_iter(b'\n', skipped).count() as u64;
                self.start += skipped.len();
                self.scan = FRESH;
                Err(error)
            }
            Located::Frame { raw_len, next } => {
                let line = self.line;
                let raw = avail.get(..raw_len).unwrap_or_default();
                let newlines =
                    memchr::memchr_iter(b'\n', raw).count() + usize::from(next > raw_len);
                self.line += newlines as u64;
                self.start += next.min(avail.len());
                self.scan = FRESH;
                parse_message_utf8(raw, line).map(|(message, utf8)| {
                    Some(Frame {
                        line,
                        raw,
                        message,
                        utf8,
                    })
                })
            }
        }
    }

    /// The next message of `buf` from `start` on, if it ends at the first newline and `take`
    /// takes its bytes (without the newline), with its line; otherwise `None`, and
    /// [`Self::next`] goes on from where this looked. `take` must take only bytes that
    /// [`parse_message`](super::parse_message) accepts: those are the message, as in `next`.
    #[inline]
    pub(super) fn try_line<'a, R>(
        &mut self,
        buf: &'a [u8],
        take: impl FnOnce(&'a [u8]) -> Option<R>,
    ) -> Option<(u64, &'a [u8], R)> {
        let Scan::Line { searched } = self.scan else {
            return None;
        };
        if self.scan == FRESH {
            self.skip_blank_lines(buf);
        }
        let avail = buf.get(self.start..).unwrap_or_default();
        // Only row changes are taken; a `message:` is never one.
        if !avail.starts_with(b"table ") {
            return None;
        }
        let Some(k) = memchr(b'\n', avail.get(searched..).unwrap_or_default()) else {
            self.scan = Scan::Line {
                searched: avail.len(),
            };
            return None;
        };
        let nl = searched + k;
        let raw = avail.get(..nl).unwrap_or_default();
        match take(raw) {
            Some(taken) => {
                let line = self.line;
                self.line += 1;
                self.start += nl + 1;
                self.scan = FRESH;
                Some((line, raw, taken))
            }
            None => {
                self.scan = Scan::Line { searched: nl };
                None
            }
        }
    }

    fn skip_blank_lines(&mut self, buf: &[u8]) {
        let avail = buf.get(self.start..).unwrap_or_default();
        let blanks = avail.iter().take_while(|&&b| b == b'\n').count();
        self.start += blanks;
        self.line += blanks as u64;
    }
}

impl Default for MessageStream {
    fn default() -> Self {
        Self::new()
    }
}

impl MessageStream {
    /// An empty stream at line 1.
    pub fn new() -> Self {
        MessageStream {
            buf: Vec::new(),
            at: FrameScan::new(),
            eof: false,
        }
    }

    /// Appends input. Drops the bytes of frames already returned first.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.at.start > 0 {
            self.buf.drain(..self.at.start);
            self.at.start = 0;
            let cap = self.buf.capacity();
            if cap > KEEP_CAPACITY && self.buf.len() + bytes.len() < cap / 4 {
                self.buf
                    .shrink_to((self.buf.len() + bytes.len()).max(KEEP_CAPACITY));
            }
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Marks the end of input: a final message without a trailing newline is returned, and an
    /// incomplete one (e.g. an unterminated quoted value) becomes an error.
    pub fn finish(&mut self) {
        self.eof = true;
    }

    /// Bytes pushed but not yet returned as frames.
    pub fn buffered_len(&self) -> usize {
        self.buf.len().saturating_sub(self.at.start)
    }

    /// Whether [`finish`](Self::finish) was called and every byte was consumed.
    pub fn is_done(&self) -> bool {
        self.eof && self.buffered_len() == 0
    }

    /// The next complete message, or `None` when more input is needed (or, after `finish`, when
    /// everything was consumed). A message that does not parse is skipped and returned as the
    /// error.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, ParseError> {
        self.at.next(&self.buf, self.eof)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::framing::MAX_LOGICAL_HEADER;
    use super::super::{parse_message, Tuple, Value};
    use super::*;

    /// A message framed and parsed, with owned bytes so frames can be collected.
    #[derive(Debug, PartialEq)]
    struct Owned {
        line: u64,
        raw: Vec<u8>,
        message: String,
    }

    /// Pushes `input` in chunks of `chunk` bytes, draining frames after each push.
    fn frame_all(input: &[u8], chunk: usize) -> Vec<Result<Owned, ParseError>> {
        let mut s = MessageStream::new();
        let mut out = Vec::new();
        let drain = |s: &mut MessageStream, out: &mut Vec<_>| loop {
            match s.next_frame() {
                Ok(Some(f)) => out.push(Ok(Owned {
                    line: f.line,
                    raw: f.raw.to_vec(),
                    message: format!("{:?}", f.message),
                })),
                Ok(None) => break,
                Err(e) => out.push(Err(e)),
            }
        };
        for piece in input.chunks(chunk.max(1)) {
            s.push(piece);
            drain(&mut s, &mut out);
        }
        s.finish();
        drain(&mut s, &mut out);
        assert!(s.is_done(), "{} bytes left", s.buffered_len());
        out
    }

    fn frames_ok(input: &[u8], chunk: usize) -> Vec<Owned> {
        frame_all(input, chunk)
            .into_iter()
            .map(|r| r.unwrap_or_else(|e| panic!("{e}")))
            .collect()
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn text(v: Value<'_>) -> Vec<u8> {
        v.text().unwrap().into_owned()
    }

    #[test]
    fn frames_both_captures_in_any_chunking() {
        for (name, count, lines) in [
            ("capture_plain.txt", 71, 72),
            ("capture_timestamps.txt", 55, 56),
        ] {
            let input = fixture(name);
            let whole = frames_ok(&input, input.len());
            assert_eq!(whole.len(), count, "{name}");
            // Every physical line is covered, raw bytes are exact.
            let rebuilt: Vec<u8> = whole
                .iter()
                .flat_map(|f| f.raw.iter().copied().chain([b'\n']))
                .collect();
            assert_eq!(rebuilt, input, "{name}");
            let last = whole.last().unwrap();
            assert_eq!(last.line, lines, "{name}");
            for chunk in [1, 2, 3, 7, 64, 4096, 65536] {
                assert_eq!(
                    frames_ok(&input, chunk),
                    whole,
                    "{name} in {chunk}-byte chunks"
                );
            }
        }
    }

    /// Finds the frame whose raw bytes start with `start` and parses it again.
    fn find<'a>(input: &'a [u8], frames: &[Owned], start: &str) -> (u64, Message<'a>) {
        let f = frames
            .iter()
            .find(|f| f.raw.starts_with(start.as_bytes()))
            .unwrap_or_else(|| panic!("no frame starts with {start}"));
        let at = memchr::memmem::find(input, &f.raw).unwrap();
        let raw = &input[at..at + f.raw.len()];
        (f.line, parse_message(raw, f.line).unwrap())
    }

    /// `capture_plain.txt`, framed in 1000-byte chunks.
    fn plain_capture() -> (Vec<u8>, Vec<Owned>) {
        let input = fixture("capture_plain.txt");
        let frames = frames_ok(&input, 1000);
        (input, frames)
    }

    fn names(t: &Tuple<'_>) -> Vec<String> {
        t.columns.iter().map(|c| c.name.to_string()).collect()
    }

    #[test]
    fn capture_begin_commit_with_xids() {
        let (_, frames) = plain_capture();
        assert_eq!(frames[0].message, "Begin { xid: Some(778) }");
        assert_eq!(frames[1].message, "Commit { xid: Some(778) }");
    }

    #[test]
    fn capture_row_spanning_two_lines() {
        let (input, frames) = plain_capture();
        // The users row with NaN / -Infinity and a bio spanning two physical lines.
        let (line, m) = find(&input, &frames, "table public.users: INSERT: id[bigint]:2 ");
        assert_eq!(line, 15);
        let Message::Insert {
            table,
            new: Some(new),
        } = m
        else {
            panic!("{m:?}")
        };
        assert_eq!(table.to_string(), "public.users");
        assert_eq!(new.columns.len(), 19);
        assert_eq!(new.get("height").unwrap().value, Value::Unquoted(b"NaN"));
        assert_eq!(new.get("weight").unwrap().type_name, "double precision");
        assert_eq!(
            new.get("weight").unwrap().value,
            Value::Unquoted(b"-Infinity")
        );
        assert_eq!(
            text(new.get("bio").unwrap().value),
            b"line one\nline two\ttabbed \\ backslash"
        );
        assert_eq!(
            new.get("balance").unwrap().value,
            Value::Unquoted(b"99999999999999999999999.5")
        );
        assert_eq!(
            text(new.get("tags").unwrap().value),
            br#"{"with space",NULL}"#
        );
        assert_eq!(new.get("tags").unwrap().type_name, "text[]");
        assert_eq!(new.get("fav").unwrap().type_name, "public.colour");
        assert_eq!(new.get("external_id").unwrap().value, Value::Null);
        // The next message starts on line 17: line 16 is the rest of the bio.
        let (line, _) = find(&input, &frames, "table public.users: INSERT: id[bigint]:3 ");
        assert_eq!(line, 17);
    }

    #[test]
    fn capture_quotes_and_commas_in_a_value() {
        let (input, frames) = plain_capture();
        let (_, m) = find(&input, &frames, "table public.users: INSERT: id[bigint]:1 ");
        let Message::Insert { new: Some(new), .. } = m else {
            panic!()
        };
        assert_eq!(
            text(new.get("bio").unwrap().value),
            br#"Likes "quotes", commas, and ' apostrophes"#
        );
        assert_eq!(new.get("active").unwrap().value, Value::Unquoted(b"true"));
    }

    #[test]
    fn capture_update_changing_the_composite_key() {
        let (input, frames) = plain_capture();
        let (line, m) = find(&input, &frames, "table inventory.stock: UPDATE: old-key:");
        assert_eq!(line, 49);
        let Message::Update {
            table,
            old_key: Some(old_key),
            new: Some(new),
        } = m
        else {
            panic!("{m:?}")
        };
        assert_eq!(table.to_string(), "inventory.stock");
        assert_eq!(names(&old_key), ["warehouse", "sku"]);
        assert_eq!(names(&new), ["warehouse", "sku", "qty"]);
        assert_eq!(text(old_key.columns[1].value), b"A-1");
        assert_eq!(text(new.columns[1].value), b"A-2");
    }

    #[test]
    fn capture_toast_left_unchanged() {
        let (input, frames) = plain_capture();
        let (_, m) = find(
            &input,
            &frames,
            "table public.articles: UPDATE: id[integer]:1 body",
        );
        let Message::Update {
            new: Some(new),
            old_key: None,
            ..
        } = m
        else {
            panic!()
        };
        assert_eq!(new.get("body").unwrap().value, Value::UnchangedToast);
        assert_eq!(new.get("author").unwrap().value, Value::Null);
    }

    #[test]
    fn capture_delete_carries_the_key_only() {
        let (input, frames) = plain_capture();
        let (_, m) = find(&input, &frames, "table inventory.stock: DELETE:");
        let Message::Delete { old: Some(old), .. } = m else {
            panic!()
        };
        assert_eq!(names(&old), ["warehouse", "sku"]);
    }

    #[test]
    fn capture_truncate() {
        let (input, frames) = plain_capture();
        let (line, m) = find(&input, &frames, "table inventory.stock: TRUNCATE:");
        assert_eq!(line, 71);
        let Message::Truncate {
            tables,
            restart_seqs: false,
            cascade: false,
        } = m
        else {
            panic!("{m:?}")
        };
        assert_eq!(tables.len(), 1);
        assert_eq!(tables[0].to_string(), "inventory.stock");
    }

    #[test]
    fn capture_without_xids_with_timestamps() {
        let ts = fixture("capture_timestamps.txt");
        let frames = frames_ok(&ts, 333);
        assert_eq!(frames[0].message, "Begin { xid: None }");
        assert_eq!(frames[4].message, "Commit { xid: None }");
        assert!(frames[4]
            .raw
            .starts_with(b"COMMIT (at 2026-11-23 07:45:04.1"));
        assert_eq!(frames[4].line, 6);
    }

    #[test]
    fn blank_lines_and_line_numbers() {
        let input = b"\n\nBEGIN 1\n\ntable s.t: INSERT: a[text]:'x\n\ny'\n\n\nCOMMIT 1";
        let frames = frames_ok(input, 3);
        let got: Vec<_> = frames.iter().map(|f| f.line).collect();
        assert_eq!(got, [3, 5, 10]);
        assert_eq!(frames[1].raw, b"table s.t: INSERT: a[text]:'x\n\ny'");
    }

    #[test]
    fn quotes_in_identifiers_frame_correctly() {
        // `'` inside a quoted identifier and `"` inside a value must not confuse the framer.
        let input = "table s.\"it's\": INSERT: \"a'\nb\"[text]:'say \"hi\nthere' x[\"My'Type\"]:'\n'\nBEGIN\n";
        let frames = frames_ok(input.as_bytes(), 5);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].line, 5);
        assert_eq!(frames[1].message, "Begin { xid: None }");
    }

    #[test]
    fn incomplete_until_more_input() {
        let mut s = MessageStream::new();
        s.push(b"BEGIN 5\ntable s.t: INSERT: a[text]:'x\n");
        assert!(matches!(
            s.next_frame().unwrap().unwrap().message,
            Message::Begin { xid: Some(5) }
        ));
        assert!(s.next_frame().unwrap().is_none());
        assert!(s.next_frame().unwrap().is_none());
        s.push(b"y''");
        assert!(s.next_frame().unwrap().is_none());
        s.push(b"' b[integer]:1");
        assert!(s.next_frame().unwrap().is_none());
        s.push(b"\nCOMM");
        let f = s.next_frame().unwrap().unwrap();
        assert_eq!(f.line, 2);
        let Message::Insert { new: Some(new), .. } = f.message else {
            panic!()
        };
        assert_eq!(new.columns[0].value, Value::Quoted(b"x\ny''"));
        assert!(s.next_frame().unwrap().is_none());
        assert_eq!(s.buffered_len(), 4);
        // A short prefix of `message:` waits for more input too.
        s.finish();
        let e = s.next_frame().unwrap_err();
        assert_eq!(e.line, 4);
        assert!(e.expected.contains("unknown message kind"));
        assert!(s.next_frame().unwrap().is_none());
    }

    #[test]
    fn last_message_without_newline() {
        let frames = frames_ok(b"BEGIN 1\nCOMMIT 1", 2);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].raw, b"COMMIT 1");
        let frames = frames_ok(b"message: transactional: 0 prefix: p, sz: 2 content:a\n", 4);
        assert_eq!(frames[0].raw.len(), 53);
    }

    #[test]
    fn unterminated_quote_at_eof_is_an_error() {
        let input = b"BEGIN 1\ntable public.users: INSERT: id[bigint]:1 bio[text]:'abc\ndef";
        let mut s = MessageStream::new();
        s.push(input);
        assert!(s.next_frame().unwrap().is_some());
        assert!(s.next_frame().unwrap().is_none());
        s.finish();
        let e = s.next_frame().unwrap_err();
        assert_eq!(e.line, 2);
        assert_eq!(e.expected, "unterminated quoted value for column `bio`");
        assert!(s.next_frame().unwrap().is_none());
        assert!(s.is_done());
    }

    #[test]
    fn logical_messages_with_raw_newlines() {
        let mut input = Vec::new();
        input.extend_from_slice(b"BEGIN 1\n");
        input.extend_from_slice(
            b"message: transactional: 1 prefix: a\nb, sz: 8 content:x\n'y\"\n\nz",
        );
        input.extend_from_slice(
            b"\nmessage: transactional: 0 prefix: p, sz: 0 content:\nCOMMIT 1\n",
        );
        for chunk in [1, 2, 5, 100] {
            let frames = frames_ok(&input, chunk);
            let lines: Vec<_> = frames.iter().map(|f| f.line).collect();
            assert_eq!(lines, [1, 2, 7, 8], "chunk {chunk}");
            assert_eq!(
                frames[1].message,
                format!(
                    "{:?}",
                    Message::Logical {
                        transactional: true,
                        prefix: "a\nb".into(),
                        content: b"x\n'y\"\n\nz"
                    }
                )
            );
        }
    }

    #[test]
    fn corrupt_logical_messages() {
        // Content not followed by a newline.
        let out = frame_all(
            b"message: transactional: 1 prefix: p, sz: 1 content:abc\nBEGIN 2\n",
            4,
        );
        assert!(out[0]
            .as_ref()
            .is_err_and(|e| e.expected.contains("newline")));
        // The rest of the broken line is then reported, and the stream recovers.
        assert!(out[1].is_err());
        assert_eq!(out[2].as_ref().unwrap().message, "Begin { xid: Some(2) }");
        assert_eq!(out[2].as_ref().unwrap().line, 2);

        // Truncated content at EOF.
        let out = frame_all(
            b"message: transactional: 1 prefix: p, sz: 10 content:abc",
            4,
        );
        assert!(out[0]
            .as_ref()
            .is_err_and(|e| e.expected.contains("sz: 10")));

        // No header at all.
        let out = frame_all(b"message: hello\nBEGIN 3\n", 3);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out[0].is_err());
        assert_eq!(out[1].as_ref().unwrap().message, "Begin { xid: Some(3) }");
        let mut big = b"message: transactional: 1 prefix: ".to_vec();
        big.resize(MAX_LOGICAL_HEADER + 100, b'x');
        let out = frame_all(&big, 4096);
        assert_eq!(out.len(), 1);
        assert!(out[0].is_err());
    }

    #[test]
    fn errors_skip_the_bad_message() {
        let out = frame_all(
            b"BEGIN 1\nWHAT 'is\nthis'\ntable s.t: INSERT: a[int]:x y\nCOMMIT 1\n",
            6,
        );
        assert_eq!(out.len(), 4, "{out:?}");
        let e = out[1].as_ref().unwrap_err();
        assert_eq!((e.line, e.column), (2, 0));
        let e = out[2].as_ref().unwrap_err();
        assert_eq!(e.line, 4);
        assert_eq!(out[3].as_ref().unwrap().line, 5);
    }

    #[test]
    fn keeps_only_unconsumed_bytes() {
        let mut s = MessageStream::new();
        s.push(b"BEGIN 1\nCOMMIT 1\nBEG");
        assert!(s.next_frame().unwrap().is_some());
        assert!(s.next_frame().unwrap().is_some());
        assert!(s.next_frame().unwrap().is_none());
        assert_eq!(s.buffered_len(), 3);
        s.push(b"IN 2\n");
        assert_eq!(s.buf.len(), 8);
        assert_eq!(s.next_frame().unwrap().unwrap().line, 3);
        assert_eq!(s.buffered_len(), 0);
    }

    /// A 5 MB value (with and without newlines) arriving in 4 KB chunks: each chunk is scanned
    /// a bounded number of times, so this is fast (quadratic re-scanning would take minutes).
    #[test]
    fn huge_value_in_small_chunks() {
        for with_newlines in [false, true] {
            let mut input = b"BEGIN 1\ntable s.t: INSERT: id[integer]:1 body[text]:'".to_vec();
            for i in 0..5 * 1024 * 1024 {
                input.push(match i % 97 {
                    0 if with_newlines => b'\n',
                    1 => b'"',
                    2 | 3 => b'\'',
                    _ => b'a' + (i % 26) as u8,
                });
            }
            input.extend_from_slice(b"' n[integer]:2\nCOMMIT 1\n");
            let mut s = MessageStream::new();
            let mut seen = 0;
            for piece in input.chunks(4096) {
                s.push(piece);
                while let Some(f) = s.next_frame().unwrap() {
                    if let Message::Insert { new: Some(new), .. } = &f.message {
                        let Value::Quoted(body) = new.columns[1].value else {
                            panic!()
                        };
                        assert_eq!(body.len(), 5 * 1024 * 1024);
                        assert_eq!(new.columns[2].value, Value::Unquoted(b"2"));
                    }
                    seen += 1;
                }
            }
            assert_eq!(seen, 3);
        }
    }

    /// Throughput on typical ~10-column rows. Run with
    /// `cargo test --release -p re_dms --lib decoding::stream::tests::throughput -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn throughput() {
        let row = b"table public.orders: INSERT: id[bigint]:1234567 customer_id[integer]:42 \
            status[character varying]:'shipped' total[numeric]:199.99 currency[text]:'EUR' \
            note[text]:'leave at the door, it''s fine' paid[boolean]:true \
            created_at[timestamp with time zone]:'2025-01-02 03:04:05.123456+00' \
            updated_at[timestamp with time zone]:'2025-01-02 03:04:06.5+00' \
            tags[text[]]:'{a,b,c}'\n";
        let mut input = Vec::new();
        for i in 0..200_000 {
            if i % 10 == 0 {
                input.extend_from_slice(b"BEGIN 123456\n");
            }
            input.extend_from_slice(row);
            if i % 10 == 9 {
                input.extend_from_slice(b"COMMIT 123456\n");
            }
        }
        let t = std::time::Instant::now();
        let mut s = MessageStream::new();
        let mut n = 0usize;
        for piece in input.chunks(64 * 1024) {
            s.push(piece);
            while let Some(f) = s.next_frame().unwrap() {
                n += f.raw.len();
            }
        }
        let el = t.elapsed();
        let t2 = std::time::Instant::now();
        let mut cols = 0;
        for line in input.split(|&b| b == b'\n') {
            if let Ok(Message::Insert { new: Some(new), .. }) = parse_message(line, 1) {
                cols += new.columns.len();
            }
        }
        let el2 = t2.elapsed();
        println!(
            "stream: {} MB in {el:?} = {:.0} MB/s, {:.2} M rows/s; parse only: {:.0} MB/s ({cols} cols)",
            input.len() / 1_000_000,
            input.len() as f64 / el.as_secs_f64() / 1e6,
            200_000.0 / el.as_secs_f64() / 1e6,
            input.len() as f64 / el2.as_secs_f64() / 1e6,
        );
        assert!(n > 0);
    }
}
