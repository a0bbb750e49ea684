//! The domain layer: what every backend shares, written once above the
//! three seams (metadata [`MetaStore`], blocks [`BlockStore`], wake-ups
//! [`Notifier`]) and the vault that seals blocks.
//!
//! - Blocks in: decode, verify against the id, seal, put, record, wake
//!   ([`Stores::store_blocks`] for what clients send, [`Stores::store_stream`]
//!   for what the server chunks itself).
//! - Blocks out: locate, fetch, open ([`Stores::read_block`],
//!   [`Stores::read_plain`]).
//! - Writes that wake someone (commits, restores, shares, pending uploads)
//!   publish their new sequences here, once the write is durable; handlers
//!   never publish.
//!
//! Metadata calls are blocking (run them on the blocking pool, as the
//! handlers' `blocking` does); block calls are async.

use std::sync::Arc;

use bytes::Bytes;
use ferry_shared::BlockId;
use ferry_shared::api::{CommitOp, ErrorCode, PendingAnnounce, ShareRole};
use ferry_shared::block::{self, BlockEncoding};
use ferry_shared::chunk::{self, ChunkParams};
use ferry_shared::path::RelPath;

use crate::api::blocking;
use crate::blocks::{BlockLoc, BlockStore};
use crate::crypto::Vault;
use crate::error::{Error, Result};
use crate::meta::{Caller, CommitOutcome, MetaStore, NewBlock, PendingId, ShareId, Touched, UserId};
use crate::notify::Notifier;

pub struct Stores {
    pub meta: Arc<dyn MetaStore>,
    pub blocks: Arc<dyn BlockStore>,
    pub vault: Vault,
    pub notifier: Arc<dyn Notifier>,
}

/// Blocks a client sends: one (`PUT /blocks/{id}`), or a batch of frames.
pub enum Incoming {
    One(BlockId, BlockEncoding, Bytes),
    Frames(Bytes),
}

/// Blocks sealed and checked, ready to be put.
struct Sealed {
    blocks: Vec<NewBlock>,
    sealed: Vec<Vec<u8>>,
}

impl Stores {
    // ---- Blocks in ----

    /// Verifies, seals and stores the blocks of one upload for `user`, and
    /// records them. Blocks the account has are only verified. Every other
    /// block costs the same work, whether or not another account stored it
    /// (so the time an upload takes tells nothing of other accounts; the
    /// second copy is garbage for the collector). What they expand to is
    /// bounded per request, and what is new to the account must fit its
    /// quota before anything is written.
    pub async fn store_blocks(self: &Arc<Self>, user: UserId, incoming: Incoming) -> Result<()> {
        let st = Arc::clone(self);
        let Some(Sealed { mut blocks, sealed }) = blocking(move || st.seal_incoming(user, &incoming)).await? else {
            return Ok(());
        };
        if sealed.len() == 1 {
            let one = sealed.into_iter().next().expect("one");
            self.blocks.put(blocks[0].id, one).await.map_err(Error::Storage)?;
        } else {
            let locs = self.blocks.put_pack(sealed).await.map_err(Error::Storage)?;
            for (nb, loc) in blocks.iter_mut().zip(locs) {
                nb.loc = loc;
            }
        }
        let st = Arc::clone(self);
        blocking(move || st.meta.add_blocks(user, &blocks)).await?;
        self.notifier.blocks_stored(user);
        Ok(())
    }

    /// The blocking half of [`Stores::store_blocks`]: what to put, or
    /// nothing when the account has every block.
    fn seal_incoming(&self, user: UserId, incoming: &Incoming) -> Result<Option<Sealed>> {
        let frames = match incoming {
            Incoming::One(id, encoding, bytes) => vec![(*id, *encoding, &bytes[..])],
            Incoming::Frames(body) => {
                let frames = block::read_frames(body).map_err(|e| Error::bad_request(e.to_string()))?;
                if frames.is_empty() {
                    return Err(Error::bad_request("the batch holds no blocks"));
                }
                frames
            }
        };
        let ids: Vec<BlockId> = frames.iter().map(|f| f.0).collect();
        let lacking: std::collections::HashSet<BlockId> = self.meta.missing_blocks(user, &ids)?.into_iter().collect();
        let mut budget = block::MAX_BATCH_PLAIN_BYTES;
        let mut blocks: Vec<NewBlock> = Vec::new();
        let mut sealed = Vec::new();
        for (id, encoding, bytes) in frames {
            // Every block is checked against its id; those the account lacks are stored.
            let plain = block::decode_within(&id, encoding, bytes, &mut budget).map_err(|e| refused(&id, e))?;
            if !lacking.contains(&id) || blocks.iter().any(|b| b.id == id) {
                continue;
            }
            sealed.push(self.vault.seal(&id, encoding, bytes));
            blocks.push(NewBlock {
                id,
                size: plain.len() as u32,
                stored_size: bytes.len() as u32,
                loc: BlockLoc::Loose,
            });
        }
        if blocks.is_empty() {
            return Ok(None);
        }
        let wanted: u64 = blocks.iter().map(|b| u64::from(b.size)).sum();
        if wanted > self.meta.upload_room(user)? {
            return Err(Error::client(
                ErrorCode::QuotaExceeded,
                format!(
                    "quota exceeded: these blocks need {wanted} bytes more than your quota leaves (files and \
                     uploaded blocks not yet committed count); commit what you uploaded, delete files or ask the \
                     admin for more space"
                ),
            ));
        }
        Ok(Some(Sealed { blocks, sealed }))
    }

    /// Chunks, seals and stores everything `reader` yields for `user`
    /// (blocking: run it on the blocking pool). Returns the block list and
    /// the blocks to record with the commit that uses them; every block is
    /// durable on return. Blocks the user has already are not stored again;
    /// every other block is sealed and written, whether or not another
    /// account has it (the time an upload takes must not tell; a second
    /// copy is garbage for the collector).
    pub fn store_stream(
        &self,
        user: UserId,
        reader: impl std::io::Read + Send,
        expected_size: u64,
    ) -> Result<(Vec<BlockId>, Vec<NewBlock>)> {
        let runtime = tokio::runtime::Handle::current();
        let mut ids = Vec::new();
        let mut new_blocks = Vec::new();
        // New blocks are written in packs of up to 8 MiB: one write per pack.
        let mut pending: Vec<NewBlock> = Vec::new();
        let mut sealed: Vec<Vec<u8>> = Vec::new();
        let mut pending_bytes = 0usize;
        let flush = |pending: &mut Vec<NewBlock>, sealed: &mut Vec<Vec<u8>>, new_blocks: &mut Vec<NewBlock>| {
            if sealed.is_empty() {
                return Ok::<_, Error>(());
            }
            let locs = runtime.block_on(self.blocks.put_pack(std::mem::take(sealed))).map_err(Error::Storage)?;
            new_blocks.extend(pending.drain(..).zip(locs).map(|(nb, loc)| NewBlock { loc, ..nb }));
            Ok(())
        };
        let stats = chunk::encode_stream(
            reader,
            ChunkParams::for_size(expected_size),
            chunk::default_workers(),
            |sb| -> Result<()> {
                let b = sb.block;
                ids.push(b.id);
                let nb = NewBlock { id: b.id, size: b.len, stored_size: b.bytes.len() as u32, loc: BlockLoc::Loose };
                // (An owned block's record is kept as it is: its location here is not used.)
                match self.meta.owns_block(user, &b.id)? {
                    true => new_blocks.push(nb),
                    false if pending.iter().any(|p| p.id == b.id) => {}
                    false => {
                        pending_bytes += b.bytes.len();
                        sealed.push(self.vault.seal(&b.id, b.encoding, &b.bytes));
                        pending.push(nb);
                        if pending_bytes >= 8 << 20 {
                            pending_bytes = 0;
                            flush(&mut pending, &mut sealed, &mut new_blocks)?;
                        }
                    }
                }
                Ok(())
            },
        )?;
        flush(&mut pending, &mut sealed, &mut new_blocks)?;
        if stats.size != expected_size {
            return Err(Error::bad_request(format!(
                "received {} bytes but {expected_size} were announced",
                stats.size
            )));
        }
        Ok((ids, new_blocks))
    }

    // ---- Blocks out ----

    /// A stored block as its uploader sent it (encoding and bytes), opened.
    pub async fn read_block(self: &Arc<Self>, id: BlockId, loc: BlockLoc) -> Result<(BlockEncoding, Vec<u8>)> {
        Ok(self.read_blocks(vec![(id, loc)]).await?.pop().expect("one block asked, one read"))
    }

    /// Many stored blocks as their uploaders sent them, opened, in the
    /// order asked (the blocks of a pack read together).
    pub async fn read_blocks(
        self: &Arc<Self>,
        wanted: Vec<(BlockId, BlockLoc)>,
    ) -> Result<Vec<(BlockEncoding, Vec<u8>)>> {
        let ids: Vec<BlockId> = wanted.iter().map(|(id, _)| *id).collect();
        let sealed = self.blocks.get_many(wanted).await.map_err(Error::Storage)?;
        let st = Arc::clone(self);
        blocking(move || {
            ids.iter()
                .zip(sealed)
                .map(|(id, sealed)| {
                    let sealed = sealed.ok_or_else(|| anyhow::anyhow!("block {id} is recorded but not stored"))?;
                    Ok(st.vault.open(id, &sealed)?)
                })
                .collect()
        })
        .await
    }

    /// A block's plain bytes, wherever it is stored (for files and zips:
    /// who may read it was checked on the way to the file).
    pub async fn read_plain(self: &Arc<Self>, id: BlockId) -> Result<Vec<u8>> {
        let st = Arc::clone(self);
        let loc = blocking(move || st.meta.block_location(&id)).await?;
        let loc = loc.ok_or_else(|| anyhow::anyhow!("block {id} is not recorded"))?;
        let sealed = self
            .blocks
            .get(id, loc)
            .await
            .map_err(Error::Storage)?
            .ok_or_else(|| anyhow::anyhow!("block {id} is not stored"))?;
        let st = Arc::clone(self);
        blocking(move || {
            let (enc, bytes) = st.vault.open(&id, &sealed)?;
            Ok(block::decode(&id, enc, &bytes).map_err(|e| anyhow::anyhow!("stored block {id}: {e}"))?)
        })
        .await
    }

    // ---- Writes that wake (blocking) ----

    fn woke<T>(&self, r: Result<(T, Touched)>) -> Result<T> {
        let (value, touched) = r?;
        self.notifier.publish_all(&touched);
        Ok(value)
    }

    /// Commits `ops` (with blocks the server stored for them) and wakes
    /// every journal it appended to.
    pub fn commit(&self, caller: &Caller, ops: Vec<CommitOp>, new_blocks: Vec<NewBlock>) -> Result<CommitOutcome> {
        let outcome = self.meta.commit(caller, ops, new_blocks)?;
        self.notifier.publish_all(&outcome.touched);
        Ok(outcome)
    }

    /// Brings back what was deleted at `path` (see `MetaStore::restore_deleted`).
    pub fn restore_deleted(&self, caller: &Caller, path: &RelPath) -> Result<CommitOutcome> {
        let outcome = self.meta.restore_deleted(caller, path)?;
        self.notifier.publish_all(&outcome.touched);
        Ok(outcome)
    }

    pub fn share(
        &self,
        caller: &Caller,
        path: &RelPath,
        with: &str,
        role: ShareRole,
    ) -> Result<ferry_shared::api::Share> {
        self.woke(self.meta.share(caller, path, with, role))
    }

    pub fn set_role(
        &self,
        caller: &Caller,
        id: ShareId,
        user: &str,
        role: ShareRole,
    ) -> Result<ferry_shared::api::Share> {
        self.woke(self.meta.set_role(caller, id, user, role))
    }

    pub fn remove_member(&self, caller: &Caller, id: ShareId, user: Option<&str>) -> Result<()> {
        self.woke(self.meta.remove_member(caller, id, user).map(|t| ((), t)))
    }

    /// Records an announcement; returns its id.
    pub fn announce_pending(&self, caller: &Caller, a: PendingAnnounce, expires: i64) -> Result<PendingId> {
        let (id, seq) = self.meta.announce_pending(caller, a, expires)?;
        self.notifier.publish_pending(caller.ns, seq);
        Ok(id)
    }

    /// Drops the caller device's announcement `id`, or all of them.
    pub fn drop_pending(&self, caller: &Caller, id: Option<PendingId>) -> Result<()> {
        if let Some(seq) = self.meta.drop_pending(caller, id)? {
            self.notifier.publish_pending(caller.ns, seq);
        }
        Ok(())
    }

    /// Removes expired announcements.
    pub fn sweep_pending(&self, now: i64) -> Result<()> {
        for (ns, seq) in self.meta.sweep_pending(now)? {
            self.notifier.publish_pending(ns, seq);
        }
        Ok(())
    }
}

/// The refusal of a block that does not decode to its id, or is too large.
fn refused(id: &BlockId, e: block::DecodeError) -> Error {
    match e {
        block::DecodeError::TooLarge | block::DecodeError::OverBudget => {
            Error::client(ErrorCode::PayloadTooLarge, format!("block {id}: {e}"))
        }
        _ => Error::client(ErrorCode::BadBlock, format!("block {id}: {e}")),
    }
}
