//! Framing: every message on a connection is one frame.
//!
//! ```text
//! offset  size  field
//! 0       4     payload length, u32 little-endian
//! 4       2     protocol version, u16 little-endian
//! 6       4     CRC32C of the payload, u32 little-endian
//! 10      n     payload: the postcard encoding of the message
//! ```
//!
//! The decoder checks, in this order, the length against its limit (before
//! anything of the claimed length is allocated or awaited), the version, the
//! checksum and finally the payload's decoding. Each failure is a distinct
//! [`FrameError`]; after one, the connection is not trustworthy and the
//! driver closes it — nothing of a bad frame is ever applied.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The protocol version this build speaks. Peers must match exactly.
pub const PROTOCOL_VERSION: u16 = 2;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 10;
/// Default payload limit: comfortably above the largest block batch a sender
/// builds (senders split batches to stay below it).
pub const MAX_FRAME_DEFAULT: usize = 32 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("peer speaks protocol version {got}, this node speaks {expected}")]
    WrongVersion { got: u16, expected: u16 },
    #[error("frame checksum mismatch (CRC32C {expected:#010x} in header, {actual:#010x} computed)")]
    BadChecksum { expected: u32, actual: u32 },
    #[error("frame payload does not decode: {0}")]
    Undecodable(String),
    #[error("connection ended inside a frame ({have} of {need} bytes received)")]
    Truncated { have: usize, need: usize },
    #[error("message does not encode: {0}")]
    Unencodable(String),
}

/// Appends one frame holding `msg` to `out`.
pub fn encode_frame<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<(), FrameError> {
    encode_frame_version(msg, PROTOCOL_VERSION, out)
}

/// As [`encode_frame`], with an explicit version (tests of version refusal use it).
pub fn encode_frame_version<T: Serialize>(msg: &T, version: u16, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    let result = postcard::to_io(msg, &mut *out).map(|_| ()).map_err(|e| FrameError::Unencodable(e.to_string()));
    if let Err(e) = result {
        out.truncate(start);
        return Err(e);
    }
    let payload_len = out.len() - start - HEADER_LEN;
    let len = u32::try_from(payload_len).map_err(|_| FrameError::TooLarge { len: payload_len, max: u32::MAX as usize })?;
    let crc = crc32c::crc32c(&out[start + HEADER_LEN..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 6].copy_from_slice(&version.to_le_bytes());
    out[start + 6..start + 10].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Incremental decoder for a byte stream: feed what arrives, take frames out.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    max_frame: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(MAX_FRAME_DEFAULT)
    }
}

impl FrameDecoder {
    pub fn new(max_frame: usize) -> Self {
        FrameDecoder { buf: Vec::new(), max_frame }
    }

    /// Changes the largest frame accepted from now on (a connection reads
    /// its hello under a small limit, then raises it).
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.max_frame = max_frame;
    }

    /// Appends received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Takes the next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        let Some(header) = self.buf.first_chunk::<HEADER_LEN>() else { return Ok(None) };
        let header = Header::parse(header, self.max_frame)?;
        let end = HEADER_LEN + header.len;
        if self.buf.len() < end {
            return Ok(None);
        }
        let msg = header.open(&self.buf[HEADER_LEN..end]);
        self.buf.drain(..end);
        msg.map(Some)
    }

    /// The stream ended: an error if it ended inside a frame.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let need = match self.buf.first_chunk::<HEADER_LEN>() {
            Some(h) => Header::parse(h, self.max_frame).map(|h| HEADER_LEN + h.len).unwrap_or(HEADER_LEN),
            None => HEADER_LEN,
        };
        Err(FrameError::Truncated { have: self.buf.len(), need })
    }

    /// Bytes buffered but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// Decodes exactly one frame that must fill `bytes`.
pub fn decode_frame<T: DeserializeOwned>(bytes: &[u8], max_frame: usize) -> Result<T, FrameError> {
    let Some(header) = bytes.first_chunk::<HEADER_LEN>() else {
        return Err(FrameError::Truncated { have: bytes.len(), need: HEADER_LEN });
    };
    let header = Header::parse(header, max_frame)?;
    let need = HEADER_LEN + header.len;
    if bytes.len() < need {
        return Err(FrameError::Truncated { have: bytes.len(), need });
    }
    if bytes.len() > need {
        return Err(FrameError::Undecodable(format!("{} trailing bytes after the frame", bytes.len() - need)));
    }
    header.open(&bytes[HEADER_LEN..])
}

struct Header {
    len: usize,
    crc: u32,
}

impl Header {
    fn parse(h: &[u8; HEADER_LEN], max_frame: usize) -> Result<Header, FrameError> {
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if len > max_frame {
            return Err(FrameError::TooLarge { len, max: max_frame });
        }
        let version = u16::from_le_bytes([h[4], h[5]]);
        if version != PROTOCOL_VERSION {
            return Err(FrameError::WrongVersion { got: version, expected: PROTOCOL_VERSION });
        }
        Ok(Header { len, crc: u32::from_le_bytes([h[6], h[7], h[8], h[9]]) })
    }

    fn open<T: DeserializeOwned>(&self, payload: &[u8]) -> Result<T, FrameError> {
        let actual = crc32c::crc32c(payload);
        if actual != self.crc {
            return Err(FrameError::BadChecksum { expected: self.crc, actual });
        }
        match postcard::take_from_bytes::<T>(payload) {
            Ok((msg, [])) => Ok(msg),
            Ok((_, rest)) => Err(FrameError::Undecodable(format!("{} bytes left after the message", rest.len()))),
            Err(e) => Err(FrameError::Undecodable(e.to_string())),
        }
    }
}

/// Bytes `msg` occupies on the wire as one frame, computed without
/// encoding it (simulated links charge serialization delay by this).
pub fn frame_len<T: Serialize>(msg: &T) -> Result<usize, FrameError> {
    postcard::serialize_with_flavor::<T, postcard::ser_flavors::Size, usize>(msg, postcard::ser_flavors::Size::default())
        .map(|n| HEADER_LEN + n)
        .map_err(|e| FrameError::Unencodable(e.to_string()))
}
