//! Block IO on one image: where a block lies, reading blocks in large
//! sequential runs, and durable writes. Every request is checked whole
//! before any byte moves, so a bad one changes nothing.

use super::error::At;
use blockferry_core::BlockSize;
use blockferry_core::payload::BlockData;
use rustix::fs::FallocateFlags;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The most plaintext one read request may ask for. A proxy's batch is
/// 8 MiB (or one block, at most 64 MiB); the bound keeps a peer's request
/// from making the host allocate without limit.
pub const MAX_READ_BYTES: u64 = 256 << 20;

/// Consecutive blocks are read with one call of up to this many bytes:
/// large sequential reads are what a disk (and the page cache's
/// read-ahead) serves fastest, even at 4 KiB block sizes.
const RUN_BYTES: usize = 8 << 20;

/// Where block `index` of an image of `bytes` lies: its offset and length
/// (the last block may be short). A block past the end is an error naming
/// the image.
pub(crate) fn span(path: &Path, bytes: u64, block_size: BlockSize, index: u64) -> Result<(u64, usize), String> {
    let size = u64::from(block_size.bytes());
    let count = block_size.blocks_for(bytes);
    if index >= count {
        return Err(format!("block {index} is past the end of {} ({bytes} bytes: {count} blocks of {size} bytes)", path.display()));
    }
    let start = index * size;
    // At most one block, so it fits a usize (BlockSize::MAX is 64 MiB).
    let len = usize::try_from(size.min(bytes - start)).unwrap_or(usize::MAX);
    Ok((start, len))
}

/// Reads `blocks` (in the order asked) of an image of `bytes`.
pub(crate) fn read_blocks(
    file: &File,
    path: &Path,
    bytes: u64,
    block_size: BlockSize,
    blocks: &[u64],
) -> Result<Vec<(u64, BlockData)>, String> {
    let asked = (blocks.len() as u64).saturating_mul(u64::from(block_size.bytes()));
    if asked > MAX_READ_BYTES {
        return Err(format!(
            "a read of {} blocks of {} asks for {asked} bytes, more than {MAX_READ_BYTES} per request",
            blocks.len(),
            path.display()
        ));
    }
    let spans = blocks.iter().map(|&b| span(path, bytes, block_size, b).map(|s| (b, s))).collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::with_capacity(spans.len());
    let mut rest = spans.as_slice();
    while let Some(&(first, (offset, first_len))) = rest.first() {
        let mut len = first_len;
        let mut count = 1;
        while let Some(&(index, (_, next_len))) = rest.get(count) {
            if index != first + count as u64 || len + next_len > RUN_BYTES {
                break;
            }
            len += next_len;
            count += 1;
        }
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, offset).at("reading", path)?;
        let (run, after) = rest.split_at(count);
        if let [(index, _)] = run {
            out.push((*index, BlockData::Bytes(buf)));
        } else {
            let mut bytes = buf.as_slice();
            for &(index, (_, block_len)) in run {
                let (block, tail) = bytes.split_at(block_len);
                out.push((index, BlockData::Bytes(block.to_vec())));
                bytes = tail;
            }
        }
        rest = after;
    }
    Ok(out)
}

/// One checked write: where, and what.
pub(crate) type Write<'a> = (u64, &'a [u8]);

/// Checks every block of a write request against an image of `bytes`:
/// in range, real bytes, exactly its place's length.
pub(crate) fn check_writes<'a>(
    path: &Path,
    bytes: u64,
    block_size: BlockSize,
    blocks: &'a [(u64, BlockData)],
) -> Result<Vec<Write<'a>>, String> {
    blocks
        .iter()
        .map(|(index, data)| {
            let (offset, len) = span(path, bytes, block_size, *index)?;
            let BlockData::Bytes(data) = data else {
                return Err(format!("block {index} for {} is a simulator's synthetic descriptor, not bytes", path.display()));
            };
            if data.len() != len {
                return Err(format!(
                    "block {index} for {} is {} bytes, but its place holds {len} (block size {}, image {bytes} bytes)",
                    path.display(),
                    data.len(),
                    block_size.bytes()
                ));
            }
            Ok((offset, data.as_slice()))
        })
        .collect()
}

/// Carries out checked writes and makes them durable before returning: a
/// restore or replica write is acknowledged only once it would survive a
/// crash. All-zero blocks become holes where the filesystem can punch them,
/// so restored and replica images stay as sparse as their sources.
pub(crate) fn write_blocks(file: &File, path: &Path, writes: &[Write<'_>]) -> Result<(), String> {
    for &(offset, data) in writes {
        if data.iter().all(|&b| b == 0) && punch_hole(file, offset, data.len()) {
            continue;
        }
        file.write_all_at(data, offset).at("writing", path)?;
    }
    file.sync_data().at("syncing", path)
}

/// Whether the range was made a hole (false where the filesystem cannot:
/// the caller writes the zeros instead).
fn punch_hole(file: &File, offset: u64, len: usize) -> bool {
    rustix::fs::fallocate(file, FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE, offset, len as u64).is_ok()
}
