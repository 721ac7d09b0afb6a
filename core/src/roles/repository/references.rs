//! Which stored blocks the committed manifests reference, kept in time
//! proportional to what changed between points rather than to disk size.
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

use crate::block::{Digest, WARM_CHUNK};
use crate::digest_table::{DigestTable, Slot};

/// Stored blocks with their run-start counts. A hash table: every stored
/// block and every changed slot costs a lookup here, and nothing depends on
/// its order (garbage is handed out sorted).
#[derive(Debug, Default)]
pub(super) struct References {
    /// Run starts per block: a u32 keeps a record at 36 bytes, and no block
    /// starts 4 Gi runs (each needs a block slot of a point of its own).
    blocks: DigestTable<u32>,
    /// Where blocks were that were stored unreferenced or lost their last
    /// reference since garbage was last taken: the candidates, checked then
    /// (some are referenced again by that time). A list, not a set kept
    /// exact on every change: nearly every block is stored unreferenced and
    /// then referenced at once by its point's commit. By slot, not digest:
    /// checking one reads its record with no lookup, and slots are handed
    /// out in storing order, so the check mostly walks the records in
    /// order. (A slot freed and taken by another block since names that
    /// block, itself a candidate: whatever record a candidate slot holds is
    /// garbage exactly when its count is 0.)
    candidates: Vec<Slot>,
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
        References { blocks: DigestTable::with_capacity(blocks), candidates: Vec::new() }
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.blocks.contains(digest)
    }

    /// Blocks now in the store (unreferenced until a point uses them).
    pub fn stored(&mut self, digests: &[Digest]) {
        for chunk in digests.chunks(WARM_CHUNK) {
            self.blocks.warm(chunk.iter().copied());
            for &digest in chunk {
                if let Some((slot, true)) = self.blocks.find_or_insert_with(digest, || 0) {
                    self.candidates.push(slot);
                }
            }
        }
    }

    /// A point's disk joined its lineage between `prev` and `next`.
    pub fn insert(&mut self, slots: &Slots<'_>) {
        self.change(slots, 1);
    }

    /// A point's disk left its lineage (its neighbours stay).
    pub fn remove(&mut self, slots: &Slots<'_>) {
        self.change(slots, -1);
    }

    /// Takes every unreferenced block out, in digest order.
    pub fn take_garbage(&mut self) -> Vec<Digest> {
        let candidates = std::mem::take(&mut self.candidates);
        // One record read per candidate: found unreferenced, removed there
        // (so a repeated candidate is taken once). Only what is taken is
        // sorted: candidates are every block stored since, millions after
        // a full.
        let mut taken = Vec::new();
        for chunk in candidates.chunks(WARM_CHUNK) {
            self.blocks.warm_slots(chunk.iter().copied());
            taken.extend(chunk.iter().filter_map(|&slot| self.blocks.remove_at_if(slot, |&count| count == 0)));
        }
        taken.sort_unstable();
        taken
    }

    /// Applies `sign` times the run starts that `slots.this` adds between
    /// its neighbours, at every slot where it differs from both.
    fn change(&mut self, slots: &Slots<'_>, sign: i32) {
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
        self.add_all(&counted, sign);
    }

    /// [`References::add`] for each of `digests`, in order, a warmed
    /// chunk at a time (see [`DigestTable::warm`]).
    fn add_all(&mut self, digests: &[Digest], sign: i32) {
        for chunk in digests.chunks(WARM_CHUNK) {
            self.blocks.warm(chunk.iter().copied());
            for digest in chunk {
                self.add(*digest, sign);
            }
        }
    }

    fn add(&mut self, digest: Digest, sign: i32) {
        // Losing a run start never makes a record; gaining one may.
        let slot = match sign < 0 {
            true => self.blocks.slot(&digest),
            false => self.blocks.find_or_insert_with(digest, || 0).map(|(slot, _)| slot),
        };
        let Some((slot, count)) = slot.and_then(|slot| Some((slot, self.blocks.at_mut(slot)?))) else { return };
        let was = *count;
        *count = count.saturating_add_signed(sign);
        if was > 0 && *count == 0 {
            self.candidates.push(slot);
        }
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

    #[test]
    fn counts_are_positive_exactly_while_referenced() {
        let z = Digest::ZERO_BLOCK;
        let lineage = [vec![d(1), d(2), d(3), z], vec![d(1), d(4), d(3), d(1)], vec![d(5), d(2), d(3)], vec![d(1), d(2), z, d(6), d(7)]];
        let all: Vec<Digest> = (1..=7).map(d).collect();
        // Insert in a scrambled order, then remove in another: after each
        // step, the counts must agree with a scan.
        let mut live: Vec<usize> = Vec::new();
        let mut refs = References::default();
        refs.stored(&all);
        let check = |refs: &References, live: &[usize]| {
            let points: Vec<Vec<Digest>> = live.iter().map(|&i| lineage[i].clone()).collect();
            for digest in &all {
                assert_eq!(refs.blocks.get(digest) == Some(&0), !referenced(&points, *digest), "{digest:?} with {live:?}");
            }
        };
        for i in [2, 0, 3, 1] {
            let at = live.partition_point(|&j| j < i);
            live.insert(at, i);
            let points: Vec<Vec<Digest>> = live.iter().map(|&j| lineage[j].clone()).collect();
            refs.insert(&slots(&points, at));
            check(&refs, &live);
        }
        for i in [1, 0, 3, 2] {
            let at = live.iter().position(|&j| j == i).unwrap();
            let points: Vec<Vec<Digest>> = live.iter().map(|&j| lineage[j].clone()).collect();
            refs.remove(&slots(&points, at));
            live.remove(at);
            check(&refs, &live);
        }
        assert_eq!(refs.take_garbage(), all);
    }
}
