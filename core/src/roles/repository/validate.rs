//! A peer's message checked against the documented limits
//! ([`crate::limits`]) before the repository acts on it: a block index, a
//! disk size or a list length a peer chose never sizes an allocation
//! unchecked. A message that fails is refused whole (the repository
//! changes nothing and closes the connection to its sender).

use crate::limits::{MAX_DISK_BLOCKS, disk_blocks, indexes_below, list_len};
use crate::wire::Message;

pub(super) fn check(msg: &Message) -> Result<(), String> {
    match msg {
        // The disk's size comes with `FinishDisk`, which checks every
        // index against it; until then an index is bounded by the largest
        // disk (so a progress bitmap stays small).
        Message::PutBlocks { blocks, .. } => {
            list_len("blocks", blocks.len())?;
            indexes_below(blocks.iter().map(|b| b.index), MAX_DISK_BLOCKS)
        }
        Message::FinishDisk { bytes, block_size, .. } => disk_blocks(*bytes, *block_size).map(drop),
        Message::HaveDigests { digests, .. } => list_len("digests", digests.len()),
        Message::GetDigests { blocks, .. } | Message::GetReplicaDigests { blocks, .. } => list_len("block indexes", blocks.len()),
        Message::ReadPoint { count, .. } => list_len("blocks", usize::try_from(*count).unwrap_or(usize::MAX)),
        Message::PutReplicaDisk { bytes, block_size, changes, .. } => {
            let blocks = disk_blocks(*bytes, *block_size)?;
            list_len("changes", changes.len())?;
            indexes_below(changes.iter().map(|(index, _)| *index), blocks)
        }
        _ => Ok(()),
    }
}
