//! Server-side chunking of whole-file uploads (web app, file API): the bytes
//! are cut with the same CDC rule as clients use, so both dedupe together.

use std::io::Read;

use ferry_shared::BlockId;
use ferry_shared::chunk::{self, ChunkParams};

use crate::api::AppState;
use crate::blockstore::BlockLoc;
use crate::error::{Error, Result};
use crate::store::NewBlock;

/// Chunks, seals and stores everything `reader` yields (blocking). Returns the
/// block list; every block is durable on return.
pub fn store_stream(
    state: &AppState,
    reader: impl Read + Send,
    expected_size: u64,
) -> Result<(Vec<BlockId>, Vec<NewBlock>)> {
    let mut ids = Vec::new();
    let mut new_blocks = Vec::new();
    // New blocks are written in packs of up to 8 MiB: one fsync per pack.
    let mut pending: Vec<NewBlock> = Vec::new();
    let mut sealed: Vec<Vec<u8>> = Vec::new();
    let mut pending_bytes = 0usize;
    let flush =
        |pending: &mut Vec<NewBlock>, sealed: &mut Vec<Vec<u8>>, new_blocks: &mut Vec<NewBlock>| -> Result<()> {
            if sealed.is_empty() {
                return Ok(());
            }
            let locs = state.blocks.put_pack(sealed)?;
            new_blocks.extend(pending.drain(..).zip(locs).map(|(nb, loc)| NewBlock { loc, ..nb }));
            sealed.clear();
            Ok(())
        };
    let stats = chunk::encode_stream(
        reader,
        ChunkParams::for_size(expected_size),
        chunk::default_workers(),
        |sb| -> Result<()> {
            let b = sb.block;
            ids.push(b.id);
            let nb = NewBlock { id: b.id, size: b.len, stored_size: b.bytes.len() as u32, loc: BlockLoc::Loose };
            match state.meta.block_location(&b.id)? {
                Some(loc) => new_blocks.push(NewBlock { loc, ..nb }),
                None if pending.iter().any(|p| p.id == b.id) => {}
                None => {
                    pending_bytes += b.bytes.len();
                    sealed.push(state.vault.seal(&b.id, b.encoding, &b.bytes));
                    pending.push(nb);
                    if pending_bytes >= 8 << 20 {
                        pending_bytes = 0;
                        flush(&mut pending, &mut sealed, &mut new_blocks)?;
                    }
                }
            }
            Ok(())
        },
    )?;
    flush(&mut pending, &mut sealed, &mut new_blocks)?;
    if stats.size != expected_size {
        return Err(Error::bad_request(format!("received {} bytes but {expected_size} were announced", stats.size)));
    }
    Ok((ids, new_blocks))
}
