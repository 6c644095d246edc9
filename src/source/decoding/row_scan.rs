//! A row change read from its bytes without a parse tree: the pieces of the grammar
//! (`parser.rs`) that a [`super::Digest`] walks to turn an INSERT or UPDATE into what ingest
//! needs instead of parsing it (on `--stdin`'s input thread, or in ingest for a slot's
//! messages).
//!
//! Invariant: each piece takes the parser's own steps at the same place (its functions for a
//! table name and a column header, [`Cursor`]'s for a value; for the head, the same bounds
//! ([`ident_end`]), its names checked by [`table_name`]), so whatever a walk accepts the parser
//! accepts too, with the same values at the same offsets. A piece that meets anything else
//! gives `None`: the message is then parsed the usual way, which also reports the error if
//! there is one.

use super::cursor::{ident_end, Cursor};
use super::parser::{column_head, qualified_name};
use super::{TableName, Value};

/// The start of `table <schema>.<name>: INSERT:` or `...: UPDATE:` with tuple data and no old
/// key: where the new tuple starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowHead<'a> {
    pub update: bool,
    /// The qualified name as printed (identifiers still quoted, not checked as UTF-8):
    /// [`table_name`] reads it.
    pub name: &'a [u8],
    /// Where the tuple's first column (` name[type]:value`) starts, or the message's end.
    pub tuple: usize,
}

const TABLE: &[u8] = b"table ";
const INSERT: &[u8] = b": INSERT:";
const UPDATE: &[u8] = b": UPDATE:";

/// The head of `raw` when it is an INSERT or UPDATE that a walk can take; `None` for anything
/// else (other kinds, `(no-tuple-data)`, an old key, a name that does not end where it should).
#[inline]
pub fn row_head(raw: &[u8]) -> Option<RowHead<'_>> {
    if !raw.starts_with(TABLE) {
        return None;
    }
    let start = TABLE.len();
    let dot = ident_end(raw, start).end()?;
    if raw.get(dot) != Some(&b'.') {
        return None;
    }
    let end = ident_end(raw, dot + 1).end()?;
    let after = raw.get(end..)?;
    let update = if after.starts_with(INSERT) {
        false
    } else if after.starts_with(UPDATE) {
        true
    } else {
        return None;
    };
    let tuple = end + INSERT.len();
    let rest = raw.get(tuple..)?;
    if rest == b" (no-tuple-data)" || (update && rest.starts_with(b" old-key:")) {
        return None;
    }
    Some(RowHead {
        update,
        name: raw.get(start..end)?,
        tuple,
    })
}

/// The table a [`RowHead::name`] names, identifiers unquoted and checked as the parser does;
/// `None` where the parser would refuse them (text that is not UTF-8).
pub fn table_name(name: &[u8]) -> Option<TableName<'_>> {
    let mut c = Cursor::at(name, 0);
    let table = qualified_name(&mut c).ok()?;
    c.at_end().then_some(table)
}

/// The column header (` name[type]:`) at byte `at` of `raw`: where its value starts.
pub fn column_header(raw: &[u8], at: usize) -> Option<usize> {
    let mut c = Cursor::at(raw, at);
    if !c.eat(b" ") {
        return None;
    }
    column_head(&mut c).ok()?;
    Some(c.pos())
}

/// The column value at byte `at` of `raw`, and where it ends.
#[inline]
pub fn column_value(raw: &[u8], at: usize) -> Option<(Value<'_>, usize)> {
    let mut c = Cursor::at(raw, at);
    let value = c.value("").ok()?;
    Some((value, c.pos()))
}

/// Whether the parser finds `raw`, a whole message, valid UTF-8 (the flag a [`super::Frame`]
/// carries).
#[inline]
pub fn is_utf8(raw: &[u8]) -> bool {
    super::cursor::whole_text(raw).is_some()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn heads_of_the_rows_a_walk_takes() {
        let head = row_head(b"table public.t: INSERT: id[integer]:1").unwrap();
        assert_eq!(
            head,
            RowHead {
                update: false,
                name: b"public.t",
                tuple: 23
            }
        );
        let raw = br#"table "a.b"."c "": d": UPDATE: x[int]:1"#;
        let head = row_head(raw).unwrap();
        assert!(head.update);
        assert_eq!(head.name, br#""a.b"."c "": d""#);
        assert_eq!(&raw[head.tuple..], b" x[int]:1");
        let name = table_name(head.name).unwrap();
        assert_eq!((&*name.schema, &*name.name), ("a.b", "c \": d"));
        assert_eq!(row_head(b"table s.t: INSERT:").unwrap().tuple, 18);
        for other in [
            &b"table s.t: DELETE: id[integer]:1"[..],
            b"table s.t: INSERT: (no-tuple-data)",
            b"table s.t: UPDATE: old-key: id[integer]:1 new-tuple: id[integer]:2",
            b"table s.t, s.u: TRUNCATE: (no-flags)",
            b"table s: INSERT: id[integer]:1",
            b"table \"s.t: INSERT: id[integer]:1",
            b"BEGIN 1",
        ] {
            assert_eq!(row_head(other), None, "{}", String::from_utf8_lossy(other));
        }
        assert!(table_name(b"s.\xff").is_none());
    }

    #[test]
    fn headers_and_values_end_where_the_parser_ends_them() {
        let raw = br#" "a b"[character varying(3)]:'it''s' n[numeric]:-1.5e+10"#;
        let v = column_header(raw, 0).unwrap();
        assert_eq!(&raw[..v], br#" "a b"[character varying(3)]:"#);
        let (value, next) = column_value(raw, v).unwrap();
        assert_eq!(value, Value::Quoted(b"it''s"));
        let v = column_header(raw, next).unwrap();
        assert_eq!(
            column_value(raw, v).unwrap(),
            (Value::Unquoted(b"-1.5e+10"), raw.len())
        );
        assert_eq!(column_header(b" x[int]", 0), None);
        assert_eq!(column_header(b"x[int]:1", 0), None);
        assert_eq!(column_value(b"'abc", 0), None);
    }
}
