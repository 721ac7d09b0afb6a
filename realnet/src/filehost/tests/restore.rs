//! Restore targets: `CreateVm` then `WriteBlocks` give byte-identical
//! images; creation is idempotent only while nothing was written.

use super::*;
use std::os::unix::fs::MetadataExt;

const TARGET: VmId = VmId(9);
const NAME: &str = "web-restored";

fn create(host: &FileHost, vm: VmId, name: &str, disks: Vec<u64>) -> Result<HypervisorReply, String> {
    host.handle(HypervisorOp::CreateVm { vm, name: name.into(), disks })
}

fn sizes() -> Vec<u64> {
    vec![DISK0_LEN as u64, DISK1_LEN as u64]
}

/// A restore as a proxy does it: read the source point (here a snapshot),
/// create the VM, write the non-zero blocks in batches. The images come out
/// byte-identical, named in disk order, and a zero block written over data
/// (as a replica sync does) leaves zeros.
#[test]
fn create_vm_and_writes_make_byte_identical_images() {
    let store = Datastore::new();
    let host = store.open(SnapshotPolicy::IdentityOnly);
    let (snap, disks) = snapshot(&host, VM);
    assert_eq!(create(&host, TARGET, NAME, disks.iter().map(|d| d.bytes).collect()), Ok(HypervisorReply::VmCreated));
    let target = store.path().join(NAME);
    for (name, len) in [("disk0.img", DISK0_LEN), ("disk1.img", DISK1_LEN)] {
        let meta = fs::metadata(target.join(name)).expect("created image");
        assert_eq!((meta.len(), meta.blocks()), (len as u64, 0), "{name} is sparse and sized");
    }
    for (disk, d) in (0u16..).zip(&disks) {
        let blocks = read(&host, snap, disk, (0..BS.blocks_for(d.bytes)).collect()).expect("source read");
        let nonzero: Vec<(u64, Vec<u8>)> = blocks.into_iter().filter(|(_, b)| b.iter().any(|&x| x != 0)).collect();
        for batch in nonzero.chunks(2) {
            assert_eq!(write(&host, TARGET, disk, batch.to_vec()), Ok(HypervisorReply::BlocksWritten));
        }
    }
    for ((_, source), name) in contents().iter().zip(["disk0.img", "disk1.img"]) {
        assert_eq!(&fs::read(target.join(name)).expect("restored image"), source, "{name} is byte-identical");
    }
    let allocated = || fs::metadata(target.join("disk1.img")).expect("image").blocks();
    let before = allocated();
    assert_eq!(write(&host, TARGET, 1, vec![(0, vec![0; BLOCK])]), Ok(HypervisorReply::BlocksWritten));
    let mut expected = contents()[1].1.clone();
    expected[..BLOCK].fill(0);
    assert_eq!(fs::read(target.join("disk1.img")).expect("image"), expected, "a zero block replaced data");
    assert!(allocated() < before, "the zero block became a hole ({before} -> {} sectors)", allocated());
}

/// The same `CreateVm` again (a lost answer) succeeds while the VM is
/// untouched, also after a restart; once written to, or asked with other
/// disks, it is refused.
#[test]
fn create_vm_again_is_idempotent_until_written() {
    let store = Datastore::new();
    let host = store.open(SnapshotPolicy::IdentityOnly);
    assert_eq!(create(&host, TARGET, NAME, sizes()), Ok(HypervisorReply::VmCreated));
    // As if a crash had cut the creation short after recording the VM.
    fs::remove_file(store.path().join(NAME).join("disk1.img")).expect("remove an image");
    assert_eq!(create(&host, TARGET, NAME, sizes()), Ok(HypervisorReply::VmCreated));
    assert_eq!(fs::metadata(store.path().join(NAME).join("disk1.img")).map(|m| m.len()).ok(), Some(DISK1_LEN as u64), "finished");
    let err = create(&host, TARGET, NAME, vec![DISK0_LEN as u64]).expect_err("other disks");
    assert!(err.contains("already exists"), "{err}");
    drop(host);
    let host = store.open(SnapshotPolicy::IdentityOnly);
    assert_eq!(create(&host, TARGET, NAME, sizes()), Ok(HypervisorReply::VmCreated), "after a restart");
    assert_eq!(
        write(&host, TARGET, 1, vec![(2, text(BLOCK))]),
        Ok(HypervisorReply::BlocksWritten),
        "a created VM is known after a restart"
    );
    let err = create(&host, TARGET, NAME, sizes()).expect_err("written to since");
    assert!(err.contains("written to since"), "{err}");
}

/// A restore never lands on an existing VM or folder, nor outside the
/// datastore; the refusal names what is in the way and changes nothing.
#[test]
fn create_vm_refuses_existing_vms_and_folders() {
    let store = Datastore::new();
    let host = store.open(SnapshotPolicy::IdentityOnly);
    fs::create_dir(store.path().join("junk")).expect("folder");
    fs::write(store.path().join("junk/old.img"), b"precious").expect("file");
    let before = store.tree();
    let cases: [(VmId, &str, &str); 6] = [
        (TARGET, "junk", "not empty"),
        (TARGET, FOLDER, "belongs to vm1"),
        (VM, NAME, "already exists"),
        (TARGET, "../outside", "starts with a dot"),
        (TARGET, "web/inside", "path separator"),
        (TARGET, ".blockferry", "starts with a dot"),
    ];
    for (vm, name, why) in cases {
        let err = create(&host, vm, name, sizes()).expect_err(name);
        assert!(err.contains(why), "{name}: {err}");
    }
    assert_eq!(store.tree(), before);
    let err = write(&host, TARGET, 0, vec![(0, vec![1; BLOCK])]).expect_err("no VM was created");
    assert!(err.contains("not a VM"), "{err}");
}

/// An empty folder (made ahead by an operator) is a fine target.
#[test]
fn create_vm_takes_an_empty_folder() {
    let store = Datastore::new();
    let host = store.open(SnapshotPolicy::IdentityOnly);
    fs::create_dir(store.path().join(NAME)).expect("empty folder");
    assert_eq!(create(&host, TARGET, NAME, vec![4096]), Ok(HypervisorReply::VmCreated));
    assert_eq!(fs::metadata(store.path().join(NAME).join("disk0.img")).map(|m| m.len()).ok(), Some(4096));
}
