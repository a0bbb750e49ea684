//! Sending files: each group is hashed, the server is asked which blocks
//! the account lacks, those are sent in batches, and the group is committed
//! with block lists sent as edits of the parent revisions' lists.

use std::collections::{HashMap, HashSet};

use ferry_shared::api::{BlockList, BlockRef, CommitOp, EntryKind, OpResult, PendingAnnounce, RevId};
use ferry_shared::{BlockId, RelPath};
use futures_util::{StreamExt, TryStreamExt};

use super::local_blocks::BlockIndex;
use super::{
    BATCH_BYTES, COMMIT_BATCH, Engine, PARALLEL_BATCHES, STABLE_MS, UPLOAD_GROUP_BYTES, remote_node, stored_elsewhere,
};
use crate::sync::seams::{Api, Clock, Disk, Hashed};
use crate::sync::state::Write;
use crate::sync::tree::SyncedNode;

/// The block list of a commit: an edit of the parent revision's list
/// (common prefix and suffix copied) when there is one.
fn block_list_for(parent: Option<&[BlockRef]>, new: &[BlockId]) -> BlockList {
    let parent: Option<Vec<BlockId>> = parent.map(|p| p.iter().map(|b| b.id).collect());
    BlockList::between(parent.as_deref(), new)
}

/// A file to send and the head revision it replaces, if any.
type Upload = (RelPath, Option<RevId>);

impl<D: Disk, A: Api, C: Clock> Engine<D, A, C> {
    /// Sends files in groups (up to [`COMMIT_BATCH`] files or
    /// [`UPLOAD_GROUP_BYTES`]): memory stays bounded however many files there
    /// are, and each group is committed, and visible to other devices, as
    /// soon as its blocks are up. Small files go first: they are quick to
    /// show on other devices, which fetch them while a big one is still sent.
    pub(super) async fn uploads(&mut self, mut items: Vec<(RelPath, Option<RevId>, u64)>) -> usize {
        let mut errors = 0;
        let small_file = self.small_file;
        items.sort_by_key(|(_, _, size)| *size > small_file);
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
        // Files with much to send are announced first: other devices fetch
        // their blocks as they land (streaming sync), and have little left
        // at the commit. (A small edit of a big file is sent at once: its
        // block list would cost more than the wait it saves.)
        for (path, parent_rev, h) in &ready {
            let mut seen = HashSet::new();
            let to_send: u64 = h
                .blocks
                .iter()
                .filter(|(id, _, _)| missing.contains(id) && seen.insert(*id))
                .map(|&(_, _, len)| u64::from(len))
                .sum();
            if to_send < self.stream_min {
                continue;
            }
            let blocks = h.blocks.iter().map(|&(id, _, size)| BlockRef { id, size }).collect();
            let a = PendingAnnounce { path: path.clone(), parent_rev: *parent_rev, size: h.local.size, blocks };
            self.announced.insert(path.clone());
            if let Err(e) = self.api.announce(&a).await {
                tracing::debug!(%path, error = %e, "announcing the upload; sending it anyway");
            }
        }
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
                        let list = h.blocks.iter().map(|&(id, _, size)| BlockRef { id, size }).collect();
                        w.push(Write::SyncedBlocks(path.clone(), list));
                        // The commit dropped the announcement on the server.
                        self.announced.remove(path);
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_shared::api::BlockEdit;

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
