//! blockferry-core: the sans-IO protocol core.
//!
//! Everything here is a pure function or a plain state machine: no sockets,
//! no clock, no filesystem, no threads, no global RNG. Drivers (the
//! simulator's engines, the production daemons) feed inputs and carry out the
//! outputs; see [`node`] for the contract they follow.

pub mod block;
pub mod config;
pub mod config_file;
pub mod digest_table;
pub mod event;
pub mod hypervisor;
pub mod ids;
pub mod limits;
pub mod manifest;
pub mod node;
pub mod pacing;
pub mod payload;
pub mod roles;
pub mod storage;
pub mod time;
pub mod wire;

pub use block::{BlockSize, Compression, Digest, EncodedBlock, WARM_CHUNK, decode_block, encode_block};
pub use event::Event;
pub use ids::{ChangeId, DiskId, JobId, NodeId, RequestId, RestorePointId, SessionId, SnapshotId, TaskId, VmId};
pub use node::{Input, Node, Output, TimerId};
pub use time::Timestamp;
pub use wire::Message;
