//! Frame codec: every message round-trips; damaged, truncated, oversized and
//! wrong-version frames are typed errors, never panics.

use blockferry_core::hypervisor::{ChangedBlocks, SnapshotDisk};
use blockferry_core::manifest::{PointDisk, PointHeader};
use blockferry_core::payload::{BlockData, SyntheticBlock, encode};
use blockferry_core::wire::frame::{FrameDecoder, FrameError, HEADER_LEN, decode_frame, encode_frame, encode_frame_version, frame_len};
use blockferry_core::wire::message::{
    BaseDigests, BlockRef, DiskTarget, MetadataReport, ReadMode, ReplicaAction, ReplicaSink, ReplicaTask, TargetChanges, TaskRate,
    TaskStats,
};
use blockferry_core::wire::{Hello, PROTOCOL_VERSION};
use blockferry_core::{
    BlockSize, ChangeId, Compression, Digest, JobId, Message, NodeId, RestorePointId, SessionId, SnapshotId, TaskId, Timestamp, VmId,
};
use proptest::prelude::*;

const MAX: usize = 1 << 20;

fn digest() -> impl Strategy<Value = Digest> {
    any::<[u8; 32]>().prop_map(Digest)
}

fn block_data() -> impl Strategy<Value = BlockData> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64).prop_map(BlockData::Bytes),
        (digest(), any::<u32>(), 0u8..=100).prop_map(|(digest, raw_len, compressibility)| BlockData::Synthetic(SyntheticBlock {
            digest,
            raw_len,
            compressibility
        })),
    ]
}

fn block_ref() -> impl Strategy<Value = BlockRef> {
    (any::<u64>(), prop::option::of(block_data()), 0usize..5).prop_map(|(index, data, level)| {
        let payload = data.map(|d| encode(&d, Compression::ALL[level]));
        BlockRef { index, digest: payload.as_ref().map_or(Digest::ZERO_BLOCK, |p| p.digest()), payload }
    })
}

fn target() -> impl Strategy<Value = DiskTarget> {
    (any::<u64>(), any::<u32>(), any::<u16>()).prop_map(|(s, v, disk)| DiskTarget { session: SessionId(s), vm: VmId(v), disk })
}

fn result<T: std::fmt::Debug + Clone>(ok: impl Strategy<Value = T>) -> impl Strategy<Value = Result<T, String>> {
    prop_oneof![ok.prop_map(Ok), ".{0,20}".prop_map(Err)]
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        any::<u64>().prop_map(|seq| Message::Ping { seq }),
        any::<u64>().prop_map(|seq| Message::Pong { seq }),
        (any::<u64>(), any::<u32>()).prop_map(|(op, vm)| Message::CreateSnapshot { op, vm: VmId(vm) }),
        (any::<u64>(), any::<u64>(), prop::collection::vec((any::<u64>(), prop::option::of(any::<u64>())), 0..4)).prop_map(
            |(op, snap, disks)| Message::SnapshotCreated {
                op,
                snap: SnapshotId(snap),
                disks: disks.into_iter().map(|(bytes, c)| SnapshotDisk { bytes, change_id: c.map(ChangeId) }).collect()
            }
        ),
        (any::<u64>(), any::<u64>(), prop::collection::vec(any::<bool>(), 0..100), prop::collection::vec(any::<bool>(), 0..100)).prop_map(
            |(task, _, changed, swap)| Message::ChangedBlocksReply {
                task: TaskId(task),
                reply: Ok(ChangedBlocks::Known { changed: changed.into_iter().collect(), swap: swap.into_iter().collect() })
            }
        ),
        (any::<u64>(), any::<u64>(), result(prop::collection::vec((any::<u64>(), block_data()), 0..4)))
            .prop_map(|(task, batch, result)| Message::BlocksRead { task: TaskId(task), batch, result }),
        (any::<u64>(), any::<u64>(), target(), prop::collection::vec(block_ref(), 0..4))
            .prop_map(|(task, batch, target, blocks)| Message::PutBlocks { task: TaskId(task), batch, target, blocks }),
        (any::<u64>(), any::<u64>(), prop::collection::vec(digest(), 0..8)).prop_map(|(task, batch, digests)| Message::HaveDigests {
            task: TaskId(task),
            batch,
            digests
        }),
        (any::<u64>(), result(any::<u64>())).prop_map(|(task, r)| Message::TaskDone {
            task: TaskId(task),
            result: r.map(|n| TaskStats { blocks_sent: n, ..TaskStats::default() })
        }),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            any::<u64>(),
            prop::option::of(any::<u64>()),
            prop::collection::vec((any::<u16>(), any::<u64>(), prop::option::of(any::<u64>())), 0..4)
        )
            .prop_map(|(op, point, session, vm, at, parent, disks)| Message::CommitPoint {
                op,
                header: PointHeader {
                    point: RestorePointId(point),
                    job: JobId(1),
                    session: SessionId(session),
                    vm: VmId(vm),
                    snapshot_at: Timestamp(at),
                    snapshot: SnapshotId(at ^ 1),
                    parent: parent.map(RestorePointId),
                    disks: disks.into_iter().map(|(index, bytes, c)| PointDisk { index, bytes, change_id: c.map(ChangeId) }).collect(),
                },
            }),
        (any::<u64>(), result(Just(()))).prop_map(|(op, result)| Message::PointCommitted { op, result }),
        replication_message(),
    ]
}

/// Replication messages: block batches, metadata chunks, task specs, actions.
fn replication_message() -> impl Strategy<Value = Message> {
    let sink = (any::<u64>(), any::<u32>(), any::<u16>(), any::<u64>(), prop::option::of(any::<u64>()), prop::option::of(any::<u64>()))
        .prop_map(|(task, vm, disk, bytes, hash_snap, base)| ReplicaSink {
            task: TaskId(task),
            proxy: NodeId(2),
            host: NodeId(1),
            vm: VmId(vm),
            disk,
            disk_bytes: bytes,
            block_size: BlockSize::WAN,
            hash_snap: hash_snap.map(SnapshotId),
            report: MetadataReport {
                repository: NodeId(3),
                point: RestorePointId(task ^ 7),
                base: base.map(RestorePointId),
                initial: None,
            },
        });
    prop_oneof![
        (any::<u64>(), any::<u64>(), prop::collection::vec(block_ref(), 0..4)).prop_map(|(task, batch, blocks)| Message::ReplicaBlocks {
            task: TaskId(task),
            batch,
            blocks
        }),
        (any::<u64>(), any::<u64>(), prop::collection::vec((any::<u64>(), digest()), 0..8), any::<bool>(), any::<bool>()).prop_map(
            |(task, point, changes, first, last)| Message::PutReplicaDisk {
                task: TaskId(task),
                point: RestorePointId(point),
                base: None,
                disk: 0,
                bytes: 1 << 30,
                block_size: BlockSize::LAN,
                changes,
                first,
                last,
            }
        ),
        (sink.clone(), any::<u64>(), prop::option::of(any::<u64>()), prop::option::of(any::<u64>())).prop_map(
            |(sink, snap, since, rate)| Message::StartReplicaTask(Box::new(ReplicaTask {
                task: sink.task,
                host: NodeId(4),
                vm: VmId(0),
                snap: SnapshotId(snap),
                mode: since.map_or(ReadMode::DigestCompare, |s| ReadMode::Changed { since: ChangeId(s) }),
                base: BaseDigests::Target,
                target_changes: since.map(|s| TargetChanges { host: NodeId(5), snap: SnapshotId(snap ^ 1), since: ChangeId(s) }),
                compression: Compression::Optimal,
                sink,
                rate: rate.map(|bytes_per_sec| TaskRate { bytes_per_sec, peers: vec![NodeId(2), NodeId(4)] }),
            }))
        ),
        (any::<u64>(), any::<u64>()).prop_map(|(task, bytes_per_sec)| Message::SetTaskRate { task: TaskId(task), bytes_per_sec }),
        any::<u64>().prop_map(|task| Message::CancelTask { task: TaskId(task) }),
        any::<u64>().prop_map(|op| Message::ListTasks { op }),
        (prop::option::of(any::<u64>()), prop::collection::vec(any::<u64>(), 0..8))
            .prop_map(|(op, tasks)| Message::TasksRunning { op, tasks: tasks.into_iter().map(TaskId).collect() }),
        sink.prop_map(|sink| Message::OpenReplica(Box::new(sink))),
        (any::<u64>(), any::<u32>(), any::<u32>()).prop_map(|(op, vm, back)| Message::ReplicaAction {
            op,
            vm: VmId(vm),
            action: if back % 2 == 0 { ReplicaAction::Failover { back } } else { ReplicaAction::CommitFailback },
        }),
        Just(Message::Keepalive),
    ]
}

fn frame(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(msg, &mut out).unwrap();
    out
}

proptest! {
    #[test]
    fn every_message_round_trips(msg in message()) {
        let bytes = frame(&msg);
        prop_assert_eq!(bytes.len(), frame_len(&msg).unwrap());
        prop_assert_eq!(decode_frame::<Message>(&bytes, MAX).unwrap(), msg);
    }

    #[test]
    fn a_stream_of_messages_decodes_in_order_whatever_the_chunking(
        msgs in prop::collection::vec(message(), 1..20),
        chunk in 1usize..64,
    ) {
        let stream: Vec<u8> = msgs.iter().flat_map(frame).collect();
        let mut dec = FrameDecoder::new(MAX);
        let mut got = Vec::new();
        for piece in stream.chunks(chunk) {
            dec.extend(piece);
            while let Some(m) = dec.next_frame::<Message>().unwrap() {
                got.push(m);
            }
        }
        dec.finish().unwrap();
        prop_assert_eq!(got, msgs);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_frame::<Message>(&bytes, MAX);
        let mut dec = FrameDecoder::new(MAX);
        dec.extend(&bytes);
        while let Ok(Some(_)) = dec.next_frame::<Message>() {}
    }

    #[test]
    fn a_flipped_payload_bit_is_caught(msg in message(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut bytes = frame(&msg);
        let i = HEADER_LEN + pos.index(bytes.len() - HEADER_LEN);
        bytes[i] ^= 1 << bit;
        let result = decode_frame::<Message>(&bytes, MAX);
        prop_assert!(matches!(result, Err(FrameError::BadChecksum { .. })), "{:?}", result);
    }

    #[test]
    fn any_mutation_is_an_error_or_the_same_message(msg in message(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = frame(&msg);
        let i = pos.index(bytes.len());
        bytes[i] = byte;
        if let Ok(decoded) = decode_frame::<Message>(&bytes, MAX) {
            prop_assert_eq!(decoded, msg);
        }
    }
}

#[test]
fn truncated_frame_is_reported() {
    let bytes = frame(&Message::Ping { seq: 300 });
    for cut in 0..bytes.len() {
        let err = decode_frame::<Message>(&bytes[..cut], MAX).unwrap_err();
        assert!(matches!(err, FrameError::Truncated { .. }), "cut at {cut}: {err}");
        let mut dec = FrameDecoder::new(MAX);
        dec.extend(&bytes[..cut]);
        assert_eq!(dec.next_frame::<Message>().unwrap(), None);
        assert_eq!(dec.finish().is_err(), cut > 0);
    }
}

#[test]
fn oversized_claim_is_refused_from_the_header_alone() {
    // A header claiming 4 GiB and nothing else: the decoder must refuse it
    // without waiting for (or allocating) the claimed length.
    let mut bytes = vec![0xff, 0xff, 0xff, 0xff];
    bytes.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    bytes.extend_from_slice(&[0; 4]);
    let mut dec = FrameDecoder::new(MAX);
    dec.extend(&bytes);
    assert_eq!(dec.next_frame::<Message>(), Err(FrameError::TooLarge { len: u32::MAX as usize, max: MAX }));
}

#[test]
fn wrong_version_is_refused_with_both_versions_named() {
    let mut bytes = Vec::new();
    encode_frame_version(&Hello::new("px-prod"), 99, &mut bytes).unwrap();
    let err = decode_frame::<Hello>(&bytes, MAX).unwrap_err();
    assert_eq!(err, FrameError::WrongVersion { got: 99, expected: PROTOCOL_VERSION });
    assert!(err.to_string().contains("99"));
}

#[test]
fn undecodable_payload_with_good_checksum_is_refused() {
    // A valid frame whose payload names a message variant that does not exist.
    let payload = [0x7f, 0x01];
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    assert!(matches!(decode_frame::<Message>(&bytes, MAX), Err(FrameError::Undecodable(_))));
}

#[test]
fn hello_version_check_names_the_peer() {
    let hello = Hello { protocol_version: PROTOCOL_VERSION + 1, ..Hello::new("repo-dr") };
    let err = hello.check_version().unwrap_err().to_string();
    assert!(err.contains("repo-dr") && err.contains(&(PROTOCOL_VERSION + 1).to_string()), "{err}");
    assert!(Hello::new("repo-dr").check_version().is_ok());
}

#[test]
fn keepalive_is_a_tiny_frame_and_round_trips() {
    // Drivers send one on every quiet connection every few seconds: it must
    // stay a handful of bytes (the header plus the variant index).
    let bytes = frame(&Message::Keepalive);
    assert!(bytes.len() <= HEADER_LEN + 2, "{} bytes", bytes.len());
    assert_eq!(decode_frame::<Message>(&bytes, MAX).unwrap(), Message::Keepalive);
}
