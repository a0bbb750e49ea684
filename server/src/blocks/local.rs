//! Blocks in a local folder, the embedded default: `DIR/ab/cd/<hex id>` for
//! a block on its own, `DIR/packs/<id>.pack` for a pack. Every write is a
//! temp file, fsync, rename and a directory fsync; the file work runs on
//! the blocking pool.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

use ferry_shared::BlockId;

use super::{BlockLoc, BlockStore, Object};

#[derive(Clone)]
pub struct LocalBlockStore(Arc<Folder>);

struct Folder {
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
        Ok(LocalBlockStore(Arc::new(Folder { root: root.to_owned(), tmp })))
    }

    /// Opens an existing folder to read from, changing nothing in it (no
    /// `tmp/` made or emptied): `ferry-server migrate-to` reads a source
    /// it must leave as it was. Writes to it may fail.
    pub fn open_existing(root: &Path) -> Self {
        LocalBlockStore(Arc::new(Folder { root: root.to_owned(), tmp: root.join("tmp") }))
    }

    /// Runs `f` on the folder on the blocking pool.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Folder) -> io::Result<T> + Send + 'static,
    ) -> BoxFuture<'static, io::Result<T>> {
        let folder = Arc::clone(&self.0);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || f(&folder))
                .await
                .map_err(|e| io::Error::other(format!("block store worker: {e}")))?
        })
    }
}

impl Folder {
    fn pack_path(&self, pack: u64) -> PathBuf {
        self.root.join("packs").join(format!("{pack:016x}.pack"))
    }

    fn path_of(&self, id: &BlockId) -> PathBuf {
        let hex = id.to_hex();
        self.root.join(&hex[..2]).join(&hex[2..4]).join(hex)
    }

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

    fn delete(&self, object: Object) -> io::Result<()> {
        let path = match object {
            Object::Loose(id) => self.path_of(&id),
            Object::Pack(pack) => self.pack_path(pack),
        };
        match std::fs::remove_file(&path) {
            Ok(()) => crate::fsutil::sync_dir(path.parent().expect("a folder")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sends every object to `tx`, folder by folder; stops when the
    /// receiver is gone.
    fn list(&self, tx: &tokio::sync::mpsc::Sender<io::Result<Object>>) -> io::Result<()> {
        let hex2 = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_hexdigit());
        let names = |dir: &Path| -> io::Result<Vec<String>> {
            match std::fs::read_dir(dir) {
                Ok(entries) => entries.map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned())).collect(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(e),
            }
        };
        for name in names(&self.root.join("packs"))? {
            let pack = name.strip_suffix(".pack").and_then(|h| u64::from_str_radix(h, 16).ok());
            if let Some(pack) = pack
                && tx.blocking_send(Ok(Object::Pack(pack))).is_err()
            {
                return Ok(());
            }
        }
        for a in names(&self.root)?.into_iter().filter(|n| hex2(n)) {
            for b in names(&self.root.join(&a))?.into_iter().filter(|n| hex2(n)) {
                for name in names(&self.root.join(&a).join(&b))? {
                    if let Ok(id) = name.parse::<BlockId>()
                        && tx.blocking_send(Ok(Object::Loose(id))).is_err()
                    {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }
}

impl BlockStore for LocalBlockStore {
    fn put(&self, id: BlockId, sealed: Vec<u8>) -> BoxFuture<'_, io::Result<()>> {
        self.run(move |f| f.put(&id, &sealed))
    }

    fn put_pack(&self, sealed: Vec<Vec<u8>>) -> BoxFuture<'_, io::Result<Vec<BlockLoc>>> {
        self.run(move |f| f.put_pack(&sealed))
    }

    fn get(&self, id: BlockId, loc: BlockLoc) -> BoxFuture<'_, io::Result<Option<Vec<u8>>>> {
        self.run(move |f| f.get(&id, loc))
    }

    fn delete(&self, object: Object) -> BoxFuture<'_, io::Result<()>> {
        self.run(move |f| f.delete(object))
    }

    fn list(&self) -> BoxStream<'static, io::Result<Object>> {
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let folder = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = folder.list(&tx) {
                let _ = tx.blocking_send(Err(e));
            }
        });
        Box::pin(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|o| (o, rx)) }))
    }
}
