//! Redshift's CSV load semantics, turned into CSV the backend's `COPY ... FROM STDIN WITH (FORMAT
//! csv)` reads with no interpretation left: every value is quoted, NULL is an unquoted empty field.
//!
//! What is emulated (per field, in this order):
//! - an **unquoted** field equal to `NULL AS` (default `\N`) is NULL; a quoted one is the text;
//! - an empty field (quoted or not) is NULL for non-character columns; for CHAR/VARCHAR it is the
//!   empty string, or NULL with EMPTYASNULL;
//! - BLANKSASNULL: a CHAR/VARCHAR field of only spaces/tabs is NULL;
//! - invalid UTF-8 fails the load, or with ACCEPTINVCHARS each bad sequence becomes the replacement
//!   character (default `?`);
//! - CHAR(n)/VARCHAR(n): more than n **bytes** fails with `String length exceeds DDL length`, or
//!   with TRUNCATECOLUMNS is cut to n bytes (on a UTF-8 character boundary); CHAR takes single-byte
//!   characters only;
//! - NUMERIC(p,s): extra fraction digits are truncated (Redshift's default), or left to the
//!   backend's rounding with ROUNDEC;
//! - VARBYTE (bytea here): the field is hex, loaded as `\x<hex>`;
//! - records: `"` (QUOTE AS) quotes, doubled inside quotes; quoted fields may hold the delimiter
//!   and newlines; `\n` or `\r\n` ends a record; IGNOREHEADER n skips n records of each file; a
//!   record with too few / too many fields fails (`Delimiter not found` / `Extra column(s) found`).
//! - A refused record fails the load, or is skipped while the COPY's MAXERROR budget lasts (the
//!   caller passes what is left of it); skipped records are returned for stl_load_errors.
//! - Everything else (integers, dates, timestamps, booleans) is parsed by the backend.

use std::borrow::Cow;

use crate::copycmd::CopySpec;
use memchr::{memchr2, memchr3};
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColKind {
    /// CHAR/VARCHAR/TEXT: `max_bytes` from the typmod; `fixed` for CHAR.
    Char {
        max_bytes: Option<usize>,
        fixed: bool,
    },
    Bytea,
    Numeric {
        scale: Option<u32>,
    },
    Other,
}

impl ColKind {
    /// From `pg_type.typname`, `pg_attribute.atttypmod` and `pg_type.typcategory`.
    pub fn from_catalog(typname: &str, typmod: i32, category: &str) -> Self {
        let len = (typmod > 4).then(|| (typmod - 4) as usize);
        match typname {
            "varchar" => ColKind::Char {
                max_bytes: len,
                fixed: false,
            },
            "bpchar" => ColKind::Char {
                max_bytes: len,
                fixed: true,
            },
            "bytea" => ColKind::Bytea,
            "numeric" => ColKind::Numeric {
                scale: (typmod >= 4).then(|| ((typmod - 4) & 0xffff) as u32),
            },
            _ if category == "S" => ColKind::Char {
                max_bytes: None,
                fixed: false,
            },
            _ => ColKind::Other,
        }
    }

    fn is_char(self) -> bool {
        matches!(self, ColKind::Char { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// As `format_type` shows it, for stl_load_errors.
    pub type_name: String,
    pub kind: ColKind,
}

/// Why a record could not be loaded, in stl_load_errors' terms.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordError {
    pub line: u64,
    pub colname: String,
    pub col_type: String,
    pub reason: String,
    pub code: i32,
    pub raw_line: String,
    pub raw_field: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LoadError {
    #[error("{}", .0.reason)]
    Record(Box<RecordError>),
}

/// One record's fields, quotes removed, their bytes back to back (kept from record to record,
/// so that reading a record allocates nothing).
#[derive(Debug, Default)]
struct Record {
    bytes: Vec<u8>,
    /// Each field's end in `bytes` (it starts where the previous one ends) and whether it was
    /// quoted.
    fields: Vec<(usize, bool)>,
}

impl Record {
    fn clear(&mut self) {
        self.bytes.clear();
        self.fields.clear();
    }

    fn end_field(&mut self, quoted: bool) {
        self.fields.push((self.bytes.len(), quoted));
    }

    /// Each field's bytes and whether it was quoted.
    fn iter(&self) -> impl Iterator<Item = (&[u8], bool)> + '_ {
        let mut start = 0;
        self.fields.iter().map(move |&(end, quoted)| {
            let bytes = self.bytes.get(start..end).unwrap_or_default();
            start = end;
            (bytes, quoted)
        })
    }
}

/// A record sent to the backend: where it comes from in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// 1-based line of the record's start in its (decompressed) file.
    pub line: u64,
    /// Byte offset of the record in its file.
    pub offset: usize,
    /// Lines the record takes in the backend's CSV (1 + newlines inside its values): the
    /// backend's `COPY t, line N` counts these.
    pub backend_lines: u64,
}

/// What converting one file produced.
#[derive(Debug, Default)]
pub struct Converted {
    /// CSV for the backend.
    pub out: Vec<u8>,
    /// One entry per record in `out`.
    pub sent: Vec<Sent>,
    /// Records refused and skipped (MAXERROR), in file order.
    pub rejected: Vec<RecordError>,
}

/// Converts files of one COPY.
pub struct Converter<'a> {
    pub spec: &'a CopySpec,
    pub cols: &'a [Column],
}

impl Converter<'_> {
    /// Convert one file's (decompressed) bytes into `conv`. A refused record is skipped and
    /// added to `conv.rejected` while fewer than `allowed` are there; past that it is the error.
    /// Records starting at the lines in `leave_out` (sorted) are left out silently.
    pub fn convert(
        &self,
        data: &[u8],
        leave_out: &[u64],
        allowed: usize,
        conv: &mut Converted,
    ) -> Result<(), LoadError> {
        let mut pos = 0;
        let mut line = 1u64;
        let mut header = 0;
        // A field of a valid UTF-8 file is valid UTF-8 (fields are split at ASCII bytes): then
        // fields need no check of their own.
        let utf8 = std::str::from_utf8(data).is_ok();
        let mut record = Record::default();
        conv.out.reserve(data.len() + data.len() / 4);
        while pos < data.len() {
            let (start, start_line) = (pos, line);
            let rec = self.record(data, &mut pos, &mut line, &mut record);
            let raw = || raw_line(data.get(start..pos).unwrap_or(&[]));
            let in_header = header < self.spec.ignore_header;
            if in_header {
                header += 1;
            }
            let result = match rec {
                Err((reason, code)) => Err(Box::new(RecordError::new(start_line, reason, code))),
                Ok(()) if in_header => continue,
                Ok(()) if leave_out.binary_search(&start_line).is_ok() => continue,
                Ok(()) => self.emit(&record, utf8, start_line, &mut conv.out),
            };
            match result {
                Ok(newlines) => conv.sent.push(Sent {
                    line: start_line,
                    offset: start,
                    backend_lines: 1 + newlines,
                }),
                Err(mut e) => {
                    e.raw_line = raw();
                    if conv.rejected.len() >= allowed {
                        return Err(LoadError::Record(e));
                    }
                    conv.rejected.push(*e);
                }
            }
        }
        Ok(())
    }

    /// The record at `offset`: its text (as stl_load_errors' raw_line shows it) and its fields'
    /// values (quotes removed).
    pub fn raw_record(&self, data: &[u8], offset: usize) -> (String, Vec<String>) {
        let (mut pos, mut line) = (offset, 1);
        let mut record = Record::default();
        let fields = match self.record(data, &mut pos, &mut line, &mut record) {
            Ok(()) => record.iter().map(|(b, _)| lossy(b, 1024)).collect(),
            Err(_) => Vec::new(),
        };
        (raw_line(data.get(offset..pos).unwrap_or(&[])), fields)
    }

    /// Append one record's backend CSV to `out` (nothing on error); returns the number of
    /// newlines inside its values.
    fn emit(
        &self,
        record: &Record,
        utf8: bool,
        line: u64,
        out: &mut Vec<u8>,
    ) -> Result<u64, Box<RecordError>> {
        let count = record.fields.len();
        if count != self.cols.len() {
            let (reason, code) = if count < self.cols.len() {
                ("Delimiter not found", 1214)
            } else {
                ("Extra column(s) found", 1202)
            };
            let col = self.cols.get(count.min(self.cols.len().saturating_sub(1)));
            let mut e = Box::new(RecordError::new(line, reason.into(), code));
            if let Some(c) = col {
                e.colname = c.name.clone();
                e.col_type = c.type_name.clone();
            }
            return Err(e);
        }
        let mark = out.len();
        let mut newlines = 0;
        for (i, ((bytes, quoted), col)) in record.iter().zip(self.cols).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            match self.field(bytes, quoted, utf8, col.kind) {
                Ok(None) => {}
                Ok(Some(v)) => newlines += quote_into(&v, out),
                Err((reason, code)) => {
                    out.truncate(mark);
                    let mut e = Box::new(RecordError::new(line, reason, code));
                    e.colname = col.name.clone();
                    e.col_type = col.type_name.clone();
                    e.raw_field = lossy(bytes, 1024);
                    return Err(e);
                }
            }
        }
        out.push(b'\n');
        Ok(newlines)
    }

    /// Parse one record starting at `pos` into `record`; advances `pos` past its end of line.
    fn record(
        &self,
        data: &[u8],
        pos: &mut usize,
        line: &mut u64,
        record: &mut Record,
    ) -> Result<(), (String, i32)> {
        let (delim, quote) = (self.spec.delimiter, self.spec.quote);
        record.clear();
        let mut quoted = false;
        let mut at_start = true;
        loop {
            let rest = data.get(*pos..).unwrap_or_default();
            let Some(&c) = rest.first() else {
                record.end_field(quoted);
                return Ok(());
            };
            if at_start && c == quote {
                quoted = true;
                *pos += 1;
                self.quoted_part(data, pos, line, record)?;
                match data.get(*pos) {
                    None | Some(b'\n') | Some(b'\r') => {}
                    Some(&d) if d == delim => {}
                    Some(_) => {
                        skip_line(data, pos, line);
                        return Err(("Invalid quote formatting for CSV".into(), 1216));
                    }
                }
                at_start = false;
                continue;
            }
            at_start = false;
            // Unquoted bytes up to the next delimiter or line end; a lone CR is a byte of the
            // field, a quote past the field's start too.
            let run = memchr3(delim, b'\n', b'\r', rest).unwrap_or(rest.len());
            record
                .bytes
                .extend_from_slice(rest.get(..run).unwrap_or_default());
            *pos += run;
            let Some(&c) = rest.get(run) else { continue };
            if c == delim {
                record.end_field(quoted);
                quoted = false;
                at_start = true;
                *pos += 1;
            } else if c == b'\n' || (c == b'\r' && data.get(*pos + 1) == Some(&b'\n')) {
                *pos += if c == b'\r' { 2 } else { 1 };
                *line += 1;
                record.end_field(quoted);
                return Ok(());
            } else {
                record.bytes.push(c);
                *pos += 1;
            }
        }
    }

    /// The inside of a quoted part, `pos` just after its opening quote: appended to `record`
    /// with doubled quotes undone; `pos` ends just after the closing quote.
    fn quoted_part(
        &self,
        data: &[u8],
        pos: &mut usize,
        line: &mut u64,
        record: &mut Record,
    ) -> Result<(), (String, i32)> {
        let quote = self.spec.quote;
        loop {
            let rest = data.get(*pos..).unwrap_or_default();
            let Some(k) = memchr2(quote, b'\n', rest) else {
                *line += memchr::memchr_iter(b'\n', rest).count() as u64;
                *pos = data.len();
                return Err(("Missing end quote for a quoted field".into(), 1214));
            };
            record
                .bytes
                .extend_from_slice(rest.get(..=k).unwrap_or_default());
            *pos += k + 1;
            if rest.get(k) != Some(&quote) {
                *line += 1;
            } else if data.get(*pos) == Some(&quote) {
                *pos += 1;
            } else {
                record.bytes.pop();
                return Ok(());
            }
        }
    }

    /// The value to load (None: NULL), or why the field is refused.
    /// `utf8`: the field is known to be valid UTF-8.
    fn field<'f>(
        &self,
        bytes: &'f [u8],
        quoted: bool,
        utf8: bool,
        kind: ColKind,
    ) -> Result<Option<Cow<'f, [u8]>>, (String, i32)> {
        let spec = self.spec;
        if !quoted && bytes == spec.null_as {
            return Ok(None);
        }
        if bytes.is_empty() {
            return Ok((kind.is_char() && !spec.empty_as_null).then_some(Cow::Borrowed(bytes)));
        }
        if kind.is_char() && spec.blanks_as_null && bytes.iter().all(|&b| b == b' ' || b == b'\t') {
            return Ok(None);
        }
        let utf8 = utf8 || std::str::from_utf8(bytes).is_ok();
        let v = match (utf8, spec.accept_inv_chars) {
            (true, _) => Cow::Borrowed(bytes),
            (false, Some(c)) => Cow::Owned(replace_invalid_utf8(bytes, c)),
            (false, None) => {
                return Err((
                    "String contains invalid or unsupported UTF8 codepoints".into(),
                    1220,
                ))
            }
        };
        match kind {
            ColKind::Char { max_bytes, fixed } => {
                if fixed && v.iter().any(|&b| b >= 0x80) {
                    return Err((
                        "Multibyte character not supported for CHAR (Hint: try using VARCHAR)"
                            .into(),
                        1220,
                    ));
                }
                if let Some(n) = max_bytes {
                    if v.len() > n {
                        if !spec.truncate_columns {
                            return Err(("String length exceeds DDL length".into(), 1204));
                        }
                        let mut cut = n;
                        while cut > 0 && v.get(cut).is_some_and(|&b| (b & 0xC0) == 0x80) {
                            cut -= 1;
                        }
                        return Ok(Some(prefix(v, cut)));
                    }
                }
                Ok(Some(v))
            }
            ColKind::Numeric { scale: Some(s) } if !spec.round_dec => {
                let keep = scale_prefix(&v, s);
                Ok(Some(prefix(v, keep)))
            }
            ColKind::Bytea => {
                let mut out = b"\\x".to_vec();
                out.extend_from_slice(&v);
                Ok(Some(Cow::Owned(out)))
            }
            _ => Ok(Some(v)),
        }
    }
}

/// Move past the end of the current line (a malformed record ends with its line).
fn skip_line(data: &[u8], pos: &mut usize, line: &mut u64) {
    match data
        .get(*pos..)
        .and_then(|r| r.iter().position(|&b| b == b'\n'))
    {
        Some(n) => {
            *pos += n + 1;
            *line += 1;
        }
        None => *pos = data.len(),
    }
}

impl RecordError {
    fn new(line: u64, reason: String, code: i32) -> Self {
        RecordError {
            line,
            reason,
            code,
            ..RecordError::default()
        }
    }
}

/// A record's text without its line terminator, at most 1024 characters.
fn raw_line(b: &[u8]) -> String {
    let b = b.strip_suffix(b"\n").unwrap_or(b);
    let b = b.strip_suffix(b"\r").unwrap_or(b);
    lossy(b, 1024)
}

fn lossy(b: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(b);
    s.chars().take(max).collect()
}

fn replace_invalid_utf8(mut b: &[u8], c: char) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    loop {
        match std::str::from_utf8(b) {
            Ok(s) => {
                out.extend_from_slice(s.as_bytes());
                return out;
            }
            Err(e) => {
                let good = e.valid_up_to();
                out.extend_from_slice(&b[..good]);
                out.push(c as u8);
                let bad = e.error_len().unwrap_or(b.len() - good);
                b = &b[good + bad..];
            }
        }
    }
}

/// The first `len` bytes of `v`.
fn prefix(v: Cow<'_, [u8]>, len: usize) -> Cow<'_, [u8]> {
    match v {
        Cow::Borrowed(b) => Cow::Borrowed(b.get(..len).unwrap_or(b)),
        Cow::Owned(mut o) => {
            o.truncate(len);
            Cow::Owned(o)
        }
    }
}

/// How much of a number to keep for `scale` fraction digits: `123.4567` with scale 2 keeps
/// `123.45` (only plain decimal notation is touched; anything else is kept whole).
fn scale_prefix(v: &[u8], scale: u32) -> usize {
    let digits = v
        .strip_prefix(b"-")
        .or_else(|| v.strip_prefix(b"+"))
        .unwrap_or(v);
    let Some(dot) = digits.iter().position(|&b| b == b'.') else {
        return v.len();
    };
    let ok = digits
        .iter()
        .enumerate()
        .all(|(i, b)| b.is_ascii_digit() || i == dot);
    let frac = digits.len() - dot - 1;
    if !ok || frac <= scale as usize {
        return v.len();
    }
    let sign = v.len() - digits.len();
    sign + dot + if scale == 0 { 0 } else { 1 + scale as usize }
}

/// `v` as a quoted backend CSV field (quotes doubled); returns the newlines in it.
fn quote_into(mut v: &[u8], out: &mut Vec<u8>) -> u64 {
    let mut newlines = 0;
    out.push(b'"');
    while let Some(k) = memchr2(b'"', b'\n', v) {
        let (run, rest) = v.split_at(k + 1);
        out.extend_from_slice(run);
        if run.last() == Some(&b'"') {
            out.push(b'"');
        } else {
            newlines += 1;
        }
        v = rest;
    }
    out.extend_from_slice(v);
    out.push(b'"');
    newlines
}

#[cfg(test)]
mod tests;
