//! The engine's seams: everything it does to the disk, the server and the
//! clock goes through these traits, so the same engine runs against the real
//! folder and HTTP in production and inside a seeded simulation in tests.
//!
//! Production implementations: [`LocalDisk`] (a real folder), `Remote` (the
//! HTTP API, `crate::net::remote`) and [`SystemClock`].

use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use ferry_shared::api::{ChangesResponse, CommitOp, CommitResponse, PendingAnnounce, PendingAnnounced, PendingList};
use ferry_shared::chunk::{ChunkParams, Chunker};
use ferry_shared::{BlockId, RelPath};

use crate::net::remote::{Remote, RemoteError, Traffic};
use crate::sync::names::NameRules;
use crate::sync::scan::{self, ScanError, ScanReport, TEMP_PREFIX, Twin};
use crate::sync::tree::{ContentHash, LocalNode, LocalTree};

/// The time, for names of conflict copies and status.
pub trait Clock: Send + Sync + 'static {
    /// Unix milliseconds.
    fn now_ms(&self) -> i64;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }
}

/// The server, as the engine uses it.
pub trait Api: Clone + Send + Sync + 'static {
    /// Journal records after `cursor`; with `edits`, file modifications may
    /// carry their block lists as edits (`Change::blocks_edit`).
    fn changes(
        &self,
        cursor: i64,
        limit: u32,
        edits: bool,
    ) -> impl Future<Output = Result<(ChangesResponse, Vec<String>), RemoteError>> + Send;
    fn missing(&self, ids: &[BlockId]) -> impl Future<Output = Result<Vec<BlockId>, RemoteError>> + Send;
    fn put_batch(&self, body: Vec<u8>) -> impl Future<Output = Result<(), RemoteError>> + Send;
    fn fetch(&self, ids: &[BlockId]) -> impl Future<Output = Result<Vec<(BlockId, Vec<u8>)>, RemoteError>> + Send;
    fn get_block(&self, id: &BlockId) -> impl Future<Output = Result<Vec<u8>, RemoteError>> + Send;
    fn commit(&self, ops: Vec<CommitOp>) -> impl Future<Output = Result<CommitResponse, RemoteError>> + Send;
    /// Downloads a block, waiting up to `wait_secs` for a pending upload to
    /// send it; `None` when it is not there (yet).
    fn wait_block(
        &self,
        id: &BlockId,
        wait_secs: u64,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, RemoteError>> + Send;
    /// Announces a file whose blocks are being sent.
    fn announce(&self, a: &PendingAnnounce) -> impl Future<Output = Result<PendingAnnounced, RemoteError>> + Send;
    /// Drops this device's announcement `id`, or all of them.
    fn drop_pending(&self, id: Option<i64>) -> impl Future<Output = Result<(), RemoteError>> + Send;
    /// The uploads being announced in the namespace.
    fn pending(&self) -> impl Future<Output = Result<PendingList, RemoteError>> + Send;
    /// Bytes sent to and received from the server so far.
    fn traffic(&self) -> Traffic;
}

impl Api for Remote {
    async fn changes(
        &self,
        cursor: i64,
        limit: u32,
        edits: bool,
    ) -> Result<(ChangesResponse, Vec<String>), RemoteError> {
        Remote::changes(self, cursor, limit, edits).await
    }
    async fn missing(&self, ids: &[BlockId]) -> Result<Vec<BlockId>, RemoteError> {
        Remote::missing(self, ids).await
    }
    async fn put_batch(&self, body: Vec<u8>) -> Result<(), RemoteError> {
        Remote::put_batch(self, body).await
    }
    async fn fetch(&self, ids: &[BlockId]) -> Result<Vec<(BlockId, Vec<u8>)>, RemoteError> {
        Remote::fetch(self, ids).await
    }
    async fn get_block(&self, id: &BlockId) -> Result<Vec<u8>, RemoteError> {
        Remote::get_block(self, id).await
    }
    async fn commit(&self, ops: Vec<CommitOp>) -> Result<CommitResponse, RemoteError> {
        Remote::commit(self, ops).await
    }
    async fn wait_block(&self, id: &BlockId, wait_secs: u64) -> Result<Option<Vec<u8>>, RemoteError> {
        Remote::wait_block(self, id, wait_secs).await
    }
    async fn announce(&self, a: &PendingAnnounce) -> Result<PendingAnnounced, RemoteError> {
        Remote::announce(self, a).await
    }
    async fn drop_pending(&self, id: Option<i64>) -> Result<(), RemoteError> {
        Remote::drop_pending(self, id).await
    }
    async fn pending(&self) -> Result<PendingList, RemoteError> {
        Remote::pending(self).await
    }
    fn traffic(&self) -> Traffic {
        Remote::traffic(self)
    }
}

/// `(id, offset, length)` of each block of a file, in order.
pub type BlockSpans = Vec<(BlockId, u64, u32)>;

/// A file's content as the chunker saw it.
#[derive(Debug, Clone)]
pub struct Hashed {
    pub local: LocalNode,
    pub blocks: BlockSpans,
    pub hash: ContentHash,
}

/// Chunks and hashes `size` bytes of content with the shared rule: each
/// block's `(id, offset, length)` and the content hash the server computes.
pub fn hash_content(reader: impl Read, size: u64) -> io::Result<(BlockSpans, ContentHash)> {
    let mut blocks = Vec::new();
    for chunk in Chunker::new(reader, ChunkParams::for_size(size)) {
        let c = chunk?;
        blocks.push((BlockId::of(&c.data), c.offset, c.data.len() as u32));
    }
    let total: u64 = blocks.iter().map(|b| u64::from(b.2)).sum();
    let hash = ContentHash(ferry_shared::block::content_digest(total, blocks.iter().map(|b| &b.0)));
    Ok((blocks, hash))
}

/// The sync folder, as the engine uses it. Paths are relative to the folder;
/// nothing outside it can be named. Methods block: the engine calls them
/// through [`Disk::blocking`], except quick metadata calls.
pub trait Disk: Clone + Send + Sync + 'static {
    /// A file being written beside its target.
    type Temp: Send + 'static;

    /// Runs blocking work on this disk off the async threads (tokio's
    /// blocking pool; a simulation runs it in its own order).
    fn blocking<T, F>(&self, f: F) -> impl Future<Output = T> + Send
    where
        T: Send + 'static,
        F: FnOnce(&Self) -> T + Send + 'static,
    {
        let disk = self.clone();
        async move { tokio::task::spawn_blocking(move || f(&disk)).await.expect("disk task panicked") }
    }

    /// How to name the folder in messages.
    fn describe(&self) -> String;
    /// Which names this disk can hold (see [`crate::sync::names`]).
    fn name_rules(&self) -> NameRules {
        NameRules::Posix
    }
    /// The folder marker's content; `None` when the folder or marker is missing.
    fn read_marker(&self) -> io::Result<Option<String>>;
    /// Creates the folder (if needed) and its marker.
    fn init_marker(&self, id: &str) -> io::Result<()>;
    /// The local tree, keyed by NFC names (names spelled otherwise on disk
    /// are found under their NFC form by every other method).
    fn scan(&self) -> Result<(LocalTree, ScanReport), ScanError>;
    /// Renames a twin the scan reported (a name with the same NFC form as
    /// the scanned one at `twin.path`) to `to`, in the same folder.
    fn move_twin_aside(&self, twin: &Twin, to: &RelPath) -> io::Result<()>;
    fn stat(&self, p: &RelPath) -> io::Result<Option<LocalNode>>;
    /// Chunks and hashes a file; fails if it changes while being read.
    fn hash_file(&self, p: &RelPath) -> io::Result<Hashed>;
    fn read_range(&self, p: &RelPath, offset: u64, len: u32) -> io::Result<Vec<u8>>;
    /// Moves a file or folder (creating the target's folders), durably.
    fn rename(&self, from: &RelPath, to: &RelPath) -> io::Result<()>;
    fn mkdir_all(&self, p: &RelPath) -> io::Result<()>;
    fn remove_file(&self, p: &RelPath) -> io::Result<()>;
    /// Removes an empty folder; `Ok(false)` when it is not empty (kept).
    fn remove_dir(&self, p: &RelPath) -> io::Result<bool>;
    /// Removes partial downloads an earlier run left; returns how many.
    fn remove_temp_files(&self) -> io::Result<usize>;
    /// Starts a temp file in the folder of `target` (creating it if needed).
    fn create_temp(&self, target: &RelPath) -> io::Result<Self::Temp>;
    /// Starts a temp file at the top of the folder, for a file whose own
    /// folder may not exist yet (a prefetch); [`Disk::commit_temp`] renames
    /// it to any target in the folder.
    fn create_spare_temp(&self) -> io::Result<Self::Temp>;
    fn write_temp(&self, temp: &mut Self::Temp, data: &[u8]) -> io::Result<()>;
    /// Sets the temp file's mtime and executable bit, then makes it durable (fsync).
    fn finish_temp(&self, temp: &mut Self::Temp, mtime_ms: i64, executable: bool) -> io::Result<()>;
    /// [`Disk::finish_temp`] for many files, in order; the fsyncs may overlap.
    fn finish_temps(&self, temps: &mut [(Self::Temp, i64, bool)]) -> Vec<io::Result<()>> {
        temps.iter_mut().map(|(t, mtime, exec)| self.finish_temp(t, *mtime, *exec)).collect()
    }
    /// Renames a finished temp file over `target` only if `target` still
    /// shows `expect` (else removes it and returns `None`). With
    /// `sync_parent`, the folder is fsync'd too.
    fn commit_temp(
        &self,
        temp: Self::Temp,
        target: &RelPath,
        expect: Option<LocalNode>,
        sync_parent: bool,
    ) -> io::Result<Option<LocalNode>>;
    fn discard_temp(&self, temp: Self::Temp);
    /// fsyncs the folders of these paths (after renames without `sync_parent`).
    fn sync_parents(&self, paths: &[RelPath]);
}

/// The real sync folder.
#[derive(Debug, Clone)]
pub struct LocalDisk {
    root: PathBuf,
    /// Detected again each time the folder comes back (another disk may be
    /// mounted there now).
    rules: std::sync::Arc<std::sync::Mutex<NameRules>>,
    /// Names spelled on disk other than in NFC, from the last scan (NFC path
    /// → spelling of its last segment), kept up to date by this disk's own
    /// renames and removals. Usually empty. A stale entry (the user renamed
    /// such a file since) only makes a lookup miss, which every caller
    /// treats as "changed meanwhile": nothing is overwritten or deleted.
    spellings: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<RelPath, String>>>,
}

/// A temp file of [`LocalDisk`].
pub struct LocalTemp {
    path: PathBuf,
    file: std::fs::File,
    /// Bytes written since the last flush to disk.
    unsynced: u64,
    /// The file's length so far (runs of zeros are skipped, not written).
    len: u64,
}

/// Runs of zeros at least this long are left as holes (sparse files stay
/// sparse, and a 10 GiB disk image with little in it takes little space).
const HOLE_MIN: usize = 64 << 10;

/// A large download is flushed to disk as it arrives, every this many bytes,
/// so the final fsync has little left to wait for.
const FLUSH_EVERY: u64 = 32 << 20;

impl LocalDisk {
    /// The folder at `root`, with the name rules of its file system.
    pub fn new(root: PathBuf) -> Self {
        let rules = std::sync::Arc::new(std::sync::Mutex::new(NameRules::detect(&root)));
        LocalDisk { root, rules, spellings: Default::default() }
    }

    /// Detects the name rules of the folder's file system again.
    pub fn detect_rules(&self) {
        let rules = NameRules::detect(&self.root);
        *self.rules.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = rules;
    }

    fn spellings(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<RelPath, String>> {
        self.spellings.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Where `p` is on disk: each segment as spelled there.
    fn abs(&self, p: &RelPath) -> PathBuf {
        let spellings = self.spellings();
        if spellings.is_empty() {
            return self.root.join(p.as_str());
        }
        let mut abs = self.root.clone();
        let mut at = RelPath::root();
        for seg in p.segments() {
            at = at.join(seg).expect("a segment of a valid path");
            abs.push(spellings.get(&at).map_or(seg, String::as_str));
        }
        abs
    }

    /// After `from` moved to `to`: what was under it keeps its spellings
    /// under the new place; `to` itself is spelled as given (NFC).
    fn moved(&self, from: &RelPath, to: &RelPath) {
        let mut spellings = self.spellings();
        if spellings.is_empty() {
            return;
        }
        let under: Vec<RelPath> =
            spellings.keys().filter(|k| k.starts_with(from) || k.starts_with(to)).cloned().collect();
        let mut moved = Vec::new();
        for k in under {
            let v = spellings.remove(&k).expect("listed");
            if k.starts_with(from)
                && k != *from
                && let Ok(new) = k.rebase(from, to)
            {
                moved.push((new, v));
            }
        }
        spellings.extend(moved);
    }

    /// After `p` was removed: nothing is spelled under it any more.
    fn removed(&self, p: &RelPath) {
        let mut spellings = self.spellings();
        if !spellings.is_empty() {
            spellings.retain(|k, _| !k.starts_with(p));
        }
    }
}

fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

fn set_executable(path: &Path, exec: bool) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut perm = std::fs::metadata(path)?.permissions();
        let mode = perm.mode();
        let new = if exec { mode | ((mode & 0o444) >> 2) } else { mode & !0o111 };
        if new != mode {
            perm.set_mode(new);
            std::fs::set_permissions(path, perm)?;
        }
    }
    #[cfg(not(unix))]
    let _ = (path, exec);
    Ok(())
}

fn stat_abs(abs: &Path) -> io::Result<Option<LocalNode>> {
    match std::fs::symlink_metadata(abs) {
        Ok(m) => Ok(Some(scan::local_node(&m))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl Disk for LocalDisk {
    type Temp = LocalTemp;

    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn name_rules(&self) -> NameRules {
        *self.rules.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn read_marker(&self) -> io::Result<Option<String>> {
        match std::fs::read_to_string(self.root.join(scan::MARKER)) {
            Ok(s) => Ok(Some(s.trim().to_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn init_marker(&self, id: &str) -> io::Result<()> {
        std::fs::create_dir_all(&self.root)?;
        write_file(&self.root.join(scan::MARKER), id.as_bytes(), false)
    }

    fn scan(&self) -> Result<(LocalTree, ScanReport), ScanError> {
        let (tree, mut report) = scan::scan(&self.root)?;
        *self.spellings() = std::mem::take(&mut report.spellings);
        Ok((tree, report))
    }

    fn move_twin_aside(&self, twin: &Twin, to: &RelPath) -> io::Result<()> {
        let folder = twin.path.parent().unwrap_or_else(RelPath::root);
        let (dir, dst) = (self.abs(&folder), self.abs(to));
        if stat_abs(&dst)?.is_some() {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{to} exists")));
        }
        std::fs::rename(dir.join(&twin.spelling), &dst)?;
        sync_dir(&dir);
        Ok(())
    }

    fn stat(&self, p: &RelPath) -> io::Result<Option<LocalNode>> {
        stat_abs(&self.abs(p))
    }

    fn hash_file(&self, p: &RelPath) -> io::Result<Hashed> {
        let abs = self.abs(p);
        let before = scan::local_node(&std::fs::symlink_metadata(&abs)?);
        let file = std::fs::File::open(&abs)?;
        let (blocks, hash) = hash_content(io::BufReader::with_capacity(1 << 20, file), before.size)?;
        let after = scan::local_node(&std::fs::symlink_metadata(&abs)?);
        let size: u64 = blocks.iter().map(|b| u64::from(b.2)).sum();
        if before != after || size != after.size {
            return Err(io::Error::other("the file changed while it was read; it will be sent once it is stable"));
        }
        Ok(Hashed { local: after, blocks, hash })
    }

    fn read_range(&self, p: &RelPath, offset: u64, len: u32) -> io::Result<Vec<u8>> {
        let mut f = std::fs::File::open(self.abs(p))?;
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = vec![0u8; len as usize];
        f.read_exact(&mut buf)?;
        Ok(buf)
    }

    fn rename(&self, from: &RelPath, to: &RelPath) -> io::Result<()> {
        let (src, dst) = (self.abs(from), self.abs(to));
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::rename(&src, &dst)?;
        self.moved(from, to);
        sync_dir(dst.parent().unwrap_or(&self.root));
        if src.parent() != dst.parent() {
            sync_dir(src.parent().unwrap_or(&self.root));
        }
        Ok(())
    }

    fn mkdir_all(&self, p: &RelPath) -> io::Result<()> {
        std::fs::create_dir_all(self.abs(p))
    }

    fn remove_file(&self, p: &RelPath) -> io::Result<()> {
        let abs = self.abs(p);
        std::fs::remove_file(&abs)?;
        self.removed(p);
        sync_dir(abs.parent().unwrap_or(&self.root));
        Ok(())
    }

    fn remove_dir(&self, p: &RelPath) -> io::Result<bool> {
        let abs = self.abs(p);
        match std::fs::remove_dir(&abs) {
            Ok(()) => {
                self.removed(p);
                sync_dir(abs.parent().unwrap_or(&self.root));
                Ok(true)
            }
            Err(_) if std::fs::read_dir(&abs).map(|mut d| d.next().is_some()).unwrap_or(false) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn remove_temp_files(&self) -> io::Result<usize> {
        let (_, report) = scan::scan(&self.root).map_err(io::Error::other)?;
        for f in &report.temp_files {
            let _ = std::fs::remove_file(f);
        }
        Ok(report.temp_files.len())
    }

    fn create_temp(&self, target: &RelPath) -> io::Result<LocalTemp> {
        let dir = self.abs(target).parent().map(Path::to_owned).unwrap_or_else(|| self.root.clone());
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{TEMP_PREFIX}{}", hex::encode(rand::random::<[u8; 8]>())));
        let file = std::fs::File::create(&path)?;
        Ok(LocalTemp { path, file, unsynced: 0, len: 0 })
    }

    fn create_spare_temp(&self) -> io::Result<LocalTemp> {
        // Never into an empty mount point (a folder whose disk is gone).
        if !self.root.join(scan::MARKER).is_file() {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("{} has no marker", self.root.display())));
        }
        let path = self.root.join(format!("{TEMP_PREFIX}{}", hex::encode(rand::random::<[u8; 8]>())));
        let file = std::fs::File::create(&path)?;
        Ok(LocalTemp { path, file, unsynced: 0, len: 0 })
    }

    fn write_temp(&self, temp: &mut LocalTemp, data: &[u8]) -> io::Result<()> {
        if data.len() >= HOLE_MIN && data.iter().all(|&b| b == 0) {
            temp.file.seek(SeekFrom::Current(data.len() as i64))?;
        } else {
            temp.file.write_all(data)?;
            temp.unsynced += data.len() as u64;
        }
        temp.len += data.len() as u64;
        if temp.unsynced >= FLUSH_EVERY {
            temp.file.sync_data()?;
            temp.unsynced = 0;
        }
        Ok(())
    }

    fn finish_temp(&self, temp: &mut LocalTemp, mtime_ms: i64, executable: bool) -> io::Result<()> {
        // A file that ends in a hole gets its full length.
        temp.file.set_len(temp.len)?;
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_millis(mtime_ms.max(0) as u64);
        let _ = temp.file.set_modified(when);
        set_executable(&temp.path, executable)?;
        temp.file.sync_all()
    }

    fn finish_temps(&self, temps: &mut [(LocalTemp, i64, bool)]) -> Vec<io::Result<()>> {
        // fsyncs issued together share the file system's journal commits:
        // a group of small downloads waits for a few, not one per file.
        const THREADS: usize = 8;
        if temps.len() < 2 {
            return temps.iter_mut().map(|(t, mtime, exec)| self.finish_temp(t, *mtime, *exec)).collect();
        }
        let per = temps.len().div_ceil(THREADS);
        std::thread::scope(|s| {
            let handles: Vec<_> = temps
                .chunks_mut(per)
                .map(|chunk| {
                    let n = chunk.len();
                    let h = s.spawn(move || {
                        chunk.iter_mut().map(|(t, mtime, exec)| self.finish_temp(t, *mtime, *exec)).collect::<Vec<_>>()
                    });
                    (n, h)
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|(n, h)| {
                    h.join()
                        .unwrap_or_else(|_| (0..n).map(|_| Err(io::Error::other("fsync thread panicked"))).collect())
                })
                .collect()
        })
    }

    fn commit_temp(
        &self,
        temp: LocalTemp,
        target: &RelPath,
        expect: Option<LocalNode>,
        sync_parent: bool,
    ) -> io::Result<Option<LocalNode>> {
        let LocalTemp { path, file, .. } = temp;
        drop(file);
        let result = (|| {
            // The last check: the target must still be what the plan saw.
            let abs = self.abs(target);
            if stat_abs(&abs)? != expect {
                let _ = std::fs::remove_file(&path);
                return Ok(None);
            }
            std::fs::rename(&path, &abs)?;
            if sync_parent {
                sync_dir(abs.parent().unwrap_or(&self.root));
            }
            stat_abs(&abs)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&path);
        }
        result
    }

    fn discard_temp(&self, temp: LocalTemp) {
        drop(temp.file);
        let _ = std::fs::remove_file(&temp.path);
    }

    fn sync_parents(&self, paths: &[RelPath]) {
        let dirs: std::collections::BTreeSet<PathBuf> = paths
            .iter()
            .map(|p| self.abs(p).parent().map(Path::to_owned).unwrap_or_else(|| self.root.clone()))
            .collect();
        for d in dirs {
            sync_dir(&d);
        }
    }
}

/// Writes a file atomically (temp + fsync + rename), private if asked.
pub fn write_file(path: &Path, bytes: &[u8], private: bool) -> io::Result<()> {
    use std::io::Write;
    // Named like a partial download: in the sync folder (the marker) a temp
    // file left by a crash is never synced and is cleaned up at start.
    let name = path.file_name().ok_or_else(|| io::Error::other("a file name"))?.to_string_lossy();
    let tmp = path.with_file_name(format!("{}{name}", scan::TEMP_PREFIX));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(&tmp).map_err(|e| io::Error::new(e.kind(), format!("writing {}: {e}", tmp.display())))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
