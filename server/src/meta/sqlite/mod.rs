//! The embedded backend: SQLite in WAL mode with `synchronous=FULL`.
//!
//! # Group commit
//! All writes go through one writer thread. It takes every job that is queued,
//! runs each inside its own savepoint of one transaction, commits once (one
//! fsync) and only then answers each caller. A job that fails rolls back to its
//! savepoint without touching the others. So every acknowledged write is
//! durable, and commits that arrive together share an fsync.
//!
//! Reads use a small pool of read-only connections (WAL lets them run beside
//! the writer), each read in a transaction of its own.

use std::path::Path;
use std::sync::{Condvar, Mutex, mpsc};

use anyhow::Context;
use rusqlite::Connection;

use super::sql::db::Db;
use super::sql::{Backend, SqlStore, Turn};
use crate::error::{Error, Result};

mod schema;

use schema::migrate;

type Done = Box<dyn FnOnce(Result<(), String>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> Done + Send>;

/// Most jobs folded into one transaction.
const MAX_GROUP: usize = 1024;
const READERS: usize = 4;

/// The SQLite connections: the writer's queue and the readers.
pub struct Sqlite {
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

fn open_conn(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    conn.set_prepared_statement_cache_capacity(128);
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF;")?;
    Ok(conn)
}

/// The embedded metadata store.
pub type SqliteStore = SqlStore<Sqlite>;

impl SqlStore<Sqlite> {
    /// Opens (creating and migrating if needed) the database at `path`.
    /// It holds link tokens and password hashes: it is made readable by
    /// its owner only (and SQLite gives its WAL files the same mode).
    pub fn open(path: &Path) -> Result<Self> {
        keep_private(path)?;
        let mut conn = open_conn(path)?;
        migrate(&mut conn)?;
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("ferry-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .context("starting the database writer")?;
        Ok(SqlStore::new(Sqlite {
            jobs: Mutex::new(tx),
            readers: Mutex::new(ReaderPool::default()),
            reader_free: Condvar::new(),
            path: path.to_owned(),
        }))
    }
}

impl Backend for Sqlite {
    /// Runs `f` in the writer's transaction; returns once it is durable.
    /// (One writer: every write takes its turn.)
    fn write<R: Send + 'static>(&self, _: Turn, f: impl Fn(&Db<'_>) -> Result<R> + Send + 'static) -> Result<R> {
        let (tx, rx) = mpsc::sync_channel::<Result<R>>(1);
        let job: Job = Box::new(move |conn: &Connection| -> Done {
            let r = match conn.execute_batch("SAVEPOINT job") {
                Ok(()) => {
                    let r = f(&Db::sqlite(conn));
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

    fn read<R>(&self, f: impl Fn(&Db<'_>) -> Result<R>) -> Result<R> {
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
        // One snapshot for all the read's statements.
        let r = match conn.execute_batch("BEGIN") {
            Ok(()) => {
                let r = f(&Db::sqlite(&conn));
                let _ = conn.execute_batch("COMMIT");
                r
            }
            Err(e) => Err(e.into()),
        };
        self.readers.lock().expect("reader pool poisoned").idle.push(conn);
        self.reader_free.notify_one();
        r
    }
}

/// Creates the database file with mode 0600, or takes group and other
/// access away from an existing one and its WAL files.
fn keep_private(path: &Path) -> Result<()> {
    match crate::fsutil::create_private_file(path) {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::Internal(anyhow::anyhow!("creating {}: {e}", path.display()))),
    }
    for suffix in ["", "-wal", "-shm"] {
        let p = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        match crate::fsutil::make_private(&p) {
            Ok(true) => tracing::info!(path = %p.display(), "made readable by its owner only"),
            Ok(false) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Internal(anyhow::anyhow!("{}: {e}", p.display()))),
        }
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
