//! The engine: keeps the three trees, pulls the server's journal into the
//! remote tree, scans the disk, asks the planner, and executes the plan.
//!
//! - `mod.rs` (here): the trees, the journal (block lists as edits of the
//!   previous revision's; a full list asked for when an edit's base is not
//!   held), the round loop (scan, plan, execute until nothing is left to
//!   do; the remote tree planned without what this disk cannot hold) and
//!   the mass-deletion guard; after 10,000 changed entries the trees are
//!   rebuilt from the state database in one piece (compact nodes);
//! - [`execute`]: the executor's dispatch and the operations on names
//!   (moves, folders, deletions, conflict copies, twins moved aside; what a
//!   plan put where a failed move would have taken it waits a round);
//! - [`upload`]: sending files in groups of up to 1,000 files or 64 MiB,
//!   small files first (hash, ask what is missing, announce large ones,
//!   send in 4 MiB batches four at once, one commit with block lists as
//!   edits of the parent), so memory is bounded and other devices start on
//!   the first group while later ones are sent;
//! - [`download`]: bringing files down in chunks of 4,096 files (blocks
//!   from files on disk first, see `local_blocks`, then the server; small
//!   files in groups with one batch fetch, large ones block by block with
//!   runs of zeros left as holes; temp file or a prefetch's taken over,
//!   fsync, checked rename);
//! - [`prefetch`]: files other devices are still uploading, fetched into
//!   temp files that downloads take over; [`shares`]: the mounts of shared
//!   folders; `error`: the engine's [`Error`].
//!
//! Invariants:
//! - the remote tree is exactly what the journal says up to the cursor:
//!   the engine's own commits come back through the journal, and a commit
//!   answer only updates the synced tree. A server whose journal ends
//!   before the cursor (restored from an older backup) answers
//!   `cursor_reset`: both trees are forgotten and listed from 0, so the
//!   merge has no base and nothing can read as deleted;
//! - the executor re-checks each operation's precondition right before
//!   acting (a download replaces a file only if the disk still shows what
//!   the plan saw), so a plan made a moment ago never overwrites a newer
//!   local edit;
//! - a file is sent only when it read the same before and after hashing
//!   and has not changed for 50 ms (no half-written revisions);
//! - errors are "try again later", never "deleted"; the folder's marker
//!   must be there; deletions on the server wait until their set stops
//!   growing ([`DELETES_SETTLE_MS`]), and a plan deleting more than
//!   `max_deletes` items remotely waits for `ferry resume --confirm-deletes`.
//!
//! The engine reaches the disk, the server and the clock only through the
//! traits in [`crate::sync::seams`] (a test checks these files for direct
//! I/O), and reports what it does through [`crate::sync::progress`], so the
//! same engine runs on a real folder and HTTP, or inside a simulation.
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use ferry_shared::api::{BlockRef, Change, ChangeOp, EntryKind, OpResult};
use ferry_shared::{BlockId, RelPath};

use crate::sync::names::NameRules;
use crate::sync::planner::{self, Op, Plan};
use crate::sync::progress::{Pending, Progress, Report};
use crate::sync::scan::ScanError;
use crate::sync::seams::{Api, Clock, Disk};
use crate::sync::state::{State, Write};
use crate::sync::tree::{ContentHash, RemoteNode, RemoteTree, SyncedNode, SyncedTree, subtree};

mod download;
mod error;
mod execute;
mod local_blocks;
pub mod prefetch;
pub mod shares;
mod upload;

use error::OnDisk;
pub use error::{Error, FolderUnavailable, MassDelete, Result};
pub use prefetch::{FillEnd, Prefetches, prefetch_round};

/// Blocks of one large file fetched at once.
const PARALLEL_BLOCKS: usize = 8;
/// Raw bytes of blocks per batch request (upload and download).
const BATCH_BYTES: usize = 4 << 20;
/// Batch requests in flight.
const PARALLEL_BATCHES: usize = 4;
/// Files up to this size are downloaded in groups with one batch fetch each
/// (the default of `Engine::small_file`).
pub const SMALL_FILE: u64 = 1 << 20;
/// Large files downloaded at once (memory: this × PARALLEL_BLOCKS blocks).
const PARALLEL_FILES: usize = 2;
/// A file modified less than this long ago is not sent yet.
const STABLE_MS: i64 = 50;
/// Deletions on the server wait until the set of them has not grown for
/// this long: a `rm -rf` caught halfway by a scan (a busy machine, a
/// watcher thread that ran late) is then judged whole by the
/// mass-deletion guard, never a first part deleted before the rest pauses.
const DELETES_SETTLE_MS: i64 = 1000;
/// Operations per commit request.
const COMMIT_BATCH: usize = 1000;
/// Tree entries changed before the trees are rebuilt compactly.
const COMPACT_AFTER: usize = 10_000;
/// Files downloaded as one chunk.
const DOWNLOAD_CHUNK: usize = 4096;
/// Entries of each list in the status (what is not synced, and why).
const STATUS_LIST: usize = 100;
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
    /// The deletions on the server the last plan held back, and when that
    /// set last grew ([`DELETES_SETTLE_MS`]).
    deletes_seen: HashSet<RelPath>,
    deletes_grew_ms: i64,
    /// Where the engine reports what it does (the daemon's status).
    pub progress: Arc<dyn Progress>,
    /// Tree entries changed since the trees were last rebuilt in one piece.
    churn: usize,
    /// Files deferred in this execution (still being written).
    deferred: usize,
    /// Files other devices are still uploading, being fetched (streaming sync).
    pub prefetches: Prefetches<D>,
    /// Paths this device announced (or tried to: the server may have acted
    /// on a request whose answer was lost) and has not committed since.
    announced: HashSet<RelPath>,
    /// Files at least this large are announced before they are sent, so
    /// other devices fetch them while they upload ([`prefetch::STREAM_MIN`]).
    pub stream_min: u64,
    /// Files up to this size are sent first and downloaded in groups, with
    /// one batch fetch each; larger ones block by block ([`SMALL_FILE`]).
    pub small_file: u64,
    /// Shared folders in this tree, as the journal last described them.
    pub mounts: shares::Mounts,
    /// Shared folders this device left (their removal is no news here).
    left: HashSet<RelPath>,
    /// Folders not wanted on this device (`ferry exclude`): planned as if
    /// the server did not have them, so their local copy goes once it
    /// agrees with the server (a change in it is sent first) and nothing
    /// is ever deleted remotely for it.
    pub excluded: Vec<RelPath>,
}

/// What one sync round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RoundStats {
    pub ops: usize,
    pub errors: usize,
    /// Files left for a moment because they were still being written, and
    /// deletions still settling.
    pub deferred: usize,
    /// When to look again for what was deferred (milliseconds; 0: nothing
    /// deferred, or a look right away).
    pub recheck_ms: i64,
}

/// `NAME (conflicted copy from DEVICE YYYY-MM-DD HHMMSS).EXT`, in UTC.
pub fn conflict_name(name: &str, device: &str, now_ms: i64) -> String {
    numbered_conflict_name(name, device, now_ms, 1)
}

/// The `n`th conflict copy of `name` made at one instant: from 2 on,
/// numbered before the extension (`report (conflicted copy from pc
/// 2024-03-05 060708) 2.txt`), so the copy opens as the original does.
pub fn numbered_conflict_name(name: &str, device: &str, now_ms: i64, n: u32) -> String {
    let (y, m, d, h, mi, sec) = ferry_shared::time::utc(now_ms);
    let stamp = format!("{y:04}-{m:02}-{d:02} {h:02}{mi:02}{sec:02}");
    let device: String =
        device.chars().filter(|c| !matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|')).collect();
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    let number = if n > 1 { format!(" {n}") } else { String::new() };
    format!("{stem} (conflicted copy from {device} {stamp}){number}{ext}")
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

impl<D: Disk, A: Api, C: Clock> Engine<D, A, C> {
    pub fn open(
        (disk, api, clock): (D, A, C),
        device: String,
        state_db: &Path,
        (max_deletes, max_delete_share): (usize, f64),
        progress: Arc<dyn Progress>,
    ) -> Result<Self> {
        let state = State::open(state_db)?;
        let rtree = state.load_remote()?;
        let stree = state.load_synced()?;
        let cursor = state.cursor()?;
        let mounts = shares::decode(&state.get("mounts")?.unwrap_or_default());
        progress.report(Report::Shares(shares::describe(&mounts)));
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
            deletes_seen: HashSet::new(),
            deletes_grew_ms: 0,
            progress,
            churn: 0,
            deferred: 0,
            prefetches: Prefetches::default(),
            announced: HashSet::new(),
            stream_min: prefetch::STREAM_MIN,
            small_file: SMALL_FILE,
            mounts,
            left: HashSet::new(),
            excluded: Vec::new(),
        })
    }

    /// Runs blocking disk work off the async threads.
    async fn on_disk<T: Send + 'static>(&self, f: impl FnOnce(&D) -> T + Send + 'static) -> T {
        self.disk.blocking(f).await
    }

    /// Checks that the folder is the synced one (its marker is there), and
    /// creates the marker on first use. A folder that is missing (an
    /// unmounted disk, a renamed folder), unreadable or another Ferry folder
    /// is a [`FolderUnavailable`] error, never "everything was deleted"; the
    /// daemon waits for it to come back.
    pub fn check_root(&mut self) -> Result<()> {
        let expected = self.state.get("folder_id")?;
        let unavailable = |message: String| -> Result<()> { Err(FolderUnavailable::Missing(message).into()) };
        match (self.disk.read_marker(), expected) {
            (Ok(Some(found)), Some(exp)) if found == exp => Ok(()),
            (Ok(Some(found)), Some(_)) => unavailable(format!(
                "{} belongs to another Ferry folder ({found}); waiting for the right one, nothing is deleted",
                self.disk.describe()
            )),
            (Err(e), Some(_)) => unavailable(format!(
                "cannot read {} ({e}); waiting until it can be read, nothing is deleted",
                self.disk.describe()
            )),
            (Ok(None), Some(_)) => unavailable(format!(
                "{} is missing or has lost its {} marker (an unmounted disk? a renamed folder?); \
                 waiting for it to come back, nothing is deleted",
                self.disk.describe(),
                crate::sync::scan::MARKER
            )),
            (found, None) => {
                let id = match found {
                    Ok(Some(existing)) => existing,
                    _ => {
                        let id = hex::encode(rand::random::<[u8; 16]>());
                        self.disk
                            .init_marker(&id)
                            .on_disk(|| format!("creating the sync folder {}", self.disk.describe()))?;
                        id
                    }
                };
                self.state.set("folder_id", &id)?;
                Ok(())
            }
        }
    }

    fn write(&mut self, writes: Vec<Write>) -> Result<()> {
        self.churn += writes.len();
        Ok(self.state.apply(&writes)?)
    }

    /// After many changes, rebuilds both trees from the state database in one
    /// piece: trees grown entry by entry have half-empty nodes and their keys
    /// are scattered among freed memory; rebuilt, they take about half as much.
    fn compact_if_churned(&mut self) -> Result<()> {
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
    fn rename_remote(&mut self, writes: &mut Vec<Write>, from: &RelPath, to: &RelPath) -> Result<()> {
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
    fn rename_synced(&mut self, writes: &mut Vec<Write>, from: &RelPath, to: &RelPath) -> Result<()> {
        if from == to {
            return Ok(());
        }
        for k in subtree(&self.stree, from) {
            let new = k.rebase(from, to)?;
            if let Some(node) = self.stree.remove(&k) {
                self.stree.insert(new.clone(), node);
            }
            writes.push(Write::RenameSynced(k, new));
        }
        Ok(())
    }

    /// Pulls the journal since our cursor into the remote tree. File
    /// modifications come with their block lists as edits of the previous
    /// revision's list; one that cannot be applied here (its base is not the
    /// list this device holds) stops the page there, and the rest is asked
    /// for again with full lists.
    pub async fn refresh_remote(&mut self) -> Result<bool> {
        let mut changed = false;
        let mut edits = true;
        loop {
            let (page, refused) = match self.api.changes(self.cursor, 1000, edits).await {
                Err(e) if e.is_cursor_reset() && self.cursor > 0 => {
                    self.forget_trees()?;
                    changed = true;
                    continue;
                }
                r => r?,
            };
            edits = true;
            for r in refused {
                self.record_error(r);
            }
            let mut writes = Vec::new();
            // Block lists set by this page, not yet in the database, and where
            // items this page moved are in the database.
            let mut lists: HashMap<RelPath, Vec<BlockRef>> = HashMap::new();
            let mut renamed: HashMap<RelPath, RelPath> = HashMap::new();
            let mut stopped_after = None;
            let mut last_seq = self.cursor;
            let mounts_before = self.mounts.clone();
            // A device listing from the start learns of old shares: no news.
            let news = self.cursor > 0;
            for ch in &page.changes {
                let path = &ch.entry.path;
                if path.is_root() {
                    last_seq = ch.seq;
                    continue;
                }
                match ch.op {
                    ChangeOp::Add | ChangeOp::Modify | ChangeOp::Mkdir => {
                        if ch.entry.kind == EntryKind::File {
                            let Some(blocks) = self.block_list_of(ch, &lists, &renamed) else {
                                stopped_after = Some(last_seq);
                                break;
                            };
                            lists.insert(path.clone(), blocks.clone());
                            self.set_remote(&mut writes, path, Some(remote_node(&ch.entry)));
                            writes.push(Write::Blocks(path.clone(), blocks));
                        } else {
                            self.set_remote(&mut writes, path, Some(remote_node(&ch.entry)));
                            self.track_mount(path, ch.entry.share.clone(), news);
                        }
                    }
                    ChangeOp::Delete | ChangeOp::Rmdir => {
                        self.track_removal(path, news);
                        for k in subtree(&self.rtree, path) {
                            lists.remove(&k);
                            renamed.remove(&k);
                            self.set_remote(&mut writes, &k, None);
                        }
                    }
                    ChangeOp::Move => {
                        let Some(from) = &ch.from else {
                            last_seq = ch.seq;
                            continue;
                        };
                        for k in subtree(&self.rtree, from) {
                            let new = k.rebase(from, path)?;
                            if let Some(l) = lists.remove(&k) {
                                lists.insert(new.clone(), l);
                            }
                            let stored = renamed.remove(&k).unwrap_or_else(|| k.clone());
                            renamed.insert(new, stored);
                        }
                        self.rename_remote(&mut writes, from, path)?;
                        self.set_remote(&mut writes, path, Some(remote_node(&ch.entry)));
                        self.track_move(from, path);
                    }
                }
                last_seq = ch.seq;
                changed = true;
            }
            let cursor = match stopped_after {
                Some(seq) => {
                    tracing::debug!(cursor = seq, "a block-list edit did not apply; asking for full lists");
                    edits = false;
                    seq
                }
                None => page.cursor,
            };
            self.cursor = cursor;
            writes.push(Write::Cursor(cursor));
            if self.mounts != mounts_before {
                writes.push(Write::Mounts(shares::encode(&self.mounts)));
                self.progress.report(Report::Shares(shares::describe(&self.mounts)));
            }
            self.write(writes)?;
            if !page.has_more && stopped_after.is_none() {
                break;
            }
        }
        self.progress.report(Report::Cursor(self.cursor));
        Ok(changed)
    }

    /// A folder entry from the journal: a shared folder's mount carries its
    /// share (a new one is news), one without it is a plain folder.
    fn track_mount(&mut self, path: &RelPath, share: Option<ferry_shared::api::Mount>, news: bool) {
        match share {
            Some(m) => {
                let new = !self.mounts.contains_key(path);
                if new && news && m.role != ferry_shared::api::ShareRole::Owner {
                    self.share_news(format!("{} shared {path} with you ({})", m.owner, m.role.as_str()));
                } else if let Some(old) = self.mounts.get(path).filter(|o| o.role != m.role && news) {
                    self.share_news(format!(
                        "your role in {path} is now {} (was {})",
                        m.role.as_str(),
                        old.role.as_str()
                    ));
                }
                self.mounts.insert(path.clone(), m);
            }
            None => {
                self.mounts.remove(path);
            }
        }
    }

    /// Mounts at or under a removed folder go; a shared folder's own
    /// removal (revoked, or left elsewhere) is news.
    fn track_removal(&mut self, path: &RelPath, news: bool) {
        let gone: Vec<RelPath> = self.mounts.keys().filter(|m| m.starts_with(path)).cloned().collect();
        for m in gone {
            if let Some(mount) = self.mounts.remove(&m)
                && news
                && mount.role != ferry_shared::api::ShareRole::Owner
                && !self.left.remove(&m)
            {
                self.share_news(format!("your access to {m} (shared by {}) was removed", mount.owner));
            }
        }
    }

    fn track_move(&mut self, from: &RelPath, to: &RelPath) {
        let moved: Vec<RelPath> = self.mounts.keys().filter(|m| m.starts_with(from)).cloned().collect();
        for m in moved {
            if let (Some(mount), Ok(new)) = (self.mounts.remove(&m), m.rebase(from, to)) {
                self.mounts.insert(new, mount);
            }
        }
    }

    fn share_news(&self, news: String) {
        tracing::info!(%news, "shared folders");
        self.progress.report(Report::ShareNews(news));
    }

    /// The server's journal ends before our cursor (it was restored from an
    /// older backup, or is another server at the same address): list it
    /// again from the start and merge. With no synced base, a file only on
    /// one side is copied to the other and one that differs keeps both
    /// versions (a conflict copy); nothing reads as deleted.
    fn forget_trees(&mut self) -> Result<()> {
        tracing::warn!(cursor = self.cursor, "the server's journal is behind this device: listing again and merging");
        self.record_error(
            "the server's history is older than this device's (restored from a backup?): \
             merging this folder with it again; nothing is deleted, differing files keep both versions",
        );
        self.write(vec![Write::ForgetTrees, Write::Cursor(0)])?;
        self.mounts.clear();
        self.rtree = RemoteTree::new();
        self.stree = SyncedTree::new();
        self.cursor = 0;
        Ok(())
    }

    /// The block list a journal record gives its file: in full, or as an
    /// edit of the list of the revision this device holds at that path
    /// (`lists` first: records earlier in the same page; an item the page
    /// moved is in the database where `renamed` says). `None` when the
    /// edit's base is not what this device holds or the result does not
    /// match the content hash.
    fn block_list_of(
        &self,
        ch: &Change,
        lists: &HashMap<RelPath, Vec<BlockRef>>,
        renamed: &HashMap<RelPath, RelPath>,
    ) -> Option<Vec<BlockRef>> {
        let Some(edit) = &ch.blocks_edit else { return Some(ch.blocks.clone().unwrap_or_default()) };
        let path = &ch.entry.path;
        let held = self.rtree.get(path)?;
        if held.kind != EntryKind::File || held.rev != edit.base_rev {
            return None;
        }
        let base = match lists.get(path) {
            Some(l) => l.clone(),
            None => self.state.remote_blocks(renamed.get(path).unwrap_or(path)).ok()?,
        };
        let list = edit.apply(&base)?;
        let ids: Vec<BlockId> = list.iter().map(|b| b.id).collect();
        let digest = ContentHash(ferry_shared::block::content_digest(ch.entry.size, &ids));
        (Some(digest) == ContentHash::parse(&ch.entry.hash)).then_some(list)
    }

    /// Removes partial downloads a crash left behind (call before any round).
    pub async fn remove_stale_temp_files(&self) -> Result<usize> {
        Ok(self.on_disk(|d| d.remove_temp_files()).await?)
    }

    /// Drops the announcements an earlier run of this device left (their
    /// uploads died with it). Part of start-up, like removing temp files.
    pub async fn drop_stale_announcements(&mut self) -> Result<()> {
        self.api.drop_pending(None).await?;
        self.announced.clear();
        Ok(())
    }

    /// Scans, plans and executes until nothing is left to do (or a limit).
    pub async fn sync_round(&mut self) -> Result<RoundStats> {
        let mut stats = RoundStats::default();
        let mut quiet = false;
        for _ in 0..8 {
            self.check_root()?;
            let (local, report) = self.on_disk(|d| d.scan()).await.map_err(|e| match e {
                ScanError::NoMarker(_) => {
                    FolderUnavailable::Missing(format!("{e}; waiting for it to come back, nothing is deleted"))
                }
                ScanError::Io { .. } => {
                    FolderUnavailable::Unreadable(format!("{e}; retrying, nothing is read as deleted meanwhile"))
                }
            })?;
            for s in &report.skipped {
                tracing::debug!(skipped = %s, "not synced");
            }
            self.progress.report(Report::NotSynced(report.skipped.into_iter().take(STATUS_LIST).collect()));
            tracing::debug!(entries = local.len(), "scanned");
            if !report.twins.is_empty() {
                let (moved, failed) = self.move_twins_aside(report.twins).await;
                stats.ops += moved + failed;
                stats.errors += failed;
                if moved > 0 {
                    continue; // scan again with the twins under their new names
                }
            }
            let (mut remote, holding) = self.storable_remote();
            if !self.excluded.is_empty() {
                remote = Cow::Owned(self.without_excluded(remote.into_owned(), &local));
            }
            let mut plan = planner::plan(&remote, &local, &self.stree);
            drop(remote);
            if !holding.is_empty() {
                keep_folders_holding_what_is_kept_off(&mut plan, &holding);
            }
            self.left.extend(shares::fit_plan(&mut plan, &self.mounts, &self.stree));
            tracing::debug!(ops = plan.ops.len(), "planned");
            if plan.is_empty() {
                quiet = true;
                break;
            }
            let share = plan.remote_deletes as f64 / self.stree.len().max(1) as f64;
            let mass =
                plan.remote_deletes > self.max_deletes || (plan.remote_deletes > 50 && share > self.max_delete_share);
            if mass && !self.deletes_confirmed {
                return Err(MassDelete { count: plan.remote_deletes }.into());
            }
            self.update_pending(&plan);
            let held = if std::mem::take(&mut self.deletes_confirmed) {
                self.deletes_seen.clear();
                0
            } else {
                let (held, wait_ms) = self.hold_unsettled_deletes(&mut plan);
                stats.recheck_ms = stats.recheck_ms.max(wait_ms);
                held
            };
            let mut r = self.execute(plan).await?;
            r.deferred += held;
            stats.ops += r.ops;
            stats.errors += r.errors;
            stats.deferred += r.deferred;
            if r.errors + r.deferred >= r.ops {
                break; // nothing succeeded: wait for the next event or retry
            }
            // Our own commits moved the journal: take them in before re-planning.
            self.refresh_remote().await?;
        }
        if quiet {
            // Everything the journal said is on disk: a prefetch not taken
            // over by now belongs to an upload that is gone.
            stats.ops += self.prefetches.drop_orphans(&self.disk).await;
            // Announcements of uploads that did not end in a commit, and
            // any other of this device's the server still lists (see
            // `Prefetches::own_listed`).
            if !self.announced.is_empty() || self.prefetches.own_listed() {
                match self.api.drop_pending(None).await {
                    Ok(()) => {
                        self.announced.clear();
                        self.prefetches.own_dropped();
                    }
                    Err(e) => tracing::debug!(error = %e, "dropping announcements; later"),
                }
            }
        }
        self.compact_if_churned()?;
        self.progress.report(Report::RoundEnd {
            at_ms: self.clock.now_ms(),
            files: self.stree.len(),
            traffic: self.api.traffic(),
        });
        Ok(stats)
    }

    /// The remote tree without what this disk cannot hold (see
    /// [`crate::sync::names`]): those entries, and everything under them, are kept
    /// off this disk and listed in the status; the planner never sees them,
    /// so their absence here is never taken for a deletion. Also returns the
    /// folders that hold such entries.
    /// The remote tree as planned with folders excluded from this device:
    /// without what the disk holds as it was synced (so its copy here goes)
    /// or does not hold (so it never comes), but with files changed here
    /// since (and their folders), so a change is sent before its copy goes.
    fn without_excluded(&self, mut tree: RemoteTree, local: &crate::sync::tree::LocalTree) -> RemoteTree {
        for x in &self.excluded {
            let mut keep: HashSet<RelPath> = HashSet::new();
            for k in subtree(&tree, x) {
                let changed = match (local.get(&k), self.stree.get(&k)) {
                    (Some(l), Some(s)) => l.kind == EntryKind::File && *l != s.local,
                    _ => false,
                };
                if changed {
                    let mut up = Some(k.clone());
                    while let Some(p) = up.filter(|p| p.starts_with(x)) {
                        up = p.parent();
                        keep.insert(p);
                    }
                }
            }
            for k in subtree(&tree, x) {
                if !keep.contains(&k) {
                    tree.remove(&k);
                }
            }
        }
        tree
    }

    fn storable_remote(&self) -> (Cow<'_, RemoteTree>, HashSet<RelPath>) {
        let rules = self.disk.name_rules();
        let mut off = Vec::new();
        let mut listed = Vec::new();
        if rules != NameRules::Posix {
            for p in self.rtree.keys() {
                if let Some(why) = rules.refuses_path(p) {
                    if let Some(own) = p.name().and_then(|n| rules.refuses(n))
                        && listed.len() < STATUS_LIST
                    {
                        listed.push(format!("{p}: {own}"));
                    }
                    tracing::debug!(path = %p, why, "kept off this disk");
                    off.push(p.clone());
                }
            }
        }
        self.progress.report(Report::KeptOffDisk(listed));
        if off.is_empty() {
            return (Cow::Borrowed(&self.rtree), HashSet::new());
        }
        let mut tree = self.rtree.clone();
        let mut holding = HashSet::new();
        for p in off {
            tree.remove(&p);
            let mut up = p.parent();
            while let Some(folder) = up.filter(|f| !f.is_root()) {
                up = folder.parent();
                if !holding.insert(folder) {
                    break;
                }
            }
        }
        (Cow::Owned(tree), holding)
    }

    fn update_pending(&self, plan: &Plan) {
        let mut p = Pending::default();
        for op in &plan.ops {
            match op {
                Op::Upload { size, .. } => {
                    p.uploads += 1;
                    p.upload_bytes += size;
                }
                Op::Download { remote, .. } | Op::Conflict { remote, .. } => {
                    p.downloads += 1;
                    p.download_bytes += remote.size;
                }
                _ => {}
            }
        }
        self.progress.report(Report::Planned(p));
    }

    /// Counts finished work off the pending totals (`ferry wait` shows them).
    fn progress(&self, uploads: &[u64], downloads: &[u64]) {
        let done = Pending {
            uploads: uploads.len(),
            upload_bytes: uploads.iter().sum(),
            downloads: downloads.len(),
            download_bytes: downloads.iter().sum(),
        };
        self.progress.report(Report::Done { done, traffic: self.api.traffic() });
    }

    fn record_error(&self, e: impl std::fmt::Display) {
        self.progress.report(Report::Error(e.to_string()));
    }

    /// Takes the plan's deletions on the server out of it unless the set of
    /// them has stopped growing for [`DELETES_SETTLE_MS`]; returns how many
    /// it held and how long until they may go. A clock that went back
    /// restarts the wait.
    fn hold_unsettled_deletes(&mut self, plan: &mut Plan) -> (usize, i64) {
        let now = self.clock.now_ms();
        let deletes: HashSet<RelPath> = plan
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::DeleteRemote { path, .. } => Some(path.clone()),
                _ => None,
            })
            .collect();
        if !deletes.is_subset(&self.deletes_seen) || now < self.deletes_grew_ms {
            self.deletes_grew_ms = now;
        }
        self.deletes_seen = deletes;
        let wait_ms = self.deletes_grew_ms + DELETES_SETTLE_MS - now;
        if self.deletes_seen.is_empty() || wait_ms <= 0 {
            return (0, 0);
        }
        plan.ops.retain(|op| !matches!(op, Op::DeleteRemote { .. }));
        let held = std::mem::take(&mut plan.remote_deletes);
        tracing::debug!(held, "deletions on the server wait until no more come");
        (held, wait_ms)
    }
}

/// A folder deleted here that holds entries this disk cannot show is not
/// deleted on the server (what is in it here is): those entries were never
/// seen here, so nobody here chose to delete them. Its record is dropped
/// instead, and the next round brings the folder back.
fn keep_folders_holding_what_is_kept_off(plan: &mut Plan, holding: &HashSet<RelPath>) {
    for op in &mut plan.ops {
        if let Op::DeleteRemote { path, kind: EntryKind::Dir, .. } = op
            && holding.contains(path)
        {
            tracing::info!(%path, "keeping the folder on the server: it holds what this disk cannot");
            *op = Op::Forget { path: path.clone() };
            plan.remote_deletes -= 1;
        }
    }
}

/// The server keeps one spelling per name (case and normalization folded):
/// it wrote `path` under the spelling it already had. Nothing is recorded;
/// the next round sees the server's spelling and settles the twins.
fn stored_elsewhere(path: &RelPath, entry: &ferry_shared::api::Entry) -> String {
    format!("the server stored {path} as {}, a name it already had; syncing it again", entry.path)
}

fn op_entry(r: Option<OpResult>) -> Result<ferry_shared::api::Entry> {
    match r {
        Some(OpResult { entry: Some(e), .. }) => Ok(e),
        Some(OpResult { error: Some(e), status, .. }) => {
            Err(Error::Refused(format!("the server refused ({status}): {}", e.message)))
        }
        _ => Err(Error::Refused("the server gave no result".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_reaches_the_world_only_through_its_seams() {
        let files = [
            ("mod.rs", include_str!("mod.rs")),
            ("execute.rs", include_str!("execute.rs")),
            ("upload.rs", include_str!("upload.rs")),
            ("download.rs", include_str!("download.rs")),
            ("prefetch.rs", include_str!("prefetch.rs")),
        ];
        for (name, src) in files {
            let code = src.find("#[cfg(test)]").map_or(src, |i| &src[..i]);
            for banned in ["std::fs", "reqwest", "SystemTime", "Instant::now", "crate::net::remote", "tokio::"] {
                assert!(!code.contains(banned), "engine/{name} must not use {banned}; go through crate::sync::seams");
            }
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
        let second = numbered_conflict_name("report.txt", "pc", ms, 2);
        assert_eq!(second, "report (conflicted copy from pc 2024-03-05 060708) 2.txt");
        assert_eq!(crate::cli::resolve::original_name(&second).as_deref(), Some("report.txt"));
    }
}
