//! What a peer may ask of a node: the documented limits every message is
//! checked against before a role acts on it (see each role's validation).
//! They are far above what any real deployment sends, and low enough that
//! nothing a peer says can make a node allocate more than a few MiB per
//! message or size a vector from an unchecked number.

use crate::block::BlockSize;

/// The largest disk: 64 TiB (VMware's virtual disk maximum is 62 TB).
pub const MAX_DISK_BYTES: u64 = 64 << 40;

/// The most blocks a disk may have: 2^26, a 64 TiB disk of 1 MiB blocks.
/// Its digest vector is then 2 GiB and its bitmaps 8 MiB; a disk with more
/// blocks (a large disk with small blocks) needs a larger block size.
pub const MAX_DISK_BLOCKS: u64 = 1 << 26;

/// The most blocks, digests or block indexes one message may carry (a
/// batch is 8 MiB of blocks: 2,048 at the smallest block size).
pub const MAX_BLOCKS_PER_MESSAGE: usize = 1 << 16;

/// The most disks a VM (and so a restore point) may have (VMware's limit
/// is 256 virtual disks per VM).
pub const MAX_DISKS_PER_VM: usize = 256;

/// The most block bytes one read may ask for: twice a proxy's batch
/// (`roles::proxy::BATCH_BYTES`) and half a frame, so that the answer fits
/// one frame and a read never makes a host or a store hold more than this
/// for one message (a count alone allowed 2^16 blocks of 64 MiB: 4 TiB).
/// A block larger than this is read alone.
pub const MAX_READ_BYTES: u64 = 16 << 20;

/// A read of `count` blocks of `block_size` asks for at most
/// [`MAX_READ_BYTES`], or for one block.
pub fn read_len(count: u64, block_size: BlockSize) -> Result<(), String> {
    let bytes = u64::from(block_size.bytes());
    if count > (MAX_READ_BYTES / bytes).max(1) {
        return Err(format!("a read of {count} blocks of {bytes} bytes asks for more than the limit of {MAX_READ_BYTES} bytes"));
    }
    Ok(())
}

/// A disk's geometry is valid: not larger than [`MAX_DISK_BYTES`], and not
/// more than [`MAX_DISK_BLOCKS`] blocks. Returns the block count.
pub fn disk_blocks(bytes: u64, block_size: BlockSize) -> Result<u64, String> {
    if bytes > MAX_DISK_BYTES {
        return Err(format!("a disk of {bytes} bytes is larger than the limit of {MAX_DISK_BYTES}"));
    }
    let blocks = block_size.blocks_for(bytes);
    if blocks > MAX_DISK_BLOCKS {
        return Err(format!(
            "a disk of {bytes} bytes in {} byte blocks has {blocks} blocks, more than the limit of {MAX_DISK_BLOCKS}",
            block_size.bytes()
        ));
    }
    Ok(blocks)
}

/// Every index is below `blocks`.
pub fn indexes_below(indexes: impl IntoIterator<Item = u64>, blocks: u64) -> Result<(), String> {
    match indexes.into_iter().find(|&i| i >= blocks) {
        Some(index) => Err(format!("block {index} is beyond the disk's {blocks} blocks")),
        None => Ok(()),
    }
}

/// A message's list of `what` is not longer than [`MAX_BLOCKS_PER_MESSAGE`].
pub fn list_len(what: &str, len: usize) -> Result<(), String> {
    if len > MAX_BLOCKS_PER_MESSAGE {
        return Err(format!("{len} {what} in one message, more than the limit of {MAX_BLOCKS_PER_MESSAGE}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_limits_hold_at_their_edges() {
        let mib = BlockSize::LOCAL;
        assert_eq!(disk_blocks(MAX_DISK_BYTES, mib), Ok(MAX_DISK_BLOCKS));
        assert_eq!(disk_blocks(0, mib), Ok(0));
        assert!(disk_blocks(MAX_DISK_BYTES + 1, mib).is_err());
        assert!(disk_blocks(u64::MAX, BlockSize::new(4096).expect("valid")).is_err());
        // 64 TiB in 4 KiB blocks is 2^34 blocks: refused, a larger block
        // size is needed.
        assert!(disk_blocks(MAX_DISK_BYTES, BlockSize::new(4096).expect("valid")).unwrap_err().contains("blocks"));
        assert_eq!(indexes_below([0, 3], 4), Ok(()));
        assert!(indexes_below([0, 4], 4).unwrap_err().contains("block 4"));
        assert!(list_len("digests", MAX_BLOCKS_PER_MESSAGE).is_ok() && list_len("digests", MAX_BLOCKS_PER_MESSAGE + 1).is_err());
        // 16 MiB of 4 KiB blocks, or one block larger than that.
        let small = BlockSize::new(4096).expect("valid");
        assert!(read_len(4096, small).is_ok() && read_len(4097, small).unwrap_err().contains("4097 blocks"));
        assert!(read_len(1, BlockSize::new(64 << 20).expect("valid")).is_ok());
        assert!(read_len(2, BlockSize::new(64 << 20).expect("valid")).is_err());
    }
}
