//! The virtual hypervisors of every host: they answer core's
//! `HypervisorOp`s and are the oracle the checker asks what any disk held
//! at any snapshot.
//!
//! One structure serves all hosts because content crosses hosts: a replica
//! on the DR host holds content generated on the production host, and its
//! identity (hence its synthetic digest) must stay the same there. Each
//! request names who asks (an [`Access`]); a host may only touch its own
//! VMs, a direct-mode proxy only the VMs on the datastores it sees.
//!
//! Time: guest writes are applied lazily — every request first applies the
//! writes due up to its `now` — so answers depend only on request times,
//! which the engine makes deterministic. A snapshot freezes the disks at the
//! instant `CreateSnapshot` completes (when the caller learns of it), and
//! data requests queue on the host's datastore ([`Pipe`]).

use super::content::ContentKey;
use super::contents::Contents;
use super::disk::{Disk, Generated};
use super::pipe::Pipe;
use super::point_digests::PointDigests;
use super::workload::{DiskTarget, GuestWorkload};
use crate::scenario::{self, PayloadMode, Scenario, Workload};
use crate::seed::{self, Stream};
use bitvec::vec::BitVec;
use blockferry_core::hypervisor::{ChangedBlocks, HypervisorCompletion, HypervisorOp, HypervisorReply, HypervisorRequest, SnapshotDisk};
use blockferry_core::payload::BlockData;
use blockferry_core::{BlockSize, ChangeId, Digest, DiskId, SnapshotId, Timestamp, VmId};
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long hypervisor operations take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HypervisorTiming {
    pub create_snapshot: Duration,
    pub commit_snapshot: Duration,
    pub changed_blocks: Duration,
    pub create_vm: Duration,
    /// Fixed cost of each read or write request on the datastore.
    pub io_request: Duration,
    pub read_bytes_per_sec: u64,
    pub write_bytes_per_sec: u64,
}

impl Default for HypervisorTiming {
    fn default() -> Self {
        HypervisorTiming {
            create_snapshot: Duration::from_secs(3),
            commit_snapshot: Duration::from_secs(2),
            changed_blocks: Duration::from_millis(50),
            create_vm: Duration::from_secs(1),
            io_request: Duration::from_millis(1),
            read_bytes_per_sec: 400_000_000,
            write_bytes_per_sec: 300_000_000,
        }
    }
}

/// Who sends a hypervisor request.
#[derive(Debug, Clone, Copy)]
pub enum Access<'a> {
    /// A host agent: its own VMs; new VMs are created on it.
    Host(&'a str),
    /// A direct-mode proxy: the VMs on these hosts' datastores.
    Datastore(&'a [String]),
}

impl Access<'_> {
    fn allows(&self, host: &str) -> bool {
        match self {
            Access::Host(h) => *h == host,
            Access::Datastore(hosts) => hosts.iter().any(|h| h == host),
        }
    }
}

/// What the oracle remembers of a snapshot, after commit too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub vm: VmId,
    pub host: String,
    pub requested_at: Timestamp,
    /// The instant the disks were frozen (when `CreateSnapshot` completed).
    pub at: Timestamp,
    pub disks: Vec<SnapshotDisk>,
    pub committed_at: Option<Timestamp>,
}

/// Where a disk differs from what it should hold (see
/// [`Hypervisors::restored_differences`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Differences {
    /// Blocks it should have.
    pub expected: u64,
    /// Blocks it has.
    pub actual: u64,
    /// Blocks that differ (when the counts agree), in order.
    pub blocks: Vec<usize>,
}

/// A lie the CBT told (a `cbt_miss` fault): blocks it left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CbtMiss {
    pub vm: VmId,
    pub snap: SnapshotId,
    pub disk: u16,
    pub block_size: BlockSize,
    pub omitted: Vec<u64>,
}

#[derive(Debug)]
struct HostState {
    cbt: bool,
    io: Pipe,
}

#[derive(Debug)]
struct VmState {
    name: String,
    host: String,
    disks: u16,
    /// Bumped by a CBT reset: older change ids are no longer valid.
    cbt_epoch: u64,
    /// Disks whose next `ChangedBlocks` answers "unavailable".
    cbt_reset: Vec<u16>,
    /// Changed blocks the next known answer leaves out.
    cbt_miss: u64,
}

#[derive(Debug)]
struct Snapshot {
    info: SnapshotInfo,
    /// Per disk, the write-log position frozen; `None` until `info.at`.
    positions: Option<Vec<u64>>,
}

#[derive(Debug, Clone, Copy)]
struct ChangeRecord {
    snap: SnapshotId,
    disk: u16,
    epoch: u64,
}

pub struct Hypervisors {
    contents: Contents,
    timing: HypervisorTiming,
    hosts: BTreeMap<String, HostState>,
    vms: BTreeMap<VmId, VmState>,
    workloads: BTreeMap<VmId, GuestWorkload>,
    snapshots: BTreeMap<SnapshotId, Snapshot>,
    /// Snapshots waiting to be frozen, by freeze time.
    pending_freezes: BTreeMap<(Timestamp, SnapshotId), ()>,
    change_ids: BTreeMap<ChangeId, ChangeRecord>,
    next_snapshot: u64,
    next_change: u64,
    miss_rng: ChaCha8Rng,
    misses: Vec<CbtMiss>,
    guest_writes: u64,
    /// The guest each VM runs when powered on: scenario VMs their own
    /// workload, replicas their source's (registered by the runner).
    guests: BTreeMap<VmId, Workload>,
    /// When the run starts: scenario VMs' guests write from then on.
    start: Timestamp,
}

type OpResult = Result<(Timestamp, HypervisorReply), String>;

impl Hypervisors {
    /// Hypervisors with no hosts yet. `fine` is the content grain: no
    /// request may use a smaller block size.
    pub fn new(key: ContentKey, mode: PayloadMode, fine: BlockSize) -> Hypervisors {
        Hypervisors {
            miss_rng: key.rng("cbt-miss", &[]),
            contents: Contents::new(key, mode, fine),
            timing: HypervisorTiming::default(),
            hosts: BTreeMap::new(),
            vms: BTreeMap::new(),
            workloads: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            pending_freezes: BTreeMap::new(),
            change_ids: BTreeMap::new(),
            next_snapshot: 1,
            next_change: 1,
            misses: Vec::new(),
            guest_writes: 0,
            guests: BTreeMap::new(),
            start: Timestamp::ZERO,
        }
    }

    /// Every host and VM of the scenario, VM ids being scenario indexes.
    /// The content grain is the smallest job block size; zero decisions are
    /// made per largest job block.
    pub fn from_scenario(s: &Scenario, seed: u64) -> Result<Hypervisors, String> {
        let key = ContentKey::from_rng(&mut seed::rng(seed, Stream::World));
        let (fine, coarse) = s.block_size_range();
        let mut hv = Hypervisors::new(key, s.payload, fine);
        hv.start = s.start;
        for host in &s.hosts {
            hv.add_host(&host.name, host.cbt);
        }
        let zero_chunk = u64::from(coarse.bytes() / fine.bytes());
        for (i, vm) in s.vms.iter().enumerate() {
            hv.add_vm(VmId(u32::try_from(i).map_err(|_| "too many vms")?), vm, zero_chunk)?;
        }
        for (i, vm) in s.vms.iter().enumerate() {
            if let Some(copy) = &vm.copy {
                let source = s.vm_index(&copy.of).ok_or_else(|| format!("vm {:?} copies unknown vm {:?}", vm.name, copy.of))?;
                let spec = s.vms[source].workload;
                hv.make_copy(VmId(i as u32), VmId(source as u32), copy.age, spec)?;
            }
        }
        Ok(hv)
    }

    pub fn set_timing(&mut self, timing: HypervisorTiming) {
        self.timing = timing;
    }

    pub fn add_host(&mut self, name: &str, cbt: bool) {
        self.hosts.insert(name.to_string(), HostState { cbt, io: Pipe::default() });
    }

    /// Adds a scenario VM with generated disks; zero decisions are made per
    /// `zero_chunk` fine blocks.
    pub fn add_vm(&mut self, id: VmId, vm: &scenario::Vm, zero_chunk: u64) -> Result<(), String> {
        if !self.hosts.contains_key(&vm.host) {
            return Err(format!("vm {:?} is on unknown host {:?}", vm.name, vm.host));
        }
        if self.vms.contains_key(&id) {
            return Err(format!("vm id {id} is taken"));
        }
        let disks = u16::try_from(vm.disks.len()).map_err(|_| format!("vm {:?} has too many disks", vm.name))?;
        let key = *self.contents.key();
        let fine = self.contents.fine();
        let mut targets = Vec::new();
        for (index, &bytes) in (0u16..).zip(&vm.disks) {
            let generated = Generated {
                key: key.derive("disk-layout", &[vm.name.as_bytes(), &index.to_le_bytes()]),
                zero_fraction: vm.zero_fraction,
                zero_chunk: zero_chunk.max(1),
                swap_fraction: vm.swap_fraction,
                hot_share: 0.05,
                compressibility: vm.compressibility,
            };
            let disk = Disk::generated(DiskId { vm: id, index }, bytes, fine, generated);
            targets.push(DiskTarget { index, bytes, fine_count: disk.fine_count(), hot: disk.hot() });
            self.contents.insert(disk);
        }
        self.vms
            .insert(id, VmState { name: vm.name.clone(), host: vm.host.clone(), disks, cbt_epoch: 0, cbt_reset: Vec::new(), cbt_miss: 0 });
        if let Some(spec) = vm.workload {
            self.guests.insert(id, spec);
            let rng = key.rng("workload", &[vm.name.as_bytes()]);
            if let Some(w) = GuestWorkload::new(spec, rng, self.start, targets) {
                self.workloads.insert(id, w);
            }
        }
        Ok(())
    }

    /// Makes `copy`'s disks a copy of `source`'s initial content, then runs
    /// the source's guest for `age` (on a timeline of its own, from zero):
    /// the copy is as the source was `age` before the run. Called before
    /// the run starts.
    fn make_copy(&mut self, copy: VmId, source: VmId, age: std::time::Duration, spec: Option<Workload>) -> Result<(), String> {
        let (disks, name) = {
            let state = self.vms.get(&copy).ok_or_else(|| format!("no vm {copy}"))?;
            (state.disks, state.name.clone())
        };
        let mut targets = Vec::new();
        for index in 0..disks {
            let src = self.contents.disk(DiskId { vm: source, index }).ok_or_else(|| format!("{source} has no disk {index}"))?;
            targets.push(DiskTarget { index, bytes: src.bytes(), fine_count: src.fine_count(), hot: src.hot() });
            let copied = src.copy_as(DiskId { vm: copy, index });
            self.contents.insert(copied);
        }
        let Some(spec) = spec else { return Ok(()) };
        let rng = self.contents.key().rng("copy-age", &[name.as_bytes()]);
        let Some(mut guest) = GuestWorkload::new(spec, rng, Timestamp::ZERO, targets) else { return Ok(()) };
        let end = Timestamp::ZERO + age;
        while guest.next_at() <= end {
            let (index, fine) = guest.pop();
            if let Some(disk) = self.contents.disk_mut(DiskId { vm: source, index }) {
                disk.write_guest(fine);
            }
        }
        Ok(())
    }

    /// Starts (or with `None` stops) a guest workload on a VM from `now`:
    /// a failed-over replica runs and gets written to.
    pub fn set_workload(&mut self, now: Timestamp, vm: VmId, spec: Option<Workload>) -> Result<(), String> {
        self.advance_to(now);
        let state = self.vms.get(&vm).ok_or_else(|| format!("no vm {vm}"))?;
        self.workloads.remove(&vm);
        let Some(spec) = spec else { return Ok(()) };
        let targets = (0..state.disks)
            .filter_map(|index| self.contents.disk(DiskId { vm, index }))
            .map(|d| DiskTarget { index: d.id().index, bytes: d.bytes(), fine_count: d.fine_count(), hot: d.hot() })
            .collect();
        let rng = self.contents.key().rng("workload", &[state.name.as_bytes(), &now.0.to_le_bytes()]);
        if let Some(w) = GuestWorkload::new(spec, rng, now, targets) {
            self.workloads.insert(vm, w);
        }
        Ok(())
    }

    /// Applies every guest write due up to `now`, freezing snapshots at
    /// their instants on the way.
    pub fn advance_to(&mut self, now: Timestamp) {
        loop {
            let freeze = self.pending_freezes.keys().next().copied().filter(|(at, _)| *at <= now);
            let limit = freeze.map_or(now, |(at, _)| at);
            for (&vm, workload) in self.workloads.iter_mut() {
                while workload.next_at() <= limit {
                    let (index, fine) = workload.pop();
                    if let Some(disk) = self.contents.disk_mut(DiskId { vm, index }) {
                        disk.write_guest(fine);
                        self.guest_writes += 1;
                    }
                }
            }
            let Some(key) = freeze else { break };
            self.pending_freezes.remove(&key);
            if let Some(snap) = self.snapshots.get_mut(&key.1) {
                let vm = snap.info.vm;
                let positions = (0..snap.info.disks.len() as u16)
                    .map(|index| self.contents.disk(DiskId { vm, index }).map_or(0, Disk::position))
                    .collect();
                snap.positions = Some(positions);
            }
        }
    }

    /// Carries out one request from `access` at `now`.
    pub fn handle(&mut self, now: Timestamp, access: Access<'_>, request: HypervisorRequest) -> (Timestamp, HypervisorCompletion) {
        self.advance_to(now);
        let result = match request.op {
            HypervisorOp::CreateSnapshot { vm } => self.create_snapshot(now, access, vm),
            HypervisorOp::ChangedBlocks { snap, disk, since, block_size } => {
                self.changed_blocks(now, access, snap, disk, since, block_size)
            }
            HypervisorOp::ReadBlocks { snap, disk, block_size, blocks } => self.read_blocks(now, access, snap, disk, block_size, &blocks),
            HypervisorOp::CommitSnapshot { snap } => self.commit_snapshot(now, access, snap),
            HypervisorOp::CreateVm { vm, name, disks } => self.create_vm(now, access, vm, name, &disks),
            HypervisorOp::WriteBlocks { vm, disk, block_size, blocks } => self.write_blocks(now, access, vm, disk, block_size, blocks),
            HypervisorOp::RevertToSnapshot { snap } => self.revert(now, access, snap),
            HypervisorOp::SetPower { vm, on } => self.set_power(now, access, vm, on),
        };
        match result {
            Ok((at, reply)) => (at, HypervisorCompletion { id: request.id, result: Ok(reply) }),
            Err(e) => (now, HypervisorCompletion { id: request.id, result: Err(e) }),
        }
    }

    fn vm_for(&self, access: Access<'_>, vm: VmId) -> Result<&VmState, String> {
        let state = self.vms.get(&vm).ok_or_else(|| format!("no vm {vm}"))?;
        if !access.allows(&state.host) {
            return Err(format!("vm {vm} ({:?}) is on host {:?}, out of this node's reach", state.name, state.host));
        }
        Ok(state)
    }

    /// A live (frozen, uncommitted) snapshot reachable by `access`, and the
    /// position of `disk` in it.
    fn live_snapshot(&self, access: Access<'_>, snap: SnapshotId, disk: u16) -> Result<(&Snapshot, u64), String> {
        let s = self.snapshots.get(&snap).ok_or_else(|| format!("no snapshot {snap}"))?;
        self.vm_for(access, s.info.vm)?;
        if s.info.committed_at.is_some() {
            return Err(format!("snapshot {snap} was committed"));
        }
        let positions = s.positions.as_ref().ok_or_else(|| format!("snapshot {snap} is still being created"))?;
        let position = positions.get(usize::from(disk)).copied().ok_or_else(|| format!("snapshot {snap} has no disk {disk}"))?;
        Ok((s, position))
    }

    fn create_snapshot(&mut self, now: Timestamp, access: Access<'_>, vm: VmId) -> OpResult {
        let state = self.vm_for(access, vm)?;
        let cbt = self.hosts.get(&state.host).is_some_and(|h| h.cbt);
        let (host, disks, epoch) = (state.host.clone(), state.disks, state.cbt_epoch);
        let snap = SnapshotId(self.next_snapshot);
        self.next_snapshot += 1;
        let mut out = Vec::new();
        for index in 0..disks {
            let bytes = self.contents.disk(DiskId { vm, index }).map_or(0, Disk::bytes);
            let change_id = cbt.then(|| {
                let id = ChangeId(self.next_change);
                self.next_change += 1;
                self.change_ids.insert(id, ChangeRecord { snap, disk: index, epoch });
                id
            });
            out.push(SnapshotDisk { bytes, change_id });
        }
        let at = now + self.timing.create_snapshot;
        let info = SnapshotInfo { vm, host, requested_at: now, at, disks: out.clone(), committed_at: None };
        self.snapshots.insert(snap, Snapshot { info, positions: None });
        self.pending_freezes.insert((at, snap), ());
        Ok((at, HypervisorReply::SnapshotCreated { snap, disks: out }))
    }

    fn commit_snapshot(&mut self, now: Timestamp, access: Access<'_>, snap: SnapshotId) -> OpResult {
        let s = self.snapshots.get(&snap).ok_or_else(|| format!("no snapshot {snap}"))?;
        self.vm_for(access, s.info.vm)?;
        // Idempotent: the answer to an earlier removal may have been lost
        // with a connection, and the asker asks again.
        if s.info.committed_at.is_some() {
            return Ok((now, HypervisorReply::SnapshotCommitted));
        }
        if let Some(s) = self.snapshots.get_mut(&snap) {
            s.info.committed_at = Some(now);
        }
        Ok((now + self.timing.commit_snapshot, HypervisorReply::SnapshotCommitted))
    }

    fn changed_blocks(
        &mut self,
        now: Timestamp,
        access: Access<'_>,
        snap: SnapshotId,
        disk: u16,
        since: Option<ChangeId>,
        block_size: BlockSize,
    ) -> OpResult {
        self.contents.check_block_size(block_size)?;
        let (s, position) = self.live_snapshot(access, snap, disk)?;
        let vm = s.info.vm;
        let id = DiskId { vm, index: disk };
        let d = self.contents.disk(id).ok_or_else(|| format!("no disk {id}"))?;
        let swap = swap_bits(d, block_size);
        let at = now + self.timing.changed_blocks;
        let host_cbt = self.hosts.get(&s.info.host).is_some_and(|h| h.cbt);
        let state = self.vms.get(&vm).ok_or_else(|| format!("no vm {vm}"))?;
        let reset = state.cbt_reset.contains(&disk);
        let since_position = since.and_then(|c| self.change_ids.get(&c).copied()).and_then(|r| {
            let valid = r.disk == disk && r.epoch == state.cbt_epoch && self.snapshots.get(&r.snap).is_some_and(|p| p.info.vm == vm);
            let p = self.snapshots.get(&r.snap)?.positions.as_ref()?.get(usize::from(disk)).copied()?;
            (valid && p <= position).then_some(p)
        });
        if !host_cbt || reset || (since.is_some() && since_position.is_none()) {
            if let Some(state) = self.vms.get_mut(&vm) {
                state.cbt_reset.retain(|&i| i != disk);
            }
            return Ok((at, HypervisorReply::ChangedBlocks(ChangedBlocks::Unavailable { swap })));
        }
        let blocks = d.block_count(block_size);
        let k = d.per_block(block_size);
        let mut changed = BitVec::repeat(false, blocks as usize);
        match since_position {
            None => {
                // A full: every block's zero decision now, and the checks
                // of the initial data its reads will hand out.
                d.decide_all_zeros();
                d.remember_initial_checks(self.contents.key(), block_size);
                for block in 0..blocks {
                    if d.block_range(block_size, block).any(|i| d.allocated_at(i, position)) {
                        changed.set(block as usize, true);
                    }
                }
            }
            Some(from) => {
                for fine in d.written_between(from, position) {
                    changed.set((fine / k) as usize, true);
                }
                self.tell_cbt_lie(vm, snap, disk, block_size, &mut changed);
            }
        }
        Ok((at, HypervisorReply::ChangedBlocks(ChangedBlocks::Known { changed, swap })))
    }

    /// A pending `cbt_miss` fault: leaves out up to its count of changed
    /// blocks (chosen by the world RNG) from this answer, and records them.
    /// An answer with nothing changed leaves the fault pending.
    fn tell_cbt_lie(&mut self, vm: VmId, snap: SnapshotId, disk: u16, block_size: BlockSize, changed: &mut BitVec) {
        let Some(state) = self.vms.get_mut(&vm) else { return };
        let ones: Vec<usize> = changed.iter_ones().collect();
        if state.cbt_miss == 0 || ones.is_empty() {
            return;
        }
        let n = usize::try_from(state.cbt_miss).unwrap_or(usize::MAX).min(ones.len());
        state.cbt_miss = 0;
        let mut omitted: Vec<u64> = sample(&mut self.miss_rng, ones.len(), n).into_iter().map(|i| ones[i] as u64).collect();
        omitted.sort_unstable();
        for &b in &omitted {
            changed.set(b as usize, false);
        }
        self.misses.push(CbtMiss { vm, snap, disk, block_size, omitted });
    }

    fn read_blocks(
        &mut self,
        now: Timestamp,
        access: Access<'_>,
        snap: SnapshotId,
        disk: u16,
        block_size: BlockSize,
        blocks: &[u64],
    ) -> OpResult {
        self.contents.check_block_size(block_size)?;
        let (s, position) = self.live_snapshot(access, snap, disk)?;
        let (vm, host) = (s.info.vm, s.info.host.clone());
        let id = DiskId { vm, index: disk };
        let count = self.contents.disk(id).map_or(0, |d| d.block_count(block_size));
        if let Some(bad) = blocks.iter().find(|&&b| b >= count) {
            return Err(format!("block {bad} of {id} is out of range (the disk has {count} blocks of {} bytes)", block_size.bytes()));
        }
        let mut out = Vec::with_capacity(blocks.len());
        let mut bytes = 0;
        for &block in blocks {
            let data = self.contents.read_block(id, position, block_size, block)?;
            bytes += data.raw_len();
            out.push((block, data));
        }
        let at = self.io(&host, now, bytes, self.timing.read_bytes_per_sec);
        Ok((at, HypervisorReply::BlocksRead(out)))
    }

    fn write_blocks(
        &mut self,
        now: Timestamp,
        access: Access<'_>,
        vm: VmId,
        disk: u16,
        block_size: BlockSize,
        blocks: Vec<(u64, BlockData)>,
    ) -> OpResult {
        self.contents.check_block_size(block_size)?;
        let host = self.vm_for(access, vm)?.host.clone();
        let id = DiskId { vm, index: disk };
        let d = self.contents.disk(id).ok_or_else(|| format!("vm {vm} has no disk {disk}"))?;
        // Resolve every block before writing any: a bad request changes nothing.
        let mut writes = Vec::with_capacity(blocks.len());
        let mut bytes = 0;
        for (block, data) in &blocks {
            if *block >= d.block_count(block_size) {
                return Err(format!("block {block} of {id} is out of range (the disk has {} blocks)", d.block_count(block_size)));
            }
            let range = d.block_range(block_size, *block);
            let lens = range.clone().map(|i| d.fine_len(i));
            let fines = self.contents.resolve(data, lens).map_err(|e| format!("block {block} of {id}: {e}"))?;
            bytes += data.raw_len();
            writes.push((range, fines));
        }
        if let Some(d) = self.contents.disk_mut(id) {
            for (range, fines) in writes {
                for (index, fine) in range.zip(fines) {
                    d.write(index, fine);
                }
            }
        }
        let at = self.io(&host, now, bytes, self.timing.write_bytes_per_sec);
        Ok((at, HypervisorReply::BlocksWritten))
    }

    fn create_vm(&mut self, now: Timestamp, access: Access<'_>, vm: VmId, name: String, disks: &[u64]) -> OpResult {
        let Access::Host(host) = access else { return Err("only a host creates vms".into()) };
        if !self.hosts.contains_key(host) {
            return Err(format!("no host {host:?}"));
        }
        if let Some(existing) = self.vms.get(&vm) {
            // Asked again after the answer was lost: the same VM is there,
            // still as created. Once anything was written to it, it is not
            // the new, empty VM the caller asks for (a restarted manager
            // that forgot it made this replica would restore a seed over
            // its old content as if onto zeros): refuse it, as a real
            // hypervisor refuses a duplicate.
            let untouched = (0..existing.disks).all(|index| self.contents.disk(DiskId { vm, index }).is_none_or(|d| d.position() == 0));
            if existing.name == name && existing.host == host && usize::from(existing.disks) == disks.len() && untouched {
                return Ok((now + self.timing.create_vm, HypervisorReply::VmCreated));
            }
            return Err(format!("vm {vm} already exists ({:?} on {:?})", existing.name, existing.host));
        }
        let count = u16::try_from(disks.len()).map_err(|_| format!("vm {name:?} has too many disks"))?;
        for (index, &bytes) in (0u16..).zip(disks) {
            self.contents.insert(Disk::empty(DiskId { vm, index }, bytes, self.contents.fine()));
        }
        self.vms.insert(vm, VmState { name, host: host.to_string(), disks: count, cbt_epoch: 0, cbt_reset: Vec::new(), cbt_miss: 0 });
        Ok((now + self.timing.create_vm, HypervisorReply::VmCreated))
    }

    /// Returns the VM's disks to the snapshot's content: every fine block
    /// written since gets its old content written back (so CBT sees the
    /// revert as the change it is, and every other snapshot keeps its own
    /// frozen content).
    fn revert(&mut self, now: Timestamp, access: Access<'_>, snap: SnapshotId) -> OpResult {
        let s = self.snapshots.get(&snap).ok_or_else(|| format!("no snapshot {snap}"))?;
        let host = self.vm_for(access, s.info.vm)?.host.clone();
        if s.info.committed_at.is_some() {
            return Err(format!("snapshot {snap} was committed: nothing to revert to"));
        }
        let positions = s.positions.clone().ok_or_else(|| format!("snapshot {snap} is still being created"))?;
        let vm = s.info.vm;
        let mut bytes = 0;
        for (index, position) in (0u16..).zip(positions) {
            let Some(d) = self.contents.disk_mut(DiskId { vm, index }) else { continue };
            let now_at = d.position();
            let touched: std::collections::BTreeSet<u64> = d.written_between(position, now_at).collect();
            for fine in touched {
                let old = d.fine_at(fine, position);
                if d.fine_at(fine, now_at) != old {
                    bytes += d.fine_len(fine);
                    d.write(fine, old);
                }
            }
        }
        let at = self.io(&host, now, bytes, self.timing.write_bytes_per_sec);
        Ok((at.max(now + self.timing.commit_snapshot), HypervisorReply::Done))
    }

    /// Powers a VM on (its registered guest starts writing) or off.
    fn set_power(&mut self, now: Timestamp, access: Access<'_>, vm: VmId, on: bool) -> OpResult {
        self.vm_for(access, vm)?;
        let guest = if on { self.guests.get(&vm).copied() } else { None };
        self.set_workload(now, vm, guest)?;
        Ok((now + self.timing.create_vm, HypervisorReply::Done))
    }

    /// The guest `vm` runs when powered on (a replica runs its source's).
    pub fn set_guest(&mut self, vm: VmId, spec: Workload) {
        self.guests.insert(vm, spec);
    }

    /// Whether the VM's guest is writing now.
    pub fn is_running(&self, vm: VmId) -> bool {
        self.workloads.contains_key(&vm)
    }

    /// Job blocks of the VM's disk that lie wholly in its guest swap.
    pub fn swap_mask(&self, vm: VmId, disk: u16, block_size: BlockSize) -> Option<BitVec> {
        self.contents.check_block_size(block_size).ok()?;
        self.contents.disk(DiskId { vm, index: disk }).map(|d| swap_bits(d, block_size))
    }

    fn io(&mut self, host: &str, now: Timestamp, bytes: u64, rate: u64) -> Timestamp {
        let fixed = self.timing.io_request;
        match self.hosts.get_mut(host) {
            Some(h) => h.io.occupy(now, fixed, bytes, rate),
            None => now + fixed,
        }
    }

    // ----- fault hooks -----

    /// The VM's host loses CBT: each disk's next `ChangedBlocks` answers
    /// "unavailable", and change ids issued before now are no longer valid
    /// (the next snapshot's ids work again).
    pub fn cbt_reset(&mut self, vm: VmId) -> Result<(), String> {
        let state = self.vms.get_mut(&vm).ok_or_else(|| format!("no vm {vm}"))?;
        state.cbt_epoch += 1;
        state.cbt_reset = (0..state.disks).collect();
        Ok(())
    }

    /// The VM's CBT silently leaves out up to `blocks` changed blocks from
    /// its next answer that has any (see [`Hypervisors::cbt_misses`]).
    pub fn cbt_miss(&mut self, vm: VmId, blocks: u64) -> Result<(), String> {
        let state = self.vms.get_mut(&vm).ok_or_else(|| format!("no vm {vm}"))?;
        state.cbt_miss += blocks;
        Ok(())
    }

    // ----- oracle -----

    pub fn vm_id(&self, name: &str) -> Option<VmId> {
        self.vms.iter().find(|(_, v)| v.name == name).map(|(id, _)| *id)
    }

    pub fn vm_name(&self, vm: VmId) -> Option<&str> {
        self.vms.get(&vm).map(|v| v.name.as_str())
    }

    pub fn vm_host(&self, vm: VmId) -> Option<&str> {
        self.vms.get(&vm).map(|v| v.host.as_str())
    }

    /// Disk sizes of a VM.
    pub fn vm_disks(&self, vm: VmId) -> Option<Vec<u64>> {
        let state = self.vms.get(&vm)?;
        Some((0..state.disks).filter_map(|index| self.contents.disk(DiskId { vm, index })).map(Disk::bytes).collect())
    }

    pub fn snapshot(&self, snap: SnapshotId) -> Option<&SnapshotInfo> {
        self.snapshots.get(&snap).map(|s| &s.info)
    }

    /// Every snapshot ever taken, in id order.
    pub fn snapshots(&self) -> impl Iterator<Item = (SnapshotId, &SnapshotInfo)> {
        self.snapshots.iter().map(|(id, s)| (*id, &s.info))
    }

    /// What a restore point of this snapshot must hold for `disk` at
    /// `block_size`: its digests, swap blocks as `Digest::ZERO_BLOCK`
    /// (backups skip swap and restore it as zeros). `None` for an unknown
    /// snapshot or disk, or one not frozen yet.
    pub fn point_digests(&self, snap: SnapshotId, disk: u16, block_size: BlockSize) -> Option<PointDigests> {
        self.contents.check_block_size(block_size).ok()?;
        let s = self.snapshots.get(&snap)?;
        let position = *s.positions.as_ref()?.get(usize::from(disk))?;
        let d = self.contents.disk(DiskId { vm: s.info.vm, index: disk })?;
        Some(PointDigests::new(self.contents.disk_digests(d, position, block_size), swap_range(d, block_size)))
    }

    /// [`Hypervisors::point_digests`] as a vector.
    pub fn snapshot_digests(&self, snap: SnapshotId, disk: u16, block_size: BlockSize) -> Option<Vec<Digest>> {
        self.point_digests(snap, disk, block_size).map(|p| p.to_vec())
    }

    /// The digests a disk holds now (after the writes applied so far: call
    /// [`Hypervisors::advance_to`] first). No swap masking.
    pub fn vm_disk_digests(&self, vm: VmId, disk: u16, block_size: BlockSize) -> Option<Vec<Digest>> {
        self.vm_point_digests(vm, disk, block_size).map(|p| p.to_vec())
    }

    /// [`Hypervisors::vm_disk_digests`], shared with the oracle's cache.
    pub fn vm_point_digests(&self, vm: VmId, disk: u16, block_size: BlockSize) -> Option<PointDigests> {
        self.contents.check_block_size(block_size).ok()?;
        let d = self.contents.disk(DiskId { vm, index: disk })?;
        Some(PointDigests::new(self.contents.disk_digests(d, d.position(), block_size), 0..0))
    }

    /// How `vm`'s disk now differs from what a restore point of `snap` must
    /// hold: exactly what comparing [`Hypervisors::snapshot_digests`] with
    /// [`Hypervisors::vm_disk_digests`] finds, but found by comparing
    /// contents in one pass and digesting only the blocks whose contents
    /// differ (equal contents have equal digests) and the swap blocks
    /// (which a point holds as zeros). `None` where either side has no
    /// content.
    pub fn restored_differences(&self, snap: SnapshotId, vm: VmId, disk: u16, block_size: BlockSize) -> Option<Differences> {
        self.contents.check_block_size(block_size).ok()?;
        let s = self.snapshots.get(&snap)?;
        let position = *s.positions.as_ref()?.get(usize::from(disk))?;
        let source = self.contents.disk(DiskId { vm: s.info.vm, index: disk })?;
        let target = self.contents.disk(DiskId { vm, index: disk })?;
        let (expected, actual) = (source.block_count(block_size), target.block_count(block_size));
        let mut found = Differences { expected, actual, blocks: Vec::new() };
        if expected != actual {
            return Some(found);
        }
        let swap = swap_bits(source, block_size);
        let same_content = |block: u64| {
            let (x, y) = (source.block_range(block_size, block), target.block_range(block_size, block));
            x.end - x.start == y.end - y.start && x.zip(y).all(|(i, j)| source.fine_at(i, position) == target.fine_at(j, target.position()))
        };
        for block in 0..expected {
            let in_swap = swap.get(block as usize).is_some_and(|s| *s);
            if !in_swap && same_content(block) {
                continue;
            }
            let want = if in_swap { Digest::ZERO_BLOCK } else { self.contents.block_digest(source, position, block_size, block) };
            if want != self.contents.block_digest(target, target.position(), block_size, block) {
                found.blocks.push(block as usize);
            }
        }
        Some(found)
    }

    /// Job blocks whose content really changed between two frozen snapshots
    /// of one VM (what an honest CBT reports, minus rewrites of equal
    /// content).
    pub fn true_changes(&self, from: SnapshotId, to: SnapshotId, disk: u16, block_size: BlockSize) -> Option<BitVec> {
        let a = self.snapshot_digests(from, disk, block_size)?;
        let b = self.snapshot_digests(to, disk, block_size)?;
        (self.snapshots.get(&from)?.info.vm == self.snapshots.get(&to)?.info.vm && a.len() == b.len())
            .then(|| a.iter().zip(&b).map(|(x, y)| x != y).collect())
    }

    /// The lies `cbt_miss` faults made the CBT tell.
    pub fn cbt_misses(&self) -> &[CbtMiss] {
        &self.misses
    }

    /// Guest writes applied so far.
    pub fn guest_writes(&self) -> u64 {
        self.guest_writes
    }

    /// The world's content key (derives every other world RNG).
    pub fn key(&self) -> &ContentKey {
        self.contents.key()
    }

    pub fn mode(&self) -> PayloadMode {
        self.contents.mode()
    }

    /// The content grain (smallest usable block size).
    pub fn fine(&self) -> BlockSize {
        self.contents.fine()
    }

    /// Whether a synthetic digest names a run of one disk's generated
    /// content (rule 3 of `contents`), for tests.
    #[cfg(test)]
    pub(crate) fn is_range_digest(&self, digest: &Digest) -> bool {
        super::content::RangeRef::decode(digest, self.contents.key()).is_some()
    }
}

/// Job blocks that lie wholly in the disk's swap extent.
fn swap_bits(d: &Disk, block_size: BlockSize) -> BitVec {
    let mut bits = BitVec::repeat(false, d.block_count(block_size) as usize);
    for block in swap_blocks(d, block_size) {
        bits.set(block as usize, true);
    }
    bits
}

/// [`swap_blocks`] as the one run of job blocks it is.
fn swap_range(d: &Disk, block_size: BlockSize) -> std::ops::Range<usize> {
    let mut blocks = swap_blocks(d, block_size);
    let Some(first) = blocks.next() else { return 0..0 };
    let last = blocks.last().unwrap_or(first);
    first as usize..last as usize + 1
}

/// The job blocks that lie wholly in the disk's swap extent, found among
/// the few that overlap it.
fn swap_blocks(d: &Disk, block_size: BlockSize) -> impl Iterator<Item = u64> + '_ {
    let swap = d.swap();
    let k = d.per_block(block_size);
    let overlapping = swap.start / k..swap.end.div_ceil(k).min(d.block_count(block_size));
    overlapping.filter(move |&b| {
        let r = d.block_range(block_size, b);
        !r.is_empty() && swap.start <= r.start && r.end <= swap.end
    })
}
