//! Users, their devices and tokens, quotas.

use super::db::{OptionalExtension, params};

use super::{Backend, SqlStore};
use crate::error::{Error, Result};
use crate::meta::{Accounts, Caller, DeviceId, UserId, UserInfo, now_ms};

fn user_row(r: &super::db::Row) -> super::db::SqlResult<UserInfo> {
    Ok(UserInfo {
        id: r.get(0)?,
        name: r.get(1)?,
        quota: r.get::<_, i64>(2)? as u64,
        used: r.get::<_, i64>(3)? as u64,
        uploaded: r.get::<_, i64>(4)? as u64,
    })
}

impl<B: Backend> Accounts for SqlStore<B> {
    fn add_user(&self, name: &str, password_hash: &str, quota: u64) -> Result<UserId> {
        let (name, hash) = (name.to_owned(), password_hash.to_owned());
        self.write(move |c| {
            let exists = c.row("SELECT 1 FROM users WHERE name = ?1", [&name], |_| Ok(())).optional()?;
            if exists.is_some() {
                return Err(Error::conflict(format!("user '{name}' already exists"), None));
            }
            let id = c.insert(
                "INSERT INTO users(name, pw_hash, quota, created) VALUES (?1, ?2, ?3, ?4)",
                params![name, hash, quota as i64, now_ms()],
            )?;
            c.exec("INSERT INTO namespaces(owner) VALUES (?1)", [id])?;
            Ok(UserId(id))
        })
    }

    fn list_users(&self) -> Result<Vec<UserInfo>> {
        self.read(|c| {
            let mut s = c.prepare("SELECT id, name, quota, used, staged FROM users ORDER BY name")?;
            let rows = s.query_map((), user_row)?;
            Ok(rows.collect::<super::db::SqlResult<_>>()?)
        })
    }

    fn user_info(&self, user_id: UserId) -> Result<UserInfo> {
        self.read(|c| {
            Ok(c.row("SELECT id, name, quota, used, staged FROM users WHERE id = ?1", [user_id], user_row)?)
        })
    }

    fn set_password(&self, name: &str, password_hash: &str) -> Result<()> {
        let (name, hash) = (name.to_owned(), password_hash.to_owned());
        self.write(move |c| {
            let n = c.exec("UPDATE users SET pw_hash = ?1 WHERE name = ?2", params![hash, name])?;
            if n == 0 {
                return Err(Error::not_found(format!("no user '{name}'")));
            }
            // A new password signs every device out.
            c.exec("DELETE FROM tokens WHERE user_id = (SELECT id FROM users WHERE name = ?1)", [&name])?;
            Ok(())
        })
    }

    fn set_quota(&self, name: &str, quota: u64) -> Result<()> {
        let name = name.to_owned();
        self.write(move |c| {
            let n = c.exec("UPDATE users SET quota = ?1 WHERE name = ?2", params![quota as i64, name])?;
            if n == 0 {
                return Err(Error::not_found(format!("no user '{name}'")));
            }
            Ok(())
        })
    }

    fn remove_user(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.write(move |c| {
            let id: i64 = c
                .query_row("SELECT id FROM users WHERE name = ?1", [&name], |r| r.get(0))
                .optional()?
                .ok_or_else(|| Error::not_found(format!("no user '{name}'")))?;
            // Shares they own leave their members' trees (journaled there).
            super::shares::remove_user_shares(c, id, &mut Default::default())?;
            c.execute_batch(&format!(
                "DELETE FROM file_versions WHERE file IN (SELECT f.id FROM files f JOIN namespaces n ON n.id = f.ns WHERE n.owner = {id});
                 DELETE FROM files WHERE ns IN (SELECT id FROM namespaces WHERE owner = {id});
                 DELETE FROM journal WHERE ns IN (SELECT id FROM namespaces WHERE owner = {id});
                 DELETE FROM namespaces WHERE owner = {id};
                 DELETE FROM tokens WHERE user_id = {id};
                 DELETE FROM devices WHERE user_id = {id};
                 DELETE FROM account_blocks WHERE user_id = {id};
                 DELETE FROM upload_sessions WHERE user_id = {id};
                 DELETE FROM pending_uploads WHERE user_id = {id};
                 DELETE FROM links WHERE owner = {id};
                 DELETE FROM users WHERE id = {id};"
            ))?;
            Ok(())
        })
    }

    fn password_hash(&self, name: &str) -> Result<Option<(UserId, String)>> {
        if !super::db::storable(name) {
            return Ok(None);
        }
        self.read(|c| {
            Ok(c.row("SELECT id, pw_hash FROM users WHERE name = ?1", [name], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?)
        })
    }

    fn create_token(&self, user_id: UserId, device_name: &str, token_hash: [u8; 32]) -> Result<DeviceId> {
        let device_name = device_name.to_owned();
        self.write(move |c| {
            c.exec(
                "INSERT INTO devices(user_id, name, created) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![user_id, device_name, now_ms()],
            )?;
            let device: DeviceId =
                c.row("SELECT id FROM devices WHERE user_id = ?1 AND name = ?2", params![user_id, device_name], |r| {
                    r.get(0)
                })?;
            c.exec(
                "INSERT INTO tokens(hash, user_id, device_id, created) VALUES (?1, ?2, ?3, ?4)",
                params![&token_hash[..], user_id, device, now_ms()],
            )?;
            Ok(device)
        })
    }

    fn authenticate(&self, token_hash: [u8; 32]) -> Result<Option<Caller>> {
        // (One statement.)
        self.read_each(|c| {
            let mut s = c.prepare_cached(
                "SELECT t.user_id, t.device_id, n.id, COALESCE(d.name, '') FROM tokens t
                 JOIN namespaces n ON n.owner = t.user_id AND n.shared = 0
                 LEFT JOIN devices d ON d.id = t.device_id WHERE t.hash = ?1",
            )?;
            Ok(s.query_row([&token_hash[..]], |r| {
                Ok(Caller { user_id: r.get(0)?, device_id: r.get(1)?, ns: r.get(2)?, device: r.get(3)? })
            })
            .optional()?)
        })
    }

    fn revoke_token(&self, token_hash: [u8; 32]) -> Result<()> {
        self.write(move |c| {
            c.exec("DELETE FROM tokens WHERE hash = ?1", [&token_hash[..]])?;
            Ok(())
        })
    }
}
