//! Block storage: where sealed (encrypted) blocks live, addressed by id.
//!
//! [`BlockStore`] is the seam for S3-compatible storage later; [`LocalBlockStore`]
//! is the embedded default: `DIR/blocks/ab/cd/<hex id>`. A block is durable
//! (fsync'd file and directory) when `put` returns, before any commit can
//! reference it. Blocks are never deleted here yet; garbage collection of
//! unreferenced blocks is future work and must follow the garage-style
//! delayed-delete argument (a block can be re-referenced while being deleted).

use std::io;
use std::path::{Path, PathBuf};

use ferry_shared::BlockId;

pub trait BlockStore: Send + Sync + 'static {
    /// Stores a sealed block durably. Storing an id twice keeps one copy.
    fn put(&self, id: &BlockId, sealed: &[u8]) -> io::Result<()>;
    /// The sealed block, or `None` when it is not stored.
    fn get(&self, id: &BlockId) -> io::Result<Option<Vec<u8>>>;
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

    fn path_of(&self, id: &BlockId) -> PathBuf {
        let hex = id.to_hex();
        self.root.join(&hex[..2]).join(&hex[2..4]).join(hex)
    }
}

impl BlockStore for LocalBlockStore {
    fn put(&self, id: &BlockId, sealed: &[u8]) -> io::Result<()> {
        let path = self.path_of(id);
        if path.exists() {
            return Ok(());
        }
        let dir = path.parent().expect("block path has a parent");
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            crate::fsutil::sync_dir(dir.parent().expect("two levels"))?;
            crate::fsutil::sync_dir(&self.root)?;
        }
        crate::fsutil::write_atomic(&path, &self.tmp, sealed)
    }

    fn get(&self, id: &BlockId) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.path_of(id)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}
