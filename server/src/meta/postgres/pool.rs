//! The connections, each with a runtime of its own that the thread using
//! it drives while it waits: the answer to a statement is read by the
//! thread that waits for it, with no other thread to wake on the way
//! (a runtime shared by all connections has whichever thread holds it
//! read every answer, then wake its waiter: two wake-ups a round trip).
//!
//! A connection is used by one thread at a time (taken from the pool,
//! put back when done), and polled only while it is in use: one that
//! broke while idle fails its next statement, as the callers expect.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, Statement};

use super::tls::Target;
use crate::meta::sql::db::SqlError;

/// How long a caller waits for a connection when all are in use.
const WAIT: Duration = Duration::from_secs(30);
/// How long making a connection may take.
const CONNECT: Duration = Duration::from_secs(10);

type Driving = Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send>>;

/// A connection: its client, the future that runs its socket, and the
/// runtime that future runs on.
pub struct PgClient {
    client: Client,
    /// `None` once the connection ended.
    connection: RefCell<Option<Driving>>,
    statements: RefCell<HashMap<String, Statement>>,
    /// `Some` until dropped (then shut down without waiting: a connection
    /// may be dropped from anywhere).
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::ops::Deref for PgClient {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Drop for PgClient {
    fn drop(&mut self) {
        self.connection.get_mut().take();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl PgClient {
    fn connect(target: &Target) -> Result<PgClient, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting a connection's runtime: {e}"))?;
        let (client, connection) = runtime
            .block_on(async { tokio::time::timeout(CONNECT, target.config.connect(target.tls.clone())).await })
            .map_err(|_| format!("no connection within {} s", CONNECT.as_secs()))?
            .map_err(|e| with_causes(&e))?;
        Ok(PgClient {
            client,
            connection: RefCell::new(Some(Box::pin(connection))),
            statements: RefCell::default(),
            runtime: Some(runtime),
        })
    }

    /// Runs `f` to its end on this thread, driving the connection
    /// meanwhile (its answers come in only while someone waits here).
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        let rt = self.runtime.as_ref().expect("a runtime until dropped");
        let mut connection = self.connection.borrow_mut();
        rt.block_on(async {
            let mut f = std::pin::pin!(f);
            loop {
                let Some(driving) = connection.as_mut() else { return f.await };
                tokio::select! {
                    biased;
                    r = &mut f => return r,
                    ended = driving.as_mut() => {
                        if let Err(e) = ended {
                            tracing::debug!(error = %e, "a database connection ended");
                        }
                    }
                }
                // Ended: what still waits on it hears so once it is gone.
                *connection = None;
            }
        })
    }

    /// The statement for `sql`, prepared once per connection.
    pub fn prepare_cached(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(st) = self.statements.borrow().get(sql) {
            return Ok(st.clone());
        }
        let st = self.block_on(self.client.prepare(sql))?;
        self.statements.borrow_mut().insert(sql.to_owned(), st.clone());
        Ok(st)
    }
}

/// At most `max` connections to one database, made as needed; one found
/// closed is dropped rather than handed out again.
pub struct Pool {
    target: Target,
    max: usize,
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Default)]
struct State {
    idle: Vec<PgClient>,
    /// Connections in use, idle or being made.
    made: usize,
}

/// A connection taken from the pool; back to it when dropped.
pub struct Pooled<'a> {
    client: Option<PgClient>,
    pool: &'a Pool,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = PgClient;

    fn deref(&self) -> &PgClient {
        self.client.as_ref().expect("until dropped")
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut PgClient {
        self.client.as_mut().expect("until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else { return };
        let mut state = self.pool.state.lock().unwrap_or_else(PoisonError::into_inner);
        if client.is_closed() || client.connection.borrow().is_none() {
            state.made -= 1;
        } else {
            state.idle.push(client);
        }
        drop(state);
        self.pool.freed.notify_one();
    }
}

impl Pool {
    pub fn new(target: Target, max: usize) -> Pool {
        Pool { target, max, state: Mutex::default(), freed: Condvar::new() }
    }

    /// A connection: an idle one, a new one while there are fewer than
    /// the most, else the next one put back (an error after 30 s).
    pub fn get(&self) -> Result<Pooled<'_>, SqlError> {
        let deadline = Instant::now() + WAIT;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            while let Some(client) = state.idle.pop() {
                if client.is_closed() {
                    state.made -= 1;
                    continue;
                }
                return Ok(Pooled { client: Some(client), pool: self });
            }
            if state.made < self.max {
                state.made += 1;
                drop(state);
                return match PgClient::connect(&self.target) {
                    Ok(client) => Ok(Pooled { client: Some(client), pool: self }),
                    Err(e) => {
                        self.state.lock().unwrap_or_else(PoisonError::into_inner).made -= 1;
                        self.freed.notify_one();
                        Err(SqlError::Pool(e))
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(SqlError::Pool(format!(
                    "all {} connections stayed in use for {} s",
                    self.max,
                    WAIT.as_secs()
                )));
            }
            state = self.freed.wait_timeout(state, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
    }
}

/// An error with its causes ("db error" alone says nothing).
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}
