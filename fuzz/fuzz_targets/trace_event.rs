//! Arbitrary bytes as stored trace records (`Event`, `SessionMeta`, `Data`):
//! decoding must never panic, and whatever decodes must survive a round
//! trip: encode, decode again, get the same message and the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::fmt::Debug;

use prost::Message;
use warp_proto::trace::{Data, Event, SessionMeta};

fuzz_target!(|bytes: &[u8]| {
    round_trip::<Event>(bytes);
    round_trip::<SessionMeta>(bytes);
    round_trip::<Data>(bytes);
});

fn round_trip<M: Message + Default + PartialEq + Debug>(bytes: &[u8]) {
    let Ok(first) = M::decode(bytes) else {
        return;
    };
    let encoded = first.encode_to_vec();
    assert_eq!(encoded.len(), first.encoded_len(), "encoded_len disagrees with encode: {first:?}");
    let second = match M::decode(encoded.as_slice()) {
        Ok(second) => second,
        Err(e) => panic!("a re-encoded message does not decode ({e}): {first:?}"),
    };
    assert_eq!(first, second, "decode(encode(m)) != m");
    // Encoding is canonical: the second message encodes to the same bytes.
    assert_eq!(second.encode_to_vec(), encoded, "two encodings of one message differ");
}
