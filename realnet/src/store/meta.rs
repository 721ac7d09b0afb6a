//! Manifest files: one per restore point in `points/`, one per replica
//! point in `replicas/`, each written whole and atomically (see
//! [`super::files::write_atomic`]) and checked by a checksum when read, so
//! a torn or damaged file is reported by its path and never served.

use super::error::{StoreError, at};
use super::files::{self, TEMP_SUFFIX};
use super::report::DamagedFile;
use blockferry_core::RestorePointId;
use blockferry_core::manifest::Manifest;
use std::path::{Path, PathBuf};

const MAGIC: [u8; 8] = *b"BFMANI01";
/// Magic, point id, body length, body CRC32C, header CRC32C.
const HEADER_LEN: usize = 32;
const SUFFIX: &str = ".manifest";

/// What reading a folder of manifest files found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every manifest that read back intact, with its file.
    pub manifests: Vec<(PathBuf, Manifest)>,
    /// Every file that did not, and why.
    pub damaged: Vec<DamagedFile>,
}

/// One folder of manifest files.
#[derive(Debug, Clone)]
pub struct MetaDir {
    dir: PathBuf,
}

impl MetaDir {
    pub fn new(dir: PathBuf) -> MetaDir {
        MetaDir { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn name(point: RestorePointId) -> String {
        format!("{}{SUFFIX}", point.0)
    }

    pub fn path(&self, point: RestorePointId) -> PathBuf {
        self.dir.join(Self::name(point))
    }

    /// Writes `manifest` durably and atomically (over an older one).
    pub fn put(&self, manifest: &Manifest) -> Result<(), StoreError> {
        let bytes = encode(manifest).map_err(StoreError::Refused)?;
        files::write_atomic(&self.dir, &Self::name(manifest.point), &bytes)
    }

    /// Removes the file of `point`; durable once the folder is flushed.
    pub fn remove(&self, point: RestorePointId) -> Result<(), StoreError> {
        files::remove_if_present(&self.path(point))
    }

    /// Reads every manifest file of the folder.
    pub fn load_all(&self) -> Result<Loaded, StoreError> {
        let mut found = Loaded::default();
        for (name, path) in files::list(&self.dir)? {
            if name.ends_with(TEMP_SUFFIX) {
                continue;
            }
            let Some(point) = name.strip_suffix(SUFFIX).and_then(|id| id.parse().ok()).map(RestorePointId) else {
                found.damaged.push(DamagedFile { path, reason: "not a manifest file name (expected <point id>.manifest)".into() });
                continue;
            };
            let bytes = std::fs::read(&path).map_err(at(&path, "reading"))?;
            match decode(&bytes, point) {
                Ok(manifest) => found.manifests.push((path, manifest)),
                Err(reason) => found.damaged.push(DamagedFile { path, reason }),
            }
        }
        Ok(found)
    }
}

pub fn encode(manifest: &Manifest) -> Result<Vec<u8>, String> {
    let body = postcard::to_stdvec(manifest).map_err(|e| format!("manifest of {} does not encode: {e}", manifest.point))?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&manifest.point.0.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes the file of `point`; says why it cannot be used.
pub fn decode(bytes: &[u8], point: RestorePointId) -> Result<Manifest, String> {
    let header = bytes.get(..HEADER_LEN).ok_or_else(|| format!("{} bytes, shorter than the header", bytes.len()))?;
    let word = |range: std::ops::Range<usize>| header[range].iter().rev().fold(0u64, |acc, b| acc << 8 | u64::from(*b));
    if header[..8] != MAGIC {
        return Err("not a manifest file".into());
    }
    if crc32c::crc32c(&header[..28]) as u64 != word(28..32) {
        return Err("header checksum mismatch".into());
    }
    if word(8..16) != point.0 {
        return Err(format!("holds point {} under the name of {point}", word(8..16)));
    }
    let body = &bytes[HEADER_LEN..];
    if body.len() as u64 != word(16..24) {
        return Err(format!("body is {} bytes, the header says {}", body.len(), word(16..24)));
    }
    if crc32c::crc32c(body) as u64 != word(24..28) {
        return Err("body checksum mismatch".into());
    }
    let manifest: Manifest = postcard::from_bytes(body).map_err(|e| format!("body does not decode: {e}"))?;
    if manifest.point != point {
        return Err(format!("body holds point {} under the name of {point}", manifest.point));
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::sample_manifest;

    #[test]
    fn a_manifest_round_trips_and_any_damage_is_refused() {
        let m = sample_manifest(4, &[blockferry_core::Digest([9; 32])]);
        let bytes = encode(&m).expect("encodes");
        assert_eq!(decode(&bytes, m.point), Ok(m.clone()));
        assert!(decode(&bytes, RestorePointId(5)).is_err(), "another point's file");
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], m.point).is_err(), "cut at {cut} accepted");
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x04;
            assert!(decode(&bad, m.point).is_err(), "flip at {i} accepted");
        }
    }
}
