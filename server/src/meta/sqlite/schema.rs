//! Applies the schema ([`crate::meta::sql::schema`]) to a SQLite database.

use rusqlite::Connection;

use crate::error::Result;
use crate::meta::sql::schema::MIGRATIONS;

pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let version = version as usize;
    if version > MIGRATIONS.len() {
        return Err(anyhow::anyhow!(
            "database schema version {version} is newer than this ferry-server knows ({}); upgrade ferry-server",
            MIGRATIONS.len()
        )
        .into());
    }
    for (i, m) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(m.sqlite)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
        tx.commit()?;
    }
    Ok(())
}
