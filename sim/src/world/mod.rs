//! The simulated world the nodes live in: virtual hypervisors (with guest
//! workloads, snapshots and CBT) and repository stores (with durability and
//! faults). [`World`] carries out nodes' storage and hypervisor requests
//! for the engines (`crate::des::Services`), and is what fault injection
//! and the checker reach into.
//!
//! * `content`, `disk`, `contents`: what disks hold, without bytes.
//! * `workload`: guest writes.
//! * `hypervisor`: the hypervisor ops, snapshots, CBT, and the oracle.
//! * `store`: repository stores.
//! * `pipe`: device throughput.

pub mod content;
pub mod contents;
mod digest_cache;
pub mod disk;
pub mod hypervisor;
pub mod pipe;
pub mod point_digests;
mod range_checks;
pub mod store;
mod two_threads;
pub mod workload;

#[cfg(test)]
mod tests;

pub use hypervisor::{Access, CbtMiss, Differences, HypervisorTiming, Hypervisors, SnapshotInfo};
pub use point_digests::PointDigests;
pub use store::{Store, StoreStats, StoreTiming};

use crate::des::Services;
use crate::scenario::Scenario;
use blockferry_core::hypervisor::{HypervisorCompletion, HypervisorRequest};
use blockferry_core::storage::{StorageCompletion, StorageError, StorageRequest};
use blockferry_core::{NodeId, Timestamp};
use rand_chacha::ChaCha8Rng;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// What a node is to the world: whose requests go where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// A host agent: hypervisor requests go to this host.
    Host(String),
    /// A direct-mode proxy: hypervisor reads of VMs on these hosts.
    Datastore(Vec<String>),
    /// A repository: storage requests go to this store.
    Repository(String),
}

pub struct World {
    hypervisors: Hypervisors,
    stores: BTreeMap<String, Store>,
    bindings: BTreeMap<NodeId, Binding>,
}

impl World {
    pub fn new(hypervisors: Hypervisors, stores: impl IntoIterator<Item = Store>) -> World {
        let stores = stores.into_iter().map(|s| (s.name().to_string(), s)).collect();
        World { hypervisors, stores, bindings: BTreeMap::new() }
    }

    /// The scenario's hosts, VMs and repositories, content keyed by `seed`.
    /// Nodes still need binding ([`World::bind`]).
    pub fn from_scenario(s: &Scenario, seed: u64) -> Result<World, String> {
        let mut hypervisors = Hypervisors::from_scenario(s, seed)?;
        for (replica, guest) in crate::topology::replica_guests(s) {
            hypervisors.set_guest(replica, guest);
        }
        let stores = s.repositories.iter().map(|r| {
            let mut store = Store::new(&r.name, r.capacity);
            store.reserve_blocks(crate::topology::backed_up_blocks(s, &r.name));
            store
        });
        Ok(World::new(hypervisors, stores))
    }

    /// Routes `node`'s requests.
    pub fn bind(&mut self, node: NodeId, binding: Binding) {
        self.bindings.insert(node, binding);
    }

    pub fn hypervisors(&self) -> &Hypervisors {
        &self.hypervisors
    }

    pub fn hypervisors_mut(&mut self) -> &mut Hypervisors {
        &mut self.hypervisors
    }

    pub fn store(&self, name: &str) -> Option<&Store> {
        self.stores.get(name)
    }

    pub fn store_mut(&mut self, name: &str) -> Option<&mut Store> {
        self.stores.get_mut(name)
    }

    pub fn stores(&self) -> impl Iterator<Item = &Store> {
        self.stores.values()
    }

    /// An RNG for one fault draw (say `("corrupt_block", fault index)`),
    /// derived from the world's key: independent of every other draw, so
    /// adding a fault never shifts the others.
    pub fn fault_rng(&self, purpose: &str, index: u64) -> ChaCha8Rng {
        self.hypervisors.key().rng(purpose, &[&index.to_le_bytes()])
    }

    /// What the stores' manifest audits found since the last call.
    pub fn take_audit_findings(&mut self) -> Vec<String> {
        self.stores.values_mut().flat_map(Store::take_audit_findings).collect()
    }

    /// Brings the world up to `now` (guest writes, durable batches).
    pub fn advance_to(&mut self, now: Timestamp) {
        self.hypervisors.advance_to(now);
        for store in self.stores.values_mut() {
            store.settle(now);
        }
    }
}

impl Services for World {
    fn storage(&mut self, now: Timestamp, node: NodeId, request: StorageRequest) -> (Timestamp, StorageCompletion) {
        let store = match self.bindings.get(&node) {
            Some(Binding::Repository(name)) => self.stores.get_mut(name),
            _ => None,
        };
        match store {
            Some(store) => store.handle(now, request),
            None => (now, StorageCompletion { id: request.id, result: Err(StorageError::Io(format!("node {node} has no store"))) }),
        }
    }

    fn hypervisor(&mut self, now: Timestamp, node: NodeId, request: HypervisorRequest) -> (Timestamp, HypervisorCompletion) {
        let access = match self.bindings.get(&node) {
            Some(Binding::Host(host)) => Access::Host(host),
            Some(Binding::Datastore(hosts)) => Access::Datastore(hosts),
            _ => return (now, HypervisorCompletion { id: request.id, result: Err(format!("node {node} has no hypervisor access")) }),
        };
        self.hypervisors.handle(now, access, request)
    }
}

/// A world shared between the engine (which owns its `Services` box) and
/// the runner (faults, checker).
impl Services for Rc<RefCell<World>> {
    fn storage(&mut self, now: Timestamp, node: NodeId, request: StorageRequest) -> (Timestamp, StorageCompletion) {
        self.borrow_mut().storage(now, node, request)
    }

    fn hypervisor(&mut self, now: Timestamp, node: NodeId, request: HypervisorRequest) -> (Timestamp, HypervisorCompletion) {
        self.borrow_mut().hypervisor(now, node, request)
    }
}
