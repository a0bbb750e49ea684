//! Read-only share links: a token naming a row of a namespace (so the link
//! follows its item through renames and moves), with an optional expiry and
//! password hash.
//!
//! # Who a link speaks for
//! A link shows only what its maker may publish: the maker's own tree, and
//! shared folders where the maker is the owner or an editor. So a link
//! works only while its maker may make links where its item is
//! ([`may_link`]): a link whose item moves into a tree its maker cannot
//! read ends ([`drop_unreachable`]), as do a member's links into a share
//! when they leave it or become a viewer; and a link in a maker's tree never
//! passes through a shared folder mounted there that they may only view
//! (`link_reaches`). The owner of a shared folder sees and may revoke every
//! link into it.

use super::db::{Db, OptionalExtension, params};
use ferry_shared::api::{ErrorCode, ShareRole};
use ferry_shared::path::RelPath;

use super::tree::*;
use super::{Backend, SqlStore};
use crate::error::{Error, Result};
use crate::meta::{Caller, FileId, LinkId, LinkRecord, Links, NsId, UserId, now_ms};

const COLS: &str = "l.id, l.token, l.owner, l.ns, l.file, f.kind, f.deleted, l.created, l.expires, l.pw_hash";
/// Links and their items, which must be in the link's namespace.
const FROM: &str = "links l JOIN files f ON f.id = l.file AND f.ns = l.ns";

fn record(r: &super::db::Row) -> super::db::SqlResult<(LinkRecord, bool)> {
    let rec = LinkRecord {
        id: r.get(0)?,
        token: r.get(1)?,
        owner: r.get(2)?,
        ns: r.get(3)?,
        file: r.get(4)?,
        kind: kind_of(r.get(5)?),
        path: None,
        shown: None,
        by: None,
        created: r.get(7)?,
        expires: r.get(8)?,
        pw_hash: r.get(9)?,
    };
    Ok((rec, r.get(6)?))
}

/// `user`'s role in a shared folder `ns`, if they are in it.
fn member_role(conn: &Db<'_>, ns: i64, user: i64) -> Result<Option<ShareRole>> {
    Ok(conn
        .row("SELECT role FROM members WHERE ns = ?1 AND user_id = ?2", params![ns, user], |r| r.get::<_, i64>(0))
        .optional()?
        .map(role_of))
}

/// Whether `user` may make (and keep) links to what is in namespace `ns`:
/// their own tree, or a shared folder they own or edit.
pub(super) fn may_link(conn: &Db<'_>, ns: i64, user: i64) -> Result<bool> {
    let (owner, shared): (i64, bool) =
        conn.row("SELECT owner, shared FROM namespaces WHERE id = ?1", [ns], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if !shared {
        return Ok(owner == user);
    }
    Ok(member_role(conn, ns, user)?.is_some_and(ShareRole::can_write))
}

/// Ends the links on `rows` (now in namespace `ns`) whose makers may not
/// link there: an item moved out of its maker's reach takes no link along.
pub(super) fn drop_unreachable(conn: &Db<'_>, ns: i64, rows: &[i64]) -> Result<()> {
    let mut on_row = conn.prepare_cached("SELECT id, owner FROM links WHERE file = ?1")?;
    let mut drop = conn.prepare_cached("DELETE FROM links WHERE id = ?1")?;
    let mut allowed = std::collections::HashMap::new();
    for row in rows {
        let links: Vec<(i64, i64)> =
            on_row.query_map([row], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<super::db::SqlResult<_>>()?;
        for (id, maker) in links {
            let ok = match allowed.get(&maker) {
                Some(ok) => *ok,
                None => *allowed.entry(maker).or_insert(may_link(conn, ns, maker)?),
            };
            if !ok {
                drop.execute([id])?;
            }
        }
    }
    Ok(())
}

/// Fills in where the item is now, as `viewer` sees it: nothing unless
/// its maker may still link there and it and every folder above it are live.
fn with_path(conn: &Db<'_>, (mut rec, deleted): (LinkRecord, bool), viewer: UserId) -> Result<LinkRecord> {
    if deleted || !may_link(conn, rec.ns.0, rec.owner.0)? {
        return Ok(rec);
    }
    let Some(p) = stored_path(conn, rec.file.0)?.filter(|p| !p.is_root()) else { return Ok(rec) };
    if resolve(conn, rec.ns.0, &p, true)?.is_none_or(|n| n.id != rec.file.0) {
        return Ok(rec);
    }
    // In a shared folder: seen from the viewer's mount.
    let shared: bool = conn.row("SELECT shared FROM namespaces WHERE id = ?1", [rec.ns], |r| r.get(0))?;
    let prefix = match shared {
        false => Some(RelPath::root()),
        true => match conn
            .row("SELECT mount FROM members WHERE ns = ?1 AND user_id = ?2", params![rec.ns, viewer], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
        {
            Some(m) => stored_path(conn, m)?,
            None => None,
        },
    };
    rec.shown = prefix.map(|prefix| super::shares::under(&prefix, &p)).transpose()?;
    rec.path = Some(p);
    if viewer != rec.owner {
        rec.by = Some(conn.row("SELECT name FROM users WHERE id = ?1", [rec.owner], |r| r.get(0))?);
    }
    Ok(rec)
}

/// Links into shared folders `user` owns, and `user`'s own.
const VISIBLE_TO: &str = "(l.owner = ?1 OR l.ns IN (SELECT ns FROM members WHERE user_id = ?1 AND role = 0))";

impl<B: Backend> Links for SqlStore<B> {
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
            let loc = super::shares::locate(c, caller.ns.0, &path)?;
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
            let id = c.insert(
                "INSERT INTO links(token, owner, ns, file, created, expires, pw_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![token, caller.user_id, ns, node.id, now, expires, pw_hash],
            )?;
            Ok(LinkRecord {
                id: LinkId(id),
                token: token.clone(),
                owner: caller.user_id,
                ns: NsId(ns),
                file: FileId(node.id),
                kind: node.kind,
                path: stored_path(c, node.id)?,
                shown: Some(path.clone()),
                by: None,
                created: now,
                expires,
                pw_hash: pw_hash.clone(),
            })
        })
    }

    fn links(&self, user: UserId) -> Result<Vec<LinkRecord>> {
        self.read(|c| {
            let mut s = c.prepare_cached(&format!("SELECT {COLS} FROM {FROM} WHERE {VISIBLE_TO} ORDER BY l.id"))?;
            let rows: Vec<(LinkRecord, bool)> = s.query_map([user], record)?.collect::<super::db::SqlResult<_>>()?;
            rows.into_iter().map(|r| with_path(c, r, user)).collect()
        })
    }

    fn link(&self, token: &str) -> Result<Option<LinkRecord>> {
        if !super::db::storable(token) {
            return Ok(None);
        }
        self.read(|c| {
            let row = c.row(&format!("SELECT {COLS} FROM {FROM} WHERE l.token = ?1"), [token], record).optional()?;
            row.map(|r| {
                let maker = r.0.owner;
                with_path(c, r, maker)
            })
            .transpose()
        })
    }

    fn revoke_link(&self, user: UserId, id: LinkId) -> Result<()> {
        self.write(move |c| {
            let sql =
                format!("DELETE FROM links WHERE id = ?2 AND id IN (SELECT l.id FROM links l WHERE {VISIBLE_TO})");
            if c.exec(&sql, params![user, id])? == 0 {
                return Err(Error::client(ErrorCode::NotFound, format!("you have no link {id}; see GET /links")));
            }
            Ok(())
        })
    }

    fn link_reaches(&self, NsId(ns): NsId, path: &RelPath) -> Result<bool> {
        self.read(|c| {
            let mut parent = 0;
            for seg in path.segments() {
                let Some(node) = child(c, ns, parent, seg, true)? else { return Ok(true) };
                if node.mount.is_some() {
                    // The mount is the maker's own: their role there decides.
                    let role: Option<i64> =
                        c.row("SELECT role FROM members WHERE mount = ?1", [node.id], |r| r.get(0)).optional()?;
                    return Ok(role.map(role_of).is_some_and(ShareRole::can_write));
                }
                parent = node.id;
            }
            Ok(true)
        })
    }
}
