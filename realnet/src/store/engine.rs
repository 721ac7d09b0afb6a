//! [`Store`]: answers core's `StorageOp`s from the files, with the
//! simulator's store semantics (sim/src/world/store.rs), which the
//! repository role relies on:
//!
//! * block puts, block deletes and manifest deletes are durable only once
//!   a later `Sync` completes, and a crash before it loses them (a pack's
//!   tail after its last sync mark is cut off on open; a manifest delete
//!   waits in memory and is carried out by the sync, before the pack marks,
//!   so a crash never keeps a point whose blocks' deletions it kept);
//! * `PutManifest` and the replica metadata ops are durable and atomic on
//!   their own;
//! * a put beyond capacity is refused whole with `Full`; a block already
//!   stored intact is not stored again, a damaged one is replaced;
//! * a damaged block is reported `Damaged` in place, never served.
//!
//! Requests are carried out one at a time, in the order given.

use super::error::{StoreError, at};
use super::files;
use super::gc::{self, GcReport};
use super::index::{BlockIndex, Entry};
use super::meta::MetaDir;
use super::packs::{Batch, Packs};
use super::record;
use super::recover;
use super::report::{DamagedFile, DamagedRange, IncompletePoint, RecoveryReport};
use blockferry_core::manifest::Manifest;
use blockferry_core::payload::BlockPayload;
use blockferry_core::storage::{StorageError, StorageOp, StorageReply};
use blockferry_core::{Digest, EncodedBlock, RestorePointId, decode_block};
use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// How a store is run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoreOptions {
    /// Most bytes of live block records (headers included) the store holds;
    /// a put past it is refused with `Full`. Space held by dead records
    /// until compaction, by manifests and by indexes is not counted: leave
    /// the disk some headroom (see FORMAT.md).
    pub capacity: Option<u64>,
    /// Size at which a pack stops taking records.
    pub pack_target: u64,
    /// A sealed pack whose live records are less than this share of it is
    /// compacted by garbage collection.
    pub compact_below: f64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { capacity: None, pack_target: 256 << 20, compact_below: 0.5 }
    }
}

/// Counters for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    pub blocks: u64,
    /// Bytes of live block records (what capacity bounds).
    pub live_bytes: u64,
    /// Bytes of every pack file (live, dead and marks).
    pub pack_bytes: u64,
    pub packs: u64,
    pub capacity: Option<u64>,
}

pub struct Store {
    options: StoreOptions,
    /// Held for the store's life: one process, one handle at a time.
    _lock: File,
    pub(super) packs: Packs,
    pub(super) index: BlockIndex,
    pub(super) points: MetaDir,
    pub(super) replicas: MetaDir,
    /// Manifest deletions waiting for the next `Sync`.
    deleting: BTreeSet<RestorePointId>,
    /// The manifests read on open, kept for the first `Recover`.
    recovered: Option<Vec<Manifest>>,
    /// Pack stretches found damaged on open (for `verify`).
    pub(super) damaged_ranges: Vec<DamagedRange>,
    /// Packs found missing or disagreeing with their index on open (for
    /// `verify`; manifests it reads again).
    pub(super) pack_findings: Vec<DamagedFile>,
    /// Set when a flush failed: see [`StoreError::Stopped`].
    stopped: Option<String>,
}

impl Store {
    /// Opens (or creates) the store in `root`, recovering from however it
    /// was last stopped.
    pub fn open(root: impl Into<PathBuf>, options: StoreOptions) -> Result<(Store, RecoveryReport), StoreError> {
        let root = root.into();
        for dir in [root.clone(), root.join("packs"), root.join("points"), root.join("replicas")] {
            if !dir.is_dir() {
                std::fs::create_dir_all(&dir).map_err(at(&dir, "creating the folder"))?;
                files::sync_dir(dir.parent().unwrap_or(&root))?;
            }
        }
        let lock = lock(&root.join("lock"))?;
        let mut report = RecoveryReport::default();
        let (packs, index) = recover::open_packs(&root.join("packs"), options.pack_target, &mut report)?;
        let pack_findings: Vec<DamagedFile> =
            report.damaged_files.iter().filter(|f| !report.rebuilt_indexes.contains(&f.path)).cloned().collect();
        let (points, replicas) = (MetaDir::new(root.join("points")), MetaDir::new(root.join("replicas")));
        let mut manifests = Vec::new();
        for dir in [&points, &replicas] {
            report.removed_temp_files.extend(files::remove_temp_files(dir.dir())?);
            let loaded = dir.load_all()?;
            report.damaged_files.extend(loaded.damaged);
            if dir.dir() == points.dir() {
                manifests = loaded.manifests;
            }
        }
        for (path, manifest) in &manifests {
            let mut missing = manifest.referenced().filter(|d| index.get(d).is_none());
            if let Some(first_missing) = missing.next() {
                let point = manifest.point;
                let missing = 1 + missing.count() as u64;
                report.incomplete_points.push(IncompletePoint { point, path: path.clone(), missing, first_missing });
            }
        }
        report.blocks = index.len() as u64;
        report.points = manifests.len() as u64;
        report.log();
        let store = Store {
            options,
            _lock: lock,
            packs,
            index,
            points,
            replicas,
            deleting: BTreeSet::new(),
            recovered: Some(manifests.into_iter().map(|(_, m)| m).collect()),
            damaged_ranges: report.damaged_ranges.clone(),
            pack_findings,
            stopped: None,
        };
        Ok((store, report))
    }

    pub fn stats(&self) -> StoreStats {
        StoreStats {
            blocks: self.index.len() as u64,
            live_bytes: self.index.live_bytes(),
            pack_bytes: self.packs.total_len(),
            packs: self.packs.iter().count() as u64,
            capacity: self.options.capacity,
        }
    }

    /// The file of pack `number` (for reports and tests).
    pub fn pack_path(&self, number: u32) -> PathBuf {
        self.packs.path(number)
    }

    /// Carries out one request.
    pub fn apply(&mut self, op: StorageOp) -> Result<StorageReply, StorageError> {
        if let Some(reason) = &self.stopped {
            return Err(StoreError::Stopped(reason.clone()).into());
        }
        let done = Ok(StorageReply::Done);
        match op {
            StorageOp::PutBlocks(blocks) => self.put_blocks(blocks).map(|()| StorageReply::Done),
            StorageOp::Sync => self.sync().map(|()| StorageReply::Done).map_err(Into::into),
            StorageOp::PutManifest(manifest) => {
                self.deleting.remove(&manifest.point);
                self.recovered = None;
                self.points.put(&manifest)?;
                done
            }
            StorageOp::DeleteManifest(point) => {
                self.deleting.insert(point);
                self.recovered = None;
                done
            }
            StorageOp::DeleteBlocks(digests) => self.delete_blocks(digests).map(|()| StorageReply::Done),
            StorageOp::GetBlocks(digests) => Ok(StorageReply::Blocks(digests.iter().map(|d| self.get_block(d)).collect())),
            StorageOp::Recover => {
                let manifests = match self.recovered.take() {
                    Some(manifests) => manifests,
                    None => self.load(&self.points.clone())?,
                };
                let manifests = manifests.into_iter().filter(|m| !self.deleting.contains(&m.point)).collect();
                Ok(StorageReply::Recovered { manifests, blocks: self.index.digests() })
            }
            StorageOp::PutReplicaMetadata(manifest) => {
                self.replicas.put(&manifest)?;
                done
            }
            StorageOp::DeleteReplicaMetadata(point) => {
                self.replicas.remove(point)?;
                files::sync_dir(self.replicas.dir())?;
                done
            }
            StorageOp::RecoverReplicaMetadata => Ok(StorageReply::ReplicaMetadata(self.load(&self.replicas.clone())?)),
        }
    }

    /// The intact manifests of `dir`; damaged files are logged and skipped
    /// (opening the store reports them too).
    fn load(&self, dir: &MetaDir) -> Result<Vec<Manifest>, StoreError> {
        let loaded = dir.load_all()?;
        for f in loaded.damaged {
            tracing::error!(path = %f.path.display(), "damaged file not used: {}", f.reason);
        }
        Ok(loaded.manifests.into_iter().map(|(_, m)| m).collect())
    }

    fn put_blocks(&mut self, payloads: Vec<BlockPayload>) -> Result<(), StorageError> {
        let mut blocks = Vec::with_capacity(payloads.len());
        for payload in payloads {
            match payload {
                BlockPayload::Encoded(block) if !block.digest.is_zero_block() => blocks.push(block),
                BlockPayload::Encoded(_) => {}
                BlockPayload::Synthetic { digest, .. } => {
                    return Err(StorageError::Io(format!("block {digest} is synthetic: a disk store keeps real bytes only")));
                }
            }
        }
        blocks.sort_by_key(|b| b.digest);
        blocks.dedup_by_key(|b| b.digest);
        let mut batch = Batch::default();
        let mut replaced = 0;
        for block in &blocks {
            if let Some(entry) = self.index.get(&block.digest).copied() {
                if self.intact(&block.digest, entry) {
                    continue;
                }
                replaced += entry.record_len();
            }
            batch.block(block).map_err(StorageError::Io)?;
        }
        if batch.is_empty() {
            return Ok(());
        }
        let after = (self.index.live_bytes() + batch.len()).saturating_sub(replaced);
        if self.options.capacity.is_some_and(|capacity| after > capacity) {
            return Err(StorageError::Full);
        }
        let base = self.packs.append(&batch)?;
        for r in batch.records() {
            self.index.insert(r.digest, record::Loc { pack: base.pack, offset: base.offset + r.offset }, r.body_len);
        }
        Ok(())
    }

    /// Whether `digest`'s stored copy reads back and hashes to its digest
    /// (asked only when a block already stored is put again: the repair
    /// path, or two writers racing with the same new block).
    fn intact(&mut self, digest: &Digest, entry: Entry) -> bool {
        !entry.damaged && self.read_block(digest, entry).is_ok_and(|block| decode_block(&block).is_ok())
    }

    /// The block at `entry`, checked against its record's checksum.
    fn read_block(&mut self, digest: &Digest, entry: Entry) -> Result<EncodedBlock, StorageError> {
        let bytes = self.packs.read(entry.at, entry.body_len)?;
        record::decode_block_record(bytes, digest).map_err(|reason| {
            let path = self.packs.path(entry.at.pack);
            tracing::error!(block = %digest, path = %path.display(), offset = entry.at.offset, "damaged block: {reason}");
            self.index.mark_damaged(digest);
            StorageError::Damaged(*digest)
        })
    }

    fn get_block(&mut self, digest: &Digest) -> Result<BlockPayload, StorageError> {
        let entry = self.index.get(digest).copied().ok_or(StorageError::Missing(*digest))?;
        self.read_block(digest, entry).map(BlockPayload::Encoded)
    }

    fn delete_blocks(&mut self, digests: Vec<Digest>) -> Result<(), StorageError> {
        let mut batch = Batch::default();
        let mut gone = Vec::new();
        for digest in digests.into_iter().collect::<BTreeSet<_>>() {
            let copies = self.index.copies(&digest);
            if copies.is_empty() {
                continue;
            }
            for loc in copies {
                batch.tombstone(digest, loc);
            }
            gone.push(digest);
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.packs.append(&batch)?;
        for digest in &gone {
            self.index.remove(digest);
        }
        Ok(())
    }

    /// Makes every completed change durable: manifest deletions first (so
    /// that no crash keeps a manifest whose blocks' tombstones it kept),
    /// then the packs. A failure stops the store (see [`StoreError::Stopped`]):
    /// after a failed flush the kernel may have dropped the unflushed pages,
    /// so nothing written since the last good sync can be trusted.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        let result = self.sync_inner();
        if let Err(e) = &result {
            self.stopped = Some(e.to_string());
        }
        result
    }

    fn sync_inner(&mut self) -> Result<(), StoreError> {
        if !self.deleting.is_empty() {
            for point in &self.deleting {
                self.points.remove(*point)?;
            }
            files::sync_dir(self.points.dir())?;
            self.deleting.clear();
        }
        self.packs.sync()
    }

    /// Syncs (compaction flushes the packs, and only a full `Sync` keeps
    /// manifest deletions ahead of block tombstones), then deletes packs
    /// with nothing live and compacts up to `compactions` packs whose live
    /// share is low (see [`gc`]).
    pub fn collect_garbage_step(&mut self, compactions: usize) -> Result<GcReport, StoreError> {
        if let Some(reason) = &self.stopped {
            return Err(StoreError::Stopped(reason.clone()));
        }
        self.sync()?;
        let result = gc::collect(&mut self.packs, &mut self.index, self.options.compact_below, compactions);
        if let Some(reason) = self.packs.failed() {
            self.stopped = Some(reason.to_string());
        }
        result
    }

    /// Collects all the garbage there is.
    pub fn collect_garbage(&mut self) -> Result<GcReport, StoreError> {
        self.collect_garbage_step(usize::MAX)
    }
}

/// Takes the store's lock file, or says who holds it.
fn lock(path: &Path) -> Result<File, StoreError> {
    let file = OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(at(path, "opening the lock file"))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(StoreError::Locked { path: path.to_path_buf() }),
        Err(e) => Err(at(path, "locking")(e.into())),
    }
}
