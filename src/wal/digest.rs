//! Ingest's share of the work on a row change, done ahead on the `--stdin` input thread.
//!
//! Right after the input thread parses a message, [`Digester`] turns an INSERT or UPDATE that
//! ingest would index the common way (the table taken by the filter, a new tuple without
//! unchanged-toast-datum values, no old key) into a [`RowDigest`]: the qualified table name,
//! the WAL change prefix ([`change::encode_prefix`], the same bytes ingest would build from the
//! tree) and a *signature number* standing for the tuple's column names and types. The tree is
//! then freed on the thread that made it, while it is still in cache, and ingest appends and
//! indexes from the digest without reading a tree made on the other core.
//!
//! Invariants:
//! - a signature number stands for exactly one table's one list of (column name, type name): a
//!   new number is taken (from a process-wide counter, so no two digesters share one) whenever
//!   a table's columns differ from the previous digested row's, even back to an earlier list
//!   (rows not digested — TOAST, old key, DELETE — are not seen here: the batcher clears its
//!   record of a number whenever any row changes the table's columns);
//! - the digest decides nothing: ingest indexes a digested row only when its batcher has
//!   checked that table's known columns against the same signature before
//!   ([`crate::batch::Batcher::index_digested`]), and its own filter takes the table; otherwise
//!   it parses the message again and takes the common path. Anything not digested goes to
//!   ingest as its parse tree. Debug builds check every digest against a parse of its message.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::batch::qualified_into;
use crate::source::decoding::{Digest, Frame, Message, RowDigest, Tuple, Value};
use crate::source::filter::TableFilter;
use crate::wal::change::{self, ChangeOp};

/// Signature numbers handed out so far (0 is never used).
static SIGNATURES: AtomicU64 = AtomicU64::new(1);

/// The last column list seen for a table, and its number.
struct Signature {
    number: u64,
    /// Names and type names, in column order.
    columns: Vec<(Box<str>, Box<str>)>,
}

impl Signature {
    fn of(new: &Tuple<'_>) -> Self {
        Signature {
            number: SIGNATURES.fetch_add(1, Ordering::Relaxed),
            columns: new
                .columns
                .iter()
                .map(|c| (Box::from(&*c.name), Box::from(c.type_name)))
                .collect(),
        }
    }

    fn matches(&self, new: &Tuple<'_>) -> bool {
        self.columns.len() == new.columns.len()
            && self
                .columns
                .iter()
                .zip(&new.columns)
                .all(|((name, ty), c)| **name == *c.name && **ty == *c.type_name)
    }
}

/// See the module note.
pub struct Digester {
    filter: TableFilter,
    tables: hashbrown::HashMap<String, Signature>,
    name: String,
}

impl Digester {
    /// Digests the rows `filter` takes (ingest applies the same filter to everything else).
    pub fn new(filter: TableFilter) -> Self {
        Digester {
            filter,
            tables: hashbrown::HashMap::new(),
            name: String::new(),
        }
    }

    /// The signature number of `new`'s columns in the table named `self.name`.
    fn signature(&mut self, new: &Tuple<'_>) -> u64 {
        match self.tables.get_mut(self.name.as_str()) {
            Some(known) if known.matches(new) => known.number,
            Some(known) => {
                *known = Signature::of(new);
                known.number
            }
            None => {
                let sig = Signature::of(new);
                let number = sig.number;
                self.tables.insert(self.name.clone(), sig);
                number
            }
        }
    }
}

impl Digest for Digester {
    fn digest(&mut self, frame: &Frame<'_>, side: &mut Vec<u8>) -> Option<RowDigest> {
        let (op, table, new) = match &frame.message {
            Message::Insert {
                table,
                new: Some(new),
            } => (ChangeOp::Insert, table, new),
            Message::Update {
                table,
                old_key: None,
                new: Some(new),
            } => (ChangeOp::Update, table, new),
            _ => return None,
        };
        if new.columns.iter().any(|c| c.value == Value::UnchangedToast) {
            return None;
        }
        qualified_into(&mut self.name, table);
        if !self.filter.takes_qualified(&self.name) {
            return None;
        }
        let signature = self.signature(new);
        let start = side.len();
        side.extend_from_slice(self.name.as_bytes());
        let mid = side.len();
        if !change::encode_prefix(side, op, frame.raw, frame.utf8, new) {
            side.truncate(start);
            return None;
        }
        let (Ok(start), Ok(mid), Ok(end)) = (
            u32::try_from(start),
            u32::try_from(mid),
            u32::try_from(side.len()),
        ) else {
            return None;
        };
        Some(RowDigest {
            signature,
            name: start..mid,
            prefix: mid..end,
        })
    }
}

/// Debug builds (ingest's check of every digest it takes): `name` and `prefix` are what ingest
/// would have built from the parse tree of `raw` (table, WAL change prefix with its op).
#[cfg(debug_assertions)]
pub(crate) fn check(raw: &[u8], line: u64, name: &str, prefix: &[u8]) {
    let parsed = crate::source::decoding::parse_message_utf8(raw, line);
    let Ok((message, utf8)) = &parsed else {
        panic!("line {line}: a digested message does not parse");
    };
    let (op, new) = change::split_of(message).expect("a digest is an INSERT or UPDATE");
    let mut expected = Vec::new();
    assert!(change::encode_prefix(&mut expected, op, raw, *utf8, new));
    let mut qualified = String::new();
    if let Some(t) = message.table() {
        qualified_into(&mut qualified, t);
    }
    assert_eq!(
        (name, prefix),
        (qualified.as_str(), expected.as_slice()),
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
                    let name = &side[d.name.start as usize..d.name.end as usize];
                    let prefix = &side[d.prefix.start as usize..d.prefix.end as usize];
                    let mut fields = Vec::new();
                    let change =
                        change::decode_first(prefix, f.raw, usize::MAX, &mut fields).unwrap();
                    Some((
                        change.op == ChangeOp::Insert,
                        d.signature,
                        String::from_utf8(name.to_vec()).unwrap(),
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
