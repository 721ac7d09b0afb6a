//! The repository's garbage collection against the races it must survive:
//! a repository driven message by message, its store the in-memory one of
//! the roles' tests (every request completes at once).

use super::Repository;
use crate::BlockSize;
use crate::block::Digest;
use crate::ids::{JobId, NodeId, RestorePointId, SessionId, SnapshotId, TaskId, VmId};
use crate::manifest::{Manifest, PointDisk, PointHeader};
use crate::node::{Input, Node, Output};
use crate::payload::BlockPayload;
use crate::roles::testing::MemStore;
use crate::storage::StorageCompletion;
use crate::time::Timestamp;
use crate::wire::Message;
use crate::wire::message::{BlockRef, DiskTarget};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

const PROXY: NodeId = NodeId(1);
const MANAGER: NodeId = NodeId(2);
/// Blocks per disk in these tests.
const BLOCKS: u64 = 4;

fn d(n: u8) -> Digest {
    Digest([n; 32])
}

fn payload(digest: Digest) -> BlockPayload {
    BlockPayload::Synthetic { digest, raw_len: 4096, stored_len: 1000, compressibility: 0 }
}

/// A point's target: session `s`, VM `s % 2`, disk 0; its task is `s`.
fn target(s: u64) -> DiskTarget {
    DiskTarget { session: SessionId(s), vm: VmId((s % 2) as u32), disk: 0 }
}

/// A repository and its store.
struct Harness {
    repo: Repository,
    now: Timestamp,
    store: MemStore,
    /// Messages the repository sent, oldest first.
    sent: VecDeque<Message>,
    /// Peers whose connection it closed, and why.
    closed: Vec<(NodeId, String)>,
}

impl Harness {
    fn new() -> Harness {
        let mut h = Harness {
            repo: Repository::new(),
            now: Timestamp::from_duration(Duration::from_secs(1)),
            store: MemStore::default(),
            sent: VecDeque::new(),
            closed: Vec::new(),
        };
        h.input(Input::Start);
        h
    }

    /// Feeds one input, then serves every storage request it leads to.
    fn input(&mut self, input: Input) {
        self.now = self.now + Duration::from_secs(1);
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            self.repo.handle(self.now, input);
            while let Some(output) = self.repo.poll_output() {
                match output {
                    Output::Send { msg, .. } => self.sent.push_back(msg),
                    Output::Close { peer, reason } => self.closed.push((peer, reason)),
                    Output::Storage(request) => {
                        let result = self.store.serve(request.op);
                        inputs.push_back(Input::Storage(StorageCompletion { id: request.id, result }));
                    }
                    _ => {}
                }
            }
        }
    }

    /// Sends `msg` and returns the repository's answers to it.
    fn ask(&mut self, from: NodeId, msg: Message) -> Vec<Message> {
        self.input(Input::Message { from, msg });
        self.sent.drain(..).collect()
    }

    /// Which of `digests` the repository says it has, asked by session `s`'s task.
    fn have(&mut self, s: u64, digests: &[Digest]) -> Vec<bool> {
        let msg = Message::HaveDigests { task: TaskId(s), batch: 0, digests: digests.to_vec() };
        match self.ask(PROXY, msg).as_slice() {
            [Message::HaveReply { have, .. }] => have.iter().by_vals().collect(),
            other => panic!("unexpected answer {other:?}"),
        }
    }

    /// Session `s` writes `(index, digest, with payload)`.
    fn put(&mut self, s: u64, blocks: &[(u64, Digest, bool)]) -> Result<(), String> {
        let blocks =
            blocks.iter().map(|&(index, digest, sent)| BlockRef { index, digest, payload: sent.then(|| payload(digest)) }).collect();
        let msg = Message::PutBlocks { task: TaskId(s), batch: 0, target: target(s), blocks };
        match self.ask(PROXY, msg).as_slice() {
            [Message::BlocksAck { result, .. }] => result.clone(),
            other => panic!("unexpected answer {other:?}"),
        }
    }

    fn finish(&mut self, s: u64, base: Option<RestorePointId>) -> Result<(), String> {
        let msg = Message::FinishDisk { task: TaskId(s), target: target(s), bytes: BLOCKS * 4096, block_size: block_size(), base };
        match self.ask(PROXY, msg).as_slice() {
            [Message::DiskFinished { result, .. }] => result.clone(),
            other => panic!("unexpected answer {other:?}"),
        }
    }

    fn commit(&mut self, s: u64, point: RestorePointId) -> Result<(), String> {
        let t = target(s);
        let header = PointHeader {
            point,
            job: JobId(0),
            session: t.session,
            vm: t.vm,
            snapshot_at: self.now,
            snapshot: SnapshotId(s),
            parent: None,
            disks: vec![PointDisk { index: 0, bytes: BLOCKS * 4096, change_id: None }],
        };
        match self.ask(MANAGER, Message::CommitPoint { op: s, header }).as_slice() {
            [Message::PointCommitted { result, .. }] => result.clone(),
            other => panic!("unexpected answer {other:?}"),
        }
    }

    /// Writes, finishes and commits session `s`'s point.
    fn backup(&mut self, s: u64, point: u64, blocks: &[(u64, Digest)]) {
        let blocks: Vec<_> = blocks.iter().map(|&(i, d)| (i, d, true)).collect();
        self.put(s, &blocks).expect("put");
        self.finish(s, None).expect("finish");
        self.commit(s, RestorePointId(point)).expect("commit");
    }

    fn abort(&mut self, s: u64) {
        let t = target(s);
        assert!(self.ask(MANAGER, Message::AbortPoint { session: t.session, vm: t.vm }).is_empty());
    }

    fn delete(&mut self, point: u64) {
        let msg = Message::DeletePoint { op: point, point: RestorePointId(point) };
        match self.ask(MANAGER, msg).as_slice() {
            [Message::PointDeleted { result: Ok(()), .. }] => {}
            other => panic!("unexpected answer {other:?}"),
        }
    }

    fn stored(&self, n: u8) -> bool {
        self.store.block(&d(n)).is_some()
    }

    /// Every block in the store.
    fn blocks(&self) -> BTreeSet<Digest> {
        self.store.digests()
    }

    fn manifests(&self) -> &BTreeMap<RestorePointId, Manifest> {
        self.store.manifests()
    }

    /// Every block a manifest references, the slow way.
    fn referenced(&self) -> BTreeSet<Digest> {
        self.store.referenced()
    }
}

fn block_size() -> BlockSize {
    BlockSize::new(4096).expect("a valid block size")
}

/// `msg` from the proxy is refused: no answer, the connection to the proxy
/// closed with a reason containing `why`.
fn assert_refused(h: &mut Harness, msg: Message, why: &str) {
    let kind = msg.kind();
    assert_eq!(h.ask(PROXY, msg), Vec::new(), "a refused {kind} is not answered");
    match h.closed.pop() {
        Some((PROXY, reason)) => assert!(reason.contains(kind) && reason.contains(why), "{reason}"),
        other => panic!("{kind} was not refused: {other:?}"),
    }
}

/// Issue 13 §1: a block index no disk can have (a progress bitmap was
/// sized from it), a disk near `u64::MAX` bytes (its digest vector was),
/// and replica metadata beyond its disk are refused whole, and change
/// nothing: the disk's progress stays empty and nothing is stored.
#[test]
fn values_beyond_the_limits_are_refused_and_change_nothing() {
    let mut h = Harness::new();
    let block = |index| BlockRef { index, digest: d(1), payload: Some(payload(d(1))) };
    let put = Message::PutBlocks { task: TaskId(1), batch: 0, target: target(1), blocks: vec![block(0), block(1 << 40)] };
    assert_refused(&mut h, put, "block 1099511627776");
    let finish = Message::FinishDisk { task: TaskId(1), target: target(1), bytes: u64::MAX, block_size: block_size(), base: None };
    assert_refused(&mut h, finish, "larger than the limit");
    let replica = Message::PutReplicaDisk {
        task: TaskId(1),
        point: RestorePointId(9),
        base: None,
        disk: 0,
        bytes: BLOCKS * 4096,
        block_size: block_size(),
        changes: vec![(BLOCKS, d(2))],
        first: true,
        last: true,
    };
    assert_refused(&mut h, replica, "beyond the disk's 4 blocks");
    match h.ask(PROXY, Message::GetProgress { task: TaskId(1), target: target(1) }).as_slice() {
        [Message::Progress { done, .. }] => assert!(done.not_any(), "{done:?}"),
        other => panic!("unexpected answer {other:?}"),
    }
    assert!(h.blocks().is_empty() && h.closed.is_empty());
    // Within the limits all is well again.
    assert_eq!(h.put(1, &[(0, d(1), true)]), Ok(()));
}

/// Issue 13 §6: a message no repository handles is refused, not dropped.
#[test]
fn a_message_for_another_role_is_refused() {
    let mut h = Harness::new();
    assert_refused(&mut h, Message::AbortTasks, "a repository does not handle it");
}

/// Found by the fuzzer (issue 13 §8): a restore read could ask for as
/// many blocks as a message may list (2^16, of up to 64 MiB each: the
/// store was asked for up to 4 TiB for one message). A read of more than
/// a frame's worth of the point's blocks is refused; a proxy's batch is
/// answered.
#[test]
fn a_read_of_more_than_a_frame_of_blocks_is_refused() {
    let mut h = Harness::new();
    let blocks = 2 * crate::limits::MAX_READ_BYTES / 4096;
    h.put(1, &[(0, d(1), true)]).expect("put");
    let finish = Message::FinishDisk { task: TaskId(1), target: target(1), bytes: blocks * 4096, block_size: block_size(), base: None };
    assert!(matches!(h.ask(PROXY, finish).as_slice(), [Message::DiskFinished { result: Ok(()), .. }]));
    h.commit(1, RestorePointId(5)).expect("commit");
    let read = |count| Message::ReadPoint {
        task: TaskId(2),
        batch: 0,
        point: RestorePointId(5),
        disk: 0,
        first: 0,
        count,
        // What the message claims does not matter: the point's blocks do.
        block_size: BlockSize::new(64 << 20).expect("valid"),
    };
    assert_refused(&mut h, read(blocks), "limit");
    match h.ask(PROXY, read(2048)).as_slice() {
        [Message::PointBlocks { result: Ok(read), .. }] => assert_eq!(read.len(), 1, "block 0, the only one not zero"),
        other => panic!("unexpected answer {other:?}"),
    }
}

/// Issue 13 §3: blocks arriving for a point already committed are
/// refused, and do not open it again as a pending point (which would never
/// end and would hold garbage collection back).
#[test]
fn late_blocks_for_a_committed_point_are_refused() {
    let mut h = Harness::new();
    h.backup(1, 1, &[(0, d(1))]);
    let late = h.put(1, &[(1, d(2), true)]);
    assert!(late.as_ref().is_err_and(|e| e.contains("committed")), "{late:?}");
    match h.ask(PROXY, Message::GetProgress { task: TaskId(1), target: target(1) }).as_slice() {
        [Message::Progress { done, .. }] => assert!(done.not_any(), "the point was opened again: {done:?}"),
        other => panic!("unexpected answer {other:?}"),
    }
    // The late block was never stored, and once the point is deleted
    // nothing of it is left.
    assert!(!h.stored(2));
    h.delete(1);
    assert!(!h.stored(1));
}

#[test]
fn collects_what_only_deleted_points_referenced_while_points_are_pending() {
    let mut h = Harness::new();
    h.backup(1, 1, &[(0, d(1)), (1, d(2))]);
    // A starts; meanwhile point 1 is replaced and deleted: block 2 is
    // garbage, which A might still rely on (it started before).
    h.put(2, &[(0, d(3), true)]).expect("put");
    h.backup(3, 2, &[(0, d(1)), (1, d(4))]);
    h.delete(1);
    assert!(h.stored(2), "a writer older than the garbage is pending");
    // B starts after the deletion, and is still pending when A commits:
    // only B is pending, and block 2 is older than B.
    h.put(4, &[(0, d(5), true)]).expect("put");
    h.finish(2, None).expect("finish");
    h.commit(2, RestorePointId(3)).expect("commit");
    assert!(!h.stored(2), "garbage older than every writer is collected though a point is pending");
    assert!(h.stored(3) && h.stored(4) && h.stored(5));
}

#[test]
fn never_collects_what_a_pending_point_stored_or_was_told_exists() {
    let mut h = Harness::new();
    // W, the oldest writer, holds back collection of what follows.
    h.put(1, &[(0, d(9), true)]).expect("put");
    h.backup(2, 1, &[(0, d(1)), (1, d(2))]);
    h.delete(1);
    h.backup(4, 2, &[(0, d(7))]);
    // A is told the repository has garbage block 1, before it names its
    // point; then W goes, and collection runs with only A's ask in flight.
    assert_eq!(h.have(3, &[d(1), d(8)]), [true, false]);
    h.abort(1);
    assert!(!h.stored(2) && !h.stored(9), "garbage older than every writer");
    assert!(h.stored(1), "a block a proxy was told exists");
    // A references it without payload, and stores 8: both spared while A
    // is pending, whatever else is deleted or aborted.
    h.put(3, &[(0, d(1), false), (1, d(8), true)]).expect("a confirmed block is still there");
    h.backup(6, 3, &[(0, d(6))]);
    h.delete(2);
    h.abort(5);
    assert!(h.stored(1) && h.stored(8));
    assert!(h.stored(7), "garbage since A started waits for A: A might rely on it");
    h.finish(3, None).expect("finish");
    h.commit(3, RestorePointId(4)).expect("commit");
    assert!(h.stored(1) && h.stored(8));
    assert_eq!(h.blocks(), h.referenced(), "nothing pending: exactly what manifests reference");
}

#[test]
fn a_base_deleted_under_a_pending_incremental_keeps_the_blocks_it_shares() {
    let mut h = Harness::new();
    h.backup(2, 1, &[(0, d(1)), (1, d(2))]);
    // An incremental of the same VM on point 1, then retention deletes
    // point 1 before the incremental commits.
    h.put(4, &[(1, d(3), true)]).expect("put");
    h.finish(4, Some(RestorePointId(1))).expect("finish");
    h.delete(1);
    assert!(h.stored(1) && h.stored(2), "the pending point holds block 1 through its base");
    h.commit(4, RestorePointId(2)).expect("commit");
    assert_eq!(h.referenced(), BTreeSet::from([d(1), d(3)]));
    assert_eq!(h.blocks(), h.referenced(), "block 2 went once the incremental committed");
}

#[test]
fn an_aborted_point_releases_what_it_stored_once_older_writers_end() {
    let mut h = Harness::new();
    h.put(1, &[(0, d(1), true)]).expect("put");
    h.put(2, &[(0, d(2), true), (1, d(3), true)]).expect("put");
    h.abort(2);
    assert!(h.stored(2) && h.stored(3), "an older writer may rely on them");
    assert_eq!(h.put(2, &[(2, d(4), true)]).map_err(|e| e.contains("aborted")), Err(true), "no reopening");
    h.finish(1, None).expect("finish");
    h.commit(1, RestorePointId(1)).expect("commit");
    assert_eq!(h.blocks(), BTreeSet::from([d(1)]), "no writer left: the aborted point's blocks went");
    // A manager restart voids sessions before 4: the pending point of
    // session 3 goes, and late writes to it are refused.
    h.put(3, &[(0, d(5), true)]).expect("put");
    let msg = Message::AbortPendingBefore { before: SessionId(4) };
    assert!(h.ask(MANAGER, msg).is_empty());
    assert_eq!(h.blocks(), BTreeSet::from([d(1)]));
    assert!(h.put(3, &[(1, d(6), true)]).is_err());
    assert!(h.finish(3, None).is_err());
}

#[test]
fn a_digest_repeated_in_one_batch_is_stored_once_and_referenced() {
    let mut h = Harness::new();
    h.put(1, &[(0, d(1), true), (1, d(1), false)]).expect("the second is a reference to the first");
    h.finish(1, None).expect("finish");
    h.commit(1, RestorePointId(1)).expect("commit");
    assert_eq!(h.manifests()[&RestorePointId(1)].disks[0].digests[..2], [d(1), d(1)]);
}

/// One step of the model test. Sessions are named by their place among
/// the [`WRITERS`] live ones: when one closes, a new session takes it.
#[derive(Debug, Clone)]
enum Op {
    /// The session asks whether the repository has a block.
    Have(usize, u8),
    /// The session writes a block at an index: without payload if it was
    /// told the repository has it, as a proxy does.
    Put(usize, u64, u8),
    /// The session finishes its disk, on its VM's newest point if `true`.
    Finish(usize, bool),
    Commit(usize),
    Abort(usize),
    /// Deletes the n-th committed point (modulo their number).
    Delete(usize),
    /// The repository restarts: pending points are forgotten.
    Restart,
}

/// Sessions live at once in the model test.
const WRITERS: usize = 3;

fn op() -> impl Strategy<Value = Op> {
    let w = 0..WRITERS;
    let block = 1..=6u8;
    prop_oneof![
        3 => (w.clone(), block.clone()).prop_map(|(w, b)| Op::Have(w, b)),
        4 => (w.clone(), 0..BLOCKS, block).prop_map(|(w, i, b)| Op::Put(w, i, b)),
        2 => (w.clone(), any::<bool>()).prop_map(|(w, base)| Op::Finish(w, base)),
        2 => w.clone().prop_map(Op::Commit),
        1 => w.prop_map(Op::Abort),
        2 => (0..8usize).prop_map(Op::Delete),
        1 => Just(Op::Restart),
    ]
}

/// What the test knows of a session's point.
#[derive(Debug, Default)]
struct Session {
    id: u64,
    /// Blocks the repository told it it has.
    told: BTreeSet<Digest>,
    /// Whether it was told yes since its last write (an ask in flight).
    asked: bool,
    /// Whether the repository holds a pending point of it.
    open: bool,
    finished: bool,
}

/// The live sessions, and asks left by closed ones (until they expire).
struct Sessions {
    live: Vec<Session>,
    next: u64,
    stale_asks: bool,
}

impl Sessions {
    fn new() -> Sessions {
        let mut s = Sessions { live: Vec::new(), next: 1, stale_asks: false };
        s.live = (0..WRITERS).map(|_| s.fresh()).collect();
        s
    }

    fn fresh(&mut self) -> Session {
        self.next += 1;
        Session { id: self.next - 1, ..Session::default() }
    }

    /// Closes the session in place `w`; a new one takes its place.
    fn close(&mut self, w: usize) {
        let fresh = self.fresh();
        let old = std::mem::replace(&mut self.live[w], fresh);
        self.stale_asks |= old.asked;
    }

    fn writing(&self) -> bool {
        self.stale_asks || self.live.iter().any(|s| s.open || s.asked)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Random sessions storing, asking, committing, aborting and deleting,
    /// each session a writer: a committed point's blocks are always in the
    /// store, a block confirmed to a pending point is still there when the
    /// point references it, and with no writer left only what manifests
    /// reference stays.
    #[test]
    fn garbage_collection_against_a_model(ops in prop::collection::vec(op(), 1..80)) {
        let mut h = Harness::new();
        let mut sessions = Sessions::new();
        let mut next_point = 1;
        for op in ops {
            let collects = matches!(op, Op::Commit(_) | Op::Abort(_) | Op::Delete(_) | Op::Restart);
            match op {
                Op::Have(w, b) => {
                    let session = &mut sessions.live[w];
                    let have = h.have(session.id, &[d(b)]);
                    prop_assert_eq!(have[0], h.stored(b));
                    if have[0] {
                        session.told.insert(d(b));
                        session.asked = true;
                    }
                }
                Op::Put(w, i, b) => {
                    let session = &mut sessions.live[w];
                    let told = session.told.contains(&d(b));
                    prop_assert_eq!(h.put(session.id, &[(i, d(b), !told)]), Ok(()), "told it has {}: {}", b, told);
                    session.asked = false;
                    session.open = true;
                    session.finished = false;
                }
                Op::Finish(w, on_base) => {
                    let session = &mut sessions.live[w];
                    let vm = target(session.id).vm;
                    let base = h.manifests().values().rev().find(|m| m.vm == vm).map(|m| m.point).filter(|_| on_base);
                    prop_assert_eq!(h.finish(session.id, base), Ok(()));
                    session.asked = false;
                    session.open = true;
                    session.finished = true;
                }
                Op::Commit(w) => {
                    if !sessions.live[w].finished { continue }
                    prop_assert_eq!(h.commit(sessions.live[w].id, RestorePointId(next_point)), Ok(()));
                    next_point += 1;
                    sessions.live[w].open = false;
                    sessions.close(w);
                }
                Op::Abort(w) => {
                    h.abort(sessions.live[w].id);
                    sessions.live[w].open = false;
                    sessions.close(w);
                }
                Op::Delete(n) => {
                    let Some(point) = h.manifests().keys().nth(n % h.manifests().len().max(1)).copied() else { continue };
                    h.delete(point.0);
                }
                Op::Restart => {
                    h.input(Input::Start);
                    for w in 0..WRITERS {
                        sessions.live[w].open = false;
                        sessions.close(w);
                    }
                    // A restart forgets asks too.
                    sessions.stale_asks = false;
                }
            }
            let referenced = h.referenced();
            prop_assert!(referenced.is_subset(&h.blocks()), "a committed point lost a block");
            if collects && !sessions.writing() {
                prop_assert_eq!(&h.blocks(), &referenced, "no writer: only what manifests reference");
            }
        }
        // Every session ends and asks expire: only what manifests reference stays.
        for w in 0..WRITERS {
            h.abort(sessions.live[w].id);
        }
        h.now = h.now + super::writers::ASK_LEASE;
        h.abort(0);
        prop_assert_eq!(&h.blocks(), &h.referenced());
    }
}
