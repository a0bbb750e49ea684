//! Resumable upload sessions.

use super::db::{OptionalExtension, params};
use ferry_shared::api::Entry;
use ferry_shared::path::RelPath;

use super::{Backend, SqlStore};
use crate::error::Result;
use crate::meta::{UploadSession, UploadSessions, UserId};

pub(super) fn upload_row(r: &super::db::Row) -> super::db::SqlResult<UploadSession> {
    let path: String = r.get(3)?;
    Ok(UploadSession {
        id: r.get(0)?,
        user_id: r.get(1)?,
        device_id: r.get(2)?,
        path: RelPath::parse(&path).unwrap_or_default(),
        size: r.get::<_, i64>(4)? as u64,
        received: r.get::<_, i64>(5)? as u64,
        mtime: r.get(6)?,
        parent_rev: r.get(7)?,
        expires: r.get(8)?,
        done: r.get::<_, Option<String>>(9)?.and_then(|j| serde_json::from_str(&j).ok()),
    })
}

impl<B: Backend> UploadSessions for SqlStore<B> {
    fn create_upload(&self, u: &UploadSession) -> Result<()> {
        let u = u.clone();
        self.write(move |c| {
            c.exec(
                "INSERT INTO upload_sessions(id, user_id, device_id, path, size, received, mtime, parent_rev, expires)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    u.id,
                    u.user_id,
                    u.device_id,
                    u.path.as_str(),
                    u.size as i64,
                    u.received as i64,
                    u.mtime,
                    u.parent_rev,
                    u.expires
                ],
            )?;
            Ok(())
        })
    }

    fn upload(&self, id: &str) -> Result<Option<UploadSession>> {
        self.read(|c| {
            Ok(c.row(
                "SELECT id, user_id, device_id, path, size, received, mtime, parent_rev, expires, done
                 FROM upload_sessions WHERE id = ?1",
                [id],
                upload_row,
            )
            .optional()?)
        })
    }

    fn set_upload_received(&self, id: &str, received: u64) -> Result<()> {
        let id = id.to_owned();
        self.write(move |c| {
            c.exec("UPDATE upload_sessions SET received = ?1 WHERE id = ?2", params![received as i64, id])?;
            Ok(())
        })
    }

    fn finish_upload(&self, id: &str, entry: &Entry) -> Result<()> {
        let id = id.to_owned();
        let json = serde_json::to_string(entry).map_err(anyhow::Error::from)?;
        self.write(move |c| {
            c.exec("UPDATE upload_sessions SET done = ?1, received = size WHERE id = ?2", params![json, id])?;
            Ok(())
        })
    }

    fn delete_upload(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.write(move |c| {
            c.exec("DELETE FROM upload_sessions WHERE id = ?1", [&id])?;
            Ok(())
        })
    }

    fn staged_uploads(&self, UserId(user_id): UserId, now: i64) -> Result<(u64, u64)> {
        self.read(|c| {
            Ok(c.row(
                "SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM upload_sessions
                 WHERE user_id = ?1 AND done IS NULL AND expires > ?2",
                params![user_id, now],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )?)
        })
    }

    fn expired_uploads(&self, now: i64) -> Result<Vec<String>> {
        self.read(|c| {
            let mut s = c.prepare("SELECT id FROM upload_sessions WHERE expires < ?1")?;
            let rows = s.query_map([now], |r| r.get(0))?;
            Ok(rows.collect::<super::db::SqlResult<_>>()?)
        })
    }
}
