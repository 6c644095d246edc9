//! The test_decoding grammar: one message from its raw bytes.
//!
//! ```text
//! message  = "BEGIN" [" " xid] [" (at " timestamp ")"]
//!          | "COMMIT" [" " xid] [" (at " timestamp ")"]
//!          | "table " qname ": INSERT:" (" (no-tuple-data)" | tuple)
//!          | "table " qname ": UPDATE:" [" old-key:" tuple " new-tuple:"] (" (no-tuple-data)" | tuple)
//!          | "table " qname ": DELETE:" (" (no-tuple-data)" | tuple)
//!          | "table " qname {", " qname} ": TRUNCATE:" (" (no-flags)" | [" restart_seqs"] [" cascade"])
//!          | "message: transactional: " ("0" | "1") " prefix: " prefix ", sz: " N " content:" N*byte
//! qname    = ident "." ident
//! tuple    = {" " ident "[" type "]:" value}
//! value    = "null" | "unchanged-toast-datum" | unquoted | "B'" bits "'" | "'" {byte | "''"} "'"
//! ```
//! Identifiers are bare (`[a-z0-9_$]` and, leniently, upper case and non-ASCII) or `"..."` with
//! `""` doubled. See `cursor.rs` for the tokens.
use std::borrow::Cow;

use super::cursor::{find_sz_header, Cursor, PResult, SzHeader};
use super::{Column, Message, ParseError, TableName, Tuple};

/// The message-kind error, shared with the framer.
const UNKNOWN_KIND: &str = "unknown message kind; expected BEGIN, COMMIT, table or message";

/// Parses one complete test_decoding message: `raw` holds the message without its trailing
/// newline. `line` is the 1-based physical line the message starts on, used only in errors.
///
/// Values and identifiers borrow from `raw`; see [`Message`]. Never panics: malformed input is
/// a [`ParseError`] saying where and what was expected.
pub fn parse_message(raw: &[u8], line: u64) -> Result<Message<'_>, ParseError> {
    parse_message_utf8(raw, line).map(|(message, _)| message)
}

/// [`parse_message`], also saying whether the parser found the whole message valid UTF-8
/// (`false`: not valid, or too long to check in one go; its values are then checked when
/// written). So the UTF-8 check of a message's bytes is done once.
pub fn parse_message_utf8(raw: &[u8], line: u64) -> Result<(Message<'_>, bool), ParseError> {
    let mut c = Cursor::new(raw, line);
    let message = message(&mut c, raw).map_err(|e| *e)?;
    Ok((message, c.is_utf8()))
}

fn message<'a>(c: &mut Cursor<'a>, raw: &'a [u8]) -> PResult<Message<'a>> {
    let c = &mut *c;
    match raw.first() {
        Some(b't') if c.eat(b"table ") => table_message(c),
        Some(b'B') if c.eat(b"BEGIN") => Ok(Message::Begin {
            xid: xact_tail(c, "BEGIN")?,
        }),
        Some(b'C') if c.eat(b"COMMIT") => Ok(Message::Commit {
            xid: xact_tail(c, "COMMIT")?,
        }),
        Some(b'm') if c.eat(b"message: ") => logical_message(c),
        _ => Err(c.error_at(0, UNKNOWN_KIND)),
    }
}

/// What follows `BEGIN` / `COMMIT`: an optional ` <xid>` and an optional ` (at <timestamp>)`.
fn xact_tail(c: &mut Cursor<'_>, kind: &str) -> PResult<Option<u32>> {
    if c.at_end() {
        return Ok(None);
    }
    let expected =
        || format!("expected end of message, ` <xid>` or ` (at <timestamp>)` after {kind}");
    if !c.eat(b" ") {
        return Err(c.error(expected()));
    }
    let mut xid = None;
    if c.peek().is_some_and(|b| b.is_ascii_digit()) {
        xid = Some(c.u32("transaction id")?);
        if c.at_end() {
            return Ok(xid);
        }
        if !c.eat(b" ") {
            return Err(c.error(expected()));
        }
    }
    if !c.eat(b"(at ") {
        return Err(c.error(expected()));
    }
    // The timestamp: plain text up to the closing `)` at the very end. It never holds quotes or
    // newlines (the framer relies on every quote being balanced).
    let rest = c.rest();
    let Some(stamp) = rest.strip_suffix(b")") else {
        return Err(c.error("expected `)` at the end of the commit timestamp"));
    };
    if stamp.is_empty()
        || stamp
            .iter()
            .any(|b| matches!(b, b'\'' | b'"' | b'\n' | b')'))
    {
        return Err(c.error("expected a timestamp inside `(at ...)`"));
    }
    c.skip_to_end();
    Ok(xid)
}

/// `schema.table`, both identifiers unquoted.
pub(super) fn qualified_name<'a>(c: &mut Cursor<'a>) -> PResult<TableName<'a>> {
    let schema = c.ident("schema name")?;
    if !c.eat(b".") {
        return Err(c.error(format!("expected `.` after schema name `{schema}`")));
    }
    let name = c.ident("table name")?;
    Ok(TableName { schema, name })
}

/// Everything after `table `.
fn table_message<'a>(c: &mut Cursor<'a>) -> PResult<Message<'a>> {
    let table = qualified_name(c)?;
    if c.peek() == Some(b',') {
        // Only TRUNCATE lists several tables.
        let mut tables = vec![table];
        while c.eat(b", ") {
            tables.push(qualified_name(c)?);
        }
        if !c.eat(b": TRUNCATE:") {
            return Err(c.error("expected `, ` and another table or `: TRUNCATE:`"));
        }
        return truncate_flags(c, tables);
    }
    if !c.eat(b":") {
        return Err(c.error(format!("expected `:` after table name `{table}`")));
    }
    if c.eat(b" INSERT:") {
        let new = tuple_or_none(c)?;
        Ok(Message::Insert { table, new })
    } else if c.eat(b" UPDATE:") {
        let old_key = if c.eat(b" old-key:") {
            Some(tuple(c, true)?)
        } else {
            None
        };
        let new = tuple_or_none(c)?;
        Ok(Message::Update {
            table,
            old_key,
            new,
        })
    } else if c.eat(b" DELETE:") {
        let old = tuple_or_none(c)?;
        Ok(Message::Delete { table, old })
    } else if c.eat(b" TRUNCATE:") {
        truncate_flags(c, vec![table])
    } else {
        Err(c.error(format!(
            "expected ` INSERT:`, ` UPDATE:`, ` DELETE:` or ` TRUNCATE:` after table name `{table}`"
        )))
    }
}

/// ` (no-flags)` or ` restart_seqs` and/or ` cascade`, then the end.
fn truncate_flags<'a>(c: &mut Cursor<'a>, tables: Vec<TableName<'a>>) -> PResult<Message<'a>> {
    let (restart_seqs, cascade) = if c.eat(b" (no-flags)") {
        (false, false)
    } else {
        let restart_seqs = c.eat(b" restart_seqs");
        let cascade = c.eat(b" cascade");
        if !restart_seqs && !cascade {
            return Err(
                c.error("expected ` (no-flags)`, ` restart_seqs` or ` cascade` after `TRUNCATE:`")
            );
        }
        (restart_seqs, cascade)
    };
    c.expect_end("the TRUNCATE flags")?;
    Ok(Message::Truncate {
        tables,
        restart_seqs,
        cascade,
    })
}

/// ` (no-tuple-data)` (`None`) or a tuple running to the end of the message.
fn tuple_or_none<'a>(c: &mut Cursor<'a>) -> PResult<Option<Tuple<'a>>> {
    if c.rest() == b" (no-tuple-data)" {
        c.skip_to_end();
        return Ok(None);
    }
    tuple(c, false).map(Some)
}

/// Columns, each ` name[type]:value`. An old key ends at an unquoted ` new-tuple:` (a column
/// really named `new-tuple` would be printed quoted); any other tuple at the end of the message.
fn tuple<'a>(c: &mut Cursor<'a>, old_key: bool) -> PResult<Tuple<'a>> {
    // A typical column takes 20+ bytes; guess the count to avoid most regrowth.
    let mut columns = Vec::with_capacity((c.rest().len() / 24).clamp(1, 32));
    loop {
        if old_key {
            if c.eat(b" new-tuple:") {
                break;
            }
        } else if c.at_end() {
            break;
        }
        if !c.eat(b" ") {
            let after = match columns.last() {
                Some(Column { name, .. }) => format!("the value of column `{name}`"),
                None if old_key => "`old-key:`".to_owned(),
                None => "the change kind".to_owned(),
            };
            return Err(c.error(if old_key {
                format!("expected ` new-tuple:` or ` ` and a column after {after}")
            } else {
                format!("expected end of message or ` ` and a column after {after}")
            }));
        }
        let (name, type_name) = column_head(c)?;
        let value = c.value(&name)?;
        columns.push(Column {
            name,
            type_name,
            value,
        });
    }
    Ok(Tuple { columns })
}

/// A column's `name[type]:` (after its leading space): its name and type name.
#[inline]
pub(super) fn column_head<'a>(c: &mut Cursor<'a>) -> PResult<(Cow<'a, str>, &'a str)> {
    let name = c.ident("column name")?;
    if !c.eat(b"[") {
        return Err(c.error(format!("expected `[` after column name `{name}`")));
    }
    let type_name = c.type_name(&name)?;
    Ok((name, type_name))
}

/// Everything after `message: `.
fn logical_message<'a>(c: &mut Cursor<'a>) -> PResult<Message<'a>> {
    if !c.eat(b"transactional: ") {
        return Err(c.error("expected `transactional: ` after `message: `"));
    }
    let transactional = match c.peek() {
        Some(b'0') => false,
        Some(b'1') => true,
        _ => return Err(c.error("expected `0` or `1` after `transactional: `")),
    };
    c.eat(if transactional { b"1" } else { b"0" });
    if !c.eat(b" prefix: ") {
        return Err(c.error("expected ` prefix: ` in the logical message header"));
    }
    let raw = c.raw();
    let prefix_start = c.pos();
    let SzHeader::Found {
        prefix_end,
        content_start,
        size,
    } = find_sz_header(raw, prefix_start)
    else {
        return Err(c.error("expected `, sz: <N> content:` after the logical message prefix"));
    };
    let content = raw.get(content_start..).unwrap_or_default();
    if content.len() != size {
        return Err(c.error_at(
            content_start,
            format!(
                "logical message content is {} bytes but its header says sz: {size}",
                content.len()
            ),
        ));
    }
    let prefix = String::from_utf8_lossy(raw.get(prefix_start..prefix_end).unwrap_or_default());
    c.skip_to_end();
    Ok(Message::Logical {
        transactional,
        prefix,
        content,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::Value;
    use super::*;
    use std::borrow::Cow;

    fn ok(raw: &[u8]) -> Message<'_> {
        match parse_message(raw, 1) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        }
    }

    fn err(raw: &[u8]) -> ParseError {
        match parse_message(raw, 7) {
            Ok(m) => panic!("parsed {m:?}"),
            Err(e) => e,
        }
    }

    fn t<'a>(schema: &'a str, name: &'a str) -> TableName<'a> {
        TableName {
            schema: Cow::Borrowed(schema),
            name: Cow::Borrowed(name),
        }
    }

    #[test]
    fn begin_commit() {
        assert_eq!(ok(b"BEGIN"), Message::Begin { xid: None });
        assert_eq!(ok(b"BEGIN 784"), Message::Begin { xid: Some(784) });
        assert_eq!(
            ok(b"COMMIT 4294967295"),
            Message::Commit {
                xid: Some(u32::MAX)
            }
        );
        assert_eq!(
            ok(b"COMMIT (at 2026-11-23 07:45:04.157387+00)"),
            Message::Commit { xid: None }
        );
        assert_eq!(
            ok(b"COMMIT 784 (at 2026-11-23 07:45:04.157387+00)"),
            Message::Commit { xid: Some(784) }
        );
        assert_eq!(ok(b"BEGIN 1 (at x)"), Message::Begin { xid: Some(1) });
        for bad in [
            &b"BEGIN "[..],
            b"BEGINX",
            b"BEGIN x",
            b"BEGIN 4294967296",
            b"COMMIT 1 ",
            b"COMMIT 1 (at x",
            b"COMMIT (at )",
            b"COMMIT (at 'x)",
            b"COMMIT 12a",
        ] {
            assert!(
                parse_message(bad, 1).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn insert() {
        let raw = b"table public.users: INSERT: id[bigint]:1 email[character varying]:'a''b' \
                    ok[boolean]:true h[real]:NaN w[double precision]:-Infinity n[text]:null \
                    b[bit varying]:B'0101' t[text]:unchanged-toast-datum";
        let Message::Insert { table, new } = ok(raw) else {
            panic!()
        };
        assert_eq!(table, t("public", "users"));
        let new = new.unwrap();
        let values: Vec<_> = new
            .columns
            .iter()
            .map(|c| (&*c.name, c.type_name, c.value))
            .collect();
        assert_eq!(
            values,
            [
                ("id", "bigint", Value::Unquoted(b"1")),
                ("email", "character varying", Value::Quoted(b"a''b")),
                ("ok", "boolean", Value::Unquoted(b"true")),
                ("h", "real", Value::Unquoted(b"NaN")),
                ("w", "double precision", Value::Unquoted(b"-Infinity")),
                ("n", "text", Value::Null),
                ("b", "bit varying", Value::Bits(b"0101")),
                ("t", "text", Value::UnchangedToast),
            ]
        );
        assert_eq!(
            ok(b"table s.t: INSERT: (no-tuple-data)"),
            Message::Insert {
                table: t("s", "t"),
                new: None
            }
        );
        // A table without columns.
        assert_eq!(
            ok(b"table s.t: INSERT:"),
            Message::Insert {
                table: t("s", "t"),
                new: Some(Tuple::default())
            }
        );
    }

    #[test]
    fn quoted_identifiers_and_types() {
        let raw = "table \"My Schema\".\"Order \"\"Items\"\"\": INSERT: \"Qty [x]: 'y'\"\
                   [public.\"My ]: Type\"[]]:'{}' \"new-tuple\"[\"char\"]:'c' zoë[integer]:1";
        let Message::Insert { table, new } = ok(raw.as_bytes()) else {
            panic!()
        };
        assert_eq!(table.schema, "My Schema");
        assert!(matches!(table.schema, Cow::Borrowed(_)));
        assert_eq!(table.name, "Order \"Items\"");
        assert!(matches!(table.name, Cow::Owned(_)));
        let new = new.unwrap();
        assert_eq!(new.columns[0].name, "Qty [x]: 'y'");
        assert_eq!(new.columns[0].type_name, "public.\"My ]: Type\"[]");
        assert_eq!(new.columns[1].name, "new-tuple");
        assert_eq!(new.columns[1].type_name, "\"char\"");
        assert_eq!(new.columns[2].name, "zoë");
    }

    #[test]
    fn update_with_old_key() {
        let raw =
            b"table inventory.stock: UPDATE: old-key: warehouse[text]:'south' sku[text]:'A-1' \
                    new-tuple: warehouse[text]:'south' sku[text]:'A-2' qty[integer]:7";
        let Message::Update {
            table,
            old_key,
            new,
        } = ok(raw)
        else {
            panic!()
        };
        assert_eq!(table, t("inventory", "stock"));
        let old_key = old_key.unwrap();
        assert_eq!(old_key.columns.len(), 2);
        assert_eq!(old_key.get("sku").unwrap().value, Value::Quoted(b"A-1"));
        let new = new.unwrap();
        assert_eq!(new.columns.len(), 3);
        assert_eq!(new.get("sku").unwrap().value, Value::Quoted(b"A-2"));

        let m = ok(b"table s.t: UPDATE: old-key: new-tuple: (no-tuple-data)");
        assert_eq!(
            m,
            Message::Update {
                table: t("s", "t"),
                old_key: Some(Tuple::default()),
                new: None
            }
        );
        let m = ok(b"table s.t: UPDATE: a[text]:'new-tuple: x'");
        let Message::Update {
            old_key: None,
            new: Some(new),
            ..
        } = m
        else {
            panic!()
        };
        assert_eq!(new.columns[0].value, Value::Quoted(b"new-tuple: x"));
    }

    #[test]
    fn delete_and_truncate() {
        assert_eq!(
            ok(b"table s.t: DELETE: (no-tuple-data)"),
            Message::Delete {
                table: t("s", "t"),
                old: None
            }
        );
        assert_eq!(
            ok(b"table s.t: DELETE:"),
            Message::Delete {
                table: t("s", "t"),
                old: Some(Tuple::default())
            }
        );
        assert_eq!(
            ok(b"table inventory.stock: TRUNCATE: (no-flags)"),
            Message::Truncate {
                tables: vec![t("inventory", "stock")],
                restart_seqs: false,
                cascade: false
            }
        );
        assert_eq!(
            ok(b"table public.a, \"x, y\".b: TRUNCATE: restart_seqs cascade"),
            Message::Truncate {
                tables: vec![t("public", "a"), t("x, y", "b")],
                restart_seqs: true,
                cascade: true
            }
        );
        assert_eq!(
            ok(b"table public.a: TRUNCATE: cascade"),
            Message::Truncate {
                tables: vec![t("public", "a")],
                restart_seqs: false,
                cascade: true
            }
        );
        assert!(parse_message(b"table a.b, c.d: INSERT: x[int]:1", 1).is_err());
        assert!(parse_message(b"table a.b: TRUNCATE:", 1).is_err());
        assert!(parse_message(b"table a.b: TRUNCATE: cascade restart_seqs", 1).is_err());
    }

    #[test]
    fn logical_messages() {
        assert_eq!(
            ok(b"message: transactional: 1 prefix: P, sz: 5 content:a\nb\x00c"),
            Message::Logical {
                transactional: true,
                prefix: Cow::Borrowed("P"),
                content: b"a\nb\x00c"
            }
        );
        assert_eq!(
            ok(b"message: transactional: 0 prefix: a, sz: b, sz: 0 content:"),
            Message::Logical {
                transactional: false,
                prefix: Cow::Borrowed("a, sz: b"),
                content: b""
            }
        );
        let e = err(b"message: transactional: 1 prefix: P, sz: 5 content:abc");
        assert!(e.expected.contains("sz: 5"), "{e}");
        assert!(parse_message(b"message: transactional: 2 prefix: P, sz: 0 content:", 1).is_err());
        assert!(parse_message(b"message: transactional: 1 prefix: P sz: 0 content:", 1).is_err());
    }

    #[test]
    fn errors_say_what_was_expected() {
        let e = err(b"table public.users: INSERT: id[bigint]:1 email 'x'");
        assert_eq!(e.expected, "expected `[` after column name `email`");
        assert_eq!(e.line, 7);
        assert_eq!(e.column, 46);
        assert!(e.snippet.contains("email 'x'"), "{e:?}");

        let e = err(b"table public.users: INSERT: id[bigint]:1 bio[text]:'abc");
        assert_eq!(e.expected, "unterminated quoted value for column `bio`");
        assert_eq!(e.column, 51);

        let e = err(b"ROLLBACK 5");
        assert_eq!(e.expected, UNKNOWN_KIND);
        assert_eq!(e.column, 0);

        let e = err(b"table public.users: INSERT: id[bigint]:1'x'");
        assert!(e.expected.contains("unquoted value of column `id`"), "{e}");
        let e = err(b"table public.users: INSERT: a[text]:'x'b[text]:'y'");
        assert!(e.expected.contains("after the value of column `a`"), "{e}");
        let e = err(b"table public.users: UPSERT: a[text]:'x'");
        assert!(e.expected.contains("` INSERT:`"), "{e}");
        let e = err(b"table public.users: UPDATE: old-key: a[text]:'x'");
        assert!(e.expected.contains("` new-tuple:`"), "{e}");
        let e = err(b"table public: INSERT:");
        assert!(e.expected.contains("`.` after schema name `public`"), "{e}");
        let e = err(b"table public.t: INSERT: a[text:'x'");
        assert!(e.expected.contains("`]:`"), "{e}");
        let e = err(b"table public.t: INSERT: a[text]:");
        assert!(
            e.expected.contains("expected a value for column `a`"),
            "{e}"
        );
    }

    #[test]
    fn unicode_and_odd_bytes_in_values() {
        let raw = b"table s.t: INSERT: a[text]:'\xff\xfe\r\n\t\\''' b[bytea]:'\\x00'";
        let Message::Insert { new: Some(new), .. } = ok(raw) else {
            panic!()
        };
        assert_eq!(new.columns[0].value, Value::Quoted(b"\xff\xfe\r\n\t\\''"));
        assert_eq!(
            new.columns[0].value.text().unwrap().as_ref(),
            b"\xff\xfe\r\n\t\\'"
        );
        // Identifiers must be UTF-8: they become `str`.
        assert!(parse_message(b"table s.\"\xff\": INSERT:", 1).is_err());
    }
}
