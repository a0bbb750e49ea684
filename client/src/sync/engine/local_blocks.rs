//! Where blocks already sit on this disk, in synced files: a download (and
//! a prefetch) reads them from there, after checking their hash, instead of
//! fetching them (delta download). Both use this; neither uses the other's
//! insides (a download takes over a prefetch only through
//! `Prefetches::claim`).

use std::collections::{HashMap, HashSet};

use ferry_shared::{BlockId, RelPath};

use crate::sync::state::State;

/// Where the blocks of files already synced sit on disk: path, offset, length.
pub(super) type BlockIndex = HashMap<BlockId, (RelPath, u64, u32)>;

/// Where the `wanted` blocks sit in synced files (see
/// `Engine::local_blocks`), among the paths `keep` accepts; empty when the
/// state database cannot say (the blocks are fetched instead).
pub(super) fn block_index(state: &State, wanted: &HashSet<BlockId>, keep: impl Fn(&RelPath) -> bool) -> BlockIndex {
    let sources = match state.block_sources(wanted) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "cannot look up local copies of blocks; fetching them");
            return HashMap::new();
        }
    };
    let mut index = HashMap::new();
    for (id, path, off, len) in sources {
        if keep(&path) {
            index.entry(id).or_insert((path, off, len));
        }
    }
    index
}
