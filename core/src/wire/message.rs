//! Every message one node sends another. The enum grows with the protocol;
//! adding a variant at the end keeps older encodings decodable, anything
//! else bumps [`super::PROTOCOL_VERSION`].

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Liveness probe; answered with `Pong` carrying the same sequence.
    Ping { seq: u64 },
    Pong { seq: u64 },
}

impl Message {
    /// Bytes a simulated link charges beyond the encoded frame: synthetic
    /// block payloads stand for bytes they do not carry.
    pub fn modelled_extra_bytes(&self) -> u64 {
        0
    }

    /// A short name for traces and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Ping { .. } => "ping",
            Message::Pong { .. } => "pong",
        }
    }
}
