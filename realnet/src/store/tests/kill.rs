//! A real process death: this test binary runs itself again as a child
//! that writes to a store (blocks, syncs, manifests, deletions of old
//! points) and reports each point it committed; the parent kills it with
//! SIGKILL in the middle of its work (mostly inside a sync's flush) and
//! opens the store: the dead process's lock is free, the tail it left is
//! cut, and every point it reported is there with its blocks. The page
//! cache survives a killed process, so this is not a power cut: lost pages
//! are the crash property test's (`crash.rs`).

use super::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DIR_VAR: &str = "BLOCKFERRY_STORE_KILL_DIR";
/// Points the child commits before the parent kills it.
const KILL_AFTER: u64 = 30;
/// Points the child prepares: it stops by itself after them.
const MAX_POINTS: u64 = 400;

/// Packs several points long, so a kill lands in a pack holding synced
/// records too (its tail is cut, not the whole pack removed).
fn options() -> StoreOptions {
    StoreOptions { pack_target: 256 << 10, ..StoreOptions::default() }
}

fn batch(point: u64) -> Vec<EncodedBlock> {
    blocks(point * 8..point * 8 + 8)
}

/// The child: commits point after point, as the repository does, until
/// killed (or for 30 seconds at most). Its blocks are made up front, so
/// that it spends its time in the store and the kill lands anywhere there.
#[test]
#[ignore = "run by killed_mid_write_the_store_recovers_every_committed_point"]
fn kill_child() {
    let Some(dir) = std::env::var_os(DIR_VAR) else { return };
    let batches: Vec<Vec<EncodedBlock>> = (0..=MAX_POINTS).map(batch).collect();
    let (mut store, _) = open(Path::new(&dir), options());
    let started = Instant::now();
    for point in 1..=MAX_POINTS {
        if started.elapsed() > Duration::from_secs(30) {
            break;
        }
        let stored = &batches[point as usize];
        ok(put(&mut store, stored));
        sync(&mut store);
        ok(store.apply(StorageOp::PutManifest(sample_manifest(point, &digests(stored)))));
        if point > 3 {
            ok(store.apply(StorageOp::DeleteManifest(RestorePointId(point - 3))));
            ok(store.apply(StorageOp::DeleteBlocks(digests(&batches[point as usize - 3]))));
        }
        println!("committed {point}");
    }
}

#[test]
fn killed_mid_write_the_store_recovers_every_committed_point() {
    let dir = temp();
    let exe = std::env::current_exe().expect("the test binary");
    let mut child = Command::new(exe)
        .args(["--exact", "store::tests::kill::kill_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env(DIR_VAR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the child starts");
    let mut committed = 0;
    // Kept open until the kill: a closed pipe would stop the child at its
    // next line, at a clean point.
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    for line in lines.by_ref() {
        let line = line.expect("the child's output");
        if let Some(point) = line.strip_prefix("committed ") {
            committed = point.parse().expect("a point number");
            if committed >= KILL_AFTER {
                break;
            }
        }
    }
    // A few hundred microseconds more or less, so kills land at different
    // steps of the child's work.
    let jitter = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |t| t.subsec_nanos() % 500);
    std::thread::sleep(Duration::from_micros(u64::from(jitter)));
    child.kill().expect("SIGKILL");
    child.wait().expect("the child is reaped");
    drop(lines);
    assert!(committed >= KILL_AFTER, "the child stopped after {committed} points");

    let (mut store, report) = open(dir.path(), options());
    assert!(report.is_clean(), "{report:?}");
    let (manifests, stored) = recover(&mut store);
    let newest = manifests.last().map_or(0, |m| m.point.0);
    assert!(newest >= committed, "point {committed} was committed, the newest recovered is {newest}");
    for m in &manifests {
        assert_readable(&mut store, &batch(m.point.0));
        assert!(m.referenced().all(|d| stored.binary_search(&d).is_ok()));
    }
}
