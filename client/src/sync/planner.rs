//! The planner: a pure function from the three trees to the operations that
//! make disk and server agree. No I/O, no clock, no randomness (checked by a
//! test that scans this file). Correctness lives here; the executor only does
//! what the plan says, re-checking its preconditions at the last moment.
//!
//! Per path, with `synced` as the merge base: a side "changed" when it differs
//! from synced. One side changed → copy it to the other side (uploads,
//! downloads, creations, deletions). Both changed → the edit wins over a
//! delete, equal folders merge, and two different file contents become a
//! conflict (the server's version keeps the path, the local one is kept beside
//! it as a conflict copy). Moves are recognised before that: on the server by
//! file id, on disk by inode, and applied as moves, never as delete + upload.
//! Names that differ only by case or normalization (which the server and
//! case-insensitive disks cannot hold side by side) and file/folder type
//! changes are settled before the per-path rules: one side gives way when
//! that loses nothing, otherwise the local item moves aside as a conflict
//! copy; what lies under an item that moves aside or waits is planned in the
//! next round.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};

use ferry_shared::RelPath;
use ferry_shared::api::{EntryKind, RevId};
use ferry_shared::path::name_key;

use crate::sync::tree::{LocalNode, LocalTree, RemoteNode, RemoteTree, SyncedNode, SyncedTree};

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Move a file or folder on disk, because it moved on the server.
    MoveLocal {
        from: RelPath,
        to: RelPath,
    },
    /// Rename a local item to a conflict copy (its name clashes with another
    /// one by case only); it syncs under the new name.
    MoveAside {
        path: RelPath,
    },
    /// Keep a local change the server would refuse (a read-only shared
    /// folder) as a conflict copy at `to`'s folder, outside the share; the
    /// server's version comes back at `path` next round. Made by the engine
    /// from the plan, never by `plan`.
    KeepOutside {
        path: RelPath,
        to: RelPath,
    },
    /// Move a file or folder on the server, because it moved on disk.
    MoveRemote {
        from: RelPath,
        to: RelPath,
        rev: RevId,
    },
    MkdirLocal {
        path: RelPath,
        remote: RemoteNode,
    },
    MkdirRemote {
        path: RelPath,
    },
    /// Send the file at `path` (`parent_rev`: the head it replaces, if any;
    /// `size`: as the scan saw it, to send small files first).
    Upload {
        path: RelPath,
        parent_rev: Option<RevId>,
        size: u64,
    },
    /// Write the server's version to `path`; only if the disk still shows `expect`.
    Download {
        path: RelPath,
        remote: RemoteNode,
        expect: Option<LocalNode>,
    },
    /// Both sides changed the file: keep both (see the module doc).
    Conflict {
        path: RelPath,
        remote: RemoteNode,
        local: LocalNode,
    },
    DeleteLocal {
        path: RelPath,
        expect: LocalNode,
    },
    DeleteRemote {
        path: RelPath,
        rev: RevId,
        kind: EntryKind,
    },
    /// Both sides agree already: record it as synced.
    Agree {
        path: RelPath,
        remote: RemoteNode,
        local: LocalNode,
    },
    /// Gone on both sides: drop the synced record.
    Forget {
        path: RelPath,
    },
}

impl Op {
    pub fn path(&self) -> &RelPath {
        match self {
            Op::MoveLocal { to, .. } | Op::MoveRemote { to, .. } => to,
            Op::MoveAside { path } | Op::KeepOutside { path, .. } => path,
            Op::MkdirLocal { path, .. }
            | Op::MkdirRemote { path }
            | Op::Upload { path, .. }
            | Op::Download { path, .. }
            | Op::Conflict { path, .. }
            | Op::DeleteLocal { path, .. }
            | Op::DeleteRemote { path, .. }
            | Op::Agree { path, .. }
            | Op::Forget { path } => path,
        }
    }

    /// Execution phase: moves, then creations, then content, then deletions.
    fn phase(&self) -> u8 {
        match self {
            Op::MoveLocal { .. } | Op::MoveRemote { .. } | Op::MoveAside { .. } | Op::KeepOutside { .. } => 0,
            Op::MkdirLocal { .. } | Op::MkdirRemote { .. } => 1,
            Op::Upload { .. } | Op::Download { .. } | Op::Conflict { .. } | Op::Agree { .. } => 2,
            Op::DeleteLocal { .. } | Op::DeleteRemote { .. } => 3,
            Op::Forget { .. } => 4,
        }
    }
}

/// The operations, in execution order, and what they would delete remotely.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub ops: Vec<Op>,
    pub remote_deletes: usize,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

fn rebase(path: &RelPath, from: &RelPath, to: &RelPath) -> RelPath {
    // `to` already holds an item of this tree, so paths under it fit the limits.
    path.rebase(from, to).expect("a path under an existing item stays valid")
}

/// Moves every key at or under `from` to the same place under `to`.
fn move_subtree<V>(tree: &mut std::collections::BTreeMap<RelPath, V>, from: &RelPath, to: &RelPath) {
    let keys = crate::sync::tree::subtree(tree, from);
    let moved: Vec<(RelPath, V)> =
        keys.into_iter().map(|k| (rebase(&k, from, to), tree.remove(&k).expect("key"))).collect();
    tree.extend(moved);
}

/// `p` is `q` or lies under it, with names compared as a case-insensitive
/// disk compares them (a move into a twin of itself is a move into itself).
fn within(p: &RelPath, q: &RelPath) -> bool {
    let (mut ps, mut qs) = (p.segments(), q.segments());
    loop {
        match (ps.next(), qs.next()) {
            (_, None) => return true,
            (None, Some(_)) => return false,
            (Some(a), Some(b)) if name_key(a) == name_key(b) => {}
            _ => return false,
        }
    }
}

fn depth(p: &RelPath) -> usize {
    p.segments().count()
}

/// Plans the operations that reconcile `local` and `remote` through `synced`.
pub fn plan(remote: &RemoteTree, local: &LocalTree, synced: &SyncedTree) -> Plan {
    // Copied only when a move rewrites them (100,000-file trees are not small).
    let mut synced = Cow::Borrowed(synced);
    let mut local = Cow::Borrowed(local);
    let mut remote = Cow::Borrowed(remote);
    let mut ops = Vec::new();

    // 1. Moves on the server: the same file id at a new path.
    let by_id: HashMap<i64, &RelPath> = synced.iter().map(|(p, s)| (s.id, p)).collect();
    let mut remote_moves: Vec<(RelPath, RelPath)> = remote
        .iter()
        .filter_map(|(to, r)| {
            let from = *by_id.get(&r.id)?;
            (from != to && synced.get(to).is_none_or(|s| s.id != r.id)).then(|| (from.clone(), to.clone()))
        })
        .collect();
    drop(by_id);
    remote_moves.sort_by_key(|(_, to)| (depth(to), to.clone()));
    // A move onto a name another item holds on disk (differing only by
    // case or normalization) waits until that item has moved aside: a
    // case-insensitive disk cannot hold both, and the move would fail.
    let targets = twins_of(remote_moves.iter().map(|(_, to)| to), &remote, &local);
    let mut waiting: Vec<RelPath> = Vec::new();
    for (from, to) in remote_moves {
        // A move of an enclosing folder may already have carried this one.
        let Some(s) = synced.get(&from) else { continue };
        let Some(r) = remote.get(&to) else { continue };
        if s.id != r.id || from == to || synced.contains_key(&to) || local.contains_key(&to) {
            continue;
        }
        let Some(l) = local.get(&from) else { continue };
        if !s.matches_local(l) || within(&to, &from) {
            continue; // changed on disk meanwhile: handled per path below
        }
        let taken = targets.get(&to).is_some_and(|qs| qs.iter().any(|q| *q != from && local.contains_key(q)));
        if taken {
            waiting.extend([from, to]);
            continue;
        }
        ops.push(Op::MoveLocal { from: from.clone(), to: to.clone() });
        move_subtree(synced.to_mut(), &from, &to);
        move_subtree(local.to_mut(), &from, &to);
    }

    // Names that differ only by case or normalization between disk and
    // server: what gives way, what waits (see `contested_names`).
    let Contested { twins, mut aside, mut held } = contested_names(&remote, &local, &synced);
    held.extend(waiting);

    // 2. Moves on disk: the same inode at a new path, its old path gone.
    let by_inode: HashMap<u64, &RelPath> =
        synced.iter().filter(|(p, _)| !local.contains_key(*p)).map(|(p, s)| (s.local.inode, p)).collect();
    let mut local_moves: Vec<(RelPath, RelPath)> = local
        .iter()
        .filter(|(p, _)| !synced.contains_key(*p))
        .filter_map(|(to, l)| Some(((*by_inode.get(&l.inode)?).clone(), to.clone())))
        .collect();
    drop(by_inode);
    local_moves.sort_by_key(|(_, to)| (depth(to), to.clone()));
    for (from, to) in local_moves {
        let (Some(s), Some(l)) = (synced.get(&from), local.get(&to)) else { continue };
        if local.contains_key(&from) || synced.contains_key(&to) || remote.contains_key(&to) || to.starts_with(&from) {
            continue;
        }
        if twins.get(&to).is_some_and(|t| t.iter().any(|q| *q != from))
            || aside.iter().chain(&held).any(|a| to.starts_with(a))
        {
            continue; // onto or into a contested name: step 3 decides
        }
        if !sendable_move(s, l, remote.get(&from)) {
            continue;
        }
        ops.push(Op::MoveRemote { from: from.clone(), to: to.clone(), rev: s.rev });
        move_subtree(synced.to_mut(), &from, &to);
        move_subtree(remote.to_mut(), &from, &to);
    }

    // 3. Twins on disk: names in one folder that differ only by case (or
    // Unicode normalization). A case-sensitive disk holds both; the server and
    // other devices cannot. The one the server or the synced tree knows keeps
    // its name and the others move aside as conflict copies, synced under
    // those names (new names with a twin on the server were decided above).
    let mut seen: HashMap<(&str, Cow<str>), &RelPath> = HashMap::new();
    // Who keeps a contested name: what the server has, then what was synced.
    let rank = |q: &RelPath| (remote.contains_key(q), synced.contains_key(q));
    for p in local.keys() {
        if aside.iter().any(|a| p.starts_with(a)) {
            continue;
        }
        let key = sibling_key(p);
        match seen.get(&key) {
            None => {
                seen.insert(key, p);
            }
            Some(first) if rank(p) > rank(first) => {
                aside.push((*first).clone());
                seen.insert(key, p);
            }
            Some(_) => aside.push(p.clone()),
        }
    }
    aside.sort();
    aside.dedup();
    for path in &aside {
        ops.push(Op::MoveAside { path: path.clone() });
    }

    // 4. Per path. Items whose kind differs between disk and server are
    // settled first; what lies under them waits for the next round.
    let paths: BTreeSet<&RelPath> = remote.keys().chain(local.keys()).chain(synced.keys()).collect();
    for path in paths {
        if aside.iter().chain(&held).any(|a| path.starts_with(a)) {
            continue; // decided after the move, in the next round
        }
        let (r, l, s) = (remote.get(path), local.get(path), synced.get(path));
        if let (Some(r), Some(l)) = (r, l)
            && r.kind != l.kind
        {
            let (op, hold) = kind_change(path, r, l, s, &remote, &local, &synced);
            if hold {
                held.push(path.clone());
            }
            ops.push(op);
            continue;
        }
        if let Some(op) = plan_path(path, r, l, s) {
            ops.push(op);
        }
    }

    // Moves keep their order; then shallow creations first, deep deletions first.
    ops.sort_by(|a, b| {
        let (pa, pb) = (a.phase(), b.phase());
        pa.cmp(&pb).then_with(|| match pa {
            0 => std::cmp::Ordering::Equal,
            3 => depth(b.path()).cmp(&depth(a.path())).then_with(|| b.path().cmp(a.path())),
            _ => a.path().cmp(b.path()),
        })
    });
    let remote_deletes = ops.iter().filter(|o| matches!(o, Op::DeleteRemote { .. })).count();
    Plan { ops, remote_deletes }
}

/// Twins across disk and server: names in one folder that differ only by
/// case or normalization, one on disk and one on the server, which the
/// server (and a case-insensitive disk) cannot hold both of.
struct Contested {
    /// Each new name on disk with its twins.
    twins: HashMap<RelPath, Vec<RelPath>>,
    /// Local items to move aside as conflict copies.
    aside: Vec<RelPath>,
    /// Paths whose planning waits a round (a twin is being deleted first).
    held: Vec<RelPath>,
}

fn contested_names(remote: &RemoteTree, local: &LocalTree, synced: &SyncedTree) -> Contested {
    let mut aside: Vec<RelPath> = Vec::new();
    let mut held: Vec<RelPath> = Vec::new();
    // A new name on disk whose twin is on the server and not on disk waits a
    // round when the twin is about to be deleted (a rename done as delete +
    // create); otherwise it moves aside. A case-only rename is sent as a
    // move when it can be (step 2), waits while the old name is deleted when
    // only this side changed, and keeps both when both sides did.
    let new_names = local.keys().filter(|p| !remote.contains_key(*p) && !synced.contains_key(*p));
    let twins = twins_of(new_names, remote, local);
    if !twins.is_empty() {
        let inodes: HashSet<u64> = local.values().map(|l| l.inode).collect();
        for (p, qs) in &twins {
            let l = local.get(p).expect("a name on disk");
            for q in qs.iter().filter(|q| remote.contains_key(*q) && !local.contains_key(*q)) {
                let s = synced.get(q);
                let r = remote.get(q);
                let server_unchanged = s.zip(r).is_some_and(|(s, r)| s.matches_remote(r));
                let renamed_here = s.is_some_and(|s| s.local.inode == l.inode);
                if renamed_here && s.is_some_and(|s| sendable_move(s, l, r)) {
                    continue;
                }
                let moved_elsewhere = !renamed_here && s.is_some_and(|s| inodes.contains(&s.local.inode));
                let going = server_unchanged && server_below_goes(q, remote, local, synced);
                if going && !moved_elsewhere { held.push(p.clone()) } else { aside.push(p.clone()) }
            }
        }
    }
    // A name on the server that is not on disk but has a twin there (one the
    // server no longer has): the twin gives way first. The server's name
    // waits while the twin is being deleted; otherwise the twin moves aside.
    let missing_here = remote.keys().filter(|p| !local.contains_key(*p));
    for (p, qs) in twins_of(missing_here, remote, local) {
        for q in qs.iter().filter(|q| local.contains_key(*q) && !remote.contains_key(*q) && synced.contains_key(*q)) {
            let all_go = synced.get(q).zip(local.get(q)).is_some_and(|(s, l)| s.matches_local(l))
                && disk_below_goes(q, remote, local, synced);
            if all_go { held.push(p.clone()) } else { aside.push(q.clone()) }
        }
    }
    Contested { twins, aside, held }
}

/// `(folder, name key)` of a path: equal for twins in one folder.
fn sibling_key(p: &RelPath) -> (&str, Cow<'_, str>) {
    (sibling_key_folder(p), name_key(p.name().unwrap_or("")))
}

fn sibling_key_folder(p: &RelPath) -> &str {
    let name = p.name().unwrap_or("");
    &p.as_str()[..p.as_str().len() - name.len()]
}

/// Each of `names` with the other items in its folder whose names differ
/// from it only by case or normalization, on disk or on the server.
fn twins_of<'a>(
    names: impl Iterator<Item = &'a RelPath>,
    remote: &RemoteTree,
    local: &LocalTree,
) -> HashMap<RelPath, Vec<RelPath>> {
    let names: Vec<&RelPath> = names.collect();
    if names.is_empty() {
        return HashMap::new();
    }
    let folders: HashSet<&str> = names.iter().map(|p| sibling_key_folder(p)).collect();
    let mut by_key: HashMap<(&str, Cow<str>), Vec<&RelPath>> = HashMap::new();
    for q in local.keys().chain(remote.keys()).filter(|q| folders.contains(sibling_key_folder(q))) {
        let v = by_key.entry(sibling_key(q)).or_default();
        if !v.contains(&q) {
            v.push(q);
        }
    }
    names
        .into_iter()
        .filter_map(|p| {
            let others: Vec<RelPath> =
                by_key.get(&sibling_key(p))?.iter().filter(|q| **q != p).map(|q| (*q).clone()).collect();
            (!others.is_empty()).then(|| (p.clone(), others))
        })
        .collect()
}

/// A file on one side where the other has a folder (or the reverse). The
/// side that did not change gives way when that loses nothing: an unchanged
/// local item is removed (it is in the server's history), an unchanged
/// remote one is deleted (its history stays); a folder only when everything
/// in it goes too. Otherwise the local item moves aside as a conflict copy.
/// Returns the operation and whether what lies under `path` waits a round.
fn kind_change(
    path: &RelPath,
    r: &RemoteNode,
    l: &LocalNode,
    s: Option<&SyncedNode>,
    remote: &RemoteTree,
    local: &LocalTree,
    synced: &SyncedTree,
) -> (Op, bool) {
    let local_same = s.is_some_and(|s| s.matches_local(l));
    let remote_same = s.is_some_and(|s| s.matches_remote(r) && s.kind == r.kind);
    if local_same {
        // Changed on the server only: the local item goes, then the server's comes.
        let all_go = disk_below_goes(path, remote, local, synced);
        let path = path.clone();
        return match l.kind {
            EntryKind::File => (Op::DeleteLocal { path, expect: *l }, true),
            EntryKind::Dir if all_go => (Op::DeleteLocal { path, expect: *l }, false),
            EntryKind::Dir => (Op::MoveAside { path }, true),
        };
    }
    if remote_same {
        // Changed here only: the server's item goes, then ours is sent.
        let all_go = server_below_goes(path, remote, local, synced);
        let path = path.clone();
        return match r.kind {
            EntryKind::File => (Op::DeleteRemote { path, rev: r.rev, kind: r.kind }, true),
            EntryKind::Dir if all_go => (Op::DeleteRemote { path, rev: r.rev, kind: r.kind }, false),
            EntryKind::Dir => (Op::MoveAside { path }, true),
        };
    }
    // Both changed: the server's item keeps the path.
    (Op::Conflict { path: path.clone(), remote: r.clone(), local: *l }, true)
}

/// The item `l` at a new path on disk is the synced item `s` moved there
/// unchanged (same inode; a file also kept its size and mtime), and the
/// server still has `s`'s revision (`r`): the move can be sent as a move.
fn sendable_move(s: &SyncedNode, l: &LocalNode, r: Option<&RemoteNode>) -> bool {
    let same = s.kind == l.kind
        && s.local.inode == l.inode
        && (l.kind == EntryKind::Dir || (s.local.size == l.size && s.local.mtime_ns == l.mtime_ns));
    same && r.is_some_and(|r| s.matches_remote(r))
}

/// Everything under `p` on disk is as synced and gone from the server:
/// deleting `p` here loses nothing.
fn disk_below_goes(p: &RelPath, remote: &RemoteTree, local: &LocalTree, synced: &SyncedTree) -> bool {
    crate::sync::tree::subtree(local, p)
        .iter()
        .filter(|q| *q != p)
        .all(|q| !remote.contains_key(q) && synced.get(q).zip(local.get(q)).is_some_and(|(s, l)| s.matches_local(l)))
}

/// Everything under `p` on the server is as synced and gone from disk:
/// deleting `p` there loses nothing.
fn server_below_goes(p: &RelPath, remote: &RemoteTree, local: &LocalTree, synced: &SyncedTree) -> bool {
    crate::sync::tree::subtree(remote, p).iter().filter(|q| *q != p).all(|q| {
        !local.contains_key(q)
            && synced.get(q).zip(remote.get(q)).is_some_and(|(s, r)| s.matches_remote(r) && s.kind == r.kind)
    })
}

fn plan_path(path: &RelPath, r: Option<&RemoteNode>, l: Option<&LocalNode>, s: Option<&SyncedNode>) -> Option<Op> {
    let local_changed = match (s, l) {
        (None, None) => false,
        (Some(s), Some(l)) => !s.matches_local(l),
        _ => true,
    };
    let remote_changed = match (s, r) {
        (None, None) => false,
        (Some(s), Some(r)) => !s.matches_remote(r) || s.kind != r.kind,
        _ => true,
    };
    let path = path.clone();
    match (local_changed, remote_changed) {
        (false, false) => None,
        (true, false) => match l {
            Some(l) if l.kind == EntryKind::File => {
                Some(Op::Upload { path, parent_rev: r.map(|r| r.rev), size: l.size })
            }
            Some(l) => match r {
                None => Some(Op::MkdirRemote { path }),
                // A folder where a synced file was: keep the file's content apart.
                Some(r) => Some(Op::Conflict { path, remote: r.clone(), local: *l }),
            },
            None => {
                let r = r.expect("unchanged remote with a synced record exists");
                Some(Op::DeleteRemote { path, rev: r.rev, kind: r.kind })
            }
        },
        (false, true) => match (r, l) {
            // A new revision with the content and mode we have (the file was
            // moved or renamed on the server): nothing to download.
            (Some(r), Some(l))
                if r.kind == EntryKind::File
                    && l.kind == EntryKind::File
                    && s.is_some_and(|s| s.kind == EntryKind::File && s.hash == r.hash)
                    && l.executable == r.executable =>
            {
                Some(Op::Agree { path, remote: r.clone(), local: *l })
            }
            (Some(r), _) if r.kind == EntryKind::File => {
                Some(Op::Download { path, remote: r.clone(), expect: l.copied() })
            }
            (Some(r), None) => Some(Op::MkdirLocal { path, remote: r.clone() }),
            (Some(r), Some(l)) if l.kind == EntryKind::Dir => Some(Op::Agree { path, remote: r.clone(), local: *l }),
            (Some(r), Some(l)) => Some(Op::Conflict { path, remote: r.clone(), local: *l }),
            (None, Some(l)) => Some(Op::DeleteLocal { path, expect: *l }),
            (None, None) => Some(Op::Forget { path }),
        },
        (true, true) => match (r, l) {
            (None, None) => Some(Op::Forget { path }),
            (Some(r), None) if r.kind == EntryKind::File => {
                Some(Op::Download { path, remote: r.clone(), expect: None })
            }
            (Some(r), None) => Some(Op::MkdirLocal { path, remote: r.clone() }),
            // Deleted on the server, edited here: the edit wins.
            (None, Some(l)) if l.kind == EntryKind::File => Some(Op::Upload { path, parent_rev: None, size: l.size }),
            (None, Some(_)) => Some(Op::MkdirRemote { path }),
            (Some(r), Some(l)) if r.kind == EntryKind::Dir && l.kind == EntryKind::Dir => {
                Some(Op::Agree { path, remote: r.clone(), local: *l })
            }
            (Some(r), Some(l)) => Some(Op::Conflict { path, remote: r.clone(), local: *l }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::tree::ContentHash;

    fn p(s: &str) -> RelPath {
        RelPath::parse(s).unwrap()
    }
    fn file_l(inode: u64, size: u64, mtime: i64) -> LocalNode {
        LocalNode { kind: EntryKind::File, size, mtime_ns: mtime, inode, executable: false }
    }
    fn dir_l(inode: u64) -> LocalNode {
        LocalNode { kind: EntryKind::Dir, size: 0, mtime_ns: 0, inode, executable: false }
    }
    fn file_r(id: i64, rev: i64, hash: &str) -> RemoteNode {
        RemoteNode {
            id,
            rev,
            kind: EntryKind::File,
            size: 1,
            mtime: 0,
            executable: false,
            // Tests name contents; equal names mean equal content.
            hash: ContentHash(*blake3::hash(hash.as_bytes()).as_bytes()),
        }
    }
    fn dir_r(id: i64, rev: i64) -> RemoteNode {
        RemoteNode { id, rev, kind: EntryKind::Dir, size: 0, mtime: 0, executable: false, hash: ContentHash::NONE }
    }
    fn synced(r: &RemoteNode, l: LocalNode) -> SyncedNode {
        SyncedNode { id: r.id, rev: r.rev, kind: r.kind, local: l, hash: r.hash }
    }

    struct Case {
        remote: RemoteTree,
        local: LocalTree,
        synced: SyncedTree,
    }

    impl Case {
        fn new() -> Self {
            Case { remote: RemoteTree::new(), local: LocalTree::new(), synced: SyncedTree::new() }
        }
        /// A path both sides agree on.
        fn both(mut self, path: &str, r: RemoteNode, l: LocalNode) -> Self {
            self.synced.insert(p(path), synced(&r, l));
            self.remote.insert(p(path), r);
            self.local.insert(p(path), l);
            self
        }
        fn plan(&self) -> Plan {
            plan(&self.remote, &self.local, &self.synced)
        }
    }

    #[test]
    fn nothing_to_do_when_in_sync() {
        let c = Case::new().both("a", dir_r(1, 1), dir_l(10)).both("a/f", file_r(2, 2, "h"), file_l(11, 1, 5));
        assert!(c.plan().is_empty());
    }

    #[test]
    fn one_sided_changes_copy_over() {
        let mut c =
            Case::new().both("f", file_r(1, 1, "h"), file_l(10, 1, 5)).both("g", file_r(2, 2, "h"), file_l(11, 1, 5));
        c.local.insert(p("f"), file_l(10, 2, 6)); // edited here
        c.remote.insert(p("g"), file_r(2, 3, "h2")); // edited there
        c.local.insert(p("new"), file_l(12, 1, 1));
        c.remote.insert(p("dir"), dir_r(5, 5));
        let ops = c.plan().ops;
        assert!(ops.contains(&Op::Upload { path: p("f"), parent_rev: Some(1), size: 2 }));
        assert!(ops.contains(&Op::Upload { path: p("new"), parent_rev: None, size: 1 }));
        assert!(ops.contains(&Op::Download {
            path: p("g"),
            remote: file_r(2, 3, "h2"),
            expect: Some(file_l(11, 1, 5))
        }));
        assert!(ops.contains(&Op::MkdirLocal { path: p("dir"), remote: dir_r(5, 5) }));
    }

    #[test]
    fn deletions_need_an_unchanged_other_side() {
        let mut c = Case::new().both("gone-here", file_r(1, 1, "h"), file_l(10, 1, 5)).both(
            "gone-there",
            file_r(2, 2, "h"),
            file_l(11, 1, 5),
        );
        c.local.remove(&p("gone-here"));
        c.remote.remove(&p("gone-there"));
        let plan = c.plan();
        assert_eq!(plan.remote_deletes, 1);
        assert!(plan.ops.contains(&Op::DeleteRemote { path: p("gone-here"), rev: 1, kind: EntryKind::File }));
        assert!(plan.ops.contains(&Op::DeleteLocal { path: p("gone-there"), expect: file_l(11, 1, 5) }));
    }

    #[test]
    fn edit_wins_over_delete() {
        let mut c =
            Case::new().both("a", file_r(1, 1, "h"), file_l(10, 1, 5)).both("b", file_r(2, 2, "h"), file_l(11, 1, 5));
        c.local.remove(&p("a"));
        c.remote.insert(p("a"), file_r(1, 7, "new")); // deleted here, edited there
        c.remote.remove(&p("b"));
        c.local.insert(p("b"), file_l(11, 9, 9)); // deleted there, edited here
        let ops = c.plan().ops;
        assert!(ops.contains(&Op::Download { path: p("a"), remote: file_r(1, 7, "new"), expect: None }));
        assert!(ops.contains(&Op::Upload { path: p("b"), parent_rev: None, size: 9 }));
    }

    #[test]
    fn both_edited_is_a_conflict() {
        let mut c = Case::new().both("f", file_r(1, 1, "h"), file_l(10, 1, 5));
        c.local.insert(p("f"), file_l(10, 2, 6));
        c.remote.insert(p("f"), file_r(1, 2, "h2"));
        assert_eq!(
            c.plan().ops,
            vec![Op::Conflict { path: p("f"), remote: file_r(1, 2, "h2"), local: file_l(10, 2, 6) }]
        );
        // Without any synced record (a rebuilt state) too: the executor compares content.
        let mut c = Case::new();
        c.local.insert(p("f"), file_l(10, 2, 6));
        c.remote.insert(p("f"), file_r(1, 2, "h2"));
        assert!(matches!(c.plan().ops[..], [Op::Conflict { .. }]));
    }

    #[test]
    fn remote_folder_move_is_one_local_move() {
        let mut c = Case::new()
            .both("a", dir_r(1, 1), dir_l(10))
            .both("a/x", file_r(2, 2, "h"), file_l(11, 1, 5))
            .both("a/y", file_r(3, 3, "h"), file_l(12, 1, 5));
        let moved: RemoteTree = c
            .remote
            .iter()
            .map(|(k, v)| (rebase(k, &p("a"), &p("b")), if k == &p("a") { dir_r(1, 9) } else { v.clone() }))
            .collect();
        c.remote = moved;
        let ops = c.plan().ops;
        assert_eq!(ops[0], Op::MoveLocal { from: p("a"), to: p("b") });
        // The folder's new revision is recorded; its children need nothing.
        assert_eq!(ops.len(), 2, "{ops:?}");
        assert!(matches!(&ops[1], Op::Agree { path, .. } if path == &p("b")));
    }

    #[test]
    fn remote_file_rename_is_a_local_move_without_download() {
        let mut c = Case::new().both("old.txt", file_r(1, 4, "h"), file_l(10, 1, 5));
        c.remote.clear();
        c.remote.insert(p("new.txt"), file_r(1, 9, "h")); // moved: a new revision, same content
        let ops = c.plan().ops;
        assert_eq!(ops[0], Op::MoveLocal { from: p("old.txt"), to: p("new.txt") });
        assert_eq!(ops[1..], [Op::Agree { path: p("new.txt"), remote: file_r(1, 9, "h"), local: file_l(10, 1, 5) }]);
        // Same content but another mode: the new mode is downloaded.
        let mut c = Case::new().both("f", file_r(1, 4, "h"), file_l(10, 1, 5));
        c.remote.insert(p("f"), RemoteNode { executable: true, ..file_r(1, 5, "h") });
        assert!(matches!(c.plan().ops[..], [Op::Download { .. }]));
    }

    #[test]
    fn local_rename_is_a_remote_move() {
        let mut c = Case::new().both("old.txt", file_r(1, 4, "h"), file_l(10, 1, 5));
        c.local.remove(&p("old.txt"));
        c.local.insert(p("new.txt"), file_l(10, 1, 5));
        assert_eq!(c.plan().ops, vec![Op::MoveRemote { from: p("old.txt"), to: p("new.txt"), rev: 4 }]);
    }

    #[test]
    fn local_folder_rename_moves_the_folder_only() {
        let mut c = Case::new().both("d", dir_r(1, 1), dir_l(10)).both("d/f", file_r(2, 2, "h"), file_l(11, 1, 5));
        c.local = [(p("e"), dir_l(10)), (p("e/f"), file_l(11, 1, 5))].into_iter().collect();
        assert_eq!(c.plan().ops, vec![Op::MoveRemote { from: p("d"), to: p("e"), rev: 1 }]);
    }

    #[test]
    fn order_is_creations_shallow_first_deletions_deep_first() {
        let mut c = Case::new().both("old", dir_r(1, 1), dir_l(10)).both("old/f", file_r(2, 2, "h"), file_l(11, 1, 5));
        c.local.clear();
        c.local.insert(p("n"), dir_l(20));
        c.local.insert(p("n/m"), dir_l(21));
        let ops = c.plan().ops;
        let kinds: Vec<String> = ops.iter().map(|o| format!("{:?}", std::mem::discriminant(o))).collect();
        assert_eq!(ops.len(), 4, "{ops:?} {kinds:?}");
        assert_eq!(ops[0], Op::MkdirRemote { path: p("n") });
        assert_eq!(ops[1], Op::MkdirRemote { path: p("n/m") });
        assert_eq!(ops[2], Op::DeleteRemote { path: p("old/f"), rev: 2, kind: EntryKind::File });
        assert_eq!(ops[3], Op::DeleteRemote { path: p("old"), rev: 1, kind: EntryKind::Dir });
    }

    #[test]
    fn case_twins_on_disk_move_aside() {
        let mut c = Case::new().both("README.md", file_r(1, 1, "h"), file_l(10, 1, 5));
        c.local.insert(p("Readme.md"), file_l(11, 2, 6));
        c.local.insert(p("docs"), dir_l(12));
        c.local.insert(p("DOCS"), dir_l(13));
        c.local.insert(p("DOCS/x"), file_l(14, 1, 1));
        let ops = c.plan().ops;
        assert!(ops.contains(&Op::MoveAside { path: p("Readme.md") }), "{ops:?}");
        // Neither folder is known: the later name (in path order) moves aside.
        assert!(ops.contains(&Op::MoveAside { path: p("docs") }), "{ops:?}");
        assert!(ops.contains(&Op::MkdirRemote { path: p("DOCS") }));
        assert!(ops.contains(&Op::Upload { path: p("DOCS/x"), parent_rev: None, size: 1 }));
        // Nothing else happens to what moves aside this round.
        assert!(!ops.iter().any(|o| o.path() == &p("Readme.md") && !matches!(o, Op::MoveAside { .. })));
    }

    #[test]
    fn a_move_onto_a_twin_on_disk_waits_for_it_to_move_aside() {
        // The server moved Notes.txt to "dir"; this disk has a new file "Dir",
        // which a case-insensitive disk cannot hold beside "dir".
        let mut c = Case::new().both("Notes.txt", file_r(5, 8, "h"), file_l(12, 1, 5));
        c.remote.clear();
        c.remote.insert(p("dir"), file_r(5, 12, "h"));
        c.local.insert(p("Dir"), file_l(4, 2, 6));
        let ops = c.plan().ops;
        // "Dir" moves aside; the move and both of its paths wait a round
        // (nothing is deleted, downloaded or recorded as agreed).
        assert_eq!(ops, vec![Op::MoveAside { path: p("Dir") }]);
        // Next round, with "Dir" gone, the move is made.
        c.local.remove(&p("Dir"));
        assert_eq!(c.plan().ops[0], Op::MoveLocal { from: p("Notes.txt"), to: p("dir") });
    }

    #[test]
    fn type_changes_let_the_unchanged_side_give_way() {
        // A file replaced by a folder here: the server's file goes first; the
        // folder's content waits for the next round.
        let mut c = Case::new().both("f", file_r(1, 1, "h"), file_l(10, 1, 5));
        c.local.insert(p("f"), dir_l(11));
        c.local.insert(p("f/x"), file_l(12, 1, 1));
        assert_eq!(c.plan().ops, vec![Op::DeleteRemote { path: p("f"), rev: 1, kind: EntryKind::File }]);
        // A folder replaced by a file there: the unchanged local folder and
        // everything in it go; the file comes next round.
        let mut c = Case::new().both("d", dir_r(1, 1), dir_l(10)).both("d/x", file_r(2, 2, "h"), file_l(11, 1, 5));
        c.remote.clear();
        c.remote.insert(p("d"), file_r(3, 3, "new"));
        let ops = c.plan().ops;
        assert_eq!(ops[0], Op::DeleteLocal { path: p("d/x"), expect: file_l(11, 1, 5) });
        assert_eq!(ops[1], Op::DeleteLocal { path: p("d"), expect: dir_l(10) });
        assert_eq!(ops.len(), 2, "{ops:?}");
        // ...unless something new is in the local folder: then it moves aside.
        c.local.insert(p("d/new"), file_l(12, 1, 1));
        assert_eq!(c.plan().ops, vec![Op::MoveAside { path: p("d") }]);
    }

    #[test]
    fn twins_across_disk_and_server() {
        // A new name here whose twin the server got from elsewhere moves aside.
        let mut c = Case::new();
        c.remote.insert(p("Notes.txt"), file_r(1, 1, "there"));
        c.local.insert(p("notes.txt"), file_l(10, 1, 1));
        let ops = c.plan().ops;
        assert_eq!(ops[0], Op::MoveAside { path: p("notes.txt") });
        assert!(matches!(&ops[1], Op::Download { path, .. } if path == &p("Notes.txt")), "{ops:?}");
        // A rename done as delete + create of a twin name waits for the delete.
        let mut c = Case::new().both("a", file_r(1, 1, "h"), file_l(10, 1, 5));
        c.local.clear();
        c.local.insert(p("A"), file_l(11, 2, 6));
        assert_eq!(c.plan().ops, vec![Op::DeleteRemote { path: p("a"), rev: 1, kind: EntryKind::File }]);
        // A case-only rename here is a move.
        let mut c = Case::new().both("a", file_r(1, 1, "h"), file_l(10, 1, 5));
        c.local.clear();
        c.local.insert(p("A"), file_l(10, 1, 5));
        assert_eq!(c.plan().ops, vec![Op::MoveRemote { from: p("a"), to: p("A"), rev: 1 }]);
        // A server name whose twin on disk the server deleted: the twin is
        // deleted first (a case-insensitive disk cannot hold both).
        let mut c = Case::new().both("a", file_r(1, 1, "h"), file_l(10, 1, 5));
        c.remote.clear();
        c.remote.insert(p("A"), file_r(2, 2, "new"));
        assert_eq!(c.plan().ops, vec![Op::DeleteLocal { path: p("a"), expect: file_l(10, 1, 5) }]);
    }

    #[test]
    fn planner_does_no_io() {
        let src = include_str!("planner.rs");
        let code = &src[..src.find("#[cfg(test)]").unwrap()];
        for banned in ["std::fs", "tokio", "rusqlite", "reqwest", "SystemTime", "Instant::now", "rand::"] {
            assert!(!code.contains(banned), "the planner must not use {banned}");
        }
    }
}
