//! Opening the packs after any stop, clean or not: every pack is read from
//! its index, or scanned if it has none; a tail after a pack's last sync
//! mark is cut off; damage is reported by path and offset and never taken
//! for records. Then the digest index is rebuilt from the records that no
//! tombstone killed.

use super::error::{StoreError, at};
use super::files;
use super::index::BlockIndex;
use super::pack_index;
use super::packs::{PackState, Packs, parse_name};
use super::record::{Loc, RecordInfo, What};
use super::report::{DamagedFile, DamagedRange, RecoveryReport, TruncatedTail};
use super::scan::{Tail, scan};
use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::path::Path;

/// What one pack turned out to be.
enum Opened {
    /// Read from its index (or scanned whole, its index rebuilt).
    Sealed(Vec<RecordInfo>, u64),
    /// Scanned without damage and without an index: the open pack if it
    /// is the newest, else sealed now.
    Unsealed(Vec<RecordInfo>, File, u64),
    /// Damage found: used as is, never appended to, scanned on every open
    /// (no index is written for it, so the damage is reported each time).
    Damaged(Vec<RecordInfo>, u64),
    /// Held nothing durable: removed.
    Removed,
}

/// Opens the packs in `dir`.
pub fn open_packs(dir: &Path, target: u64, report: &mut RecoveryReport) -> Result<(Packs, BlockIndex), StoreError> {
    report.removed_temp_files.extend(files::remove_temp_files(dir)?);
    let mut found: BTreeMap<u32, (bool, bool)> = BTreeMap::new();
    for (name, _) in files::list(dir)? {
        if let Some((number, is_index)) = parse_name(&name) {
            let (pack, index) = found.entry(number).or_default();
            *if is_index { index } else { pack } = true;
        }
    }
    let mut packs = Packs::new(dir.to_path_buf(), target);
    let mut unsealed: Vec<u32> = Vec::new();
    let mut orphans: Vec<u32> = Vec::new();
    let mut all: Vec<(u32, Vec<RecordInfo>)> = Vec::new();
    for (&number, &(has_pack, has_index)) in &found {
        if !has_pack {
            orphans.push(number);
            continue;
        }
        let records = match open_pack(&packs, number, has_index, report)? {
            Opened::Sealed(records, len) => {
                packs.insert(number, PackState::new(len, true, &records, None));
                records
            }
            Opened::Damaged(records, len) => {
                let mut state = PackState::new(len, true, &records, None);
                state.damaged = true;
                packs.insert(number, state);
                records
            }
            Opened::Unsealed(records, file, len) => {
                packs.insert(number, PackState::new(len, false, &records, Some(file)));
                unsealed.push(number);
                records
            }
            Opened::Removed => continue,
        };
        all.push((number, records));
    }
    let newest = all.last().map(|(n, _)| *n);
    for number in unsealed {
        if Some(number) == newest {
            packs.reopen(number);
        } else {
            packs.seal(number)?;
        }
    }
    report.packs = all.len() as u64;
    let killed = killed(&all);
    let index = build_index(&all, &killed);
    for number in orphans {
        orphan_index(&packs, &index, &killed, number, report)?;
    }
    Ok((packs, index))
}

/// An index whose pack is gone: either garbage collection deleted the pack
/// just before a crash (it deletes packs before their indexes, and only
/// packs whose blocks are dead or copied elsewhere), and the index is
/// removed; or the pack was lost, and it is reported (the index kept, so
/// every open reports it) if the index names a block stored nowhere else.
fn orphan_index(
    packs: &Packs,
    index: &BlockIndex,
    killed: &HashSet<Loc>,
    number: u32,
    report: &mut RecoveryReport,
) -> Result<(), StoreError> {
    let path = packs.index_path(number);
    let bytes = std::fs::read(&path).map_err(at(&path, "reading a pack index"))?;
    let records = match pack_index::decode(&bytes, number) {
        Ok(found) => found.records,
        Err(reason) => {
            let reason = format!("its pack {} is missing, and it cannot be read: {reason}", packs.path(number).display());
            report.damaged_files.push(DamagedFile { path, reason });
            return Ok(());
        }
    };
    let lost = records
        .iter()
        .filter(|r| r.what == What::Block && !killed.contains(&Loc { pack: number, offset: r.offset }) && index.get(&r.digest).is_none())
        .count();
    if lost == 0 {
        return files::remove_if_present(&path);
    }
    let reason = format!("missing; its index {} names {lost} blocks stored nowhere else", path.display());
    report.damaged_files.push(DamagedFile { path: packs.path(number), reason });
    Ok(())
}

fn open_pack(packs: &Packs, number: u32, has_index: bool, report: &mut RecoveryReport) -> Result<Opened, StoreError> {
    let path = packs.path(number);
    let file = OpenOptions::new().read(true).write(true).open(&path).map_err(at(&path, "opening a pack"))?;
    let len = file.metadata().map_err(at(&path, "reading metadata"))?.len();
    let index_path = packs.index_path(number);
    if has_index {
        let bytes = std::fs::read(&index_path).map_err(at(&index_path, "reading a pack index"))?;
        let problem = match pack_index::decode(&bytes, number) {
            Ok(index) if index.pack_len == len => return Ok(Opened::Sealed(index.records, len)),
            Ok(index) => DamagedFile { path: path.clone(), reason: format!("is {len} bytes, its index says {}", index.pack_len) },
            Err(reason) => DamagedFile { path: index_path.clone(), reason },
        };
        let index_damaged = problem.path == index_path;
        report.damaged_files.push(problem);
        let found = scan(&file, number, len, Tail::Keep).map_err(at(&path, "scanning a pack"))?;
        note_damage(report, &path, &found.damaged);
        if index_damaged && found.damaged.is_empty() {
            // The pack is whole; only its (derived) index was not.
            files::write_atomic(packs.dir(), &super::packs::index_name(number), &pack_index::encode(number, len, &found.records))?;
            report.rebuilt_indexes.push(index_path);
            return Ok(Opened::Sealed(found.records, len));
        }
        return Ok(Opened::Damaged(found.records, len));
    }
    let found = scan(&file, number, len, Tail::Cut).map_err(at(&path, "scanning a pack"))?;
    if found.keep == 0 {
        drop(file);
        files::remove_if_present(&path)?;
        files::sync_dir(packs.dir())?;
        report.removed_packs.push(path);
        return Ok(Opened::Removed);
    }
    if len > found.keep {
        file.set_len(found.keep).and_then(|()| file.sync_all()).map_err(at(&path, "cutting an unsynced tail"))?;
        report.truncated_tails.push(TruncatedTail { path: path.clone(), offset: found.keep, bytes: len - found.keep });
    }
    if !found.damaged.is_empty() {
        note_damage(report, &path, &found.damaged);
        return Ok(Opened::Damaged(found.records, found.keep));
    }
    Ok(Opened::Unsealed(found.records, file, found.keep))
}

fn note_damage(report: &mut RecoveryReport, path: &Path, damaged: &[(u64, u64)]) {
    for &(offset, len) in damaged {
        report.damaged_ranges.push(DamagedRange { path: path.to_path_buf(), offset, len });
    }
}

/// The block records some tombstone kills.
fn killed(all: &[(u32, Vec<RecordInfo>)]) -> HashSet<Loc> {
    all.iter()
        .flat_map(|(_, records)| records)
        .filter_map(|r| match r.what {
            What::Tombstone(target) => Some(target),
            What::Block => None,
        })
        .collect()
}

/// The index of every block record no tombstone killed; records come in
/// pack and offset order, so each digest's newest record is its primary.
fn build_index(all: &[(u32, Vec<RecordInfo>)], killed: &HashSet<Loc>) -> BlockIndex {
    let mut index = BlockIndex::default();
    for (pack, records) in all {
        for r in records.iter().filter(|r| r.what == What::Block) {
            let at = Loc { pack: *pack, offset: r.offset };
            if !killed.contains(&at) {
                index.insert(r.digest, at, r.body_len);
            }
        }
    }
    index
}
