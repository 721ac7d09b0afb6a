//! VM requests: which folder a VM is, creating restore targets, writing
//! their blocks, and power.

use super::FileHost;
use super::blocks::{check_writes, write_blocks};
use super::durable::sync_dir;
use super::error::At;
use super::layout::{check_folder_name, list_disks, restored_disk_names};
use super::state::CreatedVm;
use blockferry_core::hypervisor::HypervisorReply;
use blockferry_core::payload::BlockData;
use blockferry_core::{BlockSize, VmId};
use std::fs::{self, OpenOptions};
use std::io;
use std::path::PathBuf;

impl FileHost {
    /// The folder of a VM of this host: configured, or created by it.
    pub(super) fn folder_of(&self, vm: VmId) -> Result<String, String> {
        if let Some(folder) = self.configured.get(&vm) {
            return Ok(folder.clone());
        }
        self.stored()?
            .get()
            .created(vm)
            .map(|c| c.folder.clone())
            .ok_or_else(|| format!("{vm} is not a VM of the file host of {}", self.layout.root().display()))
    }

    /// Creates a restore or replica target: the folder and sparse images
    /// of the sizes asked. The VM is recorded before its files are made, so
    /// a creation a crash cut short is finished by the same request asked
    /// again; a different request for the VM, or any request once something
    /// was written to it, is refused.
    pub(super) fn create_vm(&self, vm: VmId, name: String, disks: &[u64]) -> Result<HypervisorReply, String> {
        check_folder_name(&name)?;
        if disks.len() > usize::from(u16::MAX) + 1 {
            return Err(format!("vm {name:?} would have {} disks; disks are numbered by 16 bits", disks.len()));
        }
        let dir = self.layout.vm_dir(&name);
        let mut stored = self.stored()?;
        if let Some(folder) = self.configured.get(&vm) {
            return Err(format!("{vm} already exists on this host (folder {folder:?}): a restore target must be a new VM"));
        }
        match stored.get().created(vm) {
            Some(c) if c.folder == name && c.disks == disks && !c.written => {}
            Some(c) => {
                return Err(format!(
                    "{vm} already exists on this host (folder {:?}, {} disks{})",
                    c.folder,
                    c.disks.len(),
                    if c.written { ", written to since" } else { "" }
                ));
            }
            None => {
                let mut taken = self.configured.iter().map(|(v, f)| (*v, f)).chain(stored.get().created.iter().map(|c| (c.vm, &c.folder)));
                if let Some((owner, _)) = taken.find(|(_, f)| **f == name) {
                    return Err(format!("folder {name:?} already belongs to {owner}"));
                }
                if !is_empty_or_missing(&dir)? {
                    return Err(format!("{} exists and is not empty: a restore never writes into an existing folder", dir.display()));
                }
                let created = CreatedVm { vm, folder: name.clone(), disks: disks.to_vec(), written: false };
                stored.change(|s| {
                    s.created.push(created);
                    Ok(())
                })?;
            }
        }
        drop(stored);
        make_images(&dir, disks)?;
        sync_dir(self.layout.root())?;
        Ok(HypervisorReply::VmCreated)
    }

    /// Writes blocks to one of the VM's disks, durably. The whole request
    /// is checked first; a created VM is marked written (durably) before
    /// its first byte changes.
    pub(super) fn write_blocks(
        &self,
        vm: VmId,
        disk: u16,
        block_size: BlockSize,
        blocks: &[(u64, BlockData)],
    ) -> Result<HypervisorReply, String> {
        let path = self.disk_path(vm, disk)?;
        let file = OpenOptions::new().write(true).open(&path).at("opening", &path)?;
        let bytes = file.metadata().at("reading", &path)?.len();
        let writes = check_writes(&path, bytes, block_size, blocks)?;
        if writes.is_empty() {
            return Ok(HypervisorReply::BlocksWritten);
        }
        let mut stored = self.stored()?;
        if stored.get().created(vm).is_some_and(|c| !c.written) {
            stored.change(|s| {
                s.created.iter_mut().filter(|c| c.vm == vm).for_each(|c| c.written = true);
                Ok(())
            })?;
        }
        drop(stored);
        write_blocks(&file, &path, &writes)?;
        Ok(HypervisorReply::BlocksWritten)
    }

    /// The image of the VM's disk `disk`.
    fn disk_path(&self, vm: VmId, disk: u16) -> Result<PathBuf, String> {
        let dir = self.layout.vm_dir(&self.folder_of(vm)?);
        let files = list_disks(&dir)?;
        let file = files
            .get(usize::from(disk))
            .ok_or_else(|| format!("{vm} has no disk {disk}: {} holds {} disk images", dir.display(), files.len()))?;
        Ok(dir.join(file))
    }

    /// Records the power state asked for (see the module documentation:
    /// a file host has no power control).
    pub(super) fn set_power(&self, vm: VmId, on: bool) -> Result<HypervisorReply, String> {
        let folder = self.folder_of(vm)?;
        tracing::info!(%vm, %folder, on, "power change recorded; a file host does not start or stop VMs");
        self.power.lock().map_err(|_| "the file host's power records are unusable after a panic".to_string())?.insert(vm, on);
        Ok(HypervisorReply::Done)
    }
}

fn is_empty_or_missing(dir: &std::path::Path) -> Result<bool, String> {
    match fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(format!("listing {}: {e}", dir.display())),
    }
}

/// The folder and its sparse images (an image already there from a cut
/// short creation is given its size again), durably.
fn make_images(dir: &std::path::Path, sizes: &[u64]) -> Result<(), String> {
    fs::create_dir_all(dir).at("creating", dir)?;
    for (name, &bytes) in restored_disk_names(sizes.len()).iter().zip(sizes) {
        let path = dir.join(name);
        let file = OpenOptions::new().write(true).create(true).truncate(false).open(&path).at("creating", &path)?;
        file.set_len(bytes).at("sizing", &path)?;
        file.sync_all().at("syncing", &path)?;
    }
    sync_dir(dir)
}
