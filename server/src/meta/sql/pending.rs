//! Pending uploads: files a device announces while their blocks are still
//! being sent, so that other devices fetch the blocks as they land. A
//! pending upload is never a head and never in the journal; announcing
//! again for the same path replaces it, any commit at its path drops it,
//! and it expires. Every change bumps the namespace's `pending_seq`, which
//! long polls watch beside the journal's sequence.

use super::db::{Db, Lock, OptionalExtension, params};
use ferry_shared::BlockId;
use ferry_shared::api::{BlockRef, ErrorCode, PendingAnnounce, PendingList, PendingUpload};
use ferry_shared::path::RelPath;

use super::{Backend, SqlStore, Turn};
use crate::error::{Error, Result};
use crate::meta::{Caller, DeviceId, NsId, PendingId, PendingSeq, PendingUploads, now_ms};

/// Most announcements one device may hold at once.
const MAX_PER_DEVICE: i64 = 64;

/// Records (or replaces) the caller device's announcement for `a.path`.
pub(super) fn announce(
    conn: &Db<'_>,
    caller: &Caller,
    a: &PendingAnnounce,
    hash: &str,
    now: i64,
    expires: i64,
) -> Result<i64> {
    let blocks = ferry_shared::block::encode_list(a.blocks.iter().map(|b| (b.id, b.size)));
    conn.exec(
        "DELETE FROM pending_uploads WHERE ns = ?1 AND device_id = ?2 AND path = ?3",
        params![caller.ns, caller.device_id, a.path.as_str()],
    )?;
    let held: i64 = conn.row(
        "SELECT COUNT(*) FROM pending_uploads WHERE ns = ?1 AND device_id = ?2",
        params![caller.ns, caller.device_id],
        |r| r.get(0),
    )?;
    if held >= MAX_PER_DEVICE {
        return Err(Error::client(
            ErrorCode::TooManyRequests,
            format!("this device has {held} uploads announced already; finish or drop some first"),
        ));
    }
    Ok(conn.insert(
        "INSERT INTO pending_uploads(ns, user_id, device_id, path, parent_rev, size, hash, blocks, created, expires)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            caller.ns,
            caller.user_id,
            caller.device_id,
            a.path.as_str(),
            a.parent_rev,
            a.size as i64,
            hash,
            blocks,
            now,
            expires
        ],
    )?)
}

/// Drops the caller device's announcement `id`, or all of them; returns how
/// many went (0 when `id` is not one of the caller device's).
pub(super) fn drop_own(conn: &Db<'_>, caller: &Caller, id: Option<i64>) -> Result<usize> {
    Ok(match id {
        Some(id) => conn.exec(
            "DELETE FROM pending_uploads WHERE id = ?1 AND ns = ?2 AND device_id = ?3",
            params![id, caller.ns, caller.device_id],
        )?,
        None => conn.exec(
            "DELETE FROM pending_uploads WHERE ns = ?1 AND device_id = ?2",
            params![caller.ns, caller.device_id],
        )?,
    })
}

/// Drops every announcement at `path` (a commit changed what is there).
pub(super) fn drop_at(conn: &Db<'_>, ns: i64, path: &RelPath) -> Result<usize> {
    Ok(conn.exec("DELETE FROM pending_uploads WHERE ns = ?1 AND path = ?2", params![ns, path.as_str()])?)
}

/// Drops every announcement at or under `path` (a folder moved or went).
pub(super) fn drop_under(conn: &Db<'_>, ns: i64, path: &RelPath) -> Result<usize> {
    // `a/…` sorts between `a/` and `a0` (`0` follows `/`).
    let (lo, hi) = (format!("{path}/"), format!("{path}0"));
    Ok(drop_at(conn, ns, path)?
        + conn.exec("DELETE FROM pending_uploads WHERE ns = ?1 AND path >= ?2 AND path < ?3", params![ns, lo, hi])?)
}

/// True when the namespace has any announcement (commits skip the per-path
/// clean-up otherwise).
pub(super) fn any(conn: &Db<'_>, ns: i64) -> Result<bool> {
    Ok(conn.row("SELECT 1 FROM pending_uploads WHERE ns = ?1 LIMIT 1", [ns], |_| Ok(())).optional()?.is_some())
}

/// Moves the namespace's pending sequence on; returns the new value
/// (`None` when the namespace is gone).
pub(super) fn bump(conn: &Db<'_>, ns: i64) -> Result<Option<PendingSeq>> {
    Ok(conn
        .row("UPDATE namespaces SET pending_seq = pending_seq + 1 WHERE id = ?1 RETURNING pending_seq", [ns], |r| {
            r.get(0)
        })
        .optional()?)
}

/// The announcements of a namespace that have not expired, oldest first,
/// but those of device `except`.
pub(super) fn list(conn: &Db<'_>, ns: i64, except: i64, now: i64) -> Result<Vec<PendingUpload>> {
    let mut s = conn.prepare_cached(
        "SELECT p.id, p.path, p.parent_rev, p.size, p.hash, p.blocks, COALESCE(d.name, ''), p.expires
         FROM pending_uploads p LEFT JOIN devices d ON d.id = p.device_id
         WHERE p.ns = ?1 AND p.expires > ?2 AND p.device_id != ?3 ORDER BY p.id",
    )?;
    let rows = s.query_map(params![ns, now, except], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<i64>>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, Vec<u8>>(5)?,
            r.get::<_, String>(6)?,
            r.get::<_, i64>(7)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, path, parent_rev, size, hash, blocks, device, expires) = row?;
        let Ok(path) = RelPath::parse_non_root(&path) else { continue };
        let blocks =
            ferry_shared::block::decode_list(&blocks).into_iter().map(|(id, size)| BlockRef { id, size }).collect();
        out.push(PendingUpload { id, path, parent_rev, size: size as u64, hash, blocks, device, expires });
    }
    Ok(out)
}

/// Removes expired announcements; returns the namespaces that had some.
pub(super) fn sweep(conn: &Db<'_>, now: i64) -> Result<Vec<i64>> {
    let mut s = conn.prepare("DELETE FROM pending_uploads WHERE expires <= ?1 RETURNING ns")?;
    let mut ns: Vec<i64> = s.query_map([now], |r| r.get(0))?.collect::<super::db::SqlResult<_>>()?;
    ns.sort_unstable();
    ns.dedup();
    Ok(ns)
}

impl<B: Backend> PendingUploads for SqlStore<B> {
    fn announce_pending(&self, caller: &Caller, a: PendingAnnounce, expires: i64) -> Result<(PendingId, PendingSeq)> {
        let caller = caller.clone();
        self.write_in(Turn::With(vec![Lock::Namespace(caller.ns.0)]), move |conn| {
            let ids: Vec<BlockId> = a.blocks.iter().map(|b| b.id).collect();
            let hash = ferry_shared::block::content_hash(a.size, &ids);
            let id = announce(conn, &caller, &a, &hash, now_ms(), expires)?;
            Ok((PendingId(id), bump(conn, caller.ns.0)?.unwrap_or_default()))
        })
    }

    fn drop_pending(&self, caller: &Caller, id: Option<PendingId>) -> Result<Option<PendingSeq>> {
        let caller = caller.clone();
        let id = id.map(|id| id.0);
        self.write_in(Turn::With(vec![Lock::Namespace(caller.ns.0)]), move |conn| {
            let n = drop_own(conn, &caller, id)?;
            if n == 0 && id.is_some() {
                return Err(Error::not_found("no such pending upload of this device"));
            }
            Ok(if n > 0 { bump(conn, caller.ns.0)? } else { None })
        })
    }

    fn pending_uploads(&self, NsId(ns): NsId, DeviceId(except): DeviceId, now: i64) -> Result<PendingList> {
        self.read(|c| {
            let seq = c.row("SELECT pending_seq FROM namespaces WHERE id = ?1", [ns], |r| r.get(0)).optional()?;
            let own: i64 = c.row(
                "SELECT COUNT(*) FROM pending_uploads WHERE ns = ?1 AND device_id = ?2 AND expires > ?3",
                params![ns, except, now],
                |r| r.get(0),
            )?;
            Ok(PendingList { pending: list(c, ns, except, now)?, seq: seq.unwrap_or(0), own: own as u32 })
        })
    }

    fn sweep_pending(&self, now: i64) -> Result<Vec<(NsId, PendingSeq)>> {
        let expired = |c: &Db<'_>| -> Result<bool> {
            Ok(c.row("SELECT 1 FROM pending_uploads WHERE expires <= ?1 LIMIT 1", [now], |_| Ok(()))
                .optional()?
                .is_some())
        };
        if !self.read(expired)? {
            return Ok(Vec::new());
        }
        self.write(move |conn| {
            let mut out = Vec::new();
            for ns in sweep(conn, now)? {
                if let Some(seq) = bump(conn, ns)? {
                    out.push((NsId(ns), seq));
                }
            }
            Ok(out)
        })
    }
}
