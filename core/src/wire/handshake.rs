//! The hello exchanged first on every connection: who is calling, in which
//! protocol version. The dialer sends its [`Hello`]; the acceptor checks it
//! and answers with its own, or closes the connection after reporting why.

use super::frame::PROTOCOL_VERSION;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's node name, as in the topology.
    pub node: String,
    pub protocol_version: u16,
    /// The node runs in a simulated deployment and exchanges synthetic
    /// block payloads: both ends of a connection must agree.
    pub synthetic_payloads: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("peer {node:?} speaks protocol version {got}, this node speaks {expected}")]
    VersionMismatch { node: String, got: u16, expected: u16 },
    #[error("peer calls itself {got:?}, expected {expected:?}")]
    UnexpectedNode { got: String, expected: String },
    #[error("peer {0:?} is not in this node's topology")]
    UnknownNode(String),
    #[error("peer {node:?} {} synthetic payloads and this node {}", if *peer { "exchanges" } else { "does not exchange" }, if *peer { "does not" } else { "does" })]
    PayloadMismatch { node: String, peer: bool },
}

impl Hello {
    /// A real node's hello (no synthetic payloads).
    pub fn new(node: impl Into<String>) -> Hello {
        Hello { node: node.into(), protocol_version: PROTOCOL_VERSION, synthetic_payloads: false }
    }

    /// Checks that a received hello's payload mode is ours.
    pub fn check_payloads(&self, ours: bool) -> Result<(), HelloError> {
        if self.synthetic_payloads != ours {
            return Err(HelloError::PayloadMismatch { node: self.node.clone(), peer: self.synthetic_payloads });
        }
        Ok(())
    }

    /// Checks a received hello's version against ours.
    pub fn check_version(&self) -> Result<(), HelloError> {
        if self.protocol_version != PROTOCOL_VERSION {
            return Err(HelloError::VersionMismatch { node: self.node.clone(), got: self.protocol_version, expected: PROTOCOL_VERSION });
        }
        Ok(())
    }
}
