//! Block records: where each block is stored, and which accounts own it
//! (proof of possession: an account owns what it uploaded).

use std::collections::HashSet;

use super::db::{Db, Lock, OptionalExtension, params};
use ferry_shared::BlockId;

use super::{Backend, SqlStore, Turn};
use crate::blocks::BlockLoc;
use crate::error::{Error, Result};
use crate::meta::{BlockRecords, NewBlock, now_ms};
use ferry_shared::api::ErrorCode;

/// Records `blocks` as stored and owned by `user`; those new to the
/// account are uploaded, not yet committed (see [`settle`]). Returns
/// their bytes, which it has added to the user's uploaded bytes.
pub(super) fn insert_blocks(conn: &Db<'_>, user_id: i64, blocks: &[NewBlock], now: i64) -> Result<u64> {
    let mut b = conn.prepare_cached(
        "INSERT INTO blocks(id, size, stored_size, created, pack, pack_offset, pack_len)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
    )?;
    let mut a = conn.prepare_cached(
        "INSERT INTO account_blocks(user_id, block, pending, created) VALUES (?1, ?2, 1, ?3) ON CONFLICT DO NOTHING",
    )?;
    let mut added = 0u64;
    // In one order in every transaction: two inserting the same new blocks
    // wait for each other instead of deadlocking.
    let mut blocks: Vec<&NewBlock> = blocks.iter().collect();
    blocks.sort_unstable_by_key(|nb| nb.id);
    for nb in blocks {
        let (pack, offset, len) = match nb.loc {
            BlockLoc::Loose => (None, None, None),
            BlockLoc::Packed { pack, offset, len } => (Some(pack as i64), Some(offset as i64), Some(len)),
        };
        b.execute(params![nb.id.as_bytes(), nb.size, nb.stored_size, now, pack, offset, len])?;
        if a.execute(params![user_id, nb.id.as_bytes(), now])? == 1 {
            added += u64::from(nb.size);
        }
    }
    if added > 0 {
        conn.exec("UPDATE users SET staged = staged + ?1 WHERE id = ?2", params![added as i64, user_id])?;
    }
    Ok(added)
}

/// Block `id`, which `user` owns, is used by a commit: if it was only
/// uploaded, it counts against the quota as part of a file from now on
/// (and never expires). Returns its bytes if it was.
pub(super) fn settle(conn: &Db<'_>, user: i64, id: &BlockId) -> Result<u64> {
    let size: Option<i64> = conn
        .row(
            "UPDATE account_blocks SET pending = 0 WHERE user_id = ?1 AND block = ?2 AND pending = 1
             RETURNING (SELECT size FROM blocks WHERE id = ?2)",
            params![user, id.as_bytes()],
            |r| r.get(0),
        )
        .optional()?;
    Ok(size.unwrap_or(0) as u64)
}

/// Takes `bytes` settled by commits off a user's uploaded bytes.
pub(super) fn unstage(conn: &Db<'_>, user: i64, bytes: u64) -> Result<()> {
    if bytes > 0 {
        conn.exec(
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

/// The ids among `ids` that `user` can use nowhere: not theirs, and in no
/// shared folder they are in (one indexed look per id).
pub(super) fn unusable(conn: &Db<'_>, user: i64, ids: HashSet<BlockId>) -> Result<HashSet<BlockId>> {
    let mut s = conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM account_blocks WHERE user_id = ?1 AND block = ?2)
             OR EXISTS (SELECT 1 FROM share_blocks sb JOIN members m ON m.ns = sb.ns
                        WHERE sb.block = ?2 AND m.user_id = ?1)",
    )?;
    let mut out = HashSet::new();
    for id in ids {
        if !s.query_row(params![user, id.as_bytes()], |r| r.get::<_, bool>(0))? {
            out.insert(id);
        }
    }
    Ok(out)
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
    fn missing_blocks(&self, user_id: i64, ids: &[BlockId]) -> Result<Vec<BlockId>> {
        self.read(|c| {
            let mut s = c.prepare_cached("SELECT 1 FROM account_blocks WHERE user_id = ?1 AND block = ?2")?;
            let mut seen = HashSet::new();
            let mut missing = Vec::new();
            for id in ids {
                if seen.insert(*id) && s.query_row(params![user_id, id.as_bytes()], |_| Ok(())).optional()?.is_none() {
                    missing.push(*id);
                }
            }
            Ok(missing)
        })
    }

    fn block_location(&self, id: &BlockId) -> Result<Option<BlockLoc>> {
        self.read(|c| {
            let mut s = c.prepare_cached("SELECT pack, pack_offset, pack_len FROM blocks WHERE id = ?1")?;
            Ok(s.query_row([id.as_bytes()], loc_row).optional()?)
        })
    }

    fn owned_block_location(&self, user_id: i64, id: &BlockId) -> Result<Option<BlockLoc>> {
        self.read(|c| {
            let mut s = c.prepare_cached(
                "SELECT b.pack, b.pack_offset, b.pack_len FROM blocks b WHERE b.id = ?2 AND (
                     EXISTS (SELECT 1 FROM account_blocks a WHERE a.user_id = ?1 AND a.block = ?2)
                     OR EXISTS (SELECT 1 FROM share_blocks sb JOIN members m ON m.ns = sb.ns
                                WHERE sb.block = ?2 AND m.user_id = ?1))",
            )?;
            // Owned, or in a share the user is a member of.
            Ok(s.query_row(params![user_id, id.as_bytes()], loc_row).optional()?)
        })
    }

    fn add_blocks(&self, user_id: i64, blocks: &[NewBlock]) -> Result<()> {
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

    fn upload_room(&self, user_id: i64) -> Result<u64> {
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
