//! Garbage collection while backup jobs always overlap (issue 12 §4):
//! `scenarios/gc-overlapping-jobs.toml`. A point of backup-file is pending
//! whenever backup-db commits and its retention deletes a point, so a
//! repository that collects only while nothing is pending never collects
//! there (it stored every byte sent, about 118 GB). With a writer cutoff
//! the stored bytes stay bounded by retention.

use blockferry_sim::runner::{self, EngineChoice};
use blockferry_tests::scenarios;

/// backup-db's disk, and how many points it keeps.
const DB_DISK: u64 = 8 << 30;
const DB_RETENTION: u64 = 2;

#[test]
fn stored_bytes_stay_bounded_by_retention_while_jobs_always_overlap() {
    let scenario = scenarios::load("gc-overlapping-jobs");
    let s = runner::run(&scenario, None, Some(EngineChoice::Des)).expect("runs");
    assert!(s.ok, "{:?}", s.violations);
    let (db, file) = (&s.jobs["backup-db"], &s.jobs["backup-file"]);
    assert_eq!(db.sessions_ok, 48, "backup-db ran every 30 minutes all day");
    assert_eq!(db.restore_points, DB_RETENTION);
    assert_eq!(file.restore_points, file.sessions_ok, "backup-file deleted nothing: it keeps every point");
    // The bound: backup-file keeps every block it sent. backup-db's
    // points are one disk's worth each at most (a full, or a full's
    // digests with increments on top); it keeps DB_RETENTION of them,
    // and the garbage of at most two more waits for the backup-file
    // session that was pending when they were deleted (one every 30
    // minutes; a backup-file session takes about 40).
    let bound = file.bytes_sent + (DB_RETENTION + 2) * DB_DISK;
    assert!(s.bytes.stored <= bound, "stored {} bytes, bound {bound}", s.bytes.stored);
    // Never collecting stores everything sent, far past the bound: the
    // scenario tells the two apart.
    let sent = db.bytes_sent + file.bytes_sent;
    assert!(sent > bound + bound / 2, "sent {sent} bytes, bound {bound}");
}
