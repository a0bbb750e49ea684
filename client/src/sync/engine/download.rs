//! Bringing files down: blocks already on disk (in synced files) are
//! reused after their hash is checked, the rest come from the server; small
//! files in groups (one batch fetch, fsyncs together), large ones block by
//! block; each lands in a temp file beside its target, is fsync'd and
//! renamed only if the target still shows what the plan saw.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ferry_shared::api::{BlockRef, EntryKind};
use ferry_shared::{BlockId, RelPath};
use futures_util::StreamExt;

use super::error::{Error, Result};
use super::local_blocks::{BlockIndex, block_index};
use super::prefetch::Prefetches;
use super::{BATCH_BYTES, DOWNLOAD_CHUNK, Engine, PARALLEL_BATCHES, PARALLEL_BLOCKS, PARALLEL_FILES};
use crate::sync::seams::{Api, Clock, Disk};
use crate::sync::state::{Landing, Write};
use crate::sync::tree::{ContentHash, LocalNode, RemoteNode, SyncedNode};

/// A file to bring down: the server's version, its block list, and what the
/// disk must still show for it to be replaced.
struct Fetch {
    path: RelPath,
    remote: RemoteNode,
    blocks: Vec<BlockRef>,
    expect: Option<LocalNode>,
}

impl<D: Disk, A: Api, C: Clock> Engine<D, A, C> {
    /// Where the `wanted` blocks sit in files on disk (delta download): the
    /// block lists of the synced revisions, which is what the disk holds
    /// unless a file changed since (every block read is verified, and one
    /// that no longer matches is fetched instead). A file being replaced by
    /// its own new version lends its unchanged blocks to it.
    fn local_blocks(&self, wanted: &HashSet<BlockId>) -> BlockIndex {
        block_index(&self.state, wanted, |path| self.stree.get(path).is_some_and(|s| s.kind == EntryKind::File))
    }

    /// Brings files down in chunks of [`DOWNLOAD_CHUNK`], small files first:
    /// memory stays bounded however many there are, and files land as they
    /// arrive rather than all at the end.
    pub(super) async fn downloads(&mut self, mut items: Vec<(RelPath, RemoteNode, Option<LocalNode>)>) -> usize {
        let small_file = self.small_file;
        items.sort_by_key(|(_, r, _)| r.size > small_file);
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
        // Recorded before any rename: a daemon killed between a rename and
        // the record below finds the file to be this revision, not an edit.
        let landing = fetches
            .iter()
            .map(|f| {
                let l = Landing { id: f.remote.id, rev: f.remote.rev, hash: f.remote.hash };
                Write::Landing(f.path.clone(), Some(l))
            })
            .collect();
        if let Err(e) = self.write(landing) {
            self.record_error(e);
        }
        let wanted: HashSet<BlockId> = fetches.iter().flat_map(|f| f.blocks.iter().map(|b| b.id)).collect();
        let index = Arc::new(self.local_blocks(&wanted));
        drop(wanted);
        tracing::debug!(files = fetches.len(), "downloading");
        let (small, large): (Vec<_>, Vec<_>) = fetches.into_iter().partition(|f| f.remote.size <= self.small_file);
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
        let mut results: Vec<(RelPath, RemoteNode, Result<Option<LocalNode>>)> =
            small_results.into_iter().flatten().collect();
        let large_results: Vec<(RelPath, RemoteNode, Result<Option<LocalNode>>)> =
            futures_util::stream::iter(large.into_iter().map(|f| {
                let (api, disk, index) = (self.api.clone(), self.disk.clone(), Arc::clone(&index));
                let prefetches = self.prefetches.clone();
                async move {
                    let r = download(&api, &disk, &index, &prefetches, &f).await;
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
            w.push(Write::Landing(path.clone(), None));
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

/// Downloads a group of small files: blocks from local files where possible
/// (each read and verified), the rest in one batch fetch; then each file is
/// written like [`download`] does (temp file, fsync, checked rename), with
/// each folder fsync'd once.
async fn download_group<D: Disk, A: Api>(
    api: &A,
    disk: &D,
    index: &BlockIndex,
    group: Vec<Fetch>,
) -> Vec<(RelPath, RemoteNode, Result<Option<LocalNode>>)> {
    let ids: Vec<BlockId> = group.iter().flat_map(|f| f.blocks.iter().map(|b| b.id)).collect();
    let blocks = match gather(api, disk, index, ids).await {
        Ok(b) => b,
        Err(e) => {
            let msg = format!("{e}");
            return group
                .into_iter()
                .map(|f| (f.path, f.remote, Err(Error::Refused(format!("fetching blocks: {msg}")))))
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
                Ok(()) => disk.commit_temp(temp, &f.path, f.expect, false).map_err(Error::from),
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
) -> Result<D::Temp> {
    let mut data = Vec::with_capacity(rnode.size as usize);
    for b in blocks {
        data.extend_from_slice(
            have.get(&b.id).ok_or_else(|| Error::Refused("the server did not send a block".into()))?,
        );
    }
    if data.len() as u64 != rnode.size {
        return Err(Error::Refused(format!("the server's blocks add up to {} bytes, not {}", data.len(), rnode.size)));
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
) -> Result<HashMap<BlockId, Vec<u8>>> {
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

/// Writes the server's version of a file: a temp file in the same folder
/// (or the temp file of a prefetch that already holds its first blocks),
/// blocks from local files where possible (verified) and from the server
/// otherwise (verified), fsync, then an atomic rename, but only if the target
/// still shows `expect`. Returns the new file's identity, or `None` when the
/// target changed meanwhile (nothing is overwritten).
async fn download<D: Disk, A: Api>(
    api: &A,
    disk: &D,
    index: &BlockIndex,
    prefetches: &Prefetches<D>,
    Fetch { path, remote: rnode, blocks, expect }: &Fetch,
) -> Result<Option<LocalNode>> {
    let expect = *expect;
    let (mut temp, done, mut size) = match prefetches.claim(disk, path, blocks).await {
        Some((t, done, bytes)) => (Some(t), done, bytes),
        None => {
            let p = path.clone();
            (Some(disk.blocking(move |d| d.create_temp(&p)).await?), 0, 0)
        }
    };
    // A block repeated back to back (the zeros of a disk image) is fetched once.
    let mut runs: Vec<(BlockId, usize)> = Vec::new();
    for b in &blocks[done..] {
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
                        return Ok::<_, Error>((data, times));
                    }
                }
                Ok((api.get_block(&id).await?, times))
            }
        }))
        .buffered(PARALLEL_BLOCKS);
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
            return Err(Error::Refused(format!("the server's blocks add up to {size} bytes, not {}", rnode.size)));
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
