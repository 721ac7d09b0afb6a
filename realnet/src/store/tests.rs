//! Tests of the disk store, on real files in temporary folders.

mod capacity;
mod crash;
mod damage;
mod gc;
mod kill;
mod ops;
mod service;

use super::{RecoveryReport, Store, StoreOptions};
use blockferry_core::block::{BlockSize, Compression, encode_block};
use blockferry_core::manifest::{DiskManifest, Manifest};
use blockferry_core::payload::BlockPayload;
use blockferry_core::storage::{StorageError, StorageOp, StorageReply};
use blockferry_core::{Digest, EncodedBlock, JobId, RestorePointId, SessionId, SnapshotId, Timestamp, VmId};
use std::path::{Path, PathBuf};

/// A manifest of point `point` whose one disk references `digests`.
pub fn sample_manifest(point: u64, digests: &[Digest]) -> Manifest {
    Manifest {
        point: RestorePointId(point),
        job: JobId(1),
        session: SessionId(point),
        vm: VmId(1),
        snapshot_at: Timestamp::ZERO,
        snapshot: SnapshotId(point),
        parent: None,
        disks: vec![DiskManifest {
            index: 0,
            bytes: digests.len() as u64 * u64::from(BlockSize::default().bytes()),
            change_id: None,
            block_size: BlockSize::default(),
            digests: digests.into(),
        }],
    }
}

/// A block of `len` pseudo-random (incompressible) bytes drawn from `seed`.
pub fn random_block(seed: u64, len: usize) -> EncodedBlock {
    let mut raw = vec![0u8; len];
    blake3::Hasher::new().update(&seed.to_le_bytes()).finalize_xof().fill(&mut raw);
    encode_block(&raw, Compression::Optimal)
}

/// Blocks `seeds` of a few KiB each (sizes vary with the seed).
pub fn blocks(seeds: impl IntoIterator<Item = u64>) -> Vec<EncodedBlock> {
    seeds.into_iter().map(|s| random_block(s, 1024 + (s as usize % 5) * 1024)).collect()
}

/// Small packs, so a few dozen blocks span several.
pub fn small_packs() -> StoreOptions {
    StoreOptions { pack_target: 16 << 10, ..StoreOptions::default() }
}

pub fn open(dir: &Path, options: StoreOptions) -> (Store, RecoveryReport) {
    Store::open(dir, options).expect("the store opens")
}

pub fn put(store: &mut Store, blocks: &[EncodedBlock]) -> Result<StorageReply, StorageError> {
    store.apply(StorageOp::PutBlocks(blocks.iter().cloned().map(BlockPayload::Encoded).collect()))
}

pub fn ok(result: Result<StorageReply, StorageError>) {
    assert_eq!(result, Ok(StorageReply::Done));
}

pub fn sync(store: &mut Store) {
    ok(store.apply(StorageOp::Sync));
}

pub fn digests(blocks: &[EncodedBlock]) -> Vec<Digest> {
    blocks.iter().map(|b| b.digest).collect()
}

/// What `Recover` answers: manifests sorted by point, blocks sorted.
pub fn recover(store: &mut Store) -> (Vec<Manifest>, Vec<Digest>) {
    match store.apply(StorageOp::Recover) {
        Ok(StorageReply::Recovered { mut manifests, blocks }) => {
            manifests.sort_by_key(|m| m.point);
            (manifests, blocks)
        }
        other => panic!("recover answered {other:?}"),
    }
}

pub fn get(store: &mut Store, digests: &[Digest]) -> Vec<Result<BlockPayload, StorageError>> {
    match store.apply(StorageOp::GetBlocks(digests.to_vec())) {
        Ok(StorageReply::Blocks(blocks)) => blocks,
        other => panic!("get answered {other:?}"),
    }
}

/// Asserts that every block of `blocks` reads back exactly.
pub fn assert_readable(store: &mut Store, blocks: &[EncodedBlock]) {
    let got = get(store, &digests(blocks));
    for (block, got) in blocks.iter().zip(got) {
        assert_eq!(got, Ok(BlockPayload::Encoded(block.clone())), "block {}", block.digest);
    }
}

/// The pack files in the store at `root`, sorted.
pub fn pack_files(root: &Path) -> Vec<PathBuf> {
    let mut packs: Vec<PathBuf> = std::fs::read_dir(root.join("packs")).expect("packs folder").map(|e| e.expect("entry").path()).collect();
    packs.retain(|p| p.extension().is_some_and(|e| e == "pack"));
    packs.sort();
    packs
}

/// Bytes of every pack file and index.
pub fn pack_bytes(root: &Path) -> u64 {
    std::fs::read_dir(root.join("packs")).expect("packs folder").map(|e| e.expect("entry").metadata().expect("metadata").len()).sum()
}

/// Flips one bit of the byte at `offset` of `path`.
pub fn flip(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).expect("readable");
    bytes[offset as usize] ^= 0x20;
    std::fs::write(path, bytes).expect("writable");
}

pub fn temp() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary folder")
}
