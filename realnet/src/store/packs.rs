//! The pack files: appending records, reading them back, and the flush
//! protocol that decides what a crash keeps.
//!
//! Appends go to one *open* pack with plain writes (no flush per block).
//! When it reaches the target size, the next append starts a new pack; the
//! old one stays *unsealed* until the next sync. A sync flushes every pack
//! written since the last one, then appends a sync mark to each and
//! flushes again: a mark on disk means everything before it is on disk
//! too, and on open everything after a pack's last mark is cut off (it was
//! never made durable, so keeping it would make an unsynced delete
//! survive). Then rolled packs are *sealed*: their index file is written.

use super::error::{StoreError, at};
use super::files::{self, TEMP_SUFFIX};
use super::pack_index;
use super::record::{self, LOCATION_RECORD_LEN, Loc, PACK_HEADER_LEN, RECORD_HEADER_LEN, RecordInfo, What};
use blockferry_core::Digest;
use blockferry_core::block::EncodedBlock;
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Read handles kept open for sealed packs: enough for reads that wander
/// over a few packs, far below the descriptor limit of a store of
/// thousands of packs.
const MAX_READERS: usize = 32;

pub fn pack_name(number: u32) -> String {
    format!("{number:08}.pack")
}

pub fn index_name(number: u32) -> String {
    format!("{number:08}.idx")
}

/// The pack number a file name stands for, and whether it is an index.
pub fn parse_name(name: &str) -> Option<(u32, bool)> {
    if name.ends_with(TEMP_SUFFIX) {
        return None;
    }
    let (stem, index) = match (name.strip_suffix(".pack"), name.strip_suffix(".idx")) {
        (Some(stem), _) => (stem, false),
        (_, Some(stem)) => (stem, true),
        _ => return None,
    };
    stem.bytes().all(|b| b.is_ascii_digit()).then(|| stem.parse().ok()).flatten().map(|n| (n, index))
}

/// Records to append together, with offsets relative to the batch.
#[derive(Debug, Default)]
pub struct Batch {
    bytes: Vec<u8>,
    records: Vec<RecordInfo>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    pub fn records(&self) -> &[RecordInfo] {
        &self.records
    }

    pub fn block(&mut self, block: &EncodedBlock) -> Result<(), String> {
        let offset = self.len();
        record::push_block(&mut self.bytes, block)?;
        let body_len = (self.len() - offset - RECORD_HEADER_LEN as u64) as u32;
        self.records.push(RecordInfo { offset, body_len, digest: block.digest, what: What::Block });
        Ok(())
    }

    pub fn tombstone(&mut self, digest: Digest, target: Loc) {
        let offset = self.len();
        record::push_tombstone(&mut self.bytes, digest, target);
        let body_len = (LOCATION_RECORD_LEN - RECORD_HEADER_LEN as u64) as u32;
        self.records.push(RecordInfo { offset, body_len, digest, what: What::Tombstone(target) });
    }

    /// A record copied verbatim (compaction), as `info` describes it.
    pub fn raw(&mut self, info: RecordInfo, bytes: &[u8]) {
        self.records.push(RecordInfo { offset: self.len(), ..info });
        self.bytes.extend_from_slice(bytes);
    }
}

/// One pack as the store tracks it.
#[derive(Debug)]
pub struct PackState {
    /// Bytes in the file: where the next record goes.
    pub len: u64,
    /// Written since its last sync mark.
    pub dirty: bool,
    /// Its index file is written; it takes no more records.
    pub sealed: bool,
    /// An unsealed pack's records, for its index.
    pub records: Vec<RecordInfo>,
    /// Tombstones in it, by the pack they kill a record in: it must be
    /// kept (or its tombstones copied) while any of those packs exists.
    pub tomb_targets: BTreeMap<u32, u32>,
    /// An unsealed pack's handle (appends, flushes).
    pub file: Option<File>,
    /// Damage was found in it on open: it has no index (so every open
    /// scans it and reports the damage again) and is never compacted.
    pub damaged: bool,
}

impl PackState {
    pub fn new(len: u64, sealed: bool, records: &[RecordInfo], file: Option<File>) -> PackState {
        let mut state = PackState { len, dirty: false, sealed, records: Vec::new(), tomb_targets: BTreeMap::new(), file, damaged: false };
        state.add(records);
        if sealed {
            state.records = Vec::new();
        }
        state
    }

    fn add(&mut self, records: &[RecordInfo]) {
        for r in records {
            if let What::Tombstone(target) = r.what {
                *self.tomb_targets.entry(target.pack).or_default() += 1;
            }
        }
        self.records.extend_from_slice(records);
    }

    /// Payload bytes of records (what live bytes are a share of).
    pub fn content_len(&self) -> u64 {
        self.len.saturating_sub(PACK_HEADER_LEN)
    }
}

#[derive(Debug)]
pub struct Packs {
    dir: PathBuf,
    /// Size at which the open pack stops taking records.
    target: u64,
    packs: BTreeMap<u32, PackState>,
    open: Option<u32>,
    readers: HashMap<u32, File>,
    /// A pack was created since the folder was last flushed.
    dir_dirty: bool,
    /// Why a flush failed, if one did: nothing more is written.
    failed: Option<String>,
}

impl Packs {
    pub fn new(dir: PathBuf, target: u64) -> Packs {
        Packs { dir, target, packs: BTreeMap::new(), open: None, readers: HashMap::new(), dir_dirty: false, failed: None }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, number: u32) -> PathBuf {
        self.dir.join(pack_name(number))
    }

    pub fn index_path(&self, number: u32) -> PathBuf {
        self.dir.join(index_name(number))
    }

    /// Adds a pack found on open; an unsealed one found last becomes the
    /// open pack (see [`Packs::reopen`]).
    pub fn insert(&mut self, number: u32, state: PackState) {
        self.packs.insert(number, state);
    }

    /// Appends continue in `number` (the newest pack, unsealed).
    pub fn reopen(&mut self, number: u32) {
        self.open = Some(number);
    }

    pub fn get(&self, number: u32) -> Option<&PackState> {
        self.packs.get(&number)
    }

    pub fn contains(&self, number: u32) -> bool {
        self.packs.contains_key(&number)
    }

    pub fn is_open(&self, number: u32) -> bool {
        self.open == Some(number)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &PackState)> {
        self.packs.iter().map(|(n, s)| (*n, s))
    }

    pub fn total_len(&self) -> u64 {
        self.packs.values().map(|p| p.len).sum()
    }

    /// Appends `batch` to the open pack (starting a new one if it is full);
    /// returns where the batch starts. On failure the pack is cut back to
    /// its length before the append, so nothing half-written stays.
    pub fn append(&mut self, batch: &Batch) -> Result<Loc, StoreError> {
        if let Some(reason) = &self.failed {
            return Err(StoreError::Stopped(reason.clone()));
        }
        let number = match self.open.filter(|n| self.packs.get(n).is_some_and(|p| p.len < self.target)) {
            Some(number) => number,
            None => self.start_pack()?,
        };
        let path = self.path(number);
        let pack = self.packs.get_mut(&number).ok_or_else(|| StoreError::Refused(format!("pack {number} vanished")))?;
        let file = pack.file.as_ref().ok_or_else(|| StoreError::Refused(format!("{} is sealed", path.display())))?;
        let base = pack.len;
        if let Err(e) = file.write_all_at(&batch.bytes, base) {
            // Best effort: a tail left behind is past the last mark, and
            // recovery cuts it off.
            let _ = file.set_len(base);
            return Err(at(&path, "appending records")(e));
        }
        pack.len += batch.len();
        pack.dirty = true;
        let rebased: Vec<RecordInfo> = batch.records.iter().map(|r| RecordInfo { offset: r.offset + base, ..*r }).collect();
        pack.add(&rebased);
        Ok(Loc { pack: number, offset: base })
    }

    /// Creates the next pack and makes it the open one (its creation is
    /// durable with the next sync, like its records).
    fn start_pack(&mut self) -> Result<u32, StoreError> {
        let last = self.packs.keys().next_back().copied().unwrap_or(0);
        let number = last.checked_add(1).ok_or_else(|| StoreError::Refused(format!("no pack number after {last}")))?;
        let path = self.path(number);
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(&path).map_err(at(&path, "creating a pack"))?;
        if let Err(e) = file.write_all_at(&record::pack_header(number), 0) {
            let _ = std::fs::remove_file(&path);
            return Err(at(&path, "writing a pack header")(e));
        }
        let mut state = PackState::new(PACK_HEADER_LEN, false, &[], Some(file));
        state.dirty = true;
        self.packs.insert(number, state);
        self.open = Some(number);
        self.dir_dirty = true;
        Ok(number)
    }

    /// Reads the whole record at `loc` (header and body).
    pub fn read(&mut self, loc: Loc, body_len: u32) -> Result<Vec<u8>, StoreError> {
        let path = self.path(loc.pack);
        let mut buf = vec![0u8; RECORD_HEADER_LEN + body_len as usize];
        let file = match self.packs.get(&loc.pack).and_then(|p| p.file.as_ref()) {
            Some(file) => file,
            None => {
                if self.readers.len() >= MAX_READERS {
                    self.readers.clear();
                }
                match self.readers.entry(loc.pack) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => e.insert(File::open(&path).map_err(at(&path, "opening a pack"))?),
                }
            }
        };
        file.read_exact_at(&mut buf, loc.offset).map_err(at(&path, "reading a record"))?;
        Ok(buf)
    }

    /// Makes every record appended so far durable (see the module doc),
    /// then seals every pack that no longer takes records.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        if let Some(reason) = &self.failed {
            return Err(StoreError::Stopped(reason.clone()));
        }
        let result = self.sync_inner();
        if let Err(e) = &result {
            self.failed = Some(e.to_string());
        }
        result
    }

    /// Why a flush failed, if one did.
    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    fn sync_inner(&mut self) -> Result<(), StoreError> {
        let dirty: Vec<u32> = self.packs.iter().filter(|(_, p)| p.dirty).map(|(n, _)| *n).collect();
        for number in dirty {
            self.mark(number)?;
        }
        if self.dir_dirty {
            files::sync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        let target = self.target;
        let open = self.open;
        let done: Vec<u32> =
            self.packs.iter().filter(|(n, p)| !p.sealed && (Some(**n) != open || p.len >= target)).map(|(n, _)| *n).collect();
        for number in done {
            self.seal(number)?;
        }
        Ok(())
    }

    /// Flushes pack `number`, appends a sync mark and flushes again.
    fn mark(&mut self, number: u32) -> Result<(), StoreError> {
        let path = self.path(number);
        let Some(pack) = self.packs.get_mut(&number) else { return Ok(()) };
        let Some(file) = pack.file.as_ref() else { return Ok(()) };
        file.sync_data().map_err(at(&path, "flushing a pack"))?;
        let mut mark = Vec::new();
        record::push_mark(&mut mark, Loc { pack: number, offset: pack.len });
        file.write_all_at(&mark, pack.len).map_err(at(&path, "writing a sync mark"))?;
        file.sync_data().map_err(at(&path, "flushing a sync mark"))?;
        pack.len += mark.len() as u64;
        pack.dirty = false;
        Ok(())
    }

    /// Writes pack `number`'s index: it takes no more records.
    pub fn seal(&mut self, number: u32) -> Result<(), StoreError> {
        let Some(pack) = self.packs.get(&number) else { return Ok(()) };
        let bytes = pack_index::encode(number, pack.len, &pack.records);
        files::write_atomic(&self.dir, &index_name(number), &bytes)?;
        if let Some(pack) = self.packs.get_mut(&number) {
            pack.sealed = true;
            pack.records = Vec::new();
            pack.file = None;
        }
        if self.open == Some(number) {
            self.open = None;
        }
        Ok(())
    }

    /// The records of sealed pack `number`, from its index.
    pub fn sealed_records(&self, number: u32) -> Result<Vec<RecordInfo>, StoreError> {
        let path = self.index_path(number);
        let bytes = std::fs::read(&path).map_err(at(&path, "reading a pack index"))?;
        let index = pack_index::decode(&bytes, number).map_err(|reason| StoreError::Damaged { path, offset: 0, reason })?;
        Ok(index.records)
    }

    /// Deletes pack `number` and its index, durably: the pack first, so a
    /// crash between leaves an index without a pack (removed on open), not
    /// a sealed pack without its index.
    pub fn remove(&mut self, number: u32) -> Result<(), StoreError> {
        self.readers.remove(&number);
        self.packs.remove(&number);
        if self.open == Some(number) {
            self.open = None;
        }
        files::remove_if_present(&self.path(number))?;
        files::remove_if_present(&self.index_path(number))?;
        files::sync_dir(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_file_names_parse_back() {
        assert_eq!(parse_name(&pack_name(42)), Some((42, false)));
        assert_eq!(parse_name(&index_name(7)), Some((7, true)));
        assert_eq!(parse_name("00000007.idx.tmp"), None);
        assert_eq!(parse_name("+7.pack"), None);
        assert_eq!(parse_name("notes.txt"), None);
    }
}
