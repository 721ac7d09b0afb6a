//! Authorisation by role: every node knows the deployment — which node is
//! the manager, which are proxies, hosts and repositories, and who the
//! operator is — and accepts each kind of message only from the roles that
//! may send it, and only if its own role may receive it. A host obeys
//! `WriteBlocks` from a proxy, never from a repository; a repository
//! deletes a point when the manager says so, never when a proxy does.
//!
//! The same layer refuses a simulator's synthetic payloads unless the node
//! runs in a simulated deployment ([`Authorised::allowing_synthetic_payloads`]):
//! a production repository must never store a descriptor as a block.
//!
//! [`Authorised`] wraps a role and refuses the rest before the role sees
//! it (the event log names the peer and what it sent, and the connection
//! to it is closed, see [`crate::node::Outbox::refuse`]). [`route`] is one
//! exhaustive match, so a new message kind does not compile until someone
//! says who may send it. Replies are further checked by the roles
//! themselves against the peer the request went to.

use crate::ids::NodeId;
use crate::node::{Input, Node, Outbox, Output};
use crate::time::Timestamp;
use crate::wire::Message;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::rc::Rc;

/// What a node is in the deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    Manager,
    Host,
    Proxy,
    Repository,
    /// The operator's command line: talks to the manager only.
    Operator,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Manager => "manager",
            Role::Host => "host",
            Role::Proxy => "proxy",
            Role::Repository => "repository",
            Role::Operator => "operator",
        }
    }
}

/// Which node plays which role (shared by every node of a process).
pub type Roster = Rc<BTreeMap<NodeId, Role>>;

/// Who may send a kind of message, and who may receive it.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub from: &'static [Role],
    pub to: &'static [Role],
}

use Role::{Host as H, Manager as M, Operator as O, Proxy as P, Repository as R};

const ANY: &[Role] = &[M, H, P, R, O];
const NOBODY: &[Role] = &[];

const fn r(from: &'static [Role], to: &'static [Role]) -> Route {
    Route { from, to }
}

/// The route of every message kind.
pub fn route(msg: &Message) -> Route {
    match msg {
        Message::Ping { .. } | Message::Pong { .. } => r(ANY, ANY),
        // The driver's own: it swallows them, a role never sees one.
        Message::Keepalive => r(NOBODY, NOBODY),

        // manager ↔ host
        Message::CreateSnapshot { .. }
        | Message::CommitSnapshot { .. }
        | Message::CreateVm { .. }
        | Message::RevertVm { .. }
        | Message::SetPower { .. } => r(&[M], &[H]),
        Message::SnapshotCreated { .. }
        | Message::SnapshotCommitted { .. }
        | Message::HostFailed { .. }
        | Message::VmCreated { .. }
        | Message::HostDone { .. } => r(&[H], &[M]),

        // manager ↔ proxy
        Message::StartBackupTask(_)
        | Message::StartRestoreTask(_)
        | Message::StartReplicaTask(_)
        | Message::SetTaskRate { .. }
        | Message::CancelTask { .. }
        | Message::ListTasks { .. }
        | Message::AbortTasks => r(&[M], &[P]),
        Message::TaskDone { .. } | Message::TasksRunning { .. } => r(&[P], &[M]),

        // proxy ↔ host
        Message::GetChangedBlocks { .. } | Message::ReadBlocks { .. } | Message::WriteBlocks { .. } => r(&[P], &[H]),
        Message::ChangedBlocksReply { .. } | Message::BlocksRead { .. } | Message::BlocksWritten { .. } => r(&[H], &[P]),

        // proxy ↔ repository
        Message::GetDigests { .. }
        | Message::HaveDigests { .. }
        | Message::PutBlocks { .. }
        | Message::FinishDisk { .. }
        | Message::GetProgress { .. }
        | Message::ReadPoint { .. }
        | Message::PutReplicaDisk { .. }
        | Message::GetReplicaDigests { .. } => r(&[P], &[R]),
        Message::HaveReply { .. }
        | Message::BlocksAck { .. }
        | Message::DiskFinished { .. }
        | Message::Progress { .. }
        | Message::PointBlocks { .. } => r(&[R], &[P]),
        // A repository's answer to `GetDigests`, or a replica receiver's
        // to `HashBlocks`.
        Message::Digests { .. } => r(&[R, P], &[P]),

        // manager ↔ repository
        Message::CommitPoint { .. }
        | Message::AbortPoint { .. }
        | Message::AbortPendingBefore { .. }
        | Message::ListPoints { .. }
        | Message::HealthCheck { .. }
        | Message::DeletePoint { .. }
        | Message::CommitReplicaPoint { .. }
        | Message::AbortReplicaPoint { .. }
        | Message::DeleteReplicaPoint { .. }
        | Message::ListReplicaPoints { .. } => r(&[M], &[R]),
        Message::PointCommitted { .. }
        | Message::Points { .. }
        | Message::HealthReport { .. }
        | Message::PointDeleted { .. }
        | Message::ReplicaPointCommitted { .. }
        | Message::ReplicaPointDeleted { .. }
        | Message::ReplicaPoints { .. } => r(&[R], &[M]),

        // proxy ↔ proxy: a replica sync's two ends
        Message::OpenReplica(_)
        | Message::HashBlocks { .. }
        | Message::ReplicaBlocks { .. }
        | Message::ReplicaAck { .. }
        | Message::FinishReplica { .. }
        | Message::ReplicaFinished { .. }
        | Message::ResumeReplica { .. }
        | Message::ReplicaProgress { .. } => r(&[P], &[P]),

        // operator ↔ manager
        Message::RestoreVm { .. } | Message::ReplicaAction { .. } | Message::RunJob { .. } => r(&[O], &[M]),
        Message::RestoreDone { .. } | Message::ReplicaActionDone { .. } | Message::JobStarted { .. } => r(&[M], &[O]),
    }
}

/// Why `from` may not send `msg` to a node of role `own`, if it may not.
pub fn check(roster: &BTreeMap<NodeId, Role>, own: Role, from: NodeId, msg: &Message) -> Result<(), String> {
    let kind = msg.kind();
    let Some(&sender) = roster.get(&from) else {
        return Err(format!("{kind} from {from}, which is no node of the deployment"));
    };
    let route = route(msg);
    if !route.to.contains(&own) {
        return Err(format!("{kind} from the {} {from}: a {} does not take {kind}", sender.name(), own.name()));
    }
    if !route.from.contains(&sender) {
        return Err(format!("{kind} from the {} {from}: only a {} may send it", sender.name(), names(route.from)));
    }
    Ok(())
}

fn names(roles: &[Role]) -> String {
    roles.iter().map(|r| r.name()).collect::<Vec<_>>().join(" or ")
}

/// A role that sees only what its peers' roles may send it (see the
/// module documentation).
#[derive(Debug)]
pub struct Authorised<N> {
    inner: N,
    own: Role,
    roster: Roster,
    /// Synthetic payloads are welcome (a simulated deployment).
    synthetic: bool,
    /// Refusals: the wrapped role's outputs come after them (it is fed
    /// nothing when an input is refused, so the two never interleave).
    out: Outbox,
}

impl<N: Node> Authorised<N> {
    pub fn new(inner: N, own: Role, roster: Roster) -> Self {
        Authorised { inner, own, roster, synthetic: false, out: Outbox::default() }
    }

    /// Takes the simulator's synthetic payloads (only simulator drivers,
    /// whose hellos say so, run such nodes).
    pub fn allowing_synthetic_payloads(mut self) -> Self {
        self.synthetic = true;
        self
    }

    /// The wrapped role.
    pub fn inner(&self) -> &N {
        &self.inner
    }
}

impl<N: Node> Node for Authorised<N> {
    fn handle(&mut self, now: Timestamp, input: Input) {
        if let Input::Message { from, msg } = &input {
            let refused = match check(&self.roster, self.own, *from, msg) {
                // A simulated node takes them: it never walks a batch's
                // blocks to find one (this runs for every message).
                Ok(()) if !self.synthetic && msg.carries_synthetic() => {
                    Err(format!("{} from {from} carries a synthetic payload, which only a simulated node takes", msg.kind()))
                }
                checked => checked,
            };
            if let Err(reason) = refused {
                return self.out.refuse(*from, reason);
            }
        }
        self.inner.handle(now, input);
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop().or_else(|| self.inner.poll_output())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::BlockSize;
    use crate::ids::{RestorePointId, SnapshotId, TaskId, VmId};
    use crate::roles::{Host, Repository};
    use proptest::prelude::*;

    const MANAGER: NodeId = NodeId(0);
    const HOST: NodeId = NodeId(1);
    const PROXY: NodeId = NodeId(2);
    const REPOSITORY: NodeId = NodeId(3);
    const STRANGER: NodeId = NodeId(9);

    fn roster() -> Roster {
        Rc::new([(MANAGER, M), (HOST, H), (PROXY, P), (REPOSITORY, R)].into_iter().collect())
    }

    fn outputs(node: &mut impl Node) -> Vec<Output> {
        std::iter::from_fn(|| node.poll_output()).collect()
    }

    fn closed(outputs: &[Output]) -> Vec<(NodeId, String)> {
        outputs.iter().filter_map(|o| if let Output::Close { peer, reason } = o { Some((*peer, reason.clone())) } else { None }).collect()
    }

    /// A host writes a VM's disk for a proxy, and for nobody else: a
    /// repository, the manager or a stranger saying `WriteBlocks` is
    /// refused before the host acts (no hypervisor request), and the
    /// connection to it is closed with a reason naming the message.
    #[test]
    fn a_host_writes_only_for_a_proxy() {
        let write = || Message::WriteBlocks {
            task: TaskId(1),
            batch: 0,
            vm: VmId(0),
            disk: 0,
            block_size: BlockSize::LOCAL,
            blocks: vec![(0, crate::payload::BlockData::Bytes(vec![1; 16]))],
        };
        let mut host = Authorised::new(Host::new(), H, roster());
        host.handle(Timestamp::ZERO, Input::Start);
        for from in [REPOSITORY, MANAGER, STRANGER] {
            host.handle(Timestamp::ZERO, Input::Message { from, msg: write() });
            let out = outputs(&mut host);
            assert!(!out.iter().any(|o| matches!(o, Output::Hypervisor(_))), "{from}: {out:?}");
            assert!(matches!(closed(&out).as_slice(), [(peer, reason)] if *peer == from && reason.contains("write_blocks")), "{out:?}");
        }
        host.handle(Timestamp::ZERO, Input::Message { from: PROXY, msg: write() });
        let out = outputs(&mut host);
        assert!(out.iter().any(|o| matches!(o, Output::Hypervisor(_))) && closed(&out).is_empty(), "{out:?}");
    }

    /// Issue 13 §5: a node not told it is simulated refuses a synthetic
    /// block before its role stores anything; a simulated one takes it.
    #[test]
    fn synthetic_payloads_reach_only_simulated_nodes() {
        use crate::payload::BlockPayload;
        use crate::wire::message::{BlockRef, DiskTarget};
        let digest = crate::block::Digest([1; 32]);
        let block = BlockRef {
            index: 0,
            digest,
            payload: Some(BlockPayload::Synthetic { digest, raw_len: 4096, stored_len: 100, compressibility: 0 }),
        };
        let put = || Message::PutBlocks {
            task: TaskId(1),
            batch: 0,
            target: DiskTarget { session: crate::ids::SessionId(1), vm: VmId(0), disk: 0 },
            blocks: vec![block.clone()],
        };
        for simulated in [false, true] {
            let repository = Authorised::new(Repository::new(), R, roster());
            let mut repository = recovered(if simulated { repository.allowing_synthetic_payloads() } else { repository });
            repository.handle(Timestamp::ZERO, Input::Message { from: PROXY, msg: put() });
            let out = outputs(&mut repository);
            let stored = out.iter().any(|o| matches!(o, Output::Storage(_)));
            let refused = closed(&out);
            if simulated {
                assert!(stored && refused.is_empty(), "{out:?}");
            } else {
                assert!(!stored && matches!(refused.as_slice(), [(PROXY, r)] if r.contains("synthetic payload")), "{out:?}");
            }
        }
    }

    /// Only the manager deletes restore points.
    #[test]
    fn a_repository_deletes_points_only_for_the_manager() {
        // Recovered, so a delete it took would be answered at once.
        let mut repository = admitted_repository();
        let delete = Message::DeletePoint { op: 1, point: RestorePointId(1) };
        repository.handle(Timestamp::ZERO, Input::Message { from: PROXY, msg: delete.clone() });
        let out = outputs(&mut repository);
        assert!(matches!(closed(&out).as_slice(), [(PROXY, reason)] if reason.contains("only a manager may send it")), "{out:?}");
        assert!(!out.iter().any(|o| matches!(o, Output::Storage(_) | Output::Send { .. })), "{out:?}");
        // The manager's is answered (there is no such point).
        repository.handle(Timestamp::ZERO, Input::Message { from: MANAGER, msg: delete });
        let out = outputs(&mut repository);
        assert!(out.iter().any(|o| matches!(o, Output::Send { to: MANAGER, msg: Message::PointDeleted { .. } })), "{out:?}");
    }

    /// Anyone may ping anyone; the driver's keepalive never reaches a
    /// role; a stranger may say nothing at all.
    #[test]
    fn pings_go_anywhere_keepalives_nowhere_and_strangers_say_nothing() {
        let snap = Message::CommitSnapshot { op: 1, snap: SnapshotId(1) };
        for own in [M, H, P, R] {
            for from in [MANAGER, HOST, PROXY, REPOSITORY] {
                assert_eq!(check(&roster(), own, from, &Message::Ping { seq: 1 }), Ok(()));
                assert!(check(&roster(), own, from, &Message::Keepalive).is_err());
            }
            assert!(check(&roster(), own, STRANGER, &Message::Ping { seq: 1 }).is_err_and(|e| e.contains("no node of the deployment")));
        }
        assert_eq!(check(&roster(), H, MANAGER, &snap), Ok(()));
        assert!(check(&roster(), P, MANAGER, &snap).is_err_and(|e| e.contains("a proxy does not take commit_snapshot")));
    }

    /// A recovered, empty repository behind the admission layer.
    fn admitted_repository() -> Authorised<Repository> {
        recovered(Authorised::new(Repository::new(), R, roster()))
    }

    /// `repository` started on an empty store, recovered at once.
    fn recovered(mut repository: Authorised<Repository>) -> Authorised<Repository> {
        repository.handle(Timestamp::ZERO, Input::Start);
        for output in outputs(&mut repository) {
            if let Output::Storage(request) = output {
                let result = Ok(crate::storage::StorageReply::Recovered { manifests: Vec::new(), blocks: Vec::new() });
                repository.handle(Timestamp::ZERO, Input::Storage(crate::storage::StorageCompletion { id: request.id, result }));
            }
        }
        outputs(&mut repository);
        repository
    }

    /// Messages a repository might be sent, honest or not: values in and
    /// far beyond the limits, kinds it takes and kinds it never does.
    fn any_message() -> impl Strategy<Value = Message> {
        use crate::wire::message::{BlockRef, DiskTarget};
        let target = (0u64..3, 0u32..2).prop_map(|(s, v)| DiskTarget { session: crate::ids::SessionId(s), vm: VmId(v), disk: 0 });
        let index = prop_oneof![0u64..8, any::<u64>()];
        let bytes = prop_oneof![0u64..(1 << 24), any::<u64>()];
        let digest = (0u8..4).prop_map(|n| crate::block::Digest([n; 32]));
        let block = (index.clone(), digest.clone()).prop_map(|(index, digest)| BlockRef { index, digest, payload: None });
        prop_oneof![
            (target.clone(), prop::collection::vec(block, 0..4)).prop_map(|(target, blocks)| Message::PutBlocks {
                task: TaskId(1),
                batch: 0,
                target,
                blocks
            }),
            (target.clone(), bytes.clone()).prop_map(|(target, bytes)| Message::FinishDisk {
                task: TaskId(1),
                target,
                bytes,
                block_size: BlockSize::LOCAL,
                base: None
            }),
            (bytes, prop::collection::vec((index, digest), 0..4)).prop_map(|(bytes, changes)| Message::PutReplicaDisk {
                task: TaskId(1),
                point: RestorePointId(1),
                base: None,
                disk: 0,
                bytes,
                block_size: BlockSize::LOCAL,
                changes,
                first: true,
                last: true,
            }),
            (0u64..4).prop_map(|p| Message::DeletePoint { op: 1, point: RestorePointId(p) }),
            target.prop_map(|target| Message::GetProgress { task: TaskId(1), target }),
            Just(Message::Keepalive),
            Just(Message::CommitSnapshot { op: 1, snap: SnapshotId(1) }),
        ]
    }

    proptest::proptest! {
        /// Issue 13 §7: whatever arrives from whoever, the repository
        /// never panics, and an input it refuses leaves it exactly as it
        /// was.
        #[test]
        fn a_refused_input_leaves_the_repository_unchanged(
            inputs in prop::collection::vec((0usize..5, any_message()), 1..24)
        ) {
            let peers = [MANAGER, HOST, PROXY, REPOSITORY, STRANGER];
            let mut repository = admitted_repository();
            for (peer, msg) in inputs {
                let before = format!("{:?}", repository.inner());
                repository.handle(Timestamp::ZERO, Input::Message { from: peers[peer], msg });
                let out = outputs(&mut repository);
                if !closed(&out).is_empty() {
                    proptest::prop_assert_eq!(format!("{:?}", repository.inner()), before);
                }
            }
        }
    }
}
