//! The bytes of a pack file: its header and its three kinds of record
//! (see FORMAT.md). Pure encoding and decoding, no IO, so every check a
//! damaged or torn byte must fail is tested without files.
//!
//! Every record carries a CRC32C of its header and one of its body: a scan
//! can tell a record from garbage by its header alone, and a read can tell
//! a damaged body without decompressing or hashing it.

use blockferry_core::block::{BlockSize, Digest, EncodedBlock, Encoding};

pub const PACK_MAGIC: [u8; 8] = *b"BFPACK01";
/// Magic, pack number, eight reserved bytes, CRC32C of the first 20 bytes.
pub const PACK_HEADER_LEN: u64 = 24;
pub const RECORD_MAGIC: [u8; 4] = *b"BFRC";
pub const RECORD_HEADER_LEN: usize = 56;
/// A record body is a block's stored payload, which `encode_block` never
/// makes longer than the block (it keeps raw bytes when compression does
/// not help), or a 12-byte location. Anything longer is garbage, and a
/// scan must not trust it to size a read.
pub const MAX_BODY: u32 = BlockSize::MAX;
/// The body of a tombstone or a sync mark: a pack number and an offset.
const LOCATION_LEN: u32 = 12;

/// Where a record starts: its pack's number and its offset in the pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Loc {
    pub pack: u32,
    pub offset: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A block's stored (encoded) bytes, keyed by the digest of its plaintext.
    Block,
    /// Kills one block record, named by its location.
    Tombstone,
    /// Everything before it in this pack was durable when it was written.
    Mark,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Block => 1,
            Kind::Tombstone => 2,
            Kind::Mark => 3,
        }
    }

    fn of(byte: u8) -> Option<Kind> {
        match byte {
            1 => Some(Kind::Block),
            2 => Some(Kind::Tombstone),
            3 => Some(Kind::Mark),
            _ => None,
        }
    }
}

pub fn encoding_byte(encoding: Encoding) -> u8 {
    match encoding {
        Encoding::Zero => 0,
        Encoding::Raw => 1,
        Encoding::Zstd => 2,
    }
}

pub fn encoding_of(byte: u8) -> Option<Encoding> {
    match byte {
        0 => Some(Encoding::Zero),
        1 => Some(Encoding::Raw),
        2 => Some(Encoding::Zstd),
        _ => None,
    }
}

/// A record's header, decoded and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub encoding: Encoding,
    pub digest: Digest,
    pub raw_len: u32,
    pub body_len: u32,
    pub body_crc: u32,
}

impl Header {
    pub fn record_len(&self) -> u64 {
        RECORD_HEADER_LEN as u64 + u64::from(self.body_len)
    }

    pub fn encode(&self) -> [u8; RECORD_HEADER_LEN] {
        let mut h = [0u8; RECORD_HEADER_LEN];
        h[0..4].copy_from_slice(&RECORD_MAGIC);
        h[4] = self.kind.byte();
        h[5] = encoding_byte(self.encoding);
        h[8..40].copy_from_slice(&self.digest.0);
        h[40..44].copy_from_slice(&self.raw_len.to_le_bytes());
        h[44..48].copy_from_slice(&self.body_len.to_le_bytes());
        h[48..52].copy_from_slice(&self.body_crc.to_le_bytes());
        let crc = crc32c::crc32c(&h[..52]);
        h[52..56].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Decodes the first [`RECORD_HEADER_LEN`] bytes of `bytes`; says why
    /// they are not a record header.
    pub fn decode(bytes: &[u8]) -> Result<Header, &'static str> {
        let h = bytes.get(..RECORD_HEADER_LEN).ok_or("short record header")?;
        if h[0..4] != RECORD_MAGIC {
            return Err("no record magic");
        }
        if crc32c::crc32c(&h[..52]) != le32(&h[52..56]) {
            return Err("record header checksum mismatch");
        }
        let kind = Kind::of(h[4]).ok_or("unknown record kind")?;
        let encoding = encoding_of(h[5]).ok_or("unknown block encoding")?;
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&h[8..40]);
        let header = Header {
            kind,
            encoding,
            digest: Digest(digest),
            raw_len: le32(&h[40..44]),
            body_len: le32(&h[44..48]),
            body_crc: le32(&h[48..52]),
        };
        let sized = match kind {
            Kind::Block => header.body_len <= MAX_BODY,
            Kind::Tombstone | Kind::Mark => header.body_len == LOCATION_LEN,
        };
        if !sized || h[6..8] != [0, 0] {
            return Err("record header fields out of range");
        }
        Ok(header)
    }

    /// Whether `body` is the body this header was written with.
    pub fn body_intact(&self, body: &[u8]) -> bool {
        body.len() as u64 == u64::from(self.body_len) && crc32c::crc32c(body) == self.body_crc
    }
}

fn le32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

pub fn pack_header(number: u32) -> [u8; PACK_HEADER_LEN as usize] {
    let mut h = [0u8; PACK_HEADER_LEN as usize];
    h[0..8].copy_from_slice(&PACK_MAGIC);
    h[8..12].copy_from_slice(&number.to_le_bytes());
    let crc = crc32c::crc32c(&h[..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Whether `bytes` start with the header of pack `number` (a pack renamed
/// or copied under another number is not taken for it).
pub fn pack_header_valid(bytes: &[u8], number: u32) -> bool {
    bytes.get(..PACK_HEADER_LEN as usize).is_some_and(|h| h == pack_header(number))
}

/// Appends a block record.
pub fn push_block(out: &mut Vec<u8>, block: &EncodedBlock) -> Result<(), String> {
    let body_len = u32::try_from(block.payload.len()).ok().filter(|len| *len <= MAX_BODY);
    let body_len =
        body_len.ok_or_else(|| format!("block {} has {} stored bytes, over the largest block", block.digest, block.payload.len()))?;
    let header = Header {
        kind: Kind::Block,
        encoding: block.encoding,
        digest: block.digest,
        raw_len: block.raw_len,
        body_len,
        body_crc: crc32c::crc32c(&block.payload),
    };
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(&block.payload);
    Ok(())
}

/// Appends a tombstone for the block record of `digest` at `target`.
pub fn push_tombstone(out: &mut Vec<u8>, digest: Digest, target: Loc) {
    push_location(out, Kind::Tombstone, digest, target);
}

/// Appends a sync mark that sits at `at` (its own location: a mark copied
/// or found elsewhere does not count).
pub fn push_mark(out: &mut Vec<u8>, at: Loc) {
    push_location(out, Kind::Mark, Digest([0; 32]), at);
}

fn push_location(out: &mut Vec<u8>, kind: Kind, digest: Digest, loc: Loc) {
    let mut body = [0u8; LOCATION_LEN as usize];
    body[0..4].copy_from_slice(&loc.pack.to_le_bytes());
    body[4..12].copy_from_slice(&loc.offset.to_le_bytes());
    let header = Header { kind, encoding: Encoding::Zero, digest, raw_len: 0, body_len: LOCATION_LEN, body_crc: crc32c::crc32c(&body) };
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(&body);
}

/// The location in a tombstone's or mark's body, if the body is intact.
pub fn location(header: &Header, body: &[u8]) -> Option<Loc> {
    if header.kind == Kind::Block || !header.body_intact(body) {
        return None;
    }
    Some(Loc { pack: le32(&body[0..4]), offset: le64(&body[4..12]) })
}

/// Checks that `record` (header and body, as read at a block's location)
/// is an intact record of block `digest`; says why not.
pub fn check_block_record(record: &[u8], digest: &Digest) -> Result<Header, String> {
    let header = Header::decode(record).map_err(str::to_string)?;
    if header.kind != Kind::Block {
        return Err("not a block record".into());
    }
    if header.digest != *digest {
        return Err(format!("holds block {} instead", header.digest));
    }
    if !header.body_intact(&record[RECORD_HEADER_LEN..]) {
        return Err("stored bytes do not match their checksum".into());
    }
    Ok(header)
}

/// The block in `record` (see [`check_block_record`]).
pub fn decode_block_record(mut record: Vec<u8>, digest: &Digest) -> Result<EncodedBlock, String> {
    let header = check_block_record(&record, digest)?;
    record.drain(..RECORD_HEADER_LEN);
    Ok(EncodedBlock { digest: header.digest, raw_len: header.raw_len, encoding: header.encoding, payload: record })
}

pub const LOCATION_RECORD_LEN: u64 = RECORD_HEADER_LEN as u64 + LOCATION_LEN as u64;

/// One record as a scan or a pack index knows it (sync marks are not
/// kept: they only matter while scanning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordInfo {
    pub offset: u64,
    pub body_len: u32,
    pub digest: Digest,
    pub what: What,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    Block,
    /// Kills the block record at this location.
    Tombstone(Loc),
}

impl RecordInfo {
    pub fn record_len(&self) -> u64 {
        RECORD_HEADER_LEN as u64 + u64::from(self.body_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockferry_core::block::{Compression, encode_block};

    fn block() -> EncodedBlock {
        encode_block(&b"pack me ".repeat(512), Compression::Optimal)
    }

    #[test]
    fn a_block_record_decodes_to_what_was_written() {
        let b = block();
        let mut out = Vec::new();
        push_block(&mut out, &b).expect("small block");
        let h = Header::decode(&out).expect("valid header");
        assert_eq!((h.kind, h.digest, h.raw_len, h.encoding), (Kind::Block, b.digest, b.raw_len, b.encoding));
        assert_eq!(h.record_len(), out.len() as u64);
        assert!(h.body_intact(&out[RECORD_HEADER_LEN..]));
        assert_eq!(decode_block_record(out.clone(), &b.digest), Ok(b.clone()));
        assert!(decode_block_record(out, &Digest([3; 32])).is_err(), "another block's record");
    }

    /// Any single flipped byte is caught: in the header by its checksum,
    /// in the body by the body checksum.
    #[test]
    fn every_flipped_byte_is_detected() {
        let mut out = Vec::new();
        push_block(&mut out, &block()).expect("small block");
        for i in 0..out.len() {
            let mut bad = out.clone();
            bad[i] ^= 0x01;
            let caught = match Header::decode(&bad) {
                Err(_) => true,
                Ok(h) => !h.body_intact(&bad[RECORD_HEADER_LEN..]),
            };
            assert!(caught, "flip at byte {i} not detected");
        }
    }

    #[test]
    fn locations_round_trip_and_marks_are_not_tombstones() {
        let at = Loc { pack: 7, offset: 1 << 40 };
        let mut out = Vec::new();
        push_tombstone(&mut out, Digest([5; 32]), at);
        push_mark(&mut out, at);
        assert_eq!(out.len() as u64, 2 * LOCATION_RECORD_LEN);
        let t = Header::decode(&out).expect("tombstone");
        let split = LOCATION_RECORD_LEN as usize;
        assert_eq!((t.kind, t.digest, location(&t, &out[RECORD_HEADER_LEN..split])), (Kind::Tombstone, Digest([5; 32]), Some(at)));
        let m = Header::decode(&out[split..]).expect("mark");
        assert_eq!((m.kind, location(&m, &out[split + RECORD_HEADER_LEN..])), (Kind::Mark, Some(at)));
    }

    #[test]
    fn a_header_claiming_a_huge_body_is_refused() {
        let h =
            Header { kind: Kind::Block, encoding: Encoding::Raw, digest: Digest([1; 32]), raw_len: 1, body_len: MAX_BODY + 1, body_crc: 0 };
        assert!(Header::decode(&h.encode()).is_err());
    }

    #[test]
    fn pack_headers_name_their_pack() {
        let h = pack_header(3);
        assert!(pack_header_valid(&h, 3));
        assert!(!pack_header_valid(&h, 4));
        assert!(!pack_header_valid(&h[..10], 3));
    }
}
