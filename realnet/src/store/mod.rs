//! The repository's store on disk: blocks in append-only pack files,
//! restore-point manifests and replica metadata in files of their own,
//! crash-safe without a flush per block. The format and its reasons are in
//! FORMAT.md beside this file.
//!
//! * [`Store`] carries out core's `StorageOp`s synchronously, one at a time.
//! * [`DiskStore`] runs a `Store` on its own thread as a node's
//!   [`Services`](crate::Services).
//! * [`Store::open`] recovers from any crash point and reports what it
//!   found ([`RecoveryReport`]); [`Store::verify`] re-reads and re-hashes
//!   everything ([`VerifyReport`]).

mod engine;
mod error;
mod files;
mod gc;
mod index;
mod meta;
mod pack_index;
mod packs;
mod record;
mod recover;
mod report;
mod scan;
mod service;
mod verify;

#[cfg(test)]
mod tests;

pub use engine::{Store, StoreOptions, StoreStats};
pub use error::StoreError;
pub use gc::GcReport;
pub use report::{DamagedBlock, DamagedFile, DamagedRange, IncompletePoint, MissingBlock, RecoveryReport, TruncatedTail, VerifyReport};
pub use service::DiskStore;
