//! The roles against each other: a manager, a host, a proxy and a
//! repository stepped by [`Cluster`] through backups and restores of a
//! two-disk VM with real bytes, faults crafted on the way. Each test
//! checks what a user would: a restore gives back the snapshot's bytes,
//! and what crossed the wire is what the protocol promises.

mod backup;
mod faults;
mod ownership;

use crate::block::{BlockSize, Compression};
use crate::config::{BackupJob, Deployment, JobKind, JobSpec, ProxySpec, RepositorySpec, VmSpec};
use crate::event::Event;
use crate::ids::{JobId, NodeId, RestorePointId, SnapshotId, TaskId, VmId};
use crate::roles::Role;
use crate::roles::testing::Cluster;
use crate::wire::Message;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

const MANAGER: NodeId = NodeId(0);
const HOST: NodeId = NodeId(1);
const PROXY: NodeId = NodeId(2);
const REPOSITORY: NodeId = NodeId(3);
const OPERATOR: NodeId = NodeId(9);
const VM: VmId = VmId(0);
/// How often the job runs.
const EVERY: Duration = Duration::from_secs(3600);
const MIB: usize = 1 << 20;
/// The job's block size.
const BLOCK: usize = MIB;
/// The VM's disks: three batches of blocks, and one batch ending in a
/// short block.
const DISKS: [usize; 2] = [20 * MIB, 5 * MIB + 12 * 1024];

/// The VM on `HOST`, backed up every hour by `PROXY` (two disks at once)
/// to `REPOSITORY`.
fn deployment() -> Deployment {
    let backup = BackupJob {
        repository: REPOSITORY,
        proxy: None,
        retention: 3,
        compression: Compression::Optimal,
        block_size: BlockSize::new(BLOCK as u64).expect("a valid block size"),
        verify_every: None,
        health_check: None,
        window: None,
    };
    Deployment {
        vms: [(VM, VmSpec { name: "vm".into(), host: HOST })].into(),
        proxies: [(PROXY, ProxySpec { name: "px".into(), task_slots: 2 })].into(),
        repositories: [(REPOSITORY, RepositorySpec { name: "repo".into(), max_tasks: 4 })].into(),
        jobs: vec![JobSpec {
            id: JobId(0),
            name: "job".into(),
            vms: vec![VM],
            schedule: crate::config::Schedule::Every(EVERY),
            kind: JobKind::Backup(backup),
            throttle: None,
        }],
        ..Deployment::default()
    }
}

/// Disk content as guests leave it: every fifth block zero, the rest
/// quarter-MiB runs of random bytes or of text (which compresses).
fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut bytes = vec![0; len];
    for (i, run) in bytes.chunks_mut(MIB / 4).enumerate() {
        match (i / 4 % 5, rng.next_u32() % 2) {
            (3, _) => {}
            (_, 0) => rng.fill_bytes(run),
            (_, _) => run.iter_mut().enumerate().for_each(|(j, b)| *b = b"a block of text, "[(j + i) % 17]),
        }
    }
    bytes
}

/// Random bytes for block `block` of a disk, new to the repository.
fn fresh_block(seed: u64) -> Vec<u8> {
    let mut block = vec![0; BLOCK];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut block);
    block
}

/// A cluster whose VM holds [`content`], not started yet.
fn unstarted() -> Cluster {
    let roster =
        [(MANAGER, Role::Manager), (HOST, Role::Host), (PROXY, Role::Proxy), (REPOSITORY, Role::Repository), (OPERATOR, Role::Operator)];
    let mut c = Cluster::new(deployment(), &roster);
    let disks = DISKS.iter().enumerate().map(|(i, &len)| content(i as u64, len)).collect();
    c.hypervisor(HOST).add_vm(VM, "vm", disks);
    c
}

/// A started cluster whose VM holds [`content`].
fn cluster() -> Cluster {
    let mut c = unstarted();
    c.start();
    c
}

/// A session that ended, as the manager's events tell it.
#[derive(Debug)]
struct Session {
    ok: bool,
    /// The point it committed and the snapshot it was read from.
    point: Option<(RestorePointId, SnapshotId)>,
}

/// Runs until one more session ends (within two job periods).
fn next_session(c: &mut Cluster) -> Session {
    let finished = |c: &Cluster| c.events().filter(|e| matches!(e, Event::SessionFinished { .. })).count();
    let before = finished(c);
    assert!(c.run_until(2 * EVERY, |c| finished(c) > before), "no session ended:\n{}", log(c));
    let Some((id, ok)) = c.events().rev().find_map(|e| match e {
        Event::SessionFinished { session, ok, .. } => Some((*session, *ok)),
        _ => None,
    }) else {
        unreachable!("counted above")
    };
    let point = c.events().find_map(|e| match e {
        Event::PointCommitted { session, point, snap, .. } if *session == id => Some((*point, *snap)),
        _ => None,
    });
    Session { ok, point }
}

/// The events so far, one a line, for failure messages.
fn log(c: &Cluster) -> String {
    c.events.iter().map(|(at, node, event)| format!("{at} {node} {event:?}\n")).collect()
}

/// Runs one session, which must commit a point: its point and snapshot.
fn backup(c: &mut Cluster) -> (RestorePointId, SnapshotId) {
    let session = next_session(c);
    assert!(session.ok, "{session:?}:\n{}", log(c));
    session.point.expect("a successful session commits its VM's point")
}

/// Restores `point` as the new VM `vm` on `HOST`, as an operator asks it.
fn restore(c: &mut Cluster, point: RestorePointId, vm: VmId) -> Result<(), String> {
    let op = 1_000 + u64::from(vm.0);
    c.inject(OPERATOR, MANAGER, Message::RestoreVm { op, point, host: HOST, new_vm: vm, name: format!("restored {vm}") });
    let answer = |c: &Cluster| {
        c.between(MANAGER, OPERATOR).find_map(|m| match m {
            Message::RestoreDone { op: done, result } if *done == op => Some(result.clone()),
            _ => None,
        })
    };
    c.run_until(EVERY, |c| answer(c).is_some());
    answer(c).expect("the manager answers the restore")
}

/// Restores `point` as `vm` and checks it holds, disk by disk, exactly
/// the bytes snapshot `snap` froze.
fn assert_restores(c: &mut Cluster, point: RestorePointId, snap: SnapshotId, vm: VmId) {
    assert_eq!(restore(c, point, vm), Ok(()));
    let hv = c.hypervisor(HOST);
    for disk in 0..DISKS.len() {
        let (restored, frozen) = (hv.disk(vm, disk).expect("restored disk"), hv.snapshot_disk(snap, disk).expect("frozen disk"));
        assert_eq!(restored.len(), frozen.len(), "disk {disk}");
        let wrong: Vec<usize> = (0..frozen.len().div_ceil(BLOCK))
            .filter(|b| restored[b * BLOCK..frozen.len().min((b + 1) * BLOCK)] != frozen[b * BLOCK..frozen.len().min((b + 1) * BLOCK)])
            .collect();
        assert!(wrong.is_empty(), "{point} restored as {vm}: disk {disk} differs from {snap} in blocks {wrong:?}");
    }
}

/// Per disk, the block indexes of `PutBlocks` that crossed from
/// `from` on (an index into [`Cluster::crossed`]), and whether each
/// carried its payload.
fn blocks_put(c: &Cluster, from: usize) -> Vec<Vec<(u64, bool)>> {
    let mut put = vec![Vec::new(); DISKS.len()];
    for crossed in &c.crossed[from..] {
        if let Message::PutBlocks { target, blocks, .. } = &crossed.msg {
            put[usize::from(target.disk)].extend(blocks.iter().map(|b| (b.index, b.payload.is_some())));
        }
    }
    put.iter_mut().for_each(|p| p.sort_unstable());
    put
}

/// The `TaskAssigned` events: (task, disk, attempt).
fn assignments(c: &Cluster) -> Vec<(TaskId, u16, u32)> {
    c.events()
        .filter_map(|e| match e {
            Event::TaskAssigned { task, disk, attempt, .. } => Some((*task, disk.index, *attempt)),
            _ => None,
        })
        .collect()
}

/// The reasons of the tasks that failed.
fn task_failures(c: &Cluster) -> Vec<String> {
    c.events()
        .filter_map(|e| match e {
            Event::TaskFinished { result: Err(reason), .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

/// Per disk, the block indexes the proxy asked the host to read from
/// `from` on (an index into [`Cluster::crossed`]).
fn blocks_read(c: &Cluster, from: usize) -> Vec<Vec<u64>> {
    let mut read = vec![Vec::new(); DISKS.len()];
    for crossed in &c.crossed[from..] {
        if let Message::ReadBlocks { disk, blocks, .. } = &crossed.msg {
            read[usize::from(*disk)].extend(blocks);
        }
    }
    read.iter_mut().for_each(|r| r.sort_unstable());
    read
}
