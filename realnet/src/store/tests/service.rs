//! The store as a node's service, on its own thread.

use super::*;
use crate::services::Services;
use crate::store::DiskStore;
use blockferry_core::RequestId;
use blockferry_core::hypervisor::{HypervisorOp, HypervisorRequest};
use blockferry_core::storage::{StorageCompletion, StorageRequest};

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    tokio::task::LocalSet::new().block_on(&runtime, future)
}

fn request(id: u64, op: StorageOp) -> StorageRequest {
    StorageRequest { id: RequestId(id), op }
}

/// Requests are carried out in the order they were handed over, however
/// their futures are awaited: a read issued after a put sees the put.
#[test]
fn requests_run_in_the_order_given_whatever_order_they_are_awaited() {
    let dir = temp();
    let stored = blocks(0..8);
    let (mut store, _) = DiskStore::open(dir.path(), small_packs()).expect("opens");
    let payloads = stored.iter().cloned().map(BlockPayload::Encoded).collect();
    let put = store.storage(Timestamp::ZERO, request(1, StorageOp::PutBlocks(payloads)));
    let sync = store.storage(Timestamp::ZERO, request(2, StorageOp::Sync));
    let read = store.storage(Timestamp::ZERO, request(3, StorageOp::GetBlocks(digests(&stored))));
    let (read, sync, put) = block_on(async { (read.await, sync.await, put.await) });
    let expected: Vec<Result<BlockPayload, StorageError>> = stored.iter().cloned().map(|b| Ok(BlockPayload::Encoded(b))).collect();
    assert_eq!(read, StorageCompletion { id: RequestId(3), result: Ok(StorageReply::Blocks(expected)) });
    assert_eq!((sync.id, sync.result), (RequestId(2), Ok(StorageReply::Done)));
    assert_eq!((put.id, put.result), (RequestId(1), Ok(StorageReply::Done)));
}

/// Dropping the last handle finishes the queued work and frees the lock;
/// what was not synced is gone on the next open.
#[test]
fn dropping_the_handle_frees_the_store_and_unsynced_puts_are_lost() {
    let dir = temp();
    let (synced, unsynced) = (blocks(0..3), blocks(10..13));
    {
        let (store, _) = DiskStore::open(dir.path(), StoreOptions::default()).expect("opens");
        let put = |blocks: &[EncodedBlock], id| {
            store.submit(request(id, StorageOp::PutBlocks(blocks.iter().cloned().map(BlockPayload::Encoded).collect())))
        };
        let done = block_on(async { (put(&synced, 1).await, store.submit(request(2, StorageOp::Sync)).await, put(&unsynced, 3).await) });
        assert!(done.0.result.is_ok() && done.1.result.is_ok() && done.2.result.is_ok(), "{done:?}");
    }
    let (mut store, report) = open(dir.path(), StoreOptions::default());
    assert_eq!(report.truncated_tails.len(), 1, "{report:?}");
    let mut expected = digests(&synced);
    expected.sort();
    assert_eq!(recover(&mut store).1, expected);
}

/// The thread collects garbage after a sync on its own.
#[test]
fn garbage_is_collected_after_a_sync() {
    let dir = temp();
    let stored = blocks(0..30);
    let (store, _) = DiskStore::open(dir.path(), small_packs()).expect("opens");
    let stats = block_on(async {
        for (i, pair) in stored.chunks(2).enumerate() {
            let payloads = pair.iter().cloned().map(BlockPayload::Encoded).collect();
            assert!(store.submit(request(i as u64, StorageOp::PutBlocks(payloads))).await.result.is_ok());
        }
        assert!(store.submit(request(100, StorageOp::Sync)).await.result.is_ok());
        let full = store.stats().await.expect("stats");
        assert!(store.submit(request(101, StorageOp::DeleteBlocks(digests(&stored)))).await.result.is_ok());
        assert!(store.submit(request(102, StorageOp::Sync)).await.result.is_ok());
        (full, store.stats().await.expect("stats"))
    });
    assert!(stats.1.pack_bytes < stats.0.pack_bytes / 2, "{stats:?}");
    assert_eq!(stats.1.blocks, 0);
}

#[test]
fn a_repository_has_no_hypervisor() {
    let dir = temp();
    let (mut store, _) = DiskStore::open(dir.path(), StoreOptions::default()).expect("opens");
    let asked = HypervisorRequest { id: RequestId(5), op: HypervisorOp::CommitSnapshot { snap: blockferry_core::SnapshotId(1) } };
    let done = block_on(store.hypervisor(Timestamp::ZERO, asked));
    assert_eq!(done.id, RequestId(5));
    assert!(done.result.is_err());
}
