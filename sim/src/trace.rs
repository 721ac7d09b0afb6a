//! The event trace of one run and its hash.
//!
//! Every event a node emits is appended as (time, node, event) to a BLAKE3
//! hasher; the hex digest is the run's `trace_hash`. Same scenario, seed and
//! build → same hash: this is what the determinism tests compare. Entries can
//! optionally be kept for printing (`keep`), but the hash never needs them.

use blockferry_core::{Event, NodeId, Timestamp};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct TraceEntry {
    pub at: Timestamp,
    pub node: NodeId,
    pub event: Event,
}

pub struct Trace {
    hasher: blake3::Hasher,
    len: u64,
    kept: Option<Vec<TraceEntry>>,
    scratch: Vec<u8>,
}

impl Default for Trace {
    fn default() -> Self {
        Trace { hasher: blake3::Hasher::new(), len: 0, kept: None, scratch: Vec::new() }
    }
}

impl Trace {
    /// A trace that also keeps its entries.
    pub fn keeping() -> Self {
        Trace { kept: Some(Vec::new()), ..Trace::default() }
    }

    pub fn record(&mut self, at: Timestamp, node: NodeId, event: &Event) {
        self.scratch.clear();
        self.scratch.extend_from_slice(&at.0.to_le_bytes());
        self.scratch.extend_from_slice(&node.0.to_le_bytes());
        // Events are plain data; encoding into a Vec cannot fail.
        if let Ok(bytes) = postcard::to_extend(event, std::mem::take(&mut self.scratch)) {
            self.scratch = bytes;
        }
        self.hasher.update(&(self.scratch.len() as u64).to_le_bytes());
        self.hasher.update(&self.scratch);
        self.len += 1;
        if let Some(kept) = &mut self.kept {
            kept.push(TraceEntry { at, node, event: event.clone() });
        }
    }

    /// Number of entries recorded.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Takes the entries kept since the last call (the hash is unaffected).
    pub fn take_entries(&mut self) -> Vec<TraceEntry> {
        self.kept.as_mut().map(std::mem::take).unwrap_or_default()
    }

    pub fn entries(&self) -> &[TraceEntry] {
        self.kept.as_deref().unwrap_or(&[])
    }

    /// The hex BLAKE3 hash of everything recorded so far.
    pub fn hash(&self) -> String {
        self.hasher.finalize().to_hex().to_string()
    }
}
