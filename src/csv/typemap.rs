//! Postgres -> Redshift types, and how each value is written into the CSV files.
//!
//! The mapping is the table in README.md ("Type mapping"). test_decoding prints types without
//! their typmod, so without the source catalog `varchar(n)` is `character varying` and maps to
//! VARCHAR(65535), and `numeric(p,s)` to NUMERIC(38,10) ([`redshift_type`]). With the catalog
//! (`format_type` with the typmod, see `catalog`), [`redshift_type_with_typmod`] keeps the
//! declared sizes: VARCHAR(min(4n, 65535)) for varchar(n) / char(n), NUMERIC(p,s) for p <= 38.
//!
//! CSV dialect (what `COPY ... CSV GZIP NULL AS '\N'` reads back exactly): comma separated, NULL
//! is an unquoted `\N`; every string-like value is double-quoted with `"` doubled, so an empty
//! string (`""`) and a string `\N` (`"\N"`) are never NULL; numbers and booleans are unquoted.

use std::io::Write;

use crate::metrics;
use crate::source::decoding::{unescape_quoted, Value};

/// Redshift's VARCHAR limit in bytes.
pub const VARCHAR_MAX_BYTES: usize = 65535;
/// The VARBYTE size bytea columns are created with: the limit every Redshift release accepts
/// (newer ones go to 16 MiB; 1,024,000 bytes is also 2 MB of hex in a CSV field, well inside
/// COPY's 4 MB per row). A longer value is written as NULL and counted.
pub const VARBYTE_MAX_BYTES: usize = 1_024_000;
/// Digits before the point that NUMERIC(38,10) holds.
pub const NUMERIC_INT_DIGITS: usize = 28;
pub const NUMERIC_SCALE: usize = 10;

/// How a column's values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// smallint, integer, bigint, oid: unquoted as printed.
    Integer,
    /// numeric: NaN -> NULL, beyond NUMERIC(38,10) -> saturated.
    Numeric,
    /// real, double precision: unquoted, NaN / Infinity kept.
    Float,
    /// boolean: `t` / `f`.
    Boolean,
    /// bytea: hex digits without the `\x` prefix (VARBYTE reads hex from CSV); longer than
    /// [`VARBYTE_MAX_BYTES`] -> NULL.
    Bytea,
    /// date and time types: as printed (ISO, UTC); `infinity` -> NULL.
    Temporal,
    /// Everything else: text, truncated to `max_bytes` on a UTF-8 boundary.
    Text { max_bytes: usize },
}

/// Classifies a Postgres type as test_decoding prints it.
pub fn value_kind(pg_type: &str) -> ValueKind {
    match pg_type {
        "smallint" | "integer" | "bigint" | "oid" => ValueKind::Integer,
        "numeric" => ValueKind::Numeric,
        "real" | "double precision" => ValueKind::Float,
        "boolean" => ValueKind::Boolean,
        "bytea" => ValueKind::Bytea,
        "date"
        | "time without time zone"
        | "time with time zone"
        | "timestamp without time zone"
        | "timestamp with time zone" => ValueKind::Temporal,
        _ => ValueKind::Text {
            max_bytes: VARCHAR_MAX_BYTES,
        },
    }
}

/// The Redshift column type for a Postgres type (no typmod known).
pub fn redshift_type(pg_type: &str) -> String {
    let t = match pg_type {
        "smallint" => "SMALLINT",
        "integer" => "INTEGER",
        "bigint" | "oid" => "BIGINT",
        "numeric" => "NUMERIC(38,10)",
        "real" => "REAL",
        "double precision" => "DOUBLE PRECISION",
        "boolean" => "BOOLEAN",
        "date" => "DATE",
        "time without time zone" => "TIME",
        "time with time zone" => "TIMETZ",
        "timestamp without time zone" => "TIMESTAMP",
        "timestamp with time zone" => "TIMESTAMPTZ",
        "uuid" => "CHAR(36)",
        "bytea" => "VARBYTE(1024000)",
        _ => "VARCHAR(65535)",
    };
    t.to_string()
}

/// The Redshift column type for a column as the source catalog's `format_type(atttypid,
/// atttypmod)` shows it: `character varying(n)` and `character(n)` -> `VARCHAR(min(4n, 65535))`
/// (Redshift counts bytes, Postgres characters; UTF-8 needs at most 4 per character);
/// `numeric(p,s)` with `0 <= s <= p <= 38` -> `NUMERIC(p,s)`. Anything else is the typmod-less
/// [`redshift_type`] of the name without its typmod (`timestamp(3) with time zone` ->
/// TIMESTAMPTZ, `numeric(40,2)` -> NUMERIC(38,10)); arrays (`character varying(20)[]`) are
/// VARCHAR(65535) like every array.
pub fn redshift_type_with_typmod(format_type: &str) -> String {
    let ty = format_type.trim();
    if ty.ends_with("[]") {
        return format!("VARCHAR({VARCHAR_MAX_BYTES})");
    }
    let Some((base, args)) = split_typmod(ty) else {
        return redshift_type(ty);
    };
    let sized = match base.as_str() {
        "character varying" | "character" => {
            args.trim().parse::<u64>().ok().filter(|&n| n > 0).map(|n| {
                format!(
                    "VARCHAR({})",
                    n.saturating_mul(4).min(VARCHAR_MAX_BYTES as u64)
                )
            })
        }
        "numeric" => numeric_typmod(&args).map(|(p, s)| format!("NUMERIC({p},{s})")),
        _ => None,
    };
    sized.unwrap_or_else(|| redshift_type(&base))
}

/// The type name of a catalog `format_type` as test_decoding prints it: without the typmod
/// (`character varying(20)[]` -> `character varying[]`, `numeric(12,4)` -> `numeric`,
/// `timestamp(3) with time zone` -> `timestamp with time zone`); `bpchar` (char without a
/// length) -> `character`.
pub fn typmodless_name(format_type: &str) -> String {
    let ty = format_type.trim();
    let name = split_typmod(ty).map_or_else(|| ty.to_string(), |(base, _)| base);
    if name == "bpchar" {
        "character".to_string()
    } else {
        name
    }
}

/// `(p, s)` of a numeric typmod `p,s` (or `p`) that Redshift can hold as `NUMERIC(p,s)`.
fn numeric_typmod(args: &str) -> Option<(u32, u32)> {
    let (p, s) = match args.split_once(',') {
        Some((p, s)) => (p.trim().parse::<i64>().ok()?, s.trim().parse::<i64>().ok()?),
        None => (args.trim().parse::<i64>().ok()?, 0),
    };
    // PostgreSQL 15+ allows a negative scale and a scale above the precision; Redshift does not.
    if !(1..=38).contains(&p) || !(0..=p).contains(&s) {
        return None;
    }
    // The CSV stage saturates values with more than NUMERIC_INT_DIGITS integer digits (the
    // NUMERIC(38,10) fallback's range); a wider integer part would saturate values that are
    // legal in the source, so such columns keep the fallback (and its documented saturation).
    if usize::try_from(p - s).ok()? > NUMERIC_INT_DIGITS {
        return None;
    }
    Some((u32::try_from(p).ok()?, u32::try_from(s).ok()?))
}

/// Splits `name(args) rest` into (`name rest`, `args`): the first parenthesised group outside
/// double quotes (a quoted type name may hold parentheses). `None` when there is none.
fn split_typmod(ty: &str) -> Option<(String, String)> {
    let mut quoted = false;
    let mut open = None;
    for (i, b) in ty.bytes().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b'(' if !quoted => {
                open = Some(i);
                break;
            }
            _ => {}
        }
    }
    let open = open?;
    let Some(close) = ty[open..].find(')').map(|i| open + i) else {
        // Unbalanced: keep the name, with no usable typmod.
        return Some((ty[..open].trim().to_string(), String::new()));
    };
    let base = format!("{}{}", ty[..open].trim_end(), &ty[close + 1..]);
    Some((base.trim().to_string(), ty[open + 1..close].to_string()))
}

/// `n` of a Redshift `VARCHAR(n)` / `CHARACTER VARYING(n)` type; `None` for anything else.
pub fn varchar_width(redshift_type: &str) -> Option<u32> {
    let t = redshift_type.trim().to_ascii_uppercase();
    let rest = t
        .strip_prefix("VARCHAR")
        .or_else(|| t.strip_prefix("CHARACTER VARYING"))?;
    rest.trim()
        .strip_prefix('(')?
        .strip_suffix(')')?
        .trim()
        .parse()
        .ok()
}

/// What writing a value changed to make it fit Redshift (a set: a value may be both repaired
/// and cut). The CSV stage counts them per table and column and logs them per segment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Adjusted(u8);

/// One kind of change a value may undergo, with its metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Adjustment {
    /// Cut to the column's byte length on a UTF-8 boundary.
    Truncated,
    /// Beyond NUMERIC's range: written as the largest value of the type.
    Saturated,
    /// Not representable (numeric NaN, an infinite date): written as NULL.
    Nulled,
    /// Bytes that are not UTF-8 (e.g. from a LATIN1 source): each replaced by U+FFFD.
    InvalidUtf8,
}

impl Adjustment {
    pub const ALL: [Adjustment; 4] = [
        Adjustment::Truncated,
        Adjustment::Saturated,
        Adjustment::Nulled,
        Adjustment::InvalidUtf8,
    ];

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    pub fn counter(self) -> &'static metrics::Counter {
        match self {
            Adjustment::Truncated => &metrics::VALUES_TRUNCATED,
            Adjustment::Saturated => &metrics::VALUES_SATURATED,
            Adjustment::Nulled => &metrics::VALUES_NULLED,
            Adjustment::InvalidUtf8 => &metrics::VALUES_UTF8_REPLACED,
        }
    }

    /// How a log line says it.
    pub fn verb(self) -> &'static str {
        match self {
            Adjustment::Truncated => "truncated to the column's byte length",
            Adjustment::Saturated => "saturated to NUMERIC's largest value",
            Adjustment::Nulled => "written as NULL (not representable)",
            Adjustment::InvalidUtf8 => "had invalid UTF-8 replaced by U+FFFD",
        }
    }
}

impl Adjusted {
    pub const NONE: Adjusted = Adjusted(0);

    fn with(self, a: Adjustment) -> Self {
        Adjusted(self.0 | a.bit())
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The adjustments in this set.
    pub fn iter(self) -> impl Iterator<Item = Adjustment> {
        Adjustment::ALL
            .into_iter()
            .filter(move |a| self.0 & a.bit() != 0)
    }
}

/// Appends one field (no separator) to `out`; says what had to change to fit Redshift.
pub fn write_field(out: &mut Vec<u8>, kind: ValueKind, value: &Value<'_>) -> Adjusted {
    write_field_utf8(out, kind, value, false)
}

/// [`write_field`] of a value whose bytes are known valid UTF-8 when `utf8` (checked once at
/// ingest: see `wal::change`), so they are not checked again.
pub fn write_field_utf8(
    out: &mut Vec<u8>,
    kind: ValueKind,
    value: &Value<'_>,
    utf8: bool,
) -> Adjusted {
    let raw = match *value {
        Value::Null | Value::UnchangedToast => {
            out.extend_from_slice(b"\\N");
            return Adjusted::NONE;
        }
        Value::Unquoted(b) | Value::Bits(b) | Value::Quoted(b) => b,
    };
    match kind {
        ValueKind::Integer | ValueKind::Float => {
            out.extend_from_slice(raw);
            Adjusted::NONE
        }
        ValueKind::Numeric => write_numeric(out, raw),
        ValueKind::Boolean => {
            out.push(if raw == b"true" || raw == b"t" {
                b't'
            } else {
                b'f'
            });
            Adjusted::NONE
        }
        ValueKind::Bytea => {
            let hex = raw.strip_prefix(b"\\x").unwrap_or(raw);
            if hex.len() / 2 > VARBYTE_MAX_BYTES {
                out.extend_from_slice(b"\\N");
                return Adjusted::NONE.with(Adjustment::Nulled);
            }
            out.push(b'"');
            out.extend_from_slice(hex);
            out.push(b'"');
            Adjusted::NONE
        }
        ValueKind::Temporal => {
            if raw.ends_with(b"infinity") {
                out.extend_from_slice(b"\\N");
                Adjusted::NONE.with(Adjustment::Nulled)
            } else {
                write_quoted(out, raw, usize::MAX, utf8)
            }
        }
        ValueKind::Text { max_bytes } => match value {
            // Unescaping only shortens the text: when the raw form fits, so does the text, and
            // it is written in one pass.
            Value::Quoted(_)
                if raw.len() <= max_bytes && (utf8 || std::str::from_utf8(raw).is_ok()) =>
            {
                write_unescaped(out, raw);
                Adjusted::NONE
            }
            Value::Quoted(_) => write_quoted(out, &unescape_quoted(raw), max_bytes, false),
            _ => write_quoted(out, raw, max_bytes, utf8),
        },
    }
}

/// `"..."` of a quoted test_decoding value (valid UTF-8) in one pass: `''` -> `'`, `"` ->
/// `""`.
fn write_unescaped(out: &mut Vec<u8>, raw: &[u8]) {
    out.reserve(raw.len() + 2);
    out.push(b'"');
    let mut rest = raw;
    while let Some(i) = memchr::memchr2(b'\'', b'"', rest) {
        out.extend_from_slice(&rest[..=i]);
        let skip = if rest[i] == b'"' {
            out.push(b'"');
            1
        } else if rest.get(i + 1) == Some(&b'\'') {
            2
        } else {
            1
        };
        rest = &rest[i + skip..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

/// `"..."` with `"` doubled, invalid UTF-8 replaced (U+FFFD; not checked when `utf8`), cut to
/// `max_bytes` on a UTF-8 boundary.
fn write_quoted(out: &mut Vec<u8>, text: &[u8], max_bytes: usize, utf8: bool) -> Adjusted {
    let mut adjusted = Adjusted::NONE;
    let repaired;
    let mut text = text;
    if !utf8 && std::str::from_utf8(text).is_err() {
        adjusted = adjusted.with(Adjustment::InvalidUtf8);
        repaired = String::from_utf8_lossy(text).into_owned();
        text = repaired.as_bytes();
    }
    if text.len() > max_bytes {
        adjusted = adjusted.with(Adjustment::Truncated);
        text = &text[..utf8_boundary(text, max_bytes)];
    }
    out.push(b'"');
    let mut rest = text;
    while let Some(i) = memchr::memchr(b'"', rest) {
        out.extend_from_slice(&rest[..=i]);
        out.push(b'"');
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
    adjusted
}

/// The largest length `<= max` that does not split a UTF-8 sequence.
pub fn utf8_boundary(text: &[u8], max: usize) -> usize {
    let mut end = max.min(text.len());
    // Step back over continuation bytes (10xxxxxx) to the start of the cut character.
    while end > 0 && end < text.len() && (text[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    end
}

fn write_numeric(out: &mut Vec<u8>, raw: &[u8]) -> Adjusted {
    if raw == b"NaN" {
        out.extend_from_slice(b"\\N");
        return Adjusted::NONE.with(Adjustment::Nulled);
    }
    let (neg, digits) = match raw.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, raw),
    };
    let int_len = digits
        .iter()
        .position(|&b| b == b'.')
        .unwrap_or(digits.len());
    let int_part = &digits[..int_len];
    let significant = int_part.iter().skip_while(|&&b| b == b'0').count();
    let infinite = digits == b"Infinity";
    if significant > NUMERIC_INT_DIGITS
        || infinite
        || digits.contains(&b'e')
        || digits.contains(&b'E')
    {
        let _ = write!(
            out,
            "{}{}.{}",
            if neg { "-" } else { "" },
            "9".repeat(NUMERIC_INT_DIGITS),
            "9".repeat(NUMERIC_SCALE)
        );
        return Adjusted::NONE.with(Adjustment::Saturated);
    }
    out.extend_from_slice(raw);
    Adjusted::NONE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(kind: ValueKind, v: Value<'_>) -> String {
        let mut out = Vec::new();
        let _ = write_field(&mut out, kind, &v);
        String::from_utf8(out).unwrap()
    }

    fn adjusted(kind: ValueKind, v: Value<'_>) -> Vec<Adjustment> {
        write_field(&mut Vec::new(), kind, &v).iter().collect()
    }

    #[test]
    fn changes_are_reported() {
        let text = ValueKind::Text { max_bytes: 4 };
        assert!(adjusted(text, Value::Quoted(b"abcd")).is_empty());
        assert_eq!(
            adjusted(text, Value::Quoted(b"abcde")),
            [Adjustment::Truncated]
        );
        assert_eq!(
            adjusted(text, Value::Quoted(b"caf\xe9 au lait")),
            [Adjustment::Truncated, Adjustment::InvalidUtf8]
        );
        assert_eq!(
            adjusted(ValueKind::Numeric, Value::Unquoted(b"NaN")),
            [Adjustment::Nulled]
        );
        assert_eq!(
            adjusted(ValueKind::Numeric, Value::Unquoted(&[b'9'; 40])),
            [Adjustment::Saturated]
        );
        assert_eq!(
            adjusted(ValueKind::Temporal, Value::Quoted(b"-infinity")),
            [Adjustment::Nulled]
        );
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let text = ValueKind::Text {
            max_bytes: VARCHAR_MAX_BYTES,
        };
        assert_eq!(field(text, Value::Quoted(b"caf\xe9")), "\"caf\u{fffd}\"");
    }

    #[test]
    fn nulls_and_empty_strings_differ() {
        let text = ValueKind::Text {
            max_bytes: VARCHAR_MAX_BYTES,
        };
        assert_eq!(field(text, Value::Null), "\\N");
        assert_eq!(field(text, Value::Quoted(b"")), "\"\"");
        assert_eq!(field(text, Value::Quoted(b"\\N")), "\"\\N\"");
    }

    #[test]
    fn strings_are_quoted_and_unescaped() {
        let text = ValueKind::Text {
            max_bytes: VARCHAR_MAX_BYTES,
        };
        assert_eq!(
            field(text, Value::Quoted(b"a ''b'' \"c\",\nd\\")),
            "\"a 'b' \"\"c\"\",\nd\\\""
        );
    }

    #[test]
    fn text_truncates_on_utf8_boundary() {
        let text = ValueKind::Text { max_bytes: 4 };
        assert_eq!(field(text, Value::Quoted("abcé".as_bytes())), "\"abc\"");
        assert_eq!(field(text, Value::Quoted("abé".as_bytes())), "\"abé\"");
    }

    #[test]
    fn numeric_nan_saturation_and_passthrough() {
        assert_eq!(field(ValueKind::Numeric, Value::Unquoted(b"NaN")), "\\N");
        assert_eq!(
            field(ValueKind::Numeric, Value::Unquoted(b"12.500")),
            "12.500"
        );
        let big = format!("-{}.5", "1".repeat(30));
        assert_eq!(
            field(ValueKind::Numeric, Value::Unquoted(big.as_bytes())),
            format!("-{}.{}", "9".repeat(28), "9".repeat(10))
        );
        let fits = format!("{}.5", "9".repeat(23));
        assert_eq!(
            field(ValueKind::Numeric, Value::Unquoted(fits.as_bytes())),
            fits
        );
    }

    #[test]
    fn other_kinds() {
        assert_eq!(field(ValueKind::Boolean, Value::Unquoted(b"true")), "t");
        assert_eq!(field(ValueKind::Boolean, Value::Unquoted(b"false")), "f");
        assert_eq!(
            field(ValueKind::Bytea, Value::Quoted(b"\\x0102")),
            "\"0102\""
        );
        assert_eq!(field(ValueKind::Bytea, Value::Quoted(b"\\x")), "\"\"");
        // Up to VARBYTE_MAX_BYTES as hex; one byte more is NULL, and says so.
        let fits = format!("\\x{}", "ab".repeat(VARBYTE_MAX_BYTES));
        let mut out = Vec::new();
        let adjusted = write_field(&mut out, ValueKind::Bytea, &Value::Quoted(fits.as_bytes()));
        assert!(adjusted.is_empty());
        assert_eq!(out.len(), 2 * VARBYTE_MAX_BYTES + 2);
        let over = format!("\\x{}", "ab".repeat(VARBYTE_MAX_BYTES + 1));
        let mut out = Vec::new();
        let adjusted = write_field(&mut out, ValueKind::Bytea, &Value::Quoted(over.as_bytes()));
        assert_eq!(out, b"\\N");
        assert_eq!(adjusted.iter().collect::<Vec<_>>(), [Adjustment::Nulled]);
        assert_eq!(
            field(ValueKind::Float, Value::Unquoted(b"-Infinity")),
            "-Infinity"
        );
        assert_eq!(
            field(ValueKind::Temporal, Value::Quoted(b"infinity")),
            "\\N"
        );
        assert_eq!(
            value_kind("character varying"),
            ValueKind::Text {
                max_bytes: VARCHAR_MAX_BYTES
            }
        );
        assert_eq!(redshift_type("boolean"), "BOOLEAN");
        assert_eq!(redshift_type("public.colour"), "VARCHAR(65535)");
    }

    #[test]
    fn typmods_from_the_catalog() {
        let t = redshift_type_with_typmod;
        assert_eq!(t("character varying(20)"), "VARCHAR(80)");
        assert_eq!(t("character(3)"), "VARCHAR(12)");
        assert_eq!(t("character varying(16383)"), "VARCHAR(65532)");
        assert_eq!(t("character varying(16384)"), "VARCHAR(65535)");
        assert_eq!(t("character varying(10485760)"), "VARCHAR(65535)");
        assert_eq!(t("character varying"), "VARCHAR(65535)");
        assert_eq!(t("bpchar"), "VARCHAR(65535)");
        assert_eq!(t("numeric(12,4)"), "NUMERIC(12,4)");
        assert_eq!(t("numeric(38,10)"), "NUMERIC(38,10)");
        assert_eq!(t("numeric(30,12)"), "NUMERIC(30,12)");
        assert_eq!(t("numeric(28,0)"), "NUMERIC(28,0)");
        // More than 28 integer digits: the CSV stage's saturation range, so the fallback type.
        assert_eq!(t("numeric(38,0)"), "NUMERIC(38,10)");
        assert_eq!(t("numeric(29,0)"), "NUMERIC(38,10)");
        assert_eq!(t("numeric(5)"), "NUMERIC(5,0)");
        assert_eq!(t("numeric"), "NUMERIC(38,10)");
        assert_eq!(t("numeric(39,2)"), "NUMERIC(38,10)");
        assert_eq!(t("numeric(3,5)"), "NUMERIC(38,10)");
        assert_eq!(t("numeric(5,-2)"), "NUMERIC(38,10)");
        // Arrays stay text, whatever their element's typmod.
        assert_eq!(t("character varying(20)[]"), "VARCHAR(65535)");
        assert_eq!(t("numeric(12,4)[]"), "VARCHAR(65535)");
        // Other typmods are dropped before the typmod-less mapping.
        assert_eq!(t("timestamp(3) without time zone"), "TIMESTAMP");
        assert_eq!(t("timestamp(0) with time zone"), "TIMESTAMPTZ");
        assert_eq!(t("time(6) with time zone"), "TIMETZ");
        assert_eq!(t("bit(5)"), "VARCHAR(65535)");
        assert_eq!(t("integer"), "INTEGER");
        assert_eq!(t(" boolean "), "BOOLEAN");
        // Bad input never panics; a quoted user type may hold parentheses.
        assert_eq!(t("public.\"we(ird\""), "VARCHAR(65535)");
        assert_eq!(t("character varying(x)"), "VARCHAR(65535)");
        assert_eq!(t("character varying(0)"), "VARCHAR(65535)");
        assert_eq!(t("numeric(12,"), "NUMERIC(38,10)");
        assert_eq!(t("character varying(20"), "VARCHAR(65535)");
        assert_eq!(t(""), "VARCHAR(65535)");
        assert_eq!(t("("), "VARCHAR(65535)");
        assert_eq!(t(")("), "VARCHAR(65535)");
    }

    #[test]
    fn typmodless_names() {
        assert_eq!(
            typmodless_name("character varying(20)[]"),
            "character varying[]"
        );
        assert_eq!(typmodless_name("numeric(12,4)"), "numeric");
        assert_eq!(typmodless_name("character(3)"), "character");
        assert_eq!(typmodless_name("bpchar"), "character");
        assert_eq!(
            typmodless_name("timestamp(3) with time zone"),
            "timestamp with time zone"
        );
        assert_eq!(typmodless_name("integer"), "integer");
        assert_eq!(typmodless_name("public.\"we(ird\""), "public.\"we(ird\"");
    }

    #[test]
    fn varchar_widths() {
        assert_eq!(varchar_width("VARCHAR(256)"), Some(256));
        assert_eq!(varchar_width("character varying ( 12 )"), Some(12));
        assert_eq!(varchar_width("VARCHAR"), None);
        assert_eq!(varchar_width("BIGINT"), None);
    }

    /// The one-pass writer of quoted text (`write_unescaped`) and the general path (unescape,
    /// check, cut, quote) write the same field for every text, and a value known valid UTF-8 is
    /// written as when it is checked.
    #[test]
    fn quoted_text_is_written_the_same_by_both_paths() {
        use proptest::prelude::*;
        let text = |max_bytes| ValueKind::Text { max_bytes };
        proptest!(|(s in "(['\"a\u{e9}\n,]|[\\x00-\\x7f]|\\PC){0,40}")| {
            let escaped = s.replace('\'', "''");
            let expected = format!("\"{}\"", s.replace('"', "\"\""));
            let v = Value::Quoted(escaped.as_bytes());
            prop_assert_eq!(field(text(VARCHAR_MAX_BYTES), v), expected.clone());
            let mut known = Vec::new();
            let _ = write_field_utf8(&mut known, text(VARCHAR_MAX_BYTES), &v, true);
            prop_assert_eq!(String::from_utf8(known).unwrap(), expected);
            // Cut: the general path, on the unescaped text.
            let cut = &s.as_bytes()[..utf8_boundary(s.as_bytes(), 5)];
            let cut = String::from_utf8(cut.to_vec()).unwrap();
            prop_assert_eq!(
                field(text(5), v),
                format!("\"{}\"", cut.replace('"', "\"\""))
            );
        });
    }
}
