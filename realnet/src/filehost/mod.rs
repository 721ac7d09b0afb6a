//! The file host: the hypervisor backend of a host whose VMs are raw disk
//! images in a datastore folder (plain QEMU/KVM, or a lab), serving the
//! host role's [`HypervisorOp`]s.
//!
//! # Datastore
//!
//! A folder per VM; a VM's disks are the `*.img` files in it, disk `i`
//! being the i-th by name (hidden files excluded, see
//! `layout::list_disks`). The daemon names its VMs' folders
//! ([`FileHostConfig::vms`]); VMs the host creates (restore and replica
//! targets) are remembered in its state. The host keeps its own files under
//! `<datastore>/.blockferry/`: `state.json` (module `state`) and
//! `snapshots/<id>/` (reflink copies). Reflinks work within one
//! filesystem only: VM folders that are mounts of their own get an error
//! naming the image when snapshotted on a reflink datastore.
//!
//! # Snapshots: one instant of each image
//!
//! Where the datastore's filesystem has reflinks (probed at start), a
//! snapshot is a reflink copy of each image: made at once, frozen while
//! the guest writes on, read and reverted independently of the live image,
//! deleted by `CommitSnapshot`. Elsewhere a snapshot records each image's
//! identity (device, inode, size, mtime, ctime) and reads go to the live
//! image, each checked before and after; an image that moved fails the
//! read with [`IMAGE_CHANGED`], so a torn restore point is never committed
//! (the VM must be stopped while it is backed up). Each image is frozen at
//! its own instant: images of one VM are not frozen together.
//!
//! Snapshot ids never repeat (the wall clock in microseconds, or one past
//! the last issued, a high-water mark kept in `state.json`), and
//! snapshots survive a restart of the daemon. `CommitSnapshot` is
//! idempotent: an id issued here and no longer live was committed.
//!
//! # Changed blocks
//!
//! Raw images have no changed-block tracking, so every `ChangedBlocks` is
//! answered [`ChangedBlocks::Unavailable`] (as the simulator's hosts
//! without CBT answer), and snapshots carry no change ids: a proxy then
//! reads every block and compares digests with the previous point, so only
//! changed blocks cross to the repository. Holes are not reported as
//! unallocated: the reply has no place for "zero" apart from "unchanged",
//! and a full and a digest-compare incremental ask alike (`since: None`);
//! an incremental that skipped a block the guest discarded since the base
//! would keep the base's stale content. Reading a hole costs no disk IO.
//!
//! # Restored VMs
//!
//! `CreateVm` carries no disk names, so a created VM's disks are
//! `disk0.img`, `disk1.img`... (`layout::restored_disk_names`), sparse, of
//! the sizes asked. It is refused over an existing non-empty folder and for
//! an existing VM, unless it is the same request again and nothing was
//! written to the VM since (a lost answer, asked again).
//!
//! # Power and reverts
//!
//! A file host cannot start or stop a VM: `SetPower` is recorded
//! ([`FileHost::power`]) and logged, and succeeds, so replication's
//! sequences run; the operator's VM manager does the powering.
//! `RevertToSnapshot` copies a reflink snapshot's images back (atomically,
//! by rename, so the VM must be off: a running QEMU would keep writing the
//! file it has open) and keeps the snapshot. An identity snapshot holds no copy:
//! reverting to it succeeds only if no image changed since (there is
//! nothing to undo) and is refused otherwise, naming the image — replicas
//! belong on a filesystem with reflinks.
//!
//! # Blocking
//!
//! [`FileHost`] does blocking IO and may be called from several threads;
//! it keeps no order between requests. [`FileHostService`] runs requests on
//! tokio's blocking pool so the driver's event loop never waits on a disk,
//! one VM's requests in the order they were asked.

mod blocks;
mod durable;
mod error;
mod identity;
mod layout;
mod reflink;
mod service;
mod snapshots;
mod state;
#[cfg(test)]
mod tests;
mod vms;

pub use blocks::MAX_READ_BYTES;
pub use error::OpenError;
pub use identity::IMAGE_CHANGED;
pub use service::FileHostService;

use blockferry_core::hypervisor::{ChangedBlocks, HypervisorOp, HypervisorReply};
use blockferry_core::{SnapshotId, VmId};
use error::At;
use layout::Layout;
use state::{SnapshotKind, Stored};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// How a file host takes snapshots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SnapshotPolicy {
    /// Reflink copies where the datastore's filesystem has reflinks,
    /// identity checks elsewhere.
    #[default]
    Auto,
    /// Identity checks even where reflinks work (no copies at all; VMs
    /// must be stopped while backed up).
    IdentityOnly,
}

/// What a daemon tells its file host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHostConfig {
    /// The datastore folder (it must exist).
    pub datastore: PathBuf,
    /// The VMs of the daemon's configuration: id → folder name in the
    /// datastore.
    pub vms: BTreeMap<VmId, String>,
    pub snapshots: SnapshotPolicy,
}

/// Serves [`HypervisorOp`]s over a datastore folder (see the module
/// documentation).
#[derive(Debug)]
pub struct FileHost {
    layout: Layout,
    reflinks: bool,
    configured: BTreeMap<VmId, String>,
    stored: Mutex<Stored>,
    /// The VM of each live snapshot, for [`FileHost::vm_of`]: kept apart
    /// from `stored`, whose lock is held while the state file is synced,
    /// so that routing a request never waits on a disk.
    owners: Mutex<BTreeMap<SnapshotId, VmId>>,
    power: Mutex<BTreeMap<VmId, bool>>,
}

impl FileHost {
    /// Opens the datastore: creates `.blockferry/` if needed, loads the
    /// state, checks the configured VMs against it, probes for reflinks and
    /// removes snapshot copies a crash left without a record.
    pub fn open(config: FileHostConfig) -> Result<FileHost, OpenError> {
        Self::open_inner(config).map_err(OpenError)
    }

    fn open_inner(config: FileHostConfig) -> Result<FileHost, String> {
        let root = config.datastore;
        if !fs::metadata(&root).at("opening datastore", &root)?.is_dir() {
            return Err(format!("datastore {} is not a folder", root.display()));
        }
        let layout = Layout::new(root);
        fs::create_dir_all(layout.snapshots()).at("creating", &layout.snapshots())?;
        let mut folders = BTreeMap::new();
        for (vm, folder) in &config.vms {
            layout::check_folder_name(folder).map_err(|e| format!("{vm}: {e}"))?;
            if let Some(other) = folders.insert(folder.as_str(), *vm) {
                return Err(format!("{other} and {vm} are both configured as folder {folder:?}"));
            }
        }
        let stored = Stored::load(layout.state_file())?;
        for created in &stored.get().created {
            let clash = |what: String| format!("{}: {what}", layout.state_file().display());
            match (config.vms.get(&created.vm), folders.get(created.folder.as_str())) {
                (Some(folder), _) if *folder != created.folder => {
                    return Err(clash(format!(
                        "{} is configured as folder {folder:?} but was created as {:?}",
                        created.vm, created.folder
                    )));
                }
                (_, Some(owner)) if *owner != created.vm => {
                    return Err(clash(format!("folder {:?} is configured for {owner} but was created for {}", created.folder, created.vm)));
                }
                _ => {}
            }
        }
        let reflinks = match config.snapshots {
            SnapshotPolicy::IdentityOnly => false,
            SnapshotPolicy::Auto => match reflink::probe(&layout.meta())? {
                reflink::Support::Reflinks => true,
                reflink::Support::None(why) => {
                    tracing::info!(datastore = %layout.root().display(), %why, "no reflinks: snapshots check image identity");
                    false
                }
            },
        };
        let owners = stored.get().snapshots.iter().map(|s| (s.id, s.vm)).collect();
        let host = FileHost {
            layout,
            reflinks,
            configured: config.vms,
            stored: Mutex::new(stored),
            owners: Mutex::new(owners),
            power: Mutex::new(BTreeMap::new()),
        };
        host.remove_orphan_copies()?;
        Ok(host)
    }

    /// Whether snapshots are reflink copies (else identity checks).
    pub fn reflinks(&self) -> bool {
        self.reflinks
    }

    pub fn datastore(&self) -> &Path {
        self.layout.root()
    }

    /// The last power state asked for the VM, if any (a file host has no
    /// power control; see the module documentation).
    pub fn power(&self, vm: VmId) -> Option<bool> {
        self.power.lock().ok()?.get(&vm).copied()
    }

    /// The VM a request is about, for keeping one VM's requests in order
    /// (`None`: a snapshot this host does not know; the request fails).
    pub fn vm_of(&self, op: &HypervisorOp) -> Option<VmId> {
        match op {
            HypervisorOp::CreateSnapshot { vm }
            | HypervisorOp::CreateVm { vm, .. }
            | HypervisorOp::WriteBlocks { vm, .. }
            | HypervisorOp::SetPower { vm, .. } => Some(*vm),
            HypervisorOp::ChangedBlocks { snap, .. }
            | HypervisorOp::ReadBlocks { snap, .. }
            | HypervisorOp::CommitSnapshot { snap }
            | HypervisorOp::RevertToSnapshot { snap } => self.owners.lock().ok()?.get(snap).copied(),
        }
    }

    /// Carries out one request, blocking until it is done (and durable).
    pub fn handle(&self, op: HypervisorOp) -> Result<HypervisorReply, String> {
        match op {
            HypervisorOp::CreateSnapshot { vm } => self.create_snapshot(vm),
            HypervisorOp::ChangedBlocks { snap, disk, since: _, block_size } => {
                // Never any CBT (see the module documentation): whatever
                // `since` says, the caller reads everything and compares.
                let (_, frozen) = self.frozen_disk(snap, disk)?;
                let swap = bitvec::vec::BitVec::repeat(false, block_size.blocks_for(frozen.bytes) as usize);
                Ok(HypervisorReply::ChangedBlocks(ChangedBlocks::Unavailable { swap }))
            }
            HypervisorOp::ReadBlocks { snap, disk, block_size, blocks } => {
                self.read_blocks(snap, disk, block_size, &blocks).map(HypervisorReply::BlocksRead)
            }
            HypervisorOp::CommitSnapshot { snap } => self.commit_snapshot(snap),
            HypervisorOp::CreateVm { vm, name, disks } => self.create_vm(vm, name, &disks),
            HypervisorOp::WriteBlocks { vm, disk, block_size, blocks } => self.write_blocks(vm, disk, block_size, &blocks),
            HypervisorOp::RevertToSnapshot { snap } => self.revert(snap),
            HypervisorOp::SetPower { vm, on } => self.set_power(vm, on),
        }
    }

    fn stored(&self) -> Result<MutexGuard<'_, Stored>, String> {
        self.stored.lock().map_err(|_| "the file host's state is unusable after a panic in another request".to_string())
    }

    /// Snapshot folders with no live record: a crash between making the
    /// copies and recording them, or between forgetting a snapshot and
    /// deleting its copies.
    fn remove_orphan_copies(&self) -> Result<(), String> {
        let live: BTreeSet<u64> =
            self.stored()?.get().snapshots.iter().filter(|s| s.kind == SnapshotKind::Reflink).map(|s| s.id.0).collect();
        let dir = self.layout.snapshots();
        for entry in fs::read_dir(&dir).at("listing", &dir)? {
            let path = entry.at("listing", &dir)?.path();
            let id = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse::<u64>().ok());
            if id.is_some_and(|id| !live.contains(&id)) {
                tracing::info!(path = %path.display(), "removing the copies of a snapshot that was never recorded or already committed");
                fs::remove_dir_all(&path).at("removing", &path)?;
            }
        }
        Ok(())
    }
}
