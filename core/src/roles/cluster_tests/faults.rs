//! Backups that meet a broken connection or a restarted repository: they
//! go on from what the repository holds, and the point is still exact.

use super::*;
use crate::roles::testing::Crossed;

/// The first batch the repository acknowledged: its disk and blocks.
fn first_acked(c: &Cluster) -> Option<(usize, Vec<u64>)> {
    let (task, batch) = c.between(REPOSITORY, PROXY).find_map(|m| match m {
        Message::BlocksAck { task, batch, result: Ok(()) } => Some((*task, *batch)),
        _ => None,
    })?;
    puts(c).find(|(t, b, ..)| (*t, *b) == (task, batch)).map(|(.., disk, blocks)| (disk, blocks))
}

/// The batches sent to the repository: task, batch, disk and blocks.
fn puts(c: &Cluster) -> impl Iterator<Item = (TaskId, u64, usize, Vec<u64>)> + '_ {
    c.between(PROXY, REPOSITORY).filter_map(|m| match m {
        Message::PutBlocks { task, batch, target, blocks } => {
            Some((*task, *batch, usize::from(target.disk), blocks.iter().map(|b| b.index).collect()))
        }
        _ => None,
    })
}

/// Whether `c.crossed[from..]` holds a message `pick` accepts.
fn crossed_since(c: &Cluster, from: usize, pick: impl Fn(&Crossed) -> bool) -> bool {
    c.crossed[from..].iter().any(pick)
}

/// A connection between proxy and repository broken mid-backup, as the
/// first batch arrives (its acknowledgement and the batches behind it are
/// lost): the tasks wait, then ask the repository what it holds and send
/// only the rest (the batch it stored never again), in their first attempt.
#[test]
fn a_connection_broken_mid_backup_resumes_and_the_point_is_exact() {
    let mut c = cluster();
    assert!(c.run_until(EVERY, |c| puts(c).next().is_some()));
    let Some((_, _, disk, stored)) = puts(&c).next() else { unreachable!("found above") };
    let mark = c.crossed.len();
    c.break_link(PROXY, REPOSITORY);
    c.advance(Duration::from_secs(10));
    let back = c.now;
    c.connect(PROXY, REPOSITORY);
    let (point, snap) = backup(&mut c);
    let asked = |x: &Crossed| matches!(x.msg, Message::GetProgress { .. });
    assert!(crossed_since(&c, mark, |x| asked(x) && x.at == back), "once back, the tasks asked what the repository holds");
    assert!(!crossed_since(&c, mark, |x| x.at < back && x.from == PROXY), "the tasks waited while it was away");
    let put = blocks_put(&c, mark);
    assert!(put.iter().any(|p| !p.is_empty()), "blocks were still to send after the break");
    let again: Vec<u64> = put[disk].iter().map(|(i, _)| *i).filter(|i| stored.contains(i)).collect();
    assert_eq!(again, Vec::<u64>::new(), "blocks stored before the break were sent again");
    assert_eq!(task_failures(&c), Vec::<String>::new());
    assert_eq!(assignments(&c).iter().map(|(_, disk, attempt)| (*disk, *attempt)).collect::<Vec<_>>(), [(0, 1), (1, 1)]);
    assert_restores(&mut c, point, snap, VmId(7));
}

/// A repository restarted mid-backup has lost the blocks it acknowledged
/// (nothing is synced before a commit) and its pending point: the tasks
/// find it holds nothing, send everything again, and the point is exact,
/// with nothing left in the store that it does not reference.
#[test]
fn a_repository_restarted_mid_backup_is_sent_what_it_lost() {
    let mut c = cluster();
    assert!(c.run_until(EVERY, |c| first_acked(c).is_some()));
    let (disk, acked) = first_acked(&c).expect("found above");
    let mark = c.crossed.len();
    c.restart(REPOSITORY);
    assert!(c.store(REPOSITORY).digests().is_empty(), "the restart lost the blocks never synced");
    let (point, snap) = backup(&mut c);
    let again: Vec<u64> = blocks_put(&c, mark)[disk].iter().map(|(i, _)| *i).filter(|i| acked.contains(i)).collect();
    assert_eq!(again, acked, "what the repository lost was sent again");
    let store = c.store(REPOSITORY);
    assert_eq!(store.digests(), store.referenced(), "the store holds what the point references, and only that");
    assert_restores(&mut c, point, snap, VmId(7));
}

/// A repository restarted after a disk's task finished, before the commit:
/// the disk's pending data is gone with it, so the manager must run that
/// task again rather than commit a point missing a disk.
///
/// Known bug, found by this harness: when the task's success report is
/// still on its way as the repository restarts, the manager counts the
/// disk done and the commit is refused (the VM fails that session; the
/// next one succeeds). Running every task that ran through a repository
/// loss again fixed it, but in the swarm such confirming runs re-read
/// whole disks and, with a repository that keeps going away, never end
/// (seed 696 of the 2,000). The exact fix needs the manager to see that
/// the repository restarted (an incarnation in its answers): issue 14.
#[test]
#[ignore = "known bug: needs the repository's incarnation (see the doc comment)"]
fn a_repository_restarted_after_a_disk_finished_gets_the_disk_again() {
    let mut c = cluster();
    let finished = |c: &Cluster| c.between(REPOSITORY, PROXY).any(|m| matches!(m, Message::DiskFinished { result: Ok(()), .. }));
    assert!(c.run_until(EVERY, |c| finished(c) && c.events().any(|e| matches!(e, Event::TaskFinished { result: Ok(_), .. }))));
    let done: Vec<u16> = c
        .events()
        .filter_map(|e| match e {
            Event::TaskFinished { disk, result: Ok(_), .. } => Some(disk.index),
            _ => None,
        })
        .collect();
    c.restart(REPOSITORY);
    let (point, snap) = backup(&mut c);
    let again: Vec<u16> = assignments(&c).iter().filter(|(_, _, attempt)| *attempt > 1).map(|(_, disk, _)| *disk).collect();
    assert!(done.iter().all(|d| again.contains(d)), "finished disks {done:?}, run again {again:?}");
    assert_restores(&mut c, point, snap, VmId(7));
}

/// Issue 13 §2 end to end: a repository telling the host to write over the
/// VM's disk is refused by the host's admission (the disk is untouched)
/// and the connection is closed; the backup that runs meanwhile is not
/// disturbed.
#[test]
fn a_write_forged_by_the_repository_is_refused_and_the_backup_goes_on() {
    use crate::payload::BlockData;
    let mut c = unstarted().expecting_refusals();
    c.start();
    let forged = Message::WriteBlocks {
        task: TaskId(1),
        batch: 0,
        vm: VM,
        disk: 0,
        block_size: BlockSize::new(BLOCK as u64).expect("a valid block size"),
        blocks: vec![(0, BlockData::Bytes(vec![0xAA; BLOCK]))],
    };
    c.inject(REPOSITORY, HOST, forged);
    backup(&mut c);
    assert!(matches!(c.closed.as_slice(), [(HOST, REPOSITORY, r)] if r.contains("write_blocks")), "{:?}", c.closed);
    assert_eq!(c.hypervisor(HOST).disk(VM, 0), Some(content(0, DISKS[0]).as_slice()));
}
