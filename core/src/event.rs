//! Events: the observability spine. Every meaningful step a node takes emits
//! one; the simulator's checker and trace, realnet's logs and progress are
//! all built from this one stream.

use crate::ids::NodeId;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    PeerUp { peer: NodeId },
    PeerDown { peer: NodeId },
    /// A `Pong` answered one of our pings; `rtt_nanos` measured in `now` time.
    PongReceived { peer: NodeId, seq: u64, rtt_nanos: u64 },
}
