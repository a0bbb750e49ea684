//! An in-memory sync folder behind the engine's [`Disk`] seam, with the
//! faults a real folder has: full, unreadable items, unmounted. The simulated
//! user changes it directly ([`SimDisk::user`]); the engine only through
//! [`Disk`], whose blocking calls yield to the scheduler first, so user edits
//! and other devices interleave with the engine's work at every disk step.
//!
//! It keeps the rules of a POSIX file system that the engine relies on:
//! rename replaces a file but not a non-empty folder, a file cannot replace a
//! folder, an inode stays with a renamed item, and `mtime` moves on each write.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use ferry_client::scan::{ScanError, ScanReport};
use ferry_client::seams::{Disk, Hashed, hash_content};
use ferry_client::tree::{ContentHash, LocalNode, LocalTree};
use ferry_shared::RelPath;
use ferry_shared::api::EntryKind;
use ferry_shared::path::name_key;

use crate::clock::SimClock;

#[derive(Debug, Clone)]
pub enum Node {
    File { data: Arc<Vec<u8>>, mtime_ns: i64, inode: u64, exec: bool },
    Dir { inode: u64 },
}

impl Node {
    pub fn kind(&self) -> EntryKind {
        match self {
            Node::File { .. } => EntryKind::File,
            Node::Dir { .. } => EntryKind::Dir,
        }
    }

    fn local(&self) -> LocalNode {
        match self {
            Node::File { data, mtime_ns, inode, exec } => LocalNode {
                kind: EntryKind::File,
                size: data.len() as u64,
                mtime_ns: *mtime_ns,
                inode: *inode,
                executable: *exec,
            },
            Node::Dir { inode } => {
                LocalNode { kind: EntryKind::Dir, size: 0, mtime_ns: 0, inode: *inode, executable: false }
            }
        }
    }
}

/// A download in progress: bytes beside their target, invisible to scans.
#[derive(Debug)]
struct TempFile {
    dir: RelPath,
    data: Vec<u8>,
    mtime_ns: i64,
    exec: bool,
}

#[derive(Debug, Default)]
pub struct Fs {
    pub nodes: BTreeMap<RelPath, Node>,
    temps: HashMap<u64, TempFile>,
    marker: Option<String>,
    /// False while the "disk" is unmounted: the folder reads as missing.
    pub mounted: bool,
    /// Writes of new data fail with "no space left".
    pub full: bool,
    /// Items that cannot be read (a folder in here fails the scan).
    pub denied: BTreeSet<RelPath>,
    /// Names that differ only by case (or normalization) are one name, as on
    /// macOS and Windows: the spelling stored is the first one written.
    pub case_insensitive: bool,
    next_inode: u64,
    next_temp: u64,
    /// Contents the engine made visible at a path: `(path, content)`.
    pub placed: Vec<(RelPath, Arc<Vec<u8>>)>,
}

/// The device's folder: shared state plus the device clock (for mtimes).
#[derive(Clone)]
pub struct SimDisk {
    fs: Arc<Mutex<Fs>>,
    clock: SimClock,
    name: String,
}

fn err(kind: io::ErrorKind, what: &str, p: &RelPath) -> io::Error {
    io::Error::new(kind, format!("{what}: {p}"))
}

impl Fs {
    fn new_inode(&mut self) -> u64 {
        self.next_inode += 1;
        self.next_inode
    }

    fn check_mounted(&self, p: &RelPath) -> io::Result<()> {
        if self.mounted { Ok(()) } else { Err(err(io::ErrorKind::NotFound, "the folder is not mounted", p)) }
    }

    fn parent_is_dir(&self, p: &RelPath) -> bool {
        match p.parent() {
            None => true,
            Some(parent) if parent.is_root() => true,
            Some(parent) => matches!(self.get(&parent), Some(Node::Dir { .. })),
        }
    }

    /// The stored item `p` names: `p` itself or, on a case-insensitive disk,
    /// the item whose names differ from it only by case or normalization.
    pub fn resolve(&self, p: &RelPath) -> Option<RelPath> {
        if p.is_root() || self.nodes.contains_key(p) {
            return Some(p.clone());
        }
        if !self.case_insensitive {
            return None;
        }
        let parent = self.resolve(&p.parent()?)?;
        let key = name_key(p.name()?);
        self.nodes
            .keys()
            .find(|q| q.parent().as_ref() == Some(&parent) && name_key(q.name().unwrap_or("")) == key)
            .cloned()
    }

    /// Where a new item named `p` goes: its folders as stored, its own name as given.
    fn place(&self, p: &RelPath) -> Option<RelPath> {
        match p.parent() {
            None => Some(p.clone()),
            Some(parent) => self.resolve(&parent)?.join(p.name()?).ok(),
        }
    }

    pub fn get(&self, p: &RelPath) -> Option<&Node> {
        self.nodes.get(&self.resolve(p)?)
    }

    /// Creates `p` and its missing ancestors as folders (`mkdir -p`).
    pub fn mkdir_all(&mut self, p: &RelPath) -> io::Result<()> {
        if p.is_root() {
            return Ok(());
        }
        if let Some(parent) = p.parent() {
            self.mkdir_all(&parent)?;
        }
        match self.get(p) {
            Some(Node::Dir { .. }) => Ok(()),
            Some(Node::File { .. }) => Err(err(io::ErrorKind::AlreadyExists, "a file is in the way", p)),
            None => {
                let at = self.place(p).ok_or_else(|| err(io::ErrorKind::NotFound, "no such folder", p))?;
                let inode = self.new_inode();
                self.nodes.insert(at, Node::Dir { inode });
                Ok(())
            }
        }
    }

    fn keys_under(&self, p: &RelPath) -> Vec<RelPath> {
        ferry_client::tree::subtree(&self.nodes, p)
    }

    /// POSIX `rename(2)` on the tree (the target's folder must exist). On a
    /// case-insensitive disk, renaming an item to a twin of its own name
    /// changes how it is spelled, and a twin spelled otherwise is replaced.
    pub fn rename(&mut self, from: &RelPath, to: &RelPath) -> io::Result<()> {
        let from = self.resolve(from).ok_or_else(|| err(io::ErrorKind::NotFound, "no such item", from))?;
        if !self.parent_is_dir(to) {
            return Err(err(io::ErrorKind::NotFound, "no such folder", to));
        }
        let dest = self.place(to).ok_or_else(|| err(io::ErrorKind::NotFound, "no such folder", to))?;
        let existing = self.resolve(to);
        if existing.as_ref() == Some(&from) {
            if dest == from {
                return Ok(());
            }
        } else {
            if dest.starts_with(&from) {
                return Err(err(io::ErrorKind::InvalidInput, "cannot move a folder into itself", to));
            }
            let kind = self.nodes[&from].kind();
            match (kind, existing.as_ref().map(|e| (self.nodes[e].kind(), self.keys_under(e).len()))) {
                (_, None)
                | (EntryKind::File, Some((EntryKind::File, _)))
                | (EntryKind::Dir, Some((EntryKind::Dir, 1))) => {}
                (EntryKind::Dir, Some((EntryKind::Dir, _))) => {
                    return Err(err(io::ErrorKind::DirectoryNotEmpty, "folder not empty", to));
                }
                (EntryKind::File, Some((EntryKind::Dir, _))) => {
                    return Err(err(io::ErrorKind::IsADirectory, "is a folder", to));
                }
                (EntryKind::Dir, Some((EntryKind::File, _))) => {
                    return Err(err(io::ErrorKind::NotADirectory, "not a folder", to));
                }
            }
            if let Some(e) = existing {
                self.nodes.remove(&e);
            }
        }
        let moved: Vec<(RelPath, Node)> = self
            .keys_under(&from)
            .into_iter()
            .map(|k| {
                let node = self.nodes.remove(&k).expect("listed key");
                (k.rebase(&from, &dest).expect("a path under an existing item stays valid"), node)
            })
            .collect();
        // Temp files move with their folder.
        for t in self.temps.values_mut() {
            if t.dir.starts_with(&from) {
                t.dir = t.dir.rebase(&from, &dest).expect("valid");
            }
        }
        self.nodes.extend(moved);
        Ok(())
    }

    /// Removes `p` and everything under it (`rm -r`).
    pub fn remove_all(&mut self, p: &RelPath) -> Vec<Node> {
        let Some(p) = self.resolve(p) else { return Vec::new() };
        let gone: Vec<Node> = self.keys_under(&p).into_iter().filter_map(|k| self.nodes.remove(&k)).collect();
        self.temps.retain(|_, t| !t.dir.starts_with(&p));
        gone
    }

    /// Writes a whole file (a new inode when it did not exist).
    pub fn write_file(&mut self, p: &RelPath, data: Vec<u8>, exec: bool, mtime_ns: i64) -> io::Result<()> {
        if !self.parent_is_dir(p) {
            return Err(err(io::ErrorKind::NotFound, "no such folder", p));
        }
        let at = self.resolve(p).or_else(|| self.place(p)).expect("the folder exists");
        let inode = match self.nodes.get(&at) {
            Some(Node::File { inode, .. }) => *inode,
            Some(Node::Dir { .. }) => return Err(err(io::ErrorKind::IsADirectory, "is a folder", p)),
            None => self.new_inode(),
        };
        self.nodes.insert(at, Node::File { data: Arc::new(data), mtime_ns, inode, exec });
        Ok(())
    }

    /// The content of the file at `p` as a reader gets it (or the error).
    fn readable_file(&self, p: &RelPath) -> io::Result<(Arc<Vec<u8>>, LocalNode)> {
        self.check_mounted(p)?;
        if self.resolve(p).is_some_and(|p| self.denied.contains(&p)) {
            return Err(err(io::ErrorKind::PermissionDenied, "permission denied", p));
        }
        match self.get(p) {
            Some(n @ Node::File { data, .. }) => Ok((Arc::clone(data), n.local())),
            Some(Node::Dir { .. }) => Err(err(io::ErrorKind::IsADirectory, "is a folder", p)),
            None => Err(err(io::ErrorKind::NotFound, "no such file", p)),
        }
    }

    pub fn live_temps(&self) -> usize {
        self.temps.len()
    }
}

impl SimDisk {
    pub fn new(name: String, clock: SimClock) -> SimDisk {
        let fs = Fs { mounted: true, ..Fs::default() };
        SimDisk { fs: Arc::new(Mutex::new(fs)), clock, name }
    }

    /// The folder itself, as the simulated user (or a check) sees it.
    pub fn user(&self) -> MutexGuard<'_, Fs> {
        self.fs.lock().expect("sim disk poisoned")
    }

    /// A fresh mtime from the device clock (nanoseconds; never the same twice).
    pub fn mtime_now(&self) -> i64 {
        self.clock.now_ns()
    }
}

/// A blocking disk call: it yields to the scheduler once, then runs.
pub struct Step<T> {
    f: Option<Box<dyn FnOnce() -> T + Send>>,
    yielded: bool,
}

impl<T> Future for Step<T> {
    type Output = T;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        if !self.yielded {
            self.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready((self.f.take().expect("polled after completion"))())
    }
}

#[derive(Debug)]
pub struct SimTemp(u64);

impl Disk for SimDisk {
    type Temp = SimTemp;

    fn describe(&self) -> String {
        format!("{}'s folder", self.name)
    }

    fn blocking<T, F>(&self, f: F) -> impl Future<Output = T> + Send
    where
        T: Send + 'static,
        F: FnOnce(&Self) -> T + Send + 'static,
    {
        let disk = self.clone();
        Step { f: Some(Box::new(move || f(&disk))), yielded: false }
    }

    fn read_marker(&self) -> io::Result<Option<String>> {
        let fs = self.user();
        Ok(if fs.mounted { fs.marker.clone() } else { None })
    }

    fn init_marker(&self, id: &str) -> io::Result<()> {
        let mut fs = self.user();
        fs.check_mounted(&RelPath::root())?;
        fs.marker = Some(id.to_owned());
        Ok(())
    }

    fn scan(&self) -> Result<(LocalTree, ScanReport), ScanError> {
        let fs = self.user();
        let fail = |path: &RelPath, kind, what: &str| ScanError::Io {
            path: path.to_string(),
            source: io::Error::new(kind, what.to_owned()),
        };
        if !fs.mounted {
            return Err(fail(&RelPath::root(), io::ErrorKind::NotFound, "the folder is not mounted"));
        }
        if let Some(d) = fs.denied.iter().find(|d| matches!(fs.nodes.get(*d), Some(Node::Dir { .. }))) {
            return Err(fail(d, io::ErrorKind::PermissionDenied, "permission denied"));
        }
        let tree = fs.nodes.iter().map(|(p, n)| (p.clone(), n.local())).collect();
        Ok((tree, ScanReport::default()))
    }

    fn stat(&self, p: &RelPath) -> io::Result<Option<LocalNode>> {
        let fs = self.user();
        if !fs.mounted {
            return Ok(None);
        }
        Ok(fs.get(p).map(Node::local))
    }

    fn hash_file(&self, p: &RelPath) -> io::Result<Hashed> {
        let (data, local) = self.user().readable_file(p)?;
        let (blocks, hash) = hash_content(&data[..], local.size)?;
        Ok(Hashed { local, blocks, hash })
    }

    fn read_range(&self, p: &RelPath, offset: u64, len: u32) -> io::Result<Vec<u8>> {
        let (data, _) = self.user().readable_file(p)?;
        let (start, end) = (offset as usize, offset as usize + len as usize);
        data.get(start..end).map(<[u8]>::to_vec).ok_or_else(|| err(io::ErrorKind::UnexpectedEof, "short", p))
    }

    fn rename(&self, from: &RelPath, to: &RelPath) -> io::Result<()> {
        let mut fs = self.user();
        fs.check_mounted(from)?;
        if let Some(parent) = to.parent() {
            fs.mkdir_all(&parent)?;
        }
        fs.rename(from, to)
    }

    fn mkdir_all(&self, p: &RelPath) -> io::Result<()> {
        let mut fs = self.user();
        fs.check_mounted(p)?;
        fs.mkdir_all(p)
    }

    fn remove_file(&self, p: &RelPath) -> io::Result<()> {
        let mut fs = self.user();
        fs.check_mounted(p)?;
        match fs.get(p) {
            Some(Node::File { .. }) => {
                fs.remove_all(p);
                Ok(())
            }
            Some(Node::Dir { .. }) => Err(err(io::ErrorKind::IsADirectory, "is a folder", p)),
            None => Err(err(io::ErrorKind::NotFound, "no such file", p)),
        }
    }

    fn remove_dir(&self, p: &RelPath) -> io::Result<bool> {
        let mut fs = self.user();
        fs.check_mounted(p)?;
        let at = fs.resolve(p).unwrap_or_else(|| p.clone());
        match fs.nodes.get(&at) {
            Some(Node::Dir { .. }) if fs.keys_under(&at).len() == 1 && !fs.temps.values().any(|t| t.dir == at) => {
                fs.nodes.remove(&at);
                Ok(true)
            }
            Some(Node::Dir { .. }) => Ok(false),
            Some(Node::File { .. }) => Err(err(io::ErrorKind::NotADirectory, "not a folder", p)),
            None => Err(err(io::ErrorKind::NotFound, "no such folder", p)),
        }
    }

    fn remove_temp_files(&self) -> io::Result<usize> {
        let mut fs = self.user();
        fs.check_mounted(&RelPath::root())?;
        let n = fs.temps.len();
        fs.temps.clear();
        Ok(n)
    }

    fn create_temp(&self, target: &RelPath) -> io::Result<SimTemp> {
        let mut fs = self.user();
        fs.check_mounted(target)?;
        let dir = target.parent().unwrap_or_else(RelPath::root);
        fs.mkdir_all(&dir)?;
        let dir = fs.resolve(&dir).expect("just made");
        if fs.full {
            return Err(err(io::ErrorKind::StorageFull, "no space left on device", target));
        }
        fs.next_temp += 1;
        let id = fs.next_temp;
        fs.temps.insert(id, TempFile { dir, data: Vec::new(), mtime_ns: 0, exec: false });
        Ok(SimTemp(id))
    }

    fn write_temp(&self, temp: &mut SimTemp, data: &[u8]) -> io::Result<()> {
        let mut fs = self.user();
        if fs.full && !data.is_empty() {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "no space left on device"));
        }
        let t = fs.temps.get_mut(&temp.0).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "temp file gone"))?;
        t.data.extend_from_slice(data);
        Ok(())
    }

    fn finish_temp(&self, temp: &mut SimTemp, mtime_ms: i64, executable: bool) -> io::Result<()> {
        let mut fs = self.user();
        let t = fs.temps.get_mut(&temp.0).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "temp file gone"))?;
        t.mtime_ns = mtime_ms * 1_000_000;
        t.exec = executable;
        Ok(())
    }

    fn commit_temp(
        &self,
        temp: SimTemp,
        target: &RelPath,
        expect: Option<LocalNode>,
        _sync_parent: bool,
    ) -> io::Result<Option<LocalNode>> {
        let mut fs = self.user();
        let t = fs.temps.remove(&temp.0).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "temp file gone"))?;
        fs.check_mounted(target)?;
        if fs.get(target).map(Node::local) != expect {
            return Ok(None);
        }
        if !fs.parent_is_dir(target) {
            return Err(err(io::ErrorKind::NotFound, "no such folder", target));
        }
        let parent = fs.resolve(&target.parent().unwrap_or_else(RelPath::root)).expect("a folder");
        if parent != t.dir {
            return Err(err(io::ErrorKind::InvalidInput, "a temp file must be renamed within its folder", target));
        }
        if let Some(Node::Dir { .. }) = fs.get(target) {
            return Err(err(io::ErrorKind::IsADirectory, "is a folder", target));
        }
        // rename(2) over a twin spelled otherwise replaces it.
        if let Some(old) = fs.resolve(target) {
            fs.nodes.remove(&old);
        }
        let at = fs.place(target).expect("the folder exists");
        let inode = fs.new_inode();
        let data = Arc::new(t.data);
        fs.placed.push((at.clone(), Arc::clone(&data)));
        fs.nodes.insert(at.clone(), Node::File { data, mtime_ns: t.mtime_ns, inode, exec: t.exec });
        Ok(fs.nodes.get(&at).map(Node::local))
    }

    fn discard_temp(&self, temp: SimTemp) {
        self.user().temps.remove(&temp.0);
    }

    fn sync_parents(&self, _paths: &[RelPath]) {}
}

/// A tree as `path → (kind, content hash, executable)`: what must agree.
pub type Digest = BTreeMap<RelPath, (EntryKind, ContentHash, bool)>;

/// The folder's files and folders.
pub fn digest_tree(fs: &Fs) -> Digest {
    fs.nodes
        .iter()
        .map(|(p, n)| {
            let v = match n {
                Node::File { data, exec, .. } => (EntryKind::File, content_hash(data), *exec),
                Node::Dir { .. } => (EntryKind::Dir, ContentHash::NONE, false),
            };
            (p.clone(), v)
        })
        .collect()
}

/// The content hash the server would give these bytes.
pub fn content_hash(data: &[u8]) -> ContentHash {
    hash_content(data, data.len() as u64).expect("reading memory").1
}
