//! What the repository role asks of its store, and the answers. The sim's
//! store models durability (what a crash loses) and faults; realnet's keeps
//! pack files and a crash-safe index.

use crate::block::Digest;
use crate::ids::{RequestId, RestorePointId};
use crate::manifest::Manifest;
use crate::payload::BlockPayload;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageRequest {
    pub id: RequestId,
    pub op: StorageOp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StorageOp {
    /// Append blocks. Not durable until a later `Sync` completes.
    PutBlocks(Vec<BlockPayload>),
    /// Make every write completed so far durable.
    Sync,
    /// Write a manifest durably and atomically (visible whole or not at all).
    PutManifest(Manifest),
    DeleteManifest(RestorePointId),
    DeleteBlocks(Vec<Digest>),
    GetBlocks(Vec<Digest>),
    /// After a restart: what survived.
    Recover,
    /// Write one replica point's metadata (its digest vectors, shaped as a
    /// manifest whose blocks are not in this store) durably and atomically.
    PutReplicaMetadata(Manifest),
    /// Forget a replica point's metadata, durably.
    DeleteReplicaMetadata(RestorePointId),
    /// The replica metadata that survived (answered `ReplicaMetadata`).
    RecoverReplicaMetadata,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageCompletion {
    pub id: RequestId,
    pub result: Result<StorageReply, StorageError>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StorageReply {
    Done,
    /// In request order; a block that cannot be read is an error in place.
    Blocks(Vec<Result<BlockPayload, StorageError>>),
    Recovered {
        manifests: Vec<Manifest>,
        blocks: Vec<Digest>,
    },
    ReplicaMetadata(Vec<Manifest>),
}

impl StorageReply {
    /// The kind of reply, for messages about a reply of the wrong kind
    /// (never the reply itself: it may hold megabytes of blocks).
    pub fn kind(&self) -> &'static str {
        match self {
            StorageReply::Done => "done",
            StorageReply::Blocks(_) => "blocks",
            StorageReply::Recovered { .. } => "recovered",
            StorageReply::ReplicaMetadata(_) => "replica metadata",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum StorageError {
    #[error("repository storage is full")]
    Full,
    #[error("block {0:?} is not in the store")]
    Missing(Digest),
    #[error("block {0:?} is damaged at rest")]
    Damaged(Digest),
    #[error("storage I/O error: {0}")]
    Io(String),
}
