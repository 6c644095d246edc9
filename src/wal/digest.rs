//! Ingest's share of the work on a row change, done ahead on the `--stdin` input thread, and
//! the row read without a parse tree.
//!
//! The input thread hands [`Digester`] the first line of each `table ...` message before parsing
//! it (see [`crate::source::decoding::Digest`]); ingest hands its own digester each message from
//! a replication slot. A one-line INSERT or UPDATE (a slot's message: any INSERT or UPDATE)
//! that ingest would index the common way (the table taken by the filter, a new tuple
//! without unchanged-toast-datum values, no old key) becomes a [`RowDigest`] without a parse
//! tree: the qualified table name, the WAL change prefix ([`change::PrefixWriter`], the same
//! bytes [`change::encode_prefix`] builds from a tree) and a *signature number* standing for the
//! tuple's column names and types. Ingest appends and indexes from the digest; anything else
//! is parsed (on the input thread for `--stdin`, by ingest for a slot) and goes the common way.
//!
//! The walk is [`row_scan`]'s: the message's head, then per column the header this table's
//! last digested row had (` name[type]:`, compared byte for byte, so a table's rows are not
//! read twice for names and types) and the value, read by the parser's own step. When the
//! headers differ (the first row of a table, or its columns changed), the row's headers are
//! read one by one and kept, under a new signature number.
//!
//! Invariants:
//! - a signature number stands for exactly one table's one list of column headers, hence of
//!   (column name, type name): tables are kept by their name as printed, and a new number is
//!   taken (from a process-wide counter, so no two digesters share one) whenever a table's
//!   headers differ from its previous digested row's, even back to an earlier list. Rows not
//!   digested (DELETE, old key, a TOAST value; on `--stdin`, a row spanning lines) teach
//!   nothing here, and the same table printed two ways has two records and numbers: the
//!   batcher clears its record of a number whenever any row changes the table's columns, so
//!   either way a number it has checked still stands for the table's columns;
//! - the digest decides nothing: ingest indexes a digested row only when its batcher has
//!   checked that table's known columns against the same signature before
//!   ([`crate::batch::Batcher::index_digested`]), and its own filter takes the table; otherwise
//!   it parses the message again and takes the common path. Debug builds check every digest
//!   against a parse of its message;
//! - what the walk accepts, the parser accepts with the same values ([`row_scan`]'s
//!   invariant); a walk that fails appends nothing.

use std::sync::atomic::{AtomicU64, Ordering};

use hashbrown::hash_map::EntryRef;

use crate::batch::qualified_into;
use crate::source::decoding::row_scan::{self, RowHead};
use crate::source::decoding::{parse_message_utf8, Digest, Message, RowDigest, Side, Value};
use crate::source::filter::TableFilter;
use crate::wal::change::{self, ChangeOp, PrefixWriter};

/// Signature numbers handed out so far (0 is never used).
static SIGNATURES: AtomicU64 = AtomicU64::new(1);

/// What the digester knows of a table, under the name its rows print.
struct Table {
    /// `schema.table`, the batch's key.
    qualified: Box<str>,
    /// The filter takes the table.
    taken: bool,
    /// The number of `headers`; 0 until a row's are learned.
    signature: u64,
    /// The column headers of the last digested row, ` name[type]:` each, back to back...
    headers: Vec<u8>,
    /// ...ending at these offsets.
    ends: Vec<u32>,
}

/// How a walk over a row's columns ended.
enum Walk {
    Done,
    /// The headers are not the table's known ones.
    OtherHeaders,
    /// Not a row to digest (an unchanged TOAST value, or bytes the parser would refuse).
    Refused,
}

/// See the module note.
pub struct Digester {
    filter: TableFilter,
    /// By the name as printed ([`RowHead::name`]).
    tables: hashbrown::HashMap<Box<[u8]>, Table, foldhash::fast::FixedState>,
}

impl Digester {
    /// Digests the rows `filter` takes (ingest applies the same filter to everything else).
    pub fn new(filter: TableFilter) -> Self {
        Digester {
            filter,
            tables: hashbrown::HashMap::default(),
        }
    }

    /// The table `name` (as printed), learned on first sight; `None` for a name the parser
    /// would refuse.
    fn table(&mut self, name: &[u8]) -> Option<&mut Table> {
        match self.tables.entry_ref(name) {
            EntryRef::Occupied(known) => Some(known.into_mut()),
            EntryRef::Vacant(new) => {
                let mut qualified = String::new();
                qualified_into(&mut qualified, &row_scan::table_name(name)?);
                Some(new.insert(Table {
                    taken: self.filter.takes_qualified(&qualified),
                    qualified: qualified.into_boxed_str(),
                    signature: 0,
                    headers: Vec::new(),
                    ends: Vec::new(),
                }))
            }
        }
    }
}

impl Table {
    /// Walks the columns of `raw` from `at` with the known headers, writing each value.
    #[inline]
    fn walk(
        &self,
        raw: &[u8],
        mut at: usize,
        out: &mut Vec<u8>,
        prefix: &mut PrefixWriter,
    ) -> Walk {
        let mut from = 0;
        for &end in &self.ends {
            let header = self.headers.get(from..end as usize).unwrap_or_default();
            from = end as usize;
            if !raw.get(at..).unwrap_or_default().starts_with(header) {
                return Walk::OtherHeaders;
            }
            let Some((value, next)) = row_scan::column_value(raw, at + header.len()) else {
                return Walk::Refused;
            };
            if value == Value::UnchangedToast || !prefix.value(out, raw, value) {
                return Walk::Refused;
            }
            at = next;
        }
        if at == raw.len() {
            Walk::Done
        } else {
            Walk::OtherHeaders
        }
    }

    /// Reads the headers of `raw` from `at` one by one and keeps them under a new number;
    /// `false` (and nothing kept) when the row is not one to digest.
    fn learn(&mut self, raw: &[u8], mut at: usize) -> bool {
        let (mut headers, mut ends) = (Vec::new(), Vec::new());
        while at < raw.len() {
            let Some(value_at) = row_scan::column_header(raw, at) else {
                return false;
            };
            headers.extend_from_slice(raw.get(at..value_at).unwrap_or_default());
            let Ok(end) = u32::try_from(headers.len()) else {
                return false;
            };
            ends.push(end);
            match row_scan::column_value(raw, value_at) {
                Some((Value::UnchangedToast, _)) | None => return false,
                Some((_, next)) => at = next,
            }
        }
        self.signature = SIGNATURES.fetch_add(1, Ordering::Relaxed);
        self.headers = headers;
        self.ends = ends;
        true
    }

    /// Appends the row's prefix to `out`: walked with the known headers, or with the row's own
    /// once learned. `false` (and `out` as it was) when the row is not one to digest.
    fn prefix(&mut self, raw: &[u8], head: &RowHead<'_>, utf8: bool, out: &mut Vec<u8>) -> bool {
        let op = if head.update {
            ChangeOp::Update
        } else {
            ChangeOp::Insert
        };
        for learned in [false, true] {
            let mut prefix = PrefixWriter::begin(out, op, utf8, self.ends.len());
            let walk = if self.signature == 0 {
                // No headers learned yet (not even an empty list).
                Walk::OtherHeaders
            } else {
                self.walk(raw, head.tuple, out, &mut prefix)
            };
            if matches!(walk, Walk::Done) && prefix.finish(out) {
                return true;
            }
            out.truncate(prefix.start());
            if learned || !matches!(walk, Walk::OtherHeaders) || !self.learn(raw, head.tuple) {
                return false;
            }
        }
        false
    }
}

impl Digest for Digester {
    fn digest(&mut self, raw: &[u8], side: &mut Side) -> Option<(RowDigest, bool)> {
        let head = row_scan::row_head(raw)?;
        let table = self.table(head.name)?;
        if !table.taken {
            return None;
        }
        let utf8 = row_scan::is_utf8(raw);
        let at = side.bytes.len();
        if !table.prefix(raw, &head, utf8, &mut side.bytes) {
            return None;
        }
        let name_at = side.names.len();
        side.names.push_str(&table.qualified);
        let ranges = (
            u32::try_from(name_at),
            u32::try_from(side.names.len()),
            u32::try_from(at),
            u32::try_from(side.bytes.len()),
        );
        let (Ok(name_at), Ok(name_end), Ok(at32), Ok(end)) = ranges else {
            side.names.truncate(name_at);
            side.bytes.truncate(at);
            return None;
        };
        let digest = RowDigest {
            signature: table.signature,
            name: name_at..name_end,
            prefix: at32..end,
        };
        Some((digest, utf8))
    }
}

/// What a [`Digester`] with `filter` must make of the message `raw`, worked out from its parse
/// tree instead: the qualified table name and the WAL change prefix, or `None` when it is not a
/// row to digest. Debug builds check every digest ingest takes against it, and the property
/// tests check the walk against it.
pub fn from_parse_tree(raw: &[u8], filter: &TableFilter) -> Option<(String, Vec<u8>)> {
    let (message, utf8) = parse_message_utf8(raw, 0).ok()?;
    if let Message::Update {
        old_key: Some(_), ..
    } = message
    {
        return None;
    }
    let (op, new) = change::split_of(&message)?;
    if new.columns.iter().any(|c| c.value == Value::UnchangedToast) {
        return None;
    }
    let mut name = String::new();
    qualified_into(&mut name, message.table()?);
    if !filter.takes_qualified(&name) {
        return None;
    }
    let mut prefix = Vec::new();
    change::encode_prefix(&mut prefix, op, raw, utf8, new).then_some((name, prefix))
}

/// Debug builds (ingest's check of every digest it takes): `name` and `prefix` are what ingest
/// would have built from the parse tree of `raw` (table, WAL change prefix with its op).
#[cfg(debug_assertions)]
pub(crate) fn check(raw: &[u8], line: u64, name: &str, prefix: &[u8]) {
    assert_eq!(
        from_parse_tree(raw, &TableFilter::default()),
        Some((name.to_owned(), prefix.to_vec())),
        "line {line}: the digest is not the message's"
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::source::decoding::{Body, Framer};

    fn digests(text: &str, filter: TableFilter) -> Vec<Option<(bool, u64, String)>> {
        let mut framer = Framer::new().with_digest(Box::new(Digester::new(filter)));
        let chunk = framer.push(text.as_bytes().to_vec()).unwrap();
        let side = chunk.side();
        chunk
            .frames()
            .iter()
            .map(|f| match &f.body {
                Body::Parsed(_) => None,
                Body::Digested(d) => {
                    let prefix = side.prefix(d).unwrap();
                    let mut fields = Vec::new();
                    let change =
                        change::decode_first(prefix, f.raw, usize::MAX, &mut fields).unwrap();
                    Some((
                        change.op == ChangeOp::Insert,
                        d.signature,
                        side.name(d).unwrap().to_owned(),
                    ))
                }
            })
            .collect()
    }

    #[test]
    fn common_rows_are_digested_and_the_rest_keep_their_tree() {
        let text = "BEGIN 1\n\
            table public.t: INSERT: id[integer]:1 v[text]:'a'\n\
            table public.t: UPDATE: id[integer]:1 v[text]:'b'\n\
            table public.t: UPDATE: old-key: id[integer]:1 new-tuple: id[integer]:2 v[text]:'c'\n\
            table public.t: UPDATE: id[integer]:2 v[text]:unchanged-toast-datum\n\
            table public.t: DELETE: id[integer]:2\n\
            table public.skip: INSERT: id[integer]:1\n\
            COMMIT 1\n";
        let filter = TableFilter::new(&["*".to_string()], &["public.skip".to_string()]);
        let got = digests(text, filter);
        let sig = got[1].as_ref().unwrap().1;
        assert_eq!(
            got,
            vec![
                None,
                Some((true, sig, "public.t".into())),
                Some((false, sig, "public.t".into())),
                None,
                None,
                None,
                None,
                None,
            ]
        );
    }

    /// The digest of `raw` as (name, prefix, UTF-8 flag), checked against its parse tree.
    fn digest_one(d: &mut Digester, raw: &[u8]) -> (String, Vec<u8>, bool) {
        let mut side = Side::default();
        let (digest, utf8) = d.digest(raw, &mut side).unwrap();
        let name = side.name(&digest).unwrap().to_owned();
        let prefix = side.prefix(&digest).unwrap().to_vec();
        let (_, parsed_utf8) = parse_message_utf8(raw, 1).unwrap();
        assert_eq!(
            from_parse_tree(raw, &TableFilter::default()),
            Some((name.clone(), prefix.clone()))
        );
        assert_eq!(utf8, parsed_utf8);
        (name, prefix, utf8)
    }

    #[test]
    fn long_non_utf8_and_quoted_rows_are_digested_as_their_trees_say() {
        let long = format!(
            "table public.t: INSERT: id[integer]:1 v[text]:'{}'",
            "é".repeat(5000)
        );
        let bad = &b"table public.t: INSERT: id[integer]:2 v[text]:'\xff'"[..];
        let quoted =
            br#"table "My Schema"."Order ""Items""": UPDATE: "Id"[integer]:3 v[text]:null"#;
        let mut d = Digester::new(TableFilter::default());
        // Each twice: with the row's own headers, then with the headers kept.
        for _ in 0..2 {
            // Longer than the parser checks as a whole: not flagged UTF-8, as the parser says.
            assert!(!digest_one(&mut d, long.as_bytes()).2);
            assert!(!digest_one(&mut d, bad).2);
            let (name, _, utf8) = digest_one(&mut d, quoted);
            assert_eq!((name.as_str(), utf8), ("My Schema.Order \"Items\"", true));
        }
        // A name or header that is not UTF-8 is the parser's to refuse.
        let mut side = Side::default();
        for raw in [
            &b"table public.\xff: INSERT: id[integer]:1"[..],
            b"table public.t: INSERT: \xff[integer]:1",
        ] {
            assert!(d.digest(raw, &mut side).is_none());
            assert!(parse_message_utf8(raw, 1).is_err());
        }
        assert!(side.names.is_empty() && side.bytes.is_empty());
    }

    #[test]
    fn a_row_split_between_reads_is_digested() {
        let text = b"BEGIN 1\ntable public.t: INSERT: id[integer]:1 v[text]:'a b'\nCOMMIT 1\n";
        for cut in 9..text.len() - 10 {
            let mut framer =
                Framer::new().with_digest(Box::new(Digester::new(TableFilter::default())));
            let mut bodies = Vec::new();
            for piece in [&text[..cut], &text[cut..]] {
                if let Some(chunk) = framer.push(piece.to_vec()) {
                    bodies.extend(
                        chunk
                            .frames()
                            .iter()
                            .map(|f| (f.line, matches!(f.body, Body::Digested(_)))),
                    );
                }
            }
            assert_eq!(
                bodies,
                vec![(1, false), (2, true), (3, false)],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_signature_number_stands_for_one_column_list() {
        let text = "BEGIN 1\n\
            table public.t: INSERT: id[integer]:1 v[text]:'a'\n\
            table public.u: INSERT: id[integer]:1 v[text]:'a'\n\
            table public.t: INSERT: id[integer]:2 v[character varying]:'a'\n\
            table public.t: INSERT: id[integer]:3 w[text]:'a'\n\
            table public.t: INSERT: id[integer]:4 v[text]:'a'\n\
            table public.t: INSERT: id[integer]:5 v[text]:'a'\n\
            COMMIT 1\n";
        let sigs: Vec<u64> = digests(text, TableFilter::default())
            .into_iter()
            .flatten()
            .map(|(_, s, _)| s)
            .collect();
        assert_eq!(sigs.len(), 6);
        // Each change of columns (another table, a type, a name, back again) is a new number.
        let distinct: std::collections::HashSet<_> = sigs[..5].iter().collect();
        assert_eq!(distinct.len(), 5, "{sigs:?}");
        assert_eq!(sigs[4], sigs[5]);
    }
}
