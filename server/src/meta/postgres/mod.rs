//! The PostgreSQL backend, for servers that outgrow one machine: the rules
//! of [`crate::meta::sql`] over a pool of `tokio-postgres` connections.
//!
//! # Transactions
//! Writes run side by side under `READ COMMITTED`, each holding the locks
//! of what it reads and then writes (transaction-scoped advisory locks,
//! see [`Turn`] and [`Db::enter`]): a commit holds its namespace and its
//! account from the start, and each share it enters, each member's root it
//! journals to and each account whose quota it charges from where it gets
//! there. Locks are taken in ascending order; one wanted out of order is
//! only tried, and if busy the write runs again taking it first, so
//! writes never wait on each other in a cycle. Since each statement of a
//! `READ COMMITTED` transaction sees what committed before it began, what
//! a write reads under a lock is what the lock's last holder left. Rare
//! writes that read widely (shares and members, accounts, links, sweeps)
//! run alone: every write holds one server-wide lock, shared, and those
//! hold it exclusively. Reads run beside all of them on snapshots of their
//! own. A write that still loses a race (a deadlock between row locks) is
//! run again. A commit's answer means it is durable (`synchronous_commit`
//! stays on); commits side by side share their flushes to disk.
//!
//! (`SERIALIZABLE` writes side by side were tried first: PostgreSQL's
//! predicate locks are coarse on these tables, and with 64 writers over 8
//! accounts some writes lost 20 times running.)
//!
//! Journal sequences come from a counter row per namespace, updated inside
//! the commit: a commit that takes sequence 42 of a namespace waits on the
//! row until the one that took 41 has committed, so a reader that has seen
//! 42 has seen 41 (cursors never skip). Wake-ups are never sent inside a
//! transaction (`NOTIFY` serialises committing transactions).
//!
//! Reads are `REPEATABLE READ READ ONLY` transactions (one snapshot).
//!
//! # Connections
//! A pool (`deadpool-postgres`) that drops a connection known to be closed
//! rather than hand it out again. One that broke unnoticed (its server
//! restarted) fails its first statement: a write runs again on another
//! connection, unless it broke while committing (then whether it committed
//! is unknown, and the caller is told so); a read fails once. (Checking
//! each connection with a query before handing it out costs a round trip
//! per transaction, a quarter of a small commit's.)
//!
//! The store's methods are blocking, like every store's: each statement
//! waits on the pool's own runtime of one thread, which the waiting thread
//! drives itself, so the caller's runtime threads are never held.
//!
//! # Round trips
//! Each statement is a round trip, which on a small commit costs more than
//! the work: a transaction's `BEGIN` goes with its first statement, and
//! statements whose answers are not needed ([`Db::exec_later`]) go with
//! the next one waited on, its `COMMIT` included. What a transaction has
//! read it keeps for its later statements ([`super::sql::db::TxCache`]).
//! Writes of one namespace queue on the node before they take a
//! connection, so connections are not held waiting for the namespace's
//! lock.

use std::cell::RefCell;
use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use super::sql::db::{Db, Locks, PgConn, SqlError, broken, lost_race};
use super::sql::schema::MIGRATIONS;
use super::sql::{Backend, SqlStore, Turn};
use crate::error::{Error, Result};

pub mod tls;

/// Connections the pool keeps at most.
const POOL_SIZE: usize = 16;
/// Times a write that lost a race runs again before the caller sees an error.
const RETRIES: u32 = 20;
/// The advisory lock `migrate` holds (two nodes starting together take turns).
const MIGRATION_LOCK: i64 = 0x6665_7272_795f_6d69; // "ferry_mi"
/// The advisory lock every write holds for its transaction: shared by those
/// that run beside others, exclusive for one that runs alone (and for
/// `migrate-to`'s copy).
pub(crate) const WRITE_LOCK: i64 = 0x6665_7272_795f_7772; // "ferry_wr"

/// The PostgreSQL connections.
pub struct Postgres {
    pool: Pool,
    /// Runs the connections; statements wait on it from blocking threads.
    runtime: Option<tokio::runtime::Runtime>,
    /// Writes of one namespace on this node wait for each other here,
    /// not holding a connection while they wait for its lock.
    lanes: Lanes,
}

/// One queue per lock key that writes of this node are waiting for or
/// hold (see [`Postgres::write`]).
#[derive(Default)]
struct Lanes(std::sync::Mutex<std::collections::HashMap<i64, std::sync::Arc<std::sync::Mutex<()>>>>);

impl Lanes {
    /// Runs `f` once this node's earlier writes of `key` are done.
    fn run<R>(&self, key: i64, f: impl FnOnce() -> R) -> R {
        let lane = std::sync::Arc::clone(self.0.lock().expect("lanes").entry(key).or_default());
        let r = {
            let _turn = lane.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            f()
        };
        let mut lanes = self.0.lock().expect("lanes");
        // The map's and this one: nobody else waits in it.
        if std::sync::Arc::strong_count(&lane) == 2 {
            lanes.remove(&key);
        }
        r
    }
}

/// The metadata store on PostgreSQL.
pub type PostgresStore = SqlStore<Postgres>;

impl Drop for Postgres {
    fn drop(&mut self) {
        // Dropped from anywhere (an async test, the server's shutdown).
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl SqlStore<Postgres> {
    /// Connects to `url` (`postgres://USER@HOST:PORT/DB`), creates the schema
    /// of an empty database and migrates an older one; refuses one newer
    /// than this server.
    pub fn connect(url: &str) -> anyhow::Result<Self> {
        let store = Self::connect_only(url)?;
        store.migrate()?;
        Ok(store)
    }

    /// Connects without touching the schema.
    pub fn connect_only(url: &str) -> anyhow::Result<Self> {
        let tls::Target { config, tls } = tls::Target::parse(url)?;
        // One thread's: whichever thread waits on a statement drives the
        // connections meanwhile (reading its answer itself), where a
        // runtime of its own would wake a thread of its own to read it and
        // then wake the waiting one.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the database runtime")?;
        let manager = Manager::from_config(config, tls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .context("the database pool")?;
        let backend = Postgres { pool, runtime: Some(runtime), lanes: Lanes::default() };
        // Reachable now, or a clear error at start-up.
        drop(
            backend
                .runtime()
                .block_on(backend.pool.get())
                .map_err(|e| anyhow::anyhow!("connecting to {}: {}", tls::without_password(url), pool_error(&e)))?,
        );
        Ok(SqlStore::new(backend))
    }

    /// Brings the schema to this server's version, under an advisory lock.
    /// Returns the versions it applied.
    pub fn migrate(&self) -> anyhow::Result<usize> {
        let backend = self.backend();
        let rt = backend.runtime();
        let mut client =
            rt.block_on(backend.pool.get()).map_err(|e| anyhow::anyhow!("connecting: {}", pool_error(&e)))?;
        rt.block_on(async {
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
            tx.batch_execute("CREATE TABLE IF NOT EXISTS ferry_schema(version BIGINT NOT NULL)").await?;
            let version: i64 = match tx.query_opt("SELECT version FROM ferry_schema", &[]).await? {
                Some(r) => r.get(0),
                None => {
                    tx.execute("INSERT INTO ferry_schema(version) VALUES (0)", &[]).await?;
                    0
                }
            };
            let version = version as usize;
            if version > MIGRATIONS.len() {
                anyhow::bail!(
                    "the database's schema version is {version}, newer than this ferry-server knows ({}); \
                     upgrade ferry-server",
                    MIGRATIONS.len()
                );
            }
            for (i, m) in MIGRATIONS.iter().enumerate().skip(version) {
                tx.batch_execute(m.postgres).await.with_context(|| format!("schema version {}", i + 1))?;
            }
            tx.execute("UPDATE ferry_schema SET version = $1", &[&(MIGRATIONS.len() as i64)]).await?;
            tx.commit().await?;
            Ok(MIGRATIONS.len() - version)
        })
    }
}

impl Postgres {
    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("runtime until dropped")
    }

    fn client(&self) -> Result<deadpool_postgres::Object> {
        self.runtime().block_on(self.pool.get()).map_err(|e| Error::from(SqlError::Pool(pool_error(&e))))
    }

    /// Runs `f` in a transaction begun with `begin`; `Ok` once committed.
    /// `locks` are a write's (see [`Db::enter`]): those already held were
    /// taken by `begin`.
    fn transaction<R>(
        &self,
        begin: &str,
        locks: Option<&RefCell<Locks>>,
        f: &impl Fn(&Db<'_>) -> Result<R>,
    ) -> Result<R> {
        let client = self.client()?;
        let rt = self.runtime();
        let db = Db::pg(PgConn::new(&client, rt, locks));
        // (Sent with the first statement.)
        db.begin_later(begin.to_owned());
        let r = f(&db).and_then(|r| Ok(db.commit().map(|()| r)?));
        drop(db);
        if r.is_err() {
            // (A connection that cannot even roll back fails its check
            // before it is handed out again, and is dropped. One whose
            // transaction never began says so, harmlessly.)
            let _ = rt.block_on(client.batch_execute("ROLLBACK"));
        }
        r
    }

    /// One run of a write: its transaction begun, the turn's locks and
    /// those an earlier run found busy taken in order, in one round trip.
    fn write_once<R>(&self, turn: &Turn, locks: &RefCell<Locks>, f: &impl Fn(&Db<'_>) -> Result<R>) -> Result<R> {
        let mut begin = String::from("BEGIN ISOLATION LEVEL READ COMMITTED; ");
        match turn {
            Turn::Alone => {
                begin.push_str(&format!("SELECT pg_advisory_xact_lock({WRITE_LOCK})"));
                self.transaction(&begin, None, f)
            }
            Turn::With(first) => {
                {
                    let mut l = locks.borrow_mut();
                    let wanted = std::mem::take(&mut l.wanted);
                    l.held = first.iter().map(|k| k.key()).chain(wanted).collect();
                    begin.push_str(&format!("SELECT pg_advisory_xact_lock_shared({WRITE_LOCK})"));
                    for key in &l.held {
                        begin.push_str(&format!("; SELECT pg_advisory_xact_lock({key})"));
                    }
                }
                self.transaction(&begin, Some(locks), f)
            }
        }
    }
}

impl Backend for Postgres {
    fn write<R: Send + 'static>(&self, turn: Turn, f: impl Fn(&Db<'_>) -> Result<R> + Send + 'static) -> Result<R> {
        // Writes of one namespace (its first lock) queue on this node
        // before they take a connection: one at a time waits on the
        // database's lock, the rest leave the connections to others.
        match &turn {
            Turn::With(first) if !first.is_empty() => {
                let key = first.iter().map(|l| l.key()).min().expect("not empty");
                self.lanes.run(key, || self.write_runs(&turn, &f))
            }
            _ => self.write_runs(&turn, &f),
        }
    }

    fn read<R>(&self, f: impl Fn(&Db<'_>) -> Result<R>) -> Result<R> {
        // Again on another connection while the one it had is found broken
        // (each of the pool's may be, once).
        let mut attempt = 0;
        loop {
            match self.transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", None, &f) {
                Err(e) if attempt <= POOL_SIZE && on_broken_connection(&e) => attempt += 1,
                r => return r,
            }
        }
    }
}

/// The pool's error with its causes ("db error" alone says nothing).
fn pool_error(e: &deadpool_postgres::PoolError) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

/// Whether `e` is a statement's failure on a connection found broken.
fn on_broken_connection(e: &Error) -> bool {
    match e {
        Error::Internal(e) => e.downcast_ref::<SqlError>().is_some_and(|e| matches!(e, SqlError::Pg(pg) if broken(pg))),
        _ => false,
    }
}

impl Postgres {
    /// Runs a write, again while it loses races.
    fn write_runs<R>(&self, turn: &Turn, f: &impl Fn(&Db<'_>) -> Result<R>) -> Result<R> {
        let mut attempt = 0;
        let locks = RefCell::new(Locks::default());
        loop {
            match self.write_once(turn, &locks, f) {
                Err(e) if lost_race(&e) && attempt >= RETRIES => {
                    tracing::warn!(attempt, "a write lost its race every time");
                    return Err(e);
                }
                Err(e) if lost_race(&e) => {
                    attempt += 1;
                    // Apart a little, so the same racers do not meet again.
                    let jitter = rand::random::<u64>() % (1 << attempt.min(6));
                    std::thread::sleep(Duration::from_millis(jitter));
                }
                r => return r,
            }
        }
    }
}
