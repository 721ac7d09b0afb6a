//! Cuts the byte stream a driver writes back into its frames, so the link
//! shaper can charge each message what the discrete-event engine charges
//! it — its encoded length plus the bytes a synthetic block payload stands
//! for — and draw a link's `breaks` once per message, as the
//! discrete-event engine does.

use blockferry_core::Message;
use blockferry_core::wire::frame::{HEADER_LEN, decode_frame};

/// A frame claiming more than this is not one the driver wrote (its own
/// limit is far lower): the splitter stops framing and passes bytes through.
const MAX_FRAME: usize = 1 << 30;

/// One complete frame (or, once framing is lost, a run of raw bytes) and
/// what it costs on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub bytes: Vec<u8>,
    /// Bytes a link charges for it (at least `bytes.len()`).
    pub cost: u64,
    /// Whether it is a whole frame (a message that may be lost).
    pub frame: bool,
}

/// Accumulates written bytes until they hold whole frames.
#[derive(Debug, Default)]
pub struct FrameSplitter {
    buf: Vec<u8>,
    /// Start of the first byte not yet handed out.
    start: usize,
    /// Framing was lost (a header claimed an impossible length).
    raw: bool,
}

impl FrameSplitter {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, if the bytes so far hold one.
    pub fn next_chunk(&mut self) -> Option<Chunk> {
        let rest = &self.buf[self.start..];
        if rest.is_empty() {
            self.compact();
            return None;
        }
        if self.raw {
            let bytes = rest.to_vec();
            self.start = self.buf.len();
            self.compact();
            return Some(Chunk { cost: bytes.len() as u64, bytes, frame: false });
        }
        let len = rest.first_chunk::<4>().map(|l| u32::from_le_bytes(*l) as usize)?;
        if len > MAX_FRAME {
            self.raw = true;
            return self.next_chunk();
        }
        let total = HEADER_LEN + len;
        if rest.len() < total {
            self.compact();
            return None;
        }
        let bytes = rest[..total].to_vec();
        self.start += total;
        let cost = frame_cost(&bytes);
        Some(Chunk { bytes, cost, frame: true })
    }

    /// Drops handed-out bytes once they are most of the buffer, so a long
    /// run of small frames costs linear time.
    fn compact(&mut self) {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

/// What a frame costs on a link: its length, plus the modelled bytes of
/// synthetic payloads if it is a message (a hello, or anything that does
/// not decode, costs its length).
pub fn frame_cost(frame: &[u8]) -> u64 {
    let extra = decode_frame::<Message>(frame, MAX_FRAME).map_or(0, |msg| msg.modelled_extra_bytes());
    frame.len() as u64 + extra
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockferry_core::wire::{Hello, encode_frame};

    fn frame<T: serde::Serialize>(msg: &T) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(msg, &mut out).expect("encodes");
        out
    }

    #[test]
    fn cuts_frames_across_and_within_writes() {
        let (a, b, c) = (frame(&Message::Ping { seq: 1 }), frame(&Hello::new("px")), frame(&Message::Pong { seq: 2 }));
        let mut all = a.clone();
        all.extend_from_slice(&b);
        all.extend_from_slice(&c);
        let mut s = FrameSplitter::default();
        // First write: all of a, half of b.
        let cut = a.len() + b.len() / 2;
        s.push(&all[..cut]);
        assert_eq!(s.next_chunk().map(|c| c.bytes), Some(a.clone()));
        assert_eq!(s.next_chunk(), None);
        s.push(&all[cut..]);
        let hello = s.next_chunk().expect("the hello");
        assert_eq!((hello.bytes.len(), hello.cost, hello.frame), (b.len(), b.len() as u64, true));
        assert_eq!(s.next_chunk().map(|c| c.bytes), Some(c));
        assert_eq!(s.next_chunk(), None);
    }

    #[test]
    fn a_message_costs_its_length() {
        let ping = frame(&Message::Ping { seq: 7 });
        assert_eq!(frame_cost(&ping), ping.len() as u64);
    }

    #[test]
    fn a_synthetic_block_costs_the_bytes_it_stands_for() {
        use blockferry_core::payload::{BlockData, SyntheticBlock};
        use blockferry_core::{Digest, TaskId};
        let block = BlockData::Synthetic(SyntheticBlock { digest: Digest::of(b"block"), raw_len: 1 << 20, compressibility: 50 });
        let msg = Message::BlocksRead { task: TaskId(1), batch: 0, result: Ok(vec![(3, block)]) };
        let bytes = frame(&msg);
        assert!(bytes.len() < 200, "a descriptor, not the bytes");
        assert_eq!(frame_cost(&bytes), bytes.len() as u64 + (1 << 20));
    }

    #[test]
    fn an_impossible_length_turns_to_raw_bytes() {
        let mut s = FrameSplitter::default();
        s.push(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
        let chunk = s.next_chunk().expect("raw bytes");
        assert_eq!((chunk.bytes.len(), chunk.cost, chunk.frame), (7, 7, false));
        assert_eq!(s.next_chunk(), None);
    }
}
