//! The file host behind the driver's `Services`: one VM's requests in
//! order, and the event loop free while disks work.

use super::*;
use crate::filehost::FileHostService;
use crate::services::Services;
use blockferry_core::hypervisor::{HypervisorCompletion, HypervisorRequest};
use blockferry_core::storage::{StorageOp, StorageRequest};
use blockferry_core::{RequestId, Timestamp};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::task::{LocalSet, spawn_local};

/// Runs `f` as realnet runs a node: a current-thread runtime, a LocalSet.
fn run<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    LocalSet::new().block_on(&rt, async { tokio::time::timeout(Duration::from_secs(20), f).await.expect("test timed out") })
}

fn ask(service: &mut FileHostService, id: u64, op: HypervisorOp) -> tokio::task::JoinHandle<HypervisorCompletion> {
    spawn_local(service.hypervisor(Timestamp::ZERO, HypervisorRequest { id: RequestId(id), op }))
}

/// Per VM: create, three writes, a snapshot, all asked at once for four
/// VMs. Each must run after the one before it (a write overtaking the
/// create fails, a snapshot overtaking a write misses it).
#[test]
fn one_vms_requests_run_in_the_order_asked() {
    let store = Datastore::new();
    let host = Arc::new(store.open(SnapshotPolicy::IdentityOnly));
    let mut service = FileHostService::new(Arc::clone(&host));
    let disks = 4u64;
    let results = run(async move {
        let mut handles = Vec::new();
        let mut id = 0;
        let mut next = || {
            id += 1;
            id
        };
        for v in 0..4u32 {
            let vm = VmId(100 + v);
            handles.push(ask(
                &mut service,
                next(),
                HypervisorOp::CreateVm { vm, name: format!("vm-{v}"), disks: vec![disks * BLOCK as u64] },
            ));
            for block in 0..3u64 {
                let blocks = vec![(block, BlockData::Bytes(vec![block as u8 + 1; BLOCK]))];
                handles.push(ask(&mut service, next(), HypervisorOp::WriteBlocks { vm, disk: 0, block_size: BS, blocks }));
            }
            handles.push(ask(&mut service, next(), HypervisorOp::CreateSnapshot { vm }));
        }
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.expect("request task"));
        }
        out
    });
    for done in &results {
        assert!(done.result.is_ok(), "request {}: {:?}", done.id, done.result);
    }
    for done in results {
        let Ok(HypervisorReply::SnapshotCreated { snap, .. }) = done.result else { continue };
        let blocks = read(&host, snap, 0, vec![0, 1, 2, 3]).expect("snapshot read");
        let firsts: Vec<u8> = blocks.iter().map(|(_, b)| b[0]).collect();
        assert_eq!(firsts, [1, 2, 3, 0], "the snapshot saw every write before it");
    }
}

/// A request that keeps the disk busy (a snapshot waiting for a busy
/// image to settle) leaves the event loop free: a timer ticks meanwhile.
#[test]
fn the_event_loop_runs_while_a_request_blocks() {
    let store = Datastore::new();
    let host = Arc::new(store.open(SnapshotPolicy::IdentityOnly));
    let mut service = FileHostService::new(host);
    let stop = Arc::new(AtomicBool::new(false));
    let guest = {
        let (stop, path) = (Arc::clone(&stop), store.image(DISK1));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                guest_write(&path, 0, b"busy");
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let ticks = Rc::new(Cell::new(0u32));
    let done = run({
        let ticks = Rc::clone(&ticks);
        async move {
            let request = ask(&mut service, 1, HypervisorOp::CreateSnapshot { vm: VM });
            let ticker = spawn_local(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    ticks.set(ticks.get() + 1);
                }
            });
            let done = request.await.expect("request task");
            ticker.abort();
            done
        }
    });
    stop.store(true, Ordering::Relaxed);
    guest.join().expect("guest thread");
    assert!(done.result.is_err(), "the busy image cannot be snapshotted: {:?}", done.result);
    assert!(ticks.get() >= 5, "the event loop ticked only {} times while the request ran", ticks.get());
}

#[test]
fn a_file_host_has_no_storage() {
    let store = Datastore::new();
    let mut service = FileHostService::new(Arc::new(store.open(SnapshotPolicy::IdentityOnly)));
    let done = run(service.storage(Timestamp::ZERO, StorageRequest { id: RequestId(3), op: StorageOp::Sync }));
    assert!(done.result.is_err());
}
