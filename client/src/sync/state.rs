//! The client's persistent state (SQLite, WAL): the remote tree at the
//! cursor (with each file's block list, which stays here rather than in
//! memory), the synced tree, the cursor and the folder marker id.
//!
//! It is observed state, not a queue of pending work: losing it loses nothing
//! (a rebuilt state makes every path "new on both sides", which the planner
//! merges, with conflict copies where contents differ, and never deletes).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use ferry_shared::api::{BlockRef, EntryKind, FileId, RevId};
use ferry_shared::{BlockId, RelPath};
use rusqlite::{Connection, OptionalExtension, params};

use crate::sync::tree::{ContentHash, LocalNode, RemoteNode, RemoteTree, SyncedNode, SyncedTree};

/// What can go wrong with the state database.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("opening {}: {source}", path.display())]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("{} was written by a newer ferry (schema {found}, this one knows {known}); upgrade ferry", path.display())]
    Newer { path: PathBuf, found: usize, known: usize },
    #[error("the state database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("the state database: {0}")]
    Read(#[from] rusqlite::types::FromSqlError),
    #[error("creating the state folder: {0}")]
    Folder(#[from] std::io::Error),
}

pub type Result<T, E = StateError> = std::result::Result<T, E>;

/// Migrations, append-only: index = schema version - 1.
const SCHEMA: &[&str] = &[
    r#"
    CREATE TABLE IF NOT EXISTS kv(key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS remote(
        path TEXT PRIMARY KEY, id INTEGER NOT NULL, rev INTEGER NOT NULL, kind INTEGER NOT NULL,
        size INTEGER NOT NULL, mtime INTEGER NOT NULL, executable INTEGER NOT NULL, hash TEXT NOT NULL,
        blocks BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS synced(
        path TEXT PRIMARY KEY, id INTEGER NOT NULL, rev INTEGER NOT NULL, kind INTEGER NOT NULL,
        size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, inode INTEGER NOT NULL, executable INTEGER NOT NULL,
        hash TEXT NOT NULL);
    "#,
    // 2: the block list of each synced file: what is on disk now, the local
    // block index of delta downloads.
    r#"
    ALTER TABLE synced ADD COLUMN blocks BLOB NOT NULL DEFAULT x'';
    UPDATE synced SET blocks = COALESCE(
        (SELECT r.blocks FROM remote r WHERE r.path = synced.path AND r.hash = synced.hash AND r.kind = 0), x'')
    WHERE kind = 0;
    "#,
    // 3: downloads about to land: a daemon killed between a download's
    // rename and the record of it finds here what it had written.
    r#"
    CREATE TABLE IF NOT EXISTS landing(
        path TEXT PRIMARY KEY, id INTEGER NOT NULL, rev INTEGER NOT NULL, hash TEXT NOT NULL);
    "#,
];

pub struct State {
    conn: Connection,
}

fn kind_num(k: EntryKind) -> i64 {
    match k {
        EntryKind::File => 0,
        EntryKind::Dir => 1,
    }
}

fn kind_of(n: i64) -> EntryKind {
    if n == 1 { EntryKind::Dir } else { EntryKind::File }
}

fn encode_blocks(blocks: &[BlockRef]) -> Vec<u8> {
    ferry_shared::block::encode_list(blocks.iter().map(|b| (b.id, b.size)))
}

fn decode_blocks(blob: &[u8]) -> Vec<BlockRef> {
    ferry_shared::block::decode_list(blob).into_iter().map(|(id, size)| BlockRef { id, size }).collect()
}

fn hash_of(hex: String) -> ContentHash {
    // Stored hashes were checked when they arrived; a damaged one reads as
    // "unknown content", which only costs a re-check, never a wrong skip.
    ContentHash::parse(&hex).unwrap_or(ContentHash([0xff; 32]))
}

/// A download renamed into place, perhaps before its synced record was
/// written: a file with this content at the path is that revision, not an
/// edit made here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Landing {
    pub id: FileId,
    pub rev: RevId,
    pub hash: ContentHash,
}

/// A change to the persisted trees, applied in one transaction with others.
#[derive(Debug, Clone)]
pub enum Write {
    /// A remote item's metadata (a stored block list is kept), or its removal.
    Remote(RelPath, Option<RemoteNode>),
    /// The block list of the remote file at a path (written after its `Remote`).
    Blocks(RelPath, Vec<BlockRef>),
    /// A remote record moves to another path, block list and all.
    RenameRemote(RelPath, RelPath),
    /// A synced item's record, or its removal. A file's block list is kept
    /// while its content hash stays; a new hash takes the remote file's list
    /// at the same path when that has the same hash (a download, an
    /// agreement), and is otherwise unknown until a `SyncedBlocks`.
    Synced(RelPath, Option<SyncedNode>),
    /// The block list of the synced file at a path (what an upload sent).
    SyncedBlocks(RelPath, Vec<BlockRef>),
    /// A synced record moves to another path, block list and all.
    RenameSynced(RelPath, RelPath),
    /// A download about to be renamed into place (the server's file and
    /// revision and its content hash), or, once recorded, its removal.
    Landing(RelPath, Option<Landing>),
    Cursor(i64),
    /// The shared folders mounted in this tree (JSON, see `engine::shares`).
    Mounts(String),
    /// Forget every remote and synced record: the server's journal no
    /// longer continues ours (restored from an older backup), so the next
    /// listing is merged with the disk without a base, where nothing can
    /// read as deleted.
    ForgetTrees,
}

impl State {
    pub fn open(path: &Path) -> Result<State> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut conn = Connection::open(path).map_err(|source| StateError::Open { path: path.to_owned(), source })?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")?;
        let version: usize = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
        if version > SCHEMA.len() {
            return Err(StateError::Newer { path: path.to_owned(), found: version, known: SCHEMA.len() });
        }
        for (i, sql) in SCHEMA.iter().enumerate().skip(version) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
            tx.commit()?;
        }
        Ok(State { conn })
    }

    pub fn get(&self, key: &str) -> Result<Option<String>> {
        Ok(self.conn.query_row("SELECT value FROM kv WHERE key = ?1", [key], |r| r.get(0)).optional()?)
    }

    pub fn set(&self, key: &str, value: &str) -> Result<()> {
        self.conn.execute("INSERT OR REPLACE INTO kv(key, value) VALUES (?1, ?2)", [key, value])?;
        Ok(())
    }

    pub fn cursor(&self) -> Result<i64> {
        Ok(self.get("cursor")?.and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    /// The download that was about to land at `path`, if one was.
    pub fn landing(&self, path: &RelPath) -> Result<Option<Landing>> {
        let mut s = self.conn.prepare_cached("SELECT id, rev, hash FROM landing WHERE path = ?1")?;
        Ok(s.query_row([path.as_str()], |r| Ok(Landing { id: r.get(0)?, rev: r.get(1)?, hash: hash_of(r.get(2)?) }))
            .optional()?)
    }

    pub fn load_remote(&self) -> Result<RemoteTree> {
        let mut s = self.conn.prepare("SELECT path, id, rev, kind, size, mtime, executable, hash FROM remote")?;
        let rows = s.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                RemoteNode {
                    id: r.get(1)?,
                    rev: r.get(2)?,
                    kind: kind_of(r.get(3)?),
                    size: r.get::<_, i64>(4)? as u64,
                    mtime: r.get(5)?,
                    executable: r.get(6)?,
                    hash: hash_of(r.get(7)?),
                },
            ))
        })?;
        let mut nodes = Vec::new();
        for row in rows {
            let (path, node) = row?;
            // Stored paths were validated when they arrived; re-check anyway.
            if let Ok(p) = RelPath::parse_non_root(&path) {
                nodes.push((p, node));
            }
        }
        // Collected, not inserted one by one: a bulk-built map has full nodes
        // (about half the memory of one grown by inserts).
        Ok(nodes.into_iter().collect())
    }

    pub fn load_synced(&self) -> Result<SyncedTree> {
        let mut s =
            self.conn.prepare("SELECT path, id, rev, kind, size, mtime_ns, inode, executable, hash FROM synced")?;
        let rows = s.query_map([], |r| {
            let kind = kind_of(r.get(3)?);
            Ok((
                r.get::<_, String>(0)?,
                SyncedNode {
                    id: r.get(1)?,
                    rev: r.get(2)?,
                    kind,
                    local: LocalNode {
                        kind,
                        size: r.get::<_, i64>(4)? as u64,
                        mtime_ns: r.get(5)?,
                        inode: r.get::<_, i64>(6)? as u64,
                        executable: r.get(7)?,
                    },
                    hash: hash_of(r.get(8)?),
                },
            ))
        })?;
        let mut nodes = Vec::new();
        for row in rows {
            let (path, node) = row?;
            if let Ok(p) = RelPath::parse_non_root(&path) {
                nodes.push((p, node));
            }
        }
        Ok(nodes.into_iter().collect())
    }

    /// The block list of the remote file at `path` (empty when unknown).
    pub fn remote_blocks(&self, path: &RelPath) -> Result<Vec<BlockRef>> {
        let mut s = self.conn.prepare_cached("SELECT blocks FROM remote WHERE path = ?1")?;
        let blob: Option<Vec<u8>> = s.query_row([path.as_str()], |r| r.get(0)).optional()?;
        Ok(blob.map(|b| decode_blocks(&b)).unwrap_or_default())
    }

    /// Where the `wanted` blocks occur in synced files, that is on disk as
    /// far as the last sync knows: `(block, path, offset, length)`, every
    /// occurrence (the caller verifies what it reads). Streams the table;
    /// memory stays with the answer.
    pub fn block_sources(&self, wanted: &HashSet<BlockId>) -> Result<Vec<(BlockId, RelPath, u64, u32)>> {
        let mut out = Vec::new();
        if wanted.is_empty() {
            return Ok(out);
        }
        let mut s = self.conn.prepare("SELECT path, blocks FROM synced WHERE kind = 0 AND length(blocks) > 0")?;
        let mut rows = s.query([])?;
        while let Some(row) = rows.next()? {
            let blob = row.get_ref(1)?.as_blob()?;
            let mut off = 0u64;
            let mut path = None;
            for (id, size) in ferry_shared::block::decode_list(blob) {
                if wanted.contains(&id) {
                    if path.is_none() {
                        path = RelPath::parse_non_root(row.get_ref(0)?.as_str()?).ok();
                    }
                    if let Some(p) = &path {
                        out.push((id, p.clone(), off, size));
                    }
                }
                off += u64::from(size);
            }
        }
        Ok(out)
    }

    /// The block list recorded for the synced file at `path` (empty when unknown).
    pub fn synced_blocks(&self, path: &RelPath) -> Result<Vec<BlockRef>> {
        let mut s = self.conn.prepare_cached("SELECT blocks FROM synced WHERE path = ?1")?;
        let blob: Option<Vec<u8>> = s.query_row([path.as_str()], |r| r.get(0)).optional()?;
        Ok(blob.map(|b| decode_blocks(&b)).unwrap_or_default())
    }

    /// Applies writes in one transaction.
    pub fn apply(&mut self, writes: &[Write]) -> Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        {
            let mut put_remote = tx.prepare_cached(
                "INSERT INTO remote(path, id, rev, kind, size, mtime, executable, hash, blocks)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, x'')
                 ON CONFLICT(path) DO UPDATE SET id = excluded.id, rev = excluded.rev, kind = excluded.kind,
                   size = excluded.size, mtime = excluded.mtime, executable = excluded.executable,
                   hash = excluded.hash",
            )?;
            let mut put_blocks = tx.prepare_cached("UPDATE remote SET blocks = ?2 WHERE path = ?1")?;
            let mut del_remote = tx.prepare_cached("DELETE FROM remote WHERE path = ?1")?;
            let mut rename_remote = tx.prepare_cached("UPDATE remote SET path = ?2 WHERE path = ?1")?;
            let mut put_synced = tx.prepare_cached(
                "INSERT INTO synced(path, id, rev, kind, size, mtime_ns, inode, executable, hash, blocks)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,
                   COALESCE((SELECT blocks FROM remote WHERE path = ?1 AND hash = ?9 AND kind = 0), x''))
                 ON CONFLICT(path) DO UPDATE SET id = excluded.id, rev = excluded.rev, kind = excluded.kind,
                   size = excluded.size, mtime_ns = excluded.mtime_ns, inode = excluded.inode,
                   executable = excluded.executable, hash = excluded.hash,
                   blocks = CASE WHEN synced.hash = excluded.hash AND length(synced.blocks) > 0
                     THEN synced.blocks ELSE excluded.blocks END",
            )?;
            let mut del_synced = tx.prepare_cached("DELETE FROM synced WHERE path = ?1")?;
            let mut put_synced_blocks = tx.prepare_cached("UPDATE synced SET blocks = ?2 WHERE path = ?1")?;
            let mut rename_synced = tx.prepare_cached("UPDATE synced SET path = ?2 WHERE path = ?1")?;
            let mut put_landing =
                tx.prepare_cached("INSERT OR REPLACE INTO landing(path, id, rev, hash) VALUES (?1, ?2, ?3, ?4)")?;
            let mut del_landing = tx.prepare_cached("DELETE FROM landing WHERE path = ?1")?;
            for w in writes {
                match w {
                    Write::Remote(p, Some(n)) => {
                        put_remote.execute(params![
                            p.as_str(),
                            n.id,
                            n.rev,
                            kind_num(n.kind),
                            n.size as i64,
                            n.mtime,
                            n.executable,
                            n.hash.to_hex(),
                        ])?;
                    }
                    Write::Remote(p, None) => {
                        del_remote.execute([p.as_str()])?;
                    }
                    Write::Blocks(p, blocks) => {
                        put_blocks.execute(params![p.as_str(), encode_blocks(blocks)])?;
                    }
                    Write::RenameRemote(from, to) if from == to => {}
                    Write::RenameRemote(from, to) => {
                        del_remote.execute([to.as_str()])?;
                        rename_remote.execute([from.as_str(), to.as_str()])?;
                    }
                    Write::Synced(p, Some(n)) => {
                        put_synced.execute(params![
                            p.as_str(),
                            n.id,
                            n.rev,
                            kind_num(n.kind),
                            n.local.size as i64,
                            n.local.mtime_ns,
                            n.local.inode as i64,
                            n.local.executable,
                            n.hash.to_hex()
                        ])?;
                    }
                    Write::Synced(p, None) => {
                        del_synced.execute([p.as_str()])?;
                    }
                    Write::SyncedBlocks(p, blocks) => {
                        put_synced_blocks.execute(params![p.as_str(), encode_blocks(blocks)])?;
                    }
                    Write::RenameSynced(from, to) if from == to => {}
                    Write::RenameSynced(from, to) => {
                        del_synced.execute([to.as_str()])?;
                        rename_synced.execute([from.as_str(), to.as_str()])?;
                    }
                    Write::Landing(p, Some(l)) => {
                        put_landing.execute(params![p.as_str(), l.id, l.rev, l.hash.to_hex()])?;
                    }
                    Write::Landing(p, None) => {
                        del_landing.execute([p.as_str()])?;
                    }
                    Write::Cursor(c) => {
                        tx.execute("INSERT OR REPLACE INTO kv(key, value) VALUES ('cursor', ?1)", [c.to_string()])?;
                    }
                    Write::Mounts(json) => {
                        tx.execute("INSERT OR REPLACE INTO kv(key, value) VALUES ('mounts', ?1)", [json])?;
                    }
                    Write::ForgetTrees => tx.execute_batch(
                        "DELETE FROM remote; DELETE FROM synced; DELETE FROM landing; DELETE FROM kv WHERE key = 'mounts';",
                    )?,
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::parse(s).unwrap()
    }

    fn file(id: i64, rev: i64) -> RemoteNode {
        RemoteNode { id, rev, kind: EntryKind::File, size: 3, mtime: 0, executable: false, hash: ContentHash([1; 32]) }
    }

    #[test]
    fn block_lists_stay_with_their_file_through_updates_and_renames() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = State::open(&dir.path().join("state.db")).unwrap();
        let (x, y) = (BlockId::of(b"x"), BlockId::of(b"yy"));
        let list = vec![BlockRef { id: x, size: 1 }, BlockRef { id: y, size: 2 }];
        st.apply(&[Write::Remote(p("a/f"), Some(file(1, 1))), Write::Blocks(p("a/f"), list.clone())]).unwrap();
        // Metadata-only updates and renames keep the list.
        st.apply(&[Write::RenameRemote(p("a/f"), p("b/g")), Write::Remote(p("b/g"), Some(file(1, 2)))]).unwrap();
        assert_eq!(st.remote_blocks(&p("b/g")).unwrap(), list);
        assert!(st.remote_blocks(&p("a/f")).unwrap().is_empty());
        assert_eq!(st.load_remote().unwrap()[&p("b/g")], file(1, 2));
        st.apply(&[Write::Remote(p("b/g"), None)]).unwrap();
        assert!(st.remote_blocks(&p("b/g")).unwrap().is_empty());
    }

    fn synced(rev: i64, hash: u8) -> SyncedNode {
        let local = LocalNode { kind: EntryKind::File, size: 3, mtime_ns: 0, inode: 9, executable: false };
        SyncedNode { id: 1, rev, kind: EntryKind::File, local, hash: ContentHash([hash; 32]) }
    }

    #[test]
    fn synced_block_lists_describe_what_is_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = State::open(&dir.path().join("state.db")).unwrap();
        let (x, y, z) = (BlockId::of(b"x"), BlockId::of(b"yy"), BlockId::of(b"z"));
        let old = vec![BlockRef { id: x, size: 1 }, BlockRef { id: y, size: 2 }];
        // A download: the synced record takes the remote list of the same content.
        st.apply(&[
            Write::Remote(p("f"), Some(file(1, 1))),
            Write::Blocks(p("f"), old.clone()),
            Write::Synced(p("f"), Some(synced(1, 1))),
        ])
        .unwrap();
        assert_eq!(st.synced_blocks(&p("f")).unwrap(), old);
        // The server moves on: the remote list changes, the disk (synced) does not.
        let new = vec![BlockRef { id: z, size: 1 }, BlockRef { id: y, size: 2 }];
        let remote2 = RemoteNode { rev: 2, hash: ContentHash([2; 32]), ..file(1, 2) };
        st.apply(&[Write::Remote(p("f"), Some(remote2)), Write::Blocks(p("f"), new.clone())]).unwrap();
        let wanted: HashSet<BlockId> = [y].into();
        assert_eq!(st.block_sources(&wanted).unwrap(), vec![(y, p("f"), 1, 2)]);
        // The same content under a new revision keeps the list; a rename carries it.
        st.apply(&[Write::Synced(p("f"), Some(synced(3, 1))), Write::RenameSynced(p("f"), p("g"))]).unwrap();
        assert_eq!(st.synced_blocks(&p("g")).unwrap(), old);
        // An upload of other content: unknown until the upload says it.
        st.apply(&[Write::Synced(p("g"), Some(synced(4, 5)))]).unwrap();
        assert!(st.synced_blocks(&p("g")).unwrap().is_empty());
        st.apply(&[Write::SyncedBlocks(p("g"), new.clone())]).unwrap();
        assert_eq!(st.synced_blocks(&p("g")).unwrap(), new);
        st.apply(&[Write::Synced(p("g"), None)]).unwrap();
        assert!(st.block_sources(&wanted).unwrap().is_empty());
    }

    #[test]
    fn an_older_state_database_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA[0]).unwrap();
            let list = encode_blocks(&[BlockRef { id: BlockId::of(b"x"), size: 1 }]);
            conn.execute(
                "INSERT INTO remote VALUES ('f', 1, 1, 0, 3, 0, 0, 'ab', ?1), ('g', 2, 2, 0, 3, 0, 0, 'cd', ?1)",
                [list],
            )
            .unwrap();
            conn.execute_batch(
                "INSERT INTO synced VALUES ('f', 1, 1, 0, 3, 0, 9, 0, 'ab'), ('g', 2, 1, 0, 3, 0, 9, 0, 'old');
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let st = State::open(&path).unwrap();
        assert_eq!(st.load_synced().unwrap().len(), 2);
        // The list of a file the server still has as synced is taken over.
        assert_eq!(st.synced_blocks(&p("f")).unwrap(), vec![BlockRef { id: BlockId::of(b"x"), size: 1 }]);
        assert!(st.synced_blocks(&p("g")).unwrap().is_empty());
    }
}
