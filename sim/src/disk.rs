//! An in-memory sync folder behind the engine's [`Disk`] seam, with the
//! faults a real folder has: full, unreadable items, unmounted. The simulated
//! user changes it directly ([`SimDisk::user`]); the engine only through
//! [`Disk`], whose blocking calls yield to the scheduler first, so user edits
//! and other devices interleave with the engine's work at every disk step.
//!
//! It keeps the rules of a POSIX file system that the engine relies on:
//! rename replaces a file but not a non-empty folder, a file cannot replace a
//! folder, an inode stays with a renamed item, and `mtime` moves on each write.
//! Names are kept as spelled ([`DiskPath`]): on a case-sensitive disk `café`
//! in NFC and in NFD are two names, as on Linux; a case-insensitive disk
//! folds case and normalization, as macOS and Windows do; a Windows-like
//! disk also refuses the names Windows cannot store. The engine names items
//! by their NFC form; [`Fs::locate`] finds them by that form, looking at
//! the folder as it is now (`ferry_client::sync::seams::LocalDisk` uses the
//! spellings its last scan saw).

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::io;
use std::ops::Bound;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use ferry_client::sync::names::NameRules;
use ferry_client::sync::scan::{ScanError, ScanReport, Twin};
use ferry_client::sync::seams::{Disk, Hashed, hash_content};
use ferry_client::sync::tree::{ContentHash, LocalNode, LocalTree};
use ferry_shared::RelPath;
use ferry_shared::api::EntryKind;
use ferry_shared::path::name_key;
use unicode_normalization::UnicodeNormalization;

use crate::clock::SimClock;

/// A path on the simulated disk, its names as spelled there (any Unicode
/// normalization), `/`-separated and relative; the root is empty.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DiskPath(String);

impl DiskPath {
    pub fn root() -> Self {
        DiskPath(String::new())
    }

    /// A path whose every name would be a valid name once in NFC.
    pub fn parse(s: &str) -> Option<DiskPath> {
        let ok = !s.is_empty()
            && s.split('/').all(|seg| RelPath::parse_non_root(seg).is_ok_and(|p| p.segments().count() == 1));
        ok.then(|| DiskPath(s.to_owned()))
    }

    /// The engine's (NFC) path spelled as it is.
    pub fn from_rel(p: &RelPath) -> DiskPath {
        DiskPath(p.as_str().to_owned())
    }

    /// The path the engine and the server know this one by.
    pub fn nfc(&self) -> RelPath {
        RelPath::parse(&self.0).expect("names on the disk are valid")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub fn name(&self) -> Option<&str> {
        if self.is_root() { None } else { self.0.rsplit('/').next() }
    }

    pub fn parent(&self) -> Option<DiskPath> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.rfind('/') {
            Some(i) => DiskPath(self.0[..i].to_owned()),
            None => DiskPath::root(),
        })
    }

    pub fn join(&self, name: &str) -> DiskPath {
        if self.is_root() { DiskPath(name.to_owned()) } else { DiskPath(format!("{}/{name}", self.0)) }
    }

    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|s| !s.is_empty())
    }

    pub fn starts_with(&self, other: &DiskPath) -> bool {
        other.is_root()
            || self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.as_bytes().get(other.0.len()) == Some(&b'/'))
    }

    pub fn rebase(&self, from: &DiskPath, to: &DiskPath) -> DiskPath {
        let rest = self.0[from.0.len()..].trim_start_matches('/');
        if rest.is_empty() { to.clone() } else { to.join(rest) }
    }
}

impl Borrow<str> for DiskPath {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DiskPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.nfc().eq(self.0.chars()) { f.write_str(&self.0) } else { write!(f, "{}(NFD)", self.0) }
    }
}

impl std::fmt::Debug for DiskPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// The keys at or under `prefix`, in order.
pub fn subtree<V>(tree: &BTreeMap<DiskPath, V>, prefix: &DiskPath) -> Vec<DiskPath> {
    if prefix.is_root() {
        return tree.keys().cloned().collect();
    }
    let (lo, hi) = (format!("{}/", prefix.0), format!("{}0", prefix.0));
    let children = tree.range::<str, _>((Bound::Included(lo.as_str()), Bound::Excluded(hi.as_str())));
    tree.get_key_value(prefix.as_str()).into_iter().chain(children).map(|(k, _)| k.clone()).collect()
}

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
    dir: DiskPath,
    data: Vec<u8>,
    mtime_ns: i64,
    exec: bool,
    /// Made at the top of the folder for a prefetch: renamed to any folder.
    spare: bool,
}

#[derive(Debug, Default)]
pub struct Fs {
    pub nodes: BTreeMap<DiskPath, Node>,
    temps: HashMap<u64, TempFile>,
    marker: Option<String>,
    /// False while the "disk" is unmounted: the folder reads as missing.
    pub mounted: bool,
    /// Writes of new data fail with "no space left".
    pub full: bool,
    /// Items that cannot be read (a folder in here fails the scan).
    pub denied: BTreeSet<DiskPath>,
    /// Names that differ only by case (or normalization) are one name, as on
    /// macOS and Windows: the spelling stored is the first one written.
    pub case_insensitive: bool,
    /// Names Windows cannot store are refused (a Windows disk, or a FAT or
    /// exFAT one).
    pub windows: bool,
    next_inode: u64,
    next_temp: u64,
    /// Contents the engine made visible at a path: `(path, content)`.
    pub placed: Vec<(DiskPath, Arc<Vec<u8>>)>,
}

/// Whether Windows (NTFS, FAT, exFAT) refuses `name`, from its own
/// documentation ("Naming Files, Paths, and Namespaces"), written apart from
/// `ferry_client::sync::names`: the characters `<>:"/\|?*` and those below 32; a
/// name ending in a space or a dot; the device names CON, PRN, AUX, NUL,
/// COM1–COM9 and LPT1–LPT9, alone or before an extension, in any case.
pub fn windows_cannot_store(name: &str) -> bool {
    const DEVICES: [&str; 22] = [
        "con", "prn", "aux", "nul", "com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8", "com9", "lpt1",
        "lpt2", "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9",
    ];
    if name.chars().any(|c| (c as u32) < 32 || "<>:\"/\\|?*".contains(c)) {
        return true;
    }
    if name.ends_with(' ') || name.ends_with('.') {
        return true;
    }
    let base = name.split('.').next().unwrap_or_default().trim_end_matches(' ').to_lowercase();
    DEVICES.contains(&base.as_str())
}

/// The device's folder: shared state plus the device clock (for mtimes).
#[derive(Clone)]
pub struct SimDisk {
    fs: Arc<Mutex<Fs>>,
    clock: SimClock,
    name: String,
}

fn err(kind: io::ErrorKind, what: &str, p: impl std::fmt::Display) -> io::Error {
    io::Error::new(kind, format!("{what}: {p}"))
}

impl Fs {
    fn new_inode(&mut self) -> u64 {
        self.next_inode += 1;
        self.next_inode
    }

    /// The rules this disk tells the engine it follows.
    pub fn rules(&self) -> NameRules {
        if self.windows { NameRules::Windows } else { NameRules::Posix }
    }

    /// Whether this disk can hold `path`: the model's own rules
    /// ([`windows_cannot_store`]), not the engine's, so that an engine that
    /// refuses too much leaves a file missing and fails the check.
    pub fn holds(&self, path: &ferry_shared::RelPath) -> bool {
        !self.windows || !path.segments().any(windows_cannot_store)
    }

    fn check_mounted(&self, p: impl std::fmt::Display) -> io::Result<()> {
        if self.mounted { Ok(()) } else { Err(err(io::ErrorKind::NotFound, "the folder is not mounted", p)) }
    }

    /// A new name must be one this disk can hold.
    fn check_name(&self, p: &DiskPath) -> io::Result<()> {
        match p.name() {
            Some(n) if self.windows && windows_cannot_store(n) => {
                Err(err(io::ErrorKind::InvalidFilename, "Windows cannot store this name", p))
            }
            _ => Ok(()),
        }
    }

    fn parent_is_dir(&self, p: &DiskPath) -> bool {
        match p.parent() {
            None => true,
            Some(parent) if parent.is_root() => true,
            Some(parent) => matches!(self.get(&parent), Some(Node::Dir { .. })),
        }
    }

    /// The children of the folder stored at `dir`.
    fn children(&self, dir: &DiskPath) -> impl Iterator<Item = &DiskPath> {
        let lo = if dir.is_root() { String::new() } else { format!("{}/", dir.0) };
        let hi = if dir.is_root() { "\u{10ffff}".to_owned() } else { format!("{}0", dir.0) };
        let dir = dir.clone();
        self.nodes
            .range::<str, _>((Bound::Included(lo.as_str()), Bound::Excluded(hi.as_str())))
            .map(|(k, _)| k)
            .filter(move |k| k.parent().as_ref() == Some(&dir))
    }

    /// The stored item `p` names, as a user of the disk names it: `p`
    /// itself or, on a case-insensitive disk, the item whose name differs
    /// from it only by case or normalization.
    pub fn resolve(&self, p: &DiskPath) -> Option<DiskPath> {
        if p.is_root() || self.nodes.contains_key(p) {
            return Some(p.clone());
        }
        if !self.case_insensitive {
            return None;
        }
        let parent = self.resolve(&p.parent()?)?;
        let key = name_key(p.name()?);
        self.children(&parent).find(|q| name_key(q.name().unwrap_or("")) == key).cloned()
    }

    /// The stored item the engine's (NFC) path names: the name spelled in
    /// NFC, else one spelled otherwise with that NFC form (the one a scan
    /// keeps, see `ferry_client::sync::scan`), else on a case-insensitive disk one
    /// that differs only by case.
    pub fn locate(&self, p: &RelPath) -> Option<DiskPath> {
        let mut at = DiskPath::root();
        for seg in p.segments() {
            let exact = at.join(seg);
            at = if self.nodes.contains_key(&exact) {
                exact
            } else if self.case_insensitive {
                self.resolve(&exact)?
            } else {
                self.children(&at).filter(|q| q.name().is_some_and(|n| n.nfc().eq(seg.chars()))).min()?.clone()
            };
        }
        Some(at)
    }

    /// Where a new item at the engine's path `p` goes: its folders as
    /// stored, its own name in NFC.
    fn place_rel(&self, p: &RelPath) -> Option<DiskPath> {
        match p.parent() {
            None => Some(DiskPath::root()),
            Some(parent) => Some(self.locate(&parent)?.join(p.name()?)),
        }
    }

    /// Where a new item named `p` goes: its folders as stored, its own name as given.
    fn place(&self, p: &DiskPath) -> Option<DiskPath> {
        match p.parent() {
            None => Some(p.clone()),
            Some(parent) => Some(self.resolve(&parent)?.join(p.name()?)),
        }
    }

    pub fn get(&self, p: &DiskPath) -> Option<&Node> {
        self.nodes.get(&self.resolve(p)?)
    }

    /// Creates `p` and its missing ancestors as folders (`mkdir -p`).
    pub fn mkdir_all(&mut self, p: &DiskPath) -> io::Result<()> {
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
                self.check_name(&at)?;
                let inode = self.new_inode();
                self.nodes.insert(at, Node::Dir { inode });
                Ok(())
            }
        }
    }

    /// `mkdir -p` of the engine's path `p`; returns the folder as stored.
    fn mkdir_all_rel(&mut self, p: &RelPath) -> io::Result<DiskPath> {
        if p.is_root() {
            return Ok(DiskPath::root());
        }
        if let Some(parent) = p.parent() {
            self.mkdir_all_rel(&parent)?;
        }
        match self.locate(p) {
            Some(at) if matches!(self.nodes.get(&at), Some(Node::Dir { .. })) => Ok(at),
            Some(_) => Err(err(io::ErrorKind::AlreadyExists, "a file is in the way", p)),
            None => {
                let at = self.place_rel(p).ok_or_else(|| err(io::ErrorKind::NotFound, "no such folder", p))?;
                self.check_name(&at)?;
                let inode = self.new_inode();
                self.nodes.insert(at.clone(), Node::Dir { inode });
                Ok(at)
            }
        }
    }

    pub(crate) fn keys_under(&self, p: &DiskPath) -> Vec<DiskPath> {
        subtree(&self.nodes, p)
    }

    /// The contents of the files at or under `p` (as resolved on this disk).
    pub(crate) fn contents_under(&self, p: &DiskPath) -> Vec<ContentHash> {
        let Some(p) = self.resolve(p) else { return Vec::new() };
        subtree(&self.nodes, &p)
            .iter()
            .filter_map(|k| match self.nodes.get(k) {
                Some(Node::File { data, .. }) => Some(content_hash(data)),
                _ => None,
            })
            .collect()
    }

    /// POSIX `rename(2)` on the tree (the target's folder must exist). On a
    /// case-insensitive disk, renaming an item to a twin of its own name
    /// changes how it is spelled, and a twin spelled otherwise is replaced.
    pub fn rename(&mut self, from: &DiskPath, to: &DiskPath) -> io::Result<()> {
        let from = self.resolve(from).ok_or_else(|| err(io::ErrorKind::NotFound, "no such item", from))?;
        if !self.parent_is_dir(to) {
            return Err(err(io::ErrorKind::NotFound, "no such folder", to));
        }
        let dest = self.place(to).ok_or_else(|| err(io::ErrorKind::NotFound, "no such folder", to))?;
        self.rename_to(from, dest)
    }

    /// [`Fs::rename`] of stored `from` to `dest` (its folder as stored).
    fn rename_to(&mut self, from: DiskPath, dest: DiskPath) -> io::Result<()> {
        self.check_name(&dest)?;
        let existing = self.resolve(&dest);
        if existing.as_ref() == Some(&from) {
            if dest == from {
                return Ok(());
            }
        } else {
            if dest.starts_with(&from) {
                return Err(err(io::ErrorKind::InvalidInput, "cannot move a folder into itself", &dest));
            }
            let kind = self.nodes[&from].kind();
            match (kind, existing.as_ref().map(|e| (self.nodes[e].kind(), self.keys_under(e).len()))) {
                (_, None)
                | (EntryKind::File, Some((EntryKind::File, _)))
                | (EntryKind::Dir, Some((EntryKind::Dir, 1))) => {}
                (EntryKind::Dir, Some((EntryKind::Dir, _))) => {
                    return Err(err(io::ErrorKind::DirectoryNotEmpty, "folder not empty", &dest));
                }
                (EntryKind::File, Some((EntryKind::Dir, _))) => {
                    return Err(err(io::ErrorKind::IsADirectory, "is a folder", &dest));
                }
                (EntryKind::Dir, Some((EntryKind::File, _))) => {
                    return Err(err(io::ErrorKind::NotADirectory, "not a folder", &dest));
                }
            }
            if let Some(e) = existing {
                self.nodes.remove(&e);
            }
        }
        let moved: Vec<(DiskPath, Node)> = self
            .keys_under(&from)
            .into_iter()
            .map(|k| {
                let node = self.nodes.remove(&k).expect("listed key");
                (k.rebase(&from, &dest), node)
            })
            .collect();
        // Temp files move with their folder.
        for t in self.temps.values_mut() {
            if t.dir.starts_with(&from) {
                t.dir = t.dir.rebase(&from, &dest);
            }
        }
        self.nodes.extend(moved);
        Ok(())
    }

    /// Removes `p` and everything under it (`rm -r`).
    pub fn remove_all(&mut self, p: &DiskPath) -> Vec<Node> {
        let Some(p) = self.resolve(p) else { return Vec::new() };
        self.remove_stored(&p)
    }

    fn remove_stored(&mut self, p: &DiskPath) -> Vec<Node> {
        let gone: Vec<Node> = self.keys_under(p).into_iter().filter_map(|k| self.nodes.remove(&k)).collect();
        self.temps.retain(|_, t| !t.dir.starts_with(p));
        gone
    }

    /// Writes a whole file (a new inode when it did not exist).
    pub fn write_file(&mut self, p: &DiskPath, data: Vec<u8>, exec: bool, mtime_ns: i64) -> io::Result<()> {
        if !self.parent_is_dir(p) {
            return Err(err(io::ErrorKind::NotFound, "no such folder", p));
        }
        let at = self.resolve(p).or_else(|| self.place(p)).expect("the folder exists");
        let inode = match self.nodes.get(&at) {
            Some(Node::File { inode, .. }) => *inode,
            Some(Node::Dir { .. }) => return Err(err(io::ErrorKind::IsADirectory, "is a folder", p)),
            None => {
                self.check_name(&at)?;
                self.new_inode()
            }
        };
        self.nodes.insert(at, Node::File { data: Arc::new(data), mtime_ns, inode, exec });
        Ok(())
    }

    /// The content of the file the engine's path `p` names (or the error).
    fn readable_file(&self, p: &RelPath) -> io::Result<(Arc<Vec<u8>>, LocalNode)> {
        self.check_mounted(p)?;
        let at = self.locate(p).ok_or_else(|| err(io::ErrorKind::NotFound, "no such file", p))?;
        if self.denied.contains(&at) {
            return Err(err(io::ErrorKind::PermissionDenied, "permission denied", p));
        }
        match self.nodes.get(&at) {
            Some(n @ Node::File { data, .. }) => Ok((Arc::clone(data), n.local())),
            Some(Node::Dir { .. }) => Err(err(io::ErrorKind::IsADirectory, "is a folder", p)),
            None => Err(err(io::ErrorKind::NotFound, "no such file", p)),
        }
    }

    pub fn live_temps(&self) -> usize {
        self.temps.len()
    }

    /// The tree as the engine sees it: the scan of `ferry_client::sync::scan`
    /// (names keyed by NFC; of several names with one NFC form in a folder,
    /// the one spelled in NFC, else the first, and the others as twins).
    fn scan_tree(&self) -> (LocalTree, Vec<Twin>) {
        let mut tree = Vec::new();
        let mut twins = Vec::new();
        let mut by_parent: HashMap<DiskPath, Vec<&DiskPath>> = HashMap::new();
        for k in self.nodes.keys() {
            by_parent.entry(k.parent().expect("not root")).or_default().push(k);
        }
        let mut stack = vec![(DiskPath::root(), RelPath::root())];
        while let Some((dir, rel)) = stack.pop() {
            let mut by_name: BTreeMap<RelPath, Vec<&DiskPath>> = BTreeMap::new();
            for k in by_parent.get(&dir).into_iter().flatten() {
                let name = k.name().expect("not root");
                by_name.entry(rel.join(name).expect("a valid name")).or_default().push(k);
            }
            for (path, mut spelled) in by_name {
                let nfc = path.name().unwrap_or_default().to_owned();
                spelled.sort_by(|a, b| {
                    let (na, nb) = (a.name().unwrap_or(""), b.name().unwrap_or(""));
                    (na != nfc).cmp(&(nb != nfc)).then_with(|| na.cmp(nb))
                });
                let kept = spelled[0];
                for t in &spelled[1..] {
                    twins.push(Twin { path: path.clone(), spelling: t.name().unwrap_or("").to_owned() });
                }
                let node = self.nodes[kept].local();
                if node.kind == EntryKind::Dir {
                    stack.push((kept.clone(), path.clone()));
                }
                tree.push((path, node));
            }
        }
        (tree.into_iter().collect(), twins)
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

    fn name_rules(&self) -> NameRules {
        self.user().rules()
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
        fs.check_mounted("the folder")?;
        fs.marker = Some(id.to_owned());
        Ok(())
    }

    fn scan(&self) -> Result<(LocalTree, ScanReport), ScanError> {
        let fs = self.user();
        let fail = |path: &dyn std::fmt::Display, kind, what: &str| ScanError::Io {
            path: path.to_string(),
            source: io::Error::new(kind, what.to_owned()),
        };
        if !fs.mounted {
            // What a real scan of an empty mount point finds: no marker.
            return Err(ScanError::NoMarker(self.describe()));
        }
        if let Some(d) = fs.denied.iter().find(|d| matches!(fs.nodes.get(*d), Some(Node::Dir { .. }))) {
            return Err(fail(d, io::ErrorKind::PermissionDenied, "permission denied"));
        }
        let (tree, twins) = fs.scan_tree();
        Ok((tree, ScanReport { twins, ..ScanReport::default() }))
    }

    fn move_twin_aside(&self, twin: &Twin, to: &RelPath) -> io::Result<()> {
        let mut fs = self.user();
        fs.check_mounted(&twin.path)?;
        let folder = fs
            .locate(&twin.path.parent().unwrap_or_else(RelPath::root))
            .ok_or_else(|| err(io::ErrorKind::NotFound, "no such folder", &twin.path))?;
        let from = folder.join(&twin.spelling);
        if !fs.nodes.contains_key(&from) {
            return Err(err(io::ErrorKind::NotFound, "no such item", &from));
        }
        if fs.locate(to).is_some() {
            return Err(err(io::ErrorKind::AlreadyExists, "exists", to));
        }
        let dest = fs.place_rel(to).ok_or_else(|| err(io::ErrorKind::NotFound, "no such folder", to))?;
        fs.rename_to(from, dest)
    }

    fn stat(&self, p: &RelPath) -> io::Result<Option<LocalNode>> {
        let fs = self.user();
        if !fs.mounted {
            return Ok(None);
        }
        Ok(fs.locate(p).and_then(|at| fs.nodes.get(&at)).map(Node::local))
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
        let src = fs.locate(from).ok_or_else(|| err(io::ErrorKind::NotFound, "no such item", from))?;
        if let Some(parent) = to.parent() {
            fs.mkdir_all_rel(&parent)?;
        }
        // An item already there (the same one, or a twin on a
        // case-insensitive disk) keeps its folder's spelling.
        let dest = fs.place_rel(to).ok_or_else(|| err(io::ErrorKind::NotFound, "no such folder", to))?;
        fs.rename_to(src, dest)
    }

    fn mkdir_all(&self, p: &RelPath) -> io::Result<()> {
        let mut fs = self.user();
        fs.check_mounted(p)?;
        fs.mkdir_all_rel(p).map(|_| ())
    }

    fn remove_file(&self, p: &RelPath) -> io::Result<()> {
        let mut fs = self.user();
        fs.check_mounted(p)?;
        let at = fs.locate(p).ok_or_else(|| err(io::ErrorKind::NotFound, "no such file", p))?;
        match fs.nodes.get(&at) {
            Some(Node::File { .. }) => {
                fs.remove_stored(&at);
                Ok(())
            }
            Some(Node::Dir { .. }) => Err(err(io::ErrorKind::IsADirectory, "is a folder", p)),
            None => Err(err(io::ErrorKind::NotFound, "no such file", p)),
        }
    }

    fn remove_dir(&self, p: &RelPath) -> io::Result<bool> {
        let mut fs = self.user();
        fs.check_mounted(p)?;
        let at = fs.locate(p).ok_or_else(|| err(io::ErrorKind::NotFound, "no such folder", p))?;
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
        fs.check_mounted("the folder")?;
        let n = fs.temps.len();
        fs.temps.clear();
        Ok(n)
    }

    fn create_temp(&self, target: &RelPath) -> io::Result<SimTemp> {
        let mut fs = self.user();
        fs.check_mounted(target)?;
        let dir = fs.mkdir_all_rel(&target.parent().unwrap_or_else(RelPath::root))?;
        if fs.full {
            return Err(err(io::ErrorKind::StorageFull, "no space left on device", target));
        }
        fs.next_temp += 1;
        let id = fs.next_temp;
        fs.temps.insert(id, TempFile { dir, data: Vec::new(), mtime_ns: 0, exec: false, spare: false });
        Ok(SimTemp(id))
    }

    fn create_spare_temp(&self) -> io::Result<SimTemp> {
        let mut fs = self.user();
        fs.check_mounted("the folder")?;
        if fs.full {
            return Err(err(io::ErrorKind::StorageFull, "no space left on device", "the folder"));
        }
        fs.next_temp += 1;
        let id = fs.next_temp;
        fs.temps
            .insert(id, TempFile { dir: DiskPath::root(), data: Vec::new(), mtime_ns: 0, exec: false, spare: true });
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
        let existing = fs.locate(target);
        if existing.as_ref().and_then(|at| fs.nodes.get(at)).map(Node::local) != expect {
            return Ok(None);
        }
        let Some(parent) = fs.locate(&target.parent().unwrap_or_else(RelPath::root)) else {
            return Err(err(io::ErrorKind::NotFound, "no such folder", target));
        };
        if !matches!(fs.nodes.get(&parent), Some(Node::Dir { .. })) && !parent.is_root() {
            return Err(err(io::ErrorKind::NotFound, "no such folder", target));
        }
        if parent != t.dir && !t.spare {
            return Err(err(io::ErrorKind::InvalidInput, "a temp file must be renamed within its folder", target));
        }
        if let Some(Node::Dir { .. }) = existing.as_ref().and_then(|at| fs.nodes.get(at)) {
            return Err(err(io::ErrorKind::IsADirectory, "is a folder", target));
        }
        // rename(2) over the file the path names keeps that file's spelling.
        let at = match existing {
            Some(at) => at,
            None => {
                let at = fs.place_rel(target).expect("the folder exists");
                fs.check_name(&at)?;
                // On a case-insensitive disk, a twin spelled otherwise is replaced.
                if let Some(old) = fs.resolve(&at) {
                    fs.nodes.remove(&old);
                }
                at
            }
        };
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

/// The folder's files and folders, by the names the server knows them by.
/// Two names with one NFC form (twins not yet settled) show as a difference.
pub fn digest_tree(fs: &Fs) -> Digest {
    let mut out = Digest::new();
    for (p, n) in &fs.nodes {
        let v = match n {
            Node::File { data, exec, .. } => (EntryKind::File, content_hash(data), *exec),
            Node::Dir { .. } => (EntryKind::Dir, ContentHash::NONE, false),
        };
        if out.insert(p.nfc(), v).is_some() {
            out.insert(p.nfc(), (EntryKind::Dir, ContentHash([0xee; 32]), true));
        }
    }
    out
}

/// The content hash the server would give these bytes.
pub fn content_hash(data: &[u8]) -> ContentHash {
    hash_content(data, data.len() as u64).expect("reading memory").1
}
