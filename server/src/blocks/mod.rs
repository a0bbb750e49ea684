//! Block storage: where sealed (encrypted) blocks live, addressed by id.
//!
//! [`BlockStore`] is the seam; [`local::LocalBlockStore`] is the embedded
//! default (a folder). Every method is async and never holds a runtime
//! thread while it waits: the local folder does its file work on the
//! blocking pool, a remote store waits on the network. A block is durable
//! when `put` returns, before any commit can reference it. Many small
//! blocks uploaded together go into one pack object (one write, one
//! fsync); the metadata store keeps each block's [`BlockLoc`], and a packed
//! block is read with a ranged read of its pack.
//!
//! Objects are immutable and content-addressed (a pack's id is random and
//! never reused), so `delete` and `list` are all garbage collection needs:
//! what is stored and referenced by nothing goes, after a delay that lets a
//! block be re-referenced while it is being deleted.

use std::io;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

use ferry_shared::BlockId;

pub mod local;

pub use local::LocalBlockStore;

/// Where a block is stored: on its own, or inside a pack (many small blocks
/// uploaded together share one object and one fsync).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockLoc {
    Loose,
    Packed { pack: u64, offset: u64, len: u32 },
}

/// One stored object: a block on its own, or a pack of blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Object {
    Loose(BlockId),
    Pack(u64),
}

impl Object {
    /// The object a block at `loc` is in.
    pub fn of(id: &BlockId, loc: BlockLoc) -> Object {
        match loc {
            BlockLoc::Loose => Object::Loose(*id),
            BlockLoc::Packed { pack, .. } => Object::Pack(pack),
        }
    }
}

pub trait BlockStore: Send + Sync + 'static {
    /// Stores a sealed block on its own, durably. Storing an id twice keeps
    /// one copy.
    fn put(&self, id: BlockId, sealed: Vec<u8>) -> BoxFuture<'_, io::Result<()>>;
    /// Stores sealed blocks together in a new pack, durably, with one write;
    /// returns where each one is.
    fn put_pack(&self, sealed: Vec<Vec<u8>>) -> BoxFuture<'_, io::Result<Vec<BlockLoc>>>;
    /// The sealed block (a ranged read of its pack when packed), or `None`
    /// when it is not stored.
    fn get(&self, id: BlockId, loc: BlockLoc) -> BoxFuture<'_, io::Result<Option<Vec<u8>>>>;
    /// Removes an object; one already gone is no error.
    fn delete(&self, object: Object) -> BoxFuture<'_, io::Result<()>>;
    /// Every stored object, in no particular order, read as it is listed.
    fn list(&self) -> BoxStream<'static, io::Result<Object>>;
}

#[cfg(test)]
pub(crate) mod conformance;
