//! World tests: the hypervisor against a brute-force reading of its own
//! oracle, restores through resolved content, and the store's durability.

use super::contents::real_digest;
use super::*;
use crate::des::Services;
use bitvec::vec::BitVec;
use blockferry_core::hypervisor::{ChangedBlocks, HypervisorOp, HypervisorReply, SnapshotDisk};
use blockferry_core::manifest::{DiskManifest, Manifest};
use blockferry_core::payload::{self, BlockData, BlockPayload};
use blockferry_core::storage::{StorageOp, StorageReply};
use blockferry_core::{BlockSize, ChangeId, Compression, Digest, JobId, RequestId, RestorePointId, SessionId, SnapshotId, VmId};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

fn kib64() -> BlockSize {
    BlockSize::new(64 * 1024).unwrap()
}

fn scenario(payload: &str, cbt_h1: bool) -> Scenario {
    let text = format!(
        r#"
name = "world-test"
duration = "10h"
payload = "{payload}"
block_size = "64KiB"

[[site]]
name = "a"

[[host]]
name = "h1"
site = "a"
cbt = {cbt_h1}
[[host]]
name = "h2"
site = "a"

[[vm]]
name = "v"
host = "h1"
disks = ["16MiB", "1000000B"]
zero_fraction = 0.3
swap_fraction = 0.1
compressibility = 0.4
workload = {{ writes_per_hour = 3000, hot_fraction = 0.3 }}

[[vm]]
name = "quiet"
host = "h2"
disks = ["4MiB"]

[[repository]]
name = "r"
site = "a"
capacity = "1GiB"

[[job]]
name = "small"
kind = "backup"
vms = ["v"]
repository = "r"
schedule = "every 1h"

[[job]]
name = "large"
kind = "backup"
vms = ["v"]
repository = "r"
schedule = "every 1h"
block_size = "256KiB"
"#
    );
    Scenario::from_str(&text, "world-test.toml").unwrap()
}

fn hypervisors(payload: &str) -> Hypervisors {
    Hypervisors::from_scenario(&scenario(payload, true), 42).unwrap()
}

/// `secs` into a run that starts at the default start.
fn at(secs: u64) -> Timestamp {
    crate::scenario::DEFAULT_START + Duration::from_secs(secs)
}

fn call(hv: &mut Hypervisors, now: Timestamp, host: &str, op: HypervisorOp) -> (Timestamp, Result<HypervisorReply, String>) {
    let (t, done) = hv.handle(now, Access::Host(host), blockferry_core::hypervisor::HypervisorRequest { id: RequestId(1), op });
    assert_eq!(done.id, RequestId(1));
    (t, done.result)
}

fn snapshot(hv: &mut Hypervisors, now: Timestamp, vm: VmId) -> (SnapshotId, Vec<SnapshotDisk>, Timestamp) {
    let (t, r) = call(hv, now, hv.vm_host(vm).unwrap().to_string().as_str(), HypervisorOp::CreateSnapshot { vm });
    // The caller learns of the snapshot at `t`; the world catches up to it
    // as the engine's next request would make it.
    hv.advance_to(t);
    match r {
        Ok(HypervisorReply::SnapshotCreated { snap, disks }) => (snap, disks, t),
        other => panic!("{other:?}"),
    }
}

fn changed(hv: &mut Hypervisors, now: Timestamp, snap: SnapshotId, disk: u16, since: Option<ChangeId>, bs: BlockSize) -> ChangedBlocks {
    match call(hv, now, "h1", HypervisorOp::ChangedBlocks { snap, disk, since, block_size: bs }).1 {
        Ok(HypervisorReply::ChangedBlocks(c)) => c,
        other => panic!("{other:?}"),
    }
}

fn read(
    hv: &mut Hypervisors,
    now: Timestamp,
    host: &str,
    snap: SnapshotId,
    disk: u16,
    bs: BlockSize,
    blocks: Vec<u64>,
) -> Vec<(u64, BlockData)> {
    match call(hv, now, host, HypervisorOp::ReadBlocks { snap, disk, block_size: bs, blocks }).1 {
        Ok(HypervisorReply::BlocksRead(b)) => b,
        other => panic!("{other:?}"),
    }
}

fn known(c: ChangedBlocks) -> (BitVec, BitVec) {
    match c {
        ChangedBlocks::Known { changed, swap } => (changed, swap),
        other => panic!("expected a known answer, got {other:?}"),
    }
}

fn diff(a: &[Digest], b: &[Digest]) -> BitVec {
    a.iter().zip(b).map(|(x, y)| x != y).collect()
}

#[test]
fn cbt_is_exact_against_the_oracle_at_every_block_size() {
    for mode in ["synthetic", "real"] {
        let mut hv = hypervisors(mode);
        let vm = hv.vm_id("v").unwrap();
        let (s1, d1, t1) = snapshot(&mut hv, at(600), vm);
        let (s2, d2, t2) = snapshot(&mut hv, at(3600), vm);
        assert!(hv.guest_writes() > 2000, "about 3000 writes an hour: {}", hv.guest_writes());
        for disk in 0..2u16 {
            for bs in [kib64(), BlockSize::WAN] {
                let since = d1[disk as usize].change_id;
                let (cbt, swap) = known(changed(&mut hv, t2, s2, disk, since, bs));
                let before = hv.snapshot_digests(s1, disk, bs).unwrap();
                let after = hv.snapshot_digests(s2, disk, bs).unwrap();
                // Guest writes always change content, so CBT equals the
                // content diff exactly — outside swap, which the oracle
                // reports as zeros whatever happened there.
                let truth = diff(&before, &after);
                let outside_swap = |bits: &BitVec| -> BitVec { bits.iter().zip(swap.iter()).map(|(c, s)| *c && !*s).collect() };
                assert_eq!(outside_swap(&cbt), truth, "{mode} disk {disk} bs {}", bs.bytes());
                assert!(disk == 1 || truth.count_ones() > 10, "{}", truth.count_ones());
                assert_eq!(hv.true_changes(s1, s2, disk, bs).unwrap(), truth);
            }
        }
        assert!(t1 < t2);
        assert_ne!(d1[0].change_id, d2[0].change_id);
        assert_eq!(d1[0].bytes, 16 << 20);
        assert_eq!(d1[1].bytes, 1_000_000);
    }
}

#[test]
fn snapshots_are_isolated_from_guest_writes() {
    for mode in ["synthetic", "real"] {
        let mut hv = hypervisors(mode);
        let vm = hv.vm_id("v").unwrap();
        let (s1, _, t1) = snapshot(&mut hv, at(60), vm);
        let frozen = hv.snapshot_digests(s1, 0, kib64()).unwrap();
        // Hours of guest writes later, the snapshot still reads as frozen.
        let later = at(5 * 3600);
        let blocks: Vec<u64> = (0..frozen.len() as u64).collect();
        let data = read(&mut hv, later, "h1", s1, 0, kib64(), blocks);
        let (_, swap) = known(changed(&mut hv, later, s1, 0, None, kib64()));
        for (b, d) in &data {
            let digest = match d {
                BlockData::Bytes(bytes) => real_digest(bytes),
                BlockData::Synthetic(s) => s.digest,
            };
            // The oracle reports swap as zeros; reads return what is there.
            if !swap[*b as usize] {
                assert_eq!(digest, frozen[*b as usize], "{mode} block {b}");
            }
        }
        hv.advance_to(later);
        let live = hv.vm_disk_digests(vm, 0, kib64()).unwrap();
        assert!(diff(&frozen, &live).count_ones() > 50, "{mode}: the live disk moved on");
        assert!(t1 > at(60));
    }
}

#[test]
fn zero_swap_and_allocation_follow_the_vm_settings() {
    let mut hv = hypervisors("synthetic");
    let vm = hv.vm_id("v").unwrap();
    let (s, _, t) = snapshot(&mut hv, Timestamp::ZERO, vm);
    let (allocated, swap) = known(changed(&mut hv, t, s, 0, None, kib64()));
    let n = allocated.len() as f64;
    assert_eq!(allocated.len(), 256);
    let zero_share = 1.0 - allocated.count_ones() as f64 / n;
    assert!((0.15..0.45).contains(&zero_share), "zero share {zero_share}");
    let swap_share = swap.count_ones() as f64 / n;
    assert!((0.09..0.11).contains(&swap_share), "swap share {swap_share}");
    // Unallocated blocks are exactly the zero digests of the oracle (no
    // guest writes yet at time zero... apart from the 3 s snapshot delay).
    let digests = hv.snapshot_digests(s, 0, kib64()).unwrap();
    for (i, d) in digests.iter().enumerate() {
        if !allocated[i] {
            assert!(d.is_zero_block(), "block {i}");
        }
        if swap[i] {
            assert!(d.is_zero_block(), "swap block {i} is restored as zeros");
        }
    }
    // Zero decisions are per largest job block, so the large job sees the
    // same zero share.
    let large = hv.snapshot_digests(s, 0, BlockSize::WAN).unwrap();
    let small_zero = digests.iter().filter(|d| d.is_zero_block()).count() as f64 / digests.len() as f64;
    let large_zero = large.iter().filter(|d| d.is_zero_block()).count() as f64 / large.len() as f64;
    assert!((small_zero - large_zero).abs() < 0.05, "{small_zero} vs {large_zero}");
}

#[test]
fn real_bytes_hash_to_the_oracle_and_short_blocks_are_short() {
    let mut hv = hypervisors("real");
    let vm = hv.vm_id("v").unwrap();
    let (s, _, t) = snapshot(&mut hv, at(1800), vm);
    let oracle = hv.snapshot_digests(s, 1, BlockSize::WAN).unwrap();
    assert_eq!(oracle.len(), 4, "1 000 000 bytes in 256 KiB blocks");
    let data = read(&mut hv, t, "h1", s, 1, BlockSize::WAN, vec![0, 1, 2, 3]);
    let (_, swap) = known(changed(&mut hv, t, s, 1, None, BlockSize::WAN));
    for (b, d) in &data {
        let BlockData::Bytes(bytes) = d else { panic!("real mode reads bytes") };
        let expected_len = if *b == 3 { 1_000_000 - 3 * 262_144 } else { 262_144 };
        assert_eq!(bytes.len(), expected_len);
        if !swap[*b as usize] {
            assert_eq!(real_digest(bytes), oracle[*b as usize]);
        }
        if real_digest(bytes).is_zero_block() {
            assert!(bytes.iter().all(|&x| x == 0));
        }
    }
    // The same content in smaller blocks concatenates to the same bytes.
    let small = read(&mut hv, t, "h1", s, 1, kib64(), (0..4).collect());
    let joined: Vec<u8> = small.iter().flat_map(|(_, d)| if let BlockData::Bytes(b) = d { b.clone() } else { vec![] }).collect();
    assert_eq!(&joined, data.iter().find(|(b, _)| *b == 0).map(|(_, d)| if let BlockData::Bytes(b) = d { b } else { panic!() }).unwrap());
}

/// Restores `snap` of `source` into a new vm on `host` the way a restore
/// does: non-zero, non-swap blocks only.
fn restore(hv: &mut Hypervisors, now: Timestamp, snap: SnapshotId, source: VmId, target: VmId, host: &str, bs: BlockSize) {
    let sizes = hv.vm_disks(source).unwrap();
    let source_host = hv.vm_host(source).unwrap().to_string();
    let (_, r) = call(hv, now, host, HypervisorOp::CreateVm { vm: target, name: "restored".into(), disks: sizes.clone() });
    assert_eq!(r, Ok(HypervisorReply::VmCreated));
    for disk in 0..sizes.len() as u16 {
        let (_, swap) = match changed(hv, now, snap, disk, None, bs) {
            ChangedBlocks::Known { changed, swap } => (changed, swap),
            ChangedBlocks::Unavailable { swap } => (BitVec::new(), swap),
        };
        let wanted: Vec<u64> = (0..swap.len() as u64).filter(|&b| !swap[b as usize]).collect();
        let data = read(hv, now, &source_host, snap, disk, bs, wanted);
        let blocks: Vec<(u64, BlockData)> = data.into_iter().filter(|(_, d)| !d.digest().is_zero_block()).collect();
        let (_, r) = call(hv, now, host, HypervisorOp::WriteBlocks { vm: target, disk, block_size: bs, blocks });
        assert_eq!(r, Ok(HypervisorReply::BlocksWritten));
    }
}

#[test]
fn restored_vms_read_back_the_snapshot_at_any_block_size() {
    for mode in ["synthetic", "real"] {
        let mut hv = hypervisors(mode);
        let vm = hv.vm_id("v").unwrap();
        let (s, _, t) = snapshot(&mut hv, at(7200), vm);
        let target = VmId(100);
        // Restored at 64 KiB, checked at 64 KiB and at 256 KiB: content
        // keeps its identity, so digests agree across block sizes too.
        restore(&mut hv, t, s, vm, target, "h2", kib64());
        for disk in 0..2 {
            for bs in [kib64(), BlockSize::WAN] {
                assert_eq!(hv.vm_disk_digests(target, disk, bs), hv.snapshot_digests(s, disk, bs), "{mode} disk {disk} {}", bs.bytes());
            }
        }
        // A restore of the restored vm's own snapshot dedupes against the
        // original: same digests.
        let (s2, _, t2) = snapshot(&mut hv, t + Duration::from_secs(10), target);
        let original = hv.snapshot_digests(s, 0, kib64()).unwrap();
        let data = read(&mut hv, t2, "h2", s2, 0, kib64(), (0..original.len() as u64).collect());
        for (b, d) in data {
            assert_eq!(d.digest(), original[b as usize], "{mode} block {b}");
        }
    }
}

#[test]
fn mixed_content_survives_a_round_trip() {
    // A replica at 64 KiB gets guest writes of its own (after failover),
    // then is read at 256 KiB: blocks mixing both origins must still
    // restore elsewhere to the same digests.
    let mut hv = hypervisors("synthetic");
    let vm = hv.vm_id("v").unwrap();
    let (s, _, t) = snapshot(&mut hv, at(3600), vm);
    let replica = VmId(200);
    restore(&mut hv, t, s, vm, replica, "h2", kib64());
    hv.set_workload(t, replica, Some(crate::scenario::Workload { writes_per_hour: 150, hot_fraction: 0.0 })).unwrap();
    let (s2, _, t2) = snapshot(&mut hv, t + Duration::from_secs(3600), replica);
    let expected = hv.snapshot_digests(s2, 0, BlockSize::WAN).unwrap();
    let mixed = expected.iter().filter(|d| !d.is_zero_block() && !hv.is_range_digest(d)).count();
    assert!(mixed > 5, "blocks of two origins: {mixed}");
    let copy = VmId(201);
    let sizes = hv.vm_disks(replica).unwrap();
    call(&mut hv, t2, "h1", HypervisorOp::CreateVm { vm: copy, name: "copy".into(), disks: sizes }).1.unwrap();
    let data = read(&mut hv, t2, "h2", s2, 0, BlockSize::WAN, (0..expected.len() as u64).collect());
    let blocks: Vec<(u64, BlockData)> = data.into_iter().filter(|(_, d)| !d.digest().is_zero_block()).collect();
    call(&mut hv, t2, "h1", HypervisorOp::WriteBlocks { vm: copy, disk: 0, block_size: BlockSize::WAN, blocks }).1.unwrap();
    assert_eq!(hv.vm_disk_digests(copy, 0, BlockSize::WAN).unwrap(), expected);
    assert_eq!(hv.vm_disk_digests(copy, 0, kib64()), hv.snapshot_digests(s2, 0, kib64()));
}

#[test]
fn untraceable_synthetic_blocks_read_back_as_written() {
    let mut hv = hypervisors("synthetic");
    let target = VmId(300);
    call(&mut hv, Timestamp::ZERO, "h2", HypervisorOp::CreateVm { vm: target, name: "t".into(), disks: vec![1 << 20] }).1.unwrap();
    let foreign = Digest([9; 32]);
    let block = BlockData::Synthetic(payload::SyntheticBlock { digest: foreign, raw_len: 262_144, compressibility: 30 });
    call(
        &mut hv,
        Timestamp::ZERO,
        "h2",
        HypervisorOp::WriteBlocks { vm: target, disk: 0, block_size: BlockSize::WAN, blocks: vec![(2, block)] },
    )
    .1
    .unwrap();
    let digests = hv.vm_disk_digests(target, 0, BlockSize::WAN).unwrap();
    assert_eq!(digests, [Digest::ZERO_BLOCK, Digest::ZERO_BLOCK, foreign, Digest::ZERO_BLOCK]);
    // Seen through a finer block size it is other content (its parts).
    let fine = hv.vm_disk_digests(target, 0, kib64()).unwrap();
    assert!(fine[8..12].iter().all(|d| !d.is_zero_block() && *d != foreign));
}

#[test]
fn cbt_reset_miss_and_hosts_without_cbt() {
    let mut hv = hypervisors("synthetic");
    let vm = hv.vm_id("v").unwrap();
    let (_, d1, _) = snapshot(&mut hv, at(0), vm);
    let (s2, d2, t2) = snapshot(&mut hv, at(3600), vm);
    hv.cbt_reset(vm).unwrap();
    let c = changed(&mut hv, t2, s2, 0, d1[0].change_id, kib64());
    assert!(matches!(c, ChangedBlocks::Unavailable { ref swap } if swap.count_ones() > 0), "{c:?}");
    // The pending reset is per disk: disk 1 is unavailable once too.
    assert!(matches!(changed(&mut hv, t2, s2, 1, d1[1].change_id, kib64()), ChangedBlocks::Unavailable { .. }));
    // Ids from before the reset stay invalid ...
    assert!(matches!(changed(&mut hv, t2, s2, 0, d1[0].change_id, kib64()), ChangedBlocks::Unavailable { .. }));
    // ... and the next snapshot's id works again.
    let (s3, d3, t3) = snapshot(&mut hv, at(7200), vm);
    let (s4, _, t4) = snapshot(&mut hv, at(9000), vm);
    let _ = (s3, t3);
    let (honest, _) = known(changed(&mut hv, t4, s4, 0, d3[0].change_id, kib64()));
    assert!(honest.count_ones() > 5);

    // A lying CBT leaves out exactly the configured count, once, and says so.
    hv.cbt_miss(vm, 3).unwrap();
    let (lie, _) = known(changed(&mut hv, t4, s4, 0, d3[0].change_id, kib64()));
    assert_eq!(lie.count_ones() + 3, honest.count_ones());
    let miss = &hv.cbt_misses()[0];
    assert_eq!((miss.vm, miss.snap, miss.disk, miss.omitted.len()), (vm, s4, 0, 3));
    for &b in &miss.omitted {
        assert!(honest[b as usize] && !lie[b as usize]);
    }
    let (again, _) = known(changed(&mut hv, t4, s4, 0, d3[0].change_id, kib64()));
    assert_eq!(again, honest, "the lie is told once");
    let _ = d2;

    // A host without CBT: no change ids, always unavailable.
    let mut hv = Hypervisors::from_scenario(&scenario("synthetic", false), 42).unwrap();
    let vm = hv.vm_id("v").unwrap();
    let (s, disks, t) = snapshot(&mut hv, at(10), vm);
    assert!(disks.iter().all(|d| d.change_id.is_none()));
    assert!(matches!(changed(&mut hv, t, s, 0, None, kib64()), ChangedBlocks::Unavailable { .. }));
}

#[test]
fn errors_name_what_is_wrong_and_never_panic() {
    let mut hv = hypervisors("synthetic");
    let vm = hv.vm_id("v").unwrap();
    let quiet = hv.vm_id("quiet").unwrap();
    let (s, _, t) = snapshot(&mut hv, at(10), vm);
    let err = |r: (Timestamp, Result<HypervisorReply, String>)| r.1.unwrap_err();
    let e = err(call(&mut hv, t, "h1", HypervisorOp::ReadBlocks { snap: SnapshotId(999), disk: 0, block_size: kib64(), blocks: vec![0] }));
    assert!(e.contains("no snapshot snap999"), "{e}");
    let e = err(call(&mut hv, t, "h1", HypervisorOp::ReadBlocks { snap: s, disk: 0, block_size: kib64(), blocks: vec![0, 256] }));
    assert!(e.contains("block 256") && e.contains("out of range"), "{e}");
    let e = err(call(&mut hv, t, "h1", HypervisorOp::ReadBlocks { snap: s, disk: 7, block_size: kib64(), blocks: vec![0] }));
    assert!(e.contains("no disk 7"), "{e}");
    let e = err(call(
        &mut hv,
        t,
        "h1",
        HypervisorOp::ReadBlocks { snap: s, disk: 0, block_size: BlockSize::new(4096).unwrap(), blocks: vec![0] },
    ));
    assert!(e.contains("finer than"), "{e}");
    let e = err(call(&mut hv, t, "h2", HypervisorOp::ReadBlocks { snap: s, disk: 0, block_size: kib64(), blocks: vec![0] }));
    assert!(e.contains("out of this node's reach"), "{e}");
    let e = err(call(&mut hv, t, "h1", HypervisorOp::CreateSnapshot { vm: quiet }));
    assert!(e.contains("out of this node's reach"), "{e}");
    let e = err(call(&mut hv, t, "h1", HypervisorOp::CreateVm { vm, name: "dup".into(), disks: vec![1] }));
    assert!(e.contains("already exists"), "{e}");
    let e = err(call(&mut hv, t, "h1", HypervisorOp::WriteBlocks { vm: VmId(77), disk: 0, block_size: kib64(), blocks: vec![] }));
    assert!(e.contains("no vm vm77"), "{e}");
    let bad = BlockData::Bytes(vec![1; 10]);
    let e = err(call(&mut hv, t, "h1", HypervisorOp::WriteBlocks { vm, disk: 0, block_size: kib64(), blocks: vec![(0, bad)] }));
    assert!(e.contains("real bytes written in a synthetic-payload world") || e.contains("expected"), "{e}");
    let short = BlockData::Synthetic(payload::SyntheticBlock { digest: Digest([1; 32]), raw_len: 10, compressibility: 0 });
    let before = hv.vm_disk_digests(vm, 0, kib64());
    let good = BlockData::Synthetic(payload::SyntheticBlock { digest: Digest([1; 32]), raw_len: 65536, compressibility: 0 });
    let e =
        err(call(&mut hv, t, "h1", HypervisorOp::WriteBlocks { vm, disk: 0, block_size: kib64(), blocks: vec![(0, good), (1, short)] }));
    assert!(e.contains("block 1") && e.contains("holds 10 bytes, expected 65536"), "{e}");
    assert_eq!(hv.vm_disk_digests(vm, 0, kib64()), before, "a bad request writes nothing");
    // A snapshot is unreadable once committed, but the oracle keeps it.
    assert_eq!(call(&mut hv, t, "h1", HypervisorOp::CommitSnapshot { snap: s }).1, Ok(HypervisorReply::SnapshotCommitted));
    let e = err(call(&mut hv, t, "h1", HypervisorOp::ReadBlocks { snap: s, disk: 0, block_size: kib64(), blocks: vec![0] }));
    assert!(e.contains("committed"), "{e}");
    // Removing it again is no error (an answer lost with a connection is
    // asked again), and changes nothing.
    assert_eq!(call(&mut hv, t, "h1", HypervisorOp::CommitSnapshot { snap: s }).1, Ok(HypervisorReply::SnapshotCommitted));
    assert!(hv.snapshot(s).unwrap().committed_at.is_some());
    assert_eq!(hv.snapshot_digests(s, 0, kib64()).map(|d| d.len()), Some(256));
    // Requests for a snapshot still being created wait for nothing: error.
    let (s_new, _) = match call(&mut hv, t, "h1", HypervisorOp::CreateSnapshot { vm }) {
        (done, Ok(HypervisorReply::SnapshotCreated { snap, .. })) => (snap, done),
        other => panic!("{other:?}"),
    };
    let e = err(call(&mut hv, t, "h1", HypervisorOp::ChangedBlocks { snap: s_new, disk: 0, since: None, block_size: kib64() }));
    assert!(e.contains("still being created"), "{e}");
}

#[test]
fn datastore_io_is_serialised_per_host() {
    let mut hv = hypervisors("synthetic");
    let vm = hv.vm_id("v").unwrap();
    let (s, _, t) = snapshot(&mut hv, at(10), vm);
    let blocks: Vec<u64> = (0..100).collect();
    let (first, _) = call(&mut hv, t, "h1", HypervisorOp::ReadBlocks { snap: s, disk: 0, block_size: kib64(), blocks: blocks.clone() });
    let (second, _) = call(&mut hv, t, "h1", HypervisorOp::ReadBlocks { snap: s, disk: 0, block_size: kib64(), blocks });
    let one = first - t;
    // 6.5 MB at 400 MB/s plus 1 ms.
    assert!((Duration::from_millis(16)..Duration::from_millis(18)).contains(&one), "{one:?}");
    assert_eq!(second - t, one * 2);
    // A direct-mode proxy reaches the same datastore.
    let hosts = vec!["h1".to_string()];
    let (_, done) = hv.handle(
        t,
        Access::Datastore(&hosts),
        blockferry_core::hypervisor::HypervisorRequest {
            id: RequestId(5),
            op: HypervisorOp::ReadBlocks { snap: s, disk: 0, block_size: kib64(), blocks: vec![1] },
        },
    );
    assert!(done.result.is_ok());
}

#[test]
fn same_seed_same_world_other_seed_other_content() {
    let digests = |seed| {
        let mut hv = Hypervisors::from_scenario(&scenario("synthetic", true), seed).unwrap();
        let vm = hv.vm_id("v").unwrap();
        let (s, _, _) = snapshot(&mut hv, at(5000), vm);
        (hv.snapshot_digests(s, 0, kib64()).unwrap(), hv.guest_writes())
    };
    assert_eq!(digests(1), digests(1));
    assert_ne!(digests(1).0, digests(2).0);
}

// ----- store -----

fn req(op: StorageOp) -> blockferry_core::storage::StorageRequest {
    blockferry_core::storage::StorageRequest { id: RequestId(9), op }
}

fn block(n: u8, len: u32) -> BlockPayload {
    BlockPayload::Synthetic { digest: Digest([n; 32]), raw_len: len, stored_len: len, compressibility: 0 }
}

fn manifest(point: u64, digests: Vec<Digest>) -> Manifest {
    Manifest {
        point: RestorePointId(point),
        job: JobId(0),
        session: SessionId(point),
        vm: VmId(0),
        snapshot_at: Timestamp::ZERO,
        snapshot: SnapshotId(point),
        parent: None,
        disks: vec![DiskManifest { index: 0, bytes: 1 << 20, change_id: None, block_size: BlockSize::LOCAL, digests: digests.into() }],
    }
}

fn run(store: &mut Store, now: Timestamp, op: StorageOp) -> (Timestamp, Result<StorageReply, blockferry_core::storage::StorageError>) {
    let (t, done) = store.handle(now, req(op));
    (t, done.result)
}

#[test]
fn store_durability_across_crashes() {
    let mut store = Store::new("r", 1 << 30);
    let t0 = Timestamp::ZERO;
    let (t, r) = run(&mut store, t0, StorageOp::PutBlocks(vec![block(1, 1000), block(2, 1000)]));
    assert_eq!(r, Ok(StorageReply::Done));
    let (synced, _) = run(&mut store, t, StorageOp::Sync);
    let (t, _) = run(&mut store, synced, StorageOp::PutManifest(manifest(1, vec![Digest([1; 32]), Digest([2; 32])])));
    // Unsynced: a third block and a manifest delete.
    assert!(run(&mut store, t, StorageOp::PutBlocks(vec![block(3, 500)])).1.is_ok());
    assert!(run(&mut store, t, StorageOp::DeleteManifest(RestorePointId(1))).1.is_ok());
    assert!(store.has_block(&Digest([3; 32])));
    assert_eq!(store.manifests().count(), 0);
    store.crash(t + Duration::from_secs(1));
    assert!(!store.has_block(&Digest([3; 32])), "unsynced put lost");
    assert_eq!(store.manifests().count(), 1, "unsynced manifest delete lost");
    let (_, r) = run(&mut store, t + Duration::from_secs(2), StorageOp::Recover);
    let Ok(StorageReply::Recovered { manifests, blocks }) = r else { panic!("{r:?}") };
    assert_eq!(manifests, vec![manifest(1, vec![Digest([1; 32]), Digest([2; 32])])]);
    assert_eq!(blocks, vec![Digest([1; 32]), Digest([2; 32])]);
    assert_eq!(store.stats().bytes_stored, 2000);
    assert_eq!(store.stats().crashes, 1);

    // A crash before a sync or manifest completes loses it; after, keeps it.
    let mut store = Store::new("r", 1 << 30);
    let (t, _) = run(&mut store, t0, StorageOp::PutBlocks(vec![block(1, 1_000_000)]));
    let (synced, _) = run(&mut store, t, StorageOp::Sync);
    assert!(synced > t);
    store.crash(Timestamp(synced.0 - 1));
    assert!(!store.has_block(&Digest([1; 32])), "sync not complete: block lost");
    let mut store = Store::new("r", 1 << 30);
    let (t, _) = run(&mut store, t0, StorageOp::PutBlocks(vec![block(1, 1_000_000)]));
    let (synced, _) = run(&mut store, t, StorageOp::Sync);
    // The manifest is issued before the sync completes and queues behind it.
    let (written, _) = run(&mut store, t, StorageOp::PutManifest(manifest(7, vec![Digest([1; 32])])));
    assert!(written > synced);
    store.crash(Timestamp(written.0 - 1));
    assert!(store.has_block(&Digest([1; 32])), "synced block survives");
    assert_eq!(store.manifests().count(), 0, "manifest not complete: gone whole");
    assert_eq!(store.durable_manifests().count(), 0);
}

#[test]
fn store_capacity_full_and_damage() {
    let mut store = Store::new("r", 2500);
    let t = Timestamp::ZERO;
    assert_eq!(run(&mut store, t, StorageOp::PutBlocks(vec![block(1, 1000), block(2, 1000)])).1, Ok(StorageReply::Done));
    // Over capacity: refused whole, earlier blocks kept.
    let r = run(&mut store, t, StorageOp::PutBlocks(vec![block(3, 100), block(4, 1000)])).1;
    assert_eq!(r, Err(blockferry_core::storage::StorageError::Full));
    assert!(!store.has_block(&Digest([3; 32])));
    assert!(store.has_block(&Digest([1; 32])) && store.has_block(&Digest([2; 32])));
    // Re-putting what is stored costs nothing; zero blocks are never stored.
    let zero = BlockPayload::Synthetic { digest: Digest::ZERO_BLOCK, raw_len: 4096, stored_len: 0, compressibility: 100 };
    assert_eq!(run(&mut store, t, StorageOp::PutBlocks(vec![block(1, 1000), zero, block(3, 400)])).1, Ok(StorageReply::Done));
    assert_eq!(store.stats().bytes_stored, 2400);
    assert!(!store.has_block(&Digest::ZERO_BLOCK));
    // Deleting frees space.
    assert!(run(&mut store, t, StorageOp::DeleteBlocks(vec![Digest([2; 32]), Digest([42; 32])])).1.is_ok());
    assert_eq!(store.stats().bytes_stored, 1400);
    // disk_full refuses writes, and stops doing so when cleared.
    store.set_full(true);
    assert!(run(&mut store, t, StorageOp::PutBlocks(vec![block(5, 1)])).1.is_err());
    assert!(run(&mut store, t, StorageOp::PutManifest(manifest(1, vec![]))).1.is_err());
    store.set_full(false);
    assert!(run(&mut store, t, StorageOp::PutBlocks(vec![block(5, 1)])).1.is_ok());
    assert_eq!(store.stats().puts_refused_full, 2);

    // Damage: reads report it in place; a fresh put repairs it.
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let damaged = store.corrupt(2, &mut rng);
    assert_eq!(damaged.len(), 2);
    let all = vec![Digest([1; 32]), Digest([3; 32]), Digest([5; 32]), Digest([6; 32])];
    let Ok(StorageReply::Blocks(got)) = run(&mut store, t, StorageOp::GetBlocks(all.clone())).1 else { panic!() };
    for (d, r) in all.iter().zip(&got) {
        match r {
            Err(blockferry_core::storage::StorageError::Damaged(x)) => assert!(damaged.contains(x) && x == d),
            Err(blockferry_core::storage::StorageError::Missing(x)) => assert_eq!(*x, Digest([6; 32])),
            Ok(p) => assert!(!damaged.contains(&p.digest())),
            Err(e) => panic!("{e}"),
        }
    }
    let repaired = damaged[0];
    let again = [block(1, 1000), block(3, 400), block(5, 1)].into_iter().find(|b| b.digest() == repaired).unwrap();
    assert!(run(&mut store, t, StorageOp::PutBlocks(vec![again])).1.is_ok());
    assert!(!store.is_damaged(&repaired));
    assert!(store.is_damaged(&damaged[1]));
}

#[test]
fn damaged_real_payloads_fail_to_decode_too() {
    let mut store = Store::new("r", 1 << 20);
    let bytes = b"some block content ".repeat(100);
    let p = payload::encode(&BlockData::Bytes(bytes), Compression::Optimal);
    let digest = p.digest();
    assert!(run(&mut store, Timestamp::ZERO, StorageOp::PutBlocks(vec![p])).1.is_ok());
    store.corrupt(1, &mut ChaCha8Rng::seed_from_u64(1));
    assert!(store.is_damaged(&digest));
    let Ok(StorageReply::Blocks(got)) = run(&mut store, Timestamp::ZERO, StorageOp::GetBlocks(vec![digest])).1 else { panic!() };
    assert_eq!(got, vec![Err(blockferry_core::storage::StorageError::Damaged(digest))]);
}

#[test]
fn world_routes_requests_by_binding() {
    let s = scenario("synthetic", true);
    let mut world = World::from_scenario(&s, 5).unwrap();
    world.bind(NodeId(1), Binding::Host("h1".into()));
    world.bind(NodeId(3), Binding::Repository("r".into()));
    let vm = world.hypervisors().vm_id("v").unwrap();
    let hv_req = |op| blockferry_core::hypervisor::HypervisorRequest { id: RequestId(2), op };
    let (_, done) = world.hypervisor(Timestamp::ZERO, NodeId(1), hv_req(HypervisorOp::CreateSnapshot { vm }));
    assert!(matches!(done.result, Ok(HypervisorReply::SnapshotCreated { .. })));
    let (_, done) = world.hypervisor(Timestamp::ZERO, NodeId(3), hv_req(HypervisorOp::CreateSnapshot { vm }));
    assert!(done.result.unwrap_err().contains("no hypervisor access"));
    let (_, done) = world.storage(Timestamp::ZERO, NodeId(3), req(StorageOp::PutBlocks(vec![block(1, 10)])));
    assert_eq!(done.result, Ok(StorageReply::Done));
    assert_eq!(world.store("r").unwrap().stats().bytes_stored, 10);
    let (_, done) = world.storage(Timestamp::ZERO, NodeId(1), req(StorageOp::Sync));
    assert!(done.result.is_err());

    use rand::RngCore;
    assert_eq!(world.fault_rng("corrupt_block", 0).next_u64(), world.fault_rng("corrupt_block", 0).next_u64());
    assert_ne!(world.fault_rng("corrupt_block", 0).next_u64(), world.fault_rng("corrupt_block", 1).next_u64());
    let mut rng = world.fault_rng("corrupt_block", 0);
    assert_eq!(world.store_mut("r").unwrap().corrupt(5, &mut rng).len(), 1, "only one block stored");

    let shared = std::rc::Rc::new(std::cell::RefCell::new(world));
    let mut engine_side: Box<dyn Services> = Box::new(shared.clone());
    let (_, done) = engine_side.storage(Timestamp::ZERO, NodeId(3), req(StorageOp::Sync));
    assert!(done.result.is_ok());
    shared.borrow_mut().store_mut("r").unwrap().crash(Timestamp(u64::MAX / 2));
    assert_eq!(shared.borrow().store("r").unwrap().stats().bytes_durable, 10);
}

/// A 2 TiB disk costs nothing until written, and a full oracle pass over it
/// takes about a second (`cargo test -p blockferry-sim --lib -- --ignored`).
#[test]
#[ignore]
fn large_disks_are_cheap() {
    let text = r#"
name = "big"
duration = "10h"
[[site]]
name = "a"
[[host]]
name = "h1"
site = "a"
[[vm]]
name = "v"
host = "h1"
disks = ["2TiB"]
zero_fraction = 0.3
swap_fraction = 0.02
workload = { writes_per_hour = 100000, hot_fraction = 0.1 }
"#;
    let s = Scenario::from_str(text, "big.toml").unwrap();
    let mut hv = Hypervisors::from_scenario(&s, 1).unwrap();
    let vm = hv.vm_id("v").unwrap();
    let (s1, d, t) = snapshot(&mut hv, at(3600), vm);
    let digests = hv.snapshot_digests(s1, 0, BlockSize::LOCAL).unwrap();
    assert_eq!(digests.len(), 2 << 20);
    let (s2, _, t2) = snapshot(&mut hv, at(7200), vm);
    let (c, _) = known(changed(&mut hv, t2, s2, 0, d[0].change_id, BlockSize::LOCAL));
    assert!(c.count_ones() > 50_000);
    let _ = t;
}
