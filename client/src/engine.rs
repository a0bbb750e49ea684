//! The engine: keeps the three trees, pulls the server's journal into the
//! remote tree, scans the disk, asks the planner, and executes the plan.
//!
//! The executor re-checks each operation's precondition right before acting
//! (a download replaces a file only if the disk still shows what the plan
//! saw), so a plan made a moment ago can never overwrite a newer local edit.
//! Errors are "try again later", never "deleted".
//!
//! The engine reaches the disk, the server and the clock only through the
//! traits in [`crate::seams`] (a test checks this file for direct I/O), so the
//! same engine runs on a real folder and HTTP, or inside a simulation.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use ferry_shared::api::{BlockEdit, BlockList, BlockRef, ChangeOp, CommitOp, EntryKind, OpResult, RevId};
use ferry_shared::{BlockId, RelPath};
use futures_util::{StreamExt, TryStreamExt};

use crate::planner::{self, Op, Plan};
use crate::seams::{Api, Clock, Disk, Hashed};
use crate::state::{State, Write};
use crate::status::Status;
use crate::tree::{ContentHash, LocalNode, RemoteNode, RemoteTree, SyncedNode, SyncedTree, subtree};

/// Blocks of one large file fetched at once.
const PARALLEL_BLOCKS: usize = 8;
/// Raw bytes of blocks per batch request (upload and download).
const BATCH_BYTES: usize = 4 << 20;
/// Batch requests in flight.
const PARALLEL_BATCHES: usize = 4;
/// Files up to this size are downloaded in groups with one batch fetch each.
const SMALL_FILE: u64 = 1 << 20;
/// Large files downloaded at once (memory: this × PARALLEL_BLOCKS blocks).
const PARALLEL_FILES: usize = 2;
/// A file modified less than this long ago is not sent yet.
const STABLE_MS: i64 = 50;
/// Operations per commit request.
const COMMIT_BATCH: usize = 1000;
/// Tree entries changed before the trees are rebuilt compactly.
const COMPACT_AFTER: usize = 10_000;
/// Files downloaded as one chunk.
const DOWNLOAD_CHUNK: usize = 4096;
/// Bytes of files hashed, sent and committed as one group.
const UPLOAD_GROUP_BYTES: u64 = 64 << 20;

pub struct Engine<D: Disk, A: Api, C: Clock> {
    pub disk: D,
    pub api: A,
    pub clock: C,
    pub device: String,
    state: State,
    pub rtree: RemoteTree,
    pub stree: SyncedTree,
    pub cursor: i64,
    pub max_deletes: usize,
    pub max_delete_share: f64,
    /// Set by `ferry resume --confirm-deletes` for the next round.
    pub deletes_confirmed: bool,
    pub status: Arc<Mutex<Status>>,
    /// Tree entries changed since the trees were last rebuilt in one piece.
    churn: usize,
    /// Files deferred in this execution (still being written).
    deferred: usize,
}

/// What one sync round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RoundStats {
    pub ops: usize,
    pub errors: usize,
    /// Files left for a moment because they were still being written.
    pub deferred: usize,
}

/// A mass deletion waiting for confirmation.
#[derive(Debug, thiserror::Error)]
#[error(
    "{count} items would be deleted on the server at once; check the folder, then run `ferry resume --confirm-deletes`"
)]
pub struct MassDelete {
    pub count: usize,
}

/// The smallest block-list edit from `parent` to `new`: common prefix and
/// suffix are copied, the middle is sent.
pub fn block_list_for(parent: Option<&[BlockRef]>, new: &[BlockId]) -> BlockList {
    let Some(parent) = parent else { return BlockList::Full(new.to_vec()) };
    let pre = parent.iter().zip(new).take_while(|(a, b)| a.id == **b).count();
    let max_suf = parent.len().min(new.len()) - pre;
    let suf = parent.iter().rev().zip(new.iter().rev()).take(max_suf).take_while(|(a, b)| a.id == **b).count();
    if pre + suf == 0 {
        return BlockList::Full(new.to_vec());
    }
    let mut edits = Vec::new();
    if pre > 0 {
        edits.push(BlockEdit::Copy { start: 0, count: pre as u32 });
    }
    let mid = &new[pre..new.len() - suf];
    if !mid.is_empty() {
        edits.push(BlockEdit::Add(mid.to_vec()));
    }
    if suf > 0 {
        edits.push(BlockEdit::Copy { start: (parent.len() - suf) as u32, count: suf as u32 });
    }
    BlockList::Edit(edits)
}

/// `NAME (conflicted copy from DEVICE YYYY-MM-DD HHMMSS).EXT`, in UTC.
pub fn conflict_name(name: &str, device: &str, now_ms: i64) -> String {
    let secs = now_ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let stamp = format!("{y:04}-{m:02}-{d:02} {:02}{:02}{:02}", tod / 3600, tod % 3600 / 60, tod % 60);
    let device: String =
        device.chars().filter(|c| !matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|')).collect();
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    format!("{stem} (conflicted copy from {device} {stamp}){ext}")
}

fn remote_node(e: &ferry_shared::api::Entry) -> RemoteNode {
    RemoteNode {
        id: e.id,
        rev: e.rev,
        kind: e.kind,
        size: e.size,
        mtime: e.mtime,
        executable: e.executable,
        // Checked when the change arrived (`remote::parse_changes`); a commit
        // answer with a broken hash reads as "unknown content".
        hash: ContentHash::parse(&e.hash).unwrap_or(ContentHash([0xff; 32])),
    }
}

/// A file to send and the head revision it replaces, if any.
type Upload = (RelPath, Option<RevId>);

/// Where the blocks of files already synced sit on disk (delta download).
type BlockIndex = HashMap<BlockId, (RelPath, u64, u32)>;

/// A file to bring down: the server's version, its block list, and what the
/// disk must still show for it to be replaced.
struct Fetch {
    path: RelPath,
    remote: RemoteNode,
    blocks: Vec<BlockRef>,
    expect: Option<LocalNode>,
}

impl<D: Disk, A: Api, C: Clock> Engine<D, A, C> {
    pub fn open(
        (disk, api, clock): (D, A, C),
        device: String,
        state_db: &Path,
        (max_deletes, max_delete_share): (usize, f64),
        status: Arc<Mutex<Status>>,
    ) -> anyhow::Result<Self> {
        let state = State::open(state_db)?;
        let rtree = state.load_remote()?;
        let stree = state.load_synced()?;
        let cursor = state.cursor()?;
        Ok(Engine {
            disk,
            api,
            clock,
            device,
            state,
            rtree,
            stree,
            cursor,
            max_deletes,
            max_delete_share,
            deletes_confirmed: false,
            status,
            churn: 0,
            deferred: 0,
        })
    }

    /// Runs blocking disk work off the async threads.
    async fn on_disk<T: Send + 'static>(&self, f: impl FnOnce(&D) -> T + Send + 'static) -> T {
        self.disk.blocking(f).await
    }

    /// Checks that the folder is the synced one (its marker is there), and
    /// creates the marker on first use. An unmounted or replaced folder stops
    /// the daemon instead of reading as "everything was deleted".
    pub fn check_root(&mut self) -> anyhow::Result<()> {
        let expected = self.state.get("folder_id")?;
        match (self.disk.read_marker(), expected) {
            (Ok(Some(found)), Some(exp)) if found == exp => Ok(()),
            (Ok(Some(found)), Some(_)) => bail!(
                "{} belongs to another Ferry folder ({found}); stopping so nothing is deleted",
                self.disk.describe()
            ),
            (_, Some(_)) => bail!(
                "{} is missing or has lost its {} marker (an unmounted disk?); stopping so nothing is deleted",
                self.disk.describe(),
                crate::scan::MARKER
            ),
            (found, None) => {
                let id = match found {
                    Ok(Some(existing)) => existing,
                    _ => {
                        let id = hex::encode(rand::random::<[u8; 16]>());
                        self.disk
                            .init_marker(&id)
                            .with_context(|| format!("creating the sync folder {}", self.disk.describe()))?;
                        id
                    }
                };
                self.state.set("folder_id", &id)?;
                Ok(())
            }
        }
    }

    fn write(&mut self, writes: Vec<Write>) -> anyhow::Result<()> {
        self.churn += writes.len();
        self.state.apply(&writes)
    }

    /// After many changes, rebuilds both trees from the state database in one
    /// piece: trees grown entry by entry have half-empty nodes and their keys
    /// are scattered among freed memory; rebuilt, they take about half as much.
    fn compact_if_churned(&mut self) -> anyhow::Result<()> {
        if self.churn < COMPACT_AFTER {
            return Ok(());
        }
        self.churn = 0;
        // Free the old trees first so the new ones fill the same memory.
        self.rtree = RemoteTree::new();
        self.stree = SyncedTree::new();
        self.rtree = self.state.load_remote()?;
        self.stree = self.state.load_synced()?;
        Ok(())
    }

    fn set_synced(&mut self, writes: &mut Vec<Write>, path: &RelPath, node: Option<SyncedNode>) {
        match &node {
            Some(n) => {
                self.stree.insert(path.clone(), n.clone());
            }
            None => {
                self.stree.remove(path);
            }
        }
        writes.push(Write::Synced(path.clone(), node));
    }

    fn set_remote(&mut self, writes: &mut Vec<Write>, path: &RelPath, node: Option<RemoteNode>) {
        match &node {
            Some(n) => {
                self.rtree.insert(path.clone(), n.clone());
            }
            None => {
                self.rtree.remove(path);
            }
        }
        writes.push(Write::Remote(path.clone(), node));
    }

    /// Moves the remote record at `from` (and everything under it) to `to`,
    /// block lists included.
    fn rename_remote(&mut self, writes: &mut Vec<Write>, from: &RelPath, to: &RelPath) -> anyhow::Result<()> {
        if from == to {
            return Ok(());
        }
        for k in subtree(&self.rtree, from) {
            let new = k.rebase(from, to)?;
            if let Some(node) = self.rtree.remove(&k) {
                self.rtree.insert(new.clone(), node);
            }
            writes.push(Write::RenameRemote(k, new));
        }
        Ok(())
    }

    /// Moves the synced records at and under `from` to `to`.
    fn rename_synced(&mut self, writes: &mut Vec<Write>, from: &RelPath, to: &RelPath) -> anyhow::Result<()> {
        for k in subtree(&self.stree, from) {
            let node = self.stree.get(&k).cloned();
            self.set_synced(writes, &k, None);
            let new = k.rebase(from, to)?;
            self.set_synced(writes, &new, node);
        }
        Ok(())
    }

    /// Pulls the journal since our cursor into the remote tree.
    pub async fn refresh_remote(&mut self) -> Result<bool, anyhow::Error> {
        let mut changed = false;
        loop {
            let (page, refused) = self.api.changes(self.cursor, 1000).await?;
            for r in refused {
                self.record_error(r);
            }
            let mut writes = Vec::new();
            for ch in &page.changes {
                let path = &ch.entry.path;
                if path.is_root() {
                    continue;
                }
                match ch.op {
                    ChangeOp::Add | ChangeOp::Modify | ChangeOp::Mkdir => {
                        self.set_remote(&mut writes, path, Some(remote_node(&ch.entry)));
                        if ch.entry.kind == EntryKind::File {
                            writes.push(Write::Blocks(path.clone(), ch.blocks.clone().unwrap_or_default()));
                        }
                    }
                    ChangeOp::Delete | ChangeOp::Rmdir => {
                        for k in subtree(&self.rtree, path) {
                            self.set_remote(&mut writes, &k, None);
                        }
                    }
                    ChangeOp::Move => {
                        let Some(from) = &ch.from else { continue };
                        self.rename_remote(&mut writes, from, path)?;
                        self.set_remote(&mut writes, path, Some(remote_node(&ch.entry)));
                    }
                }
                changed = true;
            }
            self.cursor = page.cursor;
            writes.push(Write::Cursor(page.cursor));
            self.write(writes)?;
            if !page.has_more {
                break;
            }
        }
        if let Ok(mut s) = self.status.lock() {
            s.cursor = self.cursor;
        }
        Ok(changed)
    }

    /// Removes partial downloads a crash left behind (call before any round).
    pub async fn remove_stale_temp_files(&self) -> anyhow::Result<usize> {
        Ok(self.on_disk(|d| d.remove_temp_files()).await?)
    }

    /// Scans, plans and executes until nothing is left to do (or a limit).
    pub async fn sync_round(&mut self) -> anyhow::Result<RoundStats> {
        let mut stats = RoundStats::default();
        for _ in 0..8 {
            self.check_root()?;
            let (local, report) = self.on_disk(|d| d.scan()).await?;
            for s in report.skipped {
                tracing::debug!(skipped = %s, "not synced");
            }
            tracing::debug!(entries = local.len(), "scanned");
            let plan = planner::plan(&self.rtree, &local, &self.stree);
            tracing::debug!(ops = plan.ops.len(), "planned");
            if plan.is_empty() {
                break;
            }
            let share = plan.remote_deletes as f64 / self.stree.len().max(1) as f64;
            let mass =
                plan.remote_deletes > self.max_deletes || (plan.remote_deletes > 50 && share > self.max_delete_share);
            if mass && !self.deletes_confirmed {
                return Err(MassDelete { count: plan.remote_deletes }.into());
            }
            self.deletes_confirmed = false;
            self.update_pending(&plan);
            let r = self.execute(plan).await?;
            stats.ops += r.ops;
            stats.errors += r.errors;
            stats.deferred += r.deferred;
            if r.errors + r.deferred >= r.ops {
                break; // nothing succeeded: wait for the next event or retry
            }
            // Our own commits moved the journal: take them in before re-planning.
            self.refresh_remote().await?;
        }
        self.compact_if_churned()?;
        if let Ok(mut s) = self.status.lock() {
            s.pending_uploads = 0;
            s.pending_downloads = 0;
            s.pending_upload_bytes = 0;
            s.pending_download_bytes = 0;
            s.last_sync = Some(self.clock.now_ms());
            s.files = self.stree.len();
            s.bytes_sent = self.api.bytes_sent();
        }
        Ok(stats)
    }

    fn update_pending(&self, plan: &Plan) {
        let Ok(mut s) = self.status.lock() else { return };
        s.pending_uploads = 0;
        s.pending_downloads = 0;
        s.pending_upload_bytes = 0;
        s.pending_download_bytes = 0;
        for op in &plan.ops {
            match op {
                Op::Upload { size, .. } => {
                    s.pending_uploads += 1;
                    s.pending_upload_bytes += size;
                }
                Op::Download { remote, .. } | Op::Conflict { remote, .. } => {
                    s.pending_downloads += 1;
                    s.pending_download_bytes += remote.size;
                }
                _ => {}
            }
        }
    }

    /// Counts finished work off the pending totals (`ferry wait` shows them).
    fn progress(&self, uploads: &[u64], downloads: &[u64]) {
        let Ok(mut s) = self.status.lock() else { return };
        s.pending_uploads = s.pending_uploads.saturating_sub(uploads.len());
        s.pending_upload_bytes = s.pending_upload_bytes.saturating_sub(uploads.iter().sum());
        s.pending_downloads = s.pending_downloads.saturating_sub(downloads.len());
        s.pending_download_bytes = s.pending_download_bytes.saturating_sub(downloads.iter().sum());
        s.bytes_sent = self.api.bytes_sent();
    }

    fn record_error(&self, e: impl std::fmt::Display) {
        if let Ok(mut s) = self.status.lock() {
            s.error(e);
        }
    }

    /// Executes a plan; per-operation failures are recorded and retried later.
    pub async fn execute(&mut self, plan: Plan) -> anyhow::Result<RoundStats> {
        let mut stats = RoundStats { ops: plan.ops.len(), ..RoundStats::default() };
        self.deferred = 0;
        let mut uploads = Vec::new();
        let mut downloads = Vec::new();
        let mut remote_deletes = Vec::new();
        let mut mkdirs_remote = Vec::new();
        for op in plan.ops {
            let result = match op {
                Op::MoveLocal { from, to } => self.move_local(&from, &to),
                Op::MoveRemote { from, to, rev } => self.move_remote(&from, &to, rev).await,
                Op::MoveAside { path } => self.move_aside(&path).map(|_| ()),
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

    fn move_local(&mut self, from: &RelPath, to: &RelPath) -> anyhow::Result<()> {
        // On a case-insensitive disk a case-only rename finds the item itself at `to`.
        if let Some(there) = self.disk.stat(to)?
            && Some(there) != self.disk.stat(from)?
        {
            bail!("cannot move {from} to {to}: {to} exists on disk");
        }
        self.disk.rename(from, to).with_context(|| format!("moving {from} to {to}"))?;
        let mut w = Vec::new();
        self.rename_synced(&mut w, from, to)?;
        self.write(w)
    }

    async fn move_remote(&mut self, from: &RelPath, to: &RelPath, rev: RevId) -> anyhow::Result<()> {
        let resp =
            self.api.commit(vec![CommitOp::Move { from: from.clone(), to: to.clone(), parent_rev: Some(rev) }]).await?;
        let entry = op_entry(resp.results.into_iter().next())?;
        if entry.path != *to {
            bail!(stored_elsewhere(to, &entry));
        }
        let mut w = Vec::new();
        self.rename_synced(&mut w, from, to)?;
        if let Some(top) = self.stree.get(to).cloned() {
            self.set_synced(&mut w, to, Some(SyncedNode { rev: entry.rev, ..top }));
        }
        self.write(w)
    }

    fn mkdir_local(&mut self, path: &RelPath, remote: RemoteNode) -> anyhow::Result<()> {
        match self.disk.stat(path)? {
            Some(l) if l.kind == EntryKind::Dir => {}
            Some(_) => bail!("cannot create folder {path}: a file is in the way"),
            None => self.disk.mkdir_all(path).with_context(|| format!("creating folder {path}"))?,
        }
        let local = self.disk.stat(path)?.with_context(|| format!("folder {path} vanished"))?;
        let mut w = Vec::new();
        let node = SyncedNode { id: remote.id, rev: remote.rev, kind: EntryKind::Dir, local, hash: ContentHash::NONE };
        self.set_synced(&mut w, path, Some(node));
        self.write(w)
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

    fn delete_local(&mut self, path: &RelPath, expect: LocalNode) -> anyhow::Result<()> {
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
    ) -> anyhow::Result<Option<(RelPath, RemoteNode, Option<LocalNode>)>> {
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

    /// Renames a local item to a free conflict-copy name beside it and forgets
    /// its synced record; the copy is uploaded as a new item next round.
    fn move_aside(&mut self, path: &RelPath) -> anyhow::Result<RelPath> {
        let name = path.name().expect("not root");
        let parent = path.parent().expect("not root");
        let now_ms = self.clock.now_ms();
        let mut copy = parent.join(&conflict_name(name, &self.device, now_ms))?;
        let mut n = 2;
        while self.disk.stat(&copy)?.is_some() {
            copy = parent.join(&format!("{} {n}", conflict_name(name, &self.device, now_ms)))?;
            n += 1;
        }
        self.disk.rename(path, &copy).with_context(|| format!("keeping {path} as {copy}"))?;
        tracing::info!(%path, %copy, "kept the local version as a conflict copy");
        if let Ok(mut s) = self.status.lock() {
            s.conflicts.push(copy.to_string());
        }
        let mut w = Vec::new();
        self.set_synced(&mut w, path, None);
        self.write(w)?;
        Ok(copy)
    }

    /// Sends files in groups (up to [`COMMIT_BATCH`] files or
    /// [`UPLOAD_GROUP_BYTES`]): memory stays bounded however many files there
    /// are, and each group is committed, and visible to other devices, as
    /// soon as its blocks are up. Small files go first: they are quick to
    /// show on other devices, which fetch them while a big one is still sent.
    async fn uploads(&mut self, mut items: Vec<(RelPath, Option<RevId>, u64)>) -> usize {
        let mut errors = 0;
        items.sort_by_key(|(_, _, size)| *size > SMALL_FILE);
        // Hashes files (blocking, off the async threads) until a group is full.
        let disk = self.disk.clone();
        let hash_group = |mut rest: std::collections::VecDeque<(RelPath, Option<RevId>, u64)>| {
            disk.blocking(move |d| {
                let mut group = Vec::new();
                let mut bytes = 0u64;
                while let Some((path, rev, size)) = rest.pop_front() {
                    if !group.is_empty() && (group.len() >= COMMIT_BATCH || bytes + size > UPLOAD_GROUP_BYTES) {
                        rest.push_front((path, rev, size));
                        break;
                    }
                    let h = d.hash_file(&path);
                    bytes += h.as_ref().map_or(size, |h| h.local.size);
                    group.push(((path, rev), h));
                }
                (rest, group)
            })
        };
        let (mut rest, mut group) = hash_group(items.into()).await;
        while !group.is_empty() {
            // The next group is hashed while this one is sent and committed.
            let next = async { if rest.is_empty() { (rest, Vec::new()) } else { hash_group(rest).await } };
            let (sent, (left, hashed)) = futures_util::future::join(self.upload_group(group), next).await;
            errors += sent;
            (rest, group) = (left, hashed);
        }
        errors
    }

    async fn upload_group(&mut self, group: Vec<(Upload, std::io::Result<Hashed>)>) -> usize {
        let mut errors = 0;
        let mut ready = Vec::new();
        let mut w = Vec::new();
        let now_ns = i128::from(self.clock.now_ms()) * 1_000_000;
        for ((path, parent_rev), h) in group {
            let h = match h {
                Ok(h) => h,
                Err(e) => {
                    errors += 1;
                    self.record_error(format!("reading {path}: {e}"));
                    continue;
                }
            };
            // Still being written (changed within the quiet period): wait until
            // it is stable, so a half-written file never becomes a revision. The
            // round reports it as deferred, which schedules a quick retry. An
            // mtime in the future (a clock that jumped back, an unpacked archive)
            // says nothing about a writer now: such a file is sent.
            let age_ns = now_ns - i128::from(h.local.mtime_ns);
            if (0..i128::from(STABLE_MS) * 1_000_000).contains(&age_ns) {
                tracing::debug!(%path, "changed just now; sending it once it is stable");
                self.deferred += 1;
                continue;
            }
            // Same content and mode as the server's head: nothing to send.
            if let Some(r) = self
                .rtree
                .get(&path)
                .filter(|r| r.hash == h.hash && r.executable == h.local.executable && Some(r.rev) == parent_rev)
            {
                let node = SyncedNode { id: r.id, rev: r.rev, kind: EntryKind::File, local: h.local, hash: h.hash };
                self.set_synced(&mut w, &path, Some(node));
                continue;
            }
            ready.push((path, parent_rev, h));
        }
        if let Err(e) = self.write(std::mem::take(&mut w)) {
            self.record_error(e);
        }
        if ready.is_empty() {
            return errors;
        }
        // 2. Which blocks does the server lack? Blocks of the revisions being
        // replaced are the account's already (a commit needed them); ask only
        // about the others, then send those, several at once.
        let mut parents: HashMap<RelPath, Vec<BlockRef>> = HashMap::new();
        for (path, parent_rev, _) in &ready {
            if parent_rev.is_some() && self.rtree.contains_key(path) {
                match self.state.remote_blocks(path) {
                    Ok(blocks) => {
                        parents.insert(path.clone(), blocks);
                    }
                    Err(e) => self.record_error(format!("reading the block list of {path}: {e:#}")),
                }
            }
        }
        let known: HashSet<BlockId> = parents.values().flatten().map(|b| b.id).collect();
        let mut all: Vec<BlockId> =
            ready.iter().flat_map(|(_, _, h)| h.blocks.iter().map(|b| b.0)).filter(|id| !known.contains(id)).collect();
        all.sort();
        all.dedup();
        let missing: HashSet<BlockId> = match self.api.missing(&all).await {
            Ok(m) => m.into_iter().collect(),
            Err(e) => {
                self.record_error(format!("asking the server for missing blocks: {e}"));
                return errors + ready.len();
            }
        };
        let mut sources: BlockIndex = HashMap::new();
        for (path, _, h) in &ready {
            for (id, off, len) in &h.blocks {
                if missing.contains(id) {
                    sources.entry(*id).or_insert((path.clone(), *off, *len));
                }
            }
        }
        // Small blocks travel many to a request (one fsync on the server for all).
        let mut sources: Vec<(BlockId, RelPath, u64, u32)> =
            sources.into_iter().map(|(id, (path, off, len))| (id, path, off, len)).collect();
        sources.sort_by(|a, b| (&a.1, a.2).cmp(&(&b.1, b.2)));
        let mut batches: Vec<Vec<(BlockId, RelPath, u64, u32)>> = Vec::new();
        let mut size = 0usize;
        for s in sources {
            if batches.is_empty()
                || size + s.3 as usize > BATCH_BYTES
                || batches.last().is_some_and(|b| b.len() >= 1024)
            {
                batches.push(Vec::new());
                size = 0;
            }
            size += s.3 as usize;
            batches.last_mut().expect("a batch").push(s);
        }
        let sent = futures_util::stream::iter(batches.into_iter().map(|batch| {
            let (api, disk) = (self.api.clone(), self.disk.clone());
            async move {
                let body = disk
                    .blocking(move |disk| -> std::io::Result<Vec<u8>> {
                        let mut body = Vec::new();
                        for (id, path, off, len) in batch {
                            let b = ferry_shared::block::encode_owned(disk.read_range(&path, off, len)?);
                            if b.id != id {
                                return Err(std::io::Error::other("the file changed while it was sent"));
                            }
                            ferry_shared::block::write_frame(&mut body, &b.id, b.encoding, &b.bytes);
                        }
                        Ok(body)
                    })
                    .await?;
                api.put_batch(body).await.map_err(std::io::Error::other)
            }
        }))
        .buffer_unordered(PARALLEL_BATCHES)
        .try_collect::<Vec<()>>()
        .await;
        if let Err(e) = sent {
            self.record_error(format!("sending blocks: {e}"));
            return errors + ready.len();
        }
        tracing::debug!(files = ready.len(), blocks = missing.len(), "blocks sent; committing");
        // 3. Commit, many files per request.
        for batch in ready.chunks(COMMIT_BATCH) {
            let ops: Vec<CommitOp> = batch
                .iter()
                .map(|(path, parent_rev, h)| {
                    let ids: Vec<BlockId> = h.blocks.iter().map(|b| b.0).collect();
                    let parent = parents.get(path).map(Vec::as_slice);
                    CommitOp::Put {
                        path: path.clone(),
                        parent_rev: *parent_rev,
                        size: h.local.size,
                        mtime: h.local.mtime_ns / 1_000_000,
                        executable: h.local.executable,
                        blocks: block_list_for(parent, &ids),
                    }
                })
                .collect();
            let results = match self.api.commit(ops).await {
                Ok(r) => r.results,
                Err(e) => {
                    self.record_error(format!("committing uploads: {e}"));
                    errors += batch.len();
                    continue;
                }
            };
            let mut w = Vec::new();
            let mut done = Vec::new();
            for ((path, _, h), r) in batch.iter().zip(results) {
                match r {
                    OpResult { entry: Some(entry), .. } if entry.path != *path => {
                        errors += 1;
                        self.record_error(stored_elsewhere(path, &entry));
                    }
                    OpResult { entry: Some(entry), .. } => {
                        done.push(h.local.size);
                        let node = SyncedNode {
                            id: entry.id,
                            rev: entry.rev,
                            kind: EntryKind::File,
                            local: h.local,
                            hash: remote_node(&entry).hash,
                        };
                        self.set_synced(&mut w, path, Some(node));
                    }
                    OpResult { error, status, .. } => {
                        // 409: the server moved on; after the next refresh the
                        // planner sees both sides changed and keeps both.
                        errors += 1;
                        let msg = error.map(|e| e.message).unwrap_or_default();
                        self.record_error(format!("uploading {path}: {status} {msg}"));
                    }
                }
            }
            if let Err(e) = self.write(w) {
                self.record_error(e);
            }
            self.progress(&done, &[]);
        }
        errors
    }

    /// Where the `wanted` blocks sit in files already synced (delta
    /// download): only files whose disk content is the synced revision count.
    fn local_blocks(&self, wanted: &HashSet<BlockId>) -> BlockIndex {
        let sources = match self.state.block_sources(wanted) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "cannot look up local copies of blocks; fetching them");
                return HashMap::new();
            }
        };
        let mut index = HashMap::new();
        for (id, path, off, len) in sources {
            let (Some(s), Some(r)) = (self.stree.get(&path), self.rtree.get(&path)) else { continue };
            if s.kind == EntryKind::File && s.hash == r.hash {
                index.entry(id).or_insert((path, off, len));
            }
        }
        index
    }

    /// Brings files down in chunks of [`DOWNLOAD_CHUNK`], small files first:
    /// memory stays bounded however many there are, and files land as they
    /// arrive rather than all at the end.
    async fn downloads(&mut self, mut items: Vec<(RelPath, RemoteNode, Option<LocalNode>)>) -> usize {
        items.sort_by_key(|(_, r, _)| r.size > SMALL_FILE);
        let mut errors = 0;
        let mut items = items.into_iter();
        loop {
            let chunk: Vec<_> = items.by_ref().take(DOWNLOAD_CHUNK).collect();
            if chunk.is_empty() {
                return errors;
            }
            errors += self.download_chunk(chunk).await;
        }
    }

    async fn download_chunk(&mut self, items: Vec<(RelPath, RemoteNode, Option<LocalNode>)>) -> usize {
        let mut errors = 0;
        let mut fetches = Vec::with_capacity(items.len());
        for (path, remote, expect) in items {
            let blocks = match self.state.remote_blocks(&path) {
                Ok(b) => b,
                Err(e) => {
                    errors += 1;
                    self.record_error(format!("reading the block list of {path}: {e:#}"));
                    continue;
                }
            };
            // The list must be the one the content hash was made from.
            let ids: Vec<BlockId> = blocks.iter().map(|b| b.id).collect();
            if ContentHash(ferry_shared::block::content_digest(remote.size, &ids)) != remote.hash {
                errors += 1;
                self.record_error(format!("{path}: the server's block list does not match its content hash"));
                continue;
            }
            fetches.push(Fetch { path, remote, blocks, expect });
        }
        let wanted: HashSet<BlockId> = fetches.iter().flat_map(|f| f.blocks.iter().map(|b| b.id)).collect();
        let index = Arc::new(self.local_blocks(&wanted));
        drop(wanted);
        tracing::debug!(files = fetches.len(), "downloading");
        let (small, large): (Vec<_>, Vec<_>) = fetches.into_iter().partition(|f| f.remote.size <= SMALL_FILE);
        // Small files in groups: one batch fetch and few fsync waits per group.
        let mut groups: Vec<Vec<Fetch>> = Vec::new();
        let mut size = 0u64;
        for item in small {
            if groups.is_empty()
                || size + item.remote.size > BATCH_BYTES as u64
                || groups.last().is_some_and(|g| g.len() >= 256)
            {
                groups.push(Vec::new());
                size = 0;
            }
            size += item.remote.size;
            groups.last_mut().expect("a group").push(item);
        }
        let small_results = futures_util::stream::iter(groups.into_iter().map(|group| {
            let (api, disk, index) = (self.api.clone(), self.disk.clone(), Arc::clone(&index));
            async move { download_group(&api, &disk, &index, group).await }
        }))
        .buffer_unordered(PARALLEL_BATCHES)
        .collect::<Vec<_>>()
        .await;
        let mut results: Vec<(RelPath, RemoteNode, anyhow::Result<Option<LocalNode>>)> =
            small_results.into_iter().flatten().collect();
        let large_results: Vec<(RelPath, RemoteNode, anyhow::Result<Option<LocalNode>>)> =
            futures_util::stream::iter(large.into_iter().map(|f| {
                let (api, disk, index) = (self.api.clone(), self.disk.clone(), Arc::clone(&index));
                async move {
                    let r = download(&api, &disk, &index, &f).await;
                    (f.path, f.remote, r)
                }
            }))
            .buffer_unordered(PARALLEL_FILES)
            .collect()
            .await;
        results.extend(large_results);
        tracing::debug!(files = results.len(), "downloaded");
        let mut w = Vec::new();
        let mut done = Vec::new();
        for (path, rnode, r) in results {
            match r {
                Ok(Some(local)) => {
                    done.push(rnode.size);
                    let node =
                        SyncedNode { id: rnode.id, rev: rnode.rev, kind: EntryKind::File, local, hash: rnode.hash };
                    self.set_synced(&mut w, &path, Some(node));
                }
                Ok(None) => {} // the local file changed meanwhile: the next round decides
                Err(e) => {
                    errors += 1;
                    self.record_error(format!("downloading {path}: {e:#}"));
                }
            }
        }
        if let Err(e) = self.write(w) {
            self.record_error(e);
        }
        self.progress(&[], &done);
        errors
    }
}

/// The server keeps one spelling per name (case and normalization folded):
/// it wrote `path` under the spelling it already had. Nothing is recorded;
/// the next round sees the server's spelling and settles the twins.
fn stored_elsewhere(path: &RelPath, entry: &ferry_shared::api::Entry) -> String {
    format!("the server stored {path} as {}, a name it already had; syncing it again", entry.path)
}

fn op_entry(r: Option<OpResult>) -> anyhow::Result<ferry_shared::api::Entry> {
    match r {
        Some(OpResult { entry: Some(e), .. }) => Ok(e),
        Some(OpResult { error: Some(e), status, .. }) => bail!("the server refused ({status}): {}", e.message),
        _ => bail!("the server gave no result"),
    }
}

/// Downloads a group of small files: blocks from local files where possible
/// (each read and verified), the rest in one batch fetch; then each file is
/// written like [`download`] does (temp file, fsync, checked rename), with
/// each folder fsync'd once.
async fn download_group<D: Disk, A: Api>(
    api: &A,
    disk: &D,
    index: &BlockIndex,
    group: Vec<Fetch>,
) -> Vec<(RelPath, RemoteNode, anyhow::Result<Option<LocalNode>>)> {
    let ids: Vec<BlockId> = group.iter().flat_map(|f| f.blocks.iter().map(|b| b.id)).collect();
    let blocks = match gather(api, disk, index, ids).await {
        Ok(b) => b,
        Err(e) => {
            let msg = format!("{e}");
            return group
                .into_iter()
                .map(|f| (f.path, f.remote, Err(anyhow::anyhow!("fetching blocks: {msg}"))))
                .collect();
        }
    };
    disk.blocking(move |disk| {
        // Write every temp file, make them durable together, then rename each.
        let mut out = Vec::new();
        let mut ready = Vec::new();
        let mut temps = Vec::new();
        for f in group {
            match write_small(disk, &f, &blocks) {
                Ok(t) => {
                    temps.push((t, f.remote.mtime, f.remote.executable));
                    ready.push(f);
                }
                Err(e) => out.push((f.path, f.remote, Err(e))),
            }
        }
        let finished = disk.finish_temps(&mut temps);
        let mut written = Vec::new();
        for ((f, (temp, _, _)), fin) in ready.into_iter().zip(temps).zip(finished) {
            let r = match fin {
                Ok(()) => disk.commit_temp(temp, &f.path, f.expect, false).map_err(anyhow::Error::from),
                Err(e) => {
                    disk.discard_temp(temp);
                    Err(e.into())
                }
            };
            if matches!(r, Ok(Some(_))) {
                written.push(f.path.clone());
            }
            out.push((f.path, f.remote, r));
        }
        disk.sync_parents(&written);
        out
    })
    .await
}

/// Writes one small file's temp file from its blocks, all in memory (blocking).
fn write_small<D: Disk>(
    disk: &D,
    Fetch { path, remote: rnode, blocks, .. }: &Fetch,
    have: &HashMap<BlockId, Vec<u8>>,
) -> anyhow::Result<D::Temp> {
    let mut data = Vec::with_capacity(rnode.size as usize);
    for b in blocks {
        data.extend_from_slice(have.get(&b.id).context("the server did not send a block")?);
    }
    if data.len() as u64 != rnode.size {
        bail!("the server's blocks add up to {} bytes, not {}", data.len(), rnode.size);
    }
    let mut temp = disk.create_temp(path)?;
    if let Err(e) = disk.write_temp(&mut temp, &data) {
        disk.discard_temp(temp);
        return Err(e.into());
    }
    Ok(temp)
}

/// The plaintext of the blocks `ids`: verified copies from local files where
/// the index knows one, the rest from the server in one batch fetch (a local
/// copy that cannot be read or no longer matches is fetched instead).
async fn gather<D: Disk, A: Api>(
    api: &A,
    disk: &D,
    index: &BlockIndex,
    mut ids: Vec<BlockId>,
) -> anyhow::Result<HashMap<BlockId, Vec<u8>>> {
    ids.sort();
    ids.dedup();
    let sources: Vec<(BlockId, (RelPath, u64, u32))> =
        ids.iter().filter_map(|id| index.get(id).map(|src| (*id, src.clone()))).collect();
    let mut blocks: HashMap<BlockId, Vec<u8>> = if sources.is_empty() {
        HashMap::new()
    } else {
        disk.blocking(move |d| {
            sources
                .into_iter()
                .filter_map(|(id, (p, off, len))| {
                    d.read_range(&p, off, len).ok().filter(|data| BlockId::of(data) == id).map(|data| (id, data))
                })
                .collect()
        })
        .await
    };
    let need: Vec<BlockId> = ids.into_iter().filter(|id| !blocks.contains_key(id)).collect();
    if !need.is_empty() {
        blocks.extend(api.fetch(&need).await?);
    }
    Ok(blocks)
}

/// Writes the server's version of a file: a temp file in the same folder,
/// blocks from local files where possible (verified) and from the server
/// otherwise (verified), fsync, then an atomic rename, but only if the target
/// still shows `expect`. Returns the new file's identity, or `None` when the
/// target changed meanwhile (nothing is overwritten).
async fn download<D: Disk, A: Api>(
    api: &A,
    disk: &D,
    index: &BlockIndex,
    Fetch { path, remote: rnode, blocks, expect }: &Fetch,
) -> anyhow::Result<Option<LocalNode>> {
    let expect = *expect;
    let p = path.clone();
    let mut temp = Some(disk.blocking(move |d| d.create_temp(&p)).await?);
    // A block repeated back to back (the zeros of a disk image) is fetched once.
    let mut runs: Vec<(BlockId, usize)> = Vec::new();
    for b in blocks {
        match runs.last_mut() {
            Some((id, n)) if *id == b.id => *n += 1,
            _ => runs.push((b.id, 1)),
        }
    }
    let result = async {
        // Block by block, several in flight: each is written as soon as it
        // and those before it are in (a batch would wait for its slowest).
        let mut blocks = futures_util::stream::iter(runs.iter().map(|&(id, times)| {
            let local = index.get(&id).cloned();
            let disk = disk.clone();
            async move {
                if let Some((p, off, len)) = local {
                    let got = disk.blocking(move |d| d.read_range(&p, off, len)).await;
                    if let Ok(data) = got
                        && BlockId::of(&data) == id
                    {
                        return anyhow::Ok((data, times));
                    }
                }
                Ok((api.get_block(&id).await?, times))
            }
        }))
        .buffered(PARALLEL_BLOCKS);
        let mut size = 0u64;
        while let Some(got) = blocks.next().await {
            let (data, times) = got?;
            size += data.len() as u64 * times as u64;
            let mut t = temp.take().expect("temp file");
            let (t, r) = disk
                .blocking(move |d| {
                    let r = (0..times).try_for_each(|_| d.write_temp(&mut t, &data));
                    (t, r)
                })
                .await;
            temp = Some(t);
            r?;
        }
        if size != rnode.size {
            bail!("the server's blocks add up to {size} bytes, not {}", rnode.size);
        }
        let (mut t, target) = (temp.take().expect("temp file"), path.clone());
        let (mtime, exec) = (rnode.mtime, rnode.executable);
        Ok(disk
            .blocking(move |d| match d.finish_temp(&mut t, mtime, exec) {
                Ok(()) => d.commit_temp(t, &target, expect, true),
                Err(e) => {
                    d.discard_temp(t);
                    Err(e)
                }
            })
            .await?)
    }
    .await;
    if let Some(t) = temp {
        disk.discard_temp(t);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_reaches_the_world_only_through_its_seams() {
        let src = include_str!("engine.rs");
        let code = &src[..src.find("#[cfg(test)]").unwrap()];
        for banned in ["std::fs", "reqwest", "SystemTime", "Instant::now", "crate::remote", "tokio::"] {
            assert!(!code.contains(banned), "the engine must not use {banned}; go through crate::seams");
        }
    }

    #[test]
    fn conflict_names() {
        // 2024-03-05 06:07:08 UTC
        let ms = 1_709_618_828_000;
        assert_eq!(
            conflict_name("report.txt", "laptop", ms),
            "report (conflicted copy from laptop 2024-03-05 060708).txt"
        );
        assert_eq!(conflict_name("Makefile", "pc", ms), "Makefile (conflicted copy from pc 2024-03-05 060708)");
        assert_eq!(conflict_name(".bashrc", "pc", ms), ".bashrc (conflicted copy from pc 2024-03-05 060708)");
    }

    #[test]
    fn block_list_edits() {
        let ids: Vec<BlockId> = (0..5u8).map(|i| BlockId::of(&[i])).collect();
        let parent: Vec<BlockRef> = ids.iter().map(|id| BlockRef { id: *id, size: 1 }).collect();
        let x = BlockId::of(b"x");
        let new = vec![ids[0], ids[1], x, ids[3], ids[4]];
        assert_eq!(
            block_list_for(Some(&parent), &new),
            BlockList::Edit(vec![
                BlockEdit::Copy { start: 0, count: 2 },
                BlockEdit::Add(vec![x]),
                BlockEdit::Copy { start: 3, count: 2 }
            ])
        );
        assert_eq!(block_list_for(None, &new), BlockList::Full(new.clone()));
        let appended: Vec<BlockId> = ids.iter().copied().chain([x]).collect();
        assert_eq!(
            block_list_for(Some(&parent), &appended),
            BlockList::Edit(vec![BlockEdit::Copy { start: 0, count: 5 }, BlockEdit::Add(vec![x])])
        );
    }
}
