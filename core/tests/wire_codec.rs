//! Frame codec: every message round-trips; damaged, truncated, oversized and
//! wrong-version frames are typed errors, never panics.

use blockferry_core::Message;
use blockferry_core::wire::frame::{FrameDecoder, FrameError, HEADER_LEN, decode_frame, encode_frame, encode_frame_version, frame_len};
use blockferry_core::wire::{Hello, PROTOCOL_VERSION};
use proptest::prelude::*;

const MAX: usize = 1 << 20;

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![any::<u64>().prop_map(|seq| Message::Ping { seq }), any::<u64>().prop_map(|seq| Message::Pong { seq }),]
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
    let hello = Hello { node: "repo-dr".into(), protocol_version: PROTOCOL_VERSION + 1 };
    let err = hello.check_version().unwrap_err().to_string();
    assert!(err.contains("repo-dr") && err.contains(&(PROTOCOL_VERSION + 1).to_string()), "{err}");
    assert!(Hello::new("repo-dr").check_version().is_ok());
}
