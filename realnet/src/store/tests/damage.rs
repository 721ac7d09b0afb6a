//! Damage at rest is found, named by path and offset, never served, and
//! repaired by putting the block again.

use super::*;
use crate::store::DamagedBlock;

/// Blocks 0..13 in small packs (blocks 0..6 in pack 1, sealed, the last
/// one in a pack still open), and points 1 (blocks 0..6) and 2 (4..13).
fn populated(dir: &Path) -> (Store, Vec<EncodedBlock>) {
    let (mut store, _) = open(dir, small_packs());
    let stored = blocks(0..13);
    for pair in stored[..12].chunks(2) {
        ok(put(&mut store, pair));
    }
    sync(&mut store);
    ok(put(&mut store, &stored[12..]));
    sync(&mut store);
    ok(store.apply(StorageOp::PutManifest(sample_manifest(1, &digests(&stored[..6])))));
    ok(store.apply(StorageOp::PutManifest(sample_manifest(2, &digests(&stored[4..])))));
    (store, stored)
}

fn location(store: &Store, digest: &Digest) -> (PathBuf, u64, u32) {
    let entry = store.index.get(digest).expect("stored");
    (store.pack_path(entry.at.pack), entry.at.offset, entry.body_len)
}

/// The acceptance test: a damaged pack byte is found by `verify`
/// and named, with the points that need the block; reading it reports it
/// damaged; putting it again repairs it.
#[test]
fn verify_names_a_flipped_pack_byte_and_the_points_that_need_it() {
    let dir = temp();
    let (store, stored) = populated(dir.path());
    // Block 5 is in a sealed pack, block 12 in the open one; both points
    // reference block 5.
    let (sealed, at, len) = location(&store, &stored[5].digest);
    assert!(sealed.with_extension("idx").exists(), "block 5's pack is sealed");
    let (open_pack, at12, _) = location(&store, &stored[12].digest);
    assert!(!open_pack.with_extension("idx").exists(), "block 12's pack is open");
    drop(store);
    flip(&sealed, at + 56 + u64::from(len) / 2);
    flip(&open_pack, at12 + 60);

    let (mut store, report) = open(dir.path(), small_packs());
    assert!(report.is_clean(), "a body flip is not seen by a header scan: {report:?}");
    let found = store.verify().expect("verify runs");
    assert!(!found.is_clean());
    let reason = "stored bytes do not match their checksum".to_string();
    let both = vec![RestorePointId(1), RestorePointId(2)];
    let mut expected = vec![
        DamagedBlock { digest: stored[5].digest, pack: sealed.clone(), offset: at, reason: reason.clone(), points: both },
        DamagedBlock { digest: stored[12].digest, pack: open_pack, offset: at12, reason, points: vec![RestorePointId(2)] },
    ];
    expected.sort_by_key(|b| b.digest);
    assert_eq!(found.damaged_blocks, expected);
    assert_eq!(found.blocks_checked, 13);
    let line = format!("damaged block {} in {} at offset {at}", stored[5].digest, sealed.display());
    assert!(found.to_string().contains(&line), "{found}");
    let read = get(&mut store, &digests(&stored[4..6]));
    assert_eq!(read[0], Ok(BlockPayload::Encoded(stored[4].clone())));
    assert_eq!(read[1], Err(StorageError::Damaged(stored[5].digest)));

    ok(put(&mut store, &[stored[5].clone(), stored[12].clone()]));
    assert_readable(&mut store, &stored);
    sync(&mut store);
    assert!(store.verify().expect("verify runs").is_clean());
    drop(store);
    let (mut store, report) = open(dir.path(), small_packs());
    assert!(report.is_clean(), "{report:?}");
    assert_readable(&mut store, &stored);
    assert!(store.verify().expect("verify runs").is_clean());
}

/// A damaged record header in synced data is damage, not a torn tail:
/// the records after it are kept, the lost block is reported with the
/// points that reference it, and nothing is truncated.
#[test]
fn a_damaged_header_in_synced_data_is_reported_and_the_rest_kept() {
    let dir = temp();
    let big = StoreOptions::default();
    let stored = blocks(0..6);
    {
        let (mut store, _) = open(dir.path(), big);
        ok(put(&mut store, &stored));
        sync(&mut store);
        ok(store.apply(StorageOp::PutManifest(sample_manifest(1, &digests(&stored)))));
    }
    let (path, at, _) = {
        let (store, _) = open(dir.path(), big);
        location(&store, &stored[2].digest)
    };
    let len = std::fs::metadata(&path).expect("pack").len();
    flip(&path, at + 10);
    let (mut store, report) = open(dir.path(), big);
    assert_eq!(std::fs::metadata(&path).expect("pack").len(), len, "nothing truncated");
    assert_eq!(report.damaged_ranges.len(), 1, "{report:?}");
    assert_eq!((report.damaged_ranges[0].path.clone(), report.damaged_ranges[0].offset), (path.clone(), at));
    assert_eq!(report.incomplete_points.len(), 1);
    assert_eq!((report.incomplete_points[0].point, report.incomplete_points[0].missing), (RestorePointId(1), 1));
    assert_eq!(report.incomplete_points[0].first_missing, stored[2].digest);
    let mut kept = stored.clone();
    kept.remove(2);
    assert_readable(&mut store, &kept);
    let found = store.verify().expect("verify runs");
    assert_eq!(found.missing_blocks.len(), 1);
    assert_eq!((found.missing_blocks[0].digest, found.missing_blocks[0].points.clone()), (stored[2].digest, vec![RestorePointId(1)]));
    assert_eq!(found.damaged_ranges, report.damaged_ranges);
    // The damaged pack takes no more records; new ones go to a new pack.
    ok(put(&mut store, &stored[2..3]));
    sync(&mut store);
    assert_readable(&mut store, &stored);
}

#[test]
fn a_damaged_pack_index_is_reported_and_rebuilt_from_its_pack() {
    let dir = temp();
    let (store, stored) = populated(dir.path());
    drop(store);
    let index = dir.path().join("packs/00000001.idx");
    flip(&index, 40);
    let (mut store, report) = open(dir.path(), small_packs());
    assert_eq!(report.damaged_files.iter().map(|f| f.path.clone()).collect::<Vec<_>>(), vec![index.clone()]);
    assert_eq!(report.rebuilt_indexes, vec![index]);
    assert!(report.damaged_ranges.is_empty() && report.incomplete_points.is_empty());
    assert_readable(&mut store, &stored);
    drop(store);
    let (_, report) = open(dir.path(), small_packs());
    assert!(report.is_clean(), "the rebuilt index is good: {report:?}");
}

#[test]
fn a_sealed_pack_cut_short_is_reported_with_its_path() {
    let dir = temp();
    let (store, stored) = populated(dir.path());
    let (path, at, _) = location(&store, &stored[0].digest);
    drop(store);
    let file = std::fs::OpenOptions::new().write(true).open(&path).expect("pack");
    file.set_len(at + 30).expect("cut");
    let (mut store, report) = open(dir.path(), small_packs());
    assert!(report.damaged_files.iter().any(|f| f.path == path && f.reason.contains("its index says")), "{report:?}");
    assert!(report.incomplete_points.iter().any(|p| p.point == RestorePointId(1)));
    assert_eq!(get(&mut store, &[stored[0].digest]), vec![Err(StorageError::Missing(stored[0].digest))]);
    assert_readable(&mut store, &stored[6..]);
}

/// A record whose checksum is right but whose bytes are not the block its
/// digest names (a writer's lie, or damage before the checksum was taken)
/// is found by `verify`'s re-hash, and replaced by a put of the real block.
#[test]
fn verify_rehashes_and_a_put_replaces_a_block_that_lies_about_its_digest() {
    let dir = temp();
    let (mut store, _) = open(dir.path(), StoreOptions::default());
    let (real, other) = (random_block(1, 4096), random_block(2, 4096));
    let liar = EncodedBlock { digest: real.digest, ..other };
    ok(put(&mut store, std::slice::from_ref(&liar)));
    let found = store.verify().expect("verify runs");
    assert_eq!(found.damaged_blocks.len(), 1);
    assert!(found.damaged_blocks[0].reason.contains("digest mismatch"), "{found:?}");
    ok(put(&mut store, std::slice::from_ref(&real)));
    assert_readable(&mut store, std::slice::from_ref(&real));
    assert!(store.verify().expect("verify runs").is_clean());
}

/// A lost pack is reported by its path on every open and by `verify`,
/// with the points that needed its blocks.
#[test]
fn a_missing_pack_is_reported_with_its_path() {
    let dir = temp();
    let (store, stored) = populated(dir.path());
    let (path, _, _) = location(&store, &stored[0].digest);
    drop(store);
    std::fs::remove_file(&path).expect("remove");
    for _ in 0..2 {
        let (mut store, report) = open(dir.path(), small_packs());
        assert!(report.damaged_files.iter().any(|f| f.path == path && f.reason.starts_with("missing")), "{report:?}");
        assert!(report.incomplete_points.iter().any(|p| p.point == RestorePointId(1)));
        let found = store.verify().expect("verify runs");
        assert!(found.damaged_files.iter().any(|f| f.path == path), "{found:?}");
        assert!(found.missing_blocks.iter().any(|b| b.digest == stored[0].digest && b.points == vec![RestorePointId(1)]));
        assert_readable(&mut store, &stored[6..]);
    }
}
