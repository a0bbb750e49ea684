//! Bytes from the network as each wire format: JSON requests and answers
//! (paths validated while decoding), batch frames, stored block lists. No
//! panic; what decodes re-encodes to the same value.
#![no_main]

use ferry_shared::api::{ChangesResponse, CommitRequest, ListRevisionsRequest, MissingBlocksRequest};
use ferry_shared::block;
use libfuzzer_sys::fuzz_target;

fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(data: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<T>(data) {
        let again = serde_json::to_vec(&v).expect("serializes");
        let v2: T = serde_json::from_slice(&again).expect("what was written reads back");
        assert_eq!(serde_json::to_vec(&v2).expect("serializes"), again);
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<CommitRequest>(data);
    round_trip::<ChangesResponse>(data);
    round_trip::<MissingBlocksRequest>(data);
    round_trip::<ListRevisionsRequest>(data);
    if let Ok(frames) = block::read_frames(data) {
        let mut again = Vec::new();
        for (id, enc, bytes) in &frames {
            block::write_frame(&mut again, id, *enc, bytes);
        }
        assert_eq!(again, data);
    }
    let list = block::decode_list(data);
    assert_eq!(block::decode_list(&block::encode_list(list.iter().copied())), list);
});
