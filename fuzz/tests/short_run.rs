//! The short fuzzing run that is part of `cargo test` (issue 13 §8): every
//! role, a fixed seed, tens of thousands of inputs; and the machinery that
//! the long run (`cargo run --release -p blockferry-fuzz`) relies on.

use blockferry_core::node::{Input, Node, Output};
use blockferry_core::{Message, NodeId, Timestamp};
use blockferry_fuzz::catch::feed;
use blockferry_fuzz::variants::message_kinds;
use blockferry_fuzz::{Fuzzer, Options, RoleRun, Target};

/// Inputs per role: a few seconds a role in the dev profile.
const INPUTS: u64 = 50_000;

fn short_run(target: Target) -> RoleRun {
    let fuzzer = Fuzzer::new().expect("the corpus records");
    let run = fuzzer.run(target, &Options { seed: 7, inputs: INPUTS, life: None, verbose: false });
    assert_eq!(run.inputs, INPUTS);
    assert_eq!(run.panics, 0, "{:#?}", run.panic_reports);
    assert_eq!((run.oversized_sends, run.oversized_reads, run.oversized_inputs), (0, 0, 0), "nothing exceeds a frame");
    // Every kind of message reached the role (most of them to be refused).
    let missing: Vec<String> = message_kinds().into_iter().filter(|k| !run.kinds.contains_key(k.as_str())).collect();
    assert!(missing.is_empty(), "{} never got {missing:?}", target.name());
    assert_eq!(run.checkpoints.len(), 10, "memory is measured every tenth");
    assert!(run.refusals > 0 && !run.sent.is_empty(), "{run:?}");
    run
}

#[test]
fn the_manager_survives_a_short_run() {
    let run = short_run(Target::Manager);
    // Deep enough to schedule and finish tasks and commit points.
    for event in ["TaskFinished", "PointCommitted"] {
        assert!(run.events.contains_key(event), "{:?}", run.events);
    }
}

#[test]
fn the_host_survives_a_short_run() {
    let run = short_run(Target::Host);
    assert!(run.sent.contains_key("blocks_read") && run.sent.contains_key("snapshot_created"), "{:?}", run.sent);
}

#[test]
fn the_proxy_survives_a_short_run() {
    let run = short_run(Target::Proxy);
    assert!(run.sent.contains_key("put_blocks") && run.sent.contains_key("write_blocks"), "{:?}", run.sent);
}

#[test]
fn the_repository_survives_a_short_run() {
    let run = short_run(Target::Repository);
    assert!(run.sent.contains_key("point_committed") && run.sent.contains_key("point_blocks"), "{:?}", run.sent);
}

/// The generator makes every kind of message `Message` has: a variant
/// added to the protocol without a way to generate it fails here (the
/// kinds come from the type itself, see `variants`).
#[test]
fn the_generator_makes_every_kind_of_message() {
    let fuzzer = Fuzzer::new().expect("the corpus records");
    assert_eq!(fuzzer.missing_kinds(), Vec::<&str>::new());
}

/// A life replays exactly from the seed and its number: that is how a
/// panic report is reproduced.
#[test]
fn a_life_replays_exactly() {
    let fuzzer = Fuzzer::new().expect("the corpus records");
    let life = |seed| fuzzer.run(Target::Proxy, &Options { seed, inputs: 0, life: Some(3), verbose: false });
    let (a, b, other) = (life(7), life(7), life(8));
    assert_eq!((a.inputs, a.refusals, &a.kinds, &a.sent), (b.inputs, b.refusals, &b.kinds, &b.sent));
    assert_ne!((a.inputs, &a.kinds), (other.inputs, &other.kinds), "another seed, another life");
}

/// A node that panics on its second input.
struct Fragile(u32);

impl Node for Fragile {
    fn handle(&mut self, _: Timestamp, input: Input) {
        self.0 += 1;
        if let Input::Message { msg: Message::Ping { seq }, .. } = input {
            assert!(self.0 < 2, "fragile at ping {seq}");
        }
    }
    fn poll_output(&mut self) -> Option<Output> {
        None
    }
}

/// A panic inside a node is caught and reported with its message and
/// location; the fuzzer goes on.
#[test]
fn a_panic_is_caught_with_its_message_and_location() {
    let mut node = Fragile(0);
    let ping = || Input::Message { from: NodeId(1), msg: Message::Ping { seq: 5 } };
    assert_eq!(feed(&mut node, Timestamp::ZERO, ping(), |_| {}), Ok(()));
    let panic = feed(&mut node, Timestamp::ZERO, ping(), |_| {}).expect_err("the second ping panics");
    assert!(panic.contains("fragile at ping 5") && panic.contains("short_run.rs"), "{panic}");
}
