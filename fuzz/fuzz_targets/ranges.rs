//! `Content-Range` and `Range` headers: no panic, and every accepted range
//! lies inside the file.
#![no_main]

use ferry_shared::range::{ContentRange, parse_content_range, parse_range};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let size = u64::from_le_bytes(data[..8].try_into().expect("8 bytes")) >> (data[0] % 64);
    let Ok(header) = std::str::from_utf8(&data[8..]) else { return };
    if let Some(ContentRange::Bytes { start, end, total }) = parse_content_range(header) {
        assert!(start <= end && end < total, "{header:?}");
    }
    if let Ok(Some((start, end))) = parse_range(header, size) {
        assert!(start <= end && end < size, "{header:?} of {size}");
    }
});
