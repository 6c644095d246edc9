//! The slow framing scans behind [`MessageStream`](super::MessageStream): finding where a
//! message that is not a single parseable line ends, resumably, as bytes arrive.
use memchr::{memchr, memchr3};

use super::cursor::{error_at, find_sz_header, SzHeader};
use super::ParseError;

/// How far into a `message:` the `, sz: N content:` header may start at most before the
/// message is considered corrupt (the prefix is a short text in practice).
pub(super) const MAX_LOGICAL_HEADER: usize = 64 * 1024;

/// How far framing of the message at the read position got; offsets are relative to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scan {
    /// No newline before `searched` (the common, single-line case).
    Line { searched: usize },
    /// Tracking quotes: bytes before `pos` are scanned; `quote` is the quote we are inside.
    Quotes { pos: usize, quote: Option<u8> },
    /// A logical message; no complete `, sz: N content:` header starts before `from`.
    LogicalHeader { from: usize },
    /// A logical message whose raw bytes end at `end`.
    Sized { end: usize },
    /// A broken logical-message header: the message ends at the first newline, not before
    /// `searched`.
    ToNewline { searched: usize },
}

/// Nothing known yet about the message at the read position.
pub(super) const FRESH: Scan = Scan::Line { searched: 0 };

/// Where the message at the read position ends.
pub(super) enum Located {
    /// Not known yet: more input is needed.
    NeedMore,
    /// The message is `raw_len` bytes; the next one starts `next` bytes on.
    Frame { raw_len: usize, next: usize },
    /// The input cannot be framed here; skip `skip` bytes and report `error`.
    Corrupt { error: ParseError, skip: usize },
}

/// Continues framing the message at the start of `avail` with the slow scans, updating `scan`.
/// `line` is where the message starts (for errors).
pub(super) fn locate(avail: &[u8], scan: &mut Scan, eof: bool, line: u64) -> Located {
    loop {
        match *scan {
            Scan::Line { .. } => return frame_quoted(avail, 0, None, scan, eof),
            Scan::Quotes { pos, quote } => return frame_quoted(avail, pos, quote, scan, eof),
            Scan::LogicalHeader { from } => {
                *scan = logical_header(avail, from, eof);
                if let Scan::LogicalHeader { .. } = *scan {
                    return Located::NeedMore;
                }
            }
            Scan::ToNewline { searched } => return frame_to_newline(avail, searched, scan, eof),
            Scan::Sized { end } => return frame_sized(avail, end, eof, line),
        }
    }
}

/// The whole of `avail` as the last message (at end of input).
#[inline]
fn rest_of_input(avail: &[u8]) -> Located {
    Located::Frame {
        raw_len: avail.len(),
        next: avail.len(),
    }
}

/// A message ending at the first newline outside quotes, scanned from `pos` inside `quote`.
#[inline]
fn frame_quoted(
    avail: &[u8],
    pos: usize,
    quote: Option<u8>,
    scan: &mut Scan,
    eof: bool,
) -> Located {
    match scan_quotes(avail, pos, quote) {
        Ok(nl) => Located::Frame {
            raw_len: nl,
            next: nl + 1,
        },
        // Whatever is left is the last message; if a quote is still open,
        // parsing it says which value is unterminated.
        Err(_) if eof => rest_of_input(avail),
        Err(quote) => {
            *scan = Scan::Quotes {
                pos: avail.len(),
                quote,
            };
            Located::NeedMore
        }
    }
}

/// Looks for a logical message's `, sz: N content:` header from `from`. Returns how to frame
/// the message: [`Scan::Sized`] past a header found, [`Scan::ToNewline`] when there is none where
/// one must be, or [`Scan::LogicalHeader`] (where to resume) when more input is needed.
#[inline]
fn logical_header(avail: &[u8], from: usize, eof: bool) -> Scan {
    match find_sz_header(avail, from) {
        SzHeader::Found {
            prefix_end,
            content_start,
            size,
        } if prefix_end <= MAX_LOGICAL_HEADER => Scan::Sized {
            end: content_start + size,
        },
        SzHeader::Incomplete { resume } if resume <= MAX_LOGICAL_HEADER && !eof => {
            Scan::LogicalHeader { from: resume }
        }
        // No header where one must be: the message is taken to end at the first
        // newline, and the parser says what is wrong with it. (Decided by positions
        // only, so the outcome does not depend on how the input was chunked.)
        _ => Scan::ToNewline { searched: 0 },
    }
}

/// A message ending at the first newline, searched from `searched`.
#[inline]
fn frame_to_newline(avail: &[u8], searched: usize, scan: &mut Scan, eof: bool) -> Located {
    match memchr(b'\n', avail.get(searched..).unwrap_or_default()) {
        Some(k) => Located::Frame {
            raw_len: searched + k,
            next: searched + k + 1,
        },
        None if eof => rest_of_input(avail),
        None => {
            *scan = Scan::ToNewline {
                searched: avail.len(),
            };
            Located::NeedMore
        }
    }
}

/// A logical message whose content ends at `end`, where a newline must follow.
#[inline]
fn frame_sized(avail: &[u8], end: usize, eof: bool, line: u64) -> Located {
    match avail.get(end) {
        Some(b'\n') => Located::Frame {
            raw_len: end,
            next: end + 1,
        },
        Some(_) => Located::Corrupt {
            error: error_at(
                avail,
                line,
                end,
                "expected a newline after the `sz:` content bytes of the \
                 logical message",
            ),
            skip: end,
        },
        // All of it, or (truncated input) less: the parser reports the latter.
        None if eof => rest_of_input(avail),
        None => Located::NeedMore,
    }
}

/// Scans `buf` from `pos`, inside `quote` (if any), for the first newline outside quotes.
/// `Err` carries the quote state at the end of `buf`.
fn scan_quotes(buf: &[u8], mut pos: usize, mut quote: Option<u8>) -> Result<usize, Option<u8>> {
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        match quote {
            None => match memchr3(b'\n', b'\'', b'"', rest) {
                Some(k) => {
                    let at = pos + k;
                    match rest.get(k) {
                        Some(b'\n') => return Ok(at),
                        q => quote = q.copied(),
                    }
                    pos = at + 1;
                }
                None => return Err(None),
            },
            Some(q) => match memchr(q, rest) {
                Some(k) => {
                    quote = None;
                    pos += k + 1;
                }
                None => return Err(Some(q)),
            },
        }
    }
}
