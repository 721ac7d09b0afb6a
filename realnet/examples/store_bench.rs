//! Measures the disk store: writing 1 GiB of 1 MiB encoded blocks of random
//! bytes (16 blocks per `PutBlocks`, one `Sync` per 64 MiB), then opening
//! the store again with its pages evicted from the page cache (recovery),
//! answering `Recover`, opening it with its pack indexes removed (a header
//! scan of every pack), and `verify`. The figures go in
//! realnet/src/store/FORMAT.md.
//!
//! `cargo run --release -p blockferry-realnet --example store_bench -- DIR [MiB] [block KiB]`
//! (DIR must not exist; it is removed afterwards. Defaults: 1024 MiB of
//! 1024 KiB blocks.)

use blockferry_core::block::{Compression, encode_block};
use blockferry_core::payload::BlockPayload;
use blockferry_core::storage::{StorageOp, StorageReply};
use blockferry_realnet::store::{Store, StoreOptions};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Bytes per `Sync`, as the benchmark asks.
const SYNC_EVERY: usize = 64 << 20;
const PER_PUT: usize = 16;

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let root = PathBuf::from(args.next().ok_or("usage: store_bench DIR [MiB] [block KiB]")?);
    let mib: usize = args.next().map_or(Ok(1024), |a| a.parse())?;
    let block_kib: usize = args.next().map_or(Ok(1024), |a| a.parse())?;
    if root.exists() {
        return Err(format!("{} exists; give a new folder", root.display()).into());
    }
    let result = run(&root, mib, block_kib << 10);
    std::fs::remove_dir_all(&root)?;
    result
}

fn run(root: &Path, mib: usize, block: usize) -> Result<(), Box<dyn Error>> {
    let count = (mib << 20) / block;
    eprintln!("encoding {count} blocks of {} KiB random bytes...", block >> 10);
    let ops: Vec<StorageOp> = (0..count)
        .collect::<Vec<_>>()
        .chunks(PER_PUT)
        .map(|seeds| {
            StorageOp::PutBlocks(
                seeds
                    .iter()
                    .map(|seed| {
                        let mut raw = vec![0u8; block];
                        blake3::Hasher::new().update(&(*seed as u64).to_le_bytes()).finalize_xof().fill(&mut raw);
                        BlockPayload::Encoded(encode_block(&raw, Compression::Optimal))
                    })
                    .collect(),
            )
        })
        .collect();

    let (mut store, _) = Store::open(root, StoreOptions::default())?;
    let started = Instant::now();
    for (i, op) in ops.into_iter().enumerate() {
        store.apply(op)?;
        if ((i + 1) * PER_PUT * block).is_multiple_of(SYNC_EVERY) {
            store.apply(StorageOp::Sync)?;
        }
    }
    store.apply(StorageOp::Sync)?;
    let write = started.elapsed();
    let stats = store.stats();
    drop(store);
    println!(
        "write: {mib} MiB in {} ({:.0} MiB/s), {} packs, {} bytes on disk",
        secs(write),
        mib as f64 / write.as_secs_f64(),
        stats.packs,
        stats.pack_bytes
    );

    evict(root)?;
    let started = Instant::now();
    let (mut store, report) = Store::open(root, StoreOptions::default())?;
    let open = started.elapsed();
    let started = Instant::now();
    let Ok(StorageReply::Recovered { blocks, .. }) = store.apply(StorageOp::Recover) else { return Err("recover failed".into()) };
    println!(
        "open (cold cache, from pack indexes): {} for {} blocks; Recover answered in {}",
        secs(open),
        report.blocks,
        secs(started.elapsed())
    );
    assert_eq!(blocks.len(), count);
    drop(store);

    for entry in std::fs::read_dir(root.join("packs"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "idx") {
            std::fs::remove_file(path)?;
        }
    }
    evict(root)?;
    let started = Instant::now();
    let (mut store, report) = Store::open(root, StoreOptions::default())?;
    println!("open (cold cache, no indexes: header scan, indexes rebuilt): {} for {} blocks", secs(started.elapsed()), report.blocks);

    evict(root)?;
    let started = Instant::now();
    let found = store.verify()?;
    let verify = started.elapsed();
    println!(
        "verify (cold cache, read + checksum + re-hash): {} ({:.0} MiB/s), clean: {}",
        secs(verify),
        mib as f64 / verify.as_secs_f64(),
        found.is_clean()
    );
    Ok(())
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

/// Drops the store's files from the page cache (only these files: the
/// machine is shared), so reads after it come from the disk.
fn evict(root: &Path) -> Result<(), Box<dyn Error>> {
    for dir in ["packs", "points", "replicas"] {
        for entry in std::fs::read_dir(root.join(dir))? {
            let file = std::fs::File::open(entry?.path())?;
            file.sync_all()?;
            rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)?;
        }
    }
    Ok(())
}
