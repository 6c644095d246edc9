//! Low-level scanning over the bytes of one test_decoding message: identifiers, type names,
//! column values, the logical-message header, and error construction.
//!
//! Every token that contains a quote character is quote-balanced (`'...'` with `''` doubled,
//! `"..."` with `""` doubled), and unquoted tokens never contain quotes. The stream framer relies
//! on this: it finds the end of a message by toggling on `'` / `"` and stopping at the first
//! newline outside quotes, which agrees with what this grammar accepts.
use std::borrow::Cow;

use memchr::{memchr, memchr2, memmem};

use super::{ParseError, Value};

/// How many bytes of input an error's snippet shows before the error position.
const SNIPPET_BEFORE: usize = 24;
/// How many bytes of input an error's snippet shows from the error position on.
const SNIPPET_AFTER: usize = 56;

/// The largest logical-message content accepted (PostgreSQL cannot allocate more than 1 GB for
/// one message anyway); a larger `sz:` means the header is not what it seems.
pub(super) const MAX_LOGICAL_CONTENT: usize = 1 << 30;

/// Builds a [`ParseError`] for `raw` (one message starting on physical line `line`) at byte `at`.
pub(super) fn error_at(
    raw: &[u8],
    line: u64,
    at: usize,
    expected: impl Into<String>,
) -> ParseError {
    let at = at.min(raw.len());
    let from = at.saturating_sub(SNIPPET_BEFORE);
    let to = at.saturating_add(SNIPPET_AFTER).min(raw.len());
    let window = raw.get(from..to).unwrap_or_default();
    let mut snippet = String::with_capacity(window.len() + 8);
    for ch in String::from_utf8_lossy(window).chars() {
        match ch {
            '\n' => snippet.push_str("\\n"),
            '\r' => snippet.push_str("\\r"),
            '\t' => snippet.push_str("\\t"),
            c if c.is_control() => snippet.extend(c.escape_default()),
            c => snippet.push(c),
        }
    }
    ParseError {
        line,
        column: at,
        expected: expected.into(),
        snippet,
    }
}

/// Results inside the parser: the error is boxed so the `Ok` path moves small values.
pub(super) type PResult<T> = Result<T, Box<ParseError>>;

/// A read position within one message.
pub(super) struct Cursor<'a> {
    raw: &'a [u8],
    /// `raw` as text, when it is short enough to validate in one go and valid UTF-8: slicing
    /// identifiers out of it is cheaper than validating each one.
    text: Option<&'a str>,
    pos: usize,
    line: u64,
}

/// Messages up to this size are UTF-8-validated as a whole (see [`Cursor::text`]).
const WHOLE_UTF8_MAX: usize = 8 * 1024;

impl<'a> Cursor<'a> {
    pub(super) fn new(raw: &'a [u8], line: u64) -> Self {
        Cursor {
            raw,
            text: whole_text(raw),
            pos: 0,
            line,
        }
    }

    /// At byte `pos` of `raw`, without checking `raw` as a whole: each identifier and type name
    /// is checked as it is read (as [`Self::new`] does for a message too long to check at
    /// once), which gives the same verdicts. For reading a few tokens of a message (see
    /// `row_scan.rs`); errors name line 0.
    pub(super) fn at(raw: &'a [u8], pos: usize) -> Self {
        Cursor {
            raw,
            text: None,
            pos,
            line: 0,
        }
    }

    /// `raw[start..end]` as text, if it is valid UTF-8.
    #[inline]
    fn str_at(&self, start: usize, end: usize) -> Option<&'a str> {
        match self.text {
            Some(text) => text.get(start..end),
            None => std::str::from_utf8(self.raw.get(start..end)?).ok(),
        }
    }

    /// Whether the whole message was found valid UTF-8 (checked only up to [`WHOLE_UTF8_MAX`]).
    pub(super) fn is_utf8(&self) -> bool {
        self.text.is_some()
    }

    /// The whole message.
    pub(super) fn raw(&self) -> &'a [u8] {
        self.raw
    }

    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    /// The unread bytes.
    pub(super) fn rest(&self) -> &'a [u8] {
        self.raw.get(self.pos..).unwrap_or_default()
    }

    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.raw.len()
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.raw.get(self.pos).copied()
    }

    /// Moves to the end of the message.
    pub(super) fn skip_to_end(&mut self) {
        self.pos = self.raw.len();
    }

    /// Consumes `lit` if the unread bytes start with it.
    #[inline]
    pub(super) fn eat(&mut self, lit: &[u8]) -> bool {
        if self.rest().starts_with(lit) {
            self.pos += lit.len();
            true
        } else {
            false
        }
    }

    /// An error at the current position.
    #[cold]
    pub(super) fn error(&self, expected: impl Into<String>) -> Box<ParseError> {
        Box::new(error_at(self.raw, self.line, self.pos, expected))
    }

    /// An error at byte `at` of the message.
    #[cold]
    pub(super) fn error_at(&self, at: usize, expected: impl Into<String>) -> Box<ParseError> {
        Box::new(error_at(self.raw, self.line, at, expected))
    }

    /// Fails unless the message ends here.
    pub(super) fn expect_end(&self, after: &str) -> PResult<()> {
        if self.at_end() {
            Ok(())
        } else {
            Err(self.error(format!("expected end of message after {after}")))
        }
    }

    /// An unsigned decimal number (at least one digit) that fits in `u32`.
    pub(super) fn u32(&mut self, what: &str) -> PResult<u32> {
        let start = self.pos;
        let digits = self
            .rest()
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let mut n: u32 = 0;
        for &b in self.rest().get(..digits).unwrap_or_default() {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u32::from(b - b'0')))
                .ok_or_else(|| self.error_at(start, format!("{what} does not fit in 32 bits")))?;
        }
        if digits == 0 {
            return Err(self.error(format!("expected {what}")));
        }
        self.pos += digits;
        Ok(n)
    }

    /// A quoted (`"a ""b"""`) or bare (`stock`) identifier, unquoted. `what` names it in errors
    /// ("column name", "schema name", ...).
    #[inline]
    pub(super) fn ident(&mut self, what: &str) -> PResult<Cow<'a, str>> {
        let start = self.pos;
        let (body, end, doubled) = match ident_end(self.raw, start) {
            IdentEnd::Bare(end) => (start..end, end, false),
            IdentEnd::Quoted { end, doubled } => (start + 1..end - 1, end, doubled),
            IdentEnd::Missing => return Err(self.error(format!("expected {what}"))),
            IdentEnd::Unterminated => {
                return Err(self.error_at(start, format!("unterminated quoted {what}")))
            }
        };
        let text = self
            .str_at(body.start, body.end)
            .ok_or_else(|| self.error_at(start, format!("{what} is not valid UTF-8")))?;
        self.pos = end;
        Ok(if doubled {
            Cow::Owned(text.replace("\"\"", "\""))
        } else {
            Cow::Borrowed(text)
        })
    }

    /// A type name as format_type printed it, up to the `]` that is followed by `:` outside any
    /// double-quoted part; consumes the `]:` too.
    #[inline]
    pub(super) fn type_name(&mut self, column: &str) -> PResult<&'a str> {
        let start = self.pos;
        let mut i = start;
        loop {
            let rest = self.raw.get(i..).unwrap_or_default();
            let Some(k) = memchr2(b']', b'"', rest) else {
                return Err(self.error_at(
                    start,
                    format!("expected `]:` after the type of column `{column}`"),
                ));
            };
            let at = i + k;
            if rest.get(k) == Some(&b'"') {
                // A quoted part of the name; `""` inside is two adjacent quoted parts.
                let Some(m) = memchr(b'"', self.raw.get(at + 1..).unwrap_or_default()) else {
                    return Err(self.error_at(
                        at,
                        format!("unterminated quoted part in the type of column `{column}`"),
                    ));
                };
                i = at + 1 + m + 1;
            } else if self.raw.get(at + 1) == Some(&b':') {
                if at == start {
                    return Err(self.error_at(start, format!("empty type for column `{column}`")));
                }
                let text = self.str_at(start, at).ok_or_else(|| {
                    self.error_at(
                        start,
                        format!("type of column `{column}` is not valid UTF-8"),
                    )
                })?;
                self.pos = at + 2;
                return Ok(text);
            } else {
                i = at + 1;
            }
        }
    }

    /// A column value: `null`, `unchanged-toast-datum`, an unquoted literal, `B'...'` or
    /// `'...'`.
    #[inline]
    pub(super) fn value(&mut self, column: &str) -> PResult<Value<'a>> {
        let start = self.pos;
        match self.peek() {
            Some(b'\'') => {
                let body_start = start + 1;
                let mut i = body_start;
                loop {
                    let Some(k) = memchr(b'\'', self.raw.get(i..).unwrap_or_default()) else {
                        return Err(self.error_at(
                            start,
                            format!("unterminated quoted value for column `{column}`"),
                        ));
                    };
                    let q = i + k;
                    if self.raw.get(q + 1) == Some(&b'\'') {
                        i = q + 2;
                        continue;
                    }
                    self.pos = q + 1;
                    return Ok(Value::Quoted(
                        self.raw.get(body_start..q).unwrap_or_default(),
                    ));
                }
            }
            Some(b'B') if self.raw.get(start + 1) == Some(&b'\'') => {
                let body_start = start + 2;
                let Some(k) = memchr(b'\'', self.raw.get(body_start..).unwrap_or_default()) else {
                    return Err(self.error_at(
                        start,
                        format!("unterminated bit string value for column `{column}`"),
                    ));
                };
                self.pos = body_start + k + 1;
                Ok(Value::Bits(
                    self.raw.get(body_start..body_start + k).unwrap_or_default(),
                ))
            }
            Some(_) => {
                let rest = self.rest();
                let len = rest.iter().take_while(|&&b| is_unquoted(b)).count();
                let token = rest.get(..len).unwrap_or_default();
                match rest.get(len) {
                    None | Some(b' ') if len > 0 => {}
                    _ => {
                        return Err(self.error_at(
                            start + len,
                            format!(
                                "unexpected byte in the unquoted value of column `{column}`; \
                                 expected a number, true/false, null or unchanged-toast-datum"
                            ),
                        ))
                    }
                }
                self.pos += len;
                Ok(match token {
                    b"null" => Value::Null,
                    b"unchanged-toast-datum" => Value::UnchangedToast,
                    _ => Value::Unquoted(token),
                })
            }
            None => Err(self.error(format!("expected a value for column `{column}`"))),
        }
    }
}

/// Where an identifier starting at byte `start` of `raw` ends (see [`ident_end`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IdentEnd {
    /// Bare, ending before byte `.0`.
    Bare(usize),
    /// Quoted, ending after its closing quote at `end - 1`; `doubled`: it holds `""`.
    Quoted { end: usize, doubled: bool },
    /// No identifier starts there.
    Missing,
    /// A quote that is never closed.
    Unterminated,
}

impl IdentEnd {
    /// Where the identifier ends, if there is one.
    pub(super) fn end(self) -> Option<usize> {
        match self {
            IdentEnd::Bare(end) | IdentEnd::Quoted { end, .. } => Some(end),
            IdentEnd::Missing | IdentEnd::Unterminated => None,
        }
    }
}

/// The bounds of the identifier at byte `start` of `raw` (its text is not checked).
#[inline]
pub(super) fn ident_end(raw: &[u8], start: usize) -> IdentEnd {
    let rest = raw.get(start..).unwrap_or_default();
    if rest.first() == Some(&b'"') {
        let mut i = 1;
        let mut doubled = false;
        loop {
            let Some(k) = memchr(b'"', rest.get(i..).unwrap_or_default()) else {
                return IdentEnd::Unterminated;
            };
            let q = i + k;
            if rest.get(q + 1) == Some(&b'"') {
                doubled = true;
                i = q + 2;
                continue;
            }
            return IdentEnd::Quoted {
                end: start + q + 1,
                doubled,
            };
        }
    }
    match rest.iter().take_while(|&&b| is_bare(b)).count() {
        0 => IdentEnd::Missing,
        len => IdentEnd::Bare(start + len),
    }
}

/// A whole message as text, as the parser holds it ([`Cursor::text`]): when it is no longer
/// than [`WHOLE_UTF8_MAX`] and valid UTF-8; `None` otherwise.
#[inline]
pub(super) fn whole_text(raw: &[u8]) -> Option<&str> {
    if raw.len() <= WHOLE_UTF8_MAX {
        simdutf8::basic::from_utf8(raw).ok()
    } else {
        None
    }
}

/// Byte classes, looked up in [`CLASS`].
const BARE: u8 = 1;
const UNQUOTED: u8 = 2;

/// Per byte: [`BARE`] if allowed in a bare identifier (what quote_identifier leaves unquoted,
/// `[a-z0-9_$]`, plus upper case and non-ASCII for leniency; never a quote, space or
/// delimiter); [`UNQUOTED`] if allowed in an unquoted value (numbers incl. exponents, `NaN`,
/// `-Infinity`; `true`/`false`, `null`, `unchanged-toast-datum`).
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        if b.is_ascii_alphanumeric() {
            t[i] = BARE | UNQUOTED;
        } else if b == b'_' || b == b'$' || b >= 0x80 {
            t[i] = BARE;
        } else if b == b'-' || b == b'+' || b == b'.' {
            t[i] = UNQUOTED;
        }
        i += 1;
    }
    t
};

#[inline]
fn is_bare(b: u8) -> bool {
    CLASS[usize::from(b)] & BARE != 0
}

#[inline]
fn is_unquoted(b: u8) -> bool {
    CLASS[usize::from(b)] & UNQUOTED != 0
}

/// Where a logical message's `, sz: <N> content:` header is, if it is complete in the bytes
/// scanned so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SzHeader {
    /// The first valid `, sz: N content:`: the prefix ends at `prefix_end`, the content starts
    /// at `content_start` and is `size` bytes long.
    Found {
        prefix_end: usize,
        content_start: usize,
        size: usize,
    },
    /// No complete header yet; with more bytes, scanning can resume at `resume`.
    Incomplete { resume: usize },
}

/// Finds the first `, sz: <digits> content:` at or after `from` in `buf`. A candidate whose
/// digits or ` content:` might continue past the end of `buf` makes the result `Incomplete`,
/// so the answer never changes once more bytes are appended.
pub(super) fn find_sz_header(buf: &[u8], from: usize) -> SzHeader {
    const SZ: &[u8] = b", sz: ";
    const CONTENT: &[u8] = b" content:";
    let mut i = from;
    loop {
        let hay = buf.get(i..).unwrap_or_default();
        let Some(k) = memmem::find(hay, SZ) else {
            // A partial `, sz: ` may sit at the very end.
            let resume = buf.len().saturating_sub(SZ.len() - 1).max(i.min(buf.len()));
            return SzHeader::Incomplete { resume };
        };
        let p = i + k;
        let digits_start = p + SZ.len();
        let tail = buf.get(digits_start..).unwrap_or_default();
        let digits = tail.iter().take_while(|b| b.is_ascii_digit()).count();
        let after = tail.get(digits..).unwrap_or_default();
        if after.is_empty()
            || (digits > 0 && after.len() < CONTENT.len() && CONTENT.starts_with(after))
        {
            return SzHeader::Incomplete { resume: p };
        }
        if digits > 0 && after.starts_with(CONTENT) {
            if let Some(size) = parse_size(tail.get(..digits).unwrap_or_default()) {
                return SzHeader::Found {
                    prefix_end: p,
                    content_start: digits_start + digits + CONTENT.len(),
                    size,
                };
            }
        }
        i = p + 1;
    }
}

/// A decimal size no larger than [`MAX_LOGICAL_CONTENT`].
fn parse_size(digits: &[u8]) -> Option<usize> {
    let mut n: usize = 0;
    for &b in digits {
        n = n.checked_mul(10)?.checked_add(usize::from(b - b'0'))?;
        if n > MAX_LOGICAL_CONTENT {
            return None;
        }
    }
    Some(n)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn idents() {
        let mut c = Cursor::new(br#""a ""b"".c"x"#, 1);
        assert_eq!(c.ident("name").unwrap(), "a \"b\".c");
        assert_eq!(c.rest(), b"x");
        let mut c = Cursor::new(b"stock_2$[", 1);
        assert!(matches!(
            c.ident("name").unwrap(),
            Cow::Borrowed("stock_2$")
        ));
        let mut c = Cursor::new(br#""Order Items":"#, 1);
        assert!(matches!(
            c.ident("name").unwrap(),
            Cow::Borrowed("Order Items")
        ));
        assert!(Cursor::new(br#""abc"#, 1).ident("name").is_err());
        assert!(Cursor::new(b"[x", 1).ident("name").is_err());
    }

    #[test]
    fn type_names() {
        for (input, want) in [
            (&b"text[]]:'x'"[..], "text[]"),
            (b"public.\"My]: Type\"]:1", "public.\"My]: Type\""),
            (b"\"a\"\"b\"[]]:1", "\"a\"\"b\"[]"),
            (b"timestamp with time zone]:'x'", "timestamp with time zone"),
        ] {
            let mut c = Cursor::new(input, 1);
            assert_eq!(c.type_name("c").unwrap(), want);
        }
        assert!(Cursor::new(b"text]", 1).type_name("c").is_err());
        assert!(Cursor::new(b"]:1", 1).type_name("c").is_err());
        assert!(Cursor::new(b"\"text]:1", 1).type_name("c").is_err());
    }

    #[test]
    fn values() {
        let v = |s: &'static [u8]| Cursor::new(s, 1).value("c");
        assert_eq!(v(b"null").unwrap(), Value::Null);
        assert_eq!(
            v(b"unchanged-toast-datum x").unwrap(),
            Value::UnchangedToast
        );
        assert_eq!(v(b"-1.5e+10 x").unwrap(), Value::Unquoted(b"-1.5e+10"));
        assert_eq!(v(b"'it''s' x").unwrap(), Value::Quoted(b"it''s"));
        assert_eq!(v(b"''''").unwrap(), Value::Quoted(b"''"));
        assert_eq!(v(b"B'0101'").unwrap(), Value::Bits(b"0101"));
        assert!(v(b"'abc").is_err());
        assert!(v(b"'abc''").is_err());
        assert!(v(b"").is_err());
        assert!(v(b" 1").is_err());
        assert!(v(b"1'").is_err());
    }

    #[test]
    fn sz_header() {
        let m = b"message: transactional: 1 prefix: p, sz: 3 content:abc";
        assert_eq!(
            find_sz_header(m, 0),
            SzHeader::Found {
                prefix_end: 35,
                content_start: 51,
                size: 3
            }
        );
        // A prefix holding a bogus `, sz: ` is skipped.
        let m = b"p, sz: x, sz: 1 content:a";
        assert!(matches!(
            find_sz_header(m, 0),
            SzHeader::Found { size: 1, .. }
        ));
        for cut in [b"p, sz".len(), b"p, sz: 12".len(), b"p, sz: 12 cont".len()] {
            assert!(matches!(
                find_sz_header(&b"p, sz: 12 content:"[..cut], 0),
                SzHeader::Incomplete { .. }
            ));
        }
        assert!(matches!(
            find_sz_header(b"p, sz: 99999999999999999999999 content:", 0),
            SzHeader::Incomplete { .. }
        ));
    }

    #[test]
    fn snippet_is_escaped_and_bounded() {
        let raw = [b'a'; 200];
        let e = error_at(&raw, 3, 100, "x");
        assert_eq!(e.snippet.len(), SNIPPET_BEFORE + SNIPPET_AFTER);
        let e = error_at(b"a\nb\tc\xff", 1, 99, "x");
        assert_eq!(e.snippet, "a\\nb\\tc\u{fffd}");
        assert_eq!(e.column, 6);
    }
}
