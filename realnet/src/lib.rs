//! blockferry-realnet: the async driver that runs one sans-IO core node over
//! a byte-stream transport, and (later) the production daemons built on it.
//!
//! The driver is written once and used twice: over tokio's TCP here
//! ([`transport::TokioTcp`]) and over turmoil's simulated TCP in
//! `blockferry-sim`. Everything it needs from the outside world comes in
//! through small traits — [`transport::Transport`], [`clock::Clock`] and
//! [`services::Services`] — so it never knows which world it runs in.
//!
//! [`filehost`] is a host daemon's hypervisor backend: raw disk images in
//! a datastore folder, served as [`services::Services`].
//! [`store`] is the repository's store on disk, served to the driver as
//! a [`Services`] by [`DiskStore`].

pub mod clock;
pub mod cluster;
pub mod driver;
pub mod filehost;
pub mod services;
pub mod store;
pub mod transport;

pub use clock::{Clock, TokioClock};
pub use driver::{Backoff, ConfigError, Driver, DriverConfig, DriverError, EventSink, Keepalive, Peer, tracing_sink};
pub use filehost::{FileHost, FileHostConfig, FileHostService, SnapshotPolicy};
pub use services::{NoServices, Services};
pub use store::{DiskStore, Store, StoreOptions};
pub use transport::{TokioTcp, Transport};
