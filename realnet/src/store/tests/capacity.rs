//! A put past capacity is refused whole; nothing stored before is lost.

use super::*;

#[test]
fn a_put_past_capacity_is_refused_whole_and_loses_nothing() {
    let dir = temp();
    let first = blocks(0..4);
    let record = |b: &EncodedBlock| 56 + b.payload.len() as u64;
    let used: u64 = first.iter().map(record).sum();
    let options = StoreOptions { capacity: Some(used + 3000), ..small_packs() };
    let (mut store, _) = open(dir.path(), options);
    ok(put(&mut store, &first));
    sync(&mut store);
    ok(store.apply(StorageOp::PutManifest(sample_manifest(1, &digests(&first)))));
    let more = blocks(10..13);
    assert!(more.iter().map(record).sum::<u64>() > 3000, "the test's batch must not fit");
    assert_eq!(put(&mut store, &more), Err(StorageError::Full));
    assert_eq!(store.stats().blocks, 4, "no block of the refused batch was stored");
    assert_eq!(get(&mut store, &digests(&more[..1])), vec![Err(StorageError::Missing(more[0].digest))]);
    // A block already stored costs nothing, so a batch of those fits.
    ok(put(&mut store, &first));
    sync(&mut store);
    drop(store);
    let (mut store, report) = open(dir.path(), options);
    assert!(report.is_clean(), "{report:?}");
    assert_readable(&mut store, &first);
    assert_eq!(recover(&mut store).0.len(), 1);
    // Deleting frees capacity.
    ok(store.apply(StorageOp::DeleteBlocks(digests(&first))));
    ok(put(&mut store, &more));
    assert_readable(&mut store, &more);
}
