//! Records keyed by block digest: a slab of records behind a compact index.
//!
//! A TiB-scale repository keeps millions of blocks, and nearly every block
//! that moves costs a lookup by digest. In a hash map keyed by 32-byte
//! digests, one lookup touches the map's control bytes and its large
//! buckets (two cache and TLB misses far apart, the table being far larger
//! than the caches) before the caller touches the value. Here the index
//! holds only 4-byte slot numbers (a table an eighth of the size, mostly
//! cached) and each record keeps its digest beside its value, so a lookup
//! confirms the key where the caller's data is: about one miss instead of
//! two or three. A record's slot also lets a caller that remembered it (a
//! journal) reach the record again with no lookup at all.
//!
//! The index's hasher has no random seed, and iteration follows the slab,
//! so a run replays exactly.

use crate::block::{Digest, DigestHasher};
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use std::hash::{BuildHasher, BuildHasherDefault};

/// Where a record lives; valid until the record is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(u32);

#[derive(Debug, Clone)]
pub struct DigestTable<T> {
    /// Slots, hashed by their record's digest.
    index: HashTable<Slot>,
    records: Vec<Option<(Digest, T)>>,
    /// Slots of removed records, reused first.
    free: Vec<Slot>,
}

impl<T> Default for DigestTable<T> {
    fn default() -> Self {
        DigestTable { index: HashTable::new(), records: Vec::new(), free: Vec::new() }
    }
}

fn hash(digest: &Digest) -> u64 {
    BuildHasherDefault::<DigestHasher>::default().hash_one(digest)
}

/// The digest of the record at `slot` (every slot in the index has one).
fn key_at<T>(records: &[Option<(Digest, T)>], slot: Slot) -> Option<&Digest> {
    records.get(slot.0 as usize)?.as_ref().map(|(digest, _)| digest)
}

impl<T> DigestTable<T> {
    pub fn with_capacity(records: usize) -> Self {
        let mut table = Self::default();
        table.reserve(records);
        table
    }

    /// Room for `records` more records before the index or the slab grows
    /// (growing either copies it whole and touches fresh memory).
    pub fn reserve(&mut self, records: usize) {
        let slab = &self.records;
        self.index.reserve(records, |&slot| key_at(slab, slot).map_or(0, hash));
        self.records.reserve(records.saturating_sub(self.free.len()));
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn slot(&self, digest: &Digest) -> Option<Slot> {
        self.index.find(hash(digest), |&slot| key_at(&self.records, slot) == Some(digest)).copied()
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.slot(digest).is_some()
    }

    pub fn get(&self, digest: &Digest) -> Option<&T> {
        self.slot(digest).and_then(|slot| self.at(slot))
    }

    pub fn get_mut(&mut self, digest: &Digest) -> Option<&mut T> {
        self.slot(digest).and_then(|slot| self.at_mut(slot))
    }

    pub fn at(&self, slot: Slot) -> Option<&T> {
        self.records.get(slot.0 as usize)?.as_ref().map(|(_, value)| value)
    }

    /// The digest of the record at `slot`.
    pub fn digest_at(&self, slot: Slot) -> Option<&Digest> {
        key_at(&self.records, slot)
    }

    pub fn at_mut(&mut self, slot: Slot) -> Option<&mut T> {
        self.records.get_mut(slot.0 as usize)?.as_mut().map(|(_, value)| value)
    }

    /// The slot of `digest`'s record, made by `make` if there is none, and
    /// whether it was made: one lookup either way. `None` only if the
    /// table is full (4 Gi records).
    pub fn find_or_insert_with(&mut self, digest: Digest, make: impl FnOnce() -> T) -> Option<(Slot, bool)> {
        let slab = &self.records;
        let entry =
            self.index.entry(hash(&digest), |&slot| key_at(slab, slot) == Some(&digest), |&slot| key_at(slab, slot).map_or(0, hash));
        match entry {
            Entry::Occupied(e) => Some((*e.get(), false)),
            Entry::Vacant(e) => {
                let record = Some((digest, make()));
                let slot = match self.free.pop() {
                    Some(slot) => {
                        *self.records.get_mut(slot.0 as usize)? = record;
                        slot
                    }
                    None => {
                        let slot = Slot(u32::try_from(self.records.len()).ok()?);
                        self.records.push(record);
                        slot
                    }
                };
                e.insert(slot);
                Some((slot, true))
            }
        }
    }

    /// Removes `digest`'s record if `remove` says so; returns whether it did.
    pub fn remove_if(&mut self, digest: &Digest, remove: impl FnOnce(&T) -> bool) -> bool {
        let slab = &self.records;
        let Ok(entry) = self.index.find_entry(hash(digest), |&slot| key_at(slab, slot) == Some(digest)) else { return false };
        let slot = *entry.get();
        let value = self.records.get(slot.0 as usize).and_then(Option::as_ref).map(|(_, value)| value);
        if !value.is_some_and(remove) {
            return false;
        }
        entry.remove();
        self.release(slot);
        true
    }

    /// Removes the record at `slot` if there is one and `remove` says so;
    /// returns its digest if it did. Reaches the record without hashing.
    pub fn remove_at_if(&mut self, slot: Slot, remove: impl FnOnce(&T) -> bool) -> Option<Digest> {
        let (digest, value) = self.records.get(slot.0 as usize)?.as_ref()?;
        if !remove(value) {
            return None;
        }
        let digest = *digest;
        if let Ok(entry) = self.index.find_entry(hash(&digest), |&found| found == slot) {
            entry.remove();
        }
        self.release(slot);
        Some(digest)
    }

    pub fn remove(&mut self, digest: &Digest) {
        self.remove_if(digest, |_| true);
    }

    /// Looks `digests` and their records up, discarding the answers. A
    /// table of millions of blocks lives far outside the caches, and a
    /// lookup mostly waits for memory; independent read-only lookups wait
    /// together, so walking a chunk of digests ([`crate::WARM_CHUNK`]) this
    /// way first lets the work on them that follows (inserts, updates)
    /// find their records cached.
    pub fn warm(&self, digests: impl IntoIterator<Item = Digest>) {
        for digest in digests {
            std::hint::black_box(self.get(&digest).is_some());
        }
    }

    /// Touches the records at `slots` (see [`DigestTable::warm`]).
    pub fn warm_slots(&self, slots: impl IntoIterator<Item = Slot>) {
        for slot in slots {
            std::hint::black_box(self.at(slot).is_some());
        }
    }

    /// Every record with its digest, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (&Digest, &T)> {
        self.records.iter().flatten().map(|(digest, value)| (digest, value))
    }

    /// Keeps the records `keep` says to (it may change them too).
    pub fn retain(&mut self, mut keep: impl FnMut(&Digest, &mut T) -> bool) {
        let (records, free) = (&mut self.records, &mut self.free);
        self.index.retain(|slot| {
            let Some(record) = records.get_mut(slot.0 as usize) else { return false };
            let kept = record.as_mut().is_some_and(|(digest, value)| keep(digest, value));
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
        let mut table = DigestTable::default();
        let (a, made) = table.find_or_insert_with(d(1), || "a").unwrap();
        assert!(made);
        let (b, _) = table.find_or_insert_with(d(2), || "b").unwrap();
        assert_eq!(table.find_or_insert_with(d(1), || "again"), Some((a, false)), "an existing record is kept");
        assert_eq!(table.get(&d(1)), Some(&"a"));
        assert_eq!((table.at(b), table.digest_at(b)), (Some(&"b"), Some(&d(2))));
        assert!(!table.remove_if(&d(1), |v| *v == "b"), "kept when the test says no");
        table.remove(&d(1));
        assert_eq!((table.get(&d(1)), table.at(a), table.len()), (None, None, 1));
        let (c, _) = table.find_or_insert_with(d(3), || "c").unwrap();
        assert_eq!(c, a, "the freed slot is reused");
        table.retain(|digest, _| *digest == d(3));
        assert_eq!(table.iter().collect::<Vec<_>>(), vec![(&d(3), &"c")]);
        assert_eq!(table.at(b), None);
        assert!(!table.contains(&d(2)));
        assert_eq!(table.remove_at_if(c, |v| *v == "x"), None, "kept when the test says no");
        assert_eq!(table.remove_at_if(c, |v| *v == "c"), Some(d(3)));
        assert_eq!((table.len(), table.get(&d(3))), (0, None));
        assert_eq!(table.remove_at_if(c, |_| true), None, "an empty slot holds nothing to remove");
    }

    #[test]
    fn many_records_survive_growth_and_removal() {
        let digest = |i: u32| {
            let mut bytes = [0u8; 32];
            bytes[..4].copy_from_slice(&i.to_le_bytes());
            bytes[31] = (i % 251) as u8;
            Digest(bytes)
        };
        let mut table = DigestTable::with_capacity(10);
        for i in 0..10_000u32 {
            assert!(table.find_or_insert_with(digest(i), || i).is_some_and(|(_, made)| made));
        }
        for i in (0..10_000u32).step_by(3) {
            assert!(table.remove_if(&digest(i), |v| *v == i));
        }
        for i in 0..10_000u32 {
            assert_eq!(table.get(&digest(i)).copied(), (i % 3 != 0).then_some(i), "{i}");
        }
        assert_eq!(table.len(), 6_666);
        assert_eq!(table.iter().count(), 6_666);
    }
}
