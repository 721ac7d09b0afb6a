//! Which stored blocks the committed manifests reference, kept in time
//! proportional to what changed between points rather than to disk size;
//! and, for the blocks none references, when they were last touched.
//!
//! Garbage collection only needs to know whether a block is referenced at
//! all. Counting every slot of every manifest would cost a map update per
//! block of the disk at each commit and each deletion, although consecutive
//! points of a disk differ in a few blocks. So the count of a digest is
//! instead the number of *runs* it starts: take the points of one VM disk
//! (a *lineage*) in point order; at each block slot, a digest starts a run
//! at a point when the previous point of the lineage held something else
//! there. A digest is referenced exactly when it starts at least one run.
//!
//! Inserting point `m` between its lineage neighbours `p` and `n` changes
//! the run starts of one slot only if `m` differs there from both (if it
//! equals `p`, it just extends `p`'s run; if it equals `n`, it starts the
//! run `n` started before). So a commit or deletion touches the slots that
//! differ from a neighbour: found by one comparison of digest vectors, not
//! one map update per block.
//!
//! An unreferenced block's record holds instead the [`Epoch`] it was last
//! *touched* in: stored, confirmed to a writer, or unreferenced by a
//! deletion (see `writers` for why that makes collecting safe while points
//! are pending). A block that is referenced needs no touch: it is touched
//! when it loses its last reference, later than any confirmation of it.
//! So touching costs nothing beyond the lookup the caller makes anyway.

use crate::block::{Digest, WARM_CHUNK};
use crate::digest_table::{DigestTable, Slot};
use std::collections::BTreeMap;

/// A count of garbage-collection time: see `writers`. 31 bits, so that a
/// [`Record`] holds one beside its flag; the clock stops at the last epoch
/// (2 Gi points later), which only makes collection more cautious.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Epoch(u32);

impl Epoch {
    const LAST: Epoch = Epoch(UNREFERENCED - 1);

    pub fn next(self) -> Epoch {
        Epoch(self.0.saturating_add(1).min(Self::LAST.0))
    }
}

/// The flag of a [`Record`] that holds an epoch rather than a run count.
const UNREFERENCED: u32 = 1 << 31;

/// A block's record: the runs it starts, or, when it starts none, the
/// epoch it was last touched in. One u32 keeps a record at 36 bytes (the
/// table of a TiB-scale repository is millions of records), and no block
/// starts 2 Gi runs (each needs a block slot of a point of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record(u32);

impl Record {
    fn unreferenced(touched: Epoch) -> Record {
        Record(UNREFERENCED | touched.0.min(Epoch::LAST.0))
    }

    /// When it was last touched, if it is unreferenced.
    fn touched(self) -> Option<Epoch> {
        (self.0 & UNREFERENCED != 0).then_some(Epoch(self.0 & !UNREFERENCED))
    }

    fn runs(self) -> u32 {
        match self.touched() {
            Some(_) => 0,
            None => self.0,
        }
    }

    /// `sign` run starts more (or fewer), unreferenced in `epoch` if none
    /// is left.
    fn add(self, sign: i32, epoch: Epoch) -> Record {
        match self.runs().saturating_add_signed(sign).min(UNREFERENCED - 1) {
            0 => self.touched().map_or(Record::unreferenced(epoch), |_| self),
            runs => Record(runs),
        }
    }
}

/// Stored blocks with their records. A hash table: every stored block and
/// every changed slot costs a lookup here, and nothing depends on its
/// order (garbage is handed out sorted).
#[derive(Debug, Default)]
pub(super) struct References {
    blocks: DigestTable<Record>,
    /// Where blocks were that were stored unreferenced or lost their last
    /// reference, by the epoch that happened in: the candidates, checked
    /// once the cutoff passes their epoch (some are referenced again by
    /// that time, some touched since). Lists, not a set kept exact on every
    /// change: nearly every block is stored unreferenced and then
    /// referenced at once by its point's commit. By epoch, so a collection
    /// reads only candidates it may take (a pending full's millions wait
    /// unread); by slot, not digest: checking one reads its record with no
    /// lookup, and slots are handed out in storing order, so the check
    /// mostly walks the records in order. (A slot freed and taken by
    /// another block since names that block, itself a candidate: whatever
    /// record a candidate slot holds is garbage exactly when it is
    /// unreferenced and was touched before the cutoff.)
    candidates: BTreeMap<Epoch, Vec<Slot>>,
}

/// One disk's digest vectors: the point's and its lineage neighbours'.
pub(super) struct Slots<'a> {
    pub prev: Option<&'a [Digest]>,
    pub this: &'a [Digest],
    pub next: Option<&'a [Digest]>,
}

impl References {
    /// Room for `blocks` blocks before the table grows: growing a table of
    /// millions of blocks step by step copies it each time.
    pub fn with_capacity(blocks: usize) -> References {
        References { blocks: DigestTable::with_capacity(blocks), candidates: BTreeMap::new() }
    }

    /// Whether the block is in the store; if it is, a writer was just told
    /// so, and, if unreferenced, it is touched in `epoch`. One lookup.
    pub fn confirm(&mut self, digest: &Digest, epoch: Epoch) -> bool {
        let Some(record) = self.blocks.get_mut(digest) else { return false };
        if record.touched().is_some() {
            *record = Record::unreferenced(epoch);
        }
        true
    }

    /// Blocks now in the store, in `epoch` (unreferenced until a point uses
    /// them; one already there is touched).
    pub fn stored(&mut self, digests: &[Digest], epoch: Epoch) {
        let mut new = Vec::new();
        for chunk in digests.chunks(WARM_CHUNK) {
            self.blocks.warm(chunk.iter().copied());
            for &digest in chunk {
                match self.blocks.find_or_insert_with(digest, || Record::unreferenced(epoch)) {
                    Some((slot, true)) => new.push(slot),
                    Some((slot, false)) => self.confirm_at(slot, epoch),
                    None => {}
                }
            }
        }
        self.add_candidates(epoch, new);
    }

    /// A point's disk joined its lineage between `prev` and `next`.
    pub fn insert(&mut self, slots: &Slots<'_>) {
        // Gaining run starts never unreferences a block: the epoch is unused.
        self.change(slots, 1, Epoch::default());
    }

    /// A point's disk left its lineage (its neighbours stay) in `epoch`.
    pub fn remove(&mut self, slots: &Slots<'_>, epoch: Epoch) {
        self.change(slots, -1, epoch);
    }

    /// Takes out every unreferenced block touched before `cutoff` (every
    /// one, without a cutoff), in digest order.
    pub fn take_garbage(&mut self, cutoff: Option<Epoch>) -> Vec<Digest> {
        let due = match cutoff {
            Some(cutoff) => {
                let later = self.candidates.split_off(&cutoff);
                std::mem::replace(&mut self.candidates, later)
            }
            None => std::mem::take(&mut self.candidates),
        };
        // One record read per candidate: found garbage, removed there (so
        // a repeated candidate is taken once). Only what is taken is
        // sorted: candidates are every block stored since, millions after
        // a full.
        let mut taken = Vec::new();
        let mut spared = Vec::new();
        for slots in due.into_values() {
            for chunk in slots.chunks(WARM_CHUNK) {
                self.blocks.warm_slots(chunk.iter().copied());
                for &slot in chunk {
                    match self.blocks.at(slot).and_then(|record| record.touched()) {
                        Some(touched) if cutoff.is_some_and(|cutoff| touched >= cutoff) => spared.push((touched, slot)),
                        Some(_) => taken.extend(self.blocks.remove_at_if(slot, |_| true)),
                        None => {}
                    }
                }
            }
        }
        // Touched since it became a candidate: checked again once the
        // cutoff passes that touch.
        for (touched, slot) in spared {
            self.candidates.entry(touched).or_default().push(slot);
        }
        taken.sort_unstable();
        taken
    }

    /// Touches the record at `slot`, if unreferenced (it is a candidate
    /// already, from an epoch no later).
    fn confirm_at(&mut self, slot: Slot, epoch: Epoch) {
        if let Some(record) = self.blocks.at_mut(slot)
            && record.touched().is_some()
        {
            *record = Record::unreferenced(epoch);
        }
    }

    /// Adds candidates of `epoch` (a full backup's are millions: a first
    /// list is moved in, not copied).
    fn add_candidates(&mut self, epoch: Epoch, slots: Vec<Slot>) {
        if slots.is_empty() {
            return;
        }
        match self.candidates.get_mut(&epoch) {
            Some(list) => list.extend(slots),
            None => _ = self.candidates.insert(epoch, slots),
        }
    }

    /// Applies `sign` times the run starts that `slots.this` adds between
    /// its neighbours, at every slot where it differs from both.
    fn change(&mut self, slots: &Slots<'_>, sign: i32, epoch: Epoch) {
        let at = |v: Option<&[Digest]>, i: usize| v.and_then(|v| v.get(i)).copied().filter(|d| !d.is_zero_block());
        let this = Some(slots.this);
        let mut counted = Vec::new();
        let mut apply = |i: usize| {
            let (p, m, n) = (at(slots.prev, i), at(this, i), at(slots.next, i));
            if m == p || m == n {
                return;
            }
            if let Some(m) = m {
                counted.push(m);
            }
            // `n` started a run after `p`; after `m` it still does (m != n).
            // It no longer does only where it used to continue `p`'s run.
            if let Some(n) = n
                && Some(n) == p
            {
                counted.push(n);
            }
        };
        // Slots where `this` equals a neighbour change nothing, so compare
        // with one neighbour and visit only where they differ.
        match (slots.prev, slots.next) {
            (Some(other), _) | (None, Some(other)) => {
                // A run at a time: consecutive points share nearly every
                // slot, so most runs are equal and cost one comparison.
                const RUN: usize = 64;
                let common = other.len().min(slots.this.len());
                for start in (0..common).step_by(RUN) {
                    let end = (start + RUN).min(common);
                    if other[start..end] != slots.this[start..end] {
                        (start..end).filter(|&i| other[i] != slots.this[i]).for_each(&mut apply);
                    }
                }
                (common..other.len().max(slots.this.len())).for_each(apply);
            }
            (None, None) => (0..slots.this.len()).for_each(apply),
        }
        self.add_all(&counted, sign, epoch);
    }

    /// [`References::add`] for each of `digests`, in order, a warmed
    /// chunk at a time (see [`DigestTable::warm`]); what loses its last run
    /// start is unreferenced in `epoch`.
    fn add_all(&mut self, digests: &[Digest], sign: i32, epoch: Epoch) {
        let mut unreferenced = Vec::new();
        for chunk in digests.chunks(WARM_CHUNK) {
            self.blocks.warm(chunk.iter().copied());
            for digest in chunk {
                unreferenced.extend(self.add(*digest, sign, epoch));
            }
        }
        self.add_candidates(epoch, unreferenced);
    }

    /// Returns the block's slot if it lost its last run start.
    fn add(&mut self, digest: Digest, sign: i32, epoch: Epoch) -> Option<Slot> {
        // Losing a run start never makes a record; gaining one may.
        let slot = match sign < 0 {
            true => self.blocks.slot(&digest),
            false => self.blocks.find_or_insert_with(digest, || Record::unreferenced(epoch)).map(|(slot, _)| slot),
        }?;
        let record = self.blocks.at_mut(slot)?;
        let was = *record;
        *record = was.add(sign, epoch);
        (was.runs() > 0 && record.runs() == 0).then_some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest([n; 32])
    }

    /// Whether a digest is referenced, the slow way.
    fn referenced(points: &[Vec<Digest>], digest: Digest) -> bool {
        points.iter().flatten().any(|x| *x == digest)
    }

    fn slots<'a>(points: &'a [Vec<Digest>], i: usize) -> Slots<'a> {
        Slots { prev: i.checked_sub(1).map(|j| points[j].as_slice()), this: &points[i], next: points.get(i + 1).map(Vec::as_slice) }
    }

    /// Checks, for every digest of `all`, that the counts say it is
    /// referenced exactly when a scan of the live points finds it.
    fn check(refs: &References, lineage: &[Vec<Digest>], live: &[usize], all: &[Digest]) -> Result<(), String> {
        let points: Vec<Vec<Digest>> = live.iter().map(|&i| lineage[i].clone()).collect();
        for digest in all {
            let counted = refs.blocks.get(digest).is_some_and(|r| r.runs() > 0);
            if counted != referenced(&points, *digest) {
                return Err(format!("{digest:?} counted {counted} with points {live:?}"));
            }
        }
        Ok(())
    }

    /// Inserts the points of `lineage` in `inserts` order, then removes
    /// them in `removes` order, checking the counts after each step; at
    /// the end every block is garbage.
    fn insert_then_remove(lineage: &[Vec<Digest>], inserts: &[usize], removes: &[usize], all: &[Digest]) -> Result<(), String> {
        let mut live: Vec<usize> = Vec::new();
        let mut refs = References::default();
        refs.stored(all, Epoch::default());
        for &i in inserts {
            let at = live.partition_point(|&j| j < i);
            live.insert(at, i);
            let points: Vec<Vec<Digest>> = live.iter().map(|&j| lineage[j].clone()).collect();
            refs.insert(&slots(&points, at));
            check(&refs, lineage, &live, all)?;
        }
        for &i in removes {
            let at = live.iter().position(|&j| j == i).ok_or("removes only what was inserted")?;
            let points: Vec<Vec<Digest>> = live.iter().map(|&j| lineage[j].clone()).collect();
            refs.remove(&slots(&points, at), Epoch::default());
            live.remove(at);
            check(&refs, lineage, &live, all)?;
        }
        let garbage = refs.take_garbage(None);
        if garbage != all {
            return Err(format!("garbage {garbage:?}"));
        }
        Ok(())
    }

    #[test]
    fn counts_are_positive_exactly_while_referenced() {
        let z = Digest::ZERO_BLOCK;
        let lineage = [vec![d(1), d(2), d(3), z], vec![d(1), d(4), d(3), d(1)], vec![d(5), d(2), d(3)], vec![d(1), d(2), z, d(6), d(7)]];
        let all: Vec<Digest> = (1..=7).map(d).collect();
        // Insert in a scrambled order, then remove in another.
        assert_eq!(insert_then_remove(&lineage, &[2, 0, 3, 1], &[1, 0, 3, 2], &all), Ok(()));
    }

    use proptest::prelude::*;

    /// A lineage of up to five points of one disk, each the previous one
    /// with a few slots changed and its size changed now and then: long
    /// enough that the comparison of neighbours skips whole equal runs of
    /// slots and visits others; and two orders of its points.
    fn lineage() -> impl Strategy<Value = (Vec<Vec<Digest>>, Vec<usize>, Vec<usize>)> {
        let digest = || prop_oneof![1 => Just(Digest::ZERO_BLOCK), 6 => (1u8..=8).prop_map(d)];
        let first = prop::collection::vec(digest(), 0..160);
        let step = (prop::collection::vec((0usize..160, digest()), 0..6), prop::option::weighted(0.3, 0usize..160));
        let lineage = (first, prop::collection::vec(step, 0..4)).prop_map(|(first, steps)| {
            let mut points = vec![first];
            for (changes, resize) in steps {
                let mut next = points[points.len() - 1].clone();
                if let Some(len) = resize {
                    next.resize(len, Digest::ZERO_BLOCK);
                }
                for (i, digest) in changes {
                    if let Some(slot) = next.get_mut(i) {
                        *slot = digest;
                    }
                }
                points.push(next);
            }
            points
        });
        lineage.prop_flat_map(|lineage| {
            let order: Vec<usize> = (0..lineage.len()).collect();
            (Just(lineage), Just(order.clone()).prop_shuffle(), Just(order).prop_shuffle())
        })
    }

    proptest! {
        /// Issue 13 §7: a wrong count deletes live data. Whatever the
        /// points and the order they are committed and deleted in, a block
        /// is counted exactly while some point references it.
        #[test]
        fn counts_follow_a_model_of_the_lineage((lineage, inserts, removes) in lineage()) {
            let all: Vec<Digest> = (1..=8).map(d).collect();
            prop_assert_eq!(insert_then_remove(&lineage, &inserts, &removes, &all), Ok(()));
        }
    }
}
