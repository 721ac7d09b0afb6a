//! Who carries out a node's storage and hypervisor requests.
//!
//! Core asks ("append these blocks", "snapshot this VM") and the driver
//! answers later with a completion input. What actually does the work
//! differs by world: real files and disk images in realnet, the simulated
//! store and virtual hypervisor under turmoil. The driver only needs a
//! future per request; it runs each as its own local task and feeds the
//! completion back as one input, like any other.

use blockferry_core::Timestamp;
use blockferry_core::hypervisor::{HypervisorCompletion, HypervisorRequest};
use blockferry_core::storage::{StorageCompletion, StorageError, StorageRequest};
use std::future::Future;
use std::pin::Pin;

/// A boxed future that need not be `Send` (everything runs in a `LocalSet`).
pub type LocalBoxFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// Performs a node's requests. Requests may complete in any order (the
/// completion carries the request id); an implementation that needs order
/// (a store whose `Sync` covers earlier writes) keeps it itself.
pub trait Services {
    fn storage(&mut self, now: Timestamp, request: StorageRequest) -> LocalBoxFuture<StorageCompletion>;
    fn hypervisor(&mut self, now: Timestamp, request: HypervisorRequest) -> LocalBoxFuture<HypervisorCompletion>;
}

/// A node with no store and no hypervisor: every request fails at once.
/// The default, since most roles never ask.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoServices;

impl Services for NoServices {
    fn storage(&mut self, _: Timestamp, request: StorageRequest) -> LocalBoxFuture<StorageCompletion> {
        let result = Err(StorageError::Io("this node has no storage".into()));
        Box::pin(std::future::ready(StorageCompletion { id: request.id, result }))
    }

    fn hypervisor(&mut self, _: Timestamp, request: HypervisorRequest) -> LocalBoxFuture<HypervisorCompletion> {
        let result = Err("this node has no hypervisor".into());
        Box::pin(std::future::ready(HypervisorCompletion { id: request.id, result }))
    }
}
