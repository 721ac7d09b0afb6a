//! [`DiskStore`]: a [`Store`] on a thread of its own, as a node's storage
//! service.
//!
//! File work blocks (a flush takes milliseconds, a compaction seconds), so
//! it never runs on the driver's event loop. Requests go to the thread in
//! the order the driver hands them over and are carried out in that order,
//! which is what a `Sync` covering earlier writes needs; each request's
//! future resolves when its turn is done. After each `Sync` the thread
//! collects garbage (at most one compaction) before the next request.

use super::engine::{Store, StoreOptions, StoreStats};
use super::error::StoreError;
use super::gc::GcReport;
use super::report::{RecoveryReport, VerifyReport};
use crate::services::{LocalBoxFuture, Services};
use blockferry_core::Timestamp;
use blockferry_core::hypervisor::{HypervisorCompletion, HypervisorRequest};
use blockferry_core::storage::{StorageCompletion, StorageError, StorageOp, StorageRequest};
use std::path::PathBuf;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// Compactions the thread runs after each `Sync`: bounded, so a request
/// waits at most one pack's copy.
const COMPACTIONS_PER_SYNC: usize = 1;

enum Job {
    Request(StorageRequest, oneshot::Sender<StorageCompletion>),
    Verify(oneshot::Sender<Result<VerifyReport, StoreError>>),
    CollectGarbage(oneshot::Sender<Result<GcReport, StoreError>>),
    Stats(oneshot::Sender<StoreStats>),
}

/// The thread and the way to it; dropping the last handle lets the thread
/// finish what it was given and waits for it (so the store's lock is free
/// when the drop returns).
struct Worker {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A handle to a store running on its own thread. Cheap to clone: a daemon
/// that also has a hypervisor keeps one in its own [`Services`] and hands
/// storage requests to [`DiskStore::submit`].
#[derive(Clone)]
pub struct DiskStore {
    worker: Arc<Worker>,
}

impl DiskStore {
    /// Opens the store in `root` (blocking: recovery reads every pack
    /// index) and starts its thread.
    pub fn open(root: impl Into<PathBuf>, options: StoreOptions) -> Result<(DiskStore, RecoveryReport), StoreError> {
        let (store, report) = Store::open(root, options)?;
        let (jobs, queue) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("blockferry-store".into())
            .spawn(move || run(store, queue))
            .map_err(|e| StoreError::Refused(format!("cannot start the store thread: {e}")))?;
        Ok((DiskStore { worker: Arc::new(Worker { jobs: Some(jobs), thread: Some(thread) }) }, report))
    }

    fn send(&self, job: Job) -> bool {
        self.worker.jobs.as_ref().is_some_and(|jobs| jobs.send(job).is_ok())
    }

    /// Queues `request` now, behind every request queued before it; the
    /// future resolves with its completion.
    pub fn submit(&self, request: StorageRequest) -> LocalBoxFuture<StorageCompletion> {
        let id = request.id;
        let (tx, rx) = oneshot::channel();
        let queued = self.send(Job::Request(request, tx));
        Box::pin(async move {
            let stopped = || StorageCompletion { id, result: Err(StorageError::Io("the store's thread has stopped".into())) };
            if !queued {
                return stopped();
            }
            rx.await.unwrap_or_else(|_| stopped())
        })
    }

    async fn ask<T>(&self, job: impl FnOnce(oneshot::Sender<T>) -> Job) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        if !self.send(job(tx)) {
            return None;
        }
        rx.await.ok()
    }

    /// Runs [`Store::verify`] in turn with the requests.
    pub async fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.ask(Job::Verify).await.unwrap_or_else(|| Err(thread_stopped()))
    }

    /// Collects all the garbage there is, in turn with the requests.
    pub async fn collect_garbage(&self) -> Result<GcReport, StoreError> {
        self.ask(Job::CollectGarbage).await.unwrap_or_else(|| Err(thread_stopped()))
    }

    pub async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.ask(Job::Stats).await.ok_or_else(thread_stopped)
    }
}

fn thread_stopped() -> StoreError {
    StoreError::Refused("the store's thread has stopped".into())
}

fn run(mut store: Store, queue: mpsc::Receiver<Job>) {
    for job in queue {
        match job {
            Job::Request(request, done) => {
                let synced = request.op == StorageOp::Sync;
                let result = store.apply(request.op);
                let ok = result.is_ok();
                let _ = done.send(StorageCompletion { id: request.id, result });
                if synced && ok {
                    // Errors are logged; a failed flush stops the store.
                    if let Err(e) = store.collect_garbage_step(COMPACTIONS_PER_SYNC) {
                        tracing::error!("store garbage collection failed: {e}");
                    }
                }
            }
            Job::Verify(done) => _ = done.send(store.verify()),
            Job::CollectGarbage(done) => _ = done.send(store.collect_garbage()),
            Job::Stats(done) => _ = done.send(store.stats()),
        }
    }
}

/// A repository node's services: its store; it has no hypervisor.
impl Services for DiskStore {
    fn storage(&mut self, _: Timestamp, request: StorageRequest) -> LocalBoxFuture<StorageCompletion> {
        self.submit(request)
    }

    fn hypervisor(&mut self, _: Timestamp, request: HypervisorRequest) -> LocalBoxFuture<HypervisorCompletion> {
        let result = Err("a repository has no hypervisor".into());
        Box::pin(std::future::ready(HypervisorCompletion { id: request.id, result }))
    }
}
