//! Server-side chunking of whole-file uploads (web app, file API): the bytes
//! are cut with the same CDC rule as clients use, so both dedupe together.

use std::io::Read;

use ferry_shared::BlockId;
use ferry_shared::chunk::{self, ChunkParams};

use crate::api::AppState;
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
    let stats = chunk::encode_stream(
        reader,
        ChunkParams::for_size(expected_size),
        chunk::default_workers(),
        |sb| -> Result<()> {
            let b = sb.block;
            if !state.meta.block_stored(&b.id)? {
                state.blocks.put(&b.id, &state.vault.seal(&b.id, b.encoding, &b.bytes))?;
            }
            ids.push(b.id);
            new_blocks.push(NewBlock { id: b.id, size: b.len, stored_size: b.bytes.len() as u32 });
            Ok(())
        },
    )?;
    if stats.size != expected_size {
        return Err(Error::bad_request(format!("received {} bytes but {expected_size} were announced", stats.size)));
    }
    Ok((ids, new_blocks))
}

/// Runs blocking work off the async threads.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Internal(anyhow::anyhow!("worker failed: {e}")))?
}
