//! The in-memory digest index: where each stored block's record is, and
//! how many live bytes each pack holds (what garbage collection weighs).
//!
//! A digest can have more than one record that no tombstone killed: a
//! repaired block's damaged copy, or a record a crash left behind in a pack
//! being compacted. The newest record (highest pack, then offset) is the
//! *primary*, the one served; the others are *shadows*, kept only so that
//! deleting the block kills every copy (a shadow left alive would bring
//! the block back after a restart) and dropped when their pack goes.

use super::record::{Loc, RECORD_HEADER_LEN};
use blockferry_core::Digest;
use blockferry_core::digest_table::DigestTable;
use std::collections::{BTreeMap, HashMap};

/// A block's primary record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub at: Loc,
    pub body_len: u32,
    /// Found damaged by a read or `verify` since the store opened: a put of
    /// the block replaces it.
    pub damaged: bool,
}

impl Entry {
    pub fn record_len(&self) -> u64 {
        RECORD_HEADER_LEN as u64 + u64::from(self.body_len)
    }
}

#[derive(Debug, Default)]
pub struct BlockIndex {
    table: DigestTable<Entry>,
    shadows: HashMap<Digest, Vec<Loc>>,
    /// Record bytes of primaries, in all and per pack.
    live_bytes: u64,
    pack_live: BTreeMap<u32, u64>,
}

impl BlockIndex {
    pub fn get(&self, digest: &Digest) -> Option<&Entry> {
        self.table.get(digest)
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn live_bytes(&self) -> u64 {
        self.live_bytes
    }

    pub fn pack_live(&self, pack: u32) -> u64 {
        self.pack_live.get(&pack).copied().unwrap_or(0)
    }

    pub fn mark_damaged(&mut self, digest: &Digest) {
        if let Some(entry) = self.table.get_mut(digest) {
            entry.damaged = true;
        }
    }

    /// Every stored digest, sorted.
    pub fn digests(&self) -> Vec<Digest> {
        let mut digests: Vec<Digest> = self.table.iter().map(|(d, _)| *d).collect();
        digests.sort_unstable();
        digests
    }

    /// Every primary record, in pack order (the order to read them in).
    pub fn by_location(&self) -> Vec<(Digest, Entry)> {
        let mut all: Vec<(Digest, Entry)> = self.table.iter().map(|(d, e)| (*d, *e)).collect();
        all.sort_unstable_by_key(|(_, e)| e.at);
        all
    }

    fn count(&mut self, entry: &Entry, added: bool) {
        let live = self.pack_live.entry(entry.at.pack).or_default();
        if added {
            *live += entry.record_len();
            self.live_bytes += entry.record_len();
        } else {
            *live = live.saturating_sub(entry.record_len());
            self.live_bytes = self.live_bytes.saturating_sub(entry.record_len());
        }
    }

    /// A newer record of `digest` at `at` becomes its primary; the previous
    /// primary, if any, becomes a shadow.
    pub fn insert(&mut self, digest: Digest, at: Loc, body_len: u32) {
        let entry = Entry { at, body_len, damaged: false };
        let Some((slot, new)) = self.table.find_or_insert_with(digest, || entry) else { return };
        if !new {
            let Some(current) = self.table.at_mut(slot) else { return };
            let old = std::mem::replace(current, entry);
            if old.at == at {
                return;
            }
            self.count(&old, false);
            self.shadows.entry(digest).or_default().push(old.at);
        }
        self.count(&entry, true);
    }

    /// Forgets `digest` and its shadows.
    pub fn remove(&mut self, digest: &Digest) {
        let Some(entry) = self.table.get(digest).copied() else { return };
        self.table.remove(digest);
        self.count(&entry, false);
        self.shadows.remove(digest);
    }

    /// The location of every record of `digest` (the tombstones a delete
    /// writes), primary first.
    pub fn copies(&self, digest: &Digest) -> Vec<Loc> {
        let Some(entry) = self.table.get(digest) else { return Vec::new() };
        let mut all = vec![entry.at];
        all.extend(self.shadows.get(digest).into_iter().flatten());
        all
    }

    /// Moves `digest`'s primary from `from` to `to` (compaction copied it),
    /// if `from` is still its primary.
    pub fn relocate(&mut self, digest: &Digest, from: Loc, to: Loc) -> bool {
        let Some(entry) = self.table.get(digest).copied().filter(|e| e.at == from) else { return false };
        self.count(&entry, false);
        let moved = Entry { at: to, ..entry };
        if let Some(e) = self.table.get_mut(digest) {
            *e = moved;
        }
        self.count(&moved, true);
        true
    }

    /// Pack `pack` is gone: forget the shadows in it.
    pub fn drop_pack(&mut self, pack: u32) {
        self.shadows.retain(|_, locs| {
            locs.retain(|l| l.pack != pack);
            !locs.is_empty()
        });
        self.pack_live.remove(&pack);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(pack: u32, offset: u64) -> Loc {
        Loc { pack, offset }
    }

    #[test]
    fn a_newer_copy_becomes_primary_and_a_delete_names_every_copy() {
        let d = Digest([1; 32]);
        let mut index = BlockIndex::default();
        index.insert(d, at(1, 24), 100);
        index.insert(d, at(2, 24), 100);
        assert_eq!(index.get(&d).map(|e| e.at), Some(at(2, 24)));
        assert_eq!((index.pack_live(1), index.pack_live(2), index.live_bytes()), (0, 156, 156));
        assert_eq!(index.copies(&d), vec![at(2, 24), at(1, 24)]);
        index.remove(&d);
        assert_eq!((index.len(), index.live_bytes(), index.pack_live(2)), (0, 0, 0));
        assert!(index.copies(&d).is_empty());
    }

    #[test]
    fn relocation_moves_live_bytes_and_dropping_a_pack_forgets_its_shadows() {
        let d = Digest([2; 32]);
        let mut index = BlockIndex::default();
        index.insert(d, at(1, 24), 10);
        index.insert(d, at(2, 24), 10);
        assert!(index.relocate(&d, at(2, 24), at(3, 100)));
        assert!(!index.relocate(&d, at(2, 24), at(4, 100)), "not its primary any more");
        assert_eq!((index.pack_live(2), index.pack_live(3)), (0, 66));
        index.drop_pack(1);
        assert_eq!(index.copies(&d), vec![at(3, 100)]);
    }
}
