//! Read-only share links: a token naming a row of a namespace (so the link
//! follows its item through renames and moves), with an optional expiry and
//! password hash.

use ferry_shared::api::ErrorCode;
use ferry_shared::path::RelPath;
use rusqlite::{Connection, OptionalExtension, params};

use super::tree::*;
use super::{Cached, SqliteStore};
use crate::error::{Error, Result};
use crate::store::{Caller, LinkRecord, Links, now_ms};

const COLS: &str = "l.id, l.token, l.owner, l.ns, l.file, f.kind, f.deleted, l.created, l.expires, l.pw_hash";
/// Links and their items, which must be in the link's namespace.
const FROM: &str = "links l JOIN files f ON f.id = l.file AND f.ns = l.ns";

fn record(r: &rusqlite::Row) -> rusqlite::Result<(LinkRecord, bool)> {
    let rec = LinkRecord {
        id: r.get(0)?,
        token: r.get(1)?,
        owner: r.get(2)?,
        ns: r.get(3)?,
        file: r.get(4)?,
        kind: kind_of(r.get(5)?),
        path: None,
        shown: None,
        created: r.get(7)?,
        expires: r.get(8)?,
        pw_hash: r.get(9)?,
    };
    Ok((rec, r.get(6)?))
}

/// Fills in where the item is now: nothing unless it and every folder
/// above it are live.
fn with_path(conn: &Connection, (mut rec, deleted): (LinkRecord, bool)) -> Result<LinkRecord> {
    if !deleted && let Some(p) = stored_path(conn, rec.file)?.filter(|p| !p.is_root()) {
        let live = resolve(conn, rec.ns, &p, true)?.is_some_and(|n| n.id == rec.file);
        // In a shared folder: seen from its maker's mount, while they are in it.
        let prefix = match conn.row("SELECT shared FROM namespaces WHERE id = ?1", [rec.ns], |r| r.get::<_, bool>(0))? {
            false => Some(RelPath::root()),
            true => match conn
                .row("SELECT mount FROM members WHERE ns = ?1 AND user_id = ?2", params![rec.ns, rec.owner], |r| {
                    r.get::<_, i64>(0)
                })
                .optional()?
            {
                Some(m) => stored_path(conn, m)?,
                None => None,
            },
        };
        if live && let Some(prefix) = prefix {
            rec.shown = Some(super::shares::under(&prefix, &p)?);
            rec.path = Some(p);
        }
    }
    Ok(rec)
}

impl Links for SqliteStore {
    fn create_link(
        &self,
        caller: &Caller,
        path: &RelPath,
        token: &str,
        expires: Option<i64>,
        pw_hash: Option<String>,
    ) -> Result<LinkRecord> {
        let (caller, path, token) = (caller.clone(), path.clone(), token.to_owned());
        self.write(move |c| {
            let loc = super::shares::locate(c, caller.ns, &path)?;
            super::shares::check_write(c, &loc)?;
            let node = resolve(c, loc.ns, &loc.inner, true)?
                .ok_or_else(|| Error::not_found(format!("nothing at '{path}' to link to")))?;
            // A shared folder's place is the member's own; its content is linked item by item.
            if node.mount.is_some() {
                return Err(Error::bad_request(format!(
                    "'{path}' is a shared folder: link to what is in it, or share it with `ferry share`"
                )));
            }
            let ns = loc.ns;
            let now = now_ms();
            c.exec(
                "INSERT INTO links(token, owner, ns, file, created, expires, pw_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![token, caller.user_id, ns, node.id, now, expires, pw_hash],
            )?;
            let id = c.last_insert_rowid();
            Ok(LinkRecord {
                id,
                token,
                owner: caller.user_id,
                ns,
                file: node.id,
                kind: node.kind,
                path: stored_path(c, node.id)?,
                shown: Some(path),
                created: now,
                expires,
                pw_hash,
            })
        })
    }

    fn links(&self, owner: i64) -> Result<Vec<LinkRecord>> {
        self.read(|c| {
            let mut s = c.prepare_cached(&format!("SELECT {COLS} FROM {FROM} WHERE l.owner = ?1 ORDER BY l.id"))?;
            let rows: Vec<(LinkRecord, bool)> = s.query_map([owner], record)?.collect::<rusqlite::Result<_>>()?;
            rows.into_iter().map(|r| with_path(c, r)).collect()
        })
    }

    fn link(&self, token: &str) -> Result<Option<LinkRecord>> {
        self.read(|c| {
            let row = c.row(&format!("SELECT {COLS} FROM {FROM} WHERE l.token = ?1"), [token], record).optional()?;
            row.map(|r| with_path(c, r)).transpose()
        })
    }

    fn revoke_link(&self, owner: i64, id: i64) -> Result<()> {
        self.write(move |c| {
            if c.exec("DELETE FROM links WHERE id = ?1 AND owner = ?2", params![id, owner])? == 0 {
                return Err(Error::client(ErrorCode::NotFound, format!("you have no link {id}; see GET /links")));
            }
            Ok(())
        })
    }
}
