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

use crate::copycmd::CopySpec;
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

struct Field {
    bytes: Vec<u8>,
    quoted: bool,
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
        while pos < data.len() {
            let (start, start_line) = (pos, line);
            let rec = self.record(data, &mut pos, &mut line);
            let raw = || raw_line(data.get(start..pos).unwrap_or(&[]));
            let in_header = header < self.spec.ignore_header;
            if in_header {
                header += 1;
            }
            let result = match rec {
                Err((reason, code)) => Err(Box::new(RecordError::new(start_line, reason, code))),
                Ok(_) if in_header => continue,
                Ok(_) if leave_out.binary_search(&start_line).is_ok() => continue,
                Ok(fields) => self.emit(&fields, start_line, &mut conv.out),
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
        let fields = self.record(data, &mut pos, &mut line).unwrap_or_default();
        let fields = fields.iter().map(|f| lossy(&f.bytes, 1024)).collect();
        (raw_line(data.get(offset..pos).unwrap_or(&[])), fields)
    }

    /// Append one record's backend CSV to `out` (nothing on error); returns the number of
    /// newlines inside its values.
    fn emit(
        &self,
        fields: &[Field],
        line: u64,
        out: &mut Vec<u8>,
    ) -> Result<u64, Box<RecordError>> {
        if fields.len() != self.cols.len() {
            let (reason, code) = if fields.len() < self.cols.len() {
                ("Delimiter not found", 1214)
            } else {
                ("Extra column(s) found", 1202)
            };
            let col = self
                .cols
                .get(fields.len().min(self.cols.len().saturating_sub(1)));
            let mut e = Box::new(RecordError::new(line, reason.into(), code));
            if let Some(c) = col {
                e.colname = c.name.clone();
                e.col_type = c.type_name.clone();
            }
            return Err(e);
        }
        let mark = out.len();
        let mut newlines = 0;
        for (i, (f, col)) in fields.iter().zip(self.cols).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            match self.field(f, col.kind) {
                Ok(None) => {}
                Ok(Some(v)) => {
                    out.push(b'"');
                    for &b in &v {
                        match b {
                            b'"' => out.push(b'"'),
                            b'\n' => newlines += 1,
                            _ => {}
                        }
                        out.push(b);
                    }
                    out.push(b'"');
                }
                Err((reason, code)) => {
                    out.truncate(mark);
                    let mut e = Box::new(RecordError::new(line, reason, code));
                    e.colname = col.name.clone();
                    e.col_type = col.type_name.clone();
                    e.raw_field = lossy(&f.bytes, 1024);
                    return Err(e);
                }
            }
        }
        out.push(b'\n');
        Ok(newlines)
    }

    /// Parse one record starting at `pos`; advances `pos` past its end of line.
    fn record(
        &self,
        data: &[u8],
        pos: &mut usize,
        line: &mut u64,
    ) -> Result<Vec<Field>, (String, i32)> {
        let (delim, quote) = (self.spec.delimiter, self.spec.quote);
        let mut fields = Vec::new();
        let mut cur = Field {
            bytes: Vec::new(),
            quoted: false,
        };
        let mut at_start = true;
        loop {
            let Some(&c) = data.get(*pos) else {
                fields.push(cur);
                return Ok(fields);
            };
            if at_start && c == quote {
                cur.quoted = true;
                *pos += 1;
                loop {
                    let Some(&b) = data.get(*pos) else {
                        return Err(("Missing end quote for a quoted field".into(), 1214));
                    };
                    *pos += 1;
                    if b == quote {
                        if data.get(*pos) == Some(&quote) {
                            cur.bytes.push(quote);
                            *pos += 1;
                        } else {
                            break;
                        }
                    } else {
                        if b == b'\n' {
                            *line += 1;
                        }
                        cur.bytes.push(b);
                    }
                }
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
            if c == delim {
                fields.push(std::mem::replace(
                    &mut cur,
                    Field {
                        bytes: Vec::new(),
                        quoted: false,
                    },
                ));
                at_start = true;
                *pos += 1;
            } else if c == b'\n' || (c == b'\r' && data.get(*pos + 1) == Some(&b'\n')) {
                *pos += if c == b'\r' { 2 } else { 1 };
                *line += 1;
                fields.push(cur);
                return Ok(fields);
            } else {
                cur.bytes.push(c);
                *pos += 1;
            }
        }
    }

    /// The value to load (None: NULL), or why the field is refused.
    fn field(&self, f: &Field, kind: ColKind) -> Result<Option<Vec<u8>>, (String, i32)> {
        let spec = self.spec;
        if !f.quoted && f.bytes == spec.null_as {
            return Ok(None);
        }
        if f.bytes.is_empty() {
            return Ok((kind.is_char() && !spec.empty_as_null).then(Vec::new));
        }
        if kind.is_char() && spec.blanks_as_null && f.bytes.iter().all(|&b| b == b' ' || b == b'\t')
        {
            return Ok(None);
        }
        let mut v = match (std::str::from_utf8(&f.bytes), spec.accept_inv_chars) {
            (Ok(_), _) => f.bytes.clone(),
            (Err(_), Some(c)) => replace_invalid_utf8(&f.bytes, c),
            (Err(_), None) => {
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
                        v.truncate(cut);
                    }
                }
                Ok(Some(v))
            }
            ColKind::Numeric { scale: Some(s) } if !spec.round_dec => {
                Ok(Some(truncate_scale(v, s)))
            }
            ColKind::Bytea => {
                let mut out = b"\\x".to_vec();
                out.extend_from_slice(&v);
                Ok(Some(out))
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

/// `123.4567` with scale 2 -> `123.45` (only plain decimal notation is touched).
fn truncate_scale(v: Vec<u8>, scale: u32) -> Vec<u8> {
    let digits = v
        .strip_prefix(b"-")
        .or_else(|| v.strip_prefix(b"+"))
        .unwrap_or(&v);
    let Some(dot) = digits.iter().position(|&b| b == b'.') else {
        return v;
    };
    let ok = digits
        .iter()
        .enumerate()
        .all(|(i, b)| b.is_ascii_digit() || i == dot);
    let frac = digits.len() - dot - 1;
    if !ok || frac <= scale as usize {
        return v;
    }
    let sign = v.len() - digits.len();
    let keep = sign + dot + if scale == 0 { 0 } else { 1 + scale as usize };
    let mut v = v;
    v.truncate(keep);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::{plan_query, Plan};

    fn spec(opts: &str) -> CopySpec {
        match plan_query(
            &format!("copy t from 's3://b/k' iam_role default csv {opts}"),
            false,
        )
        .remove(0)
        .plan
        {
            Plan::Copy(s) => *s,
            other => panic!("{other:?}"),
        }
    }

    fn col(name: &str, kind: ColKind) -> Column {
        Column {
            name: name.into(),
            type_name: "t".into(),
            kind,
        }
    }

    const VC5: ColKind = ColKind::Char {
        max_bytes: Some(5),
        fixed: false,
    };

    fn run(opts: &str, cols: &[Column], data: &[u8]) -> Result<(String, Vec<u64>), LoadError> {
        let conv = convert(opts, cols, data, &[], 0)?;
        let lines = conv.sent.iter().map(|s| s.line).collect();
        Ok((String::from_utf8(conv.out).unwrap(), lines))
    }

    fn convert(
        opts: &str,
        cols: &[Column],
        data: &[u8],
        leave_out: &[u64],
        allowed: usize,
    ) -> Result<Converted, LoadError> {
        let spec = spec(opts);
        let conv = Converter { spec: &spec, cols };
        let mut out = Converted::default();
        conv.convert(data, leave_out, allowed, &mut out)?;
        Ok(out)
    }

    fn err(opts: &str, cols: &[Column], data: &[u8]) -> RecordError {
        match run(opts, cols, data) {
            Err(LoadError::Record(e)) => *e,
            Ok(o) => panic!("loaded: {o:?}"),
        }
    }

    #[test]
    fn quoting_nulls_and_empties() {
        let cols = [col("a", VC5), col("n", ColKind::Other)];
        let (out, lines) = run(
            "",
            &cols,
            b"\"x\"\"y\",1\n,\n\\N,\\N\n\"\\N\",\"\"\n\"a\nb\",2\r\nlast,3",
        )
        .unwrap();
        assert_eq!(
            out,
            "\"x\"\"y\",\"1\"\n\"\",\n,\n\"\\N\",\n\"a\nb\",\"2\"\n\"last\",\"3\"\n"
        );
        assert_eq!(lines, vec![1, 2, 3, 4, 5, 7]);
    }

    #[test]
    fn emptyasnull_and_blanksasnull() {
        let cols = [col("a", VC5), col("b", VC5)];
        let (out, _) = run("emptyasnull blanksasnull", &cols, b",\"  \"\n").unwrap();
        assert_eq!(out, ",\n");
    }

    #[test]
    fn varchar_counts_bytes() {
        let cols = [col("a", VC5)];
        let e = err("", &cols, b"ok\n\"\xc3\xa9\xc3\xa9\xc3\xa9\"\n");
        assert_eq!(e.reason, "String length exceeds DDL length");
        assert_eq!((e.line, e.code, e.colname.as_str()), (2, 1204, "a"));
        let (out, _) = run("truncatecolumns", &cols, "ééé\n".as_bytes()).unwrap();
        assert_eq!(out, "\"éé\"\n");
        let (out, _) = run("truncatecolumns", &cols, b"abcdefg\n").unwrap();
        assert_eq!(out, "\"abcde\"\n");
    }

    #[test]
    fn char_is_single_byte() {
        let cols = [col(
            "c",
            ColKind::Char {
                max_bytes: Some(4),
                fixed: true,
            },
        )];
        assert!(err("", &cols, "é\n".as_bytes())
            .reason
            .contains("Multibyte"));
    }

    #[test]
    fn invalid_utf8() {
        let cols = [col(
            "a",
            ColKind::Char {
                max_bytes: None,
                fixed: false,
            },
        )];
        assert_eq!(err("", &cols, b"a\xffb\n").code, 1220);
        let (out, _) = run("acceptinvchars as '^'", &cols, b"a\xffb\n").unwrap();
        assert_eq!(out, "\"a^b\"\n");
    }

    #[test]
    fn field_count_errors() {
        let cols = [col("a", VC5), col("b", VC5)];
        assert_eq!(err("", &cols, b"1\n").reason, "Delimiter not found");
        assert_eq!(err("", &cols, b"1,2,3\n").reason, "Extra column(s) found");
        assert_eq!(err("", &cols, b"\"1\"x,2\n").code, 1216);
        assert_eq!(err("", &cols, b"\"1,2\n").code, 1214);
    }

    #[test]
    fn header_delimiter_custom_null() {
        let cols = [col("a", ColKind::Other), col("b", VC5)];
        let (out, lines) = run(
            "ignoreheader 1 delimiter '|' null as 'NULL'",
            &cols,
            b"a|b\n1|NULL\n",
        )
        .unwrap();
        assert_eq!(out, "\"1\",\n");
        assert_eq!(lines, vec![2]);
    }

    #[test]
    fn numeric_scale_and_bytea() {
        let cols = [
            col("n", ColKind::Numeric { scale: Some(2) }),
            col("b", ColKind::Bytea),
        ];
        let (out, _) = run("", &cols, b"-1.239,0aff\n5,\n").unwrap();
        assert_eq!(out, "\"-1.23\",\"\\x0aff\"\n\"5\",\n");
        let (out, _) = run("roundec", &cols, b"1.239,00\n").unwrap();
        assert_eq!(out, "\"1.239\",\"\\x00\"\n");
        assert_eq!(truncate_scale(b"7.9".to_vec(), 0), b"7");
        assert_eq!(truncate_scale(b"1e5".to_vec(), 0), b"1e5");
    }

    #[test]
    fn truncated_files_never_panic() {
        let cols = [
            col("a", VC5),
            col("n", ColKind::Numeric { scale: Some(1) }),
            col("b", ColKind::Bytea),
        ];
        let data = b"\"x\"\"\",-1.25,ff\r\n\"a\nb\",\\N,\n,,\n\"\xc3\xa9\xff\",+.5,00\n";
        for i in 0..data.len() {
            for opts in [
                "",
                "truncatecolumns acceptinvchars emptyasnull ignoreheader 1",
            ] {
                let _ = run(opts, &cols, &data[..i]);
                let _ = run(opts, &cols, &data[i..]);
            }
        }
    }

    #[test]
    fn rejected_records_are_skipped_within_the_budget() {
        let cols = [col("a", VC5), col("b", VC5)];
        let data = b"h,h\n1,ok\n2,toolong\n\"3\nx\",ok\n4\n\"5\"x,y\r\n6,ok\n";
        let conv = convert("ignoreheader 1", &cols, data, &[], 3).unwrap();
        assert_eq!(
            String::from_utf8(conv.out).unwrap(),
            "\"1\",\"ok\"\n\"3\nx\",\"ok\"\n\"6\",\"ok\"\n"
        );
        let sent: Vec<(u64, usize, u64)> = conv
            .sent
            .iter()
            .map(|s| (s.line, s.offset, s.backend_lines))
            .collect();
        assert_eq!(sent, vec![(2, 4, 1), (4, 19, 2), (8, 38, 1)]);
        let rejected: Vec<(u64, &str, i32, &str, &str)> = conv
            .rejected
            .iter()
            .map(|e| {
                let (raw, field) = (e.raw_line.as_str(), e.raw_field.as_str());
                (e.line, e.colname.as_str(), e.code, raw, field)
            })
            .collect();
        assert_eq!(
            rejected,
            vec![
                (3, "b", 1204, "2,toolong", "toolong"),
                (6, "b", 1214, "4", ""),
                (7, "", 1216, "\"5\"x,y", ""),
            ]
        );
        // One fewer allowed: the third rejected record is the error, with the others kept.
        let spec = spec("ignoreheader 1");
        let c = Converter {
            spec: &spec,
            cols: &cols,
        };
        let mut conv = Converted::default();
        let Err(LoadError::Record(e)) = c.convert(data, &[], 2, &mut conv) else {
            panic!("loaded");
        };
        assert_eq!((e.line, e.code, e.raw_line.as_str()), (7, 1216, "\"5\"x,y"));
        assert_eq!(conv.rejected.len(), 2);
        let (raw, fields) = c.raw_record(data, 19);
        assert_eq!(
            (raw.as_str(), fields),
            ("\"3\nx\",ok", vec!["3\nx".into(), "ok".into()])
        );
    }

    #[test]
    fn left_out_lines_are_not_sent() {
        let cols = [col("a", VC5)];
        let conv = convert("", &cols, b"a\nb\nc\n", &[1, 3], 0).unwrap();
        assert_eq!(String::from_utf8(conv.out).unwrap(), "\"b\"\n");
        assert_eq!(conv.sent.len(), 1);
        assert!(conv.rejected.is_empty());
    }

    #[test]
    fn kinds_from_catalog() {
        assert_eq!(ColKind::from_catalog("varchar", 14, "S"), VC_10);
        assert_eq!(
            ColKind::from_catalog("numeric", (12 << 16 | 4) + 4, "N"),
            ColKind::Numeric { scale: Some(4) }
        );
        assert_eq!(ColKind::from_catalog("int4", -1, "N"), ColKind::Other);
        assert_eq!(
            ColKind::from_catalog("text", -1, "S"),
            ColKind::Char {
                max_bytes: None,
                fixed: false
            }
        );
    }

    const VC_10: ColKind = ColKind::Char {
        max_bytes: Some(10),
        fixed: false,
    };
}
