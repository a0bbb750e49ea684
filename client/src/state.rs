//! The client's persistent state (SQLite, WAL): the remote tree at the
//! cursor (with each file's block list, which stays here rather than in
//! memory), the synced tree, the cursor and the folder marker id.
//!
//! It is observed state, not a queue of pending work: losing it loses nothing
//! (a rebuilt state makes every path "new on both sides", which the planner
//! merges, with conflict copies where contents differ, and never deletes).

use std::path::Path;

use anyhow::Context;
use std::collections::HashSet;

use ferry_shared::api::{BlockRef, EntryKind};
use ferry_shared::{BlockId, RelPath};
use rusqlite::{Connection, OptionalExtension, params};

use crate::tree::{ContentHash, LocalNode, RemoteNode, RemoteTree, SyncedNode, SyncedTree};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS kv(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS remote(
    path TEXT PRIMARY KEY, id INTEGER NOT NULL, rev INTEGER NOT NULL, kind INTEGER NOT NULL,
    size INTEGER NOT NULL, mtime INTEGER NOT NULL, executable INTEGER NOT NULL, hash TEXT NOT NULL,
    blocks BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS synced(
    path TEXT PRIMARY KEY, id INTEGER NOT NULL, rev INTEGER NOT NULL, kind INTEGER NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, inode INTEGER NOT NULL, executable INTEGER NOT NULL,
    hash TEXT NOT NULL);
"#;

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

/// A change to the persisted trees, applied in one transaction with others.
#[derive(Debug, Clone)]
pub enum Write {
    /// A remote item's metadata (a stored block list is kept), or its removal.
    Remote(RelPath, Option<RemoteNode>),
    /// The block list of the remote file at a path (written after its `Remote`).
    Blocks(RelPath, Vec<BlockRef>),
    /// A remote record moves to another path, block list and all.
    RenameRemote(RelPath, RelPath),
    Synced(RelPath, Option<SyncedNode>),
    Cursor(i64),
}

impl State {
    pub fn open(path: &Path) -> anyhow::Result<State> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")?;
        conn.execute_batch(SCHEMA)?;
        Ok(State { conn })
    }

    pub fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        Ok(self.conn.query_row("SELECT value FROM kv WHERE key = ?1", [key], |r| r.get(0)).optional()?)
    }

    pub fn set(&self, key: &str, value: &str) -> anyhow::Result<()> {
        self.conn.execute("INSERT OR REPLACE INTO kv(key, value) VALUES (?1, ?2)", [key, value])?;
        Ok(())
    }

    pub fn cursor(&self) -> anyhow::Result<i64> {
        Ok(self.get("cursor")?.and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    pub fn load_remote(&self) -> anyhow::Result<RemoteTree> {
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

    pub fn load_synced(&self) -> anyhow::Result<SyncedTree> {
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
    pub fn remote_blocks(&self, path: &RelPath) -> anyhow::Result<Vec<BlockRef>> {
        let mut s = self.conn.prepare_cached("SELECT blocks FROM remote WHERE path = ?1")?;
        let blob: Option<Vec<u8>> = s.query_row([path.as_str()], |r| r.get(0)).optional()?;
        Ok(blob.map(|b| decode_blocks(&b)).unwrap_or_default())
    }

    /// Where the `wanted` blocks occur in remote files: `(block, path,
    /// offset, length)`, every occurrence (the caller checks which files on
    /// disk still hold them). Streams the table; memory stays with the answer.
    pub fn block_sources(&self, wanted: &HashSet<BlockId>) -> anyhow::Result<Vec<(BlockId, RelPath, u64, u32)>> {
        let mut out = Vec::new();
        if wanted.is_empty() {
            return Ok(out);
        }
        let mut s = self.conn.prepare("SELECT path, blocks FROM remote WHERE kind = 0 AND length(blocks) > 0")?;
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

    /// Applies writes in one transaction.
    pub fn apply(&mut self, writes: &[Write]) -> anyhow::Result<()> {
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
                "INSERT OR REPLACE INTO synced(path, id, rev, kind, size, mtime_ns, inode, executable, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            let mut del_synced = tx.prepare_cached("DELETE FROM synced WHERE path = ?1")?;
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
                    Write::Cursor(c) => {
                        tx.execute("INSERT OR REPLACE INTO kv(key, value) VALUES ('cursor', ?1)", [c.to_string()])?;
                    }
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
        let wanted: HashSet<BlockId> = [y].into();
        assert_eq!(st.block_sources(&wanted).unwrap(), vec![(y, p("b/g"), 1, 2)]);
        st.apply(&[Write::Remote(p("b/g"), None)]).unwrap();
        assert!(st.block_sources(&wanted).unwrap().is_empty());
    }
}
