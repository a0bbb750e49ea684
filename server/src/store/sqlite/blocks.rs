//! Block records: where each block is stored, and which accounts own it
//! (proof of possession: an account owns what it uploaded).

use std::collections::HashSet;

use ferry_shared::BlockId;
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use crate::blockstore::BlockLoc;
use crate::error::Result;
use crate::store::{BlockRecords, NewBlock, now_ms};

pub(super) fn insert_blocks(conn: &Connection, user_id: i64, blocks: &[NewBlock], now: i64) -> Result<()> {
    let mut b = conn.prepare_cached(
        "INSERT OR IGNORE INTO blocks(id, size, stored_size, created, pack, pack_offset, pack_len)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mut a = conn.prepare_cached("INSERT OR IGNORE INTO account_blocks(user_id, block) VALUES (?1, ?2)")?;
    for nb in blocks {
        let (pack, offset, len) = match nb.loc {
            BlockLoc::Loose => (None, None, None),
            BlockLoc::Packed { pack, offset, len } => (Some(pack as i64), Some(offset as i64), Some(len)),
        };
        b.execute(params![nb.id.as_bytes(), nb.size, nb.stored_size, now, pack, offset, len])?;
        a.execute(params![user_id, nb.id.as_bytes()])?;
    }
    Ok(())
}

/// The ids among `ids` that `user` can use nowhere: not theirs, and in no
/// shared folder they are in (one indexed look per id).
pub(super) fn unusable(conn: &Connection, user: i64, ids: HashSet<BlockId>) -> Result<HashSet<BlockId>> {
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

pub(super) fn loc_row(r: &rusqlite::Row) -> rusqlite::Result<BlockLoc> {
    let pack: Option<i64> = r.get(0)?;
    Ok(match pack {
        None => BlockLoc::Loose,
        Some(p) => BlockLoc::Packed { pack: p as u64, offset: r.get::<_, i64>(1)? as u64, len: r.get(2)? },
    })
}

impl BlockRecords for SqliteStore {
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
        self.write(move |c| insert_blocks(c, user_id, &blocks, now_ms()))
    }
}
