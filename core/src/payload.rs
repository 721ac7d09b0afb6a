//! Block contents in the two payload modes, behind one type so the state
//! machines never know which mode runs.
//!
//! * **Real**: a block is its bytes, and goes through [`encode_block`] /
//!   [`decode_block`].
//! * **Synthetic**: a block is a descriptor — its digest, its length and how
//!   compressible it is — and "encoding" models the compressed size instead
//!   of computing it. TiB-scale simulations use this; byte accounting stays
//!   exact because every size is modelled, not guessed later.

use crate::block::{Compression, DecodeError, Digest, EncodedBlock, decode_block, encode_block};
use serde::{Deserialize, Serialize};

/// A block's plaintext, as a hypervisor hands it over or takes it back.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlockData {
    Bytes(Vec<u8>),
    Synthetic(SyntheticBlock),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyntheticBlock {
    /// The digest the real bytes would have (`Digest::ZERO_BLOCK` if zero).
    pub digest: Digest,
    pub raw_len: u32,
    /// 0 = random bytes, 100 = highly compressible.
    pub compressibility: u8,
}

impl std::fmt::Debug for BlockData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlockData::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            BlockData::Synthetic(s) => write!(f, "{s:?}"),
        }
    }
}

/// A block after the pipeline: what travels and what repositories store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlockPayload {
    Encoded(EncodedBlock),
    Synthetic { digest: Digest, raw_len: u32, stored_len: u32, compressibility: u8 },
}

impl BlockPayload {
    pub fn digest(&self) -> Digest {
        match self {
            BlockPayload::Encoded(e) => e.digest,
            BlockPayload::Synthetic { digest, .. } => *digest,
        }
    }

    /// Bytes the payload occupies on the wire and at rest.
    pub fn stored_len(&self) -> u64 {
        match self {
            BlockPayload::Encoded(e) => e.payload.len() as u64,
            BlockPayload::Synthetic { stored_len, .. } => u64::from(*stored_len),
        }
    }

    pub fn raw_len(&self) -> u64 {
        match self {
            BlockPayload::Encoded(e) => u64::from(e.raw_len),
            BlockPayload::Synthetic { raw_len, .. } => u64::from(*raw_len),
        }
    }

    /// Bytes a simulated link must charge beyond the encoded message size:
    /// a synthetic payload stands for `stored_len` bytes it does not carry.
    pub fn modelled_extra_bytes(&self) -> u64 {
        match self {
            BlockPayload::Encoded(_) => 0,
            BlockPayload::Synthetic { stored_len, .. } => u64::from(*stored_len),
        }
    }
}

impl BlockData {
    /// The content digest. For real bytes this hashes them: call once per
    /// block (the pipeline does).
    pub fn digest(&self) -> Digest {
        match self {
            BlockData::Bytes(b) => encode_digest(b),
            BlockData::Synthetic(s) => s.digest,
        }
    }

    pub fn raw_len(&self) -> u64 {
        match self {
            BlockData::Bytes(b) => b.len() as u64,
            BlockData::Synthetic(s) => u64::from(s.raw_len),
        }
    }
}

fn encode_digest(bytes: &[u8]) -> Digest {
    if bytes.iter().all(|&b| b == 0) { Digest::ZERO_BLOCK } else { Digest::of(bytes) }
}

/// Runs the pipeline: real bytes are digested and compressed; a synthetic
/// descriptor gets its modelled compressed size.
pub fn encode(data: &BlockData, compression: Compression) -> BlockPayload {
    match data {
        BlockData::Bytes(bytes) => BlockPayload::Encoded(encode_block(bytes, compression)),
        BlockData::Synthetic(s) => BlockPayload::Synthetic {
            digest: s.digest,
            raw_len: s.raw_len,
            stored_len: if s.digest.is_zero_block() { 0 } else { modelled_stored_len(s.raw_len, s.compressibility, compression) },
            compressibility: s.compressibility,
        },
    }
}

/// Inverts [`encode`]; real payloads are verified against their digest.
pub fn decode(payload: &BlockPayload) -> Result<BlockData, DecodeError> {
    match payload {
        BlockPayload::Encoded(e) => decode_block(e).map(BlockData::Bytes),
        BlockPayload::Synthetic { digest, raw_len, compressibility, .. } => {
            Ok(BlockData::Synthetic(SyntheticBlock { digest: *digest, raw_len: *raw_len, compressibility: *compressibility }))
        }
    }
}

/// The compressed size a block of this compressibility would have: the
/// compressible share shrinks by the level's efficiency, the random share
/// stays. Calibrated loosely against zstd on the real-mode synthesizer's
/// output (text-like runs and random bytes), which uses the same split.
pub fn modelled_stored_len(raw_len: u32, compressibility: u8, compression: Compression) -> u32 {
    let efficiency = match compression {
        Compression::None => return raw_len,
        Compression::DedupeFriendly => 0.80,
        Compression::Optimal => 0.93,
        Compression::High => 0.95,
        Compression::Extreme => 0.96,
    };
    let share = f64::from(compressibility.min(100)) / 100.0;
    let ratio = 1.0 - share * efficiency;
    // A block of any bytes stores at least one; an empty one none.
    ((f64::from(raw_len) * ratio).ceil() as u32).clamp(raw_len.min(1), raw_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_sizes_shrink_with_level_and_compressibility() {
        let len = 1 << 20;
        let at = |c, level| modelled_stored_len(len, c, level);
        assert_eq!(at(50, Compression::None), len);
        assert_eq!(at(0, Compression::Extreme), len);
        assert!(at(50, Compression::DedupeFriendly) > at(50, Compression::Optimal));
        assert!(at(50, Compression::Optimal) > at(50, Compression::Extreme));
        assert!(at(90, Compression::Optimal) < at(10, Compression::Optimal));
        // An empty block (a descriptor a peer sent) stores nothing, at any level.
        assert!(Compression::ALL.iter().all(|&level| modelled_stored_len(0, 50, level) == 0));
    }

    #[test]
    fn synthetic_round_trip_keeps_the_descriptor() {
        let data = BlockData::Synthetic(SyntheticBlock { digest: Digest([3; 32]), raw_len: 4096, compressibility: 40 });
        let payload = encode(&data, Compression::Optimal);
        assert!(payload.stored_len() < 4096);
        assert_eq!(decode(&payload).unwrap(), data);
    }

    #[test]
    fn real_round_trip_verifies() {
        let data = BlockData::Bytes(b"abc".repeat(1000));
        let payload = encode(&data, Compression::High);
        assert_eq!(payload.digest(), data.digest());
        assert_eq!(decode(&payload).unwrap(), data);
    }
}
