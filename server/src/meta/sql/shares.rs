//! Shared folders: a namespace of its own, mounted in each member's root
//! namespace by a mount row (`files.mount`). Paths from a member go through
//! [`locate`], which follows a mount into the share; changes in a share are
//! journaled in every member's root namespace at that member's path
//! ([`audience`]), so each device keeps one cursor and one long poll.

use std::collections::BTreeMap;

use super::db::{Counter, Db, Lock, OptionalExtension, Table, params};
use ferry_shared::BlockId;
use ferry_shared::api::{ChangeOp, EntryKind, ErrorCode, Member, Share, ShareRole};
use ferry_shared::path::{RelPath, name_key};

use super::tree::*;
use super::{Backend, SqlStore, pending};
use crate::error::{Error, Result};
use crate::meta::{Caller, NsId, Seq, ShareId, Shares, Touched, now_ms};

/// Where a path of a member's tree lives.
#[derive(Debug, Clone)]
pub(super) struct Loc {
    /// The namespace holding it: the caller's root, or a share.
    pub(super) ns: i64,
    /// Its path inside `ns`.
    pub(super) inner: RelPath,
    /// Where `ns`'s root is in the caller's tree (root for the caller's own).
    pub(super) prefix: RelPath,
    /// The caller's role in `ns` (owner in their own namespace).
    pub(super) role: ShareRole,
}

/// `prefix` + `inner`.
pub(super) fn under(prefix: &RelPath, inner: &RelPath) -> Result<RelPath> {
    if prefix.is_root() {
        return Ok(inner.clone());
    }
    if inner.is_root() {
        return Ok(prefix.clone());
    }
    RelPath::parse(&format!("{prefix}/{inner}")).map_err(|e| Error::bad_request(format!("{e}")))
}

/// Follows `path` of the tree rooted at namespace `root` into the share it
/// is in, if any. A path naming a mount itself stays in `root` (the mount
/// row is the member's own: they may rename, move or remove it).
pub(super) fn locate(conn: &Db<'_>, root: i64, path: &RelPath) -> Result<Loc> {
    let segments: Vec<&str> = path.segments().collect();
    let mut parent = 0;
    let mut prefix = RelPath::root();
    for (i, seg) in segments.iter().enumerate() {
        let Some(node) = child(conn, root, parent, seg, true)? else { break };
        prefix = prefix.join(&node.name)?;
        if let Some(share) = node.mount {
            if i + 1 == segments.len() {
                break;
            }
            let inner = RelPath::parse(&segments[i + 1..].join("/")).map_err(|e| Error::bad_request(format!("{e}")))?;
            let role: i64 =
                conn.row("SELECT role FROM members WHERE mount = ?1", [node.id], |r| r.get(0)).optional()?.unwrap_or(2);
            return Ok(Loc { ns: share, inner, prefix, role: role_of(role) });
        }
        if node.kind != EntryKind::Dir {
            break;
        }
        parent = node.id;
    }
    Ok(Loc { ns: root, inner: path.clone(), prefix: RelPath::root(), role: ShareRole::Owner })
}

/// Refuses a write where the caller may only read.
pub(super) fn check_write(conn: &Db<'_>, loc: &Loc) -> Result<()> {
    if loc.role.can_write() {
        return Ok(());
    }
    let owner: String =
        conn.row("SELECT u.name FROM namespaces n JOIN users u ON u.id = n.owner WHERE n.id = ?1", [loc.ns], |r| {
            r.get(0)
        })?;
    Err(Error::client(
        ErrorCode::Forbidden,
        format!(
            "'{}' is shared with you read-only by {owner}: ask them for edit access, or copy what you changed out of it",
            loc.prefix
        ),
    ))
}

/// Each reader of a namespace: `(their root namespace, where its root is there)`.
pub(super) type Audience = Vec<(i64, RelPath)>;

/// Who sees namespace `ns`, and where: `(root namespace, path of ns's root
/// there)` of each member (the owner of a root namespace alone).
///
/// Takes the lock of each of those root namespaces (their journals are
/// appended to, and the paths of the mounts in them must stay put).
pub(super) fn audience(conn: &Db<'_>, ns: i64) -> Result<Audience> {
    conn.enter(Lock::Namespace(ns))?;
    let shared: bool = conn.row("SELECT shared FROM namespaces WHERE id = ?1", [ns], |r| r.get(0))?;
    if !shared {
        return Ok(vec![(ns, RelPath::root())]);
    }
    let mut s = conn.prepare_cached(
        "SELECT n.id, m.mount FROM members m JOIN namespaces n ON n.owner = m.user_id AND n.shared = 0
         WHERE m.ns = ?1 ORDER BY m.user_id",
    )?;
    let rows: Vec<(i64, i64)> =
        s.query_map([ns], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<super::db::SqlResult<_>>()?;
    let mut roots: Vec<i64> = rows.iter().map(|&(root, _)| root).collect();
    roots.sort_unstable();
    for root in roots {
        conn.enter(Lock::Namespace(root))?;
    }
    let mut out = Vec::with_capacity(rows.len());
    for (root, mount) in rows {
        if let Some(p) = stored_path(conn, mount)? {
            out.push((root, p));
        }
    }
    Ok(out)
}

/// Appends one record to a root namespace's journal; returns its sequence.
pub(super) fn append(
    conn: &Db<'_>,
    root: i64,
    op: ChangeOp,
    file: i64,
    rev: i64,
    path: &RelPath,
    from: Option<&RelPath>,
) -> Result<i64> {
    // The first entry this transaction makes there takes the counter's
    // row (locked until the transaction ends); the rest count on from it.
    let next = conn.cache().next_seq(root);
    let seq = match next {
        Some(seq) => {
            conn.set_later(&SEQ, root, seq)?;
            seq
        }
        None => {
            let seq: i64 =
                conn.row("UPDATE namespaces SET seq = seq + 1 WHERE id = ?1 RETURNING seq", [root], |r| r.get(0))?;
            conn.cache().seq_taken(root, seq);
            seq
        }
    };
    conn.add_row(&JOURNAL, params![root, seq, op_num(op), file, rev, path.as_str(), from.map(|p| p.as_str())])?;
    Ok(seq)
}

/// Journal entries, added without awaiting them (see [`Db::add_row`]).
/// A namespace's journal sequence.
static SEQ: Counter = Counter { table: "namespaces", column: "seq" };
static JOURNAL: Table = Table {
    insert: "INSERT INTO journal(ns, seq, op, file, rev, path, from_path)",
    types: &["int8", "int8", "int8", "int8", "int8", "text", "text"],
};

/// Every row of `ns` at or under row `id` (deleted ones too: history goes
/// where its file goes).
pub(super) fn subtree_rows(conn: &Db<'_>, ns: i64, id: i64) -> Result<Vec<i64>> {
    let mut s = conn.prepare_cached(
        "WITH RECURSIVE t(id) AS (SELECT CAST(?1 AS BIGINT) UNION ALL SELECT f.id FROM files f JOIN t ON f.parent = t.id WHERE f.ns = ?2)
         SELECT id FROM t",
    )?;
    Ok(s.query_map(params![id, ns], |r| r.get(0))?.collect::<super::db::SqlResult<_>>()?)
}

/// The live rows among `rows` with their paths relative to `base` (the path
/// of row `rows[0]`'s parent folder), parents before children.
pub(super) fn live_items(conn: &Db<'_>, rows: &[i64], top: i64, top_path: &RelPath) -> Result<Vec<(RelPath, Node)>> {
    let mut s = conn.prepare_cached(&format!("SELECT {NODE_COLS} FROM files WHERE id = ?1"))?;
    let mut nodes: BTreeMap<i64, (Node, String)> = BTreeMap::new();
    for id in rows {
        if let Some(x) = s.query_row([id], |r| Ok((node_row(r)?, r.get::<_, String>(6)?))).optional()? {
            nodes.insert(*id, x);
        }
    }
    let mut out = Vec::new();
    let mut paths: BTreeMap<i64, RelPath> = BTreeMap::new();
    // Rows come from a breadth-first walk: a parent precedes its children.
    for id in rows {
        let Some((node, name)) = nodes.get(id) else { continue };
        if node.deleted {
            continue;
        }
        let path = if *id == top {
            top_path.clone()
        } else {
            match paths.get(&node.parent) {
                Some(p) => p.join(name)?,
                None => continue,
            }
        };
        paths.insert(*id, path.clone());
        out.push((path, node.clone()));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Every live item of share `ns`, parents first, with paths inside it.
fn share_items(conn: &Db<'_>, ns: i64) -> Result<Vec<(RelPath, Node)>> {
    let mut s = conn.prepare_cached(&format!("SELECT {NODE_COLS} FROM files WHERE ns = ?1 AND parent = 0"))?;
    let tops: Vec<(Node, String)> =
        s.query_map([ns], |r| Ok((node_row(r)?, r.get(6)?)))?.collect::<super::db::SqlResult<_>>()?;
    let mut out = Vec::new();
    for (top, name) in tops {
        if top.deleted {
            continue;
        }
        let rows = subtree_rows(conn, ns, top.id)?;
        out.extend(live_items(conn, &rows, top.id, &RelPath::parse(&name).map_err(|e| anyhow::anyhow!("{e}"))?)?);
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Journals `items` (paths inside their namespace) as appearing at `prefix`
/// in root namespace `root`.
pub(super) fn journal_appearing(
    conn: &Db<'_>,
    root: i64,
    prefix: &RelPath,
    items: &[(RelPath, Node)],
) -> Result<Option<i64>> {
    let mut seq = None;
    for (p, n) in items {
        let op = if n.kind == EntryKind::Dir { ChangeOp::Mkdir } else { ChangeOp::Add };
        seq = Some(append(conn, root, op, n.id, n.head, &under(prefix, p)?, None)?);
    }
    Ok(seq)
}

/// Makes every block of every version of `rows` readable in `ns`: for a
/// share its members, for a root namespace its owner.
pub(super) fn grant_blocks(conn: &Db<'_>, ns: i64, rows: &[i64]) -> Result<()> {
    let (owner, shared): (i64, bool) =
        conn.row("SELECT owner, shared FROM namespaces WHERE id = ?1", [ns], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let mut versions = conn.prepare_cached("SELECT blocks FROM file_versions WHERE file = ?1")?;
    let mut blocks = std::collections::BTreeSet::new();
    for id in rows {
        let lists: Vec<Vec<u8>> = versions.query_map([id], |r| r.get(0))?.collect::<super::db::SqlResult<_>>()?;
        for l in lists {
            blocks.extend(ferry_shared::block::decode_list(&l).into_iter().map(|(b, _)| b));
        }
    }
    let blocks: Vec<BlockId> = blocks.into_iter().collect();
    let who = if shared { ns } else { owner };
    for chunk in super::db::padded_chunks(&blocks) {
        let mut args: Vec<&dyn super::db::Arg> = vec![&who];
        args.extend(chunk.iter().map(|b| b as &dyn super::db::Arg));
        let rows = super::db::rows_sql(chunk.len(), |i| format!("(?1, ?{})", i + 2));
        let table = if shared { "share_blocks(ns, block)" } else { "account_blocks(user_id, block)" };
        conn.exec(&format!("INSERT INTO {table} VALUES {rows} ON CONFLICT DO NOTHING"), &args[..])?;
    }
    if !shared {
        // Its files' blocks: no longer only uploaded, never to expire.
        let settled = super::blocks::settle(conn, owner, &blocks)?;
        super::blocks::unstage(conn, owner, settled)?;
    }
    Ok(())
}

/// The user id of a name, or a clear 404.
fn user_id(conn: &Db<'_>, name: &str) -> Result<i64> {
    let found = match super::db::storable(name) {
        true => conn.row("SELECT id FROM users WHERE name = ?1", [name], |r| r.get(0)).optional()?,
        false => None,
    };
    found.ok_or_else(|| Error::not_found(format!("there is no user '{name}' on this server: check the name")))
}

fn root_of(conn: &Db<'_>, user: i64) -> Result<i64> {
    Ok(conn.row("SELECT id FROM namespaces WHERE owner = ?1 AND shared = 0", [user], |r| r.get(0))?)
}

/// A new folder version for a mount row (made or removed by `device`).
fn mount_version(conn: &Db<'_>, row: i64, path: &RelPath, deleted: bool, device: i64) -> Result<i64> {
    let now = now_ms();
    let rev = conn.insert(
        "INSERT INTO file_versions(file, path, size, mtime, executable, hash, blocks, deleted, created, device)
         VALUES (?1, ?2, 0, ?3, 0, '', ?6, ?4, ?3, ?5)",
        params![row, path.as_str(), now, deleted, device, Vec::<u8>::new()],
    )?;
    conn.exec("UPDATE files SET head = ?1, deleted = ?2 WHERE id = ?3", params![rev, deleted, row])?;
    Ok(rev)
}

/// A free name for a new mount in a root namespace: the folder's own, or
/// `NAME (OWNER)`, `NAME (OWNER 2)`, ….
fn free_name(conn: &Db<'_>, root: i64, name: &str, owner: &str) -> Result<String> {
    let mut candidate = name.to_owned();
    for i in 1.. {
        if child(conn, root, 0, &candidate, true)?.is_none() {
            return Ok(candidate);
        }
        candidate = if i == 1 { format!("{name} ({owner})") } else { format!("{name} ({owner} {i})") };
    }
    unreachable!()
}

/// Adds `user` to share `ns` with a mount at the top of their tree, and
/// journals the share's whole content for them.
fn add_member(conn: &Db<'_>, ns: i64, user: i64, role: ShareRole, device: i64, touched: &mut Touched) -> Result<()> {
    let root = root_of(conn, user)?;
    let (owner_name, owner_mount): (String, i64) = conn.row(
        "SELECT u.name, m.mount FROM namespaces n JOIN users u ON u.id = n.owner
         JOIN members m ON m.ns = n.id AND m.user_id = n.owner WHERE n.id = ?1",
        [ns],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let name: String = conn.row("SELECT name FROM files WHERE id = ?1", [owner_mount], |r| r.get(0))?;
    let name = free_name(conn, root, &name, &owner_name)?;
    let row = conn.insert(
        "INSERT INTO files(ns, parent, name, name_key, kind, head, deleted, mount) VALUES (?1, 0, ?2, ?3, 1, 0, 0, ?4)",
        params![root, name, name_key(&name), ns],
    )?;
    let path = RelPath::parse(&name).map_err(|e| anyhow::anyhow!("{e}"))?;
    let rev = mount_version(conn, row, &path, false, device)?;
    conn.exec(
        "INSERT INTO members(ns, user_id, role, mount, added) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![ns, user, role_num(role), row, now_ms()],
    )?;
    let mut seq = append(conn, root, ChangeOp::Mkdir, row, rev, &path, None)?;
    if let Some(s) = journal_appearing(conn, root, &path, &share_items(conn, ns)?)? {
        seq = s;
    }
    touched.journal(NsId(root), Seq(seq));
    Ok(())
}

/// Ends `user`'s membership of share `ns`: their mount goes, journaled as
/// the removal of its folder (every device of theirs drops what is under
/// it, and keeps what it changed there and had not sent).
pub(super) fn remove_member(conn: &Db<'_>, ns: i64, user: i64, device: i64, touched: &mut Touched) -> Result<()> {
    conn.enter(Lock::Namespace(ns))?;
    let Some(mount) = conn
        .row("SELECT mount FROM members WHERE ns = ?1 AND user_id = ?2", params![ns, user], |r| r.get::<_, i64>(0))
        .optional()?
    else {
        return Ok(());
    };
    let root = root_of(conn, user)?;
    conn.enter(Lock::Namespace(root))?;
    if let Some(path) = stored_path(conn, mount)? {
        let rev = mount_version(conn, mount, &path, true, device)?;
        touched.journal(NsId(root), Seq(append(conn, root, ChangeOp::Rmdir, mount, rev, &path, None)?));
        if pending::drop_under(conn, root, &path)? > 0
            && let Some(p) = pending::bump(conn, root)?
        {
            touched.pending(NsId(root), p);
        }
    }
    conn.exec("UPDATE files SET deleted = 1, mount = NULL WHERE id = ?1", [mount])?;
    conn.exec("DELETE FROM members WHERE ns = ?1 AND user_id = ?2", params![ns, user])?;
    // What they published of it ends with their membership.
    conn.exec("DELETE FROM links WHERE ns = ?1 AND owner = ?2", params![ns, user])?;
    Ok(())
}

/// Removes every membership of a user who is being removed, and the shares
/// they own from everyone else's trees.
pub(super) fn remove_user_shares(conn: &Db<'_>, user: i64, touched: &mut Touched) -> Result<()> {
    let owned: Vec<i64> = conn
        .prepare("SELECT id FROM namespaces WHERE owner = ?1 AND shared = 1")?
        .query_map([user], |r| r.get(0))?
        .collect::<super::db::SqlResult<_>>()?;
    for ns in &owned {
        let members: Vec<i64> = conn
            .prepare("SELECT user_id FROM members WHERE ns = ?1 AND user_id != ?2")?
            .query_map(params![ns, user], |r| r.get(0))?
            .collect::<super::db::SqlResult<_>>()?;
        for m in members {
            remove_member(conn, *ns, m, 0, touched)?;
        }
        conn.exec("DELETE FROM share_blocks WHERE ns = ?1", [ns])?;
        conn.exec("DELETE FROM members WHERE ns = ?1", [ns])?;
    }
    let joined: Vec<i64> = conn
        .prepare("SELECT ns FROM members WHERE user_id = ?1")?
        .query_map([user], |r| r.get(0))?
        .collect::<super::db::SqlResult<_>>()?;
    for ns in joined {
        conn.exec("DELETE FROM members WHERE ns = ?1 AND user_id = ?2", params![ns, user])?;
    }
    Ok(())
}

/// Makes folder `node` (at `path` of root namespace `root`) a share owned
/// by `user`: its content moves to a new namespace, the folder's row
/// becomes the owner's mount. Nothing changes in the owner's tree.
fn make_share(conn: &Db<'_>, root: i64, user: i64, node: &Node, path: &RelPath) -> Result<i64> {
    let rows = subtree_rows(conn, root, node.id)?;
    let inner: Vec<i64> = rows.iter().copied().filter(|r| *r != node.id).collect();
    // A mount under it (shares do not nest): one indexed look per row.
    let mut is_mount =
        conn.prepare_cached("SELECT 1 FROM files WHERE id = ?1 AND mount IS NOT NULL AND deleted = 0")?;
    let mut mounts = None;
    for r in &inner {
        if is_mount.query_row([r], |_| Ok(())).optional()?.is_some() {
            mounts = Some(*r);
            break;
        }
    }
    if let Some(m) = mounts {
        let p = stored_path(conn, m)?.map(|p| p.to_string()).unwrap_or_default();
        return Err(Error::client(
            ErrorCode::NestedShare,
            format!("'{path}' holds the shared folder '{p}': shared folders cannot be nested; move it out first"),
        ));
    }
    let ns = conn.insert("INSERT INTO namespaces(owner, shared) VALUES (?1, 1)", [user])?;
    {
        let mut mv = conn.prepare_cached(
            "UPDATE files SET ns = ?1, parent = CASE WHEN parent = ?2 THEN 0 ELSE parent END WHERE id = ?3",
        )?;
        let mut links = conn.prepare_cached("UPDATE links SET ns = ?1 WHERE file = ?2")?;
        for r in &inner {
            mv.execute(params![ns, node.id, r])?;
            links.execute(params![ns, r])?;
        }
    }
    conn.exec("UPDATE files SET mount = ?1 WHERE id = ?2", params![ns, node.id])?;
    conn.exec(
        "INSERT INTO members(ns, user_id, role, mount, added) VALUES (?1, ?2, 0, ?3, ?4)",
        params![ns, user, node.id, now_ms()],
    )?;
    grant_blocks(conn, ns, &inner)?;
    Ok(ns)
}

/// The shares a user is in, as they see them.
fn list(conn: &Db<'_>, user: i64, only: Option<i64>) -> Result<Vec<Share>> {
    let mut s = conn.prepare_cached(
        "SELECT m.ns, m.role, m.mount, u.name FROM members m JOIN namespaces n ON n.id = m.ns
         JOIN users u ON u.id = n.owner WHERE m.user_id = ?1 ORDER BY m.ns",
    )?;
    let rows: Vec<(i64, i64, i64, String)> = s
        .query_map([user], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<super::db::SqlResult<_>>()?;
    let mut mem = conn.prepare_cached(
        "SELECT u.name, m.role FROM members m JOIN users u ON u.id = m.user_id WHERE m.ns = ?1 ORDER BY m.role, u.name",
    )?;
    let mut out = Vec::new();
    for (ns, role, mount, owner) in rows {
        if only.is_some_and(|o| o != ns) {
            continue;
        }
        let Some(path) = stored_path(conn, mount)? else { continue };
        let members = mem
            .query_map([ns], |r| Ok(Member { user: r.get(0)?, role: role_of(r.get(1)?) }))?
            .collect::<super::db::SqlResult<_>>()?;
        out.push(Share { id: ns, path, owner, role: role_of(role), members });
    }
    Ok(out)
}

/// The caller's share `id`, or the same 404 whether it does not exist or
/// they are not in it.
fn my_share(conn: &Db<'_>, caller: &Caller, id: i64) -> Result<Share> {
    list(conn, caller.user_id.0, Some(id))?
        .pop()
        .ok_or_else(|| Error::not_found(format!("you are in no share {id}: `ferry shares` lists yours")))
}

fn not_owner(share: &Share) -> Error {
    Error::client(
        ErrorCode::Forbidden,
        format!("'{}' is shared with you by {}: only they can change who is in it", share.path, share.owner),
    )
}

impl<B: Backend> Shares for SqlStore<B> {
    fn share(&self, caller: &Caller, path: &RelPath, with: &str, role: ShareRole) -> Result<(Share, Touched)> {
        let (caller, path, with) = (caller.clone(), path.clone(), with.to_owned());
        self.write(move |conn| {
            if role == ShareRole::Owner {
                return Err(Error::bad_request("a share has one owner; share as editor or viewer"));
            }
            let target = user_id(conn, &with)?;
            let loc = locate(conn, caller.ns.0, &path)?;
            if loc.ns != caller.ns.0 {
                return Err(Error::client(
                    ErrorCode::NestedShare,
                    format!(
                        "'{path}' is inside the shared folder '{}': shared folders cannot be nested; share '{}' itself",
                        loc.prefix, loc.prefix
                    ),
                ));
            }
            let node = resolve(conn, caller.ns.0, &path, true)?
                .ok_or_else(|| Error::not_found(format!("'{path}' does not exist")))?;
            if node.kind != EntryKind::Dir {
                return Err(Error::bad_request(format!(
                    "'{path}' is a file: share the folder holding it, or share the file by link (`ferry link`)"
                )));
            }
            let path = stored_path(conn, node.id)?.unwrap_or_else(|| path.clone());
            let mut touched = Touched::default();
            let ns = match node.mount {
                Some(ns) => {
                    let share = my_share(conn, &caller, ns)?;
                    if share.role != ShareRole::Owner {
                        return Err(not_owner(&share));
                    }
                    ns
                }
                None => {
                    if target == caller.user_id.0 {
                        return Err(Error::bad_request(format!("'{path}' is yours already")));
                    }
                    let ns = make_share(conn, caller.ns.0, caller.user_id.0, &node, &path)?;
                    // The owner's devices learn it is shared (its entry says so).
                    touched.journal(
                        caller.ns,
                        Seq(append(conn, caller.ns.0, ChangeOp::Mkdir, node.id, node.head, &path, None)?),
                    );
                    ns
                }
            };
            if target == caller.user_id.0 {
                return Err(Error::bad_request(format!("'{path}' is yours already")));
            }
            let existing: Option<i64> = conn
                .row("SELECT role FROM members WHERE ns = ?1 AND user_id = ?2", params![ns, target], |r| r.get(0))
                .optional()?;
            match existing {
                Some(r) if role_of(r) == role => {}
                Some(_) => set_role(conn, ns, target, role, &mut touched)?,
                None => add_member(conn, ns, target, role, caller.device_id.0, &mut touched)?,
            }
            Ok((my_share(conn, &caller, ns)?, touched))
        })
    }

    fn set_role(&self, caller: &Caller, ShareId(id): ShareId, user: &str, role: ShareRole) -> Result<(Share, Touched)> {
        let (caller, user) = (caller.clone(), user.to_owned());
        self.write(move |conn| {
            let share = my_share(conn, &caller, id)?;
            if share.role != ShareRole::Owner {
                return Err(not_owner(&share));
            }
            let target = user_id(conn, &user)?;
            if target == caller.user_id.0 || role == ShareRole::Owner {
                return Err(Error::bad_request("the owner's role does not change; share as editor or viewer"));
            }
            if !share.members.iter().any(|m| m.user == user) {
                return Err(Error::not_found(format!("{user} is not in '{}': share it with them first", share.path)));
            }
            let mut touched = Touched::default();
            set_role(conn, id, target, role, &mut touched)?;
            Ok((my_share(conn, &caller, id)?, touched))
        })
    }

    fn remove_member(&self, caller: &Caller, ShareId(id): ShareId, user: Option<&str>) -> Result<Touched> {
        let (caller, user) = (caller.clone(), user.map(str::to_owned));
        self.write(move |conn| {
            let share = my_share(conn, &caller, id)?;
            let mut touched = Touched::default();
            let targets: Vec<i64> = match &user {
                Some(name) => {
                    let target = user_id(conn, name)?;
                    if target == caller.user_id.0 {
                        if share.role == ShareRole::Owner {
                            return Err(Error::bad_request(format!(
                                "you own '{}': remove the others (`ferry unshare`) or delete the folder",
                                share.path
                            )));
                        }
                    } else if share.role != ShareRole::Owner {
                        return Err(not_owner(&share));
                    } else if !share.members.iter().any(|m| &m.user == name) {
                        return Err(Error::not_found(format!("{name} is not in '{}'", share.path)));
                    }
                    vec![target]
                }
                None => {
                    if share.role != ShareRole::Owner {
                        return Err(not_owner(&share));
                    }
                    conn.prepare("SELECT user_id FROM members WHERE ns = ?1 AND role != 0")?
                        .query_map([id], |r| r.get(0))?
                        .collect::<super::db::SqlResult<_>>()?
                }
            };
            for t in targets {
                remove_member(conn, id, t, caller.device_id.0, &mut touched)?;
            }
            Ok(touched)
        })
    }

    fn shares(&self, caller: &Caller) -> Result<Vec<Share>> {
        self.read(|c| list(c, caller.user_id.0, None))
    }
}

/// A member's new role, journaled for them as their mount folder again
/// (its entry carries the role).
fn set_role(conn: &Db<'_>, ns: i64, user: i64, role: ShareRole, touched: &mut Touched) -> Result<()> {
    conn.exec("UPDATE members SET role = ?1 WHERE ns = ?2 AND user_id = ?3", params![role_num(role), ns, user])?;
    if !role.can_write() {
        // A viewer publishes nothing of it: their links into it end.
        conn.exec("DELETE FROM links WHERE ns = ?1 AND owner = ?2", params![ns, user])?;
    }
    let mount: i64 =
        conn.row("SELECT mount FROM members WHERE ns = ?1 AND user_id = ?2", params![ns, user], |r| r.get(0))?;
    let root = root_of(conn, user)?;
    let head: i64 = conn.row("SELECT head FROM files WHERE id = ?1", [mount], |r| r.get(0))?;
    if let Some(path) = stored_path(conn, mount)? {
        touched.journal(NsId(root), Seq(append(conn, root, ChangeOp::Mkdir, mount, head, &path, None)?));
    }
    Ok(())
}
