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
        self.digests.get(i).map(|digest| *self.masked(i, digest))
    }

    /// Every block's digest, swap masked.
    pub fn to_vec(&self) -> Vec<Digest> {
        (0..self.len()).filter_map(|i| self.get(i)).collect()
    }

    /// Where `actual` differs from these digests, in order (blocks beyond
    /// the shorter of the two are not compared).
    pub fn differing(&self, actual: &Arc<[Digest]>) -> Vec<usize> {
        self.differing_from(&PointDigests::new(actual.clone(), 0..0))
    }

    /// Where two views differ, each with its own swap masked, in order
    /// (blocks beyond the shorter are not compared). Runs clear of either
    /// swap are compared a slice at a time, so equal vectors cost one pass
    /// of memory comparison.
    pub fn differing_from(&self, other: &PointDigests) -> Vec<usize> {
        let len = self.len().min(other.len());
        let (ours, theirs) = (&self.digests[..len], &other.digests[..len]);
        // Cut points: where either swap starts or ends.
        let mut cuts = vec![0, len];
        for swap in [&self.swap, &other.swap] {
            cuts.extend([swap.start.min(len), swap.end.min(len)]);
        }
        cuts.sort_unstable();
        cuts.dedup();
        let mut out = Vec::new();
        for run in cuts.windows(2) {
            let (start, end) = (run[0], run[1]);
            let masked = [&self.swap, &other.swap].iter().any(|swap| swap.contains(&start));
            if !masked {
                out.extend(differing_slices(&ours[start..end], &theirs[start..end], start));
                continue;
            }
            for (i, (a, b)) in (start..end).zip(ours[start..end].iter().zip(&theirs[start..end])) {
                if self.masked(i, a) != other.masked(i, b) {
                    out.push(i);
                }
            }
        }
        out
    }

    /// `digest`, block `i`'s, as this view reads it.
    fn masked<'a>(&self, i: usize, digest: &'a Digest) -> &'a Digest {
        if self.swap.contains(&i) { &Digest::ZERO_BLOCK } else { digest }
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
        assert!(point.differing(&actual.clone().into()).is_empty());
        actual[3] = d(0);
        actual[1550] = d(9);
        actual[2999] = d(0);
        assert_eq!(point.differing(&actual.clone().into()), vec![3, 1550, 2999]);
        assert_eq!(point.differing(&actual[..10].into()), vec![3], "only the common length is compared");
    }

    #[test]
    fn two_views_compare_each_with_its_own_swap() {
        let all: Vec<Digest> = (1..=3000).map(|i| d((i % 250 + 1) as u8)).collect();
        let mut changed = all.clone();
        (changed[10], changed[1510]) = (d(0), d(0));
        let a = PointDigests::new(all.clone().into(), 1500..1600);
        let b = PointDigests::new(changed.into(), 1500..1600);
        assert_eq!(a.differing_from(&b), vec![10], "block 1510 is swap in both");
        let unmasked = PointDigests::new(all.into(), 0..0);
        assert_eq!(a.differing_from(&unmasked), (1500..1600).collect::<Vec<_>>(), "swap reads as zero on one side only");
        let shifted = PointDigests::new(b.digests.clone(), 1400..1550);
        assert_eq!(a.differing_from(&shifted).len(), 1 + 100 + 50, "each side masks its own swap");
    }
}
