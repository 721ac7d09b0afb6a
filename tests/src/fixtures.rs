//! Small real nodes used to exercise engines and drivers: they follow the
//! node contract exactly, so any engine that runs them correctly delivers
//! messages, fires timers and reports peers as the contract says.

use blockferry_core::node::{Input, Node, Outbox, Output, TimerId};
use blockferry_core::{Event, Message, NodeId, Timestamp};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::time::Duration;

/// Pings one peer every `interval` (plus a seeded random jitter of up to
/// half of it, when given an RNG), `count` times, and answers any ping it
/// receives. Emits `PongReceived` with the measured round-trip time, so a
/// trace shows message delivery, latency and the seed's effect.
pub struct PingPong {
    peer: Option<NodeId>,
    interval: Duration,
    remaining: u64,
    next_seq: u64,
    sent_at: BTreeMap<u64, Timestamp>,
    started: bool,
    jitter: Option<ChaCha8Rng>,
    out: Outbox,
}

const TICK: TimerId = TimerId(1);

impl PingPong {
    /// A node that pings `peer` `count` times.
    pub fn pinger(peer: NodeId, interval: Duration, count: u64) -> Self {
        PingPong { peer: Some(peer), interval, remaining: count, ..Self::responder() }
    }

    /// A node that only answers pings.
    pub fn responder() -> Self {
        PingPong {
            peer: None,
            interval: Duration::from_secs(1),
            remaining: 0,
            next_seq: 0,
            sent_at: BTreeMap::new(),
            started: false,
            jitter: None,
            out: Outbox::default(),
        }
    }

    /// Adds a random delay of up to `interval / 2` before each ping.
    pub fn with_jitter(mut self, rng: ChaCha8Rng) -> Self {
        self.jitter = Some(rng);
        self
    }

    fn ping(&mut self, now: Timestamp) {
        let Some(peer) = self.peer else { return };
        if self.remaining == 0 {
            return;
        }
        self.remaining -= 1;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.sent_at.insert(seq, now);
        self.out.send(peer, Message::Ping { seq });
        if self.remaining > 0 {
            let half = self.interval.as_nanos() as u64 / 2;
            let jitter = self.jitter.as_mut().map_or(0, |rng| rng.random_range(0..=half));
            self.out.set_timer(TICK, now + self.interval + Duration::from_nanos(jitter));
        }
    }
}

impl Node for PingPong {
    fn handle(&mut self, now: Timestamp, input: Input) {
        match input {
            Input::PeerUp(peer) => {
                self.out.event(Event::PeerUp { peer });
                if Some(peer) == self.peer && !self.started {
                    self.started = true;
                    self.ping(now);
                }
            }
            Input::PeerDown(peer) => self.out.event(Event::PeerDown { peer }),
            Input::Timer(TICK) => self.ping(now),
            Input::Start | Input::Timer(_) | Input::Storage(_) | Input::Hypervisor(_) => {}
            Input::Message { from, msg: Message::Ping { seq } } => self.out.send(from, Message::Pong { seq }),
            Input::Message { from, msg: Message::Pong { seq } } => {
                if let Some(sent) = self.sent_at.remove(&seq) {
                    let rtt_nanos = (now - sent).as_nanos() as u64;
                    self.out.event(Event::PongReceived { peer: from, seq, rtt_nanos });
                }
            }
            Input::Message { .. } => {}
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop()
    }
}

/// Answers pings, but refuses the first one as invalid input, as a role
/// refuses a message that fails validation: the connection to the pinger
/// is closed, and what it sends over the next one is answered.
pub struct RefusesFirstPing {
    inner: PingPong,
    refused: bool,
    out: Outbox,
}

impl Default for RefusesFirstPing {
    fn default() -> Self {
        RefusesFirstPing { inner: PingPong::responder(), refused: false, out: Outbox::default() }
    }
}

impl Node for RefusesFirstPing {
    fn handle(&mut self, now: Timestamp, input: Input) {
        match input {
            Input::Message { from, msg: Message::Ping { seq } } if !self.refused => {
                self.refused = true;
                self.out.refuse(from, format!("ping {seq} is not welcome"));
            }
            other => self.inner.handle(now, other),
        }
        while let Some(output) = self.inner.poll_output() {
            self.out.push(output);
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop()
    }
}
