//! Direct mode (`transport = "direct"`): the proxy reads the datastores of
//! the hosts it can reach itself, as Veeam's direct storage access and
//! hot-add modes do, so a disk's blocks never cross the network from the
//! host to the proxy.
//!
//! [`Direct`] wraps a proxy and leaves its tasks as they are: they go on
//! sending their read requests (`GetChangedBlocks`, `ReadBlocks`) to the
//! host. The layer takes those addressed to a host it reaches directly and
//! carries them out as its own hypervisor requests, then hands each answer
//! to the proxy as the very message the host would have sent
//! (`ChangedBlocksReply`, `BlocksRead`), from that host. Requests and
//! answers are phrased by the mapping the host role uses
//! (`crate::roles::data_requests`), so a task cannot tell the two apart.
//!
//! What stays on the network:
//! * requests to hosts the proxy does not reach (another site's): Veeam's
//!   "failover to network mode";
//! * writes (restores, replica syncs) and everything else a host does
//!   (snapshots, new VMs, reverts): those go through the host agent, which
//!   keeps the rollback log and the VM inventory.
//!
//! A host that goes down: its datastore stays readable (a datastore
//! outlives the host agent), but a task still depends on the host, whose
//! snapshot it reads. The proxy sees the connection to the host break and
//! its tasks react as in network mode (a backup or a replica sync suspends
//! until the host is back); answers to direct reads made before the
//! break are dropped, as a network answer in flight would be lost, so a
//! task resumes exactly as it would in network mode.

use super::Proxy;
use crate::hypervisor::{HypervisorCompletion, HypervisorRequest};
use crate::ids::{NodeId, RequestId};
use crate::node::{Input, Node, Outbox, Output};
use crate::roles::RequestIds;
use crate::roles::data_requests::DataAsk;
use crate::time::Timestamp;
use crate::wire::Message;
use std::collections::{BTreeMap, BTreeSet};

/// A proxy (`N`, a [`Proxy`] unless a test plants another) in direct mode
/// for a set of hosts. See the module documentation.
#[derive(Debug)]
pub struct Direct<N = Proxy> {
    inner: N,
    /// Hosts whose datastores this proxy reads itself.
    hosts: BTreeSet<NodeId>,
    ids: RequestIds,
    /// Direct reads not yet answered: the host the answer comes "from",
    /// and how to phrase it. Bounded by the tasks' windows of batches.
    pending: BTreeMap<RequestId, (NodeId, DataAsk)>,
    out: Outbox,
}

impl Proxy {
    /// A proxy that reads the datastores of `hosts` itself (the hosts it
    /// can reach: those of its own site) and every other host's through
    /// the network.
    pub fn direct(hosts: impl IntoIterator<Item = NodeId>) -> Direct {
        Direct::new(Proxy::new(), hosts)
    }
}

impl<N: Node> Direct<N> {
    pub fn new(inner: N, hosts: impl IntoIterator<Item = NodeId>) -> Self {
        Direct { inner, hosts: hosts.into_iter().collect(), ids: RequestIds::default(), pending: BTreeMap::new(), out: Outbox::default() }
    }

    /// The wrapped proxy.
    pub fn inner(&self) -> &N {
        &self.inner
    }

    /// An answer of the datastore: to the proxy, as from the host.
    fn on_completion(&mut self, now: Timestamp, done: HypervisorCompletion) {
        // Unknown: dropped with a broken connection, or from before a restart.
        let Some((host, ask)) = self.pending.remove(&done.id) else { return };
        self.inner.handle(now, Input::Message { from: host, msg: ask.reply(done.result) });
    }

    /// Takes everything the proxy decided, carrying out its reads of
    /// reachable hosts here and passing the rest on.
    fn drain(&mut self) {
        while let Some(output) = self.inner.poll_output() {
            match output {
                Output::Send { to, msg } if self.hosts.contains(&to) && is_read(&msg) => self.read_directly(to, msg),
                other => self.out.push(other),
            }
        }
    }

    fn read_directly(&mut self, host: NodeId, msg: Message) {
        match DataAsk::from_message(msg) {
            Ok((ask, op)) => {
                let id = self.ids.next();
                self.pending.insert(id, (host, ask));
                self.out.hypervisor(HypervisorRequest { id, op });
            }
            Err(msg) => self.out.send(host, msg),
        }
    }
}

/// The requests direct mode serves: reads of a snapshot.
fn is_read(msg: &Message) -> bool {
    matches!(msg, Message::GetChangedBlocks { .. } | Message::ReadBlocks { .. })
}

impl<N: Node> Node for Direct<N> {
    fn handle(&mut self, now: Timestamp, input: Input) {
        match input {
            Input::Hypervisor(done) => self.on_completion(now, done),
            Input::PeerDown(peer) => {
                self.pending.retain(|_, (host, _)| *host != peer);
                self.inner.handle(now, Input::PeerDown(peer));
            }
            Input::Start => {
                self.pending.clear();
                self.inner.handle(now, Input::Start);
            }
            other => self.inner.handle(now, other),
        }
        self.drain();
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop()
    }
}

#[cfg(test)]
mod tests;
