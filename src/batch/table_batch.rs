//! One table's load within a segment: the final state of every row key touched, as positions of
//! WAL records (never the values themselves, so memory grows with distinct keys, not row width).
//!
//! Per key, a small state machine folds the changes of the batch into one outcome:
//! - `Full`: the row exists at the end with all values known (an insert, a full update, or an
//!   update whose unchanged TOAST values come from an earlier record of the same batch);
//!   loaded as delete-by-key + insert;
//! - `Partial`: an update of a row that existed before the batch, with some TOAST columns not
//!   re-sent; loaded as an `UPDATE` of just the known columns, grouped by the exact column subset.
//!   `moved_from` is set when the update also changed the key: the target row is found by the
//!   old key;
//! - `Deleted`: gone at the end; always loaded as a delete by key, even when the batch inserted
//!   the row first: the target may hold the key already (a rerun after a crash or a stop, input
//!   overlapping what was loaded, an initial copy overlapping the stream), so the outcome must
//!   be the key's absolute final state, never a difference from an assumed starting point;
//! - `MovedAway`: the row at this key was moved to another key by a `Partial` update; nothing is
//!   emitted for this key itself.
//!
//! The load is applied in this order: subset updates, deletes (incl. keys of `Full` rows), inserts.
//! Combinations that order cannot express (a key reused after its row moved away, a partial move
//! onto a key deleted earlier in the batch) return [`Applied::Conflict`]: the caller closes the
//! load and starts a new one, which is always correct.

use smallvec::SmallVec;

use crate::batch::row_index::RowIndex;
use crate::batch::schema::ColumnDef;

/// Position of a WAL record in the segment.
pub type RecPos = u64;

type Recs = SmallVec<[RecPos; 2]>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowState {
    Deleted,
    Full(Recs),
    Partial {
        recs: Recs,
        subset: u32,
        moved_from: Option<Box<[u8]>>,
    },
    MovedAway,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub state: RowState,
}

/// Whether a change could be folded into this load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Applied {
    Done,
    /// Close this load and apply the change to a fresh one.
    Conflict,
}

/// Approximate cost of one entry with an inline key (see `entry_cost`): a 72-byte key + entry
/// and two to four 8-byte slots (the [`RowIndex`] table is at most half full), growth, ~48
/// bytes of write plan and allocator overhead. Calibrated on the benchmark capture (peak RSS /
/// distinct keys per batch, BENCHMARKS.md) when entries were 80-byte hash slots, not derived;
/// kept, as an over-estimate only closes segments earlier.
pub const ENTRY_OVERHEAD: usize = 240;

type FastMap<K, V> = hashbrown::HashMap<K, V, foldhash::fast::FixedState>;

/// An encoded row key; keys up to 16 bytes (integers, short texts) need no allocation.
pub type Key = SmallVec<[u8; INLINE_KEY]>;
const INLINE_KEY: usize = 16;

/// Estimated bytes of one index entry: the key + entry and its hash slot, a
/// key's heap bytes beyond [`INLINE_KEY`], and the CSV stage's write plan for the row (32-byte
/// row + 16-byte read per record), which exists while the batch is written.
fn entry_cost(key_len: usize) -> usize {
    ENTRY_OVERHEAD
        + if key_len > INLINE_KEY {
            key_len + 16
        } else {
            0
        }
}

/// Keys one load holds at most: its index numbers entries with 32 bits. A change that could
/// pass it (an update that moves a row adds two keys) is a conflict, applied to a fresh load.
const MAX_KEYS: usize = u32::MAX as usize;

/// The index of one load step of one table.
#[derive(Debug)]
pub struct TableLoad {
    /// The table's columns for every row of this load.
    pub columns: Vec<ColumnDef>,
    /// Key column names, in key order.
    pub key: Vec<String>,
    /// Index of each key column in `columns`.
    pub key_idx: Vec<usize>,
    pub rows: RowIndex,
    /// Interned known-column subsets of partial updates; `Partial::subset` indexes this.
    pub subsets: Vec<Box<[bool]>>,
    subset_ids: FastMap<Box<[bool]>, u32>,
    /// Approximate bytes held.
    pub mem: usize,
    /// Changes folded in (for logs and manifests).
    pub changes: u64,
    /// [`MAX_KEYS`], lower in tests.
    key_limit: usize,
}

impl TableLoad {
    pub fn new(columns: Vec<ColumnDef>, key: Vec<String>, key_idx: Vec<usize>) -> Self {
        Self {
            columns,
            key,
            key_idx,
            rows: RowIndex::default(),
            subsets: Vec::new(),
            subset_ids: FastMap::default(),
            mem: 0,
            changes: 0,
            key_limit: MAX_KEYS,
        }
    }

    /// No room for the two new keys a change may add.
    fn full(&self) -> bool {
        self.rows.len() + 2 > self.key_limit
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn intern(&mut self, mask: &[bool]) -> u32 {
        if let Some(id) = self.subset_ids.get(mask) {
            return *id;
        }
        let id = self.subsets.len() as u32;
        self.subsets.push(mask.into());
        self.subset_ids.insert(mask.into(), id);
        self.mem += 2 * (mask.len() + 48);
        id
    }

    fn union(&mut self, a: u32, mask: &[bool]) -> u32 {
        let merged: Vec<bool> = self.subsets[a as usize]
            .iter()
            .zip(mask)
            .map(|(x, y)| *x || *y)
            .collect();
        self.intern(&merged)
    }

    fn entry_mut(&mut self, key: &[u8]) -> Option<&mut Entry> {
        self.rows.get_mut(key)
    }

    fn put(&mut self, key: &[u8], entry: Entry) {
        let (e, _) = self.slot(key);
        *e = entry;
    }

    /// The state an update at `rec` (known columns `mask`, `None` = all) leads to, given the
    /// row's previous state in this load (`None` = not seen).
    fn updated(
        &mut self,
        prev: Option<RowState>,
        rec: RecPos,
        mask: Option<&[bool]>,
        moved_from: Option<&[u8]>,
    ) -> RowState {
        match (prev, mask) {
            (Some(RowState::Full(mut recs)), Some(_)) => {
                recs.push(rec);
                RowState::Full(recs)
            }
            (_, None) => RowState::Full(SmallVec::from_slice(&[rec])),
            (
                Some(RowState::Partial {
                    mut recs,
                    subset,
                    moved_from: m,
                }),
                Some(mask),
            ) => {
                recs.push(rec);
                let subset = self.union(subset, mask);
                RowState::Partial {
                    recs,
                    subset,
                    moved_from: m.or_else(|| moved_from.map(Into::into)),
                }
            }
            (_, Some(mask)) => {
                let subset = self.intern(mask);
                RowState::Partial {
                    recs: SmallVec::from_slice(&[rec]),
                    subset,
                    moved_from: moved_from.map(Into::into),
                }
            }
        }
    }

    /// The entry for `key` with one hash lookup; `true` when it was just created (as a
    /// placeholder the caller overwrites).
    fn slot(&mut self, key: &[u8]) -> (&mut Entry, bool) {
        let (e, new) = self.rows.slot(key);
        if new {
            self.mem += entry_cost(key.len());
        }
        (e, new)
    }

    pub fn insert(&mut self, key: &[u8], rec: RecPos) -> Applied {
        if self.full() {
            return Applied::Conflict;
        }
        self.changes += 1;
        let (e, new) = self.slot(key);
        if !new && e.state == RowState::MovedAway {
            return Applied::Conflict;
        }
        e.state = RowState::Full(SmallVec::from_slice(&[rec]));
        Applied::Done
    }

    /// An update that keeps the key. `mask` lists known columns when some are unchanged TOAST.
    pub fn update(&mut self, key: &[u8], rec: RecPos, mask: Option<&[bool]>) -> Applied {
        if self.full() {
            return Applied::Conflict;
        }
        if mask.is_none() {
            // Every column known: the previous state does not matter, one lookup.
            self.changes += 1;
            let (e, new) = self.slot(key);
            if !new && e.state == RowState::MovedAway {
                return Applied::Conflict;
            }
            e.state = RowState::Full(SmallVec::from_slice(&[rec]));
            return Applied::Done;
        }
        self.changes += 1;
        let prev = match self.entry_mut(key) {
            None => None,
            Some(Entry {
                state: RowState::MovedAway,
            }) => return Applied::Conflict,
            Some(e) => Some(std::mem::replace(&mut e.state, RowState::Deleted)),
        };
        let prev = match prev {
            Some(RowState::Deleted) => None,
            p => p,
        };
        let state = self.updated(prev, rec, mask, None);
        self.put(key, Entry { state });
        Applied::Done
    }

    /// An update that moved the row from `old_key` to `new_key`.
    pub fn update_key(
        &mut self,
        old_key: &[u8],
        new_key: &[u8],
        rec: RecPos,
        mask: Option<&[bool]>,
    ) -> Applied {
        if old_key == new_key {
            return self.update(new_key, rec, mask);
        }
        if self.full() {
            return Applied::Conflict;
        }
        if let Some(Entry {
            state: RowState::MovedAway,
            ..
        }) = self.rows.get(old_key)
        {
            return Applied::Conflict;
        }
        match self.rows.get(new_key) {
            None => {}
            // A key deleted earlier in the batch may be reused by a full row (delete + insert
            // order handles it) but not by a partial move (updates run before deletes).
            Some(Entry {
                state: RowState::Deleted,
                ..
            }) if mask.is_none() => {}
            Some(_) => return Applied::Conflict,
        }
        // A partial move finds the row in the target by its old key: that row must exist, so an
        // old key already deleted in this batch cannot be the origin (updates run before deletes).
        if mask.is_some()
            && matches!(
                self.rows.get(old_key),
                Some(Entry {
                    state: RowState::Deleted,
                    ..
                })
            )
        {
            return Applied::Conflict;
        }
        self.changes += 1;
        let prev = self
            .rows
            .get_mut(old_key)
            .map(|e| std::mem::replace(&mut e.state, RowState::Deleted));
        let prev = match prev {
            Some(RowState::Deleted) => None,
            p => p,
        };
        let state = self.updated(prev, rec, mask, Some(old_key));
        let old_state = match &state {
            RowState::Partial {
                moved_from: Some(m),
                ..
            } if &**m == old_key => RowState::MovedAway,
            _ => RowState::Deleted,
        };
        self.put(old_key, Entry { state: old_state });
        self.put(new_key, Entry { state });
        Applied::Done
    }

    pub fn delete(&mut self, key: &[u8]) -> Applied {
        if self.full() {
            return Applied::Conflict;
        }
        self.changes += 1;
        let (e, new) = self.slot(key);
        if new {
            return Applied::Done;
        }
        if e.state == RowState::MovedAway {
            return Applied::Conflict;
        }
        let prev = std::mem::replace(&mut e.state, RowState::Deleted);
        if let RowState::Partial {
            moved_from: Some(origin),
            ..
        } = &prev
        {
            // The row moved here from `origin` earlier in this batch; deleting it means the
            // target row under the origin key must go.
            let origin = origin.clone();
            self.put(
                &origin,
                Entry {
                    state: RowState::Deleted,
                },
            );
        }
        Applied::Done
    }
}

/// Encodes key values into one map key: per column `0xFF` for NULL or `u32 len + bytes`.
pub fn encode_key<'a>(out: &mut Vec<u8>, values: impl Iterator<Item = Option<&'a [u8]>>) {
    out.clear();
    for v in values {
        match v {
            None => out.push(0xFF),
            Some(b) => {
                out.push(0);
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                out.extend_from_slice(b);
            }
        }
    }
}

/// The values of an encoded key; `None` entries are NULLs. Malformed input yields fewer values.
pub fn decode_key(mut key: &[u8]) -> Vec<Option<&[u8]>> {
    let mut out = Vec::new();
    while let Some((&tag, rest)) = key.split_first() {
        if tag == 0xFF {
            out.push(None);
            key = rest;
            continue;
        }
        let Some((len, rest)) = rest.split_first_chunk::<4>() else {
            break;
        };
        let len = u32::from_le_bytes(*len) as usize;
        let Some((value, rest)) = rest.split_at_checked(len) else {
            break;
        };
        out.push(Some(value));
        key = rest;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load() -> TableLoad {
        TableLoad::new(Vec::new(), vec!["id".into()], vec![0])
    }

    fn k(v: &str) -> Vec<u8> {
        let mut out = Vec::new();
        encode_key(&mut out, std::iter::once(Some(v.as_bytes())));
        out
    }

    fn state(l: &TableLoad, key: &str) -> Option<Entry> {
        l.rows.get(k(key).as_slice()).cloned()
    }

    fn full(recs: &[u64]) -> RowState {
        RowState::Full(SmallVec::from_slice(recs))
    }

    #[test]
    fn insert_then_update_is_insert_with_final_values() {
        let mut l = load();
        assert_eq!(l.insert(&k("1"), 10), Applied::Done);
        assert_eq!(l.update(&k("1"), 20, None), Applied::Done);
        assert_eq!(state(&l, "1"), Some(Entry { state: full(&[20]) }));
    }

    #[test]
    fn insert_then_delete_is_a_delete() {
        // The target may hold the key already (a rerun, overlapping input): the final state,
        // absent, is what gets applied.
        let mut l = load();
        let _ = l.insert(&k("1"), 10);
        let _ = l.delete(&k("1"));
        assert_eq!(
            state(&l, "1"),
            Some(Entry {
                state: RowState::Deleted
            })
        );
    }

    #[test]
    fn delete_then_insert_is_replace() {
        let mut l = load();
        let _ = l.delete(&k("1"));
        let _ = l.insert(&k("1"), 30);
        assert_eq!(state(&l, "1"), Some(Entry { state: full(&[30]) }));
    }

    #[test]
    fn toast_update_merges_with_earlier_full_row() {
        let mut l = load();
        let _ = l.insert(&k("1"), 10);
        let _ = l.update(&k("1"), 20, Some(&[true, false, true]));
        assert_eq!(state(&l, "1").unwrap().state, full(&[10, 20]));
    }

    #[test]
    fn toast_updates_without_base_group_by_subset() {
        let mut l = load();
        let _ = l.update(&k("1"), 10, Some(&[true, false, true]));
        let _ = l.update(&k("2"), 20, Some(&[true, false, true]));
        let _ = l.update(&k("3"), 30, Some(&[true, true, false]));
        let _ = l.update(&k("3"), 40, Some(&[true, false, true]));
        assert_eq!(l.subsets.len(), 3);
        let RowState::Partial { subset, .. } = state(&l, "3").unwrap().state else {
            panic!()
        };
        assert_eq!(&*l.subsets[subset as usize], &[true, true, true]);
    }

    #[test]
    fn key_change_deletes_old_and_upserts_new() {
        let mut l = load();
        assert_eq!(l.update_key(&k("a"), &k("b"), 10, None), Applied::Done);
        assert_eq!(
            state(&l, "a"),
            Some(Entry {
                state: RowState::Deleted
            })
        );
        assert_eq!(state(&l, "b").unwrap().state, full(&[10]));
    }

    #[test]
    fn partial_key_change_moves_and_reuse_conflicts() {
        let mut l = load();
        assert_eq!(
            l.update_key(&k("a"), &k("b"), 10, Some(&[true, false])),
            Applied::Done
        );
        assert_eq!(state(&l, "a").unwrap().state, RowState::MovedAway);
        let RowState::Partial { moved_from, .. } = state(&l, "b").unwrap().state else {
            panic!()
        };
        assert_eq!(moved_from.as_deref(), Some(k("a").as_slice()));
        assert_eq!(l.insert(&k("a"), 20), Applied::Conflict);
        // Deleting the moved row deletes it under its original key.
        assert_eq!(l.delete(&k("b")), Applied::Done);
        assert_eq!(
            state(&l, "a"),
            Some(Entry {
                state: RowState::Deleted
            })
        );
    }

    #[test]
    fn a_load_at_its_key_limit_sends_every_change_to_a_fresh_load() {
        let mut l = load();
        l.key_limit = 4;
        assert_eq!(l.insert(&k("1"), 10), Applied::Done);
        assert_eq!(l.insert(&k("2"), 20), Applied::Done);
        // Two keys left: a key move could take both.
        assert_eq!(l.update_key(&k("3"), &k("4"), 30, None), Applied::Done);
        assert_eq!(l.rows.len(), 4);
        assert_eq!(l.insert(&k("5"), 50), Applied::Conflict);
        assert_eq!(l.update(&k("1"), 60, None), Applied::Conflict);
        assert_eq!(l.update_key(&k("1"), &k("6"), 70, None), Applied::Conflict);
        assert_eq!(l.delete(&k("2")), Applied::Conflict);
        assert_eq!((l.rows.len(), l.changes), (4, 3));
    }

    #[test]
    fn keys_round_trip_with_nulls() {
        let mut out = Vec::new();
        encode_key(
            &mut out,
            [Some(&b"x"[..]), None, Some(&b""[..])].into_iter(),
        );
        assert_eq!(
            decode_key(&out),
            vec![Some(&b"x"[..]), None, Some(&b""[..])]
        );
        assert!(decode_key(&[0, 9, 0]).is_empty());
    }
}
