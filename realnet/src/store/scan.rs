//! Reading a pack's records from the pack itself, record header by record
//! header: on open, for a pack without a usable index (the open pack, one
//! rolled just before a crash, or one whose index is damaged).
//!
//! A stretch that holds no valid record (a torn write, a damaged header)
//! is skipped to the next valid record header and noted. Whether it is
//! damage or a crash's torn tail depends on where the last sync mark is:
//! with [`Tail::Cut`], everything after the pack's last mark is dropped —
//! it was never durable, valid or not — and only stretches before that
//! mark are damage. A pack with an index was sealed after a sync, so all of
//! it was durable: [`Tail::Keep`].

use super::record::{self, Header, Kind, Loc, PACK_HEADER_LEN, RECORD_HEADER_LEN, RECORD_MAGIC, RecordInfo, What};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// Drop everything after the last sync mark.
    Cut,
    /// Keep every valid record.
    Keep,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Valid records within `keep`, in order.
    pub records: Vec<RecordInfo>,
    /// How many bytes of the pack hold durable content: with `Tail::Cut`,
    /// the end of its last sync mark (0 if it has none: nothing in it was
    /// ever durable).
    pub keep: u64,
    /// Stretches within `keep` holding no valid record: (offset, length).
    pub damaged: Vec<(u64, u64)>,
}

/// How far ahead a resynchronising search reads at a time.
const CHUNK: u64 = 1 << 20;

enum Found {
    Record(RecordInfo, u64),
    Mark(u64),
}

struct Reader<'a> {
    file: &'a File,
    number: u32,
    len: u64,
}

impl Reader<'_> {
    /// The valid record at `pos`, if there is one that fits in the file.
    fn record_at(&self, pos: u64) -> io::Result<Option<Found>> {
        if pos.saturating_add(RECORD_HEADER_LEN as u64) > self.len {
            return Ok(None);
        }
        let mut head = [0u8; RECORD_HEADER_LEN];
        self.file.read_exact_at(&mut head, pos)?;
        let Ok(header) = Header::decode(&head) else { return Ok(None) };
        let size = header.record_len();
        if pos.saturating_add(size) > self.len {
            return Ok(None);
        }
        let info = |what| RecordInfo { offset: pos, body_len: header.body_len, digest: header.digest, what };
        if header.kind == Kind::Block {
            // The body is checked when it is read (and by `verify`): a
            // header scan reads only headers.
            return Ok(Some(Found::Record(info(What::Block), size)));
        }
        let mut body = vec![0u8; header.body_len as usize];
        self.file.read_exact_at(&mut body, pos + RECORD_HEADER_LEN as u64)?;
        Ok(match (header.kind, record::location(&header, &body)) {
            (Kind::Tombstone, Some(target)) => Some(Found::Record(info(What::Tombstone(target)), size)),
            (Kind::Mark, Some(at)) if at == (Loc { pack: self.number, offset: pos }) => Some(Found::Mark(size)),
            _ => None,
        })
    }

    /// The offset of the next valid record at or after `from`.
    fn next_valid(&self, mut from: u64) -> io::Result<Option<u64>> {
        let magic = RECORD_MAGIC.len() as u64;
        while from + magic <= self.len {
            let n = CHUNK.min(self.len - from);
            let mut chunk = vec![0u8; n as usize];
            self.file.read_exact_at(&mut chunk, from)?;
            for (i, window) in chunk.windows(RECORD_MAGIC.len()).enumerate() {
                if window == RECORD_MAGIC && self.record_at(from + i as u64)?.is_some() {
                    return Ok(Some(from + i as u64));
                }
            }
            // Overlap so a magic split across chunks is still found.
            from += (n + 1).saturating_sub(magic).max(1);
        }
        Ok(None)
    }
}

/// Scans pack `number`, `len` bytes long.
pub fn scan(file: &File, number: u32, len: u64, tail: Tail) -> io::Result<Scan> {
    let reader = Reader { file, number, len };
    let mut damaged = Vec::new();
    let mut head = vec![0u8; PACK_HEADER_LEN.min(len) as usize];
    file.read_exact_at(&mut head, 0)?;
    let mut pos = PACK_HEADER_LEN;
    if !record::pack_header_valid(&head, number) {
        pos = reader.next_valid(1)?.unwrap_or(len);
        damaged.push((0, pos));
    }
    let mut records = Vec::new();
    let mut last_mark_end = 0;
    while pos < len {
        match reader.record_at(pos)? {
            Some(Found::Record(info, size)) => {
                records.push(info);
                pos += size;
            }
            Some(Found::Mark(size)) => {
                pos += size;
                last_mark_end = pos;
            }
            None => {
                let next = reader.next_valid(pos + 1)?.unwrap_or(len);
                damaged.push((pos, next - pos));
                pos = next;
            }
        }
    }
    let keep = match tail {
        Tail::Keep => len,
        Tail::Cut => last_mark_end,
    };
    records.retain(|r| r.offset + r.record_len() <= keep);
    damaged.retain(|(offset, _)| *offset < keep);
    for (offset, stretch) in &mut damaged {
        *stretch = (*stretch).min(keep - *offset);
    }
    Ok(Scan { records, keep, damaged })
}
