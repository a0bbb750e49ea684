//! Commits: each operation undone alone when it fails (see [`commit_ops`]),
//! `parent_rev` checked, the journal appended and quota kept in the same
//! transaction; and the reads of files and their history.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::db::{Counter, Db, Lock, OptionalExtension, Table, params};
use ferry_shared::BlockId;
use ferry_shared::api::{
    BlockList, ChangeOp, CommitOp, Entry, EntryKind, ErrorCode, MAX_COMMIT_BLOCKS, RevId, Revision,
};
use ferry_shared::path::{RelPath, name_key};

use super::blocks::{insert_blocks, settle, settle_later, unstage};
use super::shares::{
    Audience, Loc, append, audience, check_write, grant_blocks, journal_appearing, live_items, locate, subtree_rows,
    under,
};
use super::tree::*;
use super::{Backend, SqlStore, Turn, pending};
use crate::error::{Error, Result};
use crate::meta::{Caller, CommitOutcome, FileVersion, Files, NewBlock, NsId, Seq, Touched, now_ms};

struct Ctx<'a> {
    conn: &'a Db<'a>,
    caller: &'a Caller,
    now: i64,
    /// The namespace the current operation works in (the caller's root or
    /// a share), where it is in the caller's tree, and whose quota it uses.
    ns: i64,
    prefix: RelPath,
    owner: i64,
    /// Journals appended to.
    touched: Touched,
    /// Root namespaces with pending uploads (each op drops those at its
    /// paths), and those that had some dropped.
    has_pending: HashMap<i64, bool>,
    pending_dropped: BTreeSet<i64>,
    /// The current namespace's [`audience`], looked up once per operation.
    audience: Option<(i64, Rc<Audience>)>,
    /// Block ids named in the commit that the caller cannot have (neither
    /// theirs nor in a share of theirs), found before the writer ran.
    unknown: &'a HashSet<BlockId>,
    /// The caller's blocks that commits used already, with their sizes
    /// (see [`super::blocks::Named`]).
    settled: &'a HashMap<BlockId, u32>,
    /// Block references the commit's lists may still make
    /// ([`MAX_COMMIT_BLOCKS`] in all): a put past it is refused unbuilt.
    blocks_left: u64,
    /// The caller's own blocks the commit names, other than `settled`,
    /// read at its start (see [`Ctx::read_own`]): their sizes, and whether
    /// they are only uploaded so far.
    own: HashMap<BlockId, (u32, bool)>,
    /// Those of `own` the current operation settled (only uploaded again
    /// if it is undone).
    settling: Vec<BlockId>,
}

struct NewVersion<'a> {
    file: i64,
    path: &'a RelPath,
    size: u64,
    mtime: i64,
    executable: bool,
    hash: &'a str,
    blocks: &'a [(BlockId, u32)],
    deleted: bool,
}

impl<'a> Ctx<'a> {
    /// A context in the caller's own tree.
    fn new(
        conn: &'a Db<'a>,
        caller: &'a Caller,
        now: i64,
        unknown: &'a HashSet<BlockId>,
        settled: &'a HashMap<BlockId, u32>,
    ) -> Self {
        Ctx {
            conn,
            caller,
            now,
            ns: caller.ns.0,
            prefix: RelPath::root(),
            owner: caller.user_id.0,
            touched: Touched::default(),
            has_pending: HashMap::new(),
            pending_dropped: BTreeSet::new(),
            audience: None,
            unknown,
            settled,
            blocks_left: MAX_COMMIT_BLOCKS,
            own: HashMap::new(),
            settling: Vec::new(),
        }
    }

    /// Reads the caller's own blocks among those `ops` name (other than
    /// those commits used before), a list of ids a statement: their rows
    /// stay as read while the commit runs (the caller's account is held),
    /// so the operations look up none of them one by one.
    fn read_own(&mut self, ops: &[CommitOp]) -> Result<()> {
        let mut ids: Vec<BlockId> = ops
            .iter()
            .filter_map(|op| match op {
                CommitOp::Put { blocks, .. } => Some(blocks.named_ids()),
                _ => None,
            })
            .flatten()
            .filter(|id| !self.settled.contains_key(id))
            .copied()
            .collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Ok(());
        }
        let rows: Vec<(BlockId, u32, bool)> = self.conn.query_list(
            "SELECT b.id, b.size, a.pending FROM account_blocks a JOIN blocks b ON b.id = a.block
             WHERE a.user_id = ?1 AND a.block IN {list}",
            &[&self.caller.user_id],
            &ids,
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        self.own = rows.into_iter().map(|(id, size, pending)| (id, (size, pending))).collect();
        Ok(())
    }

    /// Settles `uploaded`, the caller's blocks only uploaded so far, of
    /// `bytes` in all (see [`settle_later`]), noting them settled.
    fn settle_own(&mut self, uploaded: &[BlockId], bytes: u64) -> Result<()> {
        settle_later(self.conn, self.caller.user_id.0, uploaded)?;
        // (Rolled back with the operation if it fails after this.)
        unstage(self.conn, self.caller.user_id.0, bytes)?;
        self.mark_settled(uploaded);
        Ok(())
    }

    /// Notes `ids`, settled by the current operation, as no longer only
    /// uploaded (those of `own`; see [`Ctx::unsettle`]).
    fn mark_settled(&mut self, ids: &[BlockId]) {
        for id in ids {
            if let Some(own) = self.own.get_mut(id) {
                own.1 = false;
                self.settling.push(*id);
            }
        }
    }

    /// The current operation was undone: what it settled is only uploaded
    /// again.
    fn unsettle(&mut self) {
        for id in std::mem::take(&mut self.settling) {
            if let Some(own) = self.own.get_mut(&id) {
                own.1 = true;
            }
        }
    }

    fn insert_version(&self, v: NewVersion<'_>) -> Result<i64> {
        if let Some((_, rev)) = self.conn.new_ids(false)? {
            self.send_version(rev, &v)?;
            return Ok(rev);
        }
        Ok(self.insert_version_of(&v, None)?.0)
    }

    /// Sends version `v` with the id `rev` taken ahead, its answer not awaited.
    fn send_version(&self, rev: i64, v: &NewVersion<'_>) -> Result<()> {
        let blocks = ferry_shared::block::encode_list(v.blocks.iter().copied());
        Ok(self.conn.add_row(
            &VERSIONS,
            params![
                rev,
                v.file,
                v.path.as_str(),
                v.size as i64,
                v.mtime,
                v.executable,
                v.hash,
                blocks,
                v.deleted,
                self.now,
                self.caller.device_id
            ],
        )?)
    }

    /// Inserts version `v`; returns its id and its file's. With `new`
    /// (`(parent, name key)` of a file row sent ahead, see
    /// [`Ctx::create_file`]) the file is found by its name.
    fn insert_version_of(&self, v: &NewVersion<'_>, new: Option<(i64, &str)>) -> Result<(i64, i64)> {
        let blocks = ferry_shared::block::encode_list(v.blocks.iter().copied());
        let cols =
            "INSERT INTO file_versions(file, path, size, mtime, executable, hash, blocks, deleted, created, device)";
        let rest: [&dyn super::db::Arg; 9] = [
            &v.path.as_str(),
            &(v.size as i64),
            &v.mtime,
            &v.executable,
            &v.hash,
            &blocks,
            &v.deleted,
            &self.now,
            &self.caller.device_id,
        ];
        let row = |r: &super::db::Row<'_>| Ok((r.get(0)?, r.get(1)?));
        Ok(match new {
            None => {
                let mut args: Vec<&dyn super::db::Arg> = vec![&v.file];
                args.extend(rest);
                self.conn.row(
                    &format!("{cols} VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING id, file"),
                    &args[..],
                    row,
                )?
            }
            Some((parent, key)) => {
                let mut args: Vec<&dyn super::db::Arg> = vec![&parent];
                args.extend(rest);
                args.extend([&self.ns as &dyn super::db::Arg, &key]);
                self.conn.row(
                    &format!(
                        "{cols} VALUES ((SELECT id FROM files WHERE ns = ?11 AND parent = ?1 AND name_key = ?12 AND deleted = 0),
                         ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING id, file"
                    ),
                    &args[..],
                    row,
                )?
            }
        })
    }

    /// A new file row named `name` in folder `parent`, with its first
    /// version `v` as its head: one round trip (the row is sent ahead, the
    /// version finds it by its name). Returns `(file, rev)`.
    fn create_file(&mut self, parent: i64, name: &str, v: NewVersion<'_>) -> Result<(i64, i64)> {
        let (ns, key) = (self.ns, name_key(name));
        if let Some((Some(id), rev)) = self.conn.new_ids(true)? {
            // Both ids known ahead: the row with its head, then the version,
            // neither answer awaited.
            self.conn.add_tree_row(
                &FILES,
                params![id, ns, parent, name, key, kind_num(EntryKind::File), rev, false],
                |c| {
                    let kind = EntryKind::File;
                    let node = Node { id, parent, kind, head: rev, deleted: false, mount: None, name: name.to_owned() };
                    c.created(ns, key.clone().into_owned(), node)
                },
            )?;
            self.send_version(rev, &NewVersion { file: id, ..v })?;
            return Ok((id, rev));
        }
        // (The cache is made true below, once the row's id is known.)
        self.conn.exec_tree(
            "INSERT INTO files(ns, parent, name, name_key, kind, head, deleted) VALUES (?1, ?2, ?3, ?4, 0, 0, 0)",
            params![ns, parent, name, key],
            |_| {},
        )?;
        let (rev, id) = self.insert_version_of(&v, Some((parent, &key)))?;
        let node =
            Node { id, parent, kind: EntryKind::File, head: rev, deleted: false, mount: None, name: name.to_owned() };
        self.conn.cache().created(ns, key.into_owned(), node);
        self.set_head(id, rev)?;
        Ok((id, rev))
    }

    /// A new head of `file` with the content of its revision `from`, at `path`.
    fn copy_version(&self, file: i64, from: i64, path: &RelPath) -> Result<i64> {
        let old = version(self.conn, from)?;
        let rev = self.insert_version(NewVersion {
            file,
            path,
            size: old.size,
            mtime: old.mtime,
            executable: old.executable,
            hash: &old.hash,
            blocks: &old.blocks,
            deleted: false,
        })?;
        self.set_head(file, rev)?;
        Ok(rev)
    }

    /// Row `file`'s head is now `rev`.
    fn set_head(&self, file: i64, rev: i64) -> Result<()> {
        self.conn.set_later(&HEAD, file, rev)?;
        self.conn.cache().head_moved(file, rev);
        Ok(())
    }

    /// Who sees the current namespace, and where (see [`audience`]).
    fn audience(&mut self) -> Result<Rc<Audience>> {
        match &self.audience {
            Some((ns, a)) if *ns == self.ns => Ok(Rc::clone(a)),
            // The caller's own tree: theirs alone (a root namespace is
            // never shared), its lock held since the write began.
            _ if self.ns == self.caller.ns.0 => {
                let a = Rc::new(vec![(self.ns, RelPath::root())]);
                self.audience = Some((self.ns, Rc::clone(&a)));
                Ok(a)
            }
            _ => {
                let a = Rc::new(audience(self.conn, self.ns)?);
                self.audience = Some((self.ns, Rc::clone(&a)));
                Ok(a)
            }
        }
    }

    /// Works in `loc`'s namespace from now on.
    fn enter(&mut self, loc: &Loc) -> Result<()> {
        self.conn.enter(Lock::Namespace(loc.ns))?;
        self.ns = loc.ns;
        self.prefix = loc.prefix.clone();
        self.owner = if loc.ns == self.caller.ns.0 {
            self.caller.user_id.0
        } else {
            self.conn.row("SELECT owner FROM namespaces WHERE id = ?1", [loc.ns], |r| r.get(0))?
        };
        Ok(())
    }

    /// An entry of the current namespace as the caller sees it.
    fn view(&self, mut e: Entry) -> Result<Entry> {
        e.path = under(&self.prefix, &e.path)?;
        Ok(e)
    }

    /// Journals a change of the current namespace in the journal of
    /// everyone who sees it, at their own path.
    fn journal(&mut self, op: ChangeOp, file: i64, rev: i64, path: &RelPath, from: Option<&RelPath>) -> Result<()> {
        for &(root, ref prefix) in self.audience()?.iter() {
            let from = from.map(|f| under(prefix, f)).transpose()?;
            let seq = append(self.conn, root, op, file, rev, &under(prefix, path)?, from.as_ref())?;
            self.touched.journal(NsId(root), Seq(seq));
        }
        Ok(())
    }

    fn adjust_used(&self, delta: i64) -> Result<()> {
        adjust_used(self.conn, self.owner, delta)
    }

    fn check_quota(&self, delta: i64) -> Result<()> {
        check_quota(self.conn, self.owner, delta)
    }
}

/// Rows a commit adds without awaiting them (see [`Db::add_row`]).
static FILES: Table = Table {
    insert: "INSERT INTO files(id, ns, parent, name, name_key, kind, head, deleted)",
    types: &["int8", "int8", "int8", "text", "text", "int8", "int8", "int8"],
};
static VERSIONS: Table = Table {
    insert: "INSERT INTO file_versions(id, file, path, size, mtime, executable, hash, blocks, deleted, created, device)",
    types: &["int8", "int8", "text", "int8", "int8", "int8", "text", "bytea", "int8", "int8", "int8"],
};
/// What a commit sets without awaiting it (see [`Db::set_later`]): a
/// file's head revision, an account's bytes in files.
static HEAD: Counter = Counter { table: "files", column: "head" };
static USED: Counter = Counter { table: "users", column: "used" };

fn adjust_used(conn: &Db<'_>, user: i64, delta: i64) -> Result<()> {
    if delta != 0 {
        conn.enter(Lock::Account(user))?;
        let known = {
            let mut cache = conn.cache();
            cache.used_changed(user, delta);
            cache.usage(user)
        };
        match known {
            // (The account's lock is held: its use is what this write says.)
            Some((_, used)) => conn.set_later(&USED, user, used)?,
            None => conn.exec_later(
                "UPDATE users SET used = CASE WHEN used + ?1 < 0 THEN 0 ELSE used + ?1 END WHERE id = ?2",
                params![delta, user],
            )?,
        }
    }
    Ok(())
}

fn check_quota(conn: &Db<'_>, user: i64, delta: i64) -> Result<()> {
    {
        if delta <= 0 {
            return Ok(());
        }
        conn.enter(Lock::Account(user))?;
        // (The account's lock is held: its row stays as read or set here.)
        let cached = conn.cache().usage(user);
        let (quota, used) = match cached {
            Some(u) => u,
            None => {
                let (quota, used) =
                    conn.row("SELECT quota, used FROM users WHERE id = ?1", [user], |r| Ok((r.get(0)?, r.get(1)?)))?;
                conn.cache().usage_read(user, quota, used);
                (quota, used)
            }
        };
        if used + delta > quota {
            return Err(Error::client(
                ErrorCode::QuotaExceeded,
                format!(
                    "quota exceeded: {used} of {quota} bytes used, this change needs {delta} more; delete files or ask the admin for more space"
                ),
            ));
        }
        Ok(())
    }
}

impl Ctx<'_> {
    /// Reads at once what a commit in the caller's tree reads on its way,
    /// each a round trip of its own otherwise: their journal's sequence
    /// (which this write holds, with their namespace), whether their tree
    /// has pending uploads (its pending uploads are this write's too),
    /// their quota and use (their account held as well).
    fn read_ahead(&mut self) -> Result<()> {
        let (ns, user) = (self.caller.ns.0, self.caller.user_id.0);
        let (seq, pending, quota, used): (i64, bool, i64, i64) = self.conn.row(
            "SELECT n.seq, EXISTS(SELECT 1 FROM pending_uploads p WHERE p.ns = n.id), u.quota, u.used
             FROM namespaces n, users u WHERE n.id = ?1 AND u.id = ?2",
            params![ns, user],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        self.has_pending.insert(ns, pending);
        let mut cache = self.conn.cache();
        if cache.usage(user).is_none() {
            cache.usage_read(user, quota, used);
        }
        cache.seq_read(ns, seq);
        Ok(())
    }

    /// Folder id for `path`, creating missing folders (each journaled as mkdir).
    fn ensure_dir(&mut self, path: &RelPath) -> Result<i64> {
        let mut parent = 0;
        let mut cur = RelPath::root();
        for seg in path.segments().map(str::to_owned).collect::<Vec<_>>() {
            cur = cur.join(&seg)?;
            parent = match child(self.conn, self.ns, parent, &seg, true)? {
                Some(n) if n.kind == EntryKind::Dir => n.id,
                Some(n) => {
                    let head = node_entry(self.conn, &n, &cur)?;
                    return Err(Error::conflict(format!("'{cur}' is a file, not a folder"), Some(head)));
                }
                None => self.create_dir(parent, &seg, &cur)?.0,
            };
        }
        Ok(parent)
    }

    /// Creates a folder row with its first version; returns `(id, rev)`.
    /// (A file's row comes with its version: [`Ctx::create_file`].)
    fn create_dir(&mut self, parent: i64, name: &str, path: &RelPath) -> Result<(i64, i64)> {
        let (ns, key) = (self.ns, name_key(name));
        let kind = EntryKind::Dir;
        let id = self.conn.insert_tree(
            "INSERT INTO files(ns, parent, name, name_key, kind, head, deleted) VALUES (?1, ?2, ?3, ?4, ?5, 0, 0)",
            params![ns, parent, name, key, kind_num(kind)],
            |c, id| {
                let node = Node { id, parent, kind, head: 0, deleted: false, mount: None, name: name.to_owned() };
                c.created(ns, key.clone().into_owned(), node)
            },
        )?;
        Ok((id, self.new_dir_version(id, path)?))
    }

    fn entry(&self, id: i64, kind: EntryKind, path: &RelPath, rev: i64) -> Result<Entry> {
        Ok(entry_of(id, kind, path, rev, &version(self.conn, rev)?))
    }

    fn check_parent_rev(&self, node: &Node, path: &RelPath, parent_rev: Option<RevId>) -> Result<()> {
        if let Some(p) = parent_rev
            && p != node.head
        {
            let head = node_entry(self.conn, node, path)?;
            return Err(Error::conflict(
                format!("'{path}' changed since revision {p}: the head is now {}", node.head),
                Some(head),
            ));
        }
        Ok(())
    }

    /// A change at (or under) these paths (of the current namespace) makes
    /// pending uploads there stale, in every journal that shows them.
    fn drop_pending_at(&mut self, paths: &[&RelPath]) -> Result<()> {
        for &(root, ref prefix) in self.audience()?.iter() {
            let has = match self.has_pending.get(&root) {
                Some(h) => *h,
                None => *self.has_pending.entry(root).or_insert(pending::any(self.conn, root)?),
            };
            if !has {
                continue;
            }
            for p in paths {
                let p = under(prefix, p)?;
                // A file announced at a folder the change goes through (its
                // commit would fail: the path holds a folder now).
                let mut dropped = pending::drop_under(self.conn, root, &p)?;
                let mut up = p.parent();
                while let Some(a) = up.filter(|a| !a.is_root()) {
                    dropped += pending::drop_at(self.conn, root, &a)?;
                    up = a.parent();
                }
                if dropped > 0 {
                    self.pending_dropped.insert(root);
                }
            }
        }
        Ok(())
    }

    /// One operation: its paths located in the caller's tree (following a
    /// shared folder's mount into the share), run there, and its entry (or
    /// the conflicting head) answered at the caller's paths.
    fn apply(&mut self, op: CommitOp) -> Result<Entry> {
        let root = self.caller.ns.0;
        let conn = self.conn;
        let (loc, to) = match &op {
            CommitOp::Move { from, to, .. } => (locate(conn, root, from)?, Some(locate(conn, root, to)?)),
            CommitOp::Put { path, .. }
            | CommitOp::Delete { path, .. }
            | CommitOp::Rmdir { path, .. }
            | CommitOp::Mkdir { path }
            | CommitOp::Restore { path, .. } => (locate(conn, root, path)?, None),
        };
        check_write(conn, &loc)?;
        if let Some(t) = &to {
            check_write(conn, t)?;
        }
        self.enter(&loc)?;
        let inner = loc.inner.clone();
        let op = match op {
            CommitOp::Put { parent_rev, size, mtime, executable, blocks, .. } => {
                CommitOp::Put { path: inner, parent_rev, size, mtime, executable, blocks }
            }
            CommitOp::Delete { parent_rev, .. } => CommitOp::Delete { path: inner, parent_rev },
            CommitOp::Rmdir { parent_rev, .. } => {
                if loc.ns == root
                    && let Some(node) = resolve(conn, root, &inner, true)?
                    && node.mount.is_some()
                {
                    return self.unmount(&node, &canonical(conn, root, &inner, false)?, parent_rev);
                }
                CommitOp::Rmdir { path: inner, parent_rev }
            }
            CommitOp::Move { parent_rev, .. } => {
                let to = to.expect("a move has a target");
                if to.ns != loc.ns {
                    let r = self.move_across(&loc, &to, parent_rev);
                    return r.and_then(|e| self.view(e)).map_err(|e| self.view_error(e));
                }
                CommitOp::Move { from: inner, to: to.inner, parent_rev }
            }
            CommitOp::Mkdir { .. } => CommitOp::Mkdir { path: inner },
            CommitOp::Restore { rev, .. } => CommitOp::Restore { path: inner, rev },
        };
        let r = self.apply_inner(op);
        r.and_then(|e| self.view(e)).map_err(|e| self.view_error(e))
    }

    /// A conflict's head at the caller's path.
    fn view_error(&self, e: Error) -> Error {
        match e {
            Error::Conflict { message, head: Some(h) } => match self.view(*h) {
                Ok(h) => Error::Conflict { message, head: Some(Box::new(h)) },
                Err(e) => e,
            },
            e => e,
        }
    }

    /// `op`, its paths inside the current namespace.
    fn apply_inner(&mut self, op: CommitOp) -> Result<Entry> {
        let (conn, ns) = (self.conn, self.ns);
        let op = match op {
            CommitOp::Put { path, parent_rev, size, mtime, executable, blocks } => {
                CommitOp::Put { path: canonical(conn, ns, &path, false)?, parent_rev, size, mtime, executable, blocks }
            }
            CommitOp::Delete { path, parent_rev } => {
                CommitOp::Delete { path: canonical(conn, ns, &path, false)?, parent_rev }
            }
            CommitOp::Rmdir { path, parent_rev } => {
                CommitOp::Rmdir { path: canonical(conn, ns, &path, false)?, parent_rev }
            }
            CommitOp::Move { from, to, parent_rev } => CommitOp::Move {
                from: canonical(conn, ns, &from, false)?,
                to: canonical(conn, ns, &to, true)?,
                parent_rev,
            },
            CommitOp::Mkdir { path } => CommitOp::Mkdir { path: canonical(conn, ns, &path, false)? },
            CommitOp::Restore { path, rev } => CommitOp::Restore { path: canonical(conn, ns, &path, false)?, rev },
        };
        match op {
            CommitOp::Put { path, parent_rev, size, mtime, executable, blocks } => {
                let entry = self.put(&path, parent_rev, size, mtime, executable, blocks)?;
                self.drop_pending_at(&[&path, &entry.path])?;
                Ok(entry)
            }
            CommitOp::Delete { path, parent_rev } => {
                let entry = self.delete(&path, parent_rev, EntryKind::File)?;
                self.drop_pending_at(&[&path])?;
                Ok(entry)
            }
            CommitOp::Rmdir { path, parent_rev } => {
                let entry = self.delete(&path, parent_rev, EntryKind::Dir)?;
                self.drop_pending_at(&[&path])?;
                Ok(entry)
            }
            CommitOp::Move { from, to, parent_rev } => {
                let entry = self.move_node(&from, &to, parent_rev)?;
                self.drop_pending_at(&[&from, &to])?;
                Ok(entry)
            }
            CommitOp::Mkdir { path } => {
                if path.is_root() {
                    return Err(Error::bad_request("the root folder always exists"));
                }
                let parent = path.parent().expect("not root");
                if let Some(n) = resolve(self.conn, self.ns, &path, true)? {
                    if n.kind == EntryKind::Dir {
                        return node_entry(self.conn, &n, &path);
                    }
                    let head = node_entry(self.conn, &n, &path)?;
                    return Err(Error::conflict(format!("'{path}' is a file"), Some(head)));
                }
                let parent_id = self.ensure_dir(&parent)?;
                let name = path.name().expect("not root");
                let (id, rev) = self.create_dir(parent_id, name, &path)?;
                self.entry(id, EntryKind::Dir, &path, rev)
            }
            CommitOp::Restore { path, rev } => {
                let entry = self.restore(&path, rev)?;
                self.drop_pending_at(&[&path])?;
                Ok(entry)
            }
        }
    }

    /// The blocks of a put's list with their sizes: the list's length
    /// checked against the file's size before an edit is expanded, its
    /// copies against the parent's list, every block against what the
    /// caller may use (their own, or in a share the share's).
    fn resolve_blocks(&mut self, list: BlockList, parent: Option<&Version>, size: u64) -> Result<Vec<(BlockId, u32)>> {
        let mut unknown: Vec<BlockId> = list.named_ids().filter(|id| self.unknown.contains(id)).copied().collect();
        if !unknown.is_empty() {
            let mut seen = HashSet::new();
            unknown.retain(|id| seen.insert(*id));
            return Err(Error::MissingBlocks { missing: unknown });
        }
        let n = list.n_blocks();
        if n > self.blocks_left {
            return Err(Error::client(
                ErrorCode::PayloadTooLarge,
                format!(
                    "this commit's block lists make more than {MAX_COMMIT_BLOCKS} block references: commit fewer \
                     files at a time"
                ),
            ));
        }
        self.blocks_left -= n;
        let parent = parent.map(|p| p.blocks.as_slice());
        let ids = list
            .expand(parent, |(id, _)| *id, ferry_shared::chunk::max_blocks(size))
            .map_err(|e| Error::bad_request(e.to_string()))?;
        let mut seen = HashSet::new();
        let distinct: Vec<BlockId> = ids.iter().copied().filter(|id| seen.insert(*id)).collect();
        drop(seen);
        let known = |id: &BlockId| self.settled.get(id).or_else(|| self.own.get(id).map(|(size, _)| size));
        if let Some(sizes) = distinct.iter().map(|id| known(id).map(|s| (*id, *s))).collect::<Option<HashMap<_, _>>>() {
            // All the caller's, read before: nothing to look up, those only
            // uploaded so far settled without waiting.
            let uploaded: Vec<BlockId> =
                distinct.iter().filter(|id| self.own.get(id).is_some_and(|o| o.1)).copied().collect();
            if !uploaded.is_empty() {
                let bytes = uploaded.iter().map(|id| u64::from(sizes[id])).sum();
                self.settle_own(&uploaded, bytes)?;
            }
            return Ok(ids.into_iter().map(|id| (id, sizes[&id])).collect());
        }
        let mut sizes: HashMap<BlockId, u32> = HashMap::with_capacity(distinct.len());
        // Those only uploaded so far.
        let mut uploaded = BTreeSet::new();
        // The caller's own blocks (and whether they were only uploaded so
        // far), or (in a share) the share's: each half found from the ids,
        // through the keys. (An id both the caller's and the share's comes
        // twice, and a padded one more often.)
        let rows: Vec<(BlockId, u32, bool)> = self.conn.query_list(
            "SELECT b.id, b.size, a.pending FROM account_blocks a JOIN blocks b ON b.id = a.block
             WHERE a.user_id = ?1 AND a.block IN {list}
             UNION ALL
             SELECT b.id, b.size, 0 FROM share_blocks s JOIN blocks b ON b.id = s.block
             WHERE s.ns = ?2 AND s.block IN {list}",
            &[&self.caller.user_id, &self.ns],
            &distinct,
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        for (id, size, pending) in rows {
            sizes.insert(id, size);
            if pending {
                uploaded.insert(id);
            }
        }
        let missing: Vec<BlockId> = distinct.into_iter().filter(|id| !sizes.contains_key(id)).collect();
        if !missing.is_empty() {
            return Err(Error::MissingBlocks { missing });
        }
        let uploaded: Vec<BlockId> = uploaded.into_iter().collect();
        let settled = settle(self.conn, self.caller.user_id.0, &uploaded)?;
        // (Rolled back with the operation if it fails after this.)
        unstage(self.conn, self.caller.user_id.0, settled)?;
        self.mark_settled(&uploaded);
        Ok(ids.into_iter().map(|id| (id, sizes[&id])).collect())
    }

    fn put(
        &mut self,
        path: &RelPath,
        parent_rev: Option<RevId>,
        size: u64,
        mtime: i64,
        executable: bool,
        list: BlockList,
    ) -> Result<Entry> {
        if size > ferry_shared::MAX_FILE_SIZE {
            return Err(Error::client(ErrorCode::PayloadTooLarge, "files larger than 10 GiB are not accepted"));
        }
        let parent_path = path.parent().ok_or_else(|| Error::bad_request("cannot write a file at the root"))?;
        let name = path.name().expect("not root");
        let existing = resolve(self.conn, self.ns, path, false)?.filter(|n| {
            // A deleted row is this file's history only if it was a file in
            // the same folder (a deleted folder of that name is not revived as
            // a file; neither is a row under a different, deleted, folder).
            !n.deleted
                || (n.kind == EntryKind::File
                    && resolve(self.conn, self.ns, &parent_path, true).ok().flatten().map(|p| p.id).unwrap_or(0)
                        == n.parent)
        });
        let (old_size, parent_version) = match &existing {
            Some(n) if !n.deleted => {
                if n.kind == EntryKind::Dir {
                    let head = node_entry(self.conn, n, path)?;
                    return Err(Error::conflict(format!("'{path}' is a folder"), Some(head)));
                }
                let Some(p) = parent_rev else {
                    let head = node_entry(self.conn, n, path)?;
                    return Err(Error::conflict(
                        format!("'{path}' already exists (give parent_rev to replace it)"),
                        Some(head),
                    ));
                };
                self.check_parent_rev(n, path, Some(p))?;
                let v = version(self.conn, n.head)?;
                (v.size, Some(v))
            }
            Some(n) => {
                if parent_rev.is_some() && parent_rev != Some(n.head) {
                    let head = node_entry(self.conn, n, path)?;
                    return Err(Error::conflict(format!("'{path}' was deleted"), Some(head)));
                }
                (0, None)
            }
            None => {
                if let Some(p) = parent_rev {
                    return Err(Error::conflict(format!("'{path}' does not exist any more (parent_rev {p})"), None));
                }
                (0, None)
            }
        };
        let blocks = self.resolve_blocks(list, parent_version.as_ref(), size)?;
        let total: u64 = blocks.iter().map(|(_, s)| u64::from(*s)).sum();
        if total != size {
            return Err(Error::bad_request(format!("size is {size} but the blocks add up to {total} bytes")));
        }
        self.check_quota(size as i64 - old_size as i64)?;
        let hash = ferry_shared::block::content_hash(size, blocks.iter().map(|(id, _)| id));
        let version =
            |file| NewVersion { file, path, size, mtime, executable, hash: &hash, blocks: &blocks, deleted: false };
        let (id, op, rev) = match existing {
            Some(n) if !n.deleted => {
                let rev = self.insert_version(version(n.id))?;
                self.set_head(n.id, rev)?;
                (n.id, ChangeOp::Modify, rev)
            }
            Some(n) => {
                // Revive the deleted row: the history continues.
                let parent_id = self.ensure_dir(&parent_path)?;
                self.conn.exec(
                    "UPDATE files SET deleted = 0, parent = ?1, name = ?2, name_key = ?3 WHERE id = ?4",
                    params![parent_id, name, name_key(name), n.id],
                )?;
                let rev = self.insert_version(version(n.id))?;
                self.set_head(n.id, rev)?;
                (n.id, ChangeOp::Add, rev)
            }
            None => {
                let parent_id = self.ensure_dir(&parent_path)?;
                let (id, rev) = self.create_file(parent_id, name, version(0))?;
                (id, ChangeOp::Add, rev)
            }
        };
        if self.ns != self.caller.ns.0 {
            // Every member may read what an editor wrote into the share.
            for (b, _) in &blocks {
                self.conn.exec_later(
                    "INSERT INTO share_blocks(ns, block) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                    params![self.ns, b.as_bytes()],
                )?;
            }
        }
        self.adjust_used(size as i64 - old_size as i64)?;
        self.journal(op, id, rev, path, None)?;
        // The version just made, as `version` would read it back.
        let made = Version {
            size,
            mtime,
            executable,
            hash,
            blocks: Vec::new(),
            deleted: false,
            created: self.now,
            device: self.caller.device.clone(),
        };
        Ok(entry_of(id, EntryKind::File, path, rev, &made))
    }

    fn delete(&mut self, path: &RelPath, parent_rev: Option<RevId>, kind: EntryKind) -> Result<Entry> {
        let node = resolve(self.conn, self.ns, path, true)?
            .ok_or_else(|| Error::not_found(format!("'{path}' does not exist")))?;
        if node.kind != kind {
            let head = node_entry(self.conn, &node, path)?;
            let msg = match kind {
                EntryKind::File => format!("'{path}' is a folder: use rmdir"),
                EntryKind::Dir => format!("'{path}' is a file: use delete"),
            };
            return Err(Error::conflict(msg, Some(head)));
        }
        self.check_parent_rev(&node, path, parent_rev)?;
        if kind == EntryKind::Dir && has_live_children(self.conn, self.ns, node.id)? {
            return Err(Error::client(ErrorCode::NotEmpty, format!("folder '{path}' is not empty")));
        }
        let old = version(self.conn, node.head)?;
        let rev = self.insert_version(NewVersion {
            file: node.id,
            path,
            size: 0,
            mtime: old.mtime,
            executable: false,
            hash: "",
            blocks: &[],
            deleted: true,
        })?;
        self.conn.exec("UPDATE files SET head = ?1, deleted = 1 WHERE id = ?2", params![rev, node.id])?;
        // Its links end for good: a file made again at the path, or this
        // one restored, is not what was shared.
        self.conn.exec("DELETE FROM links WHERE file = ?1", [node.id])?;
        self.adjust_used(-(old.size as i64))?;
        let op = if kind == EntryKind::Dir { ChangeOp::Rmdir } else { ChangeOp::Delete };
        self.journal(op, node.id, rev, path, None)?;
        self.entry(node.id, kind, path, rev)
    }

    fn move_node(&mut self, from: &RelPath, to: &RelPath, parent_rev: Option<RevId>) -> Result<Entry> {
        if from.is_root() || to.is_root() {
            return Err(Error::bad_request("the root folder cannot be moved or replaced"));
        }
        let node = resolve(self.conn, self.ns, from, true)?
            .ok_or_else(|| Error::not_found(format!("'{from}' does not exist")))?;
        self.check_parent_rev(&node, from, parent_rev)?;
        if to == from {
            // Already there (the paths differ only in how folders above are
            // spelled, which this move cannot change): nothing to record.
            return node_entry(self.conn, &node, from);
        }
        if node.kind == EntryKind::Dir && to.starts_with(from) {
            return Err(Error::bad_request(format!("cannot move folder '{from}' into itself ('{to}')")));
        }
        if let Some(other) = resolve(self.conn, self.ns, to, true)?
            && other.id != node.id
        {
            let head = node_entry(self.conn, &other, to)?;
            return Err(Error::conflict(format!("'{to}' already exists"), Some(head)));
        }
        let parent_id = self.ensure_dir(&to.parent().expect("not root"))?;
        let name = to.name().expect("not root");
        self.conn.exec(
            "UPDATE files SET parent = ?1, name = ?2, name_key = ?3 WHERE id = ?4",
            params![parent_id, name, name_key(name), node.id],
        )?;
        let rev = self.copy_version(node.id, node.head, to)?;
        self.journal(ChangeOp::Move, node.id, rev, to, Some(from))?;
        self.entry(node.id, node.kind, to, rev)
    }

    /// Removes a shared folder's mount from the caller's tree: a member
    /// leaves the share; its owner, once it is empty, ends the share (every
    /// member's mount goes) and deletes the folder.
    fn unmount(&mut self, node: &Node, path: &RelPath, parent_rev: Option<RevId>) -> Result<Entry> {
        let conn = self.conn;
        self.check_parent_rev(node, path, parent_rev)?;
        let share = node.mount.expect("a mount");
        conn.enter(Lock::Namespace(share))?;
        let role: Option<i64> =
            conn.row("SELECT role FROM members WHERE mount = ?1", [node.id], |r| r.get(0)).optional()?;
        if role.is_some_and(|r| r != 0) {
            super::shares::remove_member(
                conn,
                share,
                self.caller.user_id.0,
                self.caller.device_id.0,
                &mut self.touched,
            )?;
            let head: i64 = conn.row("SELECT head FROM files WHERE id = ?1", [node.id], |r| r.get(0))?;
            return self.entry(node.id, EntryKind::Dir, path, head);
        }
        if has_live_children(conn, share, 0)? {
            return Err(Error::client(ErrorCode::NotEmpty, format!("shared folder '{path}' is not empty")));
        }
        let others: Vec<i64> = conn
            .prepare_cached("SELECT user_id FROM members WHERE ns = ?1 AND role != 0")?
            .query_map([share], |r| r.get(0))?
            .collect::<super::db::SqlResult<_>>()?;
        for user in others {
            super::shares::remove_member(conn, share, user, self.caller.device_id.0, &mut self.touched)?;
        }
        conn.exec("DELETE FROM members WHERE ns = ?1", [share])?;
        conn.exec("DELETE FROM share_blocks WHERE ns = ?1", [share])?;
        conn.exec("UPDATE files SET mount = NULL WHERE id = ?1", [node.id])?;
        self.delete(path, None, EntryKind::Dir)
    }

    /// Moves an item between namespaces (into or out of a shared folder, or
    /// between two): its rows and history go with it, and its links where
    /// their makers may still link (see `links`), its bytes
    /// change quota if the owners differ, and each journal says what its
    /// reader sees: a move where both places are visible, a deletion where
    /// only the old one is, the whole item appearing where only the new one is.
    fn move_across(&mut self, from: &Loc, to: &Loc, parent_rev: Option<RevId>) -> Result<Entry> {
        let conn = self.conn;
        self.enter(from)?;
        let from_path = canonical(conn, from.ns, &from.inner, false)?;
        if from_path.is_root() || to.inner.is_root() {
            return Err(Error::bad_request("a shared folder's root cannot be moved or replaced"));
        }
        let shown = under(&from.prefix, &from_path)?;
        let node = resolve(conn, from.ns, &from_path, true)?
            .ok_or_else(|| Error::not_found(format!("'{shown}' does not exist")))?;
        self.check_parent_rev(&node, &from_path, parent_rev)?;
        let rows = subtree_rows(conn, from.ns, node.id)?;
        let mut size = 0i64;
        {
            let mut s = conn.prepare_cached(
                "SELECT f.kind, f.deleted, f.mount, v.size FROM files f JOIN file_versions v ON v.id = f.head WHERE f.id = ?1",
            )?;
            for r in &rows {
                let (kind, deleted, mount, sz): (i64, bool, Option<i64>, i64) =
                    s.query_row([r], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
                if mount.is_some() && !deleted {
                    return Err(Error::client(
                        ErrorCode::NestedShare,
                        format!(
                            "shared folders cannot be nested: '{}' holds or is a shared folder, '{}' is in one",
                            under(&from.prefix, &from_path)?,
                            under(&to.prefix, &to.inner)?
                        ),
                    ));
                }
                if kind == 0 && !deleted {
                    size += sz;
                }
            }
        }
        let (from_owner, from_aud) = (self.owner, audience(conn, from.ns)?);
        self.enter(to)?;
        let to_path = canonical(conn, to.ns, &to.inner, true)?;
        if let Some(other) = resolve(conn, to.ns, &to_path, true)? {
            let head = node_entry(conn, &other, &to_path)?;
            return Err(Error::conflict(format!("'{}' already exists", under(&to.prefix, &to_path)?), Some(head)));
        }
        if self.owner != from_owner {
            self.check_quota(size)?;
            adjust_used(conn, from_owner, -size)?;
            self.adjust_used(size)?;
        }
        let parent_id = self.ensure_dir(&to_path.parent().expect("not root"))?;
        grant_blocks(conn, to.ns, &rows)?;
        // The item first, at its new place (its old parent and name may be
        // taken there), then what is under it.
        let name = to_path.name().expect("not root");
        conn.exec(
            "UPDATE files SET ns = ?1, parent = ?2, name = ?3, name_key = ?4 WHERE id = ?5",
            params![to.ns, parent_id, name, name_key(name), node.id],
        )?;
        {
            let mut mv = conn.prepare_cached("UPDATE files SET ns = ?1 WHERE id = ?2")?;
            let mut links = conn.prepare_cached("UPDATE links SET ns = ?1 WHERE file = ?2")?;
            for r in &rows {
                mv.execute(params![to.ns, r])?;
                links.execute(params![to.ns, r])?;
            }
        }
        super::links::drop_unreachable(conn, to.ns, &rows)?;
        let rev = self.copy_version(node.id, node.head, &to_path)?;
        let to_aud = audience(conn, to.ns)?;
        let items = live_items(conn, &rows, node.id, &to_path)?;
        for (root, prefix) in &from_aud {
            let old_path = under(prefix, &from_path)?;
            let seq = match to_aud.iter().find(|(r, _)| r == root) {
                Some((_, to_prefix)) => {
                    append(conn, *root, ChangeOp::Move, node.id, rev, &under(to_prefix, &to_path)?, Some(&old_path))?
                }
                None => {
                    let op = if node.kind == EntryKind::Dir { ChangeOp::Rmdir } else { ChangeOp::Delete };
                    append(conn, *root, op, node.id, rev, &old_path, None)?
                }
            };
            self.touched.journal(NsId(*root), Seq(seq));
        }
        for (root, prefix) in &to_aud {
            if !from_aud.iter().any(|(r, _)| r == root)
                && let Some(seq) = journal_appearing(conn, *root, prefix, &items)?
            {
                self.touched.journal(NsId(*root), Seq(seq));
            }
        }
        self.enter(from)?;
        self.drop_pending_at(&[&from_path])?;
        self.enter(to)?;
        self.drop_pending_at(&[&to_path])?;
        self.entry(node.id, node.kind, &to_path, rev)
    }

    fn restore(&mut self, path: &RelPath, rev: RevId) -> Result<Entry> {
        let node = resolve(self.conn, self.ns, path, false)?
            .ok_or_else(|| Error::not_found(format!("'{path}' has no history")))?;
        let owner: Option<i64> =
            self.conn.row("SELECT file FROM file_versions WHERE id = ?1", [rev], |r| r.get(0)).optional()?;
        if owner != Some(node.id) {
            return Err(Error::not_found(format!("revision {rev} is not a revision of '{path}'")));
        }
        if node.kind != EntryKind::File {
            return Err(Error::bad_request(format!("'{path}' is a folder; only files can be restored")));
        }
        let old = version(self.conn, rev)?;
        if old.deleted {
            return Err(Error::bad_request(format!("revision {rev} is a deletion; pick a revision with content")));
        }
        let head = version(self.conn, node.head)?;
        let current_size = if node.deleted { 0 } else { head.size };
        self.check_quota(old.size as i64 - current_size as i64)?;
        let op = if node.deleted {
            let parent_id = self.ensure_dir(&path.parent().expect("not root"))?;
            let name = path.name().expect("not root");
            if let Some(other) = child(self.conn, self.ns, parent_id, name, true)? {
                let head = node_entry(self.conn, &other, path)?;
                return Err(Error::conflict(format!("'{path}' is taken by another item"), Some(head)));
            }
            self.conn.exec(
                "UPDATE files SET deleted = 0, parent = ?1, name = ?2, name_key = ?3 WHERE id = ?4",
                params![parent_id, name, name_key(name), node.id],
            )?;
            ChangeOp::Add
        } else {
            ChangeOp::Modify
        };
        let new_rev = self.copy_version(node.id, rev, path)?;
        self.adjust_used(old.size as i64 - current_size as i64)?;
        self.journal(op, node.id, new_rev, path, None)?;
        self.entry(node.id, EntryKind::File, path, new_rev)
    }
}

impl Ctx<'_> {
    /// A folder's new head revision at `path`, journaled as made.
    fn new_dir_version(&mut self, id: i64, path: &RelPath) -> Result<i64> {
        let rev = self.insert_version(NewVersion {
            file: id,
            path,
            size: 0,
            mtime: self.now,
            executable: false,
            hash: "",
            blocks: &[],
            deleted: false,
        })?;
        self.set_head(id, rev)?;
        self.journal(ChangeOp::Mkdir, id, rev, path, None)?;
        Ok(rev)
    }

    /// Brings back deleted row `id` at `path` (its folders made again as
    /// needed); for a folder, with what was deleted in it since `since`.
    fn undelete(&mut self, id: i64, kind: EntryKind, path: &RelPath, since: i64) -> Result<Entry> {
        let parent_id = self.ensure_dir(&path.parent().expect("not root"))?;
        let name = path.name().expect("not root");
        if let Some(other) = child(self.conn, self.ns, parent_id, name, true)? {
            let head = node_entry(self.conn, &other, path)?;
            return Err(Error::conflict(
                format!("'{path}' is taken by another item: rename or move it, then restore again"),
                Some(head),
            ));
        }
        self.undelete_row(id, kind, parent_id, name, path, since)
    }

    fn undelete_row(
        &mut self,
        id: i64,
        kind: EntryKind,
        parent_id: i64,
        name: &str,
        path: &RelPath,
        since: i64,
    ) -> Result<Entry> {
        self.conn.exec(
            "UPDATE files SET deleted = 0, parent = ?1, name = ?2, name_key = ?3 WHERE id = ?4",
            params![parent_id, name, name_key(name), id],
        )?;
        if kind == EntryKind::File {
            let live: i64 = self.conn.row(
                "SELECT id FROM file_versions WHERE file = ?1 AND deleted = 0 ORDER BY id DESC LIMIT 1",
                [id],
                |r| r.get(0),
            )?;
            let size = version(self.conn, live)?.size as i64;
            self.check_quota(size)?;
            let rev = self.copy_version(id, live, path)?;
            self.adjust_used(size)?;
            self.journal(ChangeOp::Add, id, rev, path, None)?;
            return self.entry(id, kind, path, rev);
        }
        let rev = self.new_dir_version(id, path)?;
        let inside: Vec<(i64, EntryKind, String)> = {
            let mut s = self.conn.prepare_cached(
                "SELECT f.id, f.kind, f.name FROM files f JOIN file_versions v ON v.id = f.head
                 WHERE f.ns = ?1 AND f.parent = ?2 AND f.deleted = 1 AND f.mount IS NULL AND v.created >= ?3
                 ORDER BY v.id DESC",
            )?;
            s.query_map(params![self.ns, id, since], |r| Ok((r.get(0)?, kind_of(r.get(1)?), r.get(2)?)))?
                .collect::<super::db::SqlResult<_>>()?
        };
        for (child_id, child_kind, child_name) in inside {
            // Two deleted items of one name: the one deleted last comes back.
            if child(self.conn, self.ns, id, &child_name, true)?.is_some() {
                continue;
            }
            let child_path = path.join(&child_name)?;
            self.undelete_row(child_id, child_kind, id, &child_name, &child_path, since)?;
        }
        self.entry(id, kind, path, rev)
    }
}

/// How a commit's operations ran.
enum Ran {
    Done(CommitOutcome),
    /// An operation failed after it wrote, in a commit that ran its
    /// operations without savepoints: the commit runs again with them.
    Undo,
    /// The one operation of a commit failed: its failure is the answer
    /// (and the transaction is undone).
    Failed(Error),
}

/// Runs a commit's operations: each in a savepoint if `careful` (a single
/// operation needs none: when it fails the whole transaction is undone,
/// and its failure is the answer).
fn commit_ops(
    conn: &Db<'_>,
    caller: &Caller,
    ops: &[CommitOp],
    careful: bool,
    now: i64,
    unknown: &HashSet<BlockId>,
    settled: &HashMap<BlockId, u32>,
) -> Result<Ran> {
    let single = ops.len() == 1;
    let mut ctx = Ctx::new(conn, caller, now, unknown, settled);
    ctx.read_ahead()?;
    ctx.read_own(ops)?;
    let mut results = Vec::with_capacity(ops.len());
    for op in ops.iter().cloned() {
        let point = if careful && !single { Some(conn.savepoint()?) } else { None };
        ctx.settling.clear();
        let (touched_before, dropped_before) = (ctx.touched.clone(), ctx.pending_dropped.clone());
        let writes = conn.writes();
        // Mounts may move between operations: audiences are looked up anew.
        ctx.audience = None;
        let r = match ctx.apply(op) {
            // A transaction that lost a race runs again as a whole.
            Err(e) if super::db::lost_race(&e) => return Err(e),
            r => r,
        };
        match (r, point) {
            (Ok(e), Some(point)) => {
                conn.release(point)?;
                results.push(Ok(e));
            }
            (Ok(e), None) => results.push(Ok(e)),
            (Err(e), Some(point)) => {
                conn.rollback_to(point)?;
                ctx.touched = touched_before;
                ctx.pending_dropped = dropped_before;
                ctx.unsettle();
                results.push(Err(e));
            }
            (Err(e), None) if single => return Ok(Ran::Failed(e)),
            // Refused before it wrote anything: nothing to undo. (A
            // statement that failed may have broken the transaction.)
            (Err(e), None) if conn.writes() == writes && !matches!(e, Error::Internal(_)) => {
                ctx.touched = touched_before;
                ctx.pending_dropped = dropped_before;
                results.push(Err(e));
            }
            (Err(_), None) => return Ok(Ran::Undo),
        }
    }
    let mut touched = ctx.touched;
    for root in ctx.pending_dropped {
        if let Some(p) = pending::bump(conn, root)? {
            touched.pending(NsId(root), p);
        }
    }
    Ok(Ran::Done(CommitOutcome { results, touched }))
}

impl<B: Backend> Files for SqlStore<B> {
    fn commit(&self, caller: &Caller, ops: Vec<CommitOp>, new_blocks: Vec<NewBlock>) -> Result<CommitOutcome> {
        let caller = caller.clone();
        let lists = || {
            ops.iter().filter_map(|op| match op {
                CommitOp::Put { blocks, .. } => Some(blocks),
                _ => None,
            })
        };
        // Ids the caller cannot have are found on a reader, before the
        // writer runs: a commit naming many never holds up other writes.
        let mut named: HashSet<BlockId> = lists().flat_map(BlockList::named_ids).copied().collect();
        for nb in &new_blocks {
            named.remove(&nb.id);
        }
        let super::blocks::Named { unknown, settled } = if named.is_empty() {
            super::blocks::Named { unknown: HashSet::new(), settled: HashMap::new() }
        } else {
            // (Its statements need not share a snapshot: what they find may
            // change before the writer runs all the same.)
            self.read_each(|c| super::blocks::named(c, caller.user_id.0, &named))?
        };
        // A commit of one operation needs no savepoint: when it fails, the
        // whole transaction is undone, and its failure is the answer.
        let single = ops.len() == 1;
        let op_failed = Arc::new(AtomicBool::new(false));
        let failed = Arc::clone(&op_failed);
        let outcome = self.write_in(
            Turn::With(vec![Lock::Namespace(caller.ns.0), Lock::Account(caller.user_id.0)]),
            move |conn| {
                failed.store(false, Ordering::Relaxed);
                let now = now_ms();
                insert_blocks(conn, caller.user_id.0, &new_blocks, now)?;
                // Each operation is undone alone when it fails. Most fail, if
                // at all, before they write, and need nothing undone: the
                // operations run without a savepoint each (on PostgreSQL, a
                // subtransaction each, which every later statement of a long
                // commit pays for). When one fails after it wrote, the commit
                // goes back to its start and runs again with them.
                let mut careful = single;
                loop {
                    let start = if careful { None } else { Some(conn.outer_savepoint()?) };
                    match commit_ops(conn, &caller, &ops, careful, now, &unknown, &settled)? {
                        Ran::Done(outcome) => {
                            if let Some(start) = start {
                                conn.release(start)?;
                            }
                            return Ok(outcome);
                        }
                        Ran::Undo => {
                            conn.rollback_to(start.expect("only a commit without savepoints is undone"))?;
                            careful = true;
                        }
                        Ran::Failed(e) => {
                            failed.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                    }
                }
            },
        );
        match outcome {
            Err(e) if op_failed.load(Ordering::Relaxed) => {
                Ok(CommitOutcome { results: vec![Err(e)], touched: Touched::default() })
            }
            r => r,
        }
    }

    fn file_version(&self, NsId(ns): NsId, path: &RelPath, rev: Option<crate::meta::RevId>) -> Result<FileVersion> {
        let rev = rev.map(|r| r.0);
        self.read(|c| {
            let loc = locate(c, ns, path)?;
            let node = resolve(c, loc.ns, &loc.inner, rev.is_none())?
                .filter(|n| n.kind == EntryKind::File)
                .ok_or_else(|| Error::not_found(format!("no file at '{path}'")))?;
            let rev = match rev {
                None => node.head,
                Some(r) => {
                    let owner: Option<i64> =
                        c.row("SELECT file FROM file_versions WHERE id = ?1", [r], |row| row.get(0)).optional()?;
                    if owner != Some(node.id) {
                        return Err(Error::not_found(format!("revision {r} is not a revision of '{path}'")));
                    }
                    r
                }
            };
            let v = version(c, rev)?;
            if v.deleted {
                return Err(Error::not_found(format!("revision {rev} of '{path}' is a deletion")));
            }
            Ok(FileVersion { entry: entry_of(node.id, node.kind, path, rev, &v), blocks: v.blocks })
        })
    }

    fn revisions(&self, NsId(ns): NsId, path: &RelPath, limit: u32) -> Result<Vec<Revision>> {
        self.read(|c| {
            let loc = locate(c, ns, path)?;
            let node = resolve(c, loc.ns, &loc.inner, false)?
                .filter(|n| n.kind == EntryKind::File)
                .ok_or_else(|| Error::not_found(format!("no file at '{path}'")))?;
            let mut s = c.prepare_cached(
                "SELECT v.id, v.size, v.hash, v.created, v.mtime, COALESCE(d.name, ''), v.deleted FROM file_versions v
                 LEFT JOIN devices d ON d.id = v.device WHERE v.file = ?1 ORDER BY v.id DESC LIMIT ?2",
            )?;
            let rows = s.query_map(params![node.id, limit], |r| {
                Ok(Revision {
                    rev: r.get(0)?,
                    size: r.get::<_, i64>(1)? as u64,
                    hash: r.get(2)?,
                    modified: r.get(3)?,
                    mtime: r.get(4)?,
                    device: r.get(5)?,
                    deleted: r.get(6)?,
                })
            })?;
            Ok(rows.collect::<super::db::SqlResult<_>>()?)
        })
    }

    fn list_folder(&self, NsId(ns): NsId, path: &RelPath) -> Result<Vec<Entry>> {
        self.read(|c| list_folder(c, ns, path))
    }

    fn trash(&self, NsId(ns): NsId, limit: u32) -> Result<Vec<ferry_shared::api::TrashItem>> {
        self.read(|c| super::trash::trash(c, ns, limit))
    }

    fn restore_deleted(&self, caller: &Caller, path: &RelPath) -> Result<CommitOutcome> {
        let (caller, path) = (caller.clone(), path.clone());
        self.write_in(Turn::With(vec![Lock::Namespace(caller.ns.0), Lock::Account(caller.user_id.0)]), move |conn| {
            let found: Option<(i64, i64, i64)> = conn
                .row(
                    "SELECT f.id, f.kind, v.created FROM files f JOIN file_versions v ON v.id = f.head
                     WHERE f.ns = ?1 AND f.deleted = 1 AND f.mount IS NULL AND v.path = ?2
                     ORDER BY v.id DESC LIMIT 1",
                    params![caller.ns, path.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let (id, kind, deleted) =
                found.ok_or_else(|| Error::not_found(format!("nothing deleted at '{path}' is in the trash")))?;
            let (unknown, settled) = (HashSet::new(), HashMap::new());
            let mut ctx = Ctx::new(conn, &caller, now_ms(), &unknown, &settled);
            let entry = ctx.undelete(id, kind_of(kind), &path, deleted - super::trash::WITH_FOLDER_MS)?;
            Ok(CommitOutcome { results: vec![Ok(entry)], touched: ctx.touched })
        })
    }
}
