//! Block storage: where sealed (encrypted) blocks live, addressed by id.
//!
//! [`BlockStore`] is the seam for S3-compatible storage later; [`LocalBlockStore`]
//! is the embedded default: `DIR/blocks/ab/cd/<hex id>`. A block is durable
//! (fsync'd file and directory) when `put` returns, before any commit can
//! reference it. Many small blocks uploaded together go into one pack file
//! (`DIR/blocks/packs/<id>.pack`, one fsync for all); the metadata store keeps
//! each block's [`BlockLoc`]. Blocks are never deleted here yet; garbage collection of
//! unreferenced blocks is future work and must follow the garage-style
//! delayed-delete argument (a block can be re-referenced while being deleted).

use std::io;
use std::path::{Path, PathBuf};

use ferry_shared::BlockId;

/// Where a block is stored: on its own, or inside a pack (many small blocks
/// uploaded together share one file and one fsync).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockLoc {
    Loose,
    Packed { pack: u64, offset: u64, len: u32 },
}

pub trait BlockStore: Send + Sync + 'static {
    /// Stores a sealed block durably. Storing an id twice keeps one copy.
    fn put(&self, id: &BlockId, sealed: &[u8]) -> io::Result<()>;
    /// Stores sealed blocks together, durably, with one fsync; returns where
    /// each one is.
    fn put_pack(&self, sealed: &[Vec<u8>]) -> io::Result<Vec<BlockLoc>>;
    /// The sealed block, or `None` when it is not stored.
    fn get(&self, id: &BlockId, loc: BlockLoc) -> io::Result<Option<Vec<u8>>>;
}

pub struct LocalBlockStore {
    root: PathBuf,
    tmp: PathBuf,
}

impl LocalBlockStore {
    pub fn open(root: &Path) -> io::Result<Self> {
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        // Leftovers of writes interrupted by a crash are never referenced.
        for e in std::fs::read_dir(&tmp)? {
            let _ = std::fs::remove_file(e?.path());
        }
        Ok(LocalBlockStore { root: root.to_owned(), tmp })
    }

    fn pack_path(&self, pack: u64) -> PathBuf {
        self.root.join("packs").join(format!("{pack:016x}.pack"))
    }

    fn path_of(&self, id: &BlockId) -> PathBuf {
        let hex = id.to_hex();
        self.root.join(&hex[..2]).join(&hex[2..4]).join(hex)
    }
}

impl BlockStore for LocalBlockStore {
    fn put(&self, id: &BlockId, sealed: &[u8]) -> io::Result<()> {
        let path = self.path_of(id);
        // Written even when another account's copy is here: a block someone
        // else holds must cost what a new one costs, or the answer's timing
        // tells whether anyone on the server has that content. (The new
        // seal replaces the old atomically; both open to the same bytes.)
        let dir = path.parent().expect("block path has a parent");
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            crate::fsutil::sync_dir(dir.parent().expect("two levels"))?;
            crate::fsutil::sync_dir(&self.root)?;
        }
        crate::fsutil::write_atomic(&path, &self.tmp, sealed)
    }

    fn put_pack(&self, sealed: &[Vec<u8>]) -> io::Result<Vec<BlockLoc>> {
        let pack: u64 = rand::random();
        let dir = self.root.join("packs");
        if !dir.exists() {
            std::fs::create_dir_all(&dir)?;
            crate::fsutil::sync_dir(&self.root)?;
        }
        let mut bytes = Vec::with_capacity(sealed.iter().map(Vec::len).sum());
        let mut locs = Vec::with_capacity(sealed.len());
        for s in sealed {
            locs.push(BlockLoc::Packed { pack, offset: bytes.len() as u64, len: s.len() as u32 });
            bytes.extend_from_slice(s);
        }
        crate::fsutil::write_atomic(&self.pack_path(pack), &self.tmp, &bytes)?;
        Ok(locs)
    }

    fn get(&self, id: &BlockId, loc: BlockLoc) -> io::Result<Option<Vec<u8>>> {
        use std::io::{Read, Seek, SeekFrom};
        let r = match loc {
            BlockLoc::Loose => std::fs::read(self.path_of(id)),
            BlockLoc::Packed { pack, offset, len } => (|| {
                let mut f = std::fs::File::open(self.pack_path(pack))?;
                f.seek(SeekFrom::Start(offset))?;
                let mut buf = vec![0u8; len as usize];
                f.read_exact(&mut buf)?;
                Ok(buf)
            })(),
        };
        match r {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}
