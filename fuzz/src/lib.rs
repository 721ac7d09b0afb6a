//! blockferry-fuzz: drives each role — manager, host, proxy, repository —
//! as production runs it (behind the admission layer, synthetic payloads
//! refused) through millions of random and mutated inputs from random
//! peers, and checks that it never panics and that its memory stays flat
//! (issue 13 §8).
//!
//! * [`corpus`] records real traffic from a short simulated run;
//! * [`harvest`] finds the ids a message names, [`values`] draws values
//!   (mostly ids the role holds, otherwise edges), [`messages`] builds a
//!   message of any kind and [`completions`] answers the role's storage and
//!   hypervisor requests;
//! * [`driver`] runs a role's lives and counts what they did, [`life`]
//!   makes one life's inputs from what its node does, [`catch`] feeds a
//!   node catching its panics, [`variants`] lists the message kinds the
//!   type has, [`rss`] reads the process's memory and [`report`] writes
//!   what a run found.
//!
//! `cargo test -p blockferry-fuzz` runs a short fixed-seed run of each
//! role; `cargo run --profile fuzz -p blockferry-fuzz -- --help` the long
//! one (the `fuzz` profile is a release build that keeps overflow checks:
//! `--release` runs too, but an overflow on a peer's value then wraps
//! silently instead of panicking).

pub mod catch;
pub mod completions;
pub mod corpus;
pub mod driver;
pub mod harvest;
pub mod life;
pub mod messages;
pub mod report;
pub mod rss;
pub mod values;
pub mod variants;

pub use driver::{Fuzzer, Options, RoleRun, Target};
