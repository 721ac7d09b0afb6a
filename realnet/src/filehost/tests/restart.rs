//! What a restarted host daemon finds: its snapshots, its created VMs,
//! and never an id it issued before.

use super::*;
use crate::filehost::IMAGE_CHANGED;

/// Ids issued before a restart are never issued again: not while the
/// clock moves on, and not if it went back (the state's high-water mark
/// wins over it).
#[test]
fn snapshot_ids_stay_unique_across_restarts() {
    let store = Datastore::new();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let host = store.open(SnapshotPolicy::IdentityOnly);
        let (kept, _) = snapshot(&host, VM);
        let (committed, _) = snapshot(&host, VM);
        host.handle(HypervisorOp::CommitSnapshot { snap: committed }).expect("commit");
        seen.extend([kept, committed]);
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "{seen:?}");
    // A clock set back: the state says ids up to far in the future were issued.
    let state_file = store.path().join(".blockferry/state.json");
    let mut state: serde_json::Value = serde_json::from_slice(&fs::read(&state_file).expect("state")).expect("json");
    let ahead = seen.iter().map(|s| s.0).max().unwrap_or(0) + 1_000_000_000_000;
    state["next_snapshot"] = ahead.into();
    fs::write(&state_file, serde_json::to_vec(&state).expect("json")).expect("state written");
    let host = store.open(SnapshotPolicy::IdentityOnly);
    assert_eq!(snapshot(&host, VM).0, SnapshotId(ahead));
}

/// Without reflinks a snapshot survives a restart: it still reads, and a
/// guest write after the restart is still caught.
#[test]
fn an_identity_snapshot_survives_a_restart() {
    let store = Datastore::new();
    let (snap, _) = snapshot(&store.open(SnapshotPolicy::IdentityOnly), VM);
    let host = store.open(SnapshotPolicy::IdentityOnly);
    assert_eq!(read_disk(&host, snap, 0, DISK0_LEN as u64), Ok(contents()[0].1.clone()));
    guest_write(&store.image(DISK0), 3, b"x");
    let err = read(&host, snap, 0, vec![0]).expect_err("the write is caught after a restart");
    assert!(err.contains(IMAGE_CHANGED), "{err}");
    assert_eq!(
        store.open(SnapshotPolicy::IdentityOnly).handle(HypervisorOp::CommitSnapshot { snap }),
        Ok(HypervisorReply::SnapshotCommitted)
    );
}

/// With reflinks a snapshot survives a restart with its instant.
#[test]
fn a_reflink_snapshot_survives_a_restart() {
    let store = Datastore::for_reflinks();
    let Some(host) = store.open_reflinks("a_reflink_snapshot_survives_a_restart") else { return };
    let (snap, _) = snapshot(&host, VM);
    drop(host);
    guest_write(&store.image(DISK0), 0, &random(2 * BLOCK, 5));
    let host = store.open(SnapshotPolicy::Auto);
    assert_eq!(read_disk(&host, snap, 0, DISK0_LEN as u64), Ok(contents()[0].1.clone()));
}

/// Copies a crash left without a record are removed at start; a live
/// snapshot's are not.
#[test]
fn orphan_snapshot_copies_are_removed_at_start() {
    let store = Datastore::new();
    let orphan = store.path().join(".blockferry/snapshots/12345");
    fs::create_dir_all(&orphan).expect("orphan folder");
    fs::write(orphan.join(DISK0), b"half a copy").expect("orphan file");
    let keep = store.path().join(".blockferry/snapshots/notes");
    fs::write(&keep, b"not a snapshot id").expect("other file");
    store.open(SnapshotPolicy::IdentityOnly);
    assert!(!orphan.exists(), "the orphan is removed");
    assert!(keep.exists(), "only snapshot-id folders are touched");
}

/// A state file that does not parse stops the host, naming the file:
/// starting afresh would forget live snapshots.
#[test]
fn a_damaged_state_file_stops_the_host_and_names_the_file() {
    let store = Datastore::new();
    snapshot(&store.open(SnapshotPolicy::IdentityOnly), VM);
    let state_file = store.path().join(".blockferry/state.json");
    fs::write(&state_file, b"{ \"version\": 1, \"next_snap").expect("damage");
    let config = FileHostConfig {
        datastore: store.path().to_path_buf(),
        vms: BTreeMap::from([(VM, FOLDER.into())]),
        snapshots: SnapshotPolicy::IdentityOnly,
    };
    let err = FileHost::open(config).expect_err("a damaged state must not open");
    assert!(err.0.contains("state.json") && err.0.contains("parsing"), "{err}");
}

/// Configurations that cannot be right are refused at start.
#[test]
fn bad_configurations_are_refused_at_start() {
    let store = Datastore::new();
    let open = |vms: BTreeMap<VmId, String>, datastore: PathBuf| {
        FileHost::open(FileHostConfig { datastore, vms, snapshots: SnapshotPolicy::IdentityOnly }).expect_err("refused").0
    };
    let err = open(BTreeMap::from([(VM, FOLDER.into()), (VmId(2), FOLDER.into())]), store.path().into());
    assert!(err.contains("both configured"), "{err}");
    let err = open(BTreeMap::from([(VM, "../elsewhere".into())]), store.path().into());
    assert!(err.contains("../elsewhere"), "{err}");
    let err = open(BTreeMap::new(), store.path().join("missing"));
    assert!(err.contains("missing"), "{err}");
}
