//! A peer's message checked against the documented limits
//! ([`crate::limits`]) before the proxy acts on it: a task's disk geometry
//! sizes its bitmaps and its receiver's digest lists, so a disk near
//! `u64::MAX` bytes or with more blocks than any disk has is refused whole
//! (the proxy starts nothing and closes the connection to the sender).
//! Block indexes are checked by each task against its disk.

use crate::limits::{disk_blocks, list_len};
use crate::wire::Message;

pub(super) fn check(msg: &Message) -> Result<(), String> {
    match msg {
        Message::StartBackupTask(spec) => {
            list_len("blocks to re-read", spec.reread.len())?;
            disk_blocks(spec.disk_bytes, spec.block_size).map(drop)
        }
        Message::StartRestoreTask(spec) => disk_blocks(spec.disk_bytes, spec.block_size).map(drop),
        Message::StartReplicaTask(spec) => disk_blocks(spec.sink.disk_bytes, spec.sink.block_size).map(drop),
        Message::OpenReplica(sink) => disk_blocks(sink.disk_bytes, sink.block_size).map(drop),
        Message::ReplicaBlocks { blocks, .. } => list_len("blocks", blocks.len()),
        Message::HashBlocks { blocks, .. } => list_len("block indexes", blocks.len()),
        _ => Ok(()),
    }
}
