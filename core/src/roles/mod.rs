//! The roles of a deployment, each a sans-IO state machine (see
//! [`crate::node`]): the manager plans and commits, proxies move data,
//! repositories keep restore points, hosts front the hypervisors.

pub mod authorise;
#[cfg(test)]
mod cluster_tests;
mod data_requests;
pub mod host;
pub mod manager;
pub mod proxy;
pub mod repository;
#[cfg(test)]
mod testing;

pub use authorise::{Authorised, Role, Roster};
pub use host::Host;
pub use manager::Manager;
pub use proxy::{Direct, Proxy};
pub use repository::Repository;

/// Hands out request ids for storage and hypervisor requests.
#[derive(Debug, Default)]
pub(crate) struct RequestIds(u64);

impl RequestIds {
    pub(crate) fn next(&mut self) -> crate::ids::RequestId {
        self.0 += 1;
        crate::ids::RequestId(self.0)
    }
}
