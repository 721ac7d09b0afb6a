//! Who runs a task when the manager's connection to its proxy breaks (see
//! `manager::ownership`): a task outlives a short break, is given up and
//! run again after a long one (never twice at once), fails at once when
//! the proxy lists it not, and is cancelled where the manager did not
//! place it.

use super::*;
use crate::roles::Proxy;
use crate::roles::manager::{RECONNECT_GRACE, TASK_SILENCE};
use crate::roles::proxy::MANAGER_GRACE;
use crate::roles::testing::Verdict;

/// A cluster whose two backup tasks run at the proxy but stall: the
/// host's reads are held until [`Cluster::release_held`].
fn stalled_backup() -> Cluster {
    let mut c = cluster();
    c.intercept(|_, _, msg| if matches!(msg, Message::BlocksRead { .. }) { Verdict::Hold } else { Verdict::Deliver });
    assert!(c.run_until(EVERY, |c| c.between(PROXY, HOST).any(|m| matches!(m, Message::ReadBlocks { .. }))));
    c.advance(Duration::from_secs(1));
    assert_eq!(c.node::<Proxy>(PROXY).map(Proxy::running), Some(2), "{}", super::log(&c));
    c
}

/// The tasks the proxy listed in its answers to `ListTasks`.
fn listed(c: &Cluster) -> Vec<Vec<TaskId>> {
    c.between(PROXY, MANAGER)
        .filter_map(|m| match m {
            Message::TasksRunning { op: Some(_), tasks } => Some(tasks.clone()),
            _ => None,
        })
        .collect()
}

/// A proxy back within the grace lists its running tasks, which stay
/// placed and finish: nothing is failed, cancelled or assigned twice.
#[test]
fn a_proxy_back_within_the_grace_keeps_its_tasks() {
    let mut c = stalled_backup();
    let before = listed(&c).len();
    c.break_link(MANAGER, PROXY);
    c.advance(MANAGER_GRACE - Duration::from_secs(10));
    c.connect(MANAGER, PROXY);
    c.stop_intercepting();
    c.release_held();
    let (point, snap) = backup(&mut c);
    let tasks: Vec<TaskId> = assignments(&c).iter().map(|(task, ..)| *task).collect();
    assert_eq!(assignments(&c).iter().map(|(_, disk, attempt)| (*disk, *attempt)).collect::<Vec<_>>(), [(0, 1), (1, 1)]);
    assert_eq!(listed(&c)[before..], [tasks], "the proxy listed both tasks when it was back");
    assert_eq!(task_failures(&c), Vec::<String>::new());
    assert!(!c.between(MANAGER, PROXY).any(|m| matches!(m, Message::CancelTask { .. })));
    assert_restores(&mut c, point, snap, VmId(7));
}

/// A proxy away beyond the grace has dropped its tasks before the manager
/// gives up on them (never two runs of a task at once); the manager then
/// fails them, runs them again, and the point is exact though replies to
/// the first runs arrive late.
#[test]
fn a_proxy_away_beyond_the_grace_loses_its_tasks_which_run_again() {
    let mut c = stalled_backup();
    c.break_link(MANAGER, PROXY);
    c.advance(MANAGER_GRACE + Duration::from_secs(1));
    assert_eq!(c.node::<Proxy>(PROXY).map(Proxy::running), Some(0), "the proxy dropped its orphaned tasks");
    assert_eq!(task_failures(&c), Vec::<String>::new(), "the manager has not given up yet");
    c.advance(RECONNECT_GRACE);
    let failures = task_failures(&c);
    assert!(failures.len() == 2 && failures.iter().all(|f| f.contains("lost connection to proxy")), "{failures:?}");
    c.connect(MANAGER, PROXY);
    c.stop_intercepting();
    c.release_held();
    let (point, snap) = backup(&mut c);
    let attempts: Vec<(u16, u32)> = assignments(&c).iter().map(|(_, disk, attempt)| (*disk, *attempt)).collect();
    assert_eq!(attempts, [(0, 1), (1, 1), (0, 2), (1, 2)]);
    assert_restores(&mut c, point, snap, VmId(7));
}

/// A task whose start was lost with the connection is not listed by its
/// proxy when it is back: the manager fails it at once (not after
/// `TASK_SILENCE`) and runs it again.
#[test]
fn a_task_its_proxy_does_not_list_fails_at_once_and_runs_again() {
    let mut c = cluster();
    let mut lost = 0;
    c.intercept(move |_, _, msg| match msg {
        Message::StartBackupTask(_) if lost < 2 => {
            lost += 1;
            Verdict::Drop
        }
        _ => Verdict::Deliver,
    });
    assert!(c.run_until(EVERY, |c| assignments(c).len() == 2));
    c.advance(Duration::from_secs(1));
    let (broke_at, before) = (c.now, listed(&c).len());
    c.break_link(MANAGER, PROXY);
    c.connect(MANAGER, PROXY);
    c.settle();
    assert_eq!(listed(&c)[before..], [Vec::new()], "the proxy runs nothing");
    let failures = task_failures(&c);
    assert!(failures.len() == 2 && failures.iter().all(|f| f.contains("no longer runs the task")), "{failures:?}");
    let (point, snap) = backup(&mut c);
    let first_failure = c.events.iter().find(|(_, _, e)| matches!(e, Event::TaskFinished { result: Err(_), .. })).map(|(at, ..)| *at);
    assert_eq!(first_failure, Some(broke_at), "failed when listed, long before {TASK_SILENCE:?}");
    assert_eq!(assignments(&c).iter().map(|(_, _, attempt)| *attempt).collect::<Vec<_>>(), [1, 1, 2, 2]);
    assert_restores(&mut c, point, snap, VmId(7));
}

/// A proxy that lists a task the manager never placed there is told to
/// cancel it; the manager's own tasks go on.
#[test]
fn a_task_the_manager_did_not_place_there_is_cancelled() {
    let mut c = stalled_backup();
    c.inject(PROXY, MANAGER, Message::TasksRunning { op: None, tasks: vec![TaskId(424_242)] });
    c.settle();
    let cancelled: Vec<TaskId> = c
        .between(MANAGER, PROXY)
        .filter_map(|m| match m {
            Message::CancelTask { task } => Some(*task),
            _ => None,
        })
        .collect();
    assert_eq!(cancelled, [TaskId(424_242)]);
    assert_eq!(c.node::<Proxy>(PROXY).map(Proxy::running), Some(2));
}

/// The watchdog: a task whose proxy's reports are all lost is cancelled
/// and failed after `TASK_SILENCE`, and runs again.
#[test]
fn a_task_unheard_of_for_too_long_is_given_up_and_runs_again() {
    let mut c = stalled_backup();
    c.intercept(|from, _, msg| match msg {
        Message::BlocksRead { .. } => Verdict::Hold,
        Message::TasksRunning { .. } if from == PROXY => Verdict::Drop,
        _ => Verdict::Deliver,
    });
    c.advance(TASK_SILENCE - Duration::from_secs(61));
    assert_eq!(task_failures(&c), Vec::<String>::new(), "not silent for long enough yet");
    // The watchdog looks every minute; the retries wait `RETRY_DELAY`.
    c.advance(Duration::from_secs(71));
    let failures = task_failures(&c);
    assert!(failures.len() == 2 && failures.iter().all(|f| f.contains("no report from proxy")), "{failures:?}");
    assert_eq!(c.node::<Proxy>(PROXY).map(Proxy::running), Some(0), "the proxy was told to cancel them");
    c.stop_intercepting();
    c.release_held();
    let (point, snap) = backup(&mut c);
    assert_restores(&mut c, point, snap, VmId(7));
}
