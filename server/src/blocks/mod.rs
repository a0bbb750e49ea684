//! Block storage: where sealed (encrypted) blocks live, addressed by id.
//!
//! [`BlockStore`] is the seam; [`local::LocalBlockStore`] is the embedded
//! default (a folder), [`s3::S3BlockStore`] an S3-compatible bucket (same
//! layout, conditional creates, ranged GETs); [`open`] picks one from
//! `--blocks`. Every method is async and never holds a runtime
//! thread while it waits: the local folder does its file work on the
//! blocking pool, a remote store waits on the network with timeouts. A
//! block is durable when `put` returns, before any commit can reference it.
//! Many small blocks uploaded together go into one pack object (one write,
//! one fsync); the metadata store keeps each block's [`BlockLoc`], and a
//! packed block is read with a ranged read of its pack. A store that fails
//! (a disk error, an S3 outage) answers an `io::Error`, never "not stored":
//! the API turns it into a retryable 503.
//!
//! Objects are immutable and content-addressed (a pack's id is random and
//! never reused), so `delete` and `list` are all garbage collection needs:
//! what is stored and referenced by nothing goes, after a delay that lets a
//! block be re-referenced while it is being deleted.

use std::io;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

use ferry_shared::BlockId;

pub mod cache;
pub mod local;
pub mod s3;

pub use local::LocalBlockStore;
pub use s3::S3BlockStore;

/// Reads one request may have in flight against a store.
pub const READS_AT_ONCE: usize = 8;

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
    /// Many sealed blocks, in the order asked (`None` for one not stored).
    /// A remote store reads the blocks of one pack with as few requests as
    /// it can; the default reads each on its own, a few at a time.
    fn get_many(&self, wanted: Vec<(BlockId, BlockLoc)>) -> BoxFuture<'_, io::Result<Vec<Option<Vec<u8>>>>> {
        use futures_util::stream::{StreamExt, TryStreamExt};
        Box::pin(
            futures_util::stream::iter(wanted)
                .map(move |(id, loc)| self.get(id, loc))
                .buffered(READS_AT_ONCE)
                .try_collect(),
        )
    }
    /// Removes an object; one already gone is no error.
    fn delete(&self, object: Object) -> BoxFuture<'_, io::Result<()>>;
    /// Every stored object, in no particular order, read as it is listed.
    fn list(&self) -> BoxStream<'static, io::Result<Object>>;
}

/// The block store `spec` names (`--blocks`): none or a folder path, the
/// local folder (by default `DATA/blocks`); `s3://BUCKET?endpoint=…&region=…
/// &prefix=…`, a bucket, with credentials from `AWS_ACCESS_KEY_ID` and
/// `AWS_SECRET_ACCESS_KEY`. A bucket is checked before the server starts
/// (one page of its listing), so a wrong endpoint, bucket or key stops
/// start-up with the reason instead of failing every upload; up to
/// `cache_bytes` of the blocks the node wrote or read lately are kept in
/// front of it ([`cache`]).
pub fn open(spec: Option<&str>, data: &Path, cache_bytes: u64) -> anyhow::Result<Arc<dyn BlockStore>> {
    let folder = |dir: &Path| -> anyhow::Result<Arc<dyn BlockStore>> {
        let store = LocalBlockStore::open(dir).with_context(|| format!("opening block folder {}", dir.display()))?;
        Ok(Arc::new(store))
    };
    match spec.map(str::trim).filter(|s| !s.is_empty()) {
        None => folder(&data.join("blocks")),
        Some(spec) if spec.starts_with("s3://") => {
            let parsed = s3::S3Spec::parse(spec)?;
            let store = S3BlockStore::from_env(&parsed)?;
            // On a client of its own, in a runtime of its own: `open` runs
            // in or outside a runtime, and the store's pooled connections
            // must not belong to a runtime that is gone.
            let probe = S3BlockStore::from_env(&parsed)?;
            let checked = std::thread::scope(|s| {
                s.spawn(|| tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(probe.check()))
                    .join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("the check panicked")))
            });
            checked.with_context(|| {
                format!(
                    "block storage {spec} is not usable (check the endpoint, the bucket, and the credentials in \
                     AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
                )
            })?;
            if cache_bytes == 0 {
                return Ok(Arc::new(store));
            }
            Ok(Arc::new(cache::CachedBlockStore::new(Arc::new(store), cache_bytes)))
        }
        Some(spec) if spec.contains("://") => {
            bail!("unsupported block storage {spec:?}: give a folder path or s3://BUCKET?endpoint=…")
        }
        Some(dir) => folder(Path::new(dir)),
    }
}

#[cfg(test)]
pub(crate) mod conformance;
