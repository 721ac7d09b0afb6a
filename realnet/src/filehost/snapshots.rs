//! Snapshot requests: create, read, commit, revert (see the module
//! documentation of [`super`] for the two kinds).

use super::FileHost;
use super::blocks::read_blocks;
use super::durable::sync_dir;
use super::error::At;
use super::identity::{self, Identity};
use super::layout::list_disks;
use super::reflink;
use super::state::{FrozenDisk, SnapshotKind, SnapshotRecord};
use blockferry_core::hypervisor::{HypervisorReply, SnapshotDisk};
use blockferry_core::payload::BlockData;
use blockferry_core::{BlockSize, SnapshotId, VmId};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

impl FileHost {
    /// Freezes the VM's images. The id is issued (durably) first, so a
    /// crash halfway never makes it issue the same id again; the copies
    /// are made next, and the snapshot is recorded last: until then it does
    /// not exist for anyone, and copies without a record are removed at
    /// the next start.
    pub(super) fn create_snapshot(&self, vm: VmId) -> Result<HypervisorReply, String> {
        let folder = self.folder_of(vm)?;
        let dir = self.layout.vm_dir(&folder);
        let files = list_disks(&dir)?;
        let id = self.stored()?.change(|s| Ok(s.issue_snapshot_id()))?;
        let (kind, disks) = if self.reflinks {
            (SnapshotKind::Reflink, self.copy_images(id, &dir, &files)?)
        } else {
            (SnapshotKind::Identity, freeze_identities(&dir, &files)?)
        };
        let reply = disks.iter().map(|d| SnapshotDisk { bytes: d.bytes, change_id: None }).collect();
        let record = SnapshotRecord { id, vm, folder, kind, disks };
        let recorded = self.stored()?.change(|s| {
            s.snapshots.push(record);
            Ok(())
        });
        if let Err(e) = recorded {
            self.remove_copies(id, kind);
            return Err(e);
        }
        if let Ok(mut owners) = self.owners.lock() {
            owners.insert(id, vm);
        }
        Ok(HypervisorReply::SnapshotCreated { snap: id, disks: reply })
    }

    /// Reflink copies of `files` under the snapshot's folder; on failure
    /// nothing is left behind.
    fn copy_images(&self, id: SnapshotId, dir: &Path, files: &[String]) -> Result<Vec<FrozenDisk>, String> {
        let copies = self.layout.snapshot_dir(id);
        fs::create_dir(&copies).at("creating", &copies)?;
        let made = files
            .iter()
            .map(|file| {
                let bytes = reflink::clone_into(&dir.join(file), &copies.join(file))?;
                Ok(FrozenDisk { file: file.clone(), bytes, identity: None })
            })
            .collect::<Result<Vec<_>, String>>()
            .and_then(|disks| {
                sync_dir(&copies)?;
                sync_dir(&self.layout.snapshots())?;
                Ok(disks)
            });
        if made.is_err() {
            self.remove_copies(id, SnapshotKind::Reflink);
        }
        made
    }

    /// Best effort: a failure leaves an orphan the next start removes.
    fn remove_copies(&self, id: SnapshotId, kind: SnapshotKind) {
        if kind == SnapshotKind::Reflink {
            let copies = self.layout.snapshot_dir(id);
            if let Err(e) = fs::remove_dir_all(&copies)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(path = %copies.display(), error = %e, "cannot remove snapshot copies; the next start will");
            }
        }
    }

    /// A live snapshot's record and one of its disks.
    pub(super) fn frozen_disk(&self, snap: SnapshotId, disk: u16) -> Result<(SnapshotRecord, FrozenDisk), String> {
        let record = self.live_snapshot(snap)?;
        let frozen = record
            .disks
            .get(usize::from(disk))
            .cloned()
            .ok_or_else(|| format!("snapshot {snap} of {} has no disk {disk} (it froze {} disks)", record.vm, record.disks.len()))?;
        Ok((record, frozen))
    }

    fn live_snapshot(&self, snap: SnapshotId) -> Result<SnapshotRecord, String> {
        self.stored()?.get().snapshot(snap).cloned().ok_or_else(|| {
            format!("no snapshot {snap} on the file host of {} (committed, or never made here)", self.layout.root().display())
        })
    }

    /// Where a snapshot's disk is read from: its copy, or the live image.
    fn frozen_path(&self, record: &SnapshotRecord, frozen: &FrozenDisk) -> PathBuf {
        match record.kind {
            SnapshotKind::Reflink => self.layout.snapshot_dir(record.id).join(&frozen.file),
            SnapshotKind::Identity => self.layout.vm_dir(&record.folder).join(&frozen.file),
        }
    }

    pub(super) fn read_blocks(
        &self,
        snap: SnapshotId,
        disk: u16,
        block_size: BlockSize,
        blocks: &[u64],
    ) -> Result<Vec<(u64, BlockData)>, String> {
        let (record, frozen) = self.frozen_disk(snap, disk)?;
        let path = self.frozen_path(&record, &frozen);
        let file = File::open(&path).at("opening", &path)?;
        match (record.kind, frozen.identity) {
            (SnapshotKind::Reflink, _) => read_blocks(&file, &path, frozen.bytes, block_size, blocks),
            (SnapshotKind::Identity, Some(recorded)) => {
                identity::check_unchanged(&path, &file, &recorded)?;
                let read = read_blocks(&file, &path, frozen.bytes, block_size, blocks)?;
                identity::check_unchanged(&path, &file, &recorded)?;
                Ok(read)
            }
            (SnapshotKind::Identity, None) => {
                Err(format!("{}: snapshot {snap} records no identity for {}", self.layout.state_file().display(), path.display()))
            }
        }
    }

    /// Forgets the snapshot (durably), then deletes its copies. Committing
    /// again is fine: an id this host issued that is no longer live was
    /// committed (ids are never reused). An id it never issued is an error.
    pub(super) fn commit_snapshot(&self, snap: SnapshotId) -> Result<HypervisorReply, String> {
        let mut stored = self.stored()?;
        let Some(record) = stored.get().snapshot(snap).cloned() else {
            if snap.0 < stored.get().next_snapshot {
                return Ok(HypervisorReply::SnapshotCommitted);
            }
            return Err(format!("no snapshot {snap} on the file host of {}: it never issued that id", self.layout.root().display()));
        };
        stored.change(|s| {
            s.snapshots.retain(|r| r.id != snap);
            Ok(())
        })?;
        drop(stored);
        if let Ok(mut owners) = self.owners.lock() {
            owners.remove(&snap);
        }
        self.remove_copies(snap, record.kind);
        Ok(HypervisorReply::SnapshotCommitted)
    }

    /// Returns the VM's images to the snapshot's content; the snapshot
    /// stays (see the module documentation for identity snapshots).
    pub(super) fn revert(&self, snap: SnapshotId) -> Result<HypervisorReply, String> {
        let record = self.live_snapshot(snap)?;
        let dir = self.layout.vm_dir(&record.folder);
        for frozen in &record.disks {
            let live = dir.join(&frozen.file);
            match (record.kind, frozen.identity) {
                (SnapshotKind::Reflink, _) => reflink::restore_over(&self.frozen_path(&record, frozen), &live)?,
                (SnapshotKind::Identity, Some(recorded)) if identity::unchanged(&live, &recorded)? => {}
                (SnapshotKind::Identity, _) => {
                    return Err(format!(
                        "cannot revert {} to snapshot {snap}: {} changed since, and the snapshot holds no copy to go back to \
                         (the datastore's filesystem has no reflinks; keep replicas on XFS or btrfs)",
                        record.vm,
                        live.display()
                    ));
                }
            }
        }
        Ok(HypervisorReply::Done)
    }
}

/// Identity snapshot: each image's identity once the images are still.
fn freeze_identities(dir: &Path, files: &[String]) -> Result<Vec<FrozenDisk>, String> {
    let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let ids: Vec<Identity> = identity::capture_settled(&refs)?;
    Ok(files.iter().zip(ids).map(|(file, id)| FrozenDisk { file: file.clone(), bytes: id.len(), identity: Some(id) }).collect())
}
