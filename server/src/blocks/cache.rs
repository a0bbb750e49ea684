//! A node's memory of the sealed blocks it wrote or read lately, in front
//! of a remote store: what one device uploads, its other devices fetch
//! moments later, and a bucket answers each read over the network (one
//! stream of s3s-fs here: 85 MB/s). Bounded in bytes; the least recently
//! used go first. A local folder needs none (the OS caches its files).
//!
//! Objects never change, so what is kept stays true until it is deleted
//! (through this store, which forgets it). Blocks are kept sealed, as
//! stored: the cache holds nothing the bucket does not.

use std::io;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use hashlink::LinkedHashMap;

use super::{BlockLoc, BlockStore, Object};
use ferry_shared::BlockId;

/// Where a block is in its store: loose by id, packed by pack and offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Loose(BlockId),
    Packed { pack: u64, offset: u64 },
}

impl Key {
    fn of(id: BlockId, loc: BlockLoc) -> Key {
        match loc {
            BlockLoc::Loose => Key::Loose(id),
            BlockLoc::Packed { pack, offset, .. } => Key::Packed { pack, offset },
        }
    }

    fn in_object(&self, object: Object) -> bool {
        match (*self, object) {
            (Key::Loose(a), Object::Loose(b)) => a == b,
            (Key::Packed { pack, .. }, Object::Pack(p)) => pack == p,
            _ => false,
        }
    }
}

/// Blocks in least-recently-used order, and their bytes.
struct Kept {
    blocks: LinkedHashMap<Key, Arc<Vec<u8>>>,
    bytes: u64,
}

/// A [`BlockStore`] with a bounded memory of recent blocks in front.
pub struct CachedBlockStore {
    inner: Arc<dyn BlockStore>,
    kept: Mutex<Kept>,
    capacity: u64,
}

impl CachedBlockStore {
    /// `inner` with up to `capacity` bytes of recent blocks kept.
    pub fn new(inner: Arc<dyn BlockStore>, capacity: u64) -> Self {
        CachedBlockStore { inner, kept: Mutex::new(Kept { blocks: LinkedHashMap::new(), bytes: 0 }), capacity }
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn keep(&self, key: Key, sealed: Arc<Vec<u8>>) {
        let size = sealed.len() as u64;
        // One block never takes more than an eighth of the room.
        if size > self.capacity / 8 {
            return;
        }
        let mut kept = self.kept();
        if let Some(old) = kept.blocks.insert(key, sealed) {
            kept.bytes -= old.len() as u64;
        }
        kept.bytes += size;
        while kept.bytes > self.capacity {
            match kept.blocks.pop_front() {
                Some((_, gone)) => kept.bytes -= gone.len() as u64,
                None => break,
            }
        }
    }

    fn find(&self, key: &Key) -> Option<Vec<u8>> {
        self.kept().blocks.to_back(key).map(|b| b.as_ref().clone())
    }
}

impl BlockStore for CachedBlockStore {
    fn put(&self, id: BlockId, sealed: Vec<u8>) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async move {
            let copy = Arc::new(sealed.clone());
            self.inner.put(id, sealed).await?;
            self.keep(Key::Loose(id), copy);
            Ok(())
        })
    }

    fn put_pack(&self, sealed: Vec<Vec<u8>>) -> BoxFuture<'_, io::Result<Vec<BlockLoc>>> {
        Box::pin(async move {
            let copies: Vec<Arc<Vec<u8>>> = sealed.iter().map(|s| Arc::new(s.clone())).collect();
            let locs = self.inner.put_pack(sealed).await?;
            for (loc, copy) in locs.iter().zip(copies) {
                if let BlockLoc::Packed { pack, offset, .. } = *loc {
                    self.keep(Key::Packed { pack, offset }, copy);
                }
            }
            Ok(locs)
        })
    }

    fn get(&self, id: BlockId, loc: BlockLoc) -> BoxFuture<'_, io::Result<Option<Vec<u8>>>> {
        Box::pin(async move {
            let key = Key::of(id, loc);
            if let Some(hit) = self.find(&key) {
                return Ok(Some(hit));
            }
            let got = self.inner.get(id, loc).await?;
            if let Some(sealed) = &got {
                self.keep(key, Arc::new(sealed.clone()));
            }
            Ok(got)
        })
    }

    fn get_many(&self, wanted: Vec<(BlockId, BlockLoc)>) -> BoxFuture<'_, io::Result<Vec<Option<Vec<u8>>>>> {
        Box::pin(async move {
            let mut out: Vec<Option<Vec<u8>>> = wanted.iter().map(|(id, loc)| self.find(&Key::of(*id, *loc))).collect();
            let missed: Vec<usize> = (0..wanted.len()).filter(|&i| out[i].is_none()).collect();
            if missed.is_empty() {
                return Ok(out);
            }
            let got = self.inner.get_many(missed.iter().map(|&i| wanted[i]).collect()).await?;
            for (i, sealed) in missed.into_iter().zip(got) {
                if let Some(s) = &sealed {
                    let (id, loc) = wanted[i];
                    self.keep(Key::of(id, loc), Arc::new(s.clone()));
                }
                out[i] = sealed;
            }
            Ok(out)
        })
    }

    fn delete(&self, object: Object) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async move {
            {
                let mut kept = self.kept();
                let gone: Vec<Key> = kept.blocks.keys().filter(|k| k.in_object(object)).copied().collect();
                for key in gone {
                    if let Some(b) = kept.blocks.remove(&key) {
                        kept.bytes -= b.len() as u64;
                    }
                }
            }
            self.inner.delete(object).await
        })
    }

    fn list(&self) -> BoxStream<'static, io::Result<Object>> {
        self.inner.list()
    }
}
