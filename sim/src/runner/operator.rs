//! The operator, as a node: under turmoil, requests reach the manager over
//! the network like any peer's, so the end-of-run restores are sent by this
//! small node. The runner drops messages into its mailbox; it checks the
//! mailbox on a timer and sends what it finds to the manager.

use blockferry_core::node::{Input, Node, Outbox, Output, TimerId};
use blockferry_core::{Message, NodeId, Timestamp};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

const POLL: TimerId = TimerId(0);
const POLL_EVERY: Duration = Duration::from_secs(1);

pub type Mailbox = Rc<RefCell<VecDeque<Message>>>;

pub struct Operator {
    manager: NodeId,
    mailbox: Mailbox,
    out: Outbox,
}

impl Operator {
    pub fn new(manager: NodeId, mailbox: Mailbox) -> Self {
        Operator { manager, mailbox, out: Outbox::default() }
    }
}

impl Node for Operator {
    fn handle(&mut self, now: Timestamp, input: Input) {
        if matches!(input, Input::Start | Input::Timer(POLL)) {
            while let Some(msg) = self.mailbox.borrow_mut().pop_front() {
                self.out.send(self.manager, msg);
            }
            self.out.set_timer(POLL, now + POLL_EVERY);
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop()
    }
}
