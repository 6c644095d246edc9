//! The rows of one table load, found by key: entries in the order their keys were first seen,
//! and an open-addressing table of 8-byte slots (entry number + 32 bits of the key's hash)
//! pointing at them.
//!
//! Why not a map of key -> entry: a load holds up to hundreds of thousands of keys, most seen
//! once (inserts). With 80-byte key + entry slots the table is tens of MiB and every new key costs
//! two cache misses (the control bytes and the slot it writes); with 8-byte slots the table stays
//! small, a new key's entry is appended (sequential writes), and the entries are read back in
//! first-seen order, close to the order of their records in the segment. Growing the table never
//! re-reads the keys: each slot keeps the hash bits its position is derived from.
//!
//! Why not a general hash table of slots (hashbrown's): its control bytes are an array apart,
//! so a look-up at a random key touched two cache lines before the entry (control byte, then
//! slot). Here the probe reads the slots themselves (linear probing, at most half full, so a
//! look-up almost always ends in the first cache line it reads): one line, then the entry.
//!
//! Invariants: entries are never removed (a deleted row is an entry in state `Deleted`); a slot
//! is empty ([`EMPTY`]) or holds an entry number below `entries.len()` and the `hash32` of that
//! entry's key; every entry has exactly one slot; the table is a power of two long and at
//! least twice as long as there are entries (so every probe meets an empty slot).

use std::hash::BuildHasher;

use super::table_batch::{Entry, Key, RowState};

/// A slot of the table: which entry, and the key's 32-bit hash.
#[derive(Debug, Clone, Copy)]
struct Slot {
    entry: u32,
    hash: u32,
}

/// The entry number of an empty slot.
const EMPTY: u32 = u32::MAX;

const EMPTY_SLOT: Slot = Slot {
    entry: EMPTY,
    hash: 0,
};

/// Slots of a table's first allocation.
const FIRST_SLOTS: usize = 64;

/// Keys of a load, in first-seen order, with their entries.
#[derive(Debug, Default)]
pub struct RowIndex {
    entries: Vec<(Key, Entry)>,
    slots: Vec<Slot>,
    hasher: foldhash::fast::FixedState,
}

impl RowIndex {
    #[inline]
    fn hash32(&self, key: &[u8]) -> u32 {
        (self.hasher.hash_one(key) >> 32) as u32
    }

    /// The first slot to probe for `hash` in a table of `len` slots (a power of two): the top
    /// bits of its Fibonacci spread, so all 32 hash bits count.
    #[inline]
    fn home(hash: u32, len: usize) -> usize {
        let spread = u64::from(hash).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (spread >> (64 - len.trailing_zeros())) as usize
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The slot index holding `key` (`Ok`), or the empty slot where it would go (`Err`). The
    /// table must not be empty.
    #[inline]
    fn probe(&self, key: &[u8], hash: u32) -> Result<usize, usize> {
        let mask = self.slots.len() - 1;
        let mut i = Self::home(hash, self.slots.len());
        loop {
            let s = self.slots[i];
            if s.entry == EMPTY {
                return Err(i);
            }
            if s.hash == hash && self.entries[s.entry as usize].0.as_slice() == key {
                return Ok(i);
            }
            i = (i + 1) & mask;
        }
    }

    #[inline]
    fn find(&self, key: &[u8]) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let i = self.probe(key, self.hash32(key)).ok()?;
        Some(self.slots[i].entry as usize)
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
        if (self.entries.len() + 1) * 2 > self.slots.len() {
            self.grow();
        }
        match self.probe(key, hash) {
            Ok(i) => {
                let e = self.slots[i].entry as usize;
                (&mut self.entries[e].1, false)
            }
            Err(i) => {
                let e = self.entries.len();
                // Fewer than 2^32 - 1 keys: a `TableLoad` at its `MAX_KEYS` takes no more.
                let entry = u32::try_from(e)
                    .ok()
                    .filter(|&n| n != EMPTY)
                    .expect("a load holds fewer than 2^32 - 1 keys");
                self.slots[i] = Slot { entry, hash };
                self.entries.push((
                    Key::from_slice(key),
                    Entry {
                        state: RowState::Deleted,
                    },
                ));
                (&mut self.entries[e].1, true)
            }
        }
    }

    /// Doubles the table (or makes the first), placing each slot again by its kept hash.
    #[cold]
    fn grow(&mut self) {
        let len = (self.slots.len() * 2).max(FIRST_SLOTS);
        let old = std::mem::replace(&mut self.slots, vec![EMPTY_SLOT; len]);
        let mask = len - 1;
        for s in old.into_iter().filter(|s| s.entry != EMPTY) {
            let mut i = Self::home(s.hash, len);
            while self.slots[i].entry != EMPTY {
                i = (i + 1) & mask;
            }
            self.slots[i] = s;
        }
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
