//! The executor: runs a plan's operations, batching what goes to the server
//! (folders, contents, deletions), and the operations on names: moves,
//! folders, deletions and conflict copies, each re-checking its
//! precondition on disk right before it acts.

use ferry_shared::RelPath;
use ferry_shared::api::{CommitOp, EntryKind, ErrorCode, RevId};

use super::error::{Error, OnDisk, Result};
use super::{COMMIT_BATCH, Engine, RoundStats, conflict_name, numbered_conflict_name, op_entry, stored_elsewhere};
use crate::sync::planner::{Op, Plan};
use crate::sync::progress::Report;
use crate::sync::scan::Twin;
use crate::sync::seams::{Api, Clock, Disk};
use crate::sync::state::Write;
use crate::sync::tree::{ContentHash, LocalNode, RemoteNode, SyncedNode, subtree};

impl<D: Disk, A: Api, C: Clock> Engine<D, A, C> {
    /// Executes a plan; per-operation failures are recorded and retried later.
    pub async fn execute(&mut self, plan: Plan) -> Result<RoundStats> {
        let mut stats = RoundStats { ops: plan.ops.len(), ..RoundStats::default() };
        self.deferred = 0;
        let mut uploads = Vec::new();
        let mut downloads = Vec::new();
        let mut remote_deletes = Vec::new();
        let mut mkdirs_remote = Vec::new();
        let mut failed_moves: Vec<RelPath> = Vec::new();
        for op in plan.ops {
            // Planned where a move put things: waits when the move failed.
            if failed_moves.iter().any(|to| op.path().starts_with(to)) {
                self.deferred += 1;
                continue;
            }
            let result = match op {
                Op::MoveLocal { from, to } => {
                    let r = self.move_local(&from, &to);
                    if r.is_err() {
                        failed_moves.push(to);
                    }
                    r
                }
                Op::MoveRemote { from, to, rev } => self.move_remote(&from, &to, rev).await,
                Op::MoveAside { path } => self.move_aside(&path).map(|_| ()),
                Op::KeepOutside { path, to } => self.keep_outside(&path, &to),
                Op::MkdirLocal { path, remote } => self.mkdir_local(&path, remote),
                Op::MkdirRemote { path } => {
                    mkdirs_remote.push(path);
                    Ok(())
                }
                Op::Upload { path, parent_rev, size } => {
                    uploads.push((path, parent_rev, size));
                    Ok(())
                }
                Op::Download { path, remote, expect } => {
                    downloads.push((path, remote, expect));
                    Ok(())
                }
                Op::Conflict { path, remote, local } => match self.conflict(&path, remote, local).await {
                    Ok(Some(download)) => {
                        downloads.push(download);
                        Ok(())
                    }
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                },
                Op::Agree { path, remote, local } => {
                    let mut w = Vec::new();
                    let node =
                        SyncedNode { id: remote.id, rev: remote.rev, kind: remote.kind, local, hash: remote.hash };
                    self.set_synced(&mut w, &path, Some(node));
                    self.write(w)
                }
                Op::Forget { path } => {
                    let mut w = Vec::new();
                    self.set_synced(&mut w, &path, None);
                    self.write(w)
                }
                Op::DeleteLocal { path, expect } => self.delete_local(&path, expect),
                Op::DeleteRemote { path, rev, kind } => {
                    remote_deletes.push((path, rev, kind));
                    Ok(())
                }
            };
            if let Err(e) = result {
                stats.errors += 1;
                self.record_error(format!("{e:#}"));
            }
        }
        // Batched work, in phase order: folders, contents, deletions.
        stats.errors += self.mkdirs_remote(mkdirs_remote).await;
        stats.errors += self.uploads(uploads).await;
        stats.errors += self.downloads(downloads).await;
        stats.errors += self.deletes_remote(remote_deletes).await;
        stats.deferred = self.deferred;
        Ok(stats)
    }

    fn move_local(&mut self, from: &RelPath, to: &RelPath) -> Result<()> {
        // On a case-insensitive disk a case-only rename finds the item itself at `to`.
        if let Some(there) = self.disk.stat(to)?
            && Some(there) != self.disk.stat(from)?
        {
            return Err(Error::Changed(format!("cannot move {from} to {to}: {to} exists on disk")));
        }
        self.disk.rename(from, to).on_disk(|| format!("moving {from} to {to}"))?;
        let mut w = Vec::new();
        self.rename_synced(&mut w, from, to)?;
        self.write(w)
    }

    async fn move_remote(&mut self, from: &RelPath, to: &RelPath, rev: RevId) -> Result<()> {
        let resp =
            self.api.commit(vec![CommitOp::Move { from: from.clone(), to: to.clone(), parent_rev: Some(rev) }]).await?;
        let result = resp.results.into_iter().next();
        if let Some(e) = result.as_ref().and_then(|r| r.error.as_ref())
            && e.code == ErrorCode::NestedShare
        {
            return self.undo_move(from, to, &e.message);
        }
        let entry = op_entry(result)?;
        if entry.path != *to {
            return Err(Error::Refused(stored_elsewhere(to, &entry)));
        }
        let mut w = Vec::new();
        self.rename_synced(&mut w, from, to)?;
        if let Some(top) = self.stree.get(to).cloned() {
            self.set_synced(&mut w, to, Some(SyncedNode { rev: entry.rev, ..top }));
        }
        self.write(w)
    }

    /// A move the server will never take (a shared folder into another):
    /// moved back on disk, so both sides agree again; said in the status.
    /// If its old place is taken meanwhile, the moved item is synced as new
    /// where it is now (without what it held of a share) and the old one
    /// comes back: nothing is lost either way.
    fn undo_move(&mut self, from: &RelPath, to: &RelPath, why: &str) -> Result<()> {
        let back = match (self.disk.stat(from)?, from.parent()) {
            (None, Some(parent)) if self.disk.stat(&parent)?.is_some_and(|p| p.kind == EntryKind::Dir) => {
                self.disk.rename(to, from).is_ok()
            }
            _ => false,
        };
        let mut w = Vec::new();
        if !back {
            for k in subtree(&self.stree, from) {
                self.set_synced(&mut w, &k, None);
            }
        }
        self.write(w)?;
        let what =
            if back { format!("moved {to} back to {from}") } else { format!("{from} comes back from the server") };
        tracing::warn!(%from, %to, why, "the server refused a move");
        self.record_error(format!("{why}: {what}"));
        Ok(())
    }

    fn mkdir_local(&mut self, path: &RelPath, remote: RemoteNode) -> Result<()> {
        match self.disk.stat(path)? {
            // On a case-insensitive disk a folder synced under a twin name
            // answers for `path`: it is another item, not this one.
            Some(l) if l.kind == EntryKind::Dir && l.inode != 0 && self.synced_elsewhere(path, &l) => {
                return Err(Error::Changed(format!(
                    "cannot create folder {path}: a folder synced under another spelling holds its name on this disk"
                )));
            }
            Some(l) if l.kind == EntryKind::Dir => {}
            Some(_) => return Err(Error::Changed(format!("cannot create folder {path}: a file is in the way"))),
            None => self.disk.mkdir_all(path).on_disk(|| format!("creating folder {path}"))?,
        }
        let local = self.disk.stat(path)?.ok_or_else(|| Error::Changed(format!("folder {path} vanished")))?;
        let mut w = Vec::new();
        let node = SyncedNode { id: remote.id, rev: remote.rev, kind: EntryKind::Dir, local, hash: ContentHash::NONE };
        self.set_synced(&mut w, path, Some(node));
        self.write(w)
    }

    /// The item `l`, found at `path`, is recorded as synced at another path.
    fn synced_elsewhere(&self, path: &RelPath, l: &LocalNode) -> bool {
        self.stree.iter().any(|(p, s)| p != path && s.kind == l.kind && s.local.inode == l.inode)
    }

    async fn mkdirs_remote(&mut self, paths: Vec<RelPath>) -> usize {
        if paths.is_empty() {
            return 0;
        }
        let ops = paths.iter().map(|p| CommitOp::Mkdir { path: p.clone() }).collect();
        let results = match self.api.commit(ops).await {
            Ok(r) => r.results,
            Err(e) => {
                self.record_error(format!("creating folders on the server: {e}"));
                return paths.len();
            }
        };
        let mut errors = 0;
        let mut w = Vec::new();
        for (path, r) in paths.iter().zip(results) {
            match (r.entry, r.error) {
                (Some(entry), _) if entry.path != *path => {
                    errors += 1;
                    self.record_error(stored_elsewhere(path, &entry));
                }
                (Some(entry), _) => {
                    let Ok(Some(local)) = self.disk.stat(path) else { continue };
                    let node = SyncedNode {
                        id: entry.id,
                        rev: entry.rev,
                        kind: EntryKind::Dir,
                        local,
                        hash: ContentHash::NONE,
                    };
                    self.set_synced(&mut w, path, Some(node));
                }
                (None, e) => {
                    errors += 1;
                    self.record_error(format!(
                        "creating folder {path} on the server: {}",
                        e.map(|e| e.message).unwrap_or_default()
                    ));
                }
            }
        }
        if let Err(e) = self.write(w) {
            self.record_error(e);
        }
        errors
    }

    fn delete_local(&mut self, path: &RelPath, expect: LocalNode) -> Result<()> {
        let Some(now) = self.disk.stat(path)? else {
            let mut w = Vec::new();
            self.set_synced(&mut w, path, None);
            return self.write(w);
        };
        let same = match expect.kind {
            EntryKind::Dir => now.kind == EntryKind::Dir,
            EntryKind::File => now == expect,
        };
        if !same {
            return Ok(()); // changed since the plan: the next round decides again
        }
        match expect.kind {
            EntryKind::File => self.disk.remove_file(path)?,
            EntryKind::Dir => {
                if !self.disk.remove_dir(path)? {
                    // Not empty: it holds something new that will be uploaded; keep it.
                    return Ok(());
                }
            }
        }
        let mut w = Vec::new();
        self.set_synced(&mut w, path, None);
        self.write(w)
    }

    async fn deletes_remote(&mut self, items: Vec<(RelPath, RevId, EntryKind)>) -> usize {
        let mut errors = 0;
        if items.is_empty() {
            return 0;
        }
        // The last look before anything is deleted on the server: the folder
        // must still be the synced one (not a mount point whose disk went away
        // since the scan).
        if let Err(e) = self.check_root() {
            self.record_error(format!("not deleting on the server: {e:#}"));
            return items.len();
        }
        for batch in items.chunks(COMMIT_BATCH) {
            let ops = batch
                .iter()
                .map(|(path, rev, kind)| match kind {
                    EntryKind::File => CommitOp::Delete { path: path.clone(), parent_rev: Some(*rev) },
                    EntryKind::Dir => CommitOp::Rmdir { path: path.clone(), parent_rev: Some(*rev) },
                })
                .collect();
            let results = match self.api.commit(ops).await {
                Ok(r) => r.results,
                Err(e) => {
                    self.record_error(format!("deleting on the server: {e}"));
                    errors += batch.len();
                    continue;
                }
            };
            let mut w = Vec::new();
            for ((path, _, _), r) in batch.iter().zip(results) {
                if r.entry.is_some() || r.status == 404 {
                    self.set_synced(&mut w, path, None);
                } else {
                    // 409: changed on the server meanwhile; the next round sees it.
                    errors += 1;
                    self.record_error(format!("deleting {path}: {}", r.error.map(|e| e.message).unwrap_or_default()));
                }
            }
            if let Err(e) = self.write(w) {
                self.record_error(e);
            }
        }
        errors
    }

    /// Both sides changed `path`. Equal content: agree. Otherwise the local
    /// version moves aside to a conflict copy and the server's takes the path.
    async fn conflict(
        &mut self,
        path: &RelPath,
        remote: RemoteNode,
        local: LocalNode,
    ) -> Result<Option<(RelPath, RemoteNode, Option<LocalNode>)>> {
        if local.kind == EntryKind::File && remote.kind == EntryKind::File {
            let p = path.clone();
            let hashed = self.on_disk(move |d| d.hash_file(&p)).await?;
            if hashed.hash == remote.hash {
                // Same content: agree. A different mode is this device's (a
                // lost commit answer, a rebuilt state): recorded as the
                // server's, so the next round sends the local one.
                let mut w = Vec::new();
                let node = SyncedNode {
                    id: remote.id,
                    rev: remote.rev,
                    kind: EntryKind::File,
                    local: LocalNode { executable: remote.executable, ..hashed.local },
                    hash: remote.hash,
                };
                self.set_synced(&mut w, path, Some(node));
                self.write(w)?;
                return Ok(None);
            }
            // A download that landed just before the daemon was killed, its
            // record unwritten: not an edit, only older than the server's.
            if let Some(l) = self.state.landing(path)?
                && l.hash == hashed.hash
            {
                tracing::info!(%path, rev = l.rev, "a download that landed before a restart: the newer one follows");
                let node =
                    SyncedNode { id: l.id, rev: l.rev, kind: EntryKind::File, local: hashed.local, hash: l.hash };
                let mut w = vec![Write::Landing(path.clone(), None)];
                self.set_synced(&mut w, path, Some(node));
                self.write(w)?;
                return Ok(Some((path.clone(), remote, Some(hashed.local))));
            }
        }
        // Only if the disk still shows what the plan saw.
        let Some(now) = self.disk.stat(path)? else { return Ok(None) };
        if now.kind != local.kind || (now.kind == EntryKind::File && now != local) {
            return Ok(None);
        }
        self.move_aside(path)?;
        if remote.kind == EntryKind::Dir {
            self.mkdir_local(path, remote)?;
            return Ok(None);
        }
        Ok(Some((path.clone(), remote, None)))
    }

    /// Moves each name the scan left out because a twin with the same NFC
    /// form is in its folder (`café` spelled twice, once in NFD) to a
    /// conflict-copy name of its own; both then sync. Returns how many moved
    /// and how many failed.
    pub(super) async fn move_twins_aside(&mut self, twins: Vec<Twin>) -> (usize, usize) {
        let (mut moved, mut failed) = (0, 0);
        for twin in twins {
            let r = match self.free_conflict_name(&twin.path) {
                Ok(copy) => {
                    let (t, c) = (twin.clone(), copy.clone());
                    self.on_disk(move |d| d.move_twin_aside(&t, &c)).await.map(|()| copy).map_err(Error::from)
                }
                Err(e) => Err(e),
            };
            match r {
                Ok(copy) => {
                    moved += 1;
                    tracing::info!(path = %twin.path, %copy, "a twin spelled in another Unicode form moved aside");
                    self.progress.report(Report::Conflict(copy.to_string()));
                }
                Err(e) => {
                    failed += 1;
                    self.record_error(format!("moving aside the other spelling of {}: {e:#}", twin.path));
                }
            }
        }
        (moved, failed)
    }

    /// A conflict-copy name beside `path` that nothing on disk has.
    fn free_conflict_name(&self, path: &RelPath) -> Result<RelPath> {
        let name = path.name().expect("not root");
        let parent = path.parent().expect("not root");
        let now_ms = self.clock.now_ms();
        let mut copy = parent.join(&conflict_name(name, &self.device, now_ms))?;
        let mut n = 2;
        while self.disk.stat(&copy)?.is_some() {
            copy = parent.join(&numbered_conflict_name(name, &self.device, now_ms, n))?;
            n += 1;
        }
        Ok(copy)
    }

    /// Moves a change the server would refuse (inside a read-only shared
    /// folder) out of the share as a conflict copy at `to`'s folder, and
    /// forgets its synced records: the copy is sent as a new item of this
    /// user's next round, and the server's version comes back at `path`.
    fn keep_outside(&mut self, path: &RelPath, to: &RelPath) -> Result<()> {
        let parent = self.folder_for_copy(to)?;
        self.disk.mkdir_all(&parent).on_disk(|| format!("creating folder {parent}"))?;
        let copy = self.free_conflict_name(&parent.join(to.name().expect("not root"))?)?;
        self.disk.rename(path, &copy).on_disk(|| format!("keeping {path} as {copy}"))?;
        tracing::info!(%path, %copy, "kept a change to a read-only shared folder outside it");
        self.progress.report(Report::Conflict(copy.to_string()));
        self.progress.report(Report::ShareNews(format!(
            "{path} is in a folder shared with you read-only: your version is kept as {copy}"
        )));
        let mut w = Vec::new();
        for k in subtree(&self.stree, path) {
            self.set_synced(&mut w, &k, None);
        }
        self.write(w)
    }

    /// The folder a copy kept outside a share goes to: `to`'s folder, or,
    /// where a file on disk holds one of the names on the way, the deepest
    /// folder above that file (else the copy could never be made, and the
    /// edit would wait inside the share round after round).
    fn folder_for_copy(&self, to: &RelPath) -> Result<RelPath> {
        let mut at = RelPath::root();
        for name in to.parent().expect("not root").segments() {
            let next = at.join(name)?;
            if self.disk.stat(&next)?.is_some_and(|n| n.kind != EntryKind::Dir) {
                break;
            }
            at = next;
        }
        Ok(at)
    }

    /// Renames a local item to a free conflict-copy name beside it and forgets
    /// its synced record; the copy is uploaded as a new item next round.
    fn move_aside(&mut self, path: &RelPath) -> Result<RelPath> {
        let copy = self.free_conflict_name(path)?;
        self.disk.rename(path, &copy).on_disk(|| format!("keeping {path} as {copy}"))?;
        tracing::info!(%path, %copy, "kept the local version as a conflict copy");
        self.progress.report(Report::Conflict(copy.to_string()));
        let mut w = Vec::new();
        self.set_synced(&mut w, path, None);
        self.write(w)?;
        Ok(copy)
    }
}
