//! blockferry-sim: the deterministic simulator.

pub mod checker;
pub mod des;
pub mod net;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod seed;
pub mod swarm;
pub mod topology;
pub mod trace;
pub mod turmoil_transport;
pub mod world;
