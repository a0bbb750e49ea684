//! Streaming sync: files other devices are still uploading are fetched as
//! their blocks land, into temp files, so that at the commit only the rest
//! is left to fetch.
//!
//! An uploader announces a large file's block list before sending it (see
//! `ferry_shared::api::PendingAnnounce`); the long poll wakes on that, and
//! [`prefetch_round`] gives each announcement from another device a slot: a
//! temp file at the top of the folder, filled block by block in order (from
//! local copies where the disk has them, verified, else from the server,
//! which holds a request until the block is stored). Nothing shows at a
//! path: when the commit arrives through the journal, the download of that
//! file [`Prefetches::claim`]s the slot whose blocks so far match its list,
//! fetches the rest, verifies, fsyncs and renames as any download does. A
//! slot whose announcement is gone (committed, dropped, expired) and was
//! not claimed is dropped after a quiet round; one whose list turns out
//! different is dropped when claimed. An uploader drops its own
//! announcements after a quiet round, those it knows of and those the
//! list says the server still holds for it (an earlier run's, sent just
//! before it was killed).
//!
//! Like the rest of the engine this reaches disk and server only through
//! the seams, so the simulation runs it (and crashes it mid-stream).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ferry_shared::api::{BlockRef, PendingList, PendingUpload};
use ferry_shared::{BlockId, RelPath};
use futures_util::StreamExt;

use super::PARALLEL_BLOCKS;
use super::local_blocks::{BlockIndex, block_index};
use crate::sync::names::NameRules;
use crate::sync::seams::{Api, Disk};
use crate::sync::state::State;

/// Files at least this large are announced before they are sent (the
/// default of `Engine::stream_min`).
pub const STREAM_MIN: u64 = 8 << 20;

/// The prefetches of one device, shared by the task that fills them and the
/// engine that takes them over.
pub struct Prefetches<D: Disk> {
    slots: Arc<Mutex<HashMap<i64, Arc<Slot<D>>>>>,
    /// Announcement ids in the last list seen (`None` before the first).
    listed: Arc<Mutex<Option<HashSet<i64>>>>,
    /// Whether that list held announcements of this device's.
    own_listed: Arc<AtomicBool>,
}

impl<D: Disk> Clone for Prefetches<D> {
    fn clone(&self) -> Self {
        Prefetches {
            slots: Arc::clone(&self.slots),
            listed: Arc::clone(&self.listed),
            own_listed: Arc::clone(&self.own_listed),
        }
    }
}

impl<D: Disk> Default for Prefetches<D> {
    fn default() -> Self {
        Prefetches { slots: Default::default(), listed: Default::default(), own_listed: Default::default() }
    }
}

struct Slot<D: Disk> {
    pending: PendingUpload,
    /// Where its blocks sit on disk already (looked up once).
    index: std::sync::OnceLock<BlockIndex>,
    fill: futures_util::lock::Mutex<Fill<D>>,
    /// Taken over or dropped: a running fill stops at its next block.
    closed: AtomicBool,
}

/// What a slot holds so far: its temp file and how many blocks are in it.
struct Fill<D: Disk> {
    temp: Option<D::Temp>,
    blocks: usize,
    bytes: u64,
    /// A write failed: the temp file is not to be trusted.
    failed: bool,
}

/// How a fill ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FillEnd {
    /// Every block is in.
    Done,
    /// A block is not on the server yet (or the server could not be
    /// reached): try again later.
    NotYet,
    /// The slot was taken over, dropped, or its temp file failed.
    Stopped,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<D: Disk> Prefetches<D> {
    /// Takes in the server's list of announcements: each from another
    /// device, of a file this disk can hold, gets a slot. Returns the ids of
    /// slots that are listed and not finished.
    pub fn update(&self, list: &PendingList, me: &str, rules: NameRules) -> Vec<i64> {
        let ids: HashSet<i64> = list.pending.iter().map(|p| p.id).collect();
        *lock(&self.listed) = Some(ids);
        self.own_listed.store(list.own > 0 || list.pending.iter().any(|p| p.device == me), Ordering::SeqCst);
        let mut slots = lock(&self.slots);
        for p in &list.pending {
            if p.device == me || rules.refuses_path(&p.path).is_some() {
                continue;
            }
            slots.entry(p.id).or_insert_with(|| {
                tracing::debug!(path = %p.path, size = p.size, "prefetching a file being uploaded elsewhere");
                Arc::new(Slot {
                    pending: p.clone(),
                    index: std::sync::OnceLock::new(),
                    fill: futures_util::lock::Mutex::new(Fill { temp: None, blocks: 0, bytes: 0, failed: false }),
                    closed: AtomicBool::new(false),
                })
            });
        }
        let mut ids: Vec<i64> = slots.keys().copied().filter(|id| list.pending.iter().any(|p| p.id == *id)).collect();
        ids.sort_unstable();
        ids
    }

    /// Gives each slot without one the index of its blocks on disk, which
    /// `index_of` looks up (once a slot: it reads the whole state database).
    pub fn index_new(&self, index_of: impl Fn(&HashSet<BlockId>) -> BlockIndex) {
        let new: Vec<Arc<Slot<D>>> = lock(&self.slots).values().filter(|s| s.index.get().is_none()).cloned().collect();
        if new.is_empty() {
            return;
        }
        let wanted: HashSet<BlockId> = new.iter().flat_map(|s| s.pending.blocks.iter().map(|b| b.id)).collect();
        let index = index_of(&wanted);
        for slot in new {
            let mine: BlockIndex =
                slot.pending.blocks.iter().filter_map(|b| index.get(&b.id).map(|at| (b.id, at.clone()))).collect();
            let _ = slot.index.set(mine);
        }
    }

    fn slot(&self, id: i64) -> Option<Arc<Slot<D>>> {
        lock(&self.slots).get(&id).cloned()
    }

    /// Fills slot `id` in order until its blocks are all in, one is not on
    /// the server yet (waiting up to `wait_secs` for each), or the slot
    /// closes. Local copies of blocks (see [`Prefetches::index_new`]) are
    /// used when they verify.
    pub async fn fill<A: Api>(&self, id: i64, disk: &D, api: &A, wait_secs: u64) -> FillEnd {
        let Some(slot) = self.slot(id) else { return FillEnd::Stopped };
        let empty = BlockIndex::new();
        let index = slot.index.get().unwrap_or(&empty);
        let start = {
            let f = slot.fill.lock().await;
            if f.failed || slot.closed.load(Ordering::SeqCst) {
                return FillEnd::Stopped;
            }
            f.blocks
        };
        // A block repeated back to back (the zeros of a disk image) is fetched once.
        let mut runs: Vec<(BlockId, usize)> = Vec::new();
        for b in &slot.pending.blocks[start..] {
            match runs.last_mut() {
                Some((id, n)) if *id == b.id => *n += 1,
                _ => runs.push((b.id, 1)),
            }
        }
        let mut blocks = futures_util::stream::iter(runs.into_iter().map(|(id, times)| {
            let (disk, local) = (disk.clone(), index.get(&id).cloned());
            async move {
                if let Some((p, off, len)) = local {
                    let got = disk.blocking(move |d| d.read_range(&p, off, len)).await;
                    if let Ok(data) = got
                        && BlockId::of(&data) == id
                    {
                        return Ok(Some((data, times)));
                    }
                }
                api.wait_block(&id, wait_secs).await.map(|got| got.map(|data| (data, times)))
            }
        }))
        .buffered(PARALLEL_BLOCKS);
        while let Some(got) = blocks.next().await {
            if slot.closed.load(Ordering::SeqCst) {
                return FillEnd::Stopped;
            }
            let (data, times) = match got {
                Ok(Some(got)) => got,
                Ok(None) => return FillEnd::NotYet,
                Err(e) => {
                    tracing::debug!(error = %e, "prefetch: the server could not be reached");
                    return FillEnd::NotYet;
                }
            };
            let mut f = slot.fill.lock().await;
            if slot.closed.load(Ordering::SeqCst) || f.failed {
                return FillEnd::Stopped;
            }
            let temp = match f.temp.take() {
                Some(t) => Ok(t),
                None if f.blocks == 0 => disk.blocking(|d| d.create_spare_temp()).await,
                // Blocks counted but no file to hold them: never trusted.
                None => {
                    f.failed = true;
                    return FillEnd::Stopped;
                }
            };
            let mut temp = match temp {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(error = %e, "prefetch: cannot create a temp file");
                    f.failed = true;
                    return FillEnd::Stopped;
                }
            };
            let len = data.len() as u64 * times as u64;
            let (temp, r) = disk
                .blocking(move |d| {
                    let r = (0..times).try_for_each(|_| d.write_temp(&mut temp, &data));
                    (temp, r)
                })
                .await;
            f.temp = Some(temp);
            if let Err(e) = r {
                tracing::debug!(error = %e, "prefetch: writing failed");
                f.failed = true;
                return FillEnd::Stopped;
            }
            f.blocks += times;
            f.bytes += len;
        }
        FillEnd::Done
    }

    /// Takes over a prefetch of `path` whose blocks so far are the first of
    /// `blocks`: its temp file, how many blocks are in it and their bytes.
    /// A prefetch of `path` that does not match is dropped.
    pub async fn claim(&self, disk: &D, path: &RelPath, blocks: &[BlockRef]) -> Option<(D::Temp, usize, u64)> {
        let candidates: Vec<(i64, Arc<Slot<D>>)> = {
            let mut slots = lock(&self.slots);
            let ids: Vec<i64> = slots.iter().filter(|(_, s)| s.pending.path == *path).map(|(id, _)| *id).collect();
            ids.into_iter().filter_map(|id| slots.remove(&id).map(|s| (id, s))).collect()
        };
        let mut claimed = None;
        for (_, slot) in candidates {
            slot.closed.store(true, Ordering::SeqCst);
            let mut f = slot.fill.lock().await;
            let temp = f.temp.take();
            let matches = !f.failed
                && f.blocks <= blocks.len()
                && slot.pending.blocks.get(..f.blocks) == Some(&blocks[..f.blocks]);
            match temp {
                Some(t) if matches && claimed.is_none() => {
                    tracing::debug!(%path, blocks = f.blocks, bytes = f.bytes, "taking over a prefetch");
                    claimed = Some((t, f.blocks, f.bytes));
                }
                Some(t) => disk.blocking(move |d| d.discard_temp(t)).await,
                None => {}
            }
        }
        claimed
    }

    /// Drops every prefetch (the folder went away and came back).
    pub async fn drop_all(&self, disk: &D) {
        let all: Vec<Arc<Slot<D>>> = lock(&self.slots).drain().map(|(_, s)| s).collect();
        for slot in all {
            slot.closed.store(true, Ordering::SeqCst);
            if let Some(t) = slot.fill.lock().await.temp.take() {
                disk.blocking(move |d| d.discard_temp(t)).await;
            }
        }
    }

    /// Whether the last list held announcements of this device's. After a
    /// round that left nothing to do they are stale: one sent by an earlier
    /// run of the daemon just before it was killed can reach the server
    /// after this run dropped them all, and would keep other devices'
    /// prefetches until it expired.
    pub fn own_listed(&self) -> bool {
        self.own_listed.load(Ordering::SeqCst)
    }

    /// This device's announcements are dropped (until the next list).
    pub fn own_dropped(&self) {
        self.own_listed.store(false, Ordering::SeqCst);
    }

    /// True when some prefetch's announcement is no longer listed (a round
    /// that leaves nothing to do will drop it).
    pub fn has_orphans(&self) -> bool {
        let listed = lock(&self.listed);
        let Some(listed) = listed.as_ref() else { return false };
        lock(&self.slots).keys().any(|id| !listed.contains(id))
    }

    /// Drops the prefetches whose announcements are no longer listed (call
    /// after a round that left nothing to do: a committed one would have
    /// been claimed). Returns how many went.
    pub async fn drop_orphans(&self, disk: &D) -> usize {
        let orphans: Vec<Arc<Slot<D>>> = {
            let listed = lock(&self.listed);
            let Some(listed) = listed.as_ref() else { return 0 };
            let mut slots = lock(&self.slots);
            let ids: Vec<i64> = slots.keys().copied().filter(|id| !listed.contains(id)).collect();
            ids.into_iter().filter_map(|id| slots.remove(&id)).collect()
        };
        let n = orphans.len();
        for slot in orphans {
            slot.closed.store(true, Ordering::SeqCst);
            if let Some(t) = slot.fill.lock().await.temp.take() {
                disk.blocking(move |d| d.discard_temp(t)).await;
            }
        }
        if n > 0 {
            tracing::debug!(n, "dropped prefetches of uploads that are gone");
        }
        n
    }
}

/// One look at the announcements: updates the slots and fills each listed
/// one as far as it goes. Returns `true` when some fill is waiting for
/// blocks (look again soon).
pub async fn prefetch_round<D: Disk, A: Api>(
    prefetches: &Prefetches<D>,
    disk: &D,
    api: &A,
    state: &Mutex<State>,
    me: &str,
    wait_secs: u64,
) -> super::error::Result<bool> {
    let list = api.pending().await?;
    let ids = prefetches.update(&list, me, disk.name_rules());
    if ids.is_empty() {
        return Ok(false);
    }
    prefetches.index_new(|wanted| block_index(&lock(state), wanted, |_| true));
    let mut waiting = false;
    for id in ids {
        waiting |= prefetches.fill(id, disk, api, wait_secs).await == FillEnd::NotYet;
    }
    Ok(waiting)
}
