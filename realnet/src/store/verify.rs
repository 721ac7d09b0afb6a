//! `verify`: re-reads every stored block, checks it against its record's
//! checksum, decodes it and re-hashes the plaintext against its digest,
//! then names the committed points that need each damaged or missing
//! block. Also re-reads every manifest and replica metadata file.
//!
//! It reads everything (hours for a large repository) and holds the store
//! meanwhile: the CLI runs it on a stopped repository; a running one is
//! checked by the repository's health check instead.

use super::engine::Store;
use super::record;
use super::report::{DamagedBlock, MissingBlock, VerifyReport};
use blockferry_core::{Digest, RestorePointId, decode_block};
use std::collections::BTreeMap;

impl Store {
    pub fn verify(&mut self) -> Result<VerifyReport, super::StoreError> {
        let mut report = VerifyReport {
            damaged_ranges: self.damaged_ranges.clone(),
            damaged_files: self.pack_findings.clone(),
            ..VerifyReport::default()
        };
        let mut damaged: BTreeMap<Digest, DamagedBlock> = BTreeMap::new();
        for (digest, entry) in self.index.by_location() {
            report.blocks_checked += 1;
            report.bytes_checked += u64::from(entry.body_len);
            let problem = match self.packs.read(entry.at, entry.body_len) {
                Err(e) => Some(e.to_string()),
                Ok(bytes) => match record::decode_block_record(bytes, &digest) {
                    Err(reason) => Some(reason),
                    Ok(block) => decode_block(&block).err().map(|e| e.to_string()),
                },
            };
            if let Some(reason) = problem {
                self.index.mark_damaged(&digest);
                let pack = self.packs.path(entry.at.pack);
                damaged.insert(digest, DamagedBlock { digest, pack, offset: entry.at.offset, reason, points: Vec::new() });
            }
        }
        let points = self.points.load_all()?;
        report.damaged_files.extend(points.damaged);
        report.damaged_files.extend(self.replicas.load_all()?.damaged);
        let mut manifests: Vec<_> = points.manifests.into_iter().map(|(_, m)| m).collect();
        manifests.sort_by_key(|m| m.point);
        let mut missing: BTreeMap<Digest, Vec<RestorePointId>> = BTreeMap::new();
        for manifest in &manifests {
            report.points_checked += 1;
            for digest in manifest.referenced() {
                let needers = match damaged.get_mut(&digest) {
                    Some(block) => &mut block.points,
                    None if self.index.get(&digest).is_none() => missing.entry(digest).or_default(),
                    None => continue,
                };
                if needers.last() != Some(&manifest.point) {
                    needers.push(manifest.point);
                }
            }
        }
        report.damaged_blocks = damaged.into_values().collect();
        report.missing_blocks = missing.into_iter().map(|(digest, points)| MissingBlock { digest, points }).collect();
        for b in &report.damaged_blocks {
            tracing::error!(block = %b.digest, path = %b.pack.display(), offset = b.offset, points = ?b.points, "damaged block: {}", b.reason);
        }
        Ok(report)
    }
}
