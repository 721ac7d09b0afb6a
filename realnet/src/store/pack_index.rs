//! A sealed pack's index file (`NNNNNNNN.idx`): every record of the pack
//! but its sync marks, so that opening a store reads one small sequential
//! file per pack instead of a header per record (a TiB of 64 KiB blocks is
//! sixteen million records; their headers are scattered reads, their index
//! entries are one 60-byte line each).
//!
//! The index is derived data: one that is missing, damaged or disagrees
//! with its pack is reported and rebuilt by scanning the pack.

use super::record::{Loc, MAX_BODY, RecordInfo, What};
use blockferry_core::block::Digest;

const MAGIC: [u8; 8] = *b"BFIDX001";
const HEADER_LEN: usize = 32;
const ENTRY_LEN: usize = 60;
const TRAILER_LEN: usize = 4;

/// Encodes the index of pack `number`, `pack_len` bytes long.
pub fn encode(number: u32, pack_len: u64, records: &[RecordInfo]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + records.len() * ENTRY_LEN + TRAILER_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&number.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&pack_len.to_le_bytes());
    out.extend_from_slice(&(records.len() as u64).to_le_bytes());
    for r in records {
        let (kind, target) = match r.what {
            What::Block => (1u8, Loc { pack: 0, offset: 0 }),
            What::Tombstone(target) => (2u8, target),
        };
        out.extend_from_slice(&[kind, 0, 0, 0]);
        out.extend_from_slice(&r.body_len.to_le_bytes());
        out.extend_from_slice(&r.offset.to_le_bytes());
        out.extend_from_slice(&r.digest.0);
        out.extend_from_slice(&target.pack.to_le_bytes());
        out.extend_from_slice(&target.offset.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// What an index file says about its pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackIndex {
    pub pack_len: u64,
    pub records: Vec<RecordInfo>,
}

/// Decodes the index of pack `number`; says why it cannot be used.
pub fn decode(bytes: &[u8], number: u32) -> Result<PackIndex, String> {
    let body_len = bytes.len().checked_sub(TRAILER_LEN).filter(|len| *len >= HEADER_LEN).ok_or("shorter than its header")?;
    let (body, trailer) = bytes.split_at(body_len);
    if crc32c::crc32c(body) != u32::from_le_bytes(array(trailer)) {
        return Err("checksum mismatch".into());
    }
    if body[0..8] != MAGIC {
        return Err("not a pack index".into());
    }
    let named = u32::from_le_bytes(array(&body[8..12]));
    if named != number {
        return Err(format!("indexes pack {named}"));
    }
    let pack_len = u64::from_le_bytes(array(&body[16..24]));
    let count = u64::from_le_bytes(array(&body[24..32]));
    let entries = &body[HEADER_LEN..];
    if entries.len() % ENTRY_LEN != 0 || (entries.len() / ENTRY_LEN) as u64 != count {
        return Err(format!("claims {count} records in {} bytes", entries.len()));
    }
    let mut records = Vec::with_capacity(entries.len() / ENTRY_LEN);
    for e in entries.chunks_exact(ENTRY_LEN) {
        let offset = u64::from_le_bytes(array(&e[8..16]));
        let target = Loc { pack: u32::from_le_bytes(array(&e[48..52])), offset: u64::from_le_bytes(array(&e[52..60])) };
        let what = match e[0] {
            1 => What::Block,
            2 => What::Tombstone(target),
            kind => return Err(format!("record at offset {offset} has unknown kind {kind}")),
        };
        let record = RecordInfo { offset, body_len: u32::from_le_bytes(array(&e[4..8])), digest: Digest(array(&e[16..48])), what };
        if record.body_len > MAX_BODY {
            return Err(format!("record at offset {offset} claims a {}-byte body", record.body_len));
        }
        if record.offset.checked_add(record.record_len()).is_none_or(|end| end > pack_len) {
            return Err(format!("record at offset {offset} ends past the pack's {pack_len} bytes"));
        }
        records.push(record);
    }
    Ok(PackIndex { pack_len, records })
}

/// The first `N` bytes of `bytes` (callers pass slices of known length).
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&bytes[..N]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<RecordInfo> {
        vec![
            RecordInfo { offset: 24, body_len: 100, digest: Digest([1; 32]), what: What::Block },
            RecordInfo { offset: 180, body_len: 12, digest: Digest([1; 32]), what: What::Tombstone(Loc { pack: 2, offset: 24 }) },
        ]
    }

    #[test]
    fn an_index_round_trips() {
        let bytes = encode(9, 248, &records());
        assert_eq!(decode(&bytes, 9), Ok(PackIndex { pack_len: 248, records: records() }));
    }

    #[test]
    fn a_damaged_or_misplaced_index_is_refused() {
        let bytes = encode(9, 248, &records());
        assert!(decode(&bytes, 8).is_err(), "another pack's index");
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad, 9).is_err(), "flip at {i} accepted");
        }
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], 9).is_err(), "cut at {cut} accepted");
        }
        assert!(decode(&encode(9, 200, &records()), 9).is_err(), "a record past the pack's end");
        let huge = RecordInfo { body_len: MAX_BODY + 1, ..records()[0] };
        assert!(decode(&encode(9, u64::MAX, &[huge]), 9).is_err(), "a body no block has");
    }
}
