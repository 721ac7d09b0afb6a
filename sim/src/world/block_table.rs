//! The simulated store's block records: a digest index into a slab.
//!
//! A TiB-scale run keeps millions of blocks, and each is looked up several
//! times on its way in (put, then made durable) and by the checker. Keyed
//! by digest in one hash table, every record would carry its 32-byte key
//! beside it and every step would hash and probe again. Here the table maps
//! a digest to a small slot number, records live in a vector, and a change
//! that already knows its slot (the journal's) reaches the record without a
//! lookup. The index's entries are small, so the part of memory a lookup
//! touches is half what it was.

use blockferry_core::{Digest, DigestMap};
use std::collections::hash_map::Entry;

/// Where a record lives; valid until the record is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(u32);

#[derive(Debug, Clone)]
pub struct BlockTable<T> {
    index: DigestMap<Slot>,
    records: Vec<Option<T>>,
    /// Slots of removed records, reused first.
    free: Vec<Slot>,
}

impl<T> Default for BlockTable<T> {
    fn default() -> Self {
        BlockTable { index: DigestMap::default(), records: Vec::new(), free: Vec::new() }
    }
}

impl<T> BlockTable<T> {
    /// Room for `blocks` records before the index grows.
    pub fn reserve(&mut self, blocks: usize) {
        self.index.reserve(blocks);
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn slot(&self, digest: &Digest) -> Option<Slot> {
        self.index.get(digest).copied()
    }

    pub fn get(&self, digest: &Digest) -> Option<&T> {
        self.slot(digest).and_then(|slot| self.at(slot))
    }

    pub fn get_mut(&mut self, digest: &Digest) -> Option<&mut T> {
        self.slot(digest).and_then(|slot| self.at_mut(slot))
    }

    pub fn at(&self, slot: Slot) -> Option<&T> {
        self.records.get(slot.0 as usize)?.as_ref()
    }

    pub fn at_mut(&mut self, slot: Slot) -> Option<&mut T> {
        self.records.get_mut(slot.0 as usize)?.as_mut()
    }

    /// The slot of `digest`'s record, made by `make` if there is none: one
    /// lookup either way. `None` only if the table is full (4 Gi records).
    pub fn slot_or_insert_with(&mut self, digest: Digest, make: impl FnOnce() -> T) -> Option<Slot> {
        match self.index.entry(digest) {
            Entry::Occupied(e) => Some(*e.get()),
            Entry::Vacant(e) => {
                let slot = match self.free.pop() {
                    Some(slot) => {
                        *self.records.get_mut(slot.0 as usize)? = Some(make());
                        slot
                    }
                    None => {
                        let slot = Slot(u32::try_from(self.records.len()).ok()?);
                        self.records.push(Some(make()));
                        slot
                    }
                };
                Some(*e.insert(slot))
            }
        }
    }

    /// Looks `digests` and their records up, discarding the answers, so
    /// that the work on them that follows finds them cached (see
    /// [`blockferry_core::warm`]).
    pub fn warm(&self, digests: impl IntoIterator<Item = Digest>) {
        for digest in digests {
            std::hint::black_box(self.get(&digest).is_some());
        }
    }

    /// Touches the records at `slots` (see [`BlockTable::warm`]).
    pub fn warm_slots(&self, slots: impl IntoIterator<Item = Slot>) {
        for slot in slots {
            std::hint::black_box(self.at(slot).is_some());
        }
    }

    pub fn remove(&mut self, digest: &Digest) {
        if let Some(slot) = self.index.remove(digest) {
            self.release(slot);
        }
    }

    /// Every record with its digest, in the index's (fixed, seedless) order.
    pub fn iter(&self) -> impl Iterator<Item = (&Digest, &T)> {
        self.index.iter().filter_map(|(digest, &slot)| Some((digest, self.at(slot)?)))
    }

    /// Keeps the records `keep` says to (it may change them too).
    pub fn retain(&mut self, mut keep: impl FnMut(&Digest, &mut T) -> bool) {
        let (records, free) = (&mut self.records, &mut self.free);
        self.index.retain(|digest, slot| {
            let Some(record) = records.get_mut(slot.0 as usize) else { return false };
            let kept = record.as_mut().is_some_and(|r| keep(digest, r));
            if !kept {
                *record = None;
                free.push(*slot);
            }
            kept
        });
    }

    fn release(&mut self, slot: Slot) {
        if let Some(record) = self.records.get_mut(slot.0 as usize) {
            *record = None;
            self.free.push(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest([n; 32])
    }

    #[test]
    fn records_are_found_by_digest_and_slot_and_slots_are_reused() {
        let mut table = BlockTable::default();
        let a = table.slot_or_insert_with(d(1), || "a").unwrap();
        let b = table.slot_or_insert_with(d(2), || "b").unwrap();
        assert_eq!(table.slot_or_insert_with(d(1), || "again"), Some(a), "an existing record is kept");
        assert_eq!(table.get(&d(1)), Some(&"a"));
        assert_eq!(table.at(b), Some(&"b"));
        table.remove(&d(1));
        assert_eq!((table.get(&d(1)), table.at(a), table.len()), (None, None, 1));
        let c = table.slot_or_insert_with(d(3), || "c").unwrap();
        assert_eq!(c, a, "the freed slot is reused");
        table.retain(|digest, _| *digest == d(3));
        assert_eq!(table.iter().collect::<Vec<_>>(), vec![(&d(3), &"c")]);
        assert_eq!(table.at(b), None);
    }
}
