//! The schema: append-only migrations, applied in order on open.

use rusqlite::Connection;

use super::Cached;
use crate::error::Result;

pub(super) const SCHEMA: &[&str] = &[
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
    // 5: read-only share links to a file or folder (by row id: they follow
    // it through moves).
    r#"
    CREATE TABLE links(
        id INTEGER PRIMARY KEY, token TEXT NOT NULL UNIQUE, owner INTEGER NOT NULL, ns INTEGER NOT NULL,
        file INTEGER NOT NULL, created INTEGER NOT NULL, expires INTEGER, pw_hash TEXT);
    CREATE INDEX links_owner ON links(owner, id);
    "#,
    // 6: shared folders. A share is a namespace of its own (`shared = 1`,
    // owned by the user whose quota it uses, no journal of its own); each
    // member has a mount row in their root namespace (`files.mount`) and a
    // `members` row. Every change in a share is journaled in each member's
    // root namespace at the member's own path. Blocks of a share's files
    // are readable by its members (`share_blocks`).
    r#"
    CREATE TABLE namespaces_v6(
        id INTEGER PRIMARY KEY, owner INTEGER NOT NULL, seq INTEGER NOT NULL DEFAULT 0,
        pending_seq INTEGER NOT NULL DEFAULT 0, shared INTEGER NOT NULL DEFAULT 0);
    INSERT INTO namespaces_v6(id, owner, seq, pending_seq) SELECT id, owner, seq, pending_seq FROM namespaces;
    DROP TABLE namespaces;
    ALTER TABLE namespaces_v6 RENAME TO namespaces;
    CREATE UNIQUE INDEX namespaces_root ON namespaces(owner) WHERE shared = 0;
    ALTER TABLE files ADD COLUMN mount INTEGER;
    CREATE INDEX files_mounts ON files(mount) WHERE mount IS NOT NULL;
    CREATE TABLE members(
        ns INTEGER NOT NULL, user_id INTEGER NOT NULL, role INTEGER NOT NULL, mount INTEGER NOT NULL,
        added INTEGER NOT NULL, PRIMARY KEY(ns, user_id));
    CREATE INDEX members_user ON members(user_id);
    CREATE INDEX members_mount ON members(mount);
    CREATE TABLE share_blocks(ns INTEGER NOT NULL, block BLOB NOT NULL, PRIMARY KEY(ns, block)) WITHOUT ROWID;
    CREATE INDEX share_blocks_block ON share_blocks(block);
    "#,
    // 7: blocks an account uploaded and no commit of theirs has used yet
    // (`pending`, since `created`) count against its quota (`users.staged`,
    // their bytes) until one does, or they expire.
    r#"
    ALTER TABLE account_blocks ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE account_blocks ADD COLUMN created INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX account_blocks_pending ON account_blocks(created) WHERE pending = 1;
    ALTER TABLE users ADD COLUMN staged INTEGER NOT NULL DEFAULT 0;
    "#,
];

pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
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
