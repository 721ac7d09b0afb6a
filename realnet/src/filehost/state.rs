//! The file host's durable state: snapshot ids it issued, its live
//! snapshots and the VMs it created. One small JSON file (an operator can
//! read it), replaced atomically on every change and changed in memory
//! only once the new file is durable, so what the host answered is what a
//! restarted host finds.

use super::durable::write_atomic;
use super::error::At;
use super::identity::Identity;
use blockferry_core::{SnapshotId, VmId};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

const VERSION: u32 = 1;

/// How a snapshot holds its instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum SnapshotKind {
    /// Reflink copies under the snapshot's folder: reads, reverts and the
    /// live image are independent.
    Reflink,
    /// Only the images' identities: reads go to the live images and fail
    /// if they moved.
    Identity,
}

/// One disk as a snapshot froze it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FrozenDisk {
    pub file: String,
    pub bytes: u64,
    /// The live image's identity when frozen: what an `Identity` snapshot
    /// checks reads against (a `Reflink` one needs none).
    pub identity: Option<Identity>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapshotRecord {
    pub id: SnapshotId,
    pub vm: VmId,
    /// The VM's folder when frozen: the snapshot stays readable if the
    /// daemon's configuration changes meanwhile.
    pub folder: String,
    pub kind: SnapshotKind,
    pub disks: Vec<FrozenDisk>,
}

/// A VM the file host created (a restore or replica target): daemons'
/// configurations do not name those, yet after a restart the writes to
/// them must still find them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CreatedVm {
    pub vm: VmId,
    pub folder: String,
    pub disks: Vec<u64>,
    /// Set (durably) before the first write: from then on a repeated
    /// `CreateVm` is refused, since the VM is no longer the empty one asked
    /// for.
    pub written: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct State {
    pub version: u32,
    /// Every snapshot id issued so far is below it.
    pub next_snapshot: u64,
    pub snapshots: Vec<SnapshotRecord>,
    pub created: Vec<CreatedVm>,
}

impl State {
    pub(crate) fn snapshot(&self, snap: SnapshotId) -> Option<&SnapshotRecord> {
        self.snapshots.iter().find(|s| s.id == snap)
    }

    pub(crate) fn created(&self, vm: VmId) -> Option<&CreatedVm> {
        self.created.iter().find(|c| c.vm == vm)
    }

    /// A new snapshot id: the wall clock in microseconds, or the next after
    /// the last issued if the clock is behind it. The persisted high-water
    /// mark keeps ids unique across restarts; the clock keeps them unique
    /// even if an operator deletes the state (a manager may still remember
    /// old ids).
    pub(crate) fn issue_snapshot_id(&mut self) -> SnapshotId {
        let micros = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let id = micros.max(self.next_snapshot);
        self.next_snapshot = id.saturating_add(1);
        SnapshotId(id)
    }
}

/// The state and the file it lives in.
#[derive(Debug)]
pub(crate) struct Stored {
    path: PathBuf,
    state: State,
}

impl Stored {
    /// Loads the state file; a datastore without one starts empty. A file
    /// that does not parse is an error, never a fresh start: that would
    /// forget live snapshots.
    pub(crate) fn load(path: PathBuf) -> Result<Stored, String> {
        let state = match fs::read(&path) {
            Ok(bytes) => parse(&path, &bytes)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => State { version: VERSION, ..State::default() },
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        };
        Ok(Stored { path, state })
    }

    pub(crate) fn get(&self) -> &State {
        &self.state
    }

    /// Applies `change` to a copy of the state, writes the copy durably and
    /// only then makes it current: if `change` fails or the write does,
    /// nothing changed, in memory or on disk.
    pub(crate) fn change<T>(&mut self, change: impl FnOnce(&mut State) -> Result<T, String>) -> Result<T, String> {
        let mut next = self.state.clone();
        let out = change(&mut next)?;
        let bytes = serde_json::to_vec_pretty(&next).map_err(|e| format!("encoding {}: {e}", self.path.display()))?;
        write_atomic(&self.path, &bytes)?;
        self.state = next;
        Ok(out)
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<State, String> {
    let state: State = serde_json::from_slice(bytes).map_err(io::Error::other).at("parsing the file host state", path)?;
    if state.version != VERSION {
        return Err(format!("{} has state version {}; this blockferry reads version {VERSION}", path.display(), state.version));
    }
    Ok(state)
}
