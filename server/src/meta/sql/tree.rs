//! Paths to rows: nodes (`files`), immutable versions (`file_versions`),
//! and the entries built from them.

use super::db::{Db, OptionalExtension, params};
use ferry_shared::BlockId;
use ferry_shared::api::{ChangeOp, Entry, EntryKind, Mount, ShareRole};
use ferry_shared::path::{RelPath, name_key};

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub(super) struct Node {
    pub(super) id: i64,
    pub(super) parent: i64,
    pub(super) kind: EntryKind,
    pub(super) head: i64,
    pub(super) deleted: bool,
    /// For a shared folder's place in a member's tree: the share's namespace.
    pub(super) mount: Option<i64>,
    /// Its name as stored (as its creator spelled it).
    pub(super) name: String,
}

#[derive(Debug, Clone)]
pub(super) struct Version {
    pub(super) size: u64,
    pub(super) mtime: i64,
    pub(super) executable: bool,
    pub(super) hash: String,
    pub(super) blocks: Vec<(BlockId, u32)>,
    pub(super) deleted: bool,
    pub(super) created: i64,
    pub(super) device: String,
}

pub(super) fn kind_of(i: i64) -> EntryKind {
    if i == 1 { EntryKind::Dir } else { EntryKind::File }
}

pub(super) fn kind_num(k: EntryKind) -> i64 {
    match k {
        EntryKind::File => 0,
        EntryKind::Dir => 1,
    }
}

pub(super) fn op_num(op: ChangeOp) -> i64 {
    match op {
        ChangeOp::Add => 0,
        ChangeOp::Modify => 1,
        ChangeOp::Delete => 2,
        ChangeOp::Move => 3,
        ChangeOp::Mkdir => 4,
        ChangeOp::Rmdir => 5,
    }
}

pub(super) fn op_of(i: i64) -> ChangeOp {
    match i {
        0 => ChangeOp::Add,
        1 => ChangeOp::Modify,
        2 => ChangeOp::Delete,
        3 => ChangeOp::Move,
        4 => ChangeOp::Mkdir,
        _ => ChangeOp::Rmdir,
    }
}

pub(super) const NODE_COLS: &str = "id, parent, kind, head, deleted, mount, name";

pub(super) fn node_row(r: &super::db::Row) -> super::db::SqlResult<Node> {
    Ok(Node {
        id: r.get(0)?,
        parent: r.get(1)?,
        kind: kind_of(r.get(2)?),
        head: r.get(3)?,
        deleted: r.get(4)?,
        mount: r.get(5)?,
        name: r.get(6)?,
    })
}

pub(super) fn version(conn: &Db<'_>, rev: i64) -> Result<Version> {
    Ok(conn.row(
        "SELECT v.size, v.mtime, v.executable, v.hash, v.blocks, v.deleted, v.created, COALESCE(d.name, '')
         FROM file_versions v LEFT JOIN devices d ON d.id = v.device WHERE v.id = ?1",
        [rev],
        |r| {
            Ok(Version {
                size: r.get::<_, i64>(0)? as u64,
                mtime: r.get(1)?,
                executable: r.get(2)?,
                hash: r.get(3)?,
                blocks: ferry_shared::block::decode_list(&r.get::<_, Vec<u8>>(4)?),
                deleted: r.get(5)?,
                created: r.get(6)?,
                device: r.get(7)?,
            })
        },
    )?)
}

pub(super) fn entry_of(id: i64, kind: EntryKind, path: &RelPath, rev: i64, v: &Version) -> Entry {
    Entry {
        id,
        path: path.clone(),
        kind,
        rev,
        size: v.size,
        mtime: v.mtime,
        executable: v.executable,
        hash: v.hash.clone(),
        deleted: v.deleted,
        modified: v.created,
        device: v.device.clone(),
        share: None,
    }
}

/// What a mount row (`files.mount`) shows its member: the share, their
/// role, its owner. `None` once the membership ended.
pub(super) fn mount_info(conn: &Db<'_>, mount_row: i64) -> Result<Option<Mount>> {
    Ok(conn
        .row(
            "SELECT m.ns, m.role, u.name FROM members m JOIN namespaces s ON s.id = m.ns
             JOIN users u ON u.id = s.owner WHERE m.mount = ?1",
            [mount_row],
            |r| Ok(Mount { id: r.get(0)?, role: role_of(r.get(1)?), owner: r.get(2)? }),
        )
        .optional()?)
}

pub(super) fn role_of(i: i64) -> ShareRole {
    match i {
        0 => ShareRole::Owner,
        1 => ShareRole::Editor,
        _ => ShareRole::Viewer,
    }
}

pub(super) fn role_num(r: ShareRole) -> i64 {
    match r {
        ShareRole::Owner => 0,
        ShareRole::Editor => 1,
        ShareRole::Viewer => 2,
    }
}

/// The head entry of `node`, which was looked up at `path`. Lookups go by
/// name key, so the entry names the path as stored (the existing item's own
/// spelling), not `path` (which may differ in case or normalization).
pub(super) fn node_entry(conn: &Db<'_>, node: &Node, path: &RelPath) -> Result<Entry> {
    let path = stored_path(conn, node.id)?.unwrap_or_else(|| path.clone());
    let mut e = entry_of(node.id, node.kind, &path, node.head, &version(conn, node.head)?);
    if node.mount.is_some() {
        e.share = mount_info(conn, node.id)?;
    }
    Ok(e)
}

/// `path` spelled as stored: every segment that names an existing live item
/// takes that item's own spelling (names are matched on the case-folded key),
/// except the last one when `keep_last` (a case-only rename). So journals and
/// entries always carry the one path every device has.
pub(super) fn canonical(conn: &Db<'_>, ns: i64, path: &RelPath, keep_last: bool) -> Result<RelPath> {
    let segments: Vec<&str> = path.segments().collect();
    let mut out = RelPath::root();
    let mut parent = Some(0);
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        let found = match parent {
            Some(p) if !(last && keep_last) => child(conn, ns, p, seg, true)?,
            _ => None,
        };
        let name = match &found {
            Some(n) => n.name.clone(),
            None => (*seg).to_owned(),
        };
        parent = found.filter(|n| n.kind == EntryKind::Dir).map(|n| n.id);
        out = out.join(&name)?;
    }
    Ok(out)
}

/// The path of row `id` as stored, walking up its folders (`None` if a row
/// on the way is missing).
pub(super) fn stored_path(conn: &Db<'_>, id: i64) -> Result<Option<RelPath>> {
    let mut s = conn.prepare_cached("SELECT parent, name FROM files WHERE id = ?1")?;
    let mut names = Vec::new();
    let mut cur = id;
    while cur != 0 && names.len() <= ferry_shared::path::MAX_DEPTH {
        let row: Option<(i64, String)> = s.query_row([cur], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
        let Some((parent, name)) = row else { return Ok(None) };
        names.push(name);
        cur = parent;
    }
    if cur != 0 {
        return Ok(None);
    }
    names.reverse();
    Ok(RelPath::parse(&names.join("/")).ok())
}

/// The child named `name` of folder `parent`: the live one, else (unless
/// `live_only`) the most recently created deleted one.
pub(super) fn child(conn: &Db<'_>, ns: i64, parent: i64, name: &str, live_only: bool) -> Result<Option<Node>> {
    let key = name_key(name);
    let keep = conn.holds(ns);
    let best = match keep.then(|| conn.cache().child(ns, parent, &key)).flatten() {
        Some(best) => best,
        None if keep || (!live_only && conn.remote()) => {
            // One statement for both: the live one sorts first (at most one
            // is live), then the newest.
            let sql = format!(
                "SELECT {NODE_COLS} FROM files WHERE ns = ?1 AND parent = ?2 AND name_key = ?3
                 ORDER BY deleted, id DESC LIMIT 1"
            );
            let best = conn.row(&sql, params![ns, parent, key], node_row).optional()?;
            if keep {
                conn.cache().found(ns, parent, key.into_owned(), best.clone());
            }
            best
        }
        None => {
            let live = conn
                .row(
                    &format!(
                        "SELECT {NODE_COLS} FROM files WHERE ns = ?1 AND parent = ?2 AND name_key = ?3 AND deleted = 0"
                    ),
                    params![ns, parent, key],
                    node_row,
                )
                .optional()?;
            if live.is_some() || live_only {
                return Ok(live);
            }
            conn.row(
                &format!(
                    "SELECT {NODE_COLS} FROM files WHERE ns = ?1 AND parent = ?2 AND name_key = ?3
                     ORDER BY id DESC LIMIT 1"
                ),
                params![ns, parent, key],
                node_row,
            )
            .optional()?
        }
    };
    Ok(best.filter(|n| !(live_only && n.deleted)))
}

/// The node at `path` (the root has id 0 and is not a row).
pub(super) fn resolve(conn: &Db<'_>, ns: i64, path: &RelPath, live_only: bool) -> Result<Option<Node>> {
    let mut cur: Option<Node> = None;
    let mut parent = 0;
    for seg in path.segments() {
        if let Some(n) = &cur
            && n.kind != EntryKind::Dir
        {
            return Ok(None);
        }
        match child(conn, ns, parent, seg, live_only)? {
            Some(n) => {
                parent = n.id;
                cur = Some(n);
            }
            None => return Ok(None),
        }
    }
    Ok(cur)
}

pub(super) fn has_live_children(conn: &Db<'_>, ns: i64, id: i64) -> Result<bool> {
    Ok(conn
        .row("SELECT 1 FROM files WHERE ns = ?1 AND parent = ?2 AND deleted = 0 LIMIT 1", params![ns, id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// The live children of the folder at `path`, by name.
pub(super) fn list_folder(c: &Db<'_>, ns: i64, path: &RelPath) -> Result<Vec<Entry>> {
    let loc = super::shares::locate(c, ns, path)?;
    let (ns, inner) = (loc.ns, &loc.inner);
    let parent = if inner.is_root() {
        0
    } else {
        let node = resolve(c, ns, inner, true)?
            .filter(|n| n.kind == EntryKind::Dir)
            .ok_or_else(|| Error::not_found(format!("no folder at '{path}'")))?;
        // A shared folder's own place: its content is the share's.
        match node.mount {
            Some(share) => return list_folder_rows(c, share, 0, path),
            None => node.id,
        }
    };
    list_folder_rows(c, ns, parent, path)
}

/// The live children of row `parent` of `ns`, shown under `path`.
fn list_folder_rows(c: &Db<'_>, ns: i64, parent: i64, path: &RelPath) -> Result<Vec<Entry>> {
    let mut s = c.prepare_cached(&format!(
        "SELECT {NODE_COLS} FROM files WHERE ns = ?1 AND parent = ?2 AND deleted = 0 ORDER BY name"
    ))?;
    let rows: Vec<(Node, String)> =
        s.query_map(params![ns, parent], |r| Ok((node_row(r)?, r.get(6)?)))?.collect::<super::db::SqlResult<_>>()?;
    rows.into_iter()
        .map(|(n, name)| {
            let mut e = entry_of(n.id, n.kind, &path.join(&name)?, n.head, &version(c, n.head)?);
            if n.mount.is_some() {
                e.share = mount_info(c, n.id)?;
            }
            Ok(e)
        })
        .collect()
}
