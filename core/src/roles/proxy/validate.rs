//! A peer's message checked against the documented limits
//! ([`crate::limits`]) before the proxy acts on it: a task's disk geometry
//! sizes its bitmaps and its receiver's digest lists, so a disk near
//! `u64::MAX` bytes or with more blocks than any disk has is refused whole
//! (the proxy starts nothing and closes the connection to the sender).
//! Block indexes are checked by each task against its disk. A new task's
//! id must be one a manager hands out (below [`MAX_TASK_ID`]): the
//! proxy's timers pack task ids beside a few fixed ids of their own.

use crate::ids::TaskId;
use crate::limits::{disk_blocks, list_len};
use crate::wire::Message;

/// The largest task id a proxy takes. Task ids start at the manager's clock
/// in nanoseconds since 1970 and count up, below 2^63 until the year 2262;
/// the ids above are the proxy's own timers' (see `timers`).
pub(super) const MAX_TASK_ID: u64 = super::timers::LAST_TASK_TIMER;

fn new_task(task: TaskId) -> Result<(), String> {
    if task.0 > MAX_TASK_ID {
        return Err(format!("task id {} is beyond any a manager hands out", task.0));
    }
    Ok(())
}

pub(super) fn check(msg: &Message) -> Result<(), String> {
    match msg {
        Message::StartBackupTask(spec) => {
            new_task(spec.task)?;
            list_len("blocks to re-read", spec.reread.len())?;
            disk_blocks(spec.disk_bytes, spec.block_size).map(drop)
        }
        Message::StartRestoreTask(spec) => new_task(spec.task).and(disk_blocks(spec.disk_bytes, spec.block_size).map(drop)),
        Message::StartReplicaTask(spec) => new_task(spec.task).and(disk_blocks(spec.sink.disk_bytes, spec.sink.block_size).map(drop)),
        Message::OpenReplica(sink) => new_task(sink.task).and(disk_blocks(sink.disk_bytes, sink.block_size).map(drop)),
        Message::ReplicaBlocks { blocks, .. } => list_len("blocks", blocks.len()),
        Message::HashBlocks { blocks, .. } => list_len("block indexes", blocks.len()),
        _ => Ok(()),
    }
}
