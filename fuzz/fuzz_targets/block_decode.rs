//! The block decoder on hostile bytes (zstd bombs, truncated frames, raw
//! blocks): no panic, never more than the block size limit, and nothing is
//! returned that does not hash to the id asked for.
#![no_main]

use ferry_shared::BlockId;
use ferry_shared::block::{self, BlockEncoding, MAX_BLOCK_SIZE};
use libfuzzer_sys::fuzz_target;

/// What zstd makes of `body`, if that fits in a block (read with a bound:
/// the input may be a decompression bomb).
fn inflate(body: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    let decoder = zstd::stream::read::Decoder::new(body).ok()?;
    decoder.take(MAX_BLOCK_SIZE as u64 + 1).read_to_end(&mut out).ok()?;
    (out.len() <= MAX_BLOCK_SIZE).then_some(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else { return };
    let encoding = if flags & 1 == 0 { BlockEncoding::Zstd } else { BlockEncoding::Raw };
    // Against the id of the bytes as given, and of what zstd makes of them.
    let mut ids = vec![BlockId::of(body)];
    if let Some(plain) = inflate(body) {
        ids.push(BlockId::of(&plain));
    }
    for id in ids {
        if let Ok(plain) = block::decode(&id, encoding, body) {
            assert!(plain.len() <= MAX_BLOCK_SIZE);
            assert_eq!(BlockId::of(&plain), id);
        }
    }
    // What we encode, we decode.
    let b = block::encode(body);
    assert_eq!(block::decode(&b.id, b.encoding, &b.bytes).expect("own encoding decodes"), body);
});
