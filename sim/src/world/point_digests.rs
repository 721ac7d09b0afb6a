//! A disk's digest vector as a restore point of one of its snapshots must
//! hold it, without copying the oracle's vector.
//!
//! A point holds the guest's swap blocks as zeros (backups skip swap). The
//! oracle keeps one shared vector per disk position; the checker compares
//! such vectors after every commit, so masking swap by copying the vector
//! first would cost a whole-disk copy per comparison. The mask is applied
//! on the fly instead: swap is one contiguous run of job blocks.

use blockferry_core::Digest;
use std::ops::Range;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct PointDigests {
    digests: Arc<[Digest]>,
    /// Job blocks that read as zero.
    swap: Range<usize>,
}

impl PointDigests {
    /// `digests` with the blocks of `swap` reading as zero.
    pub fn new(digests: Arc<[Digest]>, swap: Range<usize>) -> PointDigests {
        PointDigests { digests, swap }
    }

    pub fn len(&self) -> usize {
        self.digests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Block `i`'s digest, swap masked.
    pub fn get(&self, i: usize) -> Option<Digest> {
        let digest = self.digests.get(i)?;
        Some(if self.swap.contains(&i) { Digest::ZERO_BLOCK } else { *digest })
    }

    /// Every block's digest, swap masked.
    pub fn to_vec(&self) -> Vec<Digest> {
        (0..self.len()).filter_map(|i| self.get(i)).collect()
    }

    /// Where `actual` differs from these digests, in order (blocks beyond
    /// the shorter of the two are not compared). Runs outside swap are
    /// compared a slice at a time, so equal vectors cost one pass of
    /// memory comparison.
    pub fn differing(&self, actual: &[Digest]) -> Vec<usize> {
        let len = self.len().min(actual.len());
        let swap = self.swap.start.min(len)..self.swap.end.min(len);
        let mut out = differing_slices(&self.digests[..swap.start], &actual[..swap.start], 0);
        out.extend(swap.clone().filter(|&i| actual[i] != Digest::ZERO_BLOCK));
        out.extend(differing_slices(&self.digests[swap.end..len], &actual[swap.end..len], swap.end));
        out
    }
}

/// Indexes (plus `offset`) where two equally long slices differ.
fn differing_slices(a: &[Digest], b: &[Digest], offset: usize) -> Vec<usize> {
    const CHUNK: usize = 1024;
    let mut out = Vec::new();
    for (n, (x, y)) in a.chunks(CHUNK).zip(b.chunks(CHUNK)).enumerate() {
        if x != y {
            out.extend(x.iter().zip(y).enumerate().filter(|(_, (p, q))| p != q).map(|(i, _)| offset + n * CHUNK + i));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest([n; 32])
    }

    #[test]
    fn swap_reads_as_zero_and_differences_are_found_everywhere() {
        let all: Vec<Digest> = (1..=3000).map(|i| d((i % 250 + 1) as u8)).collect();
        let point = PointDigests::new(all.clone().into(), 1500..1600);
        assert_eq!(point.get(1499), Some(all[1499]));
        assert_eq!(point.get(1500), Some(Digest::ZERO_BLOCK));
        assert_eq!(point.get(3000), None);
        let mut actual = point.to_vec();
        assert_eq!(actual.len(), 3000);
        assert!(point.differing(&actual).is_empty());
        actual[3] = d(0);
        actual[1550] = d(9);
        actual[2999] = d(0);
        assert_eq!(point.differing(&actual), vec![3, 1550, 2999]);
        assert_eq!(point.differing(&actual[..10]), vec![3], "only the common length is compared");
    }
}
