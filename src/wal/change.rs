//! The pre-split row change: an INSERT or UPDATE as the WAL stores it from format version 3 on,
//! so that the CSV stage writes its fields without parsing test_decoding text again.
//!
//! Payload of a [`RecordKind::Change`](super::segment::RecordKind::Change) record (after the
//! record's kind and LSN, little endian):
//! ```text
//! u8 flags | u8 op | u32 F | fields (F bytes) | text (the rest)
//! fields: varint column count | column*
//! column: u8 tag [varint gap | varint length]      (gap and length only for tags 2, 3, 4)
//! ```
//! - `text` is the message exactly as received (what a [`RecordKind::Message`] record holds),
//!   so everything that needs names and types (re-batching after a crash, the batcher's
//!   re-reads) parses it as before; it comes last so that the writer appends the received bytes
//!   as they are, behind the small prefix [`encode_prefix`] builds;
//! - the columns are the new tuple's values in column order: tag 0 = NULL, 1 =
//!   unchanged-toast-datum, 2 = unquoted, 3 = quoted (`''` still doubled), 4 = bits; `gap` is the
//!   value's start minus the previous value's end (the first: minus 0), `length` its bytes, both
//!   offsets into `text`. Varints are LEB128 (7 bits a byte, low first);
//! - flag bit 0: `text` is valid UTF-8 (checked once, by the parser at ingest), so its values
//!   need no check when written;
//! - op 1 = INSERT, 2 = UPDATE.
//!
//! Decoding checks every offset against the text: a record that passed its CRC but does not
//! decode is refused as damaged, never sliced out of range.

use crate::source::decoding::{Message, Tuple, Value};

/// The message text is valid UTF-8.
const FLAG_UTF8: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ChangeOp {
    Insert = 1,
    Update = 2,
}

const TAG_NULL: u8 = 0;
const TAG_TOAST: u8 = 1;
const TAG_UNQUOTED: u8 = 2;
const TAG_QUOTED: u8 = 3;
const TAG_BITS: u8 = 4;

/// One column of a decoded change: where its value lies in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    tag: u8,
    start: u32,
    end: u32,
}

impl Field {
    /// The value, borrowing from `text` (the [`Change::text`] the field was decoded with).
    #[inline]
    pub fn value<'a>(&self, text: &'a [u8]) -> Value<'a> {
        let bytes = || {
            text.get(self.start as usize..self.end as usize)
                .unwrap_or_default()
        };
        match self.tag {
            TAG_NULL => Value::Null,
            TAG_TOAST => Value::UnchangedToast,
            TAG_UNQUOTED => Value::Unquoted(bytes()),
            TAG_QUOTED => Value::Quoted(bytes()),
            _ => Value::Bits(bytes()),
        }
    }
}

/// A decoded change record; its fields are in the `Vec` given to [`decode`].
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    pub op: ChangeOp,
    /// The text is valid UTF-8: its values need no check.
    pub utf8: bool,
    /// The message as received.
    pub text: &'a [u8],
}

/// The op and new tuple of a message that is stored pre-split: an INSERT or UPDATE with tuple
/// data. Everything else is stored as plain text.
pub fn split_of<'m, 'a>(msg: &'m Message<'a>) -> Option<(ChangeOp, &'m Tuple<'a>)> {
    match msg {
        Message::Insert { new: Some(t), .. } => Some((ChangeOp::Insert, t)),
        Message::Update { new: Some(t), .. } => Some((ChangeOp::Update, t)),
        _ => None,
    }
}

/// Appends to `out` the prefix of the change record of `(op, new)`, whose message is `text`:
/// the record's payload is this prefix followed by `text`. `false` (and `out` as it was) when a
/// value does not lie in `text` in column order, which a tuple parsed from `text` always does:
/// the caller then stores the plain message.
pub fn encode_prefix(
    out: &mut Vec<u8>,
    op: ChangeOp,
    text: &[u8],
    utf8: bool,
    new: &Tuple<'_>,
) -> bool {
    let mut prefix = PrefixWriter::begin(out, op, utf8, new.columns.len());
    let done = new.columns.iter().all(|c| prefix.value(out, text, c.value)) && prefix.finish(out);
    if !done {
        out.truncate(prefix.at);
    }
    done
}

/// A change record's prefix, written into a buffer value by value ([`encode_prefix`] writes a
/// tuple's; a digest writes the values it reads without a tree). The caller truncates the
/// buffer to [`Self::start`] when a step fails.
#[derive(Debug)]
pub struct PrefixWriter {
    /// Where the prefix starts in the buffer.
    at: usize,
    /// The end of the last value in the text (offsets are relative to it).
    prev_end: usize,
}

impl PrefixWriter {
    /// Starts a prefix of `columns` values at the end of `out`.
    #[inline]
    pub fn begin(out: &mut Vec<u8>, op: ChangeOp, utf8: bool, columns: usize) -> Self {
        let at = out.len();
        out.push(if utf8 { FLAG_UTF8 } else { 0 });
        out.push(op as u8);
        out.extend_from_slice(&[0; 4]);
        put_varint(out, u32::try_from(columns).unwrap_or(u32::MAX));
        PrefixWriter { at, prev_end: 0 }
    }

    /// Where the prefix starts in the buffer.
    pub fn start(&self) -> usize {
        self.at
    }

    /// The next column's value, which borrows from `text` after the previous one's; `false`
    /// when it does not.
    #[inline]
    pub fn value(&mut self, out: &mut Vec<u8>, text: &[u8], value: Value<'_>) -> bool {
        let (tag, bytes) = match value {
            Value::Null => (TAG_NULL, None),
            Value::UnchangedToast => (TAG_TOAST, None),
            Value::Unquoted(b) => (TAG_UNQUOTED, Some(b)),
            Value::Quoted(b) => (TAG_QUOTED, Some(b)),
            Value::Bits(b) => (TAG_BITS, Some(b)),
        };
        out.push(tag);
        let Some(b) = bytes else { return true };
        let start = (b.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
        if start < self.prev_end || start > text.len() || b.len() > text.len() - start {
            return false;
        }
        let (Ok(gap), Ok(len)) = (u32::try_from(start - self.prev_end), u32::try_from(b.len()))
        else {
            return false;
        };
        put_varint(out, gap);
        put_varint(out, len);
        self.prev_end = start + b.len();
        true
    }

    /// Writes the fields' length; `false` when it does not fit.
    #[inline]
    pub fn finish(&self, out: &mut [u8]) -> bool {
        let Some(len) = out.len().checked_sub(self.at + PREFIX_FIXED) else {
            return false;
        };
        let Ok(fields_len) = u32::try_from(len) else {
            return false;
        };
        out[self.at + 2..self.at + PREFIX_FIXED].copy_from_slice(&fields_len.to_le_bytes());
        true
    }
}

/// Flags, op and the fields' length.
const PREFIX_FIXED: usize = 6;

/// Splits a change payload into (prefix, text).
fn split(payload: &[u8]) -> Option<(&[u8], &[u8])> {
    let fixed = payload.first_chunk::<PREFIX_FIXED>()?;
    let fields_len = u32::from_le_bytes([fixed[2], fixed[3], fixed[4], fixed[5]]);
    let prefix_len = PREFIX_FIXED.checked_add(fields_len as usize)?;
    payload.split_at_checked(prefix_len)
}

/// Decodes a change payload: the change, and its columns into `fields` (cleared first).
/// `None` when the payload is not a well-formed change.
pub fn decode<'a>(payload: &'a [u8], fields: &mut Vec<Field>) -> Option<Change<'a>> {
    let (prefix, text) = split(payload)?;
    decode_first(prefix, text, usize::MAX, fields)
}

/// [`decode`] of a payload held in two pieces, the prefix ([`encode_prefix`]'s bytes, all of
/// them) and the text, for its first `n` columns only (all of them when there are fewer): what
/// is after them in the prefix is neither read nor checked, so a shortened decode is for a
/// prefix this process built (a digest), not one read from disk.
pub fn decode_first<'a>(
    prefix: &[u8],
    text: &'a [u8],
    n: usize,
    fields: &mut Vec<Field>,
) -> Option<Change<'a>> {
    let (fixed, mut rest) = prefix.split_first_chunk::<PREFIX_FIXED>()?;
    let fields_len = u32::from_le_bytes([fixed[2], fixed[3], fixed[4], fixed[5]]);
    if rest.len() != fields_len as usize {
        return None;
    }
    let (flags, op) = (fixed[0], fixed[1]);
    let op = match op {
        1 => ChangeOp::Insert,
        2 => ChangeOp::Update,
        _ => return None,
    };
    let columns = take_varint(&mut rest)? as usize;
    let wanted = columns.min(n);
    fields.clear();
    fields.reserve(wanted.min(rest.len()));
    let mut prev_end = 0u32;
    for _ in 0..wanted {
        let (&tag, r) = rest.split_first()?;
        rest = r;
        let (start, end) = match tag {
            TAG_NULL | TAG_TOAST => (0, 0),
            TAG_UNQUOTED | TAG_QUOTED | TAG_BITS => {
                let start = prev_end.checked_add(take_varint(&mut rest)?)?;
                let end = start.checked_add(take_varint(&mut rest)?)?;
                if end as usize > text.len() {
                    return None;
                }
                prev_end = end;
                (start, end)
            }
            _ => return None,
        };
        fields.push(Field { tag, start, end });
    }
    if wanted == columns && !rest.is_empty() {
        return None;
    }
    Some(Change {
        op,
        utf8: flags & FLAG_UTF8 != 0,
        text,
    })
}

/// The message text of a change payload (without decoding its columns).
pub fn text_of(payload: &[u8]) -> Option<&[u8]> {
    split(payload).map(|(_, text)| text)
}

#[inline]
fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
fn take_varint(input: &mut &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for shift in (0..35).step_by(7) {
        let (&b, rest) = input.split_first()?;
        *input = rest;
        v |= u32::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::decoding::parse_message;

    fn round_trip(text: &[u8]) -> (ChangeOp, Vec<Value<'_>>) {
        let msg = parse_message(text, 1).unwrap();
        let (op, new) = split_of(&msg).unwrap();
        let mut out = Vec::new();
        assert!(encode_prefix(&mut out, op, text, true, new));
        out.extend_from_slice(text);
        let mut fields = Vec::new();
        let change = decode(&out, &mut fields).unwrap();
        assert_eq!(change.text, text);
        assert_eq!(text_of(&out), Some(text));
        assert!(change.utf8);
        let values: Vec<_> = fields.iter().map(|f| f.value(text)).collect();
        let parsed: Vec<_> = new.columns.iter().map(|c| c.value).collect();
        assert_eq!(values, parsed);
        (change.op, values)
    }

    #[test]
    fn every_kind_of_value_round_trips() {
        let (op, values) = round_trip(
            b"table public.t: INSERT: id[bigint]:1 s[text]:'a''b\nc' n[text]:null \
              t[text]:unchanged-toast-datum b[bit varying]:B'0101' e[text]:'' f[real]:NaN",
        );
        assert_eq!(op, ChangeOp::Insert);
        assert_eq!(values[1], Value::Quoted(b"a''b\nc"));
        assert_eq!(values[5], Value::Quoted(b""));
        let (op, values) = round_trip(
            b"table s.t: UPDATE: old-key: id[integer]:1 new-tuple: id[integer]:2 x[text]:'y'",
        );
        assert_eq!((op, values.len()), (ChangeOp::Update, 2));
    }

    #[test]
    fn long_values_need_multi_byte_lengths() {
        let body = "x".repeat(300_000);
        let text = format!("table public.t: INSERT: id[bigint]:7 body[text]:'{body}' n[integer]:3");
        let (_, values) = round_trip(text.as_bytes());
        assert_eq!(values[1], Value::Quoted(body.as_bytes()));
        assert_eq!(values[2], Value::Unquoted(b"3"));
    }

    #[test]
    fn a_value_outside_the_text_is_not_encoded() {
        let text = b"table public.t: INSERT: id[bigint]:1";
        let msg = parse_message(text, 1).unwrap();
        let (op, new) = split_of(&msg).unwrap();
        let elsewhere = text.to_vec();
        let mut out = b"kept".to_vec();
        assert!(!encode_prefix(&mut out, op, &elsewhere, true, new));
        assert_eq!(out, b"kept", "what was there before stays, nothing more");
    }

    #[test]
    fn a_prefix_appends_and_its_first_columns_decode_alone() {
        let text = b"table public.t: UPDATE: id[bigint]:7 s[text]:'abc' n[integer]:null";
        let msg = parse_message(text, 1).unwrap();
        let (op, new) = split_of(&msg).unwrap();
        let mut side = b"public.t".to_vec();
        assert!(encode_prefix(&mut side, op, text, true, new));
        let prefix = &side[8..];
        let mut fields = Vec::new();
        let change = decode_first(prefix, text, 1, &mut fields).unwrap();
        assert_eq!(change.op, ChangeOp::Update);
        assert_eq!(fields.len(), 1);
        assert_eq!(fields[0].value(text), Value::Unquoted(b"7"));
        decode_first(prefix, text, usize::MAX, &mut fields).unwrap();
        assert_eq!(fields.len(), 3);
        // A prefix cut short is refused, whatever is asked of it.
        assert!(decode_first(&prefix[..prefix.len() - 1], text, 1, &mut fields).is_none());
    }

    #[test]
    fn damaged_payloads_do_not_decode() {
        let text = b"table public.t: INSERT: id[bigint]:1 s[text]:'abc'";
        let msg = parse_message(text, 1).unwrap();
        let (op, new) = split_of(&msg).unwrap();
        let mut prefix = Vec::new();
        assert!(encode_prefix(&mut prefix, op, text, false, new));
        let good = [prefix.as_slice(), text].concat();
        let mut fields = Vec::new();
        assert!(!decode(&good, &mut fields).unwrap().utf8);
        // The prefix cut anywhere, or the text cut short: refused, never out of range.
        for cut in 0..prefix.len() {
            assert!(decode(&good[..cut], &mut fields).is_none(), "cut at {cut}");
        }
        assert!(decode(&good[..good.len() - 2], &mut fields).is_none());
        // A length that runs past the text.
        let mut bad = good.clone();
        bad[prefix.len() - 1] = 0x7f;
        assert!(decode(&bad, &mut fields).is_none());
        // Fields longer than their count says.
        let mut bad = prefix.clone();
        bad.push(0);
        bad[2] += 1;
        bad.extend_from_slice(text);
        assert!(decode(&bad, &mut fields).is_none());
        // An unknown op or tag.
        let mut bad = good.clone();
        bad[1] = 9;
        assert!(decode(&bad, &mut fields).is_none());
    }
}
