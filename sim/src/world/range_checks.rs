//! Remembered keyed checks of [`RangeRef`] digests.
//!
//! The same run of content is packed into a digest (or a digest unpacked
//! into it) several times: the backup read, the replication read, the
//! replica write, the restore write and the oracle's view of each disk all
//! name the same block contents. Each packing costs a keyed BLAKE3 hash —
//! an eighth of a TiB-scale run's first hour. The check is a pure function
//! of the range, so it is remembered where a range has an obvious home:
//!
//! * a run of *initial* content (position 0) is one of a disk's aligned
//!   blocks of its length: a slot per block;
//! * a run whose newest content is guest write `seq` (position `seq + 1`)
//!   is named by that write: a slot per write, holding the run's first
//!   fine block too, since runs of several lengths meet at one write.
//!
//! Anything else (a digest that merely claims to be a range, say) is hashed
//! every time. A cache: it never changes an answer.

use super::content::{Check, ContentKey, RangeRef};
use std::cell::RefCell;

/// The remembered checks of the ranges of one origin disk.
#[derive(Default, Clone, Debug)]
pub struct RangeChecks {
    /// By run length in fine blocks (one or two lengths: the world's job
    /// block sizes).
    shapes: RefCell<Vec<(u32, Shape)>>,
}

#[derive(Default, Clone, Debug)]
struct Shape {
    /// By block (first fine block / length), for initial content.
    initial: Vec<Option<Check>>,
    /// By guest write (position - 1): the run's first fine block and check.
    written: Vec<Option<(u64, Check)>>,
}

impl RangeChecks {
    /// `range`'s check, computed once per home. The range's origin is the
    /// disk these checks belong to, `fine_count` and `log_len` its size in
    /// fine blocks and its write count: a range beyond them has no home and
    /// is simply hashed.
    pub fn check(&self, range: &RangeRef, key: &ContentKey, fine_count: u64, log_len: u64) -> Check {
        self.check_with(range, fine_count, log_len, || range.check(key))
    }

    /// Remembers `check`, computed elsewhere, as `range`'s (when the range
    /// has a home; see [`RangeChecks::check`]).
    pub fn remember(&self, range: &RangeRef, check: Check, fine_count: u64, log_len: u64) {
        self.check_with(range, fine_count, log_len, || check);
    }

    /// `range`'s remembered check, or `compute`'s answer, remembered.
    fn check_with(&self, range: &RangeRef, fine_count: u64, log_len: u64, compute: impl FnOnce() -> Check) -> Check {
        let count = u64::from(range.count);
        let fits = count > 0 && range.first.checked_add(count).is_some_and(|end| end <= fine_count);
        if !fits || range.position > log_len {
            return compute();
        }
        let mut shapes = self.shapes.borrow_mut();
        let at = match shapes.iter().position(|(c, _)| *c == range.count) {
            Some(at) => at,
            None => {
                shapes.push((range.count, Shape::default()));
                shapes.len() - 1
            }
        };
        let shape = &mut shapes[at].1;
        if range.position == 0 {
            if !range.first.is_multiple_of(count) {
                return compute();
            }
            let blocks = usize::try_from(fine_count.div_ceil(count)).unwrap_or(0);
            let Some(slot) = usize::try_from(range.first / count).ok().filter(|&i| i < blocks) else { return compute() };
            if shape.initial.len() < blocks {
                shape.initial.resize(blocks, None);
            }
            *shape.initial[slot].get_or_insert_with(compute)
        } else {
            let Some(slot) = usize::try_from(range.position - 1).ok() else { return compute() };
            if shape.written.len() <= slot {
                shape.written.resize(slot + 1, None);
            }
            match shape.written[slot] {
                Some((first, check)) if first == range.first => check,
                _ => {
                    let check = compute();
                    shape.written[slot] = Some((range.first, check));
                    check
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockferry_core::VmId;

    #[test]
    fn a_check_remembered_from_elsewhere_is_the_answer_after() {
        let key = ContentKey([3; 32]);
        let origin = blockferry_core::DiskId { vm: VmId(1), index: 0 };
        let checks = RangeChecks::default();
        let (initial, written) =
            (RangeRef { origin, first: 8, count: 4, position: 0 }, RangeRef { origin, first: 8, count: 4, position: 5 });
        // Not the real checks, so the answers can only come from memory.
        checks.remember(&initial, [9; 5], 64, 10);
        checks.remember(&written, [7; 5], 64, 10);
        assert_eq!(checks.check(&initial, &key, 64, 10), [9; 5]);
        assert_eq!(checks.check(&written, &key, 64, 10), [7; 5]);
        let homeless = RangeRef { origin, first: 9, count: 4, position: 0 };
        checks.remember(&homeless, [9; 5], 64, 10);
        assert_eq!(checks.check(&homeless, &key, 64, 10), homeless.check(&key), "an unaligned range has no home");
    }

    #[test]
    fn remembered_checks_equal_computed_ones() {
        let key = ContentKey([3; 32]);
        let origin = blockferry_core::DiskId { vm: VmId(1), index: 0 };
        let checks = RangeChecks::default();
        let ranges = [
            RangeRef { origin, first: 8, count: 4, position: 0 },
            RangeRef { origin, first: 9, count: 4, position: 0 },
            RangeRef { origin, first: 8, count: 4, position: 5 },
            RangeRef { origin, first: 12, count: 4, position: 5 },
            RangeRef { origin, first: 8, count: 2, position: 5 },
            RangeRef { origin, first: 60, count: 8, position: 0 },
            RangeRef { origin, first: 8, count: 4, position: 99 },
        ];
        for round in 0..2 {
            for r in &ranges {
                assert_eq!(checks.check(r, &key, 64, 10), r.check(&key), "round {round}: {r:?}");
            }
        }
    }
}
