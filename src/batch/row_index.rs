//! The rows of one table load, found by key: entries in the order their keys were first seen,
//! and a hash table of 8-byte slots (entry number + 32 bits of the key's hash) pointing at them.
//!
//! Why not a map of key -> entry: a load holds up to hundreds of thousands of keys, most seen
//! once (inserts). With 80-byte key + entry slots the table is tens of MiB and every new key costs
//! two cache misses (the control bytes and the slot it writes); with 8-byte slots the table stays
//! in cache, a new key's entry is appended (sequential writes), and the entries are read back in
//! first-seen order, close to the order of their records in the segment. Growing the table never
//! re-reads the keys: each slot keeps the hash bits its position is derived from.
//!
//! Invariants: entries are never removed (a deleted row is an entry in state `Deleted`); a slot's
//! entry number is below `entries.len()`; a slot's hash is `hash32` of its entry's key.

use std::hash::BuildHasher;

use hashbrown::hash_table::{Entry as Found, HashTable};

use super::table_batch::{Entry, Key, RowState};

/// A slot of the hash table: which entry, and the key's 32-bit hash.
#[derive(Debug, Clone, Copy)]
struct Slot {
    entry: u32,
    hash: u32,
}

/// Keys of a load, in first-seen order, with their entries.
#[derive(Debug, Default)]
pub struct RowIndex {
    entries: Vec<(Key, Entry)>,
    table: HashTable<Slot>,
    hasher: foldhash::fast::FixedState,
}

/// The table's 64-bit hash of a slot: hashbrown takes the bucket from the low bits and the
/// control tag from the top 7, so the 32 kept bits are spread over all 64.
#[inline]
fn spread(hash: u32) -> u64 {
    u64::from(hash).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl RowIndex {
    #[inline]
    fn hash32(&self, key: &[u8]) -> u32 {
        (self.hasher.hash_one(key) >> 32) as u32
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    #[inline]
    fn find(&self, key: &[u8]) -> Option<usize> {
        let hash = self.hash32(key);
        let entries = &self.entries;
        self.table
            .find(spread(hash), |s| {
                s.hash == hash && entries[s.entry as usize].0.as_slice() == key
            })
            .map(|s| s.entry as usize)
    }

    pub fn get(&self, key: &[u8]) -> Option<&Entry> {
        self.find(key).map(|i| &self.entries[i].1)
    }

    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut Entry> {
        self.find(key).map(|i| &mut self.entries[i].1)
    }

    /// The entry for `key` with one probe; `true` when it was just created, as a `Deleted`
    /// placeholder the caller overwrites.
    #[inline]
    pub fn slot(&mut self, key: &[u8]) -> (&mut Entry, bool) {
        let hash = self.hash32(key);
        let entries = &mut self.entries;
        let found = self.table.entry(
            spread(hash),
            |s| s.hash == hash && entries[s.entry as usize].0.as_slice() == key,
            |s| spread(s.hash),
        );
        let (i, new) = match found {
            Found::Occupied(o) => (o.get().entry as usize, false),
            Found::Vacant(v) => {
                let i = entries.len();
                // Fewer than 2^32 keys: a `TableLoad` at its `MAX_KEYS` takes no more.
                let entry = u32::try_from(i).expect("a load holds fewer than 2^32 keys");
                v.insert(Slot { entry, hash });
                entries.push((
                    Key::from_slice(key),
                    Entry {
                        state: RowState::Deleted,
                    },
                ));
                (i, true)
            }
        };
        (&mut entries[i].1, new)
    }

    /// Every key and its entry, in the order the keys were first seen.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Entry)> {
        self.entries.iter().map(|(k, e)| (k.as_slice(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(rec: u64) -> Entry {
        Entry {
            state: RowState::Full(smallvec::smallvec![rec]),
        }
    }

    #[test]
    fn keys_are_found_after_growth_and_iterate_in_first_seen_order() {
        let mut index = RowIndex::default();
        let keys: Vec<Vec<u8>> = (0..200_000u32)
            .map(|i| {
                // Short keys stay inline, long ones do not: both kinds compare by bytes. At this
                // count some keys share their 32 hash bits (~5 pairs expected).
                let mut k = i.wrapping_mul(2_654_435_761).to_le_bytes().to_vec();
                k.resize(if i % 3 == 0 { 40 } else { 4 }, b'x');
                k
            })
            .collect();
        for (i, k) in keys.iter().enumerate() {
            let (e, new) = index.slot(k);
            assert!(new, "key {i} is new");
            *e = full(i as u64);
        }
        assert_eq!(index.len(), keys.len());
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(index.get(k), Some(&full(i as u64)), "key {i}");
            let (e, new) = index.slot(k);
            assert!(!new);
            assert_eq!(*e, full(i as u64));
        }
        let order: Vec<&[u8]> = index.iter().map(|(k, _)| k).collect();
        let expected: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        assert_eq!(order, expected);
        assert!(index.get(b"absent").is_none());
        assert!(
            index.get_mut(&keys[7][..3]).is_none(),
            "a prefix is another key"
        );
    }
}
