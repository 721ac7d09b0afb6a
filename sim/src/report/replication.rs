//! Replication figures of a job's summary (present only for replication
//! jobs): skipped VMs and why, the first sync of each seeded or mapped
//! replica against the blocks that really differed, and operator actions.

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplicationFigures {
    /// VMs left out of sessions (no seed yet, failed over, ...).
    pub vms_skipped: u64,
    pub skip_reasons: Vec<String>,
    pub first_syncs: Vec<FirstSync>,
    pub actions: Vec<ActionRecord>,
}

/// A seeded or mapped replica's first sync (invariant 4).
#[derive(Debug, Clone, Serialize)]
pub struct FirstSync {
    pub vm: String,
    /// "seeded" or "mapped".
    pub kind: String,
    pub blocks_total: u64,
    /// Non-zero blocks of the source (swap left out): what a first sync
    /// without seed or mapping sends.
    pub blocks_full_copy: u64,
    /// Blocks whose content differed between the replica before the sync
    /// and the source (the oracle's count, swap left out).
    pub blocks_differing: u64,
    /// Blocks the sync wrote to the replica (zero blocks included).
    pub blocks_transferred: u64,
    /// Blocks whose payload crossed to the target proxy.
    pub blocks_sent: u64,
    /// Their compressed bytes.
    pub bytes_sent: u64,
    /// Everything the session put on WAN links (payloads, digest lists,
    /// metadata, control), when the engine measures it.
    pub wan_bytes: Option<u64>,
}

/// An operator action on a replica and whether its result was verified.
#[derive(Debug, Clone, Serialize)]
pub struct ActionRecord {
    pub at_secs: u64,
    pub vm: String,
    pub action: String,
    /// Failover: the point, counted back from the newest.
    pub point_back: Option<u32>,
    pub ok: bool,
    /// The checker compared the outcome with the oracle and it held.
    pub verified: bool,
    /// Failback: what went back to the source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfer: Option<Transfer>,
}

/// Blocks a failback moved, against those that really differed between
/// the source before it and the replica's final content.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Transfer {
    pub blocks_differing: u64,
    pub blocks_transferred: u64,
    pub blocks_sent: u64,
    pub bytes_sent: u64,
}
