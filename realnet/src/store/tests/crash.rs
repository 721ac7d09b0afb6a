//! Crash points: a history of ops runs against the store and a model of
//! what is durable (the simulator's semantics); then the process "dies":
//! the store is dropped without a sync and every pack loses an arbitrary
//! part of what was written to it since the last sync, torn garbage
//! possibly left in its place. After recovery the store holds exactly the
//! model's durable state, serves nothing half-written, and every committed
//! manifest's blocks are there.

use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;

#[derive(Debug, Clone)]
enum Step {
    Put(Vec<u64>),
    Delete(Vec<u64>),
    Sync,
    PutManifest(u64, usize),
    DeleteManifest(u64),
    /// A sync, then garbage collection (compaction moves live records).
    Collect,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => prop::collection::vec(0u64..30, 1..6).prop_map(Step::Put),
        3 => prop::collection::vec(0u64..30, 1..10).prop_map(Step::Delete),
        3 => Just(Step::Sync),
        1 => (1u64..5, 0usize..6).prop_map(|(p, n)| Step::PutManifest(p, n)),
        1 => (1u64..5).prop_map(Step::DeleteManifest),
        2 => Just(Step::Collect),
    ]
}

/// What follows the cut in a pack that lost its unsynced tail.
#[derive(Debug, Clone, Copy)]
enum Torn {
    Nothing,
    Zeros(usize),
    Noise(usize),
    /// Whole, valid records copied from earlier in the pack (pages of
    /// later writes that reached the disk while earlier ones did not).
    Records,
}

fn torn() -> impl Strategy<Value = Torn> {
    prop_oneof![Just(Torn::Nothing), (1usize..300).prop_map(Torn::Zeros), (1usize..300).prop_map(Torn::Noise), Just(Torn::Records)]
}

/// The simulator's store, reduced to what a crash keeps.
#[derive(Default)]
struct Model {
    live: BTreeMap<Digest, EncodedBlock>,
    durable: BTreeMap<Digest, EncodedBlock>,
    manifests: BTreeMap<u64, Manifest>,
    durable_manifests: BTreeMap<u64, Manifest>,
    /// Pack file sizes when the last sync completed.
    synced: BTreeMap<PathBuf, u64>,
}

impl Model {
    fn referenced(&self) -> impl Iterator<Item = Digest> + '_ {
        self.manifests.values().flat_map(|m| m.referenced())
    }
}

fn run(store: &mut Store, root: &Path, model: &mut Model, step: &Step) {
    match step {
        Step::Put(seeds) => {
            let new = blocks(seeds.iter().copied());
            ok(put(store, &new));
            model.live.extend(new.into_iter().map(|b| (b.digest, b)));
        }
        Step::Delete(seeds) => {
            // As the repository does: only blocks no point references.
            let referenced: Vec<Digest> = model.referenced().collect();
            let gone: Vec<Digest> = digests(&blocks(seeds.iter().copied())).into_iter().filter(|d| !referenced.contains(d)).collect();
            ok(store.apply(StorageOp::DeleteBlocks(gone.clone())));
            for d in gone {
                model.live.remove(&d);
            }
        }
        Step::Sync | Step::Collect => {
            if matches!(step, Step::Collect) {
                store.collect_garbage().expect("collection runs");
            } else {
                sync(store);
            }
            model.durable = model.live.clone();
            model.durable_manifests = model.manifests.clone();
            model.synced = pack_files(root).into_iter().map(|p| (p.clone(), std::fs::metadata(&p).map_or(0, |m| m.len()))).collect();
        }
        Step::PutManifest(point, take) => {
            // As the repository does: only blocks durable and live.
            let refs: Vec<Digest> = model.durable.keys().filter(|d| model.live.contains_key(d)).take(*take).copied().collect();
            let manifest = sample_manifest(*point, &refs);
            ok(store.apply(StorageOp::PutManifest(manifest.clone())));
            model.manifests.insert(*point, manifest.clone());
            model.durable_manifests.insert(*point, manifest);
        }
        Step::DeleteManifest(point) => {
            ok(store.apply(StorageOp::DeleteManifest(RestorePointId(*point))));
            model.manifests.remove(point);
        }
    }
}

/// Cuts each pack somewhere in what it gained since the last sync and
/// leaves `torn` after the cut.
fn crash(root: &Path, model: &Model, cuts: &[(f64, Torn)]) {
    for (i, path) in pack_files(root).into_iter().enumerate() {
        let synced = model.synced.get(&path).copied().unwrap_or(0);
        let bytes = std::fs::read(&path).expect("readable pack");
        let len = bytes.len() as u64;
        if len <= synced {
            continue;
        }
        let (fraction, torn) = cuts[i % cuts.len()];
        let cut = synced + ((len - synced) as f64 * fraction) as u64;
        let file = OpenOptions::new().write(true).open(&path).expect("writable pack");
        file.set_len(cut).expect("cut");
        let tail: Vec<u8> = match torn {
            Torn::Nothing => Vec::new(),
            Torn::Zeros(n) => vec![0; n],
            Torn::Noise(n) => (0..n).map(|i| (i * 131 % 251) as u8).collect(),
            Torn::Records => bytes[24..bytes.len().min(24 + 5000)].to_vec(),
        };
        let mut file = OpenOptions::new().append(true).open(&path).expect("writable pack");
        file.write_all(&tail).expect("torn tail");
    }
}

/// Small packs, compacted eagerly, so histories move records around.
fn options() -> StoreOptions {
    StoreOptions { compact_below: 0.9, ..small_packs() }
}

fn check_recovered(store: &mut Store, report: &RecoveryReport, model: &Model) {
    assert!(report.is_clean(), "a crash is not damage: {report:?}");
    let (manifests, stored) = recover(store);
    assert_eq!(stored, model.durable.keys().copied().collect::<Vec<_>>(), "exactly the synced blocks");
    assert_eq!(manifests, model.durable_manifests.values().cloned().collect::<Vec<_>>(), "exactly the durable manifests");
    let expected: Vec<EncodedBlock> = model.durable.values().cloned().collect();
    assert_readable(store, &expected);
    for m in &manifests {
        assert!(m.referenced().all(|d| stored.binary_search(&d).is_ok()), "point {} lost a block", m.point);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn a_crash_anywhere_keeps_exactly_what_was_synced(
        steps in prop::collection::vec(step(), 1..30),
        cuts in prop::collection::vec((0.0f64..=1.0, torn()), 1..4),
    ) {
        let dir = temp();
        let mut model = Model::default();
        {
            let (mut store, _) = open(dir.path(), options());
            for step in &steps {
                run(&mut store, dir.path(), &mut model, step);
            }
        }
        crash(dir.path(), &model, &cuts);
        model.live = model.durable.clone();
        model.manifests = model.durable_manifests.clone();
        let (mut store, report) = open(dir.path(), options());
        check_recovered(&mut store, &report, &model);
        // The recovered store goes on: a new block after the cut tail is
        // stored, synced, and found after another restart with the rest.
        let later = blocks([1000]);
        ok(put(&mut store, &later));
        run(&mut store, dir.path(), &mut model, &Step::Sync);
        model.durable.extend(later.into_iter().map(|b| (b.digest, b)));
        drop(store);
        let (mut store, report) = open(dir.path(), options());
        check_recovered(&mut store, &report, &model);
    }
}

/// A manifest file cut at any length, or with any byte flipped, is
/// reported by its path and never served; the others are.
#[test]
fn a_torn_or_damaged_manifest_is_reported_and_not_served() {
    let dir = temp();
    let (good, bad) = (sample_manifest(1, &[]), sample_manifest(2, &[Digest([4; 32]), Digest([5; 32])]));
    {
        let (mut store, _) = open(dir.path(), StoreOptions::default());
        ok(store.apply(StorageOp::PutManifest(good.clone())));
        ok(store.apply(StorageOp::PutManifest(bad.clone())));
    }
    let path = dir.path().join("points/2.manifest");
    let whole = std::fs::read(&path).expect("manifest file");
    let damaged = (0..whole.len()).map(|cut| whole[..cut].to_vec()).chain((0..whole.len()).map(|i| {
        let mut b = whole.clone();
        b[i] ^= 0x08;
        b
    }));
    for bytes in damaged {
        std::fs::write(&path, &bytes).expect("write");
        let (mut store, report) = open(dir.path(), StoreOptions::default());
        assert_eq!(report.damaged_files.len(), 1, "{report:?}");
        assert_eq!(report.damaged_files[0].path, path);
        assert_eq!(recover(&mut store).0, vec![good.clone()]);
    }
}

/// What a crash leaves half-written beside the real files — a manifest's
/// temporary file, a pack index being written, a pack created after the
/// last sync — is removed on open and never read.
#[test]
fn crash_leftovers_are_removed_and_never_read() {
    let dir = temp();
    let m = sample_manifest(1, &[]);
    {
        let (mut store, _) = open(dir.path(), small_packs());
        ok(store.apply(StorageOp::PutManifest(m.clone())));
        ok(put(&mut store, &blocks(0..3)));
        sync(&mut store);
    }
    let temp_manifest = dir.path().join("points/7.manifest.tmp");
    std::fs::write(&temp_manifest, &crate::store::meta::encode(&sample_manifest(7, &[])).expect("encodes")[..40]).expect("write");
    let temp_index = dir.path().join("packs/00000001.idx.tmp");
    std::fs::write(&temp_index, b"half an index").expect("write");
    let unsynced_pack = dir.path().join("packs/00000099.pack");
    std::fs::write(&unsynced_pack, crate::store::record::pack_header(99)).expect("write");
    let (mut store, report) = open(dir.path(), small_packs());
    assert!(report.is_clean(), "{report:?}");
    let mut removed = report.removed_temp_files.clone();
    removed.sort();
    assert_eq!(removed, vec![temp_index.clone(), temp_manifest.clone()]);
    assert_eq!(report.removed_packs, vec![unsynced_pack.clone()]);
    assert!(!temp_manifest.exists() && !temp_index.exists() && !unsynced_pack.exists());
    assert_eq!(recover(&mut store).0, vec![m]);
}
