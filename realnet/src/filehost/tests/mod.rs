//! File host tests on real files. Reflink tests need a filesystem with
//! reflinks: they use `$BLOCKFERRY_REFLINK_DIR` if set (an XFS or btrfs
//! mount), else the system's temporary folder, and say so and pass when
//! that has none.

mod requests;
mod restart;
mod restore;
mod service;
mod snapshots;

use super::{FileHost, FileHostConfig, SnapshotPolicy};
use blockferry_core::hypervisor::{HypervisorOp, HypervisorReply, SnapshotDisk};
use blockferry_core::payload::BlockData;
use blockferry_core::{BlockSize, SnapshotId, VmId};
use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// Small blocks keep the images small; the code paths are the same.
const BS: BlockSize = BlockSize::WAN;
const BLOCK: usize = 256 * 1024;
const VM: VmId = VmId(1);
const FOLDER: &str = "web";
/// Disk 0: six blocks, the last one short.
const DISK0: &str = "a-system.img";
const DISK0_LEN: usize = 5 * BLOCK + 1234;
/// Disk 1: three whole blocks.
const DISK1: &str = "b-data.img";
const DISK1_LEN: usize = 3 * BLOCK;

/// Deterministic noise (xorshift): incompressible bytes without a crate.
fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn text(len: usize) -> Vec<u8> {
    b"the quick brown fox jumps over the lazy dog; ".iter().copied().cycle().take(len).collect()
}

/// Disk 0: a hole, text, random, a hole, text then random inside one
/// block, and a short random last block. Disk 1: random, zeros written as
/// zeros (allocated, not a hole), text.
fn contents() -> [(&'static str, Vec<u8>); 2] {
    let mut a = vec![0u8; DISK0_LEN];
    a[BLOCK..2 * BLOCK].copy_from_slice(&text(BLOCK));
    a[2 * BLOCK..3 * BLOCK].copy_from_slice(&random(BLOCK, 7));
    a[4 * BLOCK..4 * BLOCK + 1000].copy_from_slice(&text(1000));
    a[4 * BLOCK + 1000..5 * BLOCK].copy_from_slice(&random(BLOCK - 1000, 8));
    a[5 * BLOCK..].copy_from_slice(&random(1234, 9));
    let mut b = vec![0u8; DISK1_LEN];
    b[..BLOCK].copy_from_slice(&random(BLOCK, 10));
    b[2 * BLOCK..].copy_from_slice(&text(BLOCK));
    [(DISK0, a), (DISK1, b)]
}

/// Writes an image sparsely: zero runs of disk 0 stay holes (as a guest's
/// untouched space does); disk 1's zeros are written as data.
fn write_image(path: &Path, bytes: &[u8], sparse: bool) {
    let file = OpenOptions::new().create(true).truncate(true).write(true).open(path).expect("image created");
    file.set_len(bytes.len() as u64).expect("image sized");
    for (i, chunk) in bytes.chunks(BLOCK).enumerate() {
        if !sparse || chunk.iter().any(|&b| b != 0) {
            file.write_all_at(chunk, (i * BLOCK) as u64).expect("image written");
        }
    }
}

/// A datastore with one VM folder holding the two images.
struct Datastore {
    dir: TempDir,
}

impl Datastore {
    fn new() -> Datastore {
        Self::new_in(None)
    }

    fn new_in(base: Option<&Path>) -> Datastore {
        let dir = match base {
            Some(base) => tempfile::tempdir_in(base),
            None => tempfile::tempdir(),
        }
        .expect("a temporary datastore");
        let vm = dir.path().join(FOLDER);
        fs::create_dir(&vm).expect("vm folder");
        for (i, (name, bytes)) in contents().iter().enumerate() {
            write_image(&vm.join(name), bytes, i == 0);
        }
        Datastore { dir }
    }

    /// Where reflink tests run (see the module documentation).
    fn for_reflinks() -> Datastore {
        let base = std::env::var_os("BLOCKFERRY_REFLINK_DIR").map(PathBuf::from);
        Self::new_in(base.as_deref())
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn image(&self, name: &str) -> PathBuf {
        self.path().join(FOLDER).join(name)
    }

    fn open(&self, policy: SnapshotPolicy) -> FileHost {
        FileHost::open(FileHostConfig {
            datastore: self.path().to_path_buf(),
            vms: BTreeMap::from([(VM, FOLDER.to_string())]),
            snapshots: policy,
        })
        .expect("the file host opens")
    }

    /// A host with reflinks, or `None` (having said why) where the
    /// filesystem has none.
    fn open_reflinks(&self, test: &str) -> Option<FileHost> {
        let host = self.open(SnapshotPolicy::Auto);
        if !host.reflinks() {
            eprintln!(
                "SKIPPED {test}: {} has no reflinks (FICLONE); set BLOCKFERRY_REFLINK_DIR to a folder on XFS (reflink=1) or btrfs to run it",
                self.path().display()
            );
            return None;
        }
        Some(host)
    }

    /// Everything under the datastore, with contents: what "changes
    /// nothing" compares.
    fn tree(&self) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Option<Vec<u8>>>) {
            for entry in fs::read_dir(dir).expect("listing") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    out.insert(path.clone(), None);
                    walk(&path, out);
                } else {
                    out.insert(path.clone(), Some(fs::read(&path).expect("reading")));
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(self.path(), &mut out);
        out
    }
}

/// The guest writes `bytes` at `offset` of the live image.
fn guest_write(path: &Path, offset: u64, bytes: &[u8]) {
    let file = OpenOptions::new().write(true).open(path).expect("image opened");
    file.write_all_at(bytes, offset).expect("guest write");
}

fn snapshot(host: &FileHost, vm: VmId) -> (SnapshotId, Vec<SnapshotDisk>) {
    match host.handle(HypervisorOp::CreateSnapshot { vm }) {
        Ok(HypervisorReply::SnapshotCreated { snap, disks }) => (snap, disks),
        other => panic!("snapshot of {vm}: {other:?}"),
    }
}

fn read(host: &FileHost, snap: SnapshotId, disk: u16, blocks: Vec<u64>) -> Result<Vec<(u64, Vec<u8>)>, String> {
    match host.handle(HypervisorOp::ReadBlocks { snap, disk, block_size: BS, blocks })? {
        HypervisorReply::BlocksRead(read) => Ok(read
            .into_iter()
            .map(|(i, data)| match data {
                BlockData::Bytes(bytes) => (i, bytes),
                BlockData::Synthetic(s) => panic!("a file host returned a synthetic block {s:?}"),
            })
            .collect()),
        other => panic!("read answered {other:?}"),
    }
}

/// A whole disk of a snapshot, read back to front in requests of two
/// blocks (so runs, request order and the short last block all count).
fn read_disk(host: &FileHost, snap: SnapshotId, disk: u16, bytes: u64) -> Result<Vec<u8>, String> {
    let count = BS.blocks_for(bytes);
    let mut blocks = vec![Vec::new(); count as usize];
    let order: Vec<u64> = (0..count).rev().collect();
    for pair in order.chunks(2) {
        let asked: Vec<u64> = pair.iter().rev().copied().collect();
        let got = read(host, snap, disk, asked.clone())?;
        assert_eq!(got.iter().map(|(i, _)| *i).collect::<Vec<_>>(), asked, "blocks come back in the order asked");
        for (i, data) in got {
            blocks[i as usize] = data;
        }
    }
    Ok(blocks.concat())
}

fn write(host: &FileHost, vm: VmId, disk: u16, blocks: Vec<(u64, Vec<u8>)>) -> Result<HypervisorReply, String> {
    let blocks = blocks.into_iter().map(|(i, b)| (i, BlockData::Bytes(b))).collect();
    host.handle(HypervisorOp::WriteBlocks { vm, disk, block_size: BS, blocks })
}
