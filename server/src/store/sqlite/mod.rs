//! The embedded metadata store: SQLite in WAL mode with `synchronous=FULL`.
//!
//! # Group commit
//! All writes go through one writer thread. It takes every job that is queued,
//! runs each inside its own savepoint of one transaction, commits once (one
//! fsync) and only then answers each caller. A job that fails rolls back to its
//! savepoint without touching the others. So every acknowledged write is
//! durable, and commits that arrive together share an fsync.
//!
//! Reads use a small pool of read-only connections (WAL lets them run beside
//! the writer).
//!
//! # Tree
//! `files` holds the head state of every file and folder: parent id, name,
//! case-folded name key, head revision, deleted flag. Names are unique per
//! folder among live rows on the name key. Deleted rows stay (their history
//! stays reachable by path); re-creating a deleted path revives its row, so
//! history continues. `file_versions` rows are immutable; a block list is a
//! blob of `(32-byte id, u32 LE size)` records.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Condvar, Mutex, mpsc};

use anyhow::Context;
use ferry_shared::BlockId;
use ferry_shared::api::{
    BlockEdit, BlockList, BlockRef, BlocksEdit, Change, ChangeOp, ChangesResponse, CommitOp, Entry, EntryKind,
    ErrorCode, PendingAnnounce, PendingList, RevId, Revision,
};
use ferry_shared::path::{RelPath, name_key};
use rusqlite::{Connection, OptionalExtension, params};

use super::{Caller, CommitOutcome, FileVersion, MetaStore, NewBlock, UploadSession, UserInfo, now_ms};
use crate::blockstore::BlockLoc;
use crate::error::{Error, Result};

const SCHEMA: &[&str] = &[
    // Migrations are append-only: index = schema version - 1.
    r#"
    CREATE TABLE users(
        id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, pw_hash TEXT NOT NULL,
        quota INTEGER NOT NULL, used INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL);
    CREATE TABLE devices(
        id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, name TEXT NOT NULL, created INTEGER NOT NULL,
        UNIQUE(user_id, name));
    CREATE TABLE tokens(
        hash BLOB PRIMARY KEY, user_id INTEGER NOT NULL, device_id INTEGER NOT NULL,
        created INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE namespaces(id INTEGER PRIMARY KEY, owner INTEGER NOT NULL UNIQUE, seq INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE files(
        id INTEGER PRIMARY KEY, ns INTEGER NOT NULL, parent INTEGER NOT NULL, name TEXT NOT NULL,
        name_key TEXT NOT NULL, kind INTEGER NOT NULL, head INTEGER NOT NULL, deleted INTEGER NOT NULL);
    CREATE UNIQUE INDEX files_live_name ON files(ns, parent, name_key) WHERE deleted = 0;
    CREATE INDEX files_any_name ON files(ns, parent, name_key, id);
    CREATE TABLE file_versions(
        id INTEGER PRIMARY KEY, file INTEGER NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL,
        mtime INTEGER NOT NULL, executable INTEGER NOT NULL, hash TEXT NOT NULL, blocks BLOB NOT NULL,
        deleted INTEGER NOT NULL, created INTEGER NOT NULL, device INTEGER NOT NULL);
    CREATE INDEX file_versions_file ON file_versions(file, id);
    CREATE TABLE blocks(
        id BLOB PRIMARY KEY, size INTEGER NOT NULL, stored_size INTEGER NOT NULL, created INTEGER NOT NULL)
        WITHOUT ROWID;
    CREATE TABLE account_blocks(user_id INTEGER NOT NULL, block BLOB NOT NULL, PRIMARY KEY(user_id, block))
        WITHOUT ROWID;
    CREATE TABLE journal(
        ns INTEGER NOT NULL, seq INTEGER NOT NULL, op INTEGER NOT NULL, file INTEGER NOT NULL,
        rev INTEGER NOT NULL, path TEXT NOT NULL, from_path TEXT, PRIMARY KEY(ns, seq)) WITHOUT ROWID;
    CREATE TABLE upload_sessions(
        id TEXT PRIMARY KEY, user_id INTEGER NOT NULL, device_id INTEGER NOT NULL, path TEXT NOT NULL,
        size INTEGER NOT NULL, received INTEGER NOT NULL, mtime INTEGER, parent_rev INTEGER,
        expires INTEGER NOT NULL);
    "#,
    // 2: blocks stored in packs.
    r#"
    ALTER TABLE blocks ADD COLUMN pack INTEGER;
    ALTER TABLE blocks ADD COLUMN pack_offset INTEGER;
    ALTER TABLE blocks ADD COLUMN pack_len INTEGER;
    "#,
    // 3: pending uploads (see `pending`).
    r#"
    CREATE TABLE pending_uploads(
        id INTEGER PRIMARY KEY, ns INTEGER NOT NULL, user_id INTEGER NOT NULL, device_id INTEGER NOT NULL,
        path TEXT NOT NULL, parent_rev INTEGER, size INTEGER NOT NULL, hash TEXT NOT NULL, blocks BLOB NOT NULL,
        created INTEGER NOT NULL, expires INTEGER NOT NULL);
    CREATE INDEX pending_uploads_path ON pending_uploads(ns, path);
    CREATE INDEX pending_uploads_expires ON pending_uploads(expires);
    ALTER TABLE namespaces ADD COLUMN pending_seq INTEGER NOT NULL DEFAULT 0;
    "#,
    // 4: a finished resumable upload keeps answering with its revision
    // (JSON of the `Entry`) until the session expires.
    r#"
    ALTER TABLE upload_sessions ADD COLUMN done TEXT;
    "#,
];

mod pending;

type Done = Box<dyn FnOnce(Result<(), String>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> Done + Send>;

/// Most jobs folded into one transaction.
const MAX_GROUP: usize = 1024;
const READERS: usize = 4;

pub struct SqliteStore {
    jobs: Mutex<mpsc::Sender<Job>>,
    readers: Mutex<ReaderPool>,
    reader_free: Condvar,
    path: std::path::PathBuf,
}

/// At most [`READERS`] read connections exist; more readers wait for one.
#[derive(Default)]
struct ReaderPool {
    idle: Vec<Connection>,
    open: usize,
}

/// Statements through the connection's prepared-statement cache: commits run
/// the same few statements for every operation, and parsing SQL again each
/// time was most of the database writer's work.
trait Cached {
    fn exec(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize>;
    fn row<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn exec(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn row<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

fn open_conn(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    conn.set_prepared_statement_cache_capacity(128);
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF;")?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = open_conn(path)?;
        migrate(&mut conn)?;
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("ferry-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .context("starting the database writer")?;
        Ok(SqliteStore {
            jobs: Mutex::new(tx),
            readers: Mutex::new(ReaderPool::default()),
            reader_free: Condvar::new(),
            path: path.to_owned(),
        })
    }

    /// Runs `f` in the writer's transaction; returns once it is durable.
    fn write<R: Send + 'static>(&self, f: impl FnOnce(&Connection) -> Result<R> + Send + 'static) -> Result<R> {
        let (tx, rx) = mpsc::sync_channel::<Result<R>>(1);
        let job: Job = Box::new(move |conn: &Connection| -> Done {
            let r = match conn.execute_batch("SAVEPOINT job") {
                Ok(()) => {
                    let r = f(conn);
                    let end = if r.is_ok() { "RELEASE job" } else { "ROLLBACK TO job; RELEASE job" };
                    match conn.execute_batch(end) {
                        Ok(()) => r,
                        Err(e) => Err(e.into()),
                    }
                }
                Err(e) => Err(e.into()),
            };
            Box::new(move |committed: Result<(), String>| {
                let r = match committed {
                    Ok(()) => r,
                    Err(e) => Err(Error::Internal(anyhow::anyhow!("commit failed: {e}"))),
                };
                let _ = tx.send(r);
            })
        });
        self.jobs
            .lock()
            .expect("writer queue poisoned")
            .send(job)
            .map_err(|_| Error::Internal(anyhow::anyhow!("database writer stopped")))?;
        rx.recv().map_err(|_| Error::Internal(anyhow::anyhow!("database writer stopped")))?
    }

    fn read<R>(&self, f: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
        let conn = {
            let mut pool = self.readers.lock().expect("reader pool poisoned");
            loop {
                if let Some(c) = pool.idle.pop() {
                    break Some(c);
                }
                if pool.open < READERS {
                    pool.open += 1;
                    break None;
                }
                pool = self.reader_free.wait(pool).expect("reader pool poisoned");
            }
        };
        let conn = match conn {
            Some(c) => c,
            None => match open_conn(&self.path) {
                Ok(c) => c,
                Err(e) => {
                    self.readers.lock().expect("reader pool poisoned").open -= 1;
                    self.reader_free.notify_one();
                    return Err(e);
                }
            },
        };
        let r = f(&conn);
        self.readers.lock().expect("reader pool poisoned").idle.push(conn);
        self.reader_free.notify_one();
        r
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let version: i64 = conn.row("PRAGMA user_version", [], |r| r.get(0))?;
    let version = version as usize;
    if version > SCHEMA.len() {
        return Err(anyhow::anyhow!(
            "database schema version {version} is newer than this ferry-server knows ({}); upgrade ferry-server",
            SCHEMA.len()
        )
        .into());
    }
    for (i, sql) in SCHEMA.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
        tx.commit()?;
    }
    Ok(())
}

fn writer_loop(conn: Connection, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            // Run nothing: dropping the jobs answers their callers with an error.
            tracing::error!(error = %e, n = batch.len(), "could not begin a transaction");
            continue;
        }
        let dones: Vec<Done> = batch.into_iter().map(|job| job(&conn)).collect();
        let committed = conn.execute_batch("COMMIT").map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            e.to_string()
        });
        if let Err(e) = &committed {
            tracing::error!(error = %e, "group commit failed");
        }
        for done in dones {
            done(committed.clone());
        }
    }
}

// ---------------------------------------------------------------------------
// Row helpers

#[derive(Debug, Clone)]
struct Node {
    id: i64,
    parent: i64,
    kind: EntryKind,
    head: i64,
    deleted: bool,
}

#[derive(Debug, Clone)]
struct Version {
    size: u64,
    mtime: i64,
    executable: bool,
    hash: String,
    blocks: Vec<(BlockId, u32)>,
    deleted: bool,
    created: i64,
    device: String,
}

fn kind_of(i: i64) -> EntryKind {
    if i == 1 { EntryKind::Dir } else { EntryKind::File }
}

fn kind_num(k: EntryKind) -> i64 {
    match k {
        EntryKind::File => 0,
        EntryKind::Dir => 1,
    }
}

fn op_num(op: ChangeOp) -> i64 {
    match op {
        ChangeOp::Add => 0,
        ChangeOp::Modify => 1,
        ChangeOp::Delete => 2,
        ChangeOp::Move => 3,
        ChangeOp::Mkdir => 4,
        ChangeOp::Rmdir => 5,
    }
}

fn op_of(i: i64) -> ChangeOp {
    match i {
        0 => ChangeOp::Add,
        1 => ChangeOp::Modify,
        2 => ChangeOp::Delete,
        3 => ChangeOp::Move,
        4 => ChangeOp::Mkdir,
        _ => ChangeOp::Rmdir,
    }
}

const NODE_COLS: &str = "id, parent, kind, head, deleted";

fn node_row(r: &rusqlite::Row) -> rusqlite::Result<Node> {
    Ok(Node { id: r.get(0)?, parent: r.get(1)?, kind: kind_of(r.get(2)?), head: r.get(3)?, deleted: r.get(4)? })
}

fn version(conn: &Connection, rev: i64) -> Result<Version> {
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

fn entry_of(id: i64, kind: EntryKind, path: &RelPath, rev: i64, v: &Version) -> Entry {
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
    }
}

/// The head entry of `node`, which was looked up at `path`. Lookups go by
/// name key, so the entry names the path as stored (the existing item's own
/// spelling), not `path` (which may differ in case or normalization).
fn node_entry(conn: &Connection, node: &Node, path: &RelPath) -> Result<Entry> {
    let path = stored_path(conn, node.id)?.unwrap_or_else(|| path.clone());
    Ok(entry_of(node.id, node.kind, &path, node.head, &version(conn, node.head)?))
}

/// `path` spelled as stored: every segment that names an existing live item
/// takes that item's own spelling (names are matched on the case-folded key),
/// except the last one when `keep_last` (a case-only rename). So journals and
/// entries always carry the one path every device has.
fn canonical(conn: &Connection, ns: i64, path: &RelPath, keep_last: bool) -> Result<RelPath> {
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
            Some(n) => conn.row("SELECT name FROM files WHERE id = ?1", [n.id], |r| r.get::<_, String>(0))?,
            None => (*seg).to_owned(),
        };
        parent = found.filter(|n| n.kind == EntryKind::Dir).map(|n| n.id);
        out = out.join(&name)?;
    }
    Ok(out)
}

/// The path of row `id` as stored, walking up its folders (`None` if a row
/// on the way is missing).
fn stored_path(conn: &Connection, id: i64) -> Result<Option<RelPath>> {
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
fn child(conn: &Connection, ns: i64, parent: i64, name: &str, live_only: bool) -> Result<Option<Node>> {
    let key = name_key(name);
    let live = conn
        .row(
            &format!("SELECT {NODE_COLS} FROM files WHERE ns = ?1 AND parent = ?2 AND name_key = ?3 AND deleted = 0"),
            params![ns, parent, key],
            node_row,
        )
        .optional()?;
    if live.is_some() || live_only {
        return Ok(live);
    }
    Ok(conn
        .row(
            &format!(
                "SELECT {NODE_COLS} FROM files WHERE ns = ?1 AND parent = ?2 AND name_key = ?3
                 ORDER BY id DESC LIMIT 1"
            ),
            params![ns, parent, key],
            node_row,
        )
        .optional()?)
}

/// The node at `path` (the root has id 0 and is not a row).
fn resolve(conn: &Connection, ns: i64, path: &RelPath, live_only: bool) -> Result<Option<Node>> {
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

fn has_live_children(conn: &Connection, ns: i64, id: i64) -> Result<bool> {
    Ok(conn
        .row("SELECT 1 FROM files WHERE ns = ?1 AND parent = ?2 AND deleted = 0 LIMIT 1", params![ns, id], |_| Ok(()))
        .optional()?
        .is_some())
}

// ---------------------------------------------------------------------------
// Commit operations

struct Ctx<'a> {
    conn: &'a Connection,
    caller: &'a Caller,
    now: i64,
    seq: i64,
    /// The namespace has pending uploads (each op drops those at its paths).
    has_pending: bool,
    /// Pending uploads dropped by this commit.
    pending_dropped: usize,
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

impl Ctx<'_> {
    fn insert_version(&self, v: NewVersion<'_>) -> Result<i64> {
        self.conn.exec(
            "INSERT INTO file_versions(file, path, size, mtime, executable, hash, blocks, deleted, created, device)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                v.file,
                v.path.as_str(),
                v.size as i64,
                v.mtime,
                v.executable,
                v.hash,
                ferry_shared::block::encode_list(v.blocks.iter().copied()),
                v.deleted,
                self.now,
                self.caller.device_id
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn journal(&mut self, op: ChangeOp, file: i64, rev: i64, path: &RelPath, from: Option<&RelPath>) -> Result<()> {
        self.seq = self.conn.row(
            "UPDATE namespaces SET seq = seq + 1 WHERE id = ?1 RETURNING seq",
            [self.caller.ns],
            |r| r.get(0),
        )?;
        self.conn.exec(
            "INSERT INTO journal(ns, seq, op, file, rev, path, from_path) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![self.caller.ns, self.seq, op_num(op), file, rev, path.as_str(), from.map(|p| p.as_str())],
        )?;
        Ok(())
    }

    fn adjust_used(&self, delta: i64) -> Result<()> {
        if delta != 0 {
            self.conn
                .exec("UPDATE users SET used = MAX(0, used + ?1) WHERE id = ?2", params![delta, self.caller.user_id])?;
        }
        Ok(())
    }

    fn check_quota(&self, delta: i64) -> Result<()> {
        if delta <= 0 {
            return Ok(());
        }
        let (quota, used): (i64, i64) =
            self.conn.row("SELECT quota, used FROM users WHERE id = ?1", [self.caller.user_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
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

    /// Folder id for `path`, creating missing folders (each journaled as mkdir).
    fn ensure_dir(&mut self, path: &RelPath) -> Result<i64> {
        let mut parent = 0;
        let mut cur = RelPath::root();
        for seg in path.segments().map(str::to_owned).collect::<Vec<_>>() {
            cur = cur.join(&seg)?;
            parent = match child(self.conn, self.caller.ns, parent, &seg, true)? {
                Some(n) if n.kind == EntryKind::Dir => n.id,
                Some(n) => {
                    let head = node_entry(self.conn, &n, &cur)?;
                    return Err(Error::conflict(format!("'{cur}' is a file, not a folder"), Some(head)));
                }
                None => self.create_node(parent, &seg, EntryKind::Dir, &cur)?.0,
            };
        }
        Ok(parent)
    }

    /// Creates a folder row, or a file row to be given a version by the caller.
    fn create_node(&mut self, parent: i64, name: &str, kind: EntryKind, path: &RelPath) -> Result<(i64, i64)> {
        self.conn.exec(
            "INSERT INTO files(ns, parent, name, name_key, kind, head, deleted) VALUES (?1, ?2, ?3, ?4, ?5, 0, 0)",
            params![self.caller.ns, parent, name, name_key(name), kind_num(kind)],
        )?;
        let id = self.conn.last_insert_rowid();
        let rev = if kind == EntryKind::Dir {
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
            self.conn.exec("UPDATE files SET head = ?1 WHERE id = ?2", params![rev, id])?;
            self.journal(ChangeOp::Mkdir, id, rev, path, None)?;
            rev
        } else {
            0
        };
        Ok((id, rev))
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

    /// A change at (or under) these paths makes pending uploads there stale.
    fn drop_pending_at(&mut self, paths: &[&RelPath]) -> Result<()> {
        if self.has_pending {
            for p in paths {
                self.pending_dropped += pending::drop_under(self.conn, self.caller.ns, p)?;
            }
        }
        Ok(())
    }

    fn apply(&mut self, op: CommitOp) -> Result<Entry> {
        let (conn, ns) = (self.conn, self.caller.ns);
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
                if let Some(n) = resolve(self.conn, self.caller.ns, &path, true)? {
                    if n.kind == EntryKind::Dir {
                        return node_entry(self.conn, &n, &path);
                    }
                    let head = node_entry(self.conn, &n, &path)?;
                    return Err(Error::conflict(format!("'{path}' is a file"), Some(head)));
                }
                let parent_id = self.ensure_dir(&parent)?;
                let name = path.name().expect("not root");
                let (id, rev) = self.create_node(parent_id, name, EntryKind::Dir, &path)?;
                self.entry(id, EntryKind::Dir, &path, rev)
            }
            CommitOp::Restore { path, rev } => {
                let entry = self.restore(&path, rev)?;
                self.drop_pending_at(&[&path])?;
                Ok(entry)
            }
        }
    }

    fn resolve_blocks(&self, list: BlockList, parent: Option<&Version>) -> Result<Vec<(BlockId, u32)>> {
        let ids: Vec<BlockId> = match list {
            BlockList::Full(ids) => ids,
            BlockList::Edit(edits) => {
                let base = parent.ok_or_else(|| Error::bad_request("a block list edit needs parent_rev"))?;
                let mut out = Vec::new();
                for e in edits {
                    match e {
                        BlockEdit::Copy { start, count } => {
                            let (s, c) = (start as usize, count as usize);
                            let slice = base.blocks.get(s..s.saturating_add(c)).ok_or_else(|| {
                                Error::bad_request(format!(
                                    "block edit copies [{s}, {}) but the parent revision has {} blocks",
                                    s + c,
                                    base.blocks.len()
                                ))
                            })?;
                            out.extend(slice.iter().map(|(id, _)| *id));
                        }
                        BlockEdit::Add(ids) => out.extend(ids),
                    }
                }
                out
            }
        };
        let mut sizes: HashMap<BlockId, u32> = HashMap::new();
        let mut missing = Vec::new();
        let mut stmt = self.conn.prepare_cached(
            "SELECT b.size FROM account_blocks a JOIN blocks b ON b.id = a.block WHERE a.user_id = ?1 AND a.block = ?2",
        )?;
        for id in &ids {
            if sizes.contains_key(id) || missing.contains(id) {
                continue;
            }
            match stmt.query_row(params![self.caller.user_id, id.as_bytes()], |r| r.get::<_, u32>(0)).optional()? {
                Some(s) => {
                    sizes.insert(*id, s);
                }
                None => missing.push(*id),
            }
        }
        if !missing.is_empty() {
            return Err(Error::MissingBlocks { missing });
        }
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
        let existing = resolve(self.conn, self.caller.ns, path, false)?.filter(|n| {
            // A deleted row is this file's history only if it was a file in
            // the same folder (a deleted folder of that name is not revived as
            // a file; neither is a row under a different, deleted, folder).
            !n.deleted
                || (n.kind == EntryKind::File
                    && resolve(self.conn, self.caller.ns, &parent_path, true).ok().flatten().map(|p| p.id).unwrap_or(0)
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
        let blocks = self.resolve_blocks(list, parent_version.as_ref())?;
        let total: u64 = blocks.iter().map(|(_, s)| u64::from(*s)).sum();
        if total != size {
            return Err(Error::bad_request(format!("size is {size} but the blocks add up to {total} bytes")));
        }
        self.check_quota(size as i64 - old_size as i64)?;
        let hash = ferry_shared::block::content_hash(size, blocks.iter().map(|(id, _)| id));
        let (id, op) = match existing {
            Some(n) if !n.deleted => (n.id, ChangeOp::Modify),
            Some(n) => {
                // Revive the deleted row: the history continues.
                let parent_id = self.ensure_dir(&parent_path)?;
                self.conn.exec(
                    "UPDATE files SET deleted = 0, parent = ?1, name = ?2, name_key = ?3 WHERE id = ?4",
                    params![parent_id, name, name_key(name), n.id],
                )?;
                (n.id, ChangeOp::Add)
            }
            None => {
                let parent_id = self.ensure_dir(&parent_path)?;
                (self.create_node(parent_id, name, EntryKind::File, path)?.0, ChangeOp::Add)
            }
        };
        let rev = self.insert_version(NewVersion {
            file: id,
            path,
            size,
            mtime,
            executable,
            hash: &hash,
            blocks: &blocks,
            deleted: false,
        })?;
        self.conn.exec("UPDATE files SET head = ?1 WHERE id = ?2", params![rev, id])?;
        self.adjust_used(size as i64 - old_size as i64)?;
        self.journal(op, id, rev, path, None)?;
        self.entry(id, EntryKind::File, path, rev)
    }

    fn delete(&mut self, path: &RelPath, parent_rev: Option<RevId>, kind: EntryKind) -> Result<Entry> {
        let node = resolve(self.conn, self.caller.ns, path, true)?
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
        if kind == EntryKind::Dir && has_live_children(self.conn, self.caller.ns, node.id)? {
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
        self.adjust_used(-(old.size as i64))?;
        let op = if kind == EntryKind::Dir { ChangeOp::Rmdir } else { ChangeOp::Delete };
        self.journal(op, node.id, rev, path, None)?;
        self.entry(node.id, kind, path, rev)
    }

    fn move_node(&mut self, from: &RelPath, to: &RelPath, parent_rev: Option<RevId>) -> Result<Entry> {
        if from.is_root() || to.is_root() {
            return Err(Error::bad_request("the root folder cannot be moved or replaced"));
        }
        let node = resolve(self.conn, self.caller.ns, from, true)?
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
        if let Some(other) = resolve(self.conn, self.caller.ns, to, true)?
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
        let old = version(self.conn, node.head)?;
        let rev = self.insert_version(NewVersion {
            file: node.id,
            path: to,
            size: old.size,
            mtime: old.mtime,
            executable: old.executable,
            hash: &old.hash,
            blocks: &old.blocks,
            deleted: false,
        })?;
        self.conn.exec("UPDATE files SET head = ?1 WHERE id = ?2", params![rev, node.id])?;
        self.journal(ChangeOp::Move, node.id, rev, to, Some(from))?;
        self.entry(node.id, node.kind, to, rev)
    }

    fn restore(&mut self, path: &RelPath, rev: RevId) -> Result<Entry> {
        let node = resolve(self.conn, self.caller.ns, path, false)?
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
            if let Some(other) = child(self.conn, self.caller.ns, parent_id, name, true)? {
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
        let new_rev = self.insert_version(NewVersion {
            file: node.id,
            path,
            size: old.size,
            mtime: old.mtime,
            executable: old.executable,
            hash: &old.hash,
            blocks: &old.blocks,
            deleted: false,
        })?;
        self.conn.exec("UPDATE files SET head = ?1 WHERE id = ?2", params![new_rev, node.id])?;
        self.adjust_used(old.size as i64 - current_size as i64)?;
        self.journal(op, node.id, new_rev, path, None)?;
        self.entry(node.id, EntryKind::File, path, new_rev)
    }
}

fn insert_blocks(conn: &Connection, user_id: i64, blocks: &[NewBlock], now: i64) -> Result<()> {
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

fn loc_row(r: &rusqlite::Row) -> rusqlite::Result<BlockLoc> {
    let pack: Option<i64> = r.get(0)?;
    Ok(match pack {
        None => BlockLoc::Loose,
        Some(p) => BlockLoc::Packed { pack: p as u64, offset: r.get::<_, i64>(1)? as u64, len: r.get(2)? },
    })
}

fn upload_row(r: &rusqlite::Row) -> rusqlite::Result<UploadSession> {
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

impl MetaStore for SqliteStore {
    fn add_user(&self, name: &str, password_hash: &str, quota: u64) -> Result<i64> {
        let (name, hash) = (name.to_owned(), password_hash.to_owned());
        self.write(move |c| {
            let exists = c.row("SELECT 1 FROM users WHERE name = ?1", [&name], |_| Ok(())).optional()?;
            if exists.is_some() {
                return Err(Error::conflict(format!("user '{name}' already exists"), None));
            }
            c.exec(
                "INSERT INTO users(name, pw_hash, quota, created) VALUES (?1, ?2, ?3, ?4)",
                params![name, hash, quota as i64, now_ms()],
            )?;
            let id = c.last_insert_rowid();
            c.exec("INSERT INTO namespaces(owner) VALUES (?1)", [id])?;
            Ok(id)
        })
    }

    fn list_users(&self) -> Result<Vec<UserInfo>> {
        self.read(|c| {
            let mut s = c.prepare("SELECT id, name, quota, used FROM users ORDER BY name")?;
            let rows = s.query_map([], |r| {
                Ok(UserInfo {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    quota: r.get::<_, i64>(2)? as u64,
                    used: r.get::<_, i64>(3)? as u64,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn user_info(&self, user_id: i64) -> Result<UserInfo> {
        self.read(|c| {
            Ok(c.row("SELECT id, name, quota, used FROM users WHERE id = ?1", [user_id], |r| {
                Ok(UserInfo {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    quota: r.get::<_, i64>(2)? as u64,
                    used: r.get::<_, i64>(3)? as u64,
                })
            })?)
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
                 DELETE FROM users WHERE id = {id};"
            ))?;
            Ok(())
        })
    }

    fn password_hash(&self, name: &str) -> Result<Option<(i64, String)>> {
        self.read(|c| {
            Ok(c.row("SELECT id, pw_hash FROM users WHERE name = ?1", [name], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?)
        })
    }

    fn create_token(&self, user_id: i64, device_name: &str, token_hash: [u8; 32]) -> Result<i64> {
        let device_name = device_name.to_owned();
        self.write(move |c| {
            c.exec(
                "INSERT OR IGNORE INTO devices(user_id, name, created) VALUES (?1, ?2, ?3)",
                params![user_id, device_name, now_ms()],
            )?;
            let device: i64 =
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
        self.read(|c| {
            let mut s = c.prepare_cached(
                "SELECT t.user_id, t.device_id, n.id FROM tokens t JOIN namespaces n ON n.owner = t.user_id WHERE t.hash = ?1",
            )?;
            Ok(s.query_row([&token_hash[..]], |r| Ok(Caller { user_id: r.get(0)?, device_id: r.get(1)?, ns: r.get(2)? }))
                .optional()?)
        })
    }

    fn revoke_token(&self, token_hash: [u8; 32]) -> Result<()> {
        self.write(move |c| {
            c.exec("DELETE FROM tokens WHERE hash = ?1", [&token_hash[..]])?;
            Ok(())
        })
    }

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
                "SELECT b.pack, b.pack_offset, b.pack_len FROM account_blocks a JOIN blocks b ON b.id = a.block
                 WHERE a.user_id = ?1 AND a.block = ?2",
            )?;
            Ok(s.query_row(params![user_id, id.as_bytes()], loc_row).optional()?)
        })
    }

    fn add_blocks(&self, user_id: i64, blocks: &[NewBlock]) -> Result<()> {
        let blocks = blocks.to_vec();
        self.write(move |c| insert_blocks(c, user_id, &blocks, now_ms()))
    }

    fn commit(&self, caller: &Caller, ops: Vec<CommitOp>, new_blocks: Vec<NewBlock>) -> Result<CommitOutcome> {
        let caller = caller.clone();
        self.write(move |conn| {
            let now = now_ms();
            insert_blocks(conn, caller.user_id, &new_blocks, now)?;
            let seq = conn.row("SELECT seq FROM namespaces WHERE id = ?1", [caller.ns], |r| r.get(0))?;
            let has_pending = pending::any(conn, caller.ns)?;
            let mut ctx = Ctx { conn, caller: &caller, now, seq, has_pending, pending_dropped: 0 };
            let mut results = Vec::with_capacity(ops.len());
            for op in ops {
                conn.exec("SAVEPOINT op", [])?;
                let (seq_before, dropped_before) = (ctx.seq, ctx.pending_dropped);
                let r = ctx.apply(op);
                if r.is_ok() {
                    conn.exec("RELEASE op", [])?;
                } else {
                    conn.execute_batch("ROLLBACK TO op; RELEASE op")?;
                    ctx.seq = seq_before;
                    ctx.pending_dropped = dropped_before;
                }
                results.push(r);
            }
            let pending = if ctx.pending_dropped > 0 { pending::bump(conn, caller.ns)? } else { None };
            Ok(CommitOutcome { results, seq: ctx.seq, pending })
        })
    }

    fn cursor(&self, ns: i64) -> Result<i64> {
        self.read(|c| Ok(c.row("SELECT seq FROM namespaces WHERE id = ?1", [ns], |r| r.get(0))?))
    }

    fn poll_state(&self, ns: i64) -> Result<(i64, i64)> {
        self.read(|c| {
            Ok(c.row("SELECT seq, pending_seq FROM namespaces WHERE id = ?1", [ns], |r| Ok((r.get(0)?, r.get(1)?)))?)
        })
    }

    fn announce_pending(&self, caller: &Caller, a: PendingAnnounce, expires: i64) -> Result<(i64, i64)> {
        let caller = caller.clone();
        self.write(move |conn| {
            let ids: Vec<BlockId> = a.blocks.iter().map(|b| b.id).collect();
            let hash = ferry_shared::block::content_hash(a.size, &ids);
            let id = pending::announce(conn, &caller, &a, &hash, now_ms(), expires)?;
            Ok((id, pending::bump(conn, caller.ns)?.unwrap_or(0)))
        })
    }

    fn drop_pending(&self, caller: &Caller, id: Option<i64>) -> Result<Option<i64>> {
        let caller = caller.clone();
        self.write(move |conn| {
            let n = pending::drop_own(conn, &caller, id)?;
            if n == 0 && id.is_some() {
                return Err(Error::not_found("no such pending upload of this device"));
            }
            Ok(if n > 0 { pending::bump(conn, caller.ns)? } else { None })
        })
    }

    fn pending_uploads(&self, ns: i64, except: i64, now: i64) -> Result<PendingList> {
        self.read(|c| {
            let tx = c.unchecked_transaction()?;
            let seq = tx.row("SELECT pending_seq FROM namespaces WHERE id = ?1", [ns], |r| r.get(0)).optional()?;
            Ok(PendingList { pending: pending::list(&tx, ns, except, now)?, seq: seq.unwrap_or(0) })
        })
    }

    fn sweep_pending(&self, now: i64) -> Result<Vec<(i64, i64)>> {
        let expired = |c: &Connection| -> Result<bool> {
            Ok(c.row("SELECT 1 FROM pending_uploads WHERE expires <= ?1 LIMIT 1", [now], |_| Ok(()))
                .optional()?
                .is_some())
        };
        if !self.read(expired)? {
            return Ok(Vec::new());
        }
        self.write(move |conn| {
            let mut out = Vec::new();
            for ns in pending::sweep(conn, now)? {
                if let Some(seq) = pending::bump(conn, ns)? {
                    out.push((ns, seq));
                }
            }
            Ok(out)
        })
    }

    fn changes(&self, ns: i64, cursor: i64, limit: u32, edits: bool) -> Result<ChangesResponse> {
        self.read(|c| {
            let tx = c.unchecked_transaction()?;
            let head: i64 = tx.row("SELECT seq FROM namespaces WHERE id = ?1", [ns], |r| r.get(0))?;
            super::check_cursor(cursor, head)?;
            let mut s = tx.prepare_cached(
                "SELECT j.seq, j.op, j.file, j.rev, j.path, j.from_path, f.kind FROM journal j
                 JOIN files f ON f.id = j.file WHERE j.ns = ?1 AND j.seq > ?2 ORDER BY j.seq LIMIT ?3",
            )?;
            struct Row {
                seq: i64,
                op: i64,
                file: i64,
                rev: i64,
                path: String,
                from: Option<String>,
                kind: i64,
            }
            let rows: Vec<Row> = s
                .query_map(params![ns, cursor, limit], |r| {
                    Ok(Row {
                        seq: r.get(0)?,
                        op: r.get(1)?,
                        file: r.get(2)?,
                        rev: r.get(3)?,
                        path: r.get(4)?,
                        from: r.get(5)?,
                        kind: r.get(6)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut changes = Vec::with_capacity(rows.len());
            let mut last = cursor;
            for Row { seq, op, file, rev, path, from, kind } in rows {
                let op = op_of(op);
                let kind = kind_of(kind);
                let v = version(&tx, rev)?;
                let path = RelPath::parse(&path).map_err(|e| anyhow::anyhow!("journal path {path:?}: {e}"))?;
                let from = from.map(|f| RelPath::parse(&f)).transpose().map_err(|e| anyhow::anyhow!("{e}"))?;
                let refs = |l: &[(BlockId, u32)]| -> Vec<BlockRef> {
                    l.iter().map(|(id, size)| BlockRef { id: *id, size: *size }).collect()
                };
                let mut blocks = (kind == EntryKind::File && matches!(op, ChangeOp::Add | ChangeOp::Modify))
                    .then(|| refs(&v.blocks));
                let mut blocks_edit = None;
                if edits && kind == EntryKind::File && op == ChangeOp::Modify {
                    // The file's previous revision is the one its previous
                    // journal record named: a client that followed the journal holds its list.
                    let prev: Option<(i64, Vec<u8>, bool)> = tx
                        .row(
                            "SELECT id, blocks, deleted FROM file_versions WHERE file = ?1 AND id < ?2
                             ORDER BY id DESC LIMIT 1",
                            params![file, rev],
                            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                        )
                        .optional()?;
                    if let (Some((prev_rev, prev_blocks, false)), Some(new)) = (prev, &blocks) {
                        let base = refs(&ferry_shared::block::decode_list(&prev_blocks));
                        blocks_edit = BlocksEdit::between(prev_rev, &base, new);
                        if blocks_edit.is_some() {
                            blocks = None;
                        }
                    }
                }
                changes.push(Change {
                    seq,
                    op,
                    entry: entry_of(file, kind, &path, rev, &v),
                    from,
                    blocks,
                    blocks_edit,
                });
                last = seq;
            }
            let cursor = if changes.len() < limit as usize { head.max(last) } else { last };
            Ok(ChangesResponse { has_more: cursor < head, changes, cursor })
        })
    }

    fn file_version(&self, ns: i64, path: &RelPath, rev: Option<RevId>) -> Result<FileVersion> {
        self.read(|c| {
            let node = resolve(c, ns, path, rev.is_none())?
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

    fn revisions(&self, ns: i64, path: &RelPath, limit: u32) -> Result<Vec<Revision>> {
        self.read(|c| {
            let node = resolve(c, ns, path, false)?
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
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

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
            c.exec("DELETE FROM upload_sessions WHERE id = ?1", [id])?;
            Ok(())
        })
    }

    fn expired_uploads(&self, now: i64) -> Result<Vec<String>> {
        self.read(|c| {
            let mut s = c.prepare("SELECT id FROM upload_sessions WHERE expires < ?1")?;
            let rows = s.query_map([now], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }
}
