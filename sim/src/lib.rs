//! blockferry-sim: the deterministic simulator.

pub mod des;
pub mod net;
pub mod seed;
pub mod trace;
pub mod turmoil_transport;
