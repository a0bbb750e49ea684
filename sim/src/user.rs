//! What the simulated users do to their folders: create, edit (in place,
//! by atomic replace, by appending), delete, make and remove folders, move
//! and rename (case-only renames and swaps too), flip the executable bit.
//! Every content written is recorded in the ledger; content a user
//! destroys (overwrites or deletes) no longer has to survive.

use std::sync::Arc;

use ferry_shared::RelPath;
use rand::Rng;

use crate::World;
use crate::disk::{Fs, Node, content_hash};

/// Names users pick: case twins, an extension or none, a non-ASCII one.
const NAMES: [&str; 10] = ["a", "A", "b", "notes.txt", "Notes.txt", "c.bin", "dir", "Dir", "ü.md", "Photos"];

impl World {
    /// Fresh content, unique across the run, of a random size: mostly small,
    /// some multi-block, a few over the 1 MiB small-file line.
    fn new_content(&mut self) -> Vec<u8> {
        let size = match self.rng.random_range(0..100) {
            0..6 => 0,
            6..70 => self.rng.random_range(1..4096),
            70..94 => self.rng.random_range(4096..96 * 1024),
            _ => self.rng.random_range(200 * 1024..1_300_000),
        };
        self.content_of_size(size)
    }

    fn content_of_size(&mut self, size: usize) -> Vec<u8> {
        self.user_ops += 1;
        let mut data = vec![0u8; size];
        self.rng.fill(&mut data[..]);
        // A unique stamp keeps every write distinct (two users never write
        // the same bytes by chance, so each content tells who wrote it).
        let stamp = format!("#{}#", self.user_ops);
        let n = stamp.len().min(size);
        data[..n].copy_from_slice(&stamp.as_bytes()[..n]);
        data
    }

    fn remember(&mut self, d: usize, path: &RelPath, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let h = content_hash(data);
        self.ledger.written.insert(h);
        self.ledger.must_survive.insert(h, format!("{} wrote {path} ({} bytes)", self.devices[d].name, data.len()));
    }

    /// The user destroyed whatever was at and under `path`.
    fn forget(&mut self, gone: &[Node]) {
        for n in gone {
            if let Node::File { data, .. } = n {
                self.ledger.must_survive.remove(&content_hash(data));
            }
        }
    }

    fn pick(&mut self, items: Vec<RelPath>) -> Option<RelPath> {
        (!items.is_empty()).then(|| items[self.rng.random_range(0..items.len())].clone())
    }

    /// A random place for a new item: an existing folder (or the root) and a name.
    fn new_place(&mut self, fs: &Fs) -> Option<RelPath> {
        let mut dirs: Vec<RelPath> = fs
            .nodes
            .iter()
            .filter(|(p, n)| matches!(n, Node::Dir { .. }) && p.segments().count() < 4)
            .map(|(p, _)| p.clone())
            .collect();
        dirs.push(RelPath::root());
        let dir = dirs[self.rng.random_range(0..dirs.len())].clone();
        let name = NAMES[self.rng.random_range(0..NAMES.len())];
        dir.join(name).ok()
    }

    pub(crate) fn user_op(&mut self, d: usize) {
        let disk = self.devices[d].disk.clone();
        let name = self.devices[d].name.clone();
        let mtime = disk.mtime_now();
        let (files, dirs) = {
            let fs = disk.user();
            let files: Vec<RelPath> =
                fs.nodes.iter().filter(|(_, n)| matches!(n, Node::File { .. })).map(|(p, _)| p.clone()).collect();
            let dirs: Vec<RelPath> =
                fs.nodes.iter().filter(|(_, n)| matches!(n, Node::Dir { .. })).map(|(p, _)| p.clone()).collect();
            (files, dirs)
        };
        let what = match self.rng.random_range(0..100) {
            // Create a file.
            0..25 => {
                let place = self.new_place(&disk.user());
                let Some(p) = place else { return };
                if disk.user().nodes.contains_key(&p) {
                    return;
                }
                let data = self.new_content();
                let len = data.len();
                if disk.user().write_file(&p, data.clone(), false, mtime).is_err() {
                    return;
                }
                self.remember(d, &p, &data);
                format!("creates {p} ({len} bytes)")
            }
            // Rewrite a file in place, or save it by atomic replace (new inode).
            25..42 => {
                let Some(p) = self.pick(files) else { return };
                let data = self.new_content();
                let replace = self.rng.random_bool(0.5);
                let mut fs = disk.user();
                let old = fs.nodes.get(&p).cloned();
                let exec = matches!(old, Some(Node::File { exec: true, .. }));
                if replace {
                    fs.nodes.remove(&p);
                }
                if fs.write_file(&p, data.clone(), exec, mtime).is_err() {
                    return;
                }
                drop(fs);
                self.forget(&old.into_iter().collect::<Vec<_>>());
                self.remember(d, &p, &data);
                format!("{} {p} ({} bytes)", if replace { "replaces" } else { "rewrites" }, data.len())
            }
            // A small edit: bytes changed in the middle, or appended.
            42..52 => {
                let Some(p) = self.pick(files) else { return };
                let Some(Node::File { data: old, exec, .. }) = disk.user().nodes.get(&p).cloned() else { return };
                let mut data = (*old).clone();
                let n = self.rng.random_range(1..64);
                let extra = self.content_of_size(n);
                if data.is_empty() || self.rng.random_bool(0.4) {
                    data.extend_from_slice(&extra);
                } else {
                    let at = self.rng.random_range(0..data.len());
                    let end = (at + extra.len()).min(data.len());
                    data[at..end].copy_from_slice(&extra[..end - at]);
                }
                if disk.user().write_file(&p, data.clone(), exec, mtime).is_err() {
                    return;
                }
                self.forget(&[Node::File { data: old, mtime_ns: 0, inode: 0, exec }]);
                self.remember(d, &p, &data);
                format!("edits {p} ({} bytes)", data.len())
            }
            // Delete a file.
            52..60 => {
                let Some(p) = self.pick(files) else { return };
                let gone = disk.user().remove_all(&p);
                self.forget(&gone);
                format!("deletes {p}")
            }
            // Make a folder.
            60..68 => {
                let place = self.new_place(&disk.user());
                let Some(p) = place else { return };
                if disk.user().nodes.contains_key(&p) || disk.user().mkdir_all(&p).is_err() {
                    return;
                }
                format!("makes folder {p}")
            }
            // Remove a folder and all it holds.
            68..73 => {
                let Some(p) = self.pick(dirs) else { return };
                let gone = disk.user().remove_all(&p);
                self.forget(&gone);
                format!("removes folder {p} ({} items)", gone.len())
            }
            // Move or rename a file or folder.
            73..88 => {
                let all: Vec<RelPath> = files.into_iter().chain(dirs).collect();
                let Some(from) = self.pick(all) else { return };
                let to = if self.rng.random_bool(0.25) {
                    // Case-only rename.
                    let name = from.name().unwrap_or("");
                    let flipped: String = name
                        .chars()
                        .map(|c| {
                            if c.is_uppercase() {
                                c.to_lowercase().next().unwrap_or(c)
                            } else {
                                c.to_uppercase().next().unwrap_or(c)
                            }
                        })
                        .collect();
                    from.parent().and_then(|p| p.join(&flipped).ok())
                } else {
                    let place = self.new_place(&disk.user());
                    place
                };
                let Some(to) = to else { return };
                let mut fs = disk.user();
                if fs.nodes.contains_key(&to) || fs.rename(&from, &to).is_err() {
                    return;
                }
                format!("moves {from} to {to}")
            }
            // Swap two files through a third name.
            88..91 => {
                if files.len() < 2 {
                    return;
                }
                let a = files[self.rng.random_range(0..files.len())].clone();
                let b = files[self.rng.random_range(0..files.len())].clone();
                let Ok(tmp) = a.parent().unwrap_or_else(RelPath::root).join("swap-tmp") else { return };
                let mut fs = disk.user();
                if a == b || fs.nodes.contains_key(&tmp) {
                    return;
                }
                if fs.rename(&a, &tmp).is_err() || fs.rename(&b, &a).is_err() || fs.rename(&tmp, &b).is_err() {
                    return;
                }
                format!("swaps {a} and {b}")
            }
            // Flip the executable bit (a metadata change: mtime stays).
            91..95 => {
                let Some(p) = self.pick(files) else { return };
                let mut fs = disk.user();
                let Some(Node::File { exec, .. }) = fs.nodes.get_mut(&p) else { return };
                *exec = !*exec;
                format!("chmods {p} (executable = {exec})")
            }
            // Write a file in two steps: half now, the rest at a later step.
            _ => {
                let place = self.new_place(&disk.user());
                let Some(p) = place else { return };
                if disk.user().nodes.contains_key(&p) {
                    return;
                }
                let n = self.rng.random_range(2..200_000);
                let full = self.content_of_size(n);
                let half = full[..full.len() / 2].to_vec();
                if disk.user().write_file(&p, half.clone(), false, mtime).is_err() {
                    return;
                }
                self.remember(d, &p, &half);
                self.pending_writes.push((d, p.clone(), full));
                format!("starts writing {p}")
            }
        };
        self.log(format!("{name} {what}"));
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
