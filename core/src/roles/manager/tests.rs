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
            schedule: crate::config::Schedule::Every(Duration::from_secs(3600)),
            kind: JobKind::Backup(backup),
            throttle: None,
        }],
        ..Deployment::default()
    }
}

/// A manager whose first session has asked `HOST` for a snapshot: returns
/// it and the operation id.
fn asking_for_a_snapshot() -> (Stepper<Manager>, OpId) {
    // An empty repository: the catalog is ready at once.
    asking_for_a_snapshot_after(Stepper::start(Manager::new(deployment())), Vec::new())
}

/// The same for a manager started already, whose repository lists `points`.
fn asking_for_a_snapshot_after(mut m: Stepper<Manager>, points: Vec<PointHeader>) -> (Stepper<Manager>, OpId) {
    for peer in [HOST, PROXY, REPOSITORY] {
        m.feed(Input::PeerUp(peer));
    }
    let op = m.run_until(Duration::from_secs(7200), |m| {
        let mut snapshot = None;
        for (to, msg) in m.take_sent() {
            match msg {
                Message::ListPoints { op } => m.message(to, Message::Points { op, points: points.clone() }),
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

/// Issue 13 §4: ids stay unique across a restart even when the clock was
/// set back in between. A manager started at 2026-01-01 whose repository
/// holds a point made by an incarnation whose clock ran a day ahead gives
/// its first session and point ids above that point's (the durable
/// high-water mark), not the ones its clock alone would give.
#[test]
fn ids_stay_above_what_the_repositories_hold_after_a_clock_set_back() {
    let start = Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
    let ahead = (start + Duration::from_secs(86_400)).0;
    let durable = PointHeader {
        point: RestorePointId(ahead + 7),
        job: JobId(0),
        session: SessionId(ahead + 3),
        vm: VmId(0),
        snapshot_at: Timestamp(ahead),
        snapshot: SnapshotId(1),
        parent: None,
        disks: vec![PointDisk { index: 0, bytes: 4 << 20, change_id: None }],
    };
    let (mut m, op) = asking_for_a_snapshot_after(Stepper::start_at(Manager::new(deployment()), start), vec![durable.clone()]);
    let session = m.events.iter().find_map(|e| if let Event::SessionStarted { session, .. } = e { Some(*session) } else { None });
    assert!(session.is_some_and(|s| s > durable.session), "{session:?} must be above {}", durable.session);

    m.message(HOST, Message::SnapshotCreated { op, snap: SnapshotId(2), disks: vec![SnapshotDisk { bytes: 4 << 20, change_id: None }] });
    let task = m.take_sent().into_iter().find_map(|(_, msg)| if let Message::StartBackupTask(t) = msg { Some(t.task) } else { None });
    let task = task.expect("the disk's task starts");
    m.message(PROXY, Message::TaskDone { task, result: Ok(TaskStats::default()) });
    let point = m
        .take_sent()
        .into_iter()
        .find_map(|(_, msg)| if let Message::CommitPoint { header, .. } = msg { Some(header.point) } else { None });
    assert!(point.is_some_and(|p| p > durable.point), "{point:?} must be above {}", durable.point);
}

/// Issue 13 §4: `daily at 22:00` starts the first session at the next
/// 22:00 UTC after the manager is ready, and the next one a day later.
#[test]
fn a_daily_job_starts_at_its_time_of_day() {
    let mut cfg = deployment();
    cfg.jobs[0].schedule = crate::config::Schedule::DailyAt(Duration::from_secs(22 * 3600));
    let start = Timestamp::parse_rfc3339("2026-03-04T08:30:00Z").unwrap();
    let mut m = Stepper::start_at(Manager::new(cfg), start);
    for peer in [HOST, PROXY, REPOSITORY] {
        m.feed(Input::PeerUp(peer));
    }
    let mut started = Vec::new();
    m.run_until(Duration::from_secs(3 * 86_400), |m| {
        for (to, msg) in m.take_sent() {
            match msg {
                Message::ListPoints { op } => m.message(to, Message::Points { op, points: Vec::new() }),
                // The snapshot fails: the session ends at once.
                Message::CreateSnapshot { op, .. } => {
                    started.push(m.now.to_string());
                    m.message(to, Message::HostFailed { op, reason: "no such VM".into() });
                }
                _ => {}
            }
        }
        None::<()>
    });
    assert_eq!(started, ["2026-03-04T22:00:00.000Z", "2026-03-05T22:00:00.000Z", "2026-03-06T22:00:00.000Z"]);
}

/// Issue 13 §6: an answer of the wrong kind from the right peer — the host
/// saying "done" to a snapshot request — is refused and leaves the request
/// open (before, it was taken for a snapshot with no disks); the real
/// answer then starts the disk's task.
#[test]
fn an_answer_of_the_wrong_kind_is_refused() {
    let (mut m, op) = asking_for_a_snapshot();
    m.message(HOST, Message::HostDone { op });
    assert!(
        matches!(m.closed.as_slice(), [(HOST, r)] if r.contains("host_done cannot answer") && r.contains("a snapshot")),
        "{:?}",
        m.closed
    );
    assert!(m.take_sent().is_empty());
    assert!(!m.events.iter().any(|e| matches!(e, Event::VmFinished { .. })), "{:?}", m.events);
    m.message(HOST, Message::SnapshotCreated { op, snap: SnapshotId(5), disks: vec![SnapshotDisk { bytes: 4 << 20, change_id: None }] });
    assert!(m.take_sent().iter().any(|(to, msg)| *to == PROXY && matches!(msg, Message::StartBackupTask(_))));
}

/// Issue 13 §6: a message no manager handles is refused, not dropped.
#[test]
fn a_message_for_another_role_is_refused() {
    let mut m = Stepper::start(Manager::new(deployment()));
    m.message(PROXY, Message::AbortTasks);
    assert!(
        matches!(m.closed.as_slice(), [(PROXY, r)] if r.contains("abort_tasks") && r.contains("a manager does not handle it")),
        "{:?}",
        m.closed
    );
}

/// A point of `vm` with `disks` disks of 4 MiB, as a repository lists it.
fn listed_point(point: u64, vm: VmId, disks: usize) -> PointHeader {
    PointHeader {
        point: RestorePointId(point),
        job: JobId(0),
        session: SessionId(point),
        vm,
        snapshot_at: Timestamp(point),
        snapshot: SnapshotId(point),
        parent: None,
        disks: (0..disks).map(|i| PointDisk { index: i as u16, bytes: 4 << 20, change_id: None }).collect(),
    }
}

/// A manager whose repository listed `points` when it started.
fn listing(points: Vec<PointHeader>) -> Stepper<Manager> {
    let mut m = Stepper::start(Manager::new(deployment()));
    m.feed(Input::PeerUp(REPOSITORY));
    for (to, msg) in m.take_sent() {
        if let Message::ListPoints { op } = msg {
            m.message(to, Message::Points { op, points: points.clone() });
        }
    }
    m
}

fn adopted(m: &Stepper<Manager>) -> Vec<RestorePointId> {
    m.events.iter().filter_map(|e| if let Event::PointAdopted { point, .. } = e { Some(*point) } else { None }).collect()
}

/// Issue 13 §3: what a repository lists cannot make the manager hold
/// more than the deployment's chains: a point with more disks than a VM
/// may have is refused with the listing, and points of VMs the deployment
/// does not know are left out of the catalog.
#[test]
fn a_listing_cannot_grow_the_catalog_beyond_the_deployment() {
    let m = listing(vec![listed_point(1, VmId(0), 1), listed_point(2, VmId(0), crate::limits::MAX_DISKS_PER_VM + 1)]);
    // (It lists twice: when the manager starts and when the peer is up.)
    assert!(!m.closed.is_empty() && m.closed.iter().all(|(p, r)| *p == REPOSITORY && r.contains("257 disks")), "{:?}", m.closed);
    assert!(adopted(&m).is_empty());

    // Found by the fuzzer: ids no manager hands out would lift its
    // counters to where the next id overflows.
    let m = listing(vec![listed_point(u64::MAX, VmId(0), 1)]);
    assert!(!m.closed.is_empty() && m.closed.iter().all(|(_, r)| r.contains("has an id above")), "{:?}", m.closed);

    let m = listing(vec![listed_point(1, VmId(0), 1), listed_point(2, VmId(77), 1)]);
    assert!(m.closed.is_empty(), "{:?}", m.closed);
    assert_eq!(adopted(&m), [RestorePointId(1)]);
}

/// Issue 13 §1: damage reported outside a catalogued point's disks is
/// refused (it would be queued for repair).
#[test]
fn damage_outside_a_point_is_refused() {
    use crate::wire::message::DamagedBlock;
    let mut m = listing(vec![listed_point(1, VmId(0), 1)]);
    let report = |disk, index| Message::HealthReport {
        op: 1,
        result: Ok(vec![DamagedBlock { point: RestorePointId(1), disk, index, digest: crate::block::Digest([0; 32]) }]),
    };
    m.message(REPOSITORY, report(3, 0));
    assert!(matches!(m.closed.last(), Some((REPOSITORY, r)) if r.contains("which has 1 disks")), "{:?}", m.closed);
    // 4 MiB in 1 MiB blocks: block 4 is past the end.
    m.message(REPOSITORY, report(0, 4));
    assert!(matches!(m.closed.last(), Some((REPOSITORY, r)) if r.contains("block 4 is beyond")), "{:?}", m.closed);
    let before = m.closed.len();
    m.message(REPOSITORY, report(0, 3));
    assert_eq!(m.closed.len(), before, "damage inside the point is taken");
}

/// Issue 13 §3: an operator cannot make the manager hold more than
/// `MAX_RESTORES` restores: the next is answered "try again later".
#[test]
fn restores_beyond_the_limit_are_answered_try_later() {
    const OPERATOR: NodeId = NodeId(9);
    let mut m = listing(vec![listed_point(1, VmId(0), 1)]);
    m.take_sent();
    let limit = validate::MAX_RESTORES as u64;
    for op in 0..=limit {
        let restore =
            Message::RestoreVm { op, point: RestorePointId(1), host: HOST, new_vm: VmId(1000 + op as u32), name: format!("r{op}") };
        m.message(OPERATOR, restore);
    }
    let done: Vec<(OpId, Result<(), String>)> = m
        .take_sent()
        .into_iter()
        .filter_map(|(to, msg)| if let Message::RestoreDone { op, result } = msg { (to == OPERATOR).then_some((op, result)) } else { None })
        .collect();
    assert!(matches!(done.as_slice(), [(op, Err(r))] if *op == limit && r.contains("try again later")), "{done:?}");
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

/// What the manager answered the operator's `RunJob`s, in order.
fn job_starts(m: &mut Stepper<Manager>, operator: NodeId) -> Vec<Result<SessionId, String>> {
    m.take_sent()
        .into_iter()
        .filter_map(|(to, msg)| if let Message::JobStarted { result, .. } = msg { (to == operator).then_some(result) } else { None })
        .collect()
}

/// Issue 14: `blockferry job run` starts a session of a `manual` job at
/// once; a second request while it runs, or one for a job that does not
/// exist, is answered with the reason and starts nothing.
#[test]
fn the_operator_starts_a_manual_job_once_at_a_time() {
    const OPERATOR: NodeId = NodeId(9);
    let mut cfg = deployment();
    cfg.jobs[0].schedule = crate::config::Schedule::Manual;
    let mut m = Stepper::start(Manager::new(cfg));
    // Before the catalog is read: refused, nothing started.
    m.message(OPERATOR, Message::RunJob { op: 1, job: JobId(0) });
    assert!(matches!(job_starts(&mut m, OPERATOR).as_slice(), [Err(r)] if r.contains("catalog")));
    for peer in [HOST, PROXY, REPOSITORY] {
        m.feed(Input::PeerUp(peer));
    }
    for (to, msg) in m.take_sent() {
        if let Message::ListPoints { op } = msg {
            m.message(to, Message::Points { op, points: Vec::new() });
        }
    }
    m.run_until(Duration::from_secs(86_400), |_| None::<()>);
    assert!(!m.events.iter().any(|e| matches!(e, Event::SessionStarted { .. })), "a manual job never starts by itself");

    m.message(OPERATOR, Message::RunJob { op: 2, job: JobId(0) });
    let first = job_starts(&mut m, OPERATOR);
    let [Ok(session)] = first.as_slice() else { panic!("{first:?}") };
    assert!(m.events.iter().any(|e| matches!(e, Event::SessionStarted { session: s, .. } if s == session)));
    m.message(OPERATOR, Message::RunJob { op: 3, job: JobId(0) });
    m.message(OPERATOR, Message::RunJob { op: 4, job: JobId(77) });
    let refused = job_starts(&mut m, OPERATOR);
    assert!(
        matches!(refused.as_slice(), [Err(busy), Err(unknown)] if busy.contains("still running") && unknown.contains("no job")),
        "{refused:?}"
    );
}

/// Issue 14: a daemon lifts the manager's ids above its catalog's high
/// water, so a restarted manager whose clock went back reuses no id.
#[test]
fn ids_stay_above_the_floor_a_daemon_gives() {
    let floor = Timestamp::parse_rfc3339("2030-01-01T00:00:00Z").unwrap().0;
    let (m, _) = asking_for_a_snapshot_after(Stepper::start(Manager::new(deployment()).with_ids_above(floor)), Vec::new());
    let session = m.events.iter().find_map(|e| if let Event::SessionStarted { session, .. } = e { Some(*session) } else { None });
    assert!(session.is_some_and(|s| s.0 > floor), "{session:?} must be above {floor}");
}
