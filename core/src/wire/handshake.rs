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
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("peer {node:?} speaks protocol version {got}, this node speaks {expected}")]
    VersionMismatch { node: String, got: u16, expected: u16 },
    #[error("peer calls itself {got:?}, expected {expected:?}")]
    UnexpectedNode { got: String, expected: String },
    #[error("peer {0:?} is not in this node's topology")]
    UnknownNode(String),
}

impl Hello {
    pub fn new(node: impl Into<String>) -> Hello {
        Hello { node: node.into(), protocol_version: PROTOCOL_VERSION }
    }

    /// Checks a received hello's version against ours.
    pub fn check_version(&self) -> Result<(), HelloError> {
        if self.protocol_version != PROTOCOL_VERSION {
            return Err(HelloError::VersionMismatch { node: self.node.clone(), got: self.protocol_version, expected: PROTOCOL_VERSION });
        }
        Ok(())
    }
}
