//! Administration shared by the `ferry-server` command line and the client's
//! quickstart: opening a data directory's store, user names, the quickstart user.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::meta::postgres::PostgresStore;
use crate::meta::sqlite::SqliteStore;
use crate::meta::{Accounts, MetaStore};
use crate::passwords;

/// Opens (creating if needed, mode 0700) a data directory's metadata store.
pub fn open_store(data: &Path) -> anyhow::Result<SqliteStore> {
    crate::fsutil::create_private_dir(data)?;
    SqliteStore::open(&crate::serve::db_path(data)).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The metadata store a server or a command uses: PostgreSQL at `db`
/// (`postgres://USER@HOST:PORT/DB`, its schema created or migrated), else
/// SQLite in the data directory.
pub fn open_meta(data: Option<&Path>, db: Option<&str>) -> anyhow::Result<Arc<dyn MetaStore>> {
    match (db, data) {
        (Some(url), _) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Arc::new(PostgresStore::connect(url)?))
        }
        (Some(other), _) => {
            bail!("--db takes a PostgreSQL URL, postgres://USER@HOST:PORT/DATABASE (not {other:?})")
        }
        (None, Some(data)) => Ok(Arc::new(open_store(data)?)),
        (None, None) => bail!("give --data DIR (SQLite in that folder) or --db postgres://USER@HOST:PORT/DATABASE"),
    }
}

pub fn valid_user_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if !ok {
        bail!("user names are 1–64 letters, digits, '.', '_', '-' or '@'");
    }
    Ok(())
}

/// The quickstart user's credentials file and password.
pub struct Credentials {
    pub path: PathBuf,
    pub user: String,
    pub password: String,
}

/// Creates `user` with a random password on first start and writes the
/// credentials to `DATA/credentials.txt` (mode 0600); later starts read them back.
pub fn quickstart_user(data: &Path, user: &str) -> anyhow::Result<Credentials> {
    valid_user_name(user)?;
    let path = data.join("credentials.txt");
    let store = open_store(data)?;
    if store.list_users().map_err(|e| anyhow::anyhow!("{e}"))?.iter().any(|u| u.name == user) {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let password = text
            .lines()
            .find_map(|l| l.strip_prefix("password: "))
            .with_context(|| format!("no password line in {}", path.display()))?
            .to_owned();
        return Ok(Credentials { path, user: user.to_owned(), password });
    }
    let password = passwords::new_token();
    store.add_user(user, &passwords::hash_password(&password)?, 10 << 30).map_err(|e| anyhow::anyhow!("{e}"))?;
    let _ = std::fs::remove_file(&path);
    crate::fsutil::write_private_file(&path, format!("user: {user}\npassword: {password}\n").as_bytes())?;
    Ok(Credentials { path, user: user.to_owned(), password })
}
