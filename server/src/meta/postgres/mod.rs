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
//! the commit, by writes that hold the namespace's lock: a commit that
//! takes sequence 42 of a namespace waits on the lock until the one that
//! took 41 has committed, so a reader that has seen 42 has seen 41
//! (cursors never skip). Wake-ups are never sent inside a
//! transaction (`NOTIFY` serialises committing transactions).
//!
//! Reads are `REPEATABLE READ READ ONLY` transactions (one snapshot).
//!
//! # Connections
//! A pool ([`pool`]) that drops a connection known to be closed rather
//! than hand it out again. One that broke unnoticed (its server
//! restarted) fails its first statement: a write runs again on another
//! connection, unless it broke while committing (then whether it committed
//! is unknown, and the caller is told so); a read fails once. (Checking
//! each connection with a query before handing it out costs a round trip
//! per transaction, a quarter of a small commit's.)
//!
//! The store's methods are blocking, like every store's: each statement
//! waits on its connection's own runtime of one thread, which the waiting
//! thread drives itself (it reads its answer; no other thread is woken on
//! the way), so the caller's runtime threads are never held.
//!
//! # Round trips
//! Each statement is a round trip, which on a small commit costs more than
//! the work: a transaction's `BEGIN` goes with its first statement, and
//! statements whose answers are not needed ([`Db::exec_later`]) go with
//! the next one waited on, its `COMMIT` included (a statement prepared
//! before is at hand without one). New rows of files and versions have
//! their ids taken ahead from the tables' sequences ([`Db::new_ids`]), so
//! inserting them waits for nothing, and a commit reads what it needs of
//! its namespace and account in one statement. What a transaction has
//! read it keeps for its later statements ([`super::sql::db::TxCache`]).
//! Reads of one statement ([`Backend::read_each`]) run outside a
//! transaction: no `BEGIN`, no `COMMIT` to wait for.
//!
//! # Writes of one namespace together
//! Writes of one namespace (their first lock) queue on the node before
//! they take a connection, and whoever finds the queue free runs those
//! waiting (up to 32) in one transaction, each in a savepoint
//! of its own that is undone alone if it fails: they share the lock's
//! wait, the round trips that begin and commit, and the flush to disk, as
//! the SQLite writer's group commit does. If the transaction fails as a
//! whole (other than by losing a race, which runs it again), each write
//! runs again alone, so none fails for another's trouble.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;

use super::sql::db::{Db, Lock, Locks, PgConn, SqlError, broken, lost_race};
use super::sql::schema::MIGRATIONS;
use super::sql::{Backend, SqlStore, Turn};
use crate::error::{Error, Result};

mod pool;
pub mod tls;

pub use pool::PgClient;
use pool::Pool;

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
    /// Writes of one namespace on this node wait for each other here,
    /// not holding a connection while they wait for its lock.
    lanes: Lanes,
}

/// One queue per lock key that writes of this node are waiting for or
/// hold (see [`Postgres::write`]).
#[derive(Default)]
struct Lanes(Mutex<HashMap<i64, Arc<Lane>>>);

/// Writes of one lane: those waiting, and whether a group of them runs.
#[derive(Default)]
struct Lane {
    state: Mutex<LaneState>,
    /// Rung when a group ends: its writes are answered, and the lane is free.
    turn: Condvar,
}

#[derive(Default)]
struct LaneState {
    waiting: VecDeque<Job>,
    running: bool,
}

/// Most writes one transaction of a lane runs: each is a subtransaction,
/// and PostgreSQL keeps 64 of them in memory per transaction.
const MAX_GROUP: usize = 32;

/// A write's run (see [`Job::run`]).
type JobRun = dyn Fn(&Db<'_>) -> Result<bool> + Send;

/// A write waiting in its lane, its result type put away.
struct Job {
    locks: Vec<Lock>,
    /// Runs the write, keeping its result for its caller: `Ok(true)` once
    /// it succeeded, `Ok(false)` when it failed (its error kept; what it
    /// wrote must be undone), `Err` when the transaction lost a race and
    /// runs again as a whole.
    run: Box<JobRun>,
    /// Hands the caller what was kept, once its transaction committed, or
    /// `Some` error instead. (A job dropped unanswered, by a panic, answers
    /// with an error.)
    answer: Option<Box<dyn FnOnce(Option<Error>) + Send>>,
}

impl Job {
    fn answer(mut self, error: Option<Error>) {
        if let Some(answer) = self.answer.take() {
            answer(error);
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if let Some(answer) = self.answer.take() {
            answer(Some(Error::Internal(anyhow::anyhow!("a write of its group panicked"))));
        }
    }
}

/// Frees a lane when its group is done, or has panicked.
struct Running<'a>(&'a Lane);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner).running = false;
        self.0.turn.notify_all();
    }
}

/// What a write's caller waits for: its result as its last run left it,
/// then whether that is its answer.
struct Slot<R> {
    kept: Option<Result<R>>,
    answered: bool,
}

/// The error a write alone ends its transaction with when it failed (its
/// own error is kept for its caller).
#[derive(Debug, thiserror::Error)]
#[error("the write failed")]
struct WriteFailed;

/// The metadata store on PostgreSQL.
pub type PostgresStore = SqlStore<Postgres>;

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
        let target = tls::Target::parse(url)?;
        let backend = Postgres { pool: Pool::new(target, POOL_SIZE), lanes: Lanes::default() };
        // Reachable now, or a clear error at start-up.
        drop(backend.pool.get().map_err(|e| anyhow::anyhow!("connecting to {}: {e}", tls::without_password(url)))?);
        Ok(SqlStore::new(backend))
    }

    /// Brings the schema to this server's version, under an advisory lock.
    /// Returns the versions it applied.
    pub fn migrate(&self) -> anyhow::Result<usize> {
        let backend = self.backend();
        let client = backend.pool.get().map_err(|e| anyhow::anyhow!("connecting: {e}"))?;
        let tx: &tokio_postgres::Client = &client;
        let r = client.block_on(async {
            tx.batch_execute("BEGIN").await?;
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
            tx.batch_execute("COMMIT").await?;
            Ok(MIGRATIONS.len() - version)
        });
        if r.is_err() {
            // (A connection that cannot roll back is dropped when put back.)
            let _ = client.block_on(client.batch_execute("ROLLBACK"));
        }
        r
    }
}

impl Postgres {
    fn client(&self) -> Result<pool::Pooled<'_>> {
        Ok(self.pool.get()?)
    }

    /// Runs `f` in a transaction begun with `begin` (`None`: each statement
    /// in one of its own); `Ok` once committed.
    /// `locks` are a write's (see [`Db::enter`]): those already held were
    /// taken by `begin`.
    fn transaction<R>(
        &self,
        begin: Option<&str>,
        locks: Option<&RefCell<Locks>>,
        f: &impl Fn(&Db<'_>) -> Result<R>,
    ) -> Result<R> {
        let client = self.client()?;
        let db = Db::pg(PgConn::new(&client, locks));
        let Some(begin) = begin else {
            // Each statement a transaction of its own.
            return f(&db);
        };
        // (Sent with the first statement.)
        db.begin_later(begin.to_owned())?;
        let r = f(&db).and_then(|r| Ok(db.commit().map(|()| r)?));
        drop(db);
        if r.is_err() {
            // (A connection that cannot even roll back fails its check
            // before it is handed out again, and is dropped. One whose
            // transaction never began says so, harmlessly.)
            let _ = client.block_on(client.batch_execute("ROLLBACK"));
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
                self.transaction(Some(&begin), None, f)
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
                self.transaction(Some(&begin), Some(locks), f)
            }
        }
    }
}

impl Backend for Postgres {
    fn write<R: Send + 'static>(&self, turn: Turn, f: impl Fn(&Db<'_>) -> Result<R> + Send + 'static) -> Result<R> {
        // Writes of one namespace (its first lock) queue on this node: one
        // transaction at a time runs those waiting together, each undone
        // alone if it fails, so they share the lock's wait, the round
        // trips that begin and commit, and the flush to disk, and leave
        // the other connections to others.
        let locks = match turn {
            Turn::With(first) if !first.is_empty() => first,
            turn => return self.write_runs(&turn, &f),
        };
        let key = locks.iter().map(|l| l.key()).min().expect("not empty");
        let slot = Arc::new(Mutex::new(Slot::<R> { kept: None, answered: false }));
        let (run_slot, answer_slot) = (Arc::clone(&slot), Arc::clone(&slot));
        let job = Job {
            locks,
            run: Box::new(move |db| {
                let (r, ok) = match f(db) {
                    Err(e) if lost_race(&e) => return Err(e),
                    Ok(r) => (Ok(r), true),
                    Err(e) => (Err(e), false),
                };
                run_slot.lock().unwrap_or_else(PoisonError::into_inner).kept = Some(r);
                Ok(ok)
            }),
            answer: Some(Box::new(move |error| {
                let mut slot = answer_slot.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(e) = error {
                    slot.kept = Some(Err(e));
                }
                slot.answered = true;
            })),
        };
        let answered = || slot.lock().unwrap_or_else(PoisonError::into_inner).answered;
        self.lanes.run(key, job, answered, |jobs| self.run_group(jobs));
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        slot.kept.take().unwrap_or_else(|| Err(Error::Internal(anyhow::anyhow!("a write was never run"))))
    }

    fn read<R>(&self, f: impl Fn(&Db<'_>) -> Result<R>) -> Result<R> {
        self.read_in(Some("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"), &f)
    }

    fn read_each<R>(&self, f: impl Fn(&Db<'_>) -> Result<R>) -> Result<R> {
        // Outside a transaction: no BEGIN, and no COMMIT to wait for.
        self.read_in(None, &f)
    }
}

impl Postgres {
    /// A read begun with `begin` (`None`: outside a transaction), again on
    /// another connection while the one it had is found broken (each of
    /// the pool's may be, once).
    fn read_in<R>(&self, begin: Option<&str>, f: &impl Fn(&Db<'_>) -> Result<R>) -> Result<R> {
        let mut attempt = 0;
        loop {
            match self.transaction(begin, None, f) {
                Err(e) if attempt <= POOL_SIZE && on_broken_connection(&e) => attempt += 1,
                r => return r,
            }
        }
    }
}

/// Whether `e` is a statement's failure on a connection found broken.
fn on_broken_connection(e: &Error) -> bool {
    match e {
        Error::Internal(e) => e.downcast_ref::<SqlError>().is_some_and(|e| matches!(e, SqlError::Pg(pg) if broken(pg))),
        _ => false,
    }
}

impl Lanes {
    /// Queues `job` in lane `key` and returns once it is `answered`: by
    /// the group of another caller, or by one this caller runs with
    /// `group` when the lane is free.
    fn run(&self, key: i64, job: Job, answered: impl Fn() -> bool, group: impl Fn(Vec<Job>)) {
        let lane = Arc::clone(self.0.lock().expect("lanes").entry(key).or_default());
        {
            let mut state = lane.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.waiting.push_back(job);
            while !answered() {
                if state.running {
                    state = lane.turn.wait(state).unwrap_or_else(PoisonError::into_inner);
                    continue;
                }
                // Free, and this job not answered: it is still waiting
                // (a group answers all it took before the lane is free).
                if state.waiting.is_empty() {
                    break;
                }
                state.running = true;
                let n = state.waiting.len().min(MAX_GROUP);
                let jobs: Vec<Job> = state.waiting.drain(..n).collect();
                drop(state);
                {
                    let _free = Running(&lane);
                    group(jobs);
                }
                state = lane.state.lock().unwrap_or_else(PoisonError::into_inner);
            }
        }
        let mut lanes = self.0.lock().expect("lanes");
        // The map's and this one: nobody else waits in it.
        if Arc::strong_count(&lane) == 2 {
            lanes.remove(&key);
        }
    }
}

impl Postgres {
    /// Runs writes of one lane: one alone as it is; several in one
    /// transaction, each in a savepoint of its own, undone alone when it
    /// fails. If the transaction fails as a whole (not by losing races,
    /// which run it again), each runs again alone, so one write's trouble
    /// is not the others'. Every job is answered.
    fn run_group(&self, jobs: Vec<Job>) {
        if jobs.len() == 1 {
            let job = jobs.into_iter().next().expect("one");
            let error = self.run_alone(&job);
            job.answer(error);
            return;
        }
        let mut locks: Vec<Lock> = jobs.iter().flat_map(|j| j.locks.iter().copied()).collect();
        locks.sort_by_key(|l| l.key());
        locks.dedup_by_key(|l| l.key());
        let together = self.write_runs(&Turn::With(locks), &|db| {
            db.expect_writes(jobs.len());
            for job in &jobs {
                let point = db.write_savepoint()?;
                if (job.run)(db)? {
                    db.release(point)?;
                } else {
                    db.rollback_to(point)?;
                }
            }
            Ok(())
        });
        match together {
            Ok(()) => jobs.into_iter().for_each(|j| j.answer(None)),
            Err(e) if commit_unknown(&e) => {
                for j in jobs {
                    j.answer(Some(Error::from(SqlError::CommitUnknown)));
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, writes = jobs.len(), "a group of writes failed: each runs alone");
                for job in jobs {
                    let error = self.run_alone(&job);
                    job.answer(error);
                }
            }
        }
    }

    /// Runs one write in a transaction of its own; the error its caller
    /// gets instead of its kept result, if any.
    fn run_alone(&self, job: &Job) -> Option<Error> {
        let r = self.write_runs(&Turn::With(job.locks.clone()), &|db| match (job.run)(db)? {
            true => Ok(()),
            // (Its transaction is undone; its error is kept.)
            false => Err(Error::Internal(anyhow::Error::new(WriteFailed))),
        });
        match r {
            Ok(()) => None,
            Err(Error::Internal(e)) if e.is::<WriteFailed>() => None,
            Err(e) => Some(e),
        }
    }
}

/// Whether `e` says the connection broke while committing.
fn commit_unknown(e: &Error) -> bool {
    match e {
        Error::Internal(e) => e.downcast_ref::<SqlError>().is_some_and(|e| matches!(e, SqlError::CommitUnknown)),
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
