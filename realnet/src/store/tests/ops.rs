//! Every op round-trips, with the simulator's store semantics.

use super::*;
use crate::store::StoreError;

#[test]
fn blocks_put_read_and_delete_round_trip_across_a_restart() {
    let dir = temp();
    let stored = blocks(0..20);
    {
        let (mut store, report) = open(dir.path(), small_packs());
        assert!(report.is_clean() && report.blocks == 0, "{report:?}");
        for pair in stored.chunks(2) {
            ok(put(&mut store, pair));
        }
        assert_readable(&mut store, &stored);
        ok(store.apply(StorageOp::DeleteBlocks(digests(&stored[..5]))));
        assert_eq!(get(&mut store, &digests(&stored[..1])), vec![Err(StorageError::Missing(stored[0].digest))]);
        sync(&mut store);
        assert!(pack_files(dir.path()).len() > 2, "blocks spread over several packs");
    }
    let (mut store, report) = open(dir.path(), small_packs());
    assert!(report.is_clean() && report.blocks == 15, "{report:?}");
    let mut expected = digests(&stored[5..]);
    expected.sort();
    assert_eq!(recover(&mut store).1, expected);
    assert_readable(&mut store, &stored[5..]);
    assert_eq!(get(&mut store, &digests(&stored[..1])), vec![Err(StorageError::Missing(stored[0].digest))]);
}

#[test]
fn a_block_put_again_is_stored_once_and_zero_blocks_never() {
    let dir = temp();
    let (mut store, _) = open(dir.path(), StoreOptions::default());
    let block = random_block(1, 4096);
    ok(put(&mut store, &[block.clone(), block.clone()]));
    let once = store.stats();
    ok(put(&mut store, std::slice::from_ref(&block)));
    assert_eq!(store.stats(), once, "an intact block is not stored again");
    let zero = encode_block(&[0; 4096], Compression::Optimal);
    ok(put(&mut store, &[zero]));
    assert_eq!(store.stats(), once, "a zero block is never stored");
    assert_eq!(get(&mut store, &[Digest::ZERO_BLOCK]), vec![Err(StorageError::Missing(Digest::ZERO_BLOCK))]);
}

#[test]
fn synthetic_payloads_are_refused_whole() {
    let dir = temp();
    let (mut store, _) = open(dir.path(), StoreOptions::default());
    let real = BlockPayload::Encoded(random_block(1, 4096));
    let synthetic = BlockPayload::Synthetic { digest: Digest([7; 32]), raw_len: 4096, stored_len: 100, compressibility: 0 };
    let refused = store.apply(StorageOp::PutBlocks(vec![real, synthetic]));
    assert!(matches!(refused, Err(StorageError::Io(ref e)) if e.contains("synthetic")), "{refused:?}");
    assert_eq!(store.stats().blocks, 0, "nothing of the batch was stored");
}

#[test]
fn manifests_are_durable_on_their_own_and_deletes_wait_for_a_sync() {
    let dir = temp();
    let stored = blocks(0..3);
    let (one, two) = (sample_manifest(1, &digests(&stored)), sample_manifest(2, &digests(&stored[..1])));
    {
        let (mut store, _) = open(dir.path(), StoreOptions::default());
        ok(put(&mut store, &stored));
        sync(&mut store);
        ok(store.apply(StorageOp::PutManifest(one.clone())));
        ok(store.apply(StorageOp::PutManifest(two.clone())));
        assert_eq!(recover(&mut store).0, vec![one.clone(), two.clone()]);
        ok(store.apply(StorageOp::DeleteManifest(two.point)));
        assert_eq!(recover(&mut store).0, vec![one.clone()], "a delete shows at once");
        // Dropped without a sync: the delete was never durable.
    }
    {
        let (mut store, _) = open(dir.path(), StoreOptions::default());
        assert_eq!(recover(&mut store).0, vec![one.clone(), two.clone()]);
        ok(store.apply(StorageOp::DeleteManifest(two.point)));
        sync(&mut store);
    }
    let (mut store, report) = open(dir.path(), StoreOptions::default());
    assert_eq!(report.points, 1);
    assert_eq!(recover(&mut store).0, vec![one]);
}

#[test]
fn a_manifest_put_after_its_delete_survives_the_sync() {
    let dir = temp();
    let m = sample_manifest(3, &[]);
    {
        let (mut store, _) = open(dir.path(), StoreOptions::default());
        ok(store.apply(StorageOp::PutManifest(m.clone())));
        ok(store.apply(StorageOp::DeleteManifest(m.point)));
        ok(store.apply(StorageOp::PutManifest(m.clone())));
        sync(&mut store);
    }
    let (mut store, _) = open(dir.path(), StoreOptions::default());
    assert_eq!(recover(&mut store).0, vec![m]);
}

#[test]
fn replica_metadata_round_trips_and_its_delete_is_durable_at_once() {
    let dir = temp();
    let (a, b) = (sample_manifest(10, &[Digest([1; 32])]), sample_manifest(11, &[Digest([2; 32])]));
    let replicas = |store: &mut Store| match store.apply(StorageOp::RecoverReplicaMetadata) {
        Ok(StorageReply::ReplicaMetadata(mut all)) => {
            all.sort_by_key(|m| m.point);
            all
        }
        other => panic!("{other:?}"),
    };
    {
        let (mut store, _) = open(dir.path(), StoreOptions::default());
        ok(store.apply(StorageOp::PutReplicaMetadata(a.clone())));
        ok(store.apply(StorageOp::PutReplicaMetadata(b.clone())));
        ok(store.apply(StorageOp::DeleteReplicaMetadata(a.point)));
        assert_eq!(replicas(&mut store), vec![b.clone()]);
    }
    let (mut store, _) = open(dir.path(), StoreOptions::default());
    assert_eq!(replicas(&mut store), vec![b]);
    assert!(recover(&mut store).0.is_empty(), "replica metadata is not a restore point");
}

#[test]
fn a_second_open_of_the_same_store_is_refused_naming_the_lock() {
    let dir = temp();
    let (_store, _) = open(dir.path(), StoreOptions::default());
    match Store::open(dir.path(), StoreOptions::default()) {
        Err(StoreError::Locked { path }) => assert_eq!(path, dir.path().join("lock")),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened twice"),
    }
}
