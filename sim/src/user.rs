//! What the simulated users do to their folders, as data ([`UserOp`]):
//! create and rewrite files (in place or by atomic replace), small edits,
//! deletes, folders made and removed, moves and renames (case-only renames
//! and swaps too), the executable bit, and files written in two steps.
//! Names include a case twin, one spelled in NFD (as a Mac writes it, a twin
//! of its NFC spelling on a case-sensitive disk) and one Windows cannot
//! store. Every content written is recorded in the ledger; content a user
//! destroys (overwrites or deletes) no longer has to survive.

use std::sync::Arc;

use rand::Rng;
use rand::rngs::StdRng;

use crate::World;
use crate::disk::{DiskPath, Fs, Node, content_hash};

/// Names users pick: case twins, an extension or none, a non-ASCII one in
/// NFC and in NFD (`u` + combining diaeresis), names Windows cannot store.
pub const NAMES: [&str; 13] = [
    "a",
    "A",
    "b",
    "notes.txt",
    "Notes.txt",
    "c.bin",
    "dir",
    "Dir",
    "\u{fc}.md",
    "u\u{308}.md",
    "Photos",
    "What?.txt",
    "a: b.",
];

/// One thing a user does. An operation that does not fit the folder (its
/// source is gone, its target taken) does nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserOp {
    /// Creates a file of `size` bytes where nothing is.
    Create {
        path: String,
        size: usize,
    },
    /// Writes new content over a file, in place or by atomic replace (a new inode).
    Rewrite {
        path: String,
        size: usize,
        replace: bool,
    },
    /// Changes a few bytes in the middle (`append`: adds them at the end).
    Edit {
        path: String,
        at: usize,
        append: bool,
    },
    /// Deletes a file or a folder with everything in it.
    Delete {
        path: String,
    },
    Mkdir {
        path: String,
    },
    /// Moves a file or folder where nothing is.
    Move {
        from: String,
        to: String,
    },
    /// Swaps two files through a third name.
    Swap {
        a: String,
        b: String,
    },
    Chmod {
        path: String,
    },
    /// Writes the first half of a file now; [`World::finish_write`] the rest.
    StartWrite {
        path: String,
        size: usize,
    },
}

/// A size: mostly small, some multi-block, a few over the 1 MiB small-file line.
pub fn random_size(rng: &mut StdRng) -> usize {
    match rng.random_range(0..100) {
        0..6 => 0,
        6..72 => rng.random_range(1..4096),
        72..97 => rng.random_range(4096..96 * 1024),
        _ => rng.random_range(200 * 1024..1_300_000),
    }
}

fn pick(rng: &mut StdRng, items: &[DiskPath]) -> Option<String> {
    (!items.is_empty()).then(|| items[rng.random_range(0..items.len())].to_string())
}

/// A random place for a new item: an existing folder (or the root) and a name.
fn new_place(rng: &mut StdRng, fs: &Fs) -> String {
    let dirs: Vec<&DiskPath> = fs
        .nodes
        .iter()
        .filter(|(p, n)| matches!(n, Node::Dir { .. }) && p.segments().count() < 4)
        .map(|(p, _)| p)
        .collect();
    let name = NAMES[rng.random_range(0..NAMES.len())];
    match rng.random_range(0..=dirs.len()) {
        0 => name.to_owned(),
        i => format!("{}/{name}", dirs[i - 1]),
    }
}

/// A random operation that fits the folder as it is.
pub fn random_op(rng: &mut StdRng, fs: &Fs) -> Option<UserOp> {
    let files: Vec<DiskPath> =
        fs.nodes.iter().filter(|(_, n)| matches!(n, Node::File { .. })).map(|(p, _)| p.clone()).collect();
    let dirs: Vec<DiskPath> =
        fs.nodes.iter().filter(|(_, n)| matches!(n, Node::Dir { .. })).map(|(p, _)| p.clone()).collect();
    Some(match rng.random_range(0..100) {
        0..25 => UserOp::Create { path: new_place(rng, fs), size: random_size(rng) },
        25..42 => UserOp::Rewrite { path: pick(rng, &files)?, size: random_size(rng), replace: rng.random_bool(0.5) },
        42..52 => {
            UserOp::Edit { path: pick(rng, &files)?, at: rng.random_range(0..1 << 20), append: rng.random_bool(0.4) }
        }
        52..60 => UserOp::Delete { path: pick(rng, &files)? },
        60..68 => UserOp::Mkdir { path: new_place(rng, fs) },
        68..73 => UserOp::Delete { path: pick(rng, &dirs)? },
        73..88 => {
            let all: Vec<DiskPath> = files.into_iter().chain(dirs).collect();
            let from = pick(rng, &all)?;
            let to = if rng.random_bool(0.25) { flip_case(&from) } else { new_place(rng, fs) };
            UserOp::Move { from, to }
        }
        88..91 => UserOp::Swap { a: pick(rng, &files)?, b: pick(rng, &files)? },
        91..95 => UserOp::Chmod { path: pick(rng, &files)? },
        _ => UserOp::StartWrite { path: new_place(rng, fs), size: rng.random_range(2..200_000) },
    })
}

/// The same path with the case of its last name flipped.
pub fn flip_case(path: &str) -> String {
    let (dir, name) = path.rsplit_once('/').map_or(("", path), |(d, n)| (d, n));
    let flipped: String =
        name.chars()
            .map(|c| {
                if c.is_uppercase() {
                    c.to_lowercase().next().unwrap_or(c)
                } else {
                    c.to_uppercase().next().unwrap_or(c)
                }
            })
            .collect();
    if dir.is_empty() { flipped } else { format!("{dir}/{flipped}") }
}

impl World {
    /// Fresh content, unique across the run.
    fn content_of_size(&mut self, size: usize) -> Vec<u8> {
        self.written_count += 1;
        let mut data = vec![0u8; size];
        self.rng.fill(&mut data[..]);
        // A unique stamp keeps every write distinct (two users never write
        // the same bytes by chance, so each content tells who wrote it).
        let stamp = format!("#{}#", self.written_count);
        let n = stamp.len().min(size);
        data[..n].copy_from_slice(&stamp.as_bytes()[..n]);
        data
    }

    fn remember(&mut self, d: usize, path: &DiskPath, data: &[u8]) {
        if data.is_empty() {
            return; // empty files, all one content, are not told apart
        }
        let h = content_hash(data);
        self.note_viewer_write(d, path, h);
        self.ledger.written.insert(h);
        self.ledger.must_survive.insert(h, format!("{} wrote {path} ({} bytes)", self.devices[d].name, data.len()));
    }

    /// The user destroyed these items.
    fn forget(&mut self, gone: &[Node]) {
        for n in gone {
            if let Node::File { data, .. } = n {
                self.ledger.must_survive.remove(&content_hash(data));
            }
        }
    }

    /// Does `op` to device `d`'s folder; returns what happened, for the trace.
    pub(crate) fn apply_op(&mut self, d: usize, op: &UserOp) -> Option<String> {
        let disk = self.devices[d].disk.clone();
        let mtime = disk.mtime_now();
        let path = DiskPath::parse;
        let done = match op {
            UserOp::Create { path: p, size } => {
                let p = path(p)?;
                if disk.user().resolve(&p).is_some() {
                    return None;
                }
                let data = self.content_of_size(*size);
                disk.user().write_file(&p, data.clone(), false, mtime).ok()?;
                self.remember(d, &p, &data);
                format!("creates {p} ({size} bytes)")
            }
            UserOp::Rewrite { path: p, size, replace } => {
                let p = path(p)?;
                let old = disk.user().get(&p).cloned();
                let Some(Node::File { exec, .. }) = old else { return None };
                let data = self.content_of_size(*size);
                let mut fs = disk.user();
                if *replace {
                    fs.remove_all(&p);
                }
                fs.write_file(&p, data.clone(), exec, mtime).ok()?;
                drop(fs);
                self.forget(&old.into_iter().collect::<Vec<_>>());
                self.remember(d, &p, &data);
                format!("{} {p} ({size} bytes)", if *replace { "replaces" } else { "rewrites" })
            }
            UserOp::Edit { path: p, at, append } => {
                let p = path(p)?;
                let old = disk.user().get(&p).cloned();
                let Some(Node::File { data: before, exec, .. }) = old.clone() else { return None };
                let mut data = (*before).clone();
                let n = 1 + at % 63;
                let extra = self.content_of_size(n);
                if data.is_empty() || *append {
                    data.extend_from_slice(&extra);
                } else {
                    let at = at % data.len();
                    let end = (at + extra.len()).min(data.len());
                    data[at..end].copy_from_slice(&extra[..end - at]);
                }
                disk.user().write_file(&p, data.clone(), exec, mtime).ok()?;
                self.forget(&old.into_iter().collect::<Vec<_>>());
                self.remember(d, &p, &data);
                format!("edits {p} ({} bytes)", data.len())
            }
            UserOp::Delete { path: p } => {
                let p = path(p)?;
                let gone = disk.user().remove_all(&p);
                if gone.is_empty() {
                    return None;
                }
                self.devices[d].removed_since_round += gone.len();
                self.forget(&gone);
                format!("deletes {p} ({} items)", gone.len())
            }
            UserOp::Mkdir { path: p } => {
                let p = path(p)?;
                let mut fs = disk.user();
                if fs.resolve(&p).is_some() || p.parent().is_some_and(|q| fs.resolve(&q).is_none()) {
                    return None;
                }
                fs.mkdir_all(&p).ok()?;
                format!("makes folder {p}")
            }
            UserOp::Move { from, to } => {
                let (from, to) = (path(from)?, path(to)?);
                let mut fs = disk.user();
                if fs.resolve(&to).is_some_and(|t| Some(t) != fs.resolve(&from)) {
                    return None;
                }
                let moved = fs.keys_under(&from).len().max(1);
                fs.rename(&from, &to).ok()?;
                let contents = fs.contents_under(&to);
                drop(fs);
                self.note_viewer_move(d, &to, contents);
                self.devices[d].removed_since_round += moved;
                format!("moves {from} to {to}")
            }
            UserOp::Swap { a, b } => {
                let (a, b) = (path(a)?, path(b)?);
                let tmp = a.parent().unwrap_or_else(DiskPath::root).join("swap-tmp");
                let mut fs = disk.user();
                let files = |p: &DiskPath| matches!(fs.get(p), Some(Node::File { .. }));
                if fs.resolve(&a) == fs.resolve(&b) || !files(&a) || !files(&b) || fs.resolve(&tmp).is_some() {
                    return None;
                }
                fs.rename(&a, &tmp).ok()?;
                fs.rename(&b, &a).ok()?;
                fs.rename(&tmp, &b).ok()?;
                let (at_a, at_b) = (fs.contents_under(&a), fs.contents_under(&b));
                drop(fs);
                self.note_viewer_move(d, &a, at_a);
                self.note_viewer_move(d, &b, at_b);
                format!("swaps {a} and {b}")
            }
            UserOp::Chmod { path: p } => {
                // A metadata change: the mtime stays, as chmod(2) leaves it.
                let p = path(p)?;
                let mut fs = disk.user();
                let p = fs.resolve(&p)?;
                let Some(Node::File { exec, .. }) = fs.nodes.get_mut(&p) else { return None };
                *exec = !*exec;
                format!("chmods {p} (executable = {exec})")
            }
            UserOp::StartWrite { path: p, size } => {
                let p = path(p)?;
                if disk.user().resolve(&p).is_some() {
                    return None;
                }
                let full = self.content_of_size((*size).max(2));
                let half = full[..full.len() / 2].to_vec();
                disk.user().write_file(&p, half.clone(), false, mtime).ok()?;
                self.remember(d, &p, &half);
                self.pending_writes.push((d, p.clone(), full));
                format!("starts writing {p}")
            }
        };
        self.user_ops += 1;
        let line = format!("{} {done}", self.devices[d].name);
        self.log(line.clone());
        Some(line)
    }

    /// Finishes a write started earlier, if its file still holds the first half.
    pub(crate) fn finish_write(&mut self) {
        if self.pending_writes.is_empty() {
            return;
        }
        let i = self.rng.random_range(0..self.pending_writes.len());
        let (d, p, full) = self.pending_writes.swap_remove(i);
        let disk = self.devices[d].disk.clone();
        let mtime = disk.mtime_now();
        let mut fs = disk.user();
        let Some(Node::File { data, mtime_ns, .. }) = fs.nodes.get_mut(&p) else { return };
        if data.len() != full.len() / 2 || !full.starts_with(data) {
            return; // replaced or edited meanwhile
        }
        let half = std::mem::replace(data, Arc::new(full.clone()));
        *mtime_ns = mtime;
        drop(fs);
        self.forget(&[Node::File { data: half, mtime_ns: 0, inode: 0, exec: false }]);
        self.remember(d, &p, &full);
        let name = self.devices[d].name.clone();
        self.log(format!("{name} finishes writing {p}"));
    }
}
