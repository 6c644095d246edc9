//! test_decoding text: the messages a `test_decoding` slot emits, parsed without copying.
//!
//! Owns the grammar of PostgreSQL's `contrib/test_decoding` output (see `parser.rs` for the
//! grammar itself, `stream.rs` for framing messages out of a byte stream such as what
//! `pg_recvlogical -f -` prints, and `row_scan.rs` for reading a row change's bytes without a
//! tree). Everything here borrows from the input buffer: values stay as the raw bytes
//! test_decoding printed (a quoted string keeps its doubled `''`), and are unescaped only when
//! written out.
//!
//! Invariants:
//! - a parsed message is exactly one test_decoding message; its raw bytes (without the trailing
//!   newline) parse to the same message again, which is what the local WAL stores;
//! - bad input is an error naming the line and what was expected, never a panic.

mod chunk;
mod cursor;
mod framing;
mod parser;
pub(crate) mod row_scan;
mod stream;

pub use chunk::{Body, ChunkFrame, Digest, FramedChunk, Framer, RowDigest, Side};
pub use parser::{parse_message, parse_message_utf8};
pub use stream::{Frame, MessageStream};

use std::borrow::Cow;
use std::fmt;

/// One decoded test_decoding message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// `BEGIN`, `BEGIN 784`; the `(at ...)` timestamp, when present, is not kept.
    Begin { xid: Option<u32> },
    /// `COMMIT`, `COMMIT 784`, `COMMIT 784 (at 2026-11-23 07:45:04.157387+00)`.
    Commit { xid: Option<u32> },
    /// `table s.t: INSERT: cols...` (`new` is `None` for `(no-tuple-data)`).
    Insert {
        table: TableName<'a>,
        new: Option<Tuple<'a>>,
    },
    /// `table s.t: UPDATE: [old-key: cols... new-tuple:] cols...`.
    Update {
        table: TableName<'a>,
        old_key: Option<Tuple<'a>>,
        new: Option<Tuple<'a>>,
    },
    /// `table s.t: DELETE: keycols...` (`old` is `None` for `(no-tuple-data)`).
    Delete {
        table: TableName<'a>,
        old: Option<Tuple<'a>>,
    },
    /// `table a.b, c.d: TRUNCATE: (no-flags)` or ` restart_seqs` / ` cascade`.
    Truncate {
        tables: Vec<TableName<'a>>,
        restart_seqs: bool,
        cascade: bool,
    },
    /// `message: transactional: 1 prefix: P, sz: N content:<N raw bytes>`.
    Logical {
        transactional: bool,
        prefix: Cow<'a, str>,
        content: &'a [u8],
    },
}

impl Message<'_> {
    /// The table a row change belongs to (`None` for BEGIN/COMMIT/TRUNCATE/messages).
    pub fn table(&self) -> Option<&TableName<'_>> {
        match self {
            Message::Insert { table, .. }
            | Message::Update { table, .. }
            | Message::Delete { table, .. } => Some(table),
            _ => None,
        }
    }
}

/// A schema-qualified table name, identifiers already unquoted (`sales."Order Items"` is
/// schema `sales`, name `Order Items`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName<'a> {
    pub schema: Cow<'a, str>,
    pub name: Cow<'a, str>,
}

impl TableName<'_> {
    pub fn into_owned(self) -> TableName<'static> {
        TableName {
            schema: Cow::Owned(self.schema.into_owned()),
            name: Cow::Owned(self.name.into_owned()),
        }
    }
}

impl fmt::Display for TableName<'_> {
    /// `schema.table`, unquoted: the form used in logs, config keys and file names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// The columns of one tuple, in the order test_decoding printed them (attribute order).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tuple<'a> {
    pub columns: Vec<Column<'a>>,
}

impl<'a> Tuple<'a> {
    pub fn get(&self, name: &str) -> Option<&Column<'a>> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The values, in column order.
    pub fn values(&self) -> impl Iterator<Item = Value<'a>> + '_ {
        self.columns.iter().map(|c| c.value)
    }
}

/// `name[type]:value`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column<'a> {
    /// Unquoted column name (`"Quantity"` is `Quantity`; `"a""b"` is `a"b`).
    pub name: Cow<'a, str>,
    /// The type as printed, without typmod: `character varying`, `integer[]`, `public.colour`,
    /// `timestamp with time zone`. Quoted parts stay as printed (`public."My Type"`).
    pub type_name: &'a str,
    pub value: Value<'a>,
}

/// A column value exactly as test_decoding printed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// `null`
    Null,
    /// `unchanged-toast-datum`: a TOASTed value the UPDATE did not change; the real value is not
    /// in the stream.
    UnchangedToast,
    /// An unquoted literal: integers, numerics, floats incl. `NaN` / `Infinity` / `-Infinity`,
    /// `true` / `false`.
    Unquoted(&'a [u8]),
    /// The inside of `'...'`, still with `''` for each quote; may hold raw LF, CR, TAB,
    /// backslashes and any non-ASCII bytes.
    Quoted(&'a [u8]),
    /// The inside of `B'...'` (bit and bit varying).
    Bits(&'a [u8]),
}

impl<'a> Value<'a> {
    /// The value's text with quoting undone (`''` -> `'`); `None` for NULL and unchanged TOAST.
    pub fn text(&self) -> Option<Cow<'a, [u8]>> {
        match *self {
            Value::Null | Value::UnchangedToast => None,
            Value::Unquoted(b) | Value::Bits(b) => Some(Cow::Borrowed(b)),
            Value::Quoted(b) => Some(unescape_quoted(b)),
        }
    }
}

/// Undo test_decoding's quote doubling.
pub fn unescape_quoted(raw: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memchr(b'\'', raw).is_none() {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        out.push(raw[i]);
        if raw[i] == b'\'' && raw.get(i + 1) == Some(&b'\'') {
            i += 1;
        }
        i += 1;
    }
    Cow::Owned(out)
}

/// Why a message could not be parsed. `line` is the 1-based physical line where the message
/// starts; `column` the byte offset within the message where parsing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {expected} at byte {column}: {snippet}")]
pub struct ParseError {
    pub line: u64,
    pub column: usize,
    /// What the parser expected, e.g. "expected `]:` after the type name".
    pub expected: String,
    /// Up to ~80 bytes of the input around the error, lossily decoded.
    pub snippet: String,
}

/// Errors of a message stream: the input could not be read, or a message did not parse.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("reading input: {0}")]
    Io(#[source] std::io::Error),
    #[error(transparent)]
    Parse(#[from] ParseError),
}
