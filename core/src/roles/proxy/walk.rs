//! Cutting a disk task's block list into numbered batches, for every
//! pipeline that streams a bitmap of blocks inside a window of batches
//! (backup, replica sync).

use super::backup_task::BATCH_BYTES;
use crate::block::{BlockSize, Digest};
use crate::payload::BlockData;
use bitvec::vec::BitVec;

/// A batch's blocks as read from the host, with the base digests to compare
/// them against when the task compares.
pub type ReadyBatch = (Vec<(u64, BlockData)>, Option<Vec<Digest>>);

/// Takes a batch's reads (and base digests, when `compare`) once both are
/// in, checked against the blocks asked for. `Ok(None)` while something is
/// still missing; an error when a peer answered something else.
pub fn take_ready(
    asked: &[u64],
    read: &mut Option<Vec<(u64, BlockData)>>,
    base: &mut Option<Vec<Digest>>,
    compare: bool,
) -> Result<Option<ReadyBatch>, String> {
    if read.is_none() || (compare && base.is_none()) {
        return Ok(None);
    }
    let read = read.take().unwrap_or_default();
    let base = base.take();
    if read.len() != asked.len() || read.iter().zip(asked).any(|((i, _), want)| i != want) {
        return Err(format!("host returned blocks other than the {} requested", asked.len()));
    }
    if base.as_ref().is_some_and(|b| b.len() != read.len()) {
        return Err(format!("{} base digests answered for {} blocks", base.as_ref().map_or(0, Vec::len), read.len()));
    }
    Ok(Some((read, base)))
}

/// The blocks of a bitmap, handed out in batches of at most
/// [`BATCH_BYTES`] worth of blocks (at least one), in index order. Blocks
/// handed out leave the bitmap.
#[derive(Debug, Default)]
pub struct BatchWalk {
    blocks: BitVec,
    cursor: usize,
    per_batch: usize,
    next_batch: u64,
}

impl BatchWalk {
    /// A walk whose batch ids start at `first_id`: the proxy gives every
    /// run its own range, so an answer meant for an earlier run of the same
    /// task (one the manager gave up on and started again) is never taken
    /// for one of this run's batches.
    pub fn new(blocks: BitVec, block_size: BlockSize, first_id: u64) -> BatchWalk {
        let per_batch = (BATCH_BYTES / u64::from(block_size.bytes())).max(1) as usize;
        BatchWalk { blocks, cursor: 0, per_batch, next_batch: first_id }
    }

    /// The id the next batch will get.
    pub fn next_id(&self) -> u64 {
        self.next_batch
    }

    /// The next batch — its id and block indexes — or `None` when every
    /// block was handed out.
    pub fn next_batch(&mut self) -> Option<(u64, Vec<u64>)> {
        // Word by word from the cursor: a full backup hands out millions
        // of blocks a few at a time, and bitvec's iterator over a slice
        // from an arbitrary bit costs far more per call than this.
        const BITS: usize = usize::BITS as usize;
        let len = self.blocks.len();
        let words = self.blocks.as_raw_mut_slice();
        let mut blocks = Vec::with_capacity(self.per_batch.min(BITS));
        let mut word = self.cursor / BITS;
        let mut from_bit = self.cursor % BITS;
        while blocks.len() < self.per_batch && word < words.len() {
            let mut ones = words[word] & (usize::MAX << from_bit);
            while ones != 0 && blocks.len() < self.per_batch {
                let index = word * BITS + ones.trailing_zeros() as usize;
                if index >= len {
                    break;
                }
                blocks.push(index as u64);
                // Handed out: the block leaves the bitmap.
                words[word] &= !(1 << (index % BITS));
                ones &= ones - 1;
            }
            (word, from_bit) = (word + 1, 0);
        }
        let &last = blocks.last()?;
        self.cursor = last as usize + 1;
        let id = self.next_batch;
        self.next_batch += 1;
        Some((id, blocks))
    }

    /// Starts over on a new bitmap; batch ids go on from where they were,
    /// so a late answer about an earlier batch is never taken for a new one.
    pub fn restart(&mut self, blocks: BitVec) {
        (self.blocks, self.cursor) = (blocks, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_the_set_bits_in_order() {
        let bits: BitVec = (0..10).map(|i| i % 3 != 1).collect();
        // 4 MiB blocks: two per 8 MiB batch.
        let mut walk = BatchWalk::new(bits, BlockSize::LARGE, 0);
        let mut seen = Vec::new();
        while let Some((id, blocks)) = walk.next_batch() {
            assert!(blocks.len() <= 2);
            seen.push((id, blocks));
        }
        assert_eq!(seen, [(0, vec![0, 2]), (1, vec![3, 5]), (2, vec![6, 8]), (3, vec![9])]);
        assert_eq!(walk.next_batch(), None);
        walk.restart((0..3).map(|i| i == 1).collect());
        assert_eq!(walk.next_batch(), Some((4, vec![1])));
    }

    #[test]
    fn batches_across_words_match_the_set_bits() {
        // Bitmaps over several words, sparse and dense, with lengths that
        // end inside a word; 1 MiB blocks: eight per batch.
        for (len, every) in [(1000, 7), (200, 1), (129, 64), (64, 3), (1, 1)] {
            let bits: BitVec = (0..len).map(|i| i % every == every - 1 || i == len - 1).collect();
            let want: Vec<u64> = bits.iter_ones().map(|i| i as u64).collect();
            let mut walk = BatchWalk::new(bits, BlockSize::new(1 << 20).unwrap(), 0);
            let mut got = Vec::new();
            while let Some((_, blocks)) = walk.next_batch() {
                assert!(!blocks.is_empty() && blocks.len() <= 8, "{len}/{every}: {blocks:?}");
                got.extend(blocks);
            }
            assert_eq!(got, want, "{len}/{every}");
            assert!(walk.blocks.not_any(), "handed-out blocks leave the bitmap");
        }
    }
}
