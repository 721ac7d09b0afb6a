//! Garbage collection frees the space of deleted blocks, keeps every live
//! one, and never brings a deleted block back.

use super::*;

/// 60 blocks in small packs, synced, in batches of three.
fn filled(dir: &Path) -> (Store, Vec<EncodedBlock>) {
    let (mut store, _) = open(dir, small_packs());
    let stored = blocks(0..60);
    for batch in stored.chunks(3) {
        ok(put(&mut store, batch));
    }
    sync(&mut store);
    (store, stored)
}

#[test]
fn collection_after_deletes_frees_disk_space_and_keeps_every_live_block() {
    let dir = temp();
    let (mut store, stored) = filled(dir.path());
    let kept: Vec<EncodedBlock> = stored.iter().step_by(3).cloned().collect();
    let gone: Vec<EncodedBlock> = stored.iter().filter(|b| !kept.contains(b)).cloned().collect();
    ok(store.apply(StorageOp::PutManifest(sample_manifest(1, &digests(&kept)))));
    ok(store.apply(StorageOp::DeleteBlocks(digests(&gone))));
    sync(&mut store);
    let before = pack_bytes(dir.path());
    let gone_bytes: u64 = gone.iter().map(|b| 56 + b.payload.len() as u64).sum();
    let report = store.collect_garbage().expect("collection runs");
    let after = pack_bytes(dir.path());
    assert!(report.packs_compacted > 0, "{report:?}");
    assert!(before - after >= gone_bytes / 2, "freed {} of {gone_bytes} deleted bytes ({report:?})", before - after);
    assert_eq!(after, store.stats().pack_bytes + index_bytes(dir.path()));
    assert_readable(&mut store, &kept);
    let mut expected = digests(&kept);
    expected.sort();
    assert_eq!(recover(&mut store).1, expected);
    drop(store);
    let (mut store, report) = open(dir.path(), small_packs());
    assert!(report.is_clean() && report.removed_packs.is_empty() && report.truncated_tails.is_empty(), "{report:?}");
    assert_eq!(recover(&mut store).1, expected, "no deleted block came back");
    assert_readable(&mut store, &kept);
    assert!(store.verify().expect("verify runs").is_clean());
}

fn index_bytes(root: &Path) -> u64 {
    std::fs::read_dir(root.join("packs"))
        .expect("packs")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "idx"))
        .map(|p| std::fs::metadata(p).expect("metadata").len())
        .sum()
}

#[test]
fn packs_with_nothing_live_are_deleted_whole() {
    let dir = temp();
    let (mut store, stored) = filled(dir.path());
    let packs = pack_files(dir.path()).len();
    ok(store.apply(StorageOp::DeleteBlocks(digests(&stored))));
    sync(&mut store);
    let report = store.collect_garbage().expect("collection runs");
    assert!(report.packs_removed as usize >= packs - 1, "{report:?}");
    assert!(pack_files(dir.path()).len() <= 2, "{:?}", pack_files(dir.path()));
    drop(store);
    let (mut store, _) = open(dir.path(), small_packs());
    assert!(recover(&mut store).1.is_empty(), "no deleted block came back");
}

/// A pack with nothing live whose tombstones kill records in a pack that
/// stays is compacted (its tombstones copied), not deleted: else the
/// killed records would come back on the next open.
#[test]
fn tombstones_outlive_their_pack_while_their_targets_remain() {
    let dir = temp();
    let (mut store, stored) = open_with(dir.path());
    let in_first: Vec<&EncodedBlock> = stored.iter().filter(|b| store.index.get(&b.digest).is_some_and(|e| e.at.pack == 1)).collect();
    let victim = in_first[0].clone();
    // The tombstone lands in the open pack; then that pack fills up with
    // blocks that are deleted in turn, and is sealed.
    ok(store.apply(StorageOp::DeleteBlocks(vec![victim.digest])));
    let filler = blocks(100..112);
    for pair in filler.chunks(2) {
        ok(put(&mut store, pair));
    }
    sync(&mut store);
    ok(store.apply(StorageOp::DeleteBlocks(digests(&filler))));
    sync(&mut store);
    store.collect_garbage().expect("collection runs");
    drop(store);
    let (mut store, _) = open(dir.path(), small_packs());
    assert_eq!(get(&mut store, &[victim.digest]), vec![Err(StorageError::Missing(victim.digest))], "the deleted block came back");
    let live: Vec<EncodedBlock> = stored.into_iter().filter(|b| b.digest != victim.digest).collect();
    assert_readable(&mut store, &live);
}

fn open_with(dir: &Path) -> (Store, Vec<EncodedBlock>) {
    let (mut store, _) = open(dir, small_packs());
    let stored = blocks(0..6);
    for pair in stored.chunks(2) {
        ok(put(&mut store, pair));
    }
    sync(&mut store);
    (store, stored)
}

/// A crash after a compaction's copies were synced but before its pack was
/// deleted leaves two copies of its live blocks: nothing is reported
/// damaged, and deleting such a block deletes both copies.
#[test]
fn a_crash_in_the_middle_of_compaction_leaves_copies_that_deletes_still_kill() {
    let dir = temp();
    let (mut store, stored) = filled(dir.path());
    let first: Vec<EncodedBlock> = stored.iter().filter(|b| store.index.get(&b.digest).is_some_and(|e| e.at.pack == 1)).cloned().collect();
    assert!(first.len() >= 3);
    ok(store.apply(StorageOp::DeleteBlocks(digests(&first[1..]))));
    sync(&mut store);
    let (pack, index) = (dir.path().join("packs/00000001.pack"), dir.path().join("packs/00000001.idx"));
    let saved = (std::fs::read(&pack).expect("pack"), std::fs::read(&index).expect("index"));
    let report = store.collect_garbage().expect("collection runs");
    assert!(!pack.exists() && report.packs_compacted >= 1, "{report:?}");
    drop(store);
    // The pack's deletion did not reach the disk.
    std::fs::write(&pack, &saved.0).expect("write");
    std::fs::write(&index, &saved.1).expect("write");
    let (mut store, report) = open(dir.path(), small_packs());
    assert!(report.is_clean(), "{report:?}");
    let live: Vec<EncodedBlock> = stored.iter().filter(|b| !digests(&first[1..]).contains(&b.digest)).cloned().collect();
    let mut expected = digests(&live);
    expected.sort();
    assert_eq!(recover(&mut store).1, expected);
    assert_readable(&mut store, &live);
    ok(store.apply(StorageOp::DeleteBlocks(vec![first[0].digest])));
    sync(&mut store);
    drop(store);
    let (mut store, _) = open(dir.path(), small_packs());
    assert_eq!(get(&mut store, &[first[0].digest]), vec![Err(StorageError::Missing(first[0].digest))], "a copy survived");
}

/// A collection deletes a pack before its index; a crash between leaves
/// the index alone, which the next open removes without reporting damage.
#[test]
fn an_index_a_collection_left_behind_is_removed_quietly() {
    let dir = temp();
    let (mut store, stored) = filled(dir.path());
    let index = dir.path().join("packs/00000001.idx");
    let saved = std::fs::read(&index).expect("index");
    ok(store.apply(StorageOp::DeleteBlocks(digests(&stored))));
    sync(&mut store);
    store.collect_garbage().expect("collection runs");
    drop(store);
    assert!(!index.exists());
    std::fs::write(&index, saved).expect("write");
    let (_, report) = open(dir.path(), small_packs());
    assert!(report.is_clean(), "{report:?}");
    assert!(!index.exists());
}
