//! A throttled task's traffic on the legs of its data path the manager
//! named (those crossing a throttling rule, or its destination under a job
//! cap), paced to the rate the manager gave it.
//!
//! Tasks never know they are throttled: the proxy runs a throttled task
//! against a scratch outbox and hands what it produced to the task's
//! [`PacedFlow`], which lets everything through at once except messages to
//! the paced peers; those wait, in order, for the [`Pacer`]. Bytes coming
//! back from those peers are charged too. A task that pulls its data with
//! small requests (a restore, a read through a remote host) is charged the
//! most each request can bring back when it asks, and settles with the
//! answer's real size: charging only on arrival would let every new task
//! pull a whole window of batches before its pacer noticed.

use crate::ids::NodeId;
use crate::node::{Outbox, Output, TimerId};
use crate::pacing::Pacer;
use crate::time::Timestamp;
use crate::wire::Message;
use crate::wire::message::TaskRate;
use std::collections::{BTreeMap, VecDeque};

/// Runs `step` with its outputs going straight out, or through `flow`.
pub fn through<R>(flow: Option<&mut PacedFlow>, now: Timestamp, out: &mut Outbox, step: impl FnOnce(&mut Outbox) -> R) -> R {
    match flow {
        None => step(out),
        Some(flow) => {
            let mut produced = Outbox::default();
            let result = step(&mut produced);
            flow.route(now, produced, out);
            result
        }
    }
}

#[derive(Debug)]
pub struct PacedFlow {
    peers: Vec<NodeId>,
    pacer: Pacer,
    /// Messages to `peers` waiting for the pacer, oldest first.
    queue: VecDeque<(NodeId, Message)>,
    /// Armed when the queue is waiting.
    timer: TimerId,
    /// Pull requests sent and not yet answered, by (peer, batch): what
    /// was charged for their answers.
    estimates: BTreeMap<(NodeId, u64), u64>,
}

impl PacedFlow {
    /// A flow whose path is still busy until `drained_at` with what
    /// earlier tasks of this proxy sent on it (so a stream of short tasks
    /// cannot beat the rate by each starting with a clean slate).
    pub fn new(rate: TaskRate, timer: TimerId, drained_at: Timestamp) -> Self {
        let pacer = Pacer::starting_at(rate.bytes_per_sec, drained_at);
        PacedFlow { peers: rate.peers, pacer, queue: VecDeque::new(), timer, estimates: BTreeMap::new() }
    }

    pub fn peers(&self) -> &[NodeId] {
        &self.peers
    }

    /// When what the flow sent has drained at its rate.
    pub fn drained_at(&self) -> Timestamp {
        self.pacer.ready_at()
    }

    pub fn set_rate(&mut self, now: Timestamp, bytes_per_sec: u64, out: &mut Outbox) {
        self.pacer.set_rate(now, bytes_per_sec);
        self.release(now, out);
    }

    /// A message arrived: if from a paced peer, its bytes crossed the path.
    pub fn received(&mut self, now: Timestamp, from: NodeId, msg: &Message) {
        if self.peers.contains(&from) {
            self.pacer.charge(now, msg.wire_bytes());
            if let Some(estimate) = msg.pulled_batch().and_then(|batch| self.estimates.remove(&(from, batch))) {
                self.pacer.refund(estimate);
            }
        }
    }

    /// Takes a step's outputs: messages to paced peers join the queue,
    /// everything else goes on at once.
    pub fn route(&mut self, now: Timestamp, produced: Outbox, out: &mut Outbox) {
        for output in produced {
            match output {
                Output::Send { to, msg } if self.peers.contains(&to) => {
                    self.queue.push_back((to, msg));
                    self.send_ready(now, out);
                }
                other => out.push(other),
            }
        }
        self.release(now, out);
    }

    /// Sends what the pacer allows now; arms the timer for the rest.
    pub fn release(&mut self, now: Timestamp, out: &mut Outbox) {
        self.send_ready(now, out);
        if !self.queue.is_empty() {
            out.set_timer(self.timer, self.pacer.ready_at());
        }
    }

    fn send_ready(&mut self, now: Timestamp, out: &mut Outbox) {
        while self.pacer.is_ready(now)
            && let Some((to, msg)) = self.queue.pop_front()
        {
            let mut bytes = msg.wire_bytes();
            if let Some((batch, estimate)) = msg.pull_estimate() {
                self.estimates.insert((to, batch), estimate);
                bytes += estimate;
            }
            self.pacer.charge(now, bytes);
            out.send(to, msg);
        }
    }

    /// Sends everything still queued, unpaced (the task ended, or its
    /// throttle was lifted: what it sent must still arrive in order).
    pub fn flush(self, out: &mut Outbox) {
        for (to, msg) in self.queue {
            out.send(to, msg);
        }
    }

    /// The connection to `peer` broke: what waits for it would have been
    /// lost in flight anyway, and the task resynchronises when it is back.
    pub fn discard_to(&mut self, peer: NodeId) {
        self.queue.retain(|(to, _)| *to != peer);
        // Answers lost with the connection stay charged: conservative.
        self.estimates.retain(|(from, _), _| *from != peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TaskId;
    use std::time::Duration;

    const PEER: NodeId = NodeId(7);
    const HOST: NodeId = NodeId(3);

    fn sends(out: &mut Outbox) -> Vec<(NodeId, u64)> {
        std::iter::from_fn(|| out.pop())
            .filter_map(|o| match o {
                Output::Send { to, msg: Message::Ping { seq } } => Some((to, seq)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn messages_to_the_far_end_wait_their_turn_in_order_and_others_do_not() {
        let mut flow = PacedFlow::new(TaskRate { bytes_per_sec: 10, peers: vec![PEER] }, TimerId(1), Timestamp::ZERO);
        let mut produced = Outbox::default();
        for seq in 0..3 {
            produced.send(PEER, Message::Ping { seq });
            produced.send(HOST, Message::Ping { seq: 100 + seq });
        }
        let mut out = Outbox::default();
        flow.route(Timestamp::ZERO, produced, &mut out);
        // 10 bytes per second: the first ping goes, the rest wait.
        assert_eq!(sends(&mut out), vec![(PEER, 0), (HOST, 100), (HOST, 101), (HOST, 102)]);
        let later = Timestamp::from_duration(Duration::from_secs(60));
        flow.release(later, &mut out);
        assert_eq!(sends(&mut out), vec![(PEER, 1)], "one message per drain of the bucket");
        flow.flush(&mut out);
        assert_eq!(sends(&mut out), vec![(PEER, 2)]);
    }

    #[test]
    fn a_pull_is_charged_its_estimate_up_front_and_settled_by_the_answer() {
        let mut flow = PacedFlow::new(TaskRate { bytes_per_sec: 1_000_000, peers: vec![PEER] }, TimerId(1), Timestamp::ZERO);
        let read = |batch| Message::ReadPoint {
            task: TaskId(1),
            batch,
            point: crate::ids::RestorePointId(1),
            disk: 0,
            first: 0,
            count: 4,
            block_size: crate::BlockSize::LOCAL,
        };
        let mut produced = Outbox::default();
        produced.send(PEER, read(1));
        produced.send(PEER, read(2));
        let mut out = Outbox::default();
        flow.route(Timestamp::ZERO, produced, &mut out);
        // 4 MiB may come back: the second request waits about 4 s for it.
        let waits = flow.pacer.ready_at().saturating_since(Timestamp::ZERO);
        assert!(waits > Duration::from_millis(4_000) && waits < Duration::from_millis(4_300), "{waits:?}");
        // The answer is small: the rest is refunded and the second goes.
        let answer = Message::PointBlocks { task: TaskId(1), batch: 1, result: Ok(Vec::new()) };
        flow.received(Timestamp::ZERO, PEER, &answer);
        assert!(flow.pacer.is_ready(Timestamp::ZERO + Duration::from_millis(10)));
    }

    #[test]
    fn a_waiting_queue_arms_the_timer_at_the_pacer_time() {
        let mut flow = PacedFlow::new(TaskRate { bytes_per_sec: 10, peers: vec![PEER] }, TimerId(TaskId(5).0), Timestamp::ZERO);
        let mut produced = Outbox::default();
        produced.send(PEER, Message::Ping { seq: 0 });
        produced.send(PEER, Message::Ping { seq: 1 });
        let mut out = Outbox::default();
        flow.route(Timestamp::ZERO, produced, &mut out);
        let timer = std::iter::from_fn(|| out.pop()).find_map(|o| match o {
            Output::SetTimer { id, at } => Some((id, at)),
            _ => None,
        });
        assert_eq!(timer, Some((TimerId(5), flow.pacer.ready_at())));
        assert!(flow.pacer.ready_at() > Timestamp::ZERO);
    }
}
