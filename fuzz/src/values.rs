//! Values for the messages and completions the fuzzer feeds a role: most
//! of the time one the role holds (an id it named in a recent message, a
//! block size it uses), otherwise an edge (0, `u64::MAX`, just past a
//! limit, just past what the role holds) or anything at all.
//!
//! Why a hand-written generator on `rand_chacha`, not `arbitrary` or
//! proptest strategies: it must draw from what the role holds *now* (ids
//! harvested from its outputs, see [`crate::harvest`]), which neither
//! offers without a generator of our own anyway; it feeds tens of millions
//! of inputs in minutes, where proptest's value trees cost far more per
//! value; and a failure needs no shrinking — a seed and a life number
//! replay it exactly (see [`crate::driver`]). Nothing of it reaches core's
//! types: production builds carry no fuzzing code.

use crate::harvest::{Found, Key, Pools};
use bitvec::vec::BitVec;
use blockferry_core::block::Encoding;
use blockferry_core::limits::{MAX_BLOCKS_PER_MESSAGE, MAX_DISK_BLOCKS, MAX_DISK_BYTES};
use blockferry_core::payload::{BlockData, BlockPayload, SyntheticBlock};
use blockferry_core::roles::Role;
use blockferry_core::{BlockSize, Compression, Digest, EncodedBlock, NodeId, encode_block};
use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;

/// The smallest block size: what most generated data uses, so that a
/// batch of blocks costs microseconds to make and to encode.
const SMALL: u32 = BlockSize::MIN;

/// The largest legal disk drawn: 4 GiB, 2^20 blocks of 4 KiB, whose
/// digest vector is 32 MiB. The limits allow 64 TiB, and a repository
/// holds the digest vector of a disk of that size in 2^26 blocks (2 GiB)
/// however few blocks were sent: legal, by design of the fixed index, and
/// so costly that a run drawing it now and then measures nothing else
/// (each costs a second and its peak hides any other growth). Sizes past
/// the limits are drawn, and refused.
const LARGEST: u64 = 4 << 30;

/// What every life of a run shares: the deployment's nodes and blocks
/// made once.
pub struct Stock {
    /// Every node of the deployment and its role (the operator included).
    pub nodes: Vec<(NodeId, Role)>,
    /// Ids no node of the deployment has.
    pub strangers: Vec<NodeId>,
    /// Plaintexts of [`SMALL`] bytes: zero, text-like, random.
    plain: Vec<Vec<u8>>,
    /// Their encodings at every compression level.
    encoded: Vec<EncodedBlock>,
}

impl Stock {
    pub fn new(nodes: Vec<(NodeId, Role)>, rng: &mut ChaCha8Rng) -> Stock {
        let next = nodes.iter().map(|(id, _)| id.0).max().map_or(0, |m| m + 1);
        let strangers = vec![NodeId(next), NodeId(next + 100), NodeId(u32::MAX)];
        let mut plain = vec![vec![0u8; SMALL as usize]];
        for i in 0..6u8 {
            let mut block = vec![0u8; SMALL as usize];
            if i % 2 == 0 {
                rng.fill_bytes(&mut block);
            } else {
                block.iter_mut().enumerate().for_each(|(j, b)| *b = b"blockferry fuzz "[(j + usize::from(i)) % 16]);
            }
            plain.push(block);
        }
        let encoded = plain.iter().flat_map(|p| Compression::ALL.map(|c| encode_block(p, c))).collect();
        Stock { nodes, strangers, plain, encoded }
    }
}

/// One draw's sources: the life's RNG, what the role recently named, and
/// the message being answered or mutated.
pub struct Gen<'a> {
    pub rng: &'a mut ChaCha8Rng,
    pub pools: &'a Pools,
    /// Values of the message being answered or mutated: drawn first.
    pub ctx: Option<&'a Found>,
    pub stock: &'a Stock,
}

impl Gen<'_> {
    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u32) -> bool {
        self.rng.random_range(0..100) < percent
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n.max(1))
    }

    /// A number naming `key`: the context's, a recent one, or an edge.
    pub fn num(&mut self, key: Key) -> u64 {
        let roll = self.rng.random_range(0..100);
        if roll < 60
            && let Some(v) = self.ctx.and_then(|c| c.pick(key, self.rng))
        {
            return v;
        }
        if roll < 88
            && let Some(v) = self.pools.pick(key, self.rng)
        {
            return v;
        }
        self.edge(key)
    }

    /// 0, the largest, a limit and its neighbour, a recent value's
    /// neighbour (another task's id, the next block), small or anything.
    fn edge(&mut self, key: Key) -> u64 {
        match self.rng.random_range(0..10) {
            0 => 0,
            1 => u64::MAX,
            2 | 3 => self.rng.random_range(0..8),
            4 => match key {
                Key::Index => MAX_DISK_BLOCKS - 1 + self.rng.random_range(0..3),
                // Just past the limit. A disk at the limit is legal and its
                // digest vector is 2 GiB (see `LARGEST`).
                Key::Bytes => MAX_DISK_BYTES + self.rng.random_range(1..3),
                Key::Disk => u64::from(u16::MAX),
                _ => u64::from(u32::MAX) + self.rng.random_range(0..2),
            },
            5 | 6 => self.pools.pick(key, self.rng).map_or(1, |v| v.wrapping_add(self.rng.random_range(1..4))),
            7 => 1 << 63,
            _ => self.rng.random(),
        }
    }

    /// A number naming `key` that fits 32 bits: one that does not is the
    /// largest or its low bits.
    pub fn u32(&mut self, key: Key) -> u32 {
        let v = self.num(key);
        u32::try_from(v).unwrap_or_else(|_| if self.chance(50) { u32::MAX } else { v as u32 })
    }

    pub fn disk(&mut self) -> u16 {
        let v = self.num(Key::Disk);
        u16::try_from(v).unwrap_or_else(|_| if self.chance(50) { u16::MAX } else { self.rng.random_range(0..4) })
    }

    /// A disk size: a recent one, a few blocks, a large one, or an edge.
    pub fn bytes(&mut self) -> u64 {
        match self.rng.random_range(0..20) {
            0..8 => self.num(Key::Bytes),
            8..16 => u64::from(SMALL) * self.rng.random_range(0..64) + if self.chance(20) { 1 } else { 0 },
            16 => self.rng.random_range(0..=LARGEST),
            _ => self.edge(Key::Bytes),
        }
    }

    /// A block index: a recent one, one past a recent disk's end, or an edge.
    pub fn index(&mut self) -> u64 {
        match self.rng.random_range(0..10) {
            0..7 => self.num(Key::Index),
            7 => self.pools.pick(Key::Bytes, self.rng).map_or(0, |b| b / u64::from(SMALL)),
            _ => self.rng.random_range(0..64),
        }
    }

    /// A block size: a recent one, mostly the smallest, rarely the largest.
    pub fn block_size(&mut self) -> BlockSize {
        let recent = self.num(Key::BlockSize);
        if let (true, Ok(size)) = (self.chance(70), BlockSize::new(recent)) {
            return size;
        }
        let bytes = match self.rng.random_range(0..20) {
            0..14 => SMALL,
            14 => 8 << 10,
            15 => 64 << 10,
            16 => BlockSize::WAN.bytes(),
            17 => BlockSize::LOCAL.bytes(),
            18 => BlockSize::LARGE.bytes(),
            _ => BlockSize::MAX,
        };
        BlockSize::new(u64::from(bytes)).unwrap_or(BlockSize::LOCAL)
    }

    /// A node: one of the deployment (a `role` one if asked), or a stranger.
    pub fn node(&mut self, role: Option<Role>) -> NodeId {
        if self.chance(8) {
            return self.stock.strangers[self.below(self.stock.strangers.len())];
        }
        let nodes = &self.stock.nodes;
        let of_role = || nodes.iter().filter(|(_, r)| role.is_none_or(|want| *r == want)).map(|(id, _)| *id);
        let count = of_role().count();
        match (count == 0 || self.chance(15), self.pools.pick(Key::Node, self.rng)) {
            (true, Some(recent)) => NodeId(u32::try_from(recent).unwrap_or(u32::MAX)),
            _ if count == 0 => nodes[self.rng.random_range(0..nodes.len())].0,
            _ => of_role().nth(self.rng.random_range(0..count)).unwrap_or(nodes[0].0),
        }
    }

    /// A list length: mostly a few, sometimes dozens.
    pub fn count(&mut self) -> usize {
        match self.rng.random_range(0..100) {
            0..80 => self.rng.random_range(0..5),
            80..97 => self.rng.random_range(0..40),
            _ => self.rng.random_range(0..300),
        }
    }

    /// A length for lists of cheap elements (indexes, digests): rarely at
    /// the per-message limit or one past it.
    pub fn long_count(&mut self) -> usize {
        if self.chance(1) { MAX_BLOCKS_PER_MESSAGE + self.below(2) } else { self.count() }
    }

    /// The length of an answer: mostly as many as the request listed.
    pub fn answer_len(&mut self) -> usize {
        match self.ctx.and_then(|c| c.first(Key::Count)) {
            Some(count) if count <= 1 << 16 && self.chance(75) => count as usize,
            _ => self.long_count(),
        }
    }

    /// Block indexes for an answer: mostly the request's, in its order.
    pub fn answer_indexes(&mut self) -> Vec<u64> {
        let asked: Vec<u64> = self.ctx.map(|c| c.all(Key::Index).collect()).unwrap_or_default();
        if !asked.is_empty() && self.chance(75) {
            return asked;
        }
        let len = self.count();
        self.vec(len, Gen::index)
    }

    pub fn vec<T>(&mut self, len: usize, mut item: impl FnMut(&mut Self) -> T) -> Vec<T> {
        (0..len).map(|_| item(self)).collect()
    }

    pub fn option<T>(&mut self, item: impl FnOnce(&mut Self) -> T) -> Option<T> {
        if self.chance(50) { Some(item(self)) } else { None }
    }

    /// Mostly `Ok`, sometimes a failure.
    pub fn result<T>(&mut self, ok: impl FnOnce(&mut Self) -> T) -> Result<T, String> {
        if self.chance(80) { Ok(ok(self)) } else { Err(self.text()) }
    }

    /// A name or a reason: short, empty, or long.
    pub fn text(&mut self) -> String {
        match self.rng.random_range(0..20) {
            0 => String::new(),
            1 => "x".repeat(4096),
            2 => "\u{0}\u{7f}é∅".into(),
            _ => format!("fuzz-{}", self.rng.random_range(0..1000)),
        }
    }

    pub fn digest(&mut self) -> Digest {
        match self.rng.random_range(0..10) {
            0..4 => {
                self.ctx.and_then(|c| c.pick_digest(self.rng)).or_else(|| self.pools.pick_digest(self.rng)).unwrap_or(Digest::ZERO_BLOCK)
            }
            4..6 => self.pools.pick_digest(self.rng).unwrap_or(Digest([1; 32])),
            6 => Digest::ZERO_BLOCK,
            7 | 8 => self.stock.encoded[self.below(self.stock.encoded.len())].digest,
            _ => Digest(self.rng.random()),
        }
    }

    pub fn compression(&mut self) -> Compression {
        Compression::ALL[self.below(Compression::ALL.len())]
    }

    /// Bits for a disk of recent size (one per block), a few, or many.
    pub fn bits(&mut self) -> BitVec {
        let len = match self.rng.random_range(0..10) {
            0..6 => {
                let bytes = self.num(Key::Bytes);
                let block_size = self.block_size();
                block_size.blocks_for(bytes.min(LARGEST)).min(1 << 16) as usize
            }
            6..9 => self.rng.random_range(0..80),
            _ => self.rng.random_range(0..(1 << 16)),
        };
        let mut bits = BitVec::repeat(false, len);
        for i in 0..len {
            if self.chance(30) {
                bits.set(i, true);
            }
        }
        bits
    }

    /// A block's plaintext: mostly `block_size` real bytes, sometimes of
    /// the wrong length, sometimes a simulator's descriptor.
    pub fn data(&mut self, block_size: BlockSize) -> BlockData {
        let want = block_size.bytes().min(BlockSize::LOCAL.bytes()) as usize;
        match self.rng.random_range(0..20) {
            0..13 if want == SMALL as usize => BlockData::Bytes(self.stock.plain[self.below(self.stock.plain.len())].clone()),
            0..13 => BlockData::Bytes((0..want).map(|i| (i / 64) as u8).collect()),
            13 | 14 => BlockData::Bytes(vec![0; want]),
            15..18 => {
                let len = [0, 1, want.saturating_sub(1), want + 1][self.below(4)];
                BlockData::Bytes(vec![7; len])
            }
            _ => BlockData::Synthetic(SyntheticBlock {
                digest: self.digest(),
                raw_len: self.u32(Key::Bytes),
                compressibility: self.rng.random(),
            }),
        }
    }

    /// A block as it travels: mostly a real encoding of a stock block,
    /// sometimes one whose digest, length or bytes lie, or a descriptor.
    pub fn payload(&mut self) -> BlockPayload {
        let mut block = self.stock.encoded[self.below(self.stock.encoded.len())].clone();
        match self.rng.random_range(0..20) {
            0..14 => {}
            14 => block.digest = self.digest(),
            15 => block.raw_len = [0, u32::MAX, BlockSize::MAX + 1, block.raw_len + 1][self.below(4)],
            16 => block.payload = vec![0xa5; self.below(64)],
            17 => block.encoding = [Encoding::Zero, Encoding::Raw, Encoding::Zstd][self.below(3)],
            _ => {
                return BlockPayload::Synthetic {
                    digest: self.digest(),
                    raw_len: self.u32(Key::Bytes),
                    stored_len: self.rng.random(),
                    compressibility: self.rng.random(),
                };
            }
        }
        BlockPayload::Encoded(block)
    }
}
