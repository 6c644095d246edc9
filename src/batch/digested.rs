//! Indexing a digested row change (`wal::digest`: on the `--stdin` input thread, or by ingest
//! for a slot's message), without its parse tree.
//!
//! A digest carries a signature number standing for the row's column names and types. The
//! batcher indexes a digested row only when the table's current batch recorded that it checked
//! the same signature against the registry's columns ([`Batcher::adopt_signature`], after a
//! change of that signature went the common way) and nothing changed those columns since: then
//! the row is exactly one [`Batcher::apply`] would index through its common case, and it is
//! indexed the same way, its key read from the WAL change prefix instead of the tree.

use super::table_batch::encode_key;
use super::{current_load, fold_encoded, key_bytes, BatchError, Batcher, Encoded, RecPos};
#[cfg(debug_assertions)]
use super::{SchemaRegistry, TableBatch};
use crate::source::decoding::Tuple;
use crate::wal::change;

/// A digested row change, its bytes resolved.
#[derive(Debug, Clone, Copy)]
pub struct DigestedRow<'a> {
    /// `schema.table`.
    pub name: &'a str,
    pub signature: u64,
    /// The WAL change prefix of the message (`change::encode_prefix`'s bytes, its op with them).
    pub prefix: &'a [u8],
    /// The message as received.
    pub text: &'a [u8],
}

impl Batcher {
    /// Indexes `row` (already in the WAL at `pos`) when its signature is the one the table's
    /// columns were checked against in this batch. `false`: not indexed, nothing changed; the
    /// caller parses the message and applies it ([`Batcher::apply`], then
    /// [`Batcher::adopt_signature`]).
    pub fn index_digested(
        &mut self,
        row: &DigestedRow<'_>,
        pos: RecPos,
    ) -> Result<bool, BatchError> {
        let Some(tb) = self.tables.get_mut(row.name) else {
            return Ok(false);
        };
        if tb.signature != Some(row.signature) {
            return Ok(false);
        }
        // A load, once made, has the registry's key (a change of the table's key or columns
        // closes it): the registry is read only for the first row of a load, to know whether
        // a key is known and to make the load.
        let ts = match &tb.current {
            Some(load) if !load.key_idx.is_empty() => None,
            _ => match self.registry.tables.get(row.name) {
                Some(ts) if ts.key.is_some() => Some(ts),
                _ => return Ok(false),
            },
        };
        // Only the columns up to the last key column are read.
        let key_end = tb
            .current
            .as_ref()
            .map_or(usize::MAX, |l| l.key_idx.iter().max().map_or(0, |&i| i + 1));
        let Some(change) = change::decode_first(row.prefix, row.text, key_end, &mut self.fields)
        else {
            return Ok(false);
        };
        let is_insert = change.op == change::ChangeOp::Insert;
        #[cfg(debug_assertions)]
        check_digested(&self.registry, tb, row);
        tb.received[usize::from(!is_insert)] += 1;
        let load = match ts {
            Some(ts) => current_load(ts, tb)?,
            None => tb.current.as_mut().expect("matched above"),
        };
        let (fields, text) = (&self.fields, row.text);
        encode_key(
            &mut self.keys.new,
            load.key_idx.iter().map(|&i| {
                let value = fields.get(i)?.value(text);
                key_bytes(&value)
            }),
        );
        let encoded = Encoded {
            is_insert,
            old: None,
            key: &self.keys.new,
            pos,
            mask: None,
        };
        fold_encoded(tb, &encoded, &mut self.mem)?;
        self.changes += 1;
        Ok(true)
    }

    /// Records, after `new` (a row of the table `name` with the digest signature `signature`)
    /// was applied the common way, that the table's columns are `new`'s: the next rows with the
    /// same signature are indexed from their digests.
    pub fn adopt_signature(&mut self, name: &str, signature: u64, new: &Tuple<'_>) {
        let Some(ts) = self.registry.tables.get(name) else {
            return;
        };
        if ts.matches(&new.columns) {
            if let Some(tb) = self.tables.get_mut(name) {
                tb.signature = Some(signature);
            }
        }
    }
}

/// Debug builds (every test): a digested row about to be indexed is one of the table's known
/// columns, and the table's load, if it has one, has the registry's key (what lets
/// [`Batcher::index_digested`] skip the registry).
#[cfg(debug_assertions)]
fn check_digested(registry: &SchemaRegistry, tb: &TableBatch, row: &DigestedRow<'_>) {
    let ts = registry.tables.get(row.name);
    debug_assert!(
        ts.is_some_and(|ts| ts.key.as_deref()
            == tb
                .current
                .as_ref()
                .map(|l| l.key.as_slice())
                .or(ts.key.as_deref())),
        "a load of {} whose key is not the registry's",
        row.name
    );
    debug_assert!(
        crate::source::decoding::parse_message(row.text, 0)
            .ok()
            .as_ref()
            .and_then(change::split_of)
            .is_some_and(|(_, new)| ts.is_some_and(|ts| ts.matches(&new.columns))),
        "a digested row of {} whose columns are not the known ones",
        row.name
    );
}
