//! The manager against crafted inputs.

use super::*;
use crate::config::{BackupJob, JobKind, JobSpec, ProxySpec, RepositorySpec, VmSpec};
use crate::hypervisor::SnapshotDisk;
use crate::roles::testing::Stepper;
use crate::{BlockSize, Compression};
use std::time::Duration;

const HOST: NodeId = NodeId(1);
const PROXY: NodeId = NodeId(2);
const REPOSITORY: NodeId = NodeId(3);
const OTHER_HOST: NodeId = NodeId(4);

/// One VM on `HOST`, backed up hourly by `PROXY` to `REPOSITORY`.
fn deployment() -> Deployment {
    let backup = BackupJob {
        repository: REPOSITORY,
        proxy: None,
        retention: 2,
        compression: Compression::Optimal,
        block_size: BlockSize::LOCAL,
        verify_every: None,
        health_check: None,
        window: None,
    };
    Deployment {
        vms: [(VmId(0), VmSpec { name: "vm".into(), host: HOST })].into(),
        proxies: [(PROXY, ProxySpec { name: "px".into(), task_slots: 1 })].into(),
        repositories: [(REPOSITORY, RepositorySpec { name: "repo".into(), max_tasks: 4 })].into(),
        jobs: vec![JobSpec {
            id: JobId(0),
            name: "job".into(),
            vms: vec![VmId(0)],
            every: Duration::from_secs(3600),
            kind: JobKind::Backup(backup),
            throttle: None,
        }],
        ..Deployment::default()
    }
}

/// A manager whose first session has asked `HOST` for a snapshot: returns
/// it and the operation id.
fn asking_for_a_snapshot() -> (Stepper<Manager>, OpId) {
    let mut m = Stepper::start(Manager::new(deployment()));
    for peer in [HOST, PROXY, REPOSITORY] {
        m.feed(Input::PeerUp(peer));
    }
    let op = m.run_until(Duration::from_secs(7200), |m| {
        let mut snapshot = None;
        for (to, msg) in m.take_sent() {
            match msg {
                // An empty repository: the catalog is ready at once.
                Message::ListPoints { op } => m.message(to, Message::Points { op, points: Vec::new() }),
                Message::CreateSnapshot { op, .. } if to == HOST => snapshot = Some(op),
                _ => {}
            }
        }
        snapshot
    });
    (m, op.expect("the first session asks for a snapshot"))
}

/// Issue 13 §2: an answer is believed only from the peer the request went
/// to. Another host "creating" the snapshot is refused and changes
/// nothing; the real host's answer starts the disk's task.
#[test]
fn an_answer_from_a_peer_not_asked_is_refused() {
    let (mut m, op) = asking_for_a_snapshot();
    let created = || Message::SnapshotCreated { op, snap: SnapshotId(5), disks: vec![SnapshotDisk { bytes: 4 << 20, change_id: None }] };
    m.message(OTHER_HOST, created());
    assert!(matches!(m.closed.as_slice(), [(OTHER_HOST, reason)] if reason.contains("snapshot_created")), "{:?}", m.closed);
    assert!(m.take_sent().is_empty(), "a refused answer changes nothing");
    m.message(HOST, created());
    let sent = m.take_sent();
    assert!(sent.iter().any(|(to, msg)| *to == PROXY && matches!(msg, Message::StartBackupTask(_))), "{sent:?}");
}

/// A snapshot request lost with a broken connection is made again when the
/// host is back, and the VM goes on; a host that stays away fails the VM
/// after the grace, so the session still ends.
#[test]
fn a_snapshot_lost_with_its_connection_is_asked_again_within_the_grace() {
    let vm_failed = |m: &Stepper<Manager>| m.events.iter().any(|e| matches!(e, Event::VmFinished { result: Err(_), .. }));
    let (mut m, _) = asking_for_a_snapshot();
    m.feed(Input::PeerDown(HOST));
    assert!(!vm_failed(&m), "{:?}", m.events);
    m.now = m.now + Duration::from_secs(30);
    m.feed(Input::PeerUp(HOST));
    let again: Vec<_> =
        m.take_sent().into_iter().filter(|(to, msg)| *to == HOST && matches!(msg, Message::CreateSnapshot { .. })).collect();
    assert_eq!(again.len(), 1, "asked again once");

    let (mut m, _) = asking_for_a_snapshot();
    m.feed(Input::PeerDown(HOST));
    let limit = m.now.as_duration() + snapshot_wait::SNAPSHOT_GRACE + Duration::from_secs(1);
    m.run_until(limit, |m| vm_failed(m).then_some(()));
    assert!(vm_failed(&m), "the VM fails once its host stays away: {:?}", m.events);
    m.feed(Input::PeerUp(HOST));
    assert!(!m.take_sent().iter().any(|(_, msg)| matches!(msg, Message::CreateSnapshot { .. })));
}

/// Found by the fuzzer (issue 13 §8): the blocks CBT missed, as proxies
/// report them, are summed per VM, and a report of more than any disk has
/// overflowed the sum (a panic with overflow checks, a wrapped count
/// without). Such a report is refused; honest ones are taken and the VM
/// goes on to its commit.
#[test]
fn a_task_report_of_more_missed_blocks_than_any_disk_has_is_refused() {
    let (mut m, op) = asking_for_a_snapshot();
    let disks = vec![SnapshotDisk { bytes: 4 << 20, change_id: None }; 2];
    m.message(HOST, Message::SnapshotCreated { op, snap: SnapshotId(5), disks });
    let started = |m: &mut Stepper<Manager>| {
        m.take_sent().into_iter().find_map(|(to, msg)| match msg {
            Message::StartBackupTask(spec) if to == PROXY => Some(spec.task),
            _ => None,
        })
    };
    let done = |task, cbt_missed| Message::TaskDone { task, result: Ok(TaskStats { cbt_missed, ..TaskStats::default() }) };
    let first = started(&mut m).expect("the first disk's task starts");
    m.message(PROXY, done(first, u64::MAX));
    assert!(matches!(m.closed.as_slice(), [(PROXY, r)] if r.contains("task_done") && r.contains("CBT missed")), "{:?}", m.closed);
    m.message(PROXY, done(first, 1));
    let second = started(&mut m).expect("the second disk's task starts once the first is done");
    m.message(PROXY, done(second, 1));
    assert!(m.take_sent().iter().any(|(to, msg)| *to == REPOSITORY && matches!(msg, Message::CommitPoint { .. })));
}
