//! Block-list edits as a commit carries them, against the server's rule:
//! the length is known before anything is built, nothing longer than the
//! bound is ever built (a 16 KB edit once made 40 million entries), copies
//! stay inside the parent, and what is built equals the edit read plainly.
#![no_main]

use ferry_shared::BlockId;
use ferry_shared::api::{BlockEdit, BlockList, BlockListError};
use libfuzzer_sys::fuzz_target;

/// An edit list from bytes: a tag byte, then a copy's start and count (two
/// little-endian u32) or an addition's length (one byte) of ids.
fn edits(mut data: &[u8]) -> Vec<BlockEdit> {
    let mut out = Vec::new();
    while let Some((&tag, rest)) = data.split_first() {
        data = rest;
        if tag & 1 == 0 {
            if data.len() < 8 {
                break;
            }
            let start = u32::from_le_bytes(data[..4].try_into().expect("4 bytes"));
            let count = u32::from_le_bytes(data[4..8].try_into().expect("4 bytes"));
            data = &data[8..];
            out.push(BlockEdit::Copy { start, count });
        } else {
            let n = usize::from(tag >> 1);
            out.push(BlockEdit::Add((0..n).map(|i| BlockId::of(&[i as u8, tag])).collect()));
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let parent_len = usize::from(u16::from_le_bytes([data[0], data[1]]));
    // The bound as the server derives it from sizes up to about 64 GiB.
    let most = u64::from(u16::from_le_bytes([data[2], data[3]])) * 128;
    let parent: Vec<(BlockId, u32)> = (0..parent_len).map(|i| (BlockId::of(&i.to_le_bytes()), 1)).collect();
    let edits = edits(&data[4..]);
    let list = BlockList::Edit(edits.clone());
    let n = list.n_blocks();
    let named: Vec<BlockId> = list.named_ids().copied().collect();
    let plain_named: Vec<BlockId> = edits
        .iter()
        .flat_map(|e| match e {
            BlockEdit::Add(ids) => ids.clone(),
            BlockEdit::Copy { .. } => Vec::new(),
        })
        .collect();
    assert_eq!(named, plain_named);
    match list.expand(Some(&parent), |b| b.0, most) {
        Ok(ids) => {
            assert!(n <= most);
            assert_eq!(ids.len() as u64, n);
            let mut plain = Vec::new();
            for e in &edits {
                match e {
                    BlockEdit::Copy { start, count } => {
                        let s = *start as usize;
                        plain.extend(parent[s..s + *count as usize].iter().map(|b| b.0));
                    }
                    BlockEdit::Add(a) => plain.extend(a),
                }
            }
            assert_eq!(ids, plain);
        }
        Err(BlockListError::TooLong { n: m, most: b }) => assert!(m == n && n > b && b == most),
        Err(BlockListError::CopyOutside { start, count, parent: p }) => {
            assert!(n <= most && p == parent_len);
            assert!(start as usize + count as usize > parent_len);
        }
        Err(BlockListError::NoParent) => unreachable!("a parent was given"),
    }
});
