//! The file host as the driver's [`Services`]: requests run on tokio's
//! blocking pool, so the driver's event loop (one thread, every peer's
//! messages and timers) never waits on a disk or an fsync.
//!
//! Requests about one VM run one at a time, in the order they were asked:
//! a revert must not overtake the writes asked before it, nor a repeated
//! `CreateVm` run beside the first. Requests about different VMs run side
//! by side. The order is a chain: each request waits for the one asked
//! before it about the same VM (a oneshot the earlier request's worker
//! drops when done), which costs nothing when that one is already done.

use super::FileHost;
use crate::services::{LocalBoxFuture, Services};
use blockferry_core::hypervisor::{HypervisorCompletion, HypervisorRequest};
use blockferry_core::storage::{StorageCompletion, StorageError, StorageRequest};
use blockferry_core::{Timestamp, VmId};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Past this many VMs with a remembered last request, the finished ones
/// are forgotten (the map only needs VMs with requests in flight).
const PRUNE_AT: usize = 64;

/// A [`FileHost`] behind the driver's [`Services`] (no storage: a host
/// node has none). A daemon whose node also stores can hold one and
/// delegate its `hypervisor` calls to [`FileHostService::request`].
#[derive(Debug)]
pub struct FileHostService {
    host: Arc<FileHost>,
    /// Per VM, what the last request asked about it drops when done.
    last: BTreeMap<VmId, oneshot::Receiver<()>>,
}

impl FileHostService {
    pub fn new(host: Arc<FileHost>) -> FileHostService {
        FileHostService { host, last: BTreeMap::new() }
    }

    pub fn host(&self) -> &Arc<FileHost> {
        &self.host
    }

    /// Runs one request after the earlier ones about its VM; must be called
    /// in the order the requests were made. The future can be polled on
    /// any runtime with a blocking pool.
    pub fn request(&mut self, request: HypervisorRequest) -> LocalBoxFuture<HypervisorCompletion> {
        let (done, waiter) = oneshot::channel::<()>();
        let before = match self.host.vm_of(&request.op) {
            Some(vm) => self.last.insert(vm, waiter),
            None => None,
        };
        if self.last.len() > PRUNE_AT {
            self.last.retain(|_, rx| matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty)));
        }
        let host = Arc::clone(&self.host);
        Box::pin(async move {
            if let Some(before) = before {
                // Err only: the earlier request's worker dropped its sender.
                let _ = before.await;
            }
            let id = request.id;
            let work = tokio::task::spawn_blocking(move || {
                let result = host.handle(request.op);
                drop(done);
                result
            });
            let result = work.await.unwrap_or_else(|e| Err(format!("the file host's worker failed: {e}")));
            HypervisorCompletion { id, result }
        })
    }
}

impl Services for FileHostService {
    fn storage(&mut self, _: Timestamp, request: StorageRequest) -> LocalBoxFuture<StorageCompletion> {
        let result = Err(StorageError::Io("a file host has no storage".into()));
        Box::pin(std::future::ready(StorageCompletion { id: request.id, result }))
    }

    fn hypervisor(&mut self, _: Timestamp, request: HypervisorRequest) -> LocalBoxFuture<HypervisorCompletion> {
        self.request(request)
    }
}
