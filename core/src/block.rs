//! The block pipeline: what a data mover does to one block of a disk.
//!
//! `encode_block` detects the all-zero block, digests the plaintext with
//! BLAKE3 and compresses with zstd at the level the job's compression setting
//! maps to, keeping the raw bytes when compression does not help.
//! `decode_block` inverts it and refuses to return bytes whose digest does not
//! match. Both are pure functions so drivers may run them on worker threads.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::hash::Hasher;
use std::str::FromStr;

/// BLAKE3 digest of a block's plaintext.
///
/// The all-zero digest is reserved for the all-zero block (see
/// [`Digest::ZERO_BLOCK`]): such blocks are never stored or sent, whatever
/// the block size, and manifests name them by this constant.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Digest(pub [u8; 32]);

/// Byte order, as derived, but decided on the first eight bytes as one
/// integer where they differ (they almost always do): repositories and
/// stores keep millions of digests in ordered maps, and a library memcmp
/// call per comparison was a tenth of a large simulation.
impl Ord for Digest {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let head = |d: &Digest| u64::from_be_bytes([d.0[0], d.0[1], d.0[2], d.0[3], d.0[4], d.0[5], d.0[6], d.0[7]]);
        head(self).cmp(&head(other)).then_with(|| self.0[8..].cmp(&other.0[8..]))
    }
}

impl PartialOrd for Digest {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Digest {
    /// Stands for a block of zeros of any length.
    pub const ZERO_BLOCK: Digest = Digest([0; 32]);

    pub fn of(bytes: &[u8]) -> Digest {
        Digest(*blake3::hash(bytes).as_bytes())
    }

    pub fn is_zero_block(&self) -> bool {
        *self == Self::ZERO_BLOCK
    }

    /// A short prefix for logs and error messages.
    pub fn short(&self) -> String {
        self.0[..6].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// How many digests [`crate::digest_table::DigestTable::warm`] looks up
/// ahead of the work on them (16 beat 8, 32, 64 and 256 on the 2 TiB bench
/// day: enough lookups in flight, and their records still cached when the
/// work reaches them).
pub const WARM_CHUNK: usize = 16;

/// The hasher of digests in hash tables ([`crate::digest_table`], the
/// simulator's filters): no random seed (a simulator run must replay
/// exactly) and cheap, since digests are already uniformly spread —
/// a multiply-rotate step per 8 bytes and a final avalanche so that every
/// bit of the hash depends on the whole digest.
#[derive(Debug, Clone, Copy, Default)]
pub struct DigestHasher(u64);

impl DigestHasher {
    const K: u64 = 0x517c_c1b7_2722_0a95;

    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(word));
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    fn finish(&self) -> u64 {
        // murmur3's 64-bit finaliser.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.short())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The storage-optimisation block size of a job: a disk is a vector of
/// fixed blocks of this size (the last one may be shorter).
///
/// Only [`BlockSize::new`]'s values exist: deserialising goes through it,
/// so a peer cannot send a block size of 0 (a division by zero in
/// [`BlockSize::blocks_for`]) or 3; such a frame does not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct BlockSize(u32);

impl TryFrom<u32> for BlockSize {
    type Error = BlockSizeError;

    fn try_from(bytes: u32) -> Result<BlockSize, BlockSizeError> {
        BlockSize::new(u64::from(bytes))
    }
}

impl From<BlockSize> for u32 {
    fn from(size: BlockSize) -> u32 {
        size.0
    }
}

impl BlockSize {
    pub const MIN: u32 = 4 * 1024;
    pub const MAX: u32 = 64 * 1024 * 1024;
    /// "WAN target": smallest blocks, best dedup, most metadata.
    pub const WAN: BlockSize = BlockSize(256 * 1024);
    /// "LAN target".
    pub const LAN: BlockSize = BlockSize(512 * 1024);
    /// "Local target", the default.
    pub const LOCAL: BlockSize = BlockSize(1024 * 1024);
    /// "Local target (large blocks)".
    pub const LARGE: BlockSize = BlockSize(4 * 1024 * 1024);

    /// A custom block size: a power of two between 4 KiB and 64 MiB.
    pub fn new(bytes: u64) -> Result<BlockSize, BlockSizeError> {
        if !bytes.is_power_of_two() || bytes < u64::from(Self::MIN) || bytes > u64::from(Self::MAX) {
            return Err(BlockSizeError(bytes));
        }
        Ok(BlockSize(bytes as u32))
    }

    pub fn bytes(self) -> u32 {
        self.0
    }

    /// Number of blocks covering a disk of `disk_bytes`.
    pub fn blocks_for(self, disk_bytes: u64) -> u64 {
        disk_bytes.div_ceil(u64::from(self.0))
    }
}

impl Default for BlockSize {
    fn default() -> Self {
        Self::LOCAL
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("block size {0} bytes is not a power of two between 4 KiB and 64 MiB")]
pub struct BlockSizeError(pub u64);

/// A job's compression setting, as an operator chooses it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Compression {
    /// Store blocks as read.
    None,
    /// Fastest, lightest compression; keeps blocks friendly to a
    /// deduplicating storage appliance downstream.
    DedupeFriendly,
    /// The default: good ratio at low CPU cost.
    #[default]
    Optimal,
    High,
    Extreme,
}

impl Compression {
    pub const ALL: [Compression; 5] =
        [Compression::None, Compression::DedupeFriendly, Compression::Optimal, Compression::High, Compression::Extreme];

    /// The zstd level this setting maps to; `None` means store raw.
    pub fn zstd_level(self) -> Option<i32> {
        match self {
            Compression::None => None,
            Compression::DedupeFriendly => Some(-5),
            Compression::Optimal => Some(3),
            Compression::High => Some(9),
            Compression::Extreme => Some(19),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::DedupeFriendly => "dedupe-friendly",
            Compression::Optimal => "optimal",
            Compression::High => "high",
            Compression::Extreme => "extreme",
        }
    }
}

impl FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Compression::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("unknown compression {s:?} (expected none, dedupe-friendly, optimal, high or extreme)"))
    }
}

/// How an encoded block's payload is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Encoding {
    /// All zeros: no payload at all.
    Zero,
    /// The plaintext as is (compression was off or did not help).
    Raw,
    /// zstd frame.
    Zstd,
}

/// One block after the pipeline: what travels and what a repository stores.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodedBlock {
    pub digest: Digest,
    /// Plaintext length: bounds decompression and is checked on decode.
    pub raw_len: u32,
    pub encoding: Encoding,
    pub payload: Vec<u8>,
}

impl fmt::Debug for EncodedBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncodedBlock")
            .field("digest", &self.digest)
            .field("raw_len", &self.raw_len)
            .field("encoding", &self.encoding)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

impl EncodedBlock {
    /// Bytes this block occupies on the wire or at rest (payload only).
    pub fn stored_len(&self) -> usize {
        self.payload.len()
    }
}

/// Runs the pipeline on one block's plaintext.
pub fn encode_block(bytes: &[u8], compression: Compression) -> EncodedBlock {
    let raw_len = u32::try_from(bytes.len()).expect("a block is at most BlockSize::MAX bytes");
    if is_all_zero(bytes) {
        return EncodedBlock { digest: Digest::ZERO_BLOCK, raw_len, encoding: Encoding::Zero, payload: Vec::new() };
    }
    let digest = Digest::of(bytes);
    let compressed = compression.zstd_level().and_then(|level| zstd::bulk::compress(bytes, level).ok()).filter(|c| c.len() < bytes.len());
    match compressed {
        Some(payload) => EncodedBlock { digest, raw_len, encoding: Encoding::Zstd, payload },
        None => EncodedBlock { digest, raw_len, encoding: Encoding::Raw, payload: bytes.to_vec() },
    }
}

/// Inverts [`encode_block`], verifying length and digest: a damaged block is
/// an error naming the digest, never wrong bytes.
pub fn decode_block(block: &EncodedBlock) -> Result<Vec<u8>, DecodeError> {
    if block.raw_len > BlockSize::MAX {
        return Err(DecodeError::TooLarge { digest: block.digest, raw_len: block.raw_len });
    }
    let raw_len = block.raw_len as usize;
    let bytes = match block.encoding {
        Encoding::Zero => {
            if !block.digest.is_zero_block() || !block.payload.is_empty() {
                return Err(DecodeError::DigestMismatch { expected: block.digest, actual: Digest::ZERO_BLOCK });
            }
            return Ok(vec![0; raw_len]);
        }
        Encoding::Raw => block.payload.clone(),
        Encoding::Zstd => zstd::bulk::decompress(&block.payload, raw_len)
            .map_err(|e| DecodeError::Decompress { digest: block.digest, reason: e.to_string() })?,
    };
    if bytes.len() != raw_len {
        return Err(DecodeError::Length { digest: block.digest, expected: block.raw_len, actual: bytes.len() });
    }
    let actual = if is_all_zero(&bytes) { Digest::ZERO_BLOCK } else { Digest::of(&bytes) };
    if actual != block.digest {
        return Err(DecodeError::DigestMismatch { expected: block.digest, actual });
    }
    Ok(bytes)
}

fn is_all_zero(bytes: &[u8]) -> bool {
    // Compare 16 bytes at a time: this runs on every block read.
    let (body, tail) = bytes.as_chunks::<16>();
    body.iter().all(|c| *c == [0u8; 16]) && tail.iter().all(|&b| b == 0)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("block {digest:?} claims {raw_len} bytes, more than the largest block size")]
    TooLarge { digest: Digest, raw_len: u32 },
    #[error("block {digest:?} does not decompress: {reason}")]
    Decompress { digest: Digest, reason: String },
    #[error("block {digest:?} decodes to {actual} bytes, expected {expected}")]
    Length { digest: Digest, expected: u32, actual: usize },
    #[error("block digest mismatch: expected {expected:?}, content hashes to {actual:?}")]
    DigestMismatch { expected: Digest, actual: Digest },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block size travels as its byte count: a peer's frame can say
    /// anything there, and only valid sizes decode.
    #[test]
    fn a_block_size_off_the_wire_is_valid_or_does_not_decode() {
        use crate::wire::frame::{decode_frame, encode_frame};
        let decode = |bytes: u32| {
            let mut frame = Vec::new();
            encode_frame(&bytes, &mut frame).expect("a u32 encodes");
            decode_frame::<BlockSize>(&frame, 1024)
        };
        for bad in [0, 3, 4095, 6 * 1024 * 1024, u32::MAX] {
            assert!(decode(bad).is_err(), "block size {bad} decoded");
        }
        for good in [BlockSize::MIN, 1 << 20, BlockSize::MAX] {
            assert_eq!(decode(good).map(BlockSize::bytes).ok(), Some(good));
        }
    }

    #[test]
    fn digest_order_is_byte_order() {
        let mut digests: Vec<Digest> = (0u8..=255).map(|i| Digest::of(&[i])).collect();
        digests.push(Digest([7; 32]));
        let mut same_head = [7; 32];
        same_head[31] = 8;
        digests.push(Digest(same_head));
        for a in &digests {
            for b in &digests {
                assert_eq!(a.cmp(b), a.0.cmp(&b.0), "{a:?} {b:?}");
            }
        }
    }

    fn text_block(len: usize) -> Vec<u8> {
        b"the quick brown fox jumps over the lazy dog. ".iter().copied().cycle().take(len).collect()
    }

    #[test]
    fn zero_block_has_no_payload_and_round_trips() {
        let enc = encode_block(&[0; 4096], Compression::Optimal);
        assert_eq!(enc.encoding, Encoding::Zero);
        assert!(enc.payload.is_empty());
        assert_eq!(decode_block(&enc).unwrap(), vec![0; 4096]);
    }

    #[test]
    fn compressible_block_shrinks_and_round_trips() {
        let raw = text_block(64 * 1024);
        let enc = encode_block(&raw, Compression::Optimal);
        assert_eq!(enc.encoding, Encoding::Zstd);
        assert!(enc.payload.len() < raw.len() / 10);
        assert_eq!(enc.digest, Digest::of(&raw));
        assert_eq!(decode_block(&enc).unwrap(), raw);
    }

    #[test]
    fn incompressible_block_is_kept_raw() {
        let mut raw = vec![0u8; 65536];
        blake3::Hasher::new().update(b"noise").finalize_xof().fill(&mut raw);
        let enc = encode_block(&raw, Compression::Extreme);
        assert_eq!(enc.encoding, Encoding::Raw);
        assert_eq!(decode_block(&enc).unwrap(), raw);
    }

    #[test]
    fn compression_none_stores_raw() {
        let raw = text_block(8192);
        let enc = encode_block(&raw, Compression::None);
        assert_eq!(enc.encoding, Encoding::Raw);
        assert_eq!(enc.payload, raw);
    }

    #[test]
    fn damaged_payload_is_detected() {
        let raw = text_block(8192);
        for compression in [Compression::None, Compression::Optimal] {
            let mut enc = encode_block(&raw, compression);
            let mid = enc.payload.len() / 2;
            enc.payload[mid] ^= 0x40;
            assert!(decode_block(&enc).is_err(), "{compression:?}");
        }
    }

    #[test]
    fn oversized_claim_is_rejected_before_allocating() {
        let enc = EncodedBlock { digest: Digest([1; 32]), raw_len: u32::MAX, encoding: Encoding::Zstd, payload: vec![1, 2, 3] };
        assert!(matches!(decode_block(&enc), Err(DecodeError::TooLarge { .. })));
    }

    #[test]
    fn block_size_accepts_powers_of_two_only() {
        assert_eq!(BlockSize::new(256 * 1024).unwrap(), BlockSize::WAN);
        assert!(BlockSize::new(3 * 1024 * 1024).is_err());
        assert!(BlockSize::new(2048).is_err());
        assert!(BlockSize::new(128 * 1024 * 1024).is_err());
        assert_eq!(BlockSize::LOCAL.blocks_for(1024 * 1024 * 5 + 1), 6);
    }

    #[test]
    fn higher_levels_store_fewer_bytes_on_text() {
        let raw = text_block(256 * 1024);
        let sizes: Vec<usize> = Compression::ALL.iter().map(|c| encode_block(&raw, *c).stored_len()).collect();
        assert!(sizes[0] > sizes[1] && sizes[1] >= sizes[2], "{sizes:?}");
    }
}
