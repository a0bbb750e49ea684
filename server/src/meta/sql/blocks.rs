//! Block records: where each block is stored, and which accounts own it
//! (proof of possession: an account owns what it uploaded).

use std::collections::{HashMap, HashSet};

use super::db::{Arg, Db, Lock, OptionalExtension, SqlResult, padded_chunks, params, rows_sql};
use ferry_shared::BlockId;

use super::{Backend, SqlStore, Turn};
use crate::blocks::BlockLoc;
use crate::error::{Error, Result};
use crate::meta::{BlockRecords, NewBlock, UserId, now_ms};
use ferry_shared::api::ErrorCode;

/// Records `blocks` as stored and owned by `user`; those new to the
/// account are uploaded, not yet committed (see [`settle`]). Returns
/// their bytes, which it has added to the user's uploaded bytes.
pub(super) fn insert_blocks(conn: &Db<'_>, user_id: i64, blocks: &[NewBlock], now: i64) -> Result<u64> {
    // In one order in every transaction: two inserting the same new blocks
    // wait for each other instead of deadlocking.
    let mut blocks: Vec<&NewBlock> = blocks.iter().collect();
    blocks.sort_unstable_by_key(|nb| nb.id);
    blocks.dedup_by_key(|nb| nb.id);
    let mut added = 0u64;
    for chunk in padded_chunks(&blocks) {
        let places: Vec<(Option<i64>, Option<i64>, Option<u32>)> = chunk
            .iter()
            .map(|nb| match nb.loc {
                BlockLoc::Loose => (None, None, None),
                BlockLoc::Packed { pack, offset, len } => (Some(pack as i64), Some(offset as i64), Some(len)),
            })
            .collect();
        let mut args: Vec<&dyn Arg> = vec![&now];
        for (nb, (pack, offset, len)) in chunk.iter().zip(&places) {
            args.extend([&nb.id as &dyn Arg, &nb.size, &nb.stored_size, pack, offset, len]);
        }
        let rows = rows_sql(chunk.len(), |i| {
            let p = |k: usize| 2 + i * 6 + k;
            format!("(?{}, ?{}, ?{}, ?{}, ?{}, ?{}, ?1)", p(0), p(1), p(2), p(3), p(4), p(5))
        });
        conn.exec(
            &format!(
                "INSERT INTO blocks(id, size, stored_size, pack, pack_offset, pack_len, created) VALUES {rows}
                 ON CONFLICT DO NOTHING"
            ),
            &args[..],
        )?;
        let mut args: Vec<&dyn Arg> = vec![&user_id, &now];
        args.extend(chunk.iter().map(|nb| &nb.id as &dyn Arg));
        let rows = rows_sql(chunk.len(), |i| format!("(?1, ?{}, 1, ?2)", i + 3));
        // Those new to the account (a padded row inserts nothing).
        let mut new: HashSet<BlockId> = conn
            .prepare_cached(&format!(
                "INSERT INTO account_blocks(user_id, block, pending, created) VALUES {rows}
                 ON CONFLICT DO NOTHING RETURNING block"
            ))?
            .query_map(&args[..], |r| r.get(0))?
            .collect::<SqlResult<_>>()?;
        added += chunk.iter().filter(|nb| new.remove(&nb.id)).map(|nb| u64::from(nb.size)).sum::<u64>();
    }
    if added > 0 {
        conn.exec("UPDATE users SET staged = staged + ?1 WHERE id = ?2", params![added as i64, user_id])?;
    }
    Ok(added)
}

/// Blocks `ids`, which `user` owns, are used by a commit: those only
/// uploaded so far count against the quota as parts of files from now on
/// (and never expire). Returns their bytes.
pub(super) fn settle(conn: &Db<'_>, user: i64, ids: &[BlockId]) -> Result<u64> {
    // (`pending <> 0`, not `= 1`: found through the key, never through the
    // index of all pending blocks.)
    let sizes: Vec<i64> = conn.query_list(
        "UPDATE account_blocks SET pending = 0 WHERE user_id = ?1 AND block IN {list} AND pending <> 0
         RETURNING (SELECT size FROM blocks WHERE id = account_blocks.block)",
        &[&user],
        ids,
        |r| r.get(0),
    )?;
    Ok(sizes.into_iter().map(|s| s.max(0) as u64).sum())
}

/// [`settle`] of blocks the caller knows are only uploaded so far (and
/// their bytes), not awaiting it, each found through the key.
pub(super) fn settle_later(conn: &Db<'_>, user: i64, ids: &[BlockId]) -> Result<()> {
    Ok(conn.exec_later_each(
        "UPDATE account_blocks SET pending = 0 WHERE user_id = ?1 AND block = ?2",
        "UPDATE account_blocks SET pending = 0 WHERE user_id = ?1 AND block = ANY(?2::bytea[])",
        user,
        ids,
    )?)
}

/// Takes `bytes` settled by commits off a user's uploaded bytes.
pub(super) fn unstage(conn: &Db<'_>, user: i64, bytes: u64) -> Result<()> {
    if bytes > 0 {
        conn.exec_later(
            "UPDATE users SET staged = CASE WHEN staged < ?1 THEN 0 ELSE staged - ?1 END WHERE id = ?2",
            params![bytes as i64, user],
        )?;
    }
    Ok(())
}

/// `(quota, used by files, uploaded blocks not yet committed)` of a user.
fn usage(conn: &Db<'_>, user: i64) -> Result<(u64, u64, u64)> {
    let (quota, used, staged): (i64, i64, i64) =
        conn.row("SELECT quota, used, staged FROM users WHERE id = ?1", [user], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    Ok((quota.max(0) as u64, used.max(0) as u64, staged.max(0) as u64))
}

/// What a user may still upload: quota less files less uploaded blocks.
fn room((quota, used, staged): (u64, u64, u64)) -> u64 {
    quota.saturating_sub(used).saturating_sub(staged)
}

/// What a commit's reader finds of the block ids it names, before its
/// writer runs.
pub(super) struct Named {
    /// Those `user` can use nowhere: not theirs, and in no shared folder
    /// they are in.
    pub unknown: HashSet<BlockId>,
    /// Those of `user`'s own that a commit has used already, with their
    /// sizes. They stay `user`'s (only blocks still pending are swept), so
    /// the writer takes them as found here.
    pub settled: HashMap<BlockId, u32>,
}

pub(super) fn named(conn: &Db<'_>, user: i64, ids: &HashSet<BlockId>) -> Result<Named> {
    let ids: Vec<BlockId> = ids.iter().copied().collect();
    let rows: Vec<(BlockId, i64, bool)> = conn.query_list(
        "SELECT a.block, b.size, a.pending FROM account_blocks a JOIN blocks b ON b.id = a.block
         WHERE a.user_id = ?1 AND a.block IN {list}
         UNION ALL SELECT sb.block, -1, 1 FROM share_blocks sb JOIN members m ON m.ns = sb.ns
               WHERE m.user_id = ?1 AND sb.block IN {list}",
        &[&user],
        &ids,
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let mut settled = HashMap::new();
    let mut usable = HashSet::new();
    for (id, size, pending) in rows {
        usable.insert(id);
        if !pending && let Ok(size) = u32::try_from(size) {
            settled.insert(id, size);
        }
    }
    Ok(Named { unknown: ids.into_iter().filter(|id| !usable.contains(id)).collect(), settled })
}

/// The 507 of an upload past the quota, saying where the space went.
fn over_quota((quota, used, staged): (u64, u64, u64), wanted: u64) -> Error {
    Error::client(
        ErrorCode::QuotaExceeded,
        format!(
            "quota exceeded: {used} of {quota} bytes used by files and {staged} by uploaded blocks not yet committed, \
             these blocks need {wanted} more; commit what you uploaded, delete files or ask the admin for more space"
        ),
    )
}

pub(super) fn loc_row(r: &super::db::Row) -> super::db::SqlResult<BlockLoc> {
    let pack: Option<i64> = r.get(0)?;
    Ok(match pack {
        None => BlockLoc::Loose,
        Some(p) => BlockLoc::Packed { pack: p as u64, offset: r.get::<_, i64>(1)? as u64, len: r.get(2)? },
    })
}

impl<B: Backend> BlockRecords for SqlStore<B> {
    fn missing_blocks(&self, user_id: UserId, ids: &[BlockId]) -> Result<Vec<BlockId>> {
        let user_id = user_id.0;
        let mut seen = HashSet::new();
        let ids: Vec<BlockId> = ids.iter().copied().filter(|id| seen.insert(*id)).collect();
        // (Each id's answer stands alone: no snapshot need be shared.)
        let owned: HashSet<BlockId> = self.read_each(|c| {
            Ok(c.query_list(
                "SELECT block FROM account_blocks WHERE user_id = ?1 AND block IN {list}",
                &[&user_id],
                &ids,
                |r| r.get(0),
            )?
            .into_iter()
            .collect())
        })?;
        Ok(ids.into_iter().filter(|id| !owned.contains(id)).collect())
    }

    fn block_location(&self, id: &BlockId) -> Result<Option<BlockLoc>> {
        self.read_each(|c| {
            let mut s = c.prepare_cached("SELECT pack, pack_offset, pack_len FROM blocks WHERE id = ?1")?;
            Ok(s.query_row([id.as_bytes()], loc_row).optional()?)
        })
    }

    fn owned_block_locations(&self, user_id: UserId, ids: &[BlockId]) -> Result<Vec<Option<(BlockLoc, u32)>>> {
        let user_id = user_id.0;
        // Owned, or in a share the user is a member of (each half found
        // from the ids, through the keys).
        let found: HashMap<BlockId, (BlockLoc, u32)> = self.read_each(|c| {
            Ok(c.query_list(
                "SELECT b.pack, b.pack_offset, b.pack_len, b.stored_size, b.id
                 FROM account_blocks a JOIN blocks b ON b.id = a.block WHERE a.user_id = ?1 AND a.block IN {list}
                 UNION
                 SELECT b.pack, b.pack_offset, b.pack_len, b.stored_size, b.id
                 FROM share_blocks sb JOIN members m ON m.ns = sb.ns JOIN blocks b ON b.id = sb.block
                 WHERE m.user_id = ?1 AND sb.block IN {list}",
                &[&user_id],
                ids,
                |r| Ok((r.get(4)?, (loc_row(r)?, r.get(3)?))),
            )?
            .into_iter()
            .collect())
        })?;
        Ok(ids.iter().map(|id| found.get(id).copied()).collect())
    }

    fn add_blocks(&self, user_id: UserId, blocks: &[NewBlock]) -> Result<()> {
        let user_id = user_id.0;
        let blocks = blocks.to_vec();
        self.write_in(Turn::With(vec![Lock::Account(user_id)]), move |c| {
            let before = usage(c, user_id)?;
            let added = insert_blocks(c, user_id, &blocks, now_ms())?;
            if added > room(before) {
                // Rolled back with this job: nothing recorded.
                return Err(over_quota(before, added));
            }
            Ok(())
        })
    }

    fn upload_room(&self, user_id: UserId) -> Result<u64> {
        let user_id = user_id.0;
        self.read(|c| Ok(room(usage(c, user_id)?)))
    }

    fn expire_uploaded_blocks(&self, before: i64) -> Result<u64> {
        self.write(move |c| {
            let per_user: Vec<(i64, i64)> = c
                .prepare_cached(
                    "SELECT a.user_id, CAST(SUM(b.size) AS BIGINT) FROM account_blocks a JOIN blocks b ON b.id = a.block
                     WHERE a.pending = 1 AND a.created < ?1 GROUP BY a.user_id",
                )?
                .query_map([before], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<super::db::SqlResult<_>>()?;
            for (user, bytes) in per_user {
                unstage(c, user, bytes as u64)?;
            }
            Ok(c.exec("DELETE FROM account_blocks WHERE pending = 1 AND created < ?1", [before])? as u64)
        })
    }
}
