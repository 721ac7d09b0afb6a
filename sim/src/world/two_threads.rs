//! Pure per-block work spread over two threads.
//!
//! The world's memos (zero decisions, range checks) hold pure functions of
//! the world key: whichever thread computes an answer, it is the same
//! answer, so a run replays exactly however the work was split. A full
//! backup asks for such an answer for every block of a disk at once (a
//! keyed hash each), which is worth a second core on a TiB-scale disk.

/// Below this many items, a thread costs more than it saves.
pub const WORTH_A_THREAD: usize = 4096;

/// `f` of every item, in order: half computed here, half on a helper
/// thread. `None` if the helper panicked (the caller then computes its
/// answers one by one, as without this).
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Option<Vec<R>> {
    let (ours, theirs) = items.split_at(items.len() / 2);
    let (mut mine, helpers) = std::thread::scope(|scope| {
        let helper = scope.spawn(|| theirs.iter().map(&f).collect::<Vec<R>>());
        (ours.iter().map(&f).collect::<Vec<R>>(), helper.join())
    });
    mine.extend(helpers.ok()?);
    Some(mine)
}

#[cfg(test)]
mod tests {
    #[test]
    fn answers_come_back_in_order() {
        let items: Vec<u64> = (0..10_001).collect();
        assert_eq!(super::map(&items, |i| i * 3), Some(items.iter().map(|i| i * 3).collect()));
        assert_eq!(super::map(&[] as &[u64], |i| *i), Some(Vec::new()));
    }
}
