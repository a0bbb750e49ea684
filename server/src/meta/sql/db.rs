//! The database as the rules see it: one connection inside a transaction,
//! statements with `?N` parameters, rows read by column index. Each backend
//! supplies the connection; the SQL is written once in the dialect both
//! speak (`ON CONFLICT`, `RETURNING`, `CASE`, recursive CTEs; integers are
//! 64-bit, byte strings are blobs).
//!
//! The API follows rusqlite's names (`exec`, `row`, `prepare_cached`,
//! `query_map`, `optional`) so the rules read like ordinary rusqlite code.

use rusqlite::types::{ToSqlOutput, ValueRef};

/// What a statement failed with.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// `row` found no row (see [`OptionalExtension::optional`]).
    #[error("no row")]
    NoRows,
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Pg(#[from] tokio_postgres::Error),
    /// No connection to the database could be had.
    #[error("no database connection: {0}")]
    Pool(String),
    /// A column did not hold what the rules read from it.
    #[error("column {0}: {1}")]
    Column(usize, String),
    /// A lock the write needed out of order was taken: it runs again,
    /// taking it in order (see [`Db::enter`]).
    #[error("a lock out of order was busy")]
    Busy,
}

pub type SqlResult<T> = std::result::Result<T, SqlError>;

/// `Ok(None)` for [`SqlError::NoRows`], as rusqlite's extension of the same name.
pub trait OptionalExtension<T> {
    fn optional(self) -> SqlResult<Option<T>>;
}

impl<T> OptionalExtension<T> for SqlResult<T> {
    fn optional(self) -> SqlResult<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(SqlError::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A value as it goes into or comes out of a statement.
#[derive(Debug, Clone, Copy)]
pub enum Val<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// A statement parameter.
pub trait Arg {
    fn val(&self) -> Val<'_>;
}

macro_rules! int_arg {
    ($($t:ty),*) => {$(
        impl Arg for $t {
            fn val(&self) -> Val<'_> {
                Val::Int(*self as i64)
            }
        }
    )*};
}
int_arg!(i64, i32, u32, u8, usize, u64);

impl Arg for bool {
    fn val(&self) -> Val<'_> {
        Val::Int(i64::from(*self))
    }
}

impl Arg for str {
    fn val(&self) -> Val<'_> {
        Val::Text(self)
    }
}

impl Arg for String {
    fn val(&self) -> Val<'_> {
        Val::Text(self)
    }
}

impl Arg for std::borrow::Cow<'_, str> {
    fn val(&self) -> Val<'_> {
        Val::Text(self)
    }
}

impl Arg for [u8] {
    fn val(&self) -> Val<'_> {
        Val::Blob(self)
    }
}

impl<const N: usize> Arg for [u8; N] {
    fn val(&self) -> Val<'_> {
        Val::Blob(self)
    }
}

impl Arg for Vec<u8> {
    fn val(&self) -> Val<'_> {
        Val::Blob(self)
    }
}

impl<T: Arg + ?Sized> Arg for &T {
    fn val(&self) -> Val<'_> {
        (**self).val()
    }
}

impl<T: Arg> Arg for Option<T> {
    fn val(&self) -> Val<'_> {
        self.as_ref().map_or(Val::Null, Arg::val)
    }
}

/// A statement's parameters: `[a]`, `[a, b]` of one type, `params![a, b, c]`
/// of several, or `[]`.
pub trait Args {
    fn vals(&self) -> Vec<Val<'_>>;
}

impl<T: Arg, const N: usize> Args for [T; N] {
    fn vals(&self) -> Vec<Val<'_>> {
        self.iter().map(Arg::val).collect()
    }
}

impl Args for () {
    fn vals(&self) -> Vec<Val<'_>> {
        Vec::new()
    }
}

impl Args for &[&dyn Arg] {
    fn vals(&self) -> Vec<Val<'_>> {
        self.iter().map(|a| a.val()).collect()
    }
}

/// Parameters of several types, in order (`?1`, `?2`, …).
#[macro_export]
macro_rules! params {
    ($($x:expr),* $(,)?) => {
        &[$(&$x as &dyn $crate::meta::sql::db::Arg),*] as &[&dyn $crate::meta::sql::db::Arg]
    };
}
pub use params;

impl rusqlite::ToSql for Val<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Val::Null => ValueRef::Null,
            Val::Int(i) => ValueRef::Integer(i),
            Val::Text(s) => ValueRef::Text(s.as_bytes()),
            Val::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// A column's value read into a Rust type.
pub trait FromCol: Sized {
    fn from_col(v: Val<'_>) -> Result<Self, String>;
}

macro_rules! int_col {
    ($($t:ty),*) => {$(
        impl FromCol for $t {
            fn from_col(v: Val<'_>) -> Result<Self, String> {
                match v {
                    Val::Int(i) => <$t>::try_from(i).map_err(|_| format!("{i} is out of range")),
                    other => Err(format!("expected an integer, found {other:?}")),
                }
            }
        }
    )*};
}
int_col!(i64, i32, u32, u64, u8, usize);

impl FromCol for bool {
    fn from_col(v: Val<'_>) -> Result<Self, String> {
        i64::from_col(v).map(|i| i != 0)
    }
}

impl FromCol for String {
    fn from_col(v: Val<'_>) -> Result<Self, String> {
        match v {
            Val::Text(s) => Ok(s.to_owned()),
            other => Err(format!("expected text, found {other:?}")),
        }
    }
}

impl FromCol for Vec<u8> {
    fn from_col(v: Val<'_>) -> Result<Self, String> {
        match v {
            Val::Blob(b) => Ok(b.to_vec()),
            Val::Text(s) => Ok(s.as_bytes().to_vec()),
            other => Err(format!("expected bytes, found {other:?}")),
        }
    }
}

impl Arg for ferry_shared::BlockId {
    fn val(&self) -> Val<'_> {
        Val::Blob(self.as_bytes())
    }
}

impl FromCol for ferry_shared::BlockId {
    fn from_col(v: Val<'_>) -> Result<Self, String> {
        match v {
            Val::Blob(b) => Self::from_slice(b).ok_or_else(|| format!("expected a block id, found {} bytes", b.len())),
            other => Err(format!("expected a block id, found {other:?}")),
        }
    }
}

impl<T: FromCol> FromCol for Option<T> {
    fn from_col(v: Val<'_>) -> Result<Self, String> {
        match v {
            Val::Null => Ok(None),
            v => T::from_col(v).map(Some),
        }
    }
}

/// A column's index (a trait, as rusqlite's, so that `get(0)` infers).
pub trait ColIndex {
    fn index(self) -> usize;
}

impl ColIndex for usize {
    fn index(self) -> usize {
        self
    }
}

/// One row of a result, read by column index.
pub enum Row<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Pg(&'a tokio_postgres::Row),
}

impl Row<'_> {
    /// Column `i` as a `T` (the first type parameter is there for rusqlite's
    /// spelling, `r.get::<_, i64>(0)`).
    pub fn get<I: ColIndex, T: FromCol>(&self, i: I) -> SqlResult<T> {
        let i = i.index();
        let v = match self {
            Row::Sqlite(r) => match r.get_ref(i)? {
                ValueRef::Null => Val::Null,
                ValueRef::Integer(n) => Val::Int(n),
                ValueRef::Real(f) => return Err(SqlError::Column(i, format!("unexpected real {f}"))),
                ValueRef::Text(t) => Val::Text(std::str::from_utf8(t).map_err(|e| SqlError::Column(i, e.to_string()))?),
                ValueRef::Blob(b) => Val::Blob(b),
            },
            Row::Pg(r) => pg_val(r, i)?,
        };
        T::from_col(v).map_err(|e| SqlError::Column(i, e))
    }
}

/// Column `i` of a PostgreSQL row as a [`Val`] (integers of every width,
/// booleans as 0 and 1, text and byte strings).
fn pg_val<'r>(r: &'r tokio_postgres::Row, i: usize) -> SqlResult<Val<'r>> {
    use tokio_postgres::types::Type;
    let col = |e: tokio_postgres::Error| SqlError::Column(i, e.to_string());
    let ty = r.columns().get(i).ok_or_else(|| SqlError::Column(i, "no such column".into()))?.type_().clone();
    Ok(match ty {
        Type::INT8 => r.try_get::<_, Option<i64>>(i).map_err(col)?.map_or(Val::Null, Val::Int),
        Type::INT4 => r.try_get::<_, Option<i32>>(i).map_err(col)?.map_or(Val::Null, |n| Val::Int(n.into())),
        Type::INT2 => r.try_get::<_, Option<i16>>(i).map_err(col)?.map_or(Val::Null, |n| Val::Int(n.into())),
        Type::BOOL => r.try_get::<_, Option<bool>>(i).map_err(col)?.map_or(Val::Null, |b| Val::Int(b.into())),
        Type::BYTEA => r.try_get::<_, Option<&[u8]>>(i).map_err(col)?.map_or(Val::Null, Val::Blob),
        Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => {
            r.try_get::<_, Option<&str>>(i).map_err(col)?.map_or(Val::Null, Val::Text)
        }
        other => return Err(SqlError::Column(i, format!("unexpected type {other} (cast it in the query)"))),
    })
}

impl tokio_postgres::types::ToSql for Val<'_> {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use tokio_postgres::types::{IsNull, Type};
        match *self {
            Val::Null => Ok(IsNull::Yes),
            Val::Int(n) => match *ty {
                Type::INT8 => n.to_sql(ty, out),
                Type::INT4 => i32::try_from(n)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(n)?.to_sql(ty, out),
                Type::BOOL => (n != 0).to_sql(ty, out),
                _ => Err(format!("an integer for a parameter of type {ty} (cast it in the query)").into()),
            },
            // PostgreSQL's text cannot hold NUL (SQLite's can): no name or
            // path that has one exists, and none is stored.
            Val::Text(t) if t.contains('\0') => Err(Box::new(NulInText)),
            Val::Text(t) => t.to_sql(ty, out),
            Val::Blob(b) => b.to_sql(ty, out),
        }
    }

    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// Whether `text` can be stored (and so found): not with a NUL character,
/// which PostgreSQL's text cannot hold. A lookup of such a name finds
/// nothing on either backend.
pub fn storable(text: &str) -> bool {
    !text.contains('\0')
}

/// Text with a NUL character, which PostgreSQL's text type cannot hold.
#[derive(Debug, thiserror::Error)]
#[error("text with a NUL character")]
pub struct NulInText;

/// What a write transaction must hold before it reads or writes rows that
/// other writes read and then write: a namespace (its tree, journal,
/// counters, pending uploads and members) or an account (its quota row).
/// Under SQLite's single writer these are nothing; on PostgreSQL they are
/// transaction-scoped advisory locks (see [`Db::enter`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Lock {
    Namespace(i64),
    Account(i64),
}

impl Lock {
    /// The advisory lock's key: the kind in the top byte, so that every
    /// write takes namespaces before accounts, each in ascending id order.
    pub fn key(self) -> i64 {
        match self {
            Lock::Namespace(id) => (1 << 56) | id,
            Lock::Account(id) => (2 << 56) | id,
        }
    }
}

/// The advisory locks a PostgreSQL write holds, and those a run found busy
/// out of order (the next run takes them first, in order).
#[derive(Debug, Default)]
pub struct Locks {
    pub held: std::collections::BTreeSet<i64>,
    pub wanted: std::collections::BTreeSet<i64>,
}

/// A savepoint of [`Db::savepoint`]: the locks held when it began.
#[must_use]
pub struct Savepoint {
    held: Option<std::collections::BTreeSet<i64>>,
}

/// A PostgreSQL connection inside a transaction, used from a blocking
/// thread (each statement waits on the backend's runtime).
pub struct PgConn<'a> {
    pub client: &'a deadpool_postgres::ClientWrapper,
    pub runtime: &'a tokio::runtime::Handle,
    /// A write's locks; `None` where [`Db::enter`] has nothing to take (a
    /// read, or a write that runs alone).
    pub locks: Option<&'a std::cell::RefCell<Locks>>,
}

impl PgConn<'_> {
    fn prepare(&self, sql: &str) -> SqlResult<tokio_postgres::Statement> {
        Ok(self.runtime.block_on(self.client.prepare_cached(&dollar_params(sql)))?)
    }

    fn enter(&self, key: i64) -> SqlResult<()> {
        let Some(locks) = self.locks else { return Ok(()) };
        let mut locks = locks.borrow_mut();
        if locks.held.contains(&key) {
            return Ok(());
        }
        if locks.held.last().is_none_or(|&top| key > top) {
            // In order: waiting cannot close a cycle of these locks.
            self.runtime.block_on(self.client.execute("SELECT pg_advisory_xact_lock($1)", &[&key]))?;
        } else {
            let got = self.runtime.block_on(self.client.query_one("SELECT pg_try_advisory_xact_lock($1)", &[&key]))?;
            if !got.get::<_, bool>(0) {
                locks.wanted.insert(key);
                return Err(SqlError::Busy);
            }
        }
        locks.held.insert(key);
        Ok(())
    }
}

/// `?N` parameters as PostgreSQL spells them (`$N`), outside quotes.
pub fn dollar_params(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => out.push('$'),
            c => out.push(c),
        }
    }
    out
}

/// Lengths of the lists one statement takes many keys or rows in (`IN (…)`,
/// `VALUES (…), (…)`): a few only, so each is one cached statement.
const LIST_LENGTHS: [usize; 4] = [1, 8, 64, 256];

/// `items` in chunks for statements that take a list of them: each chunk
/// padded to one of a few lengths by repeating its last item (a key twice
/// in an `IN` list, or a row twice under `ON CONFLICT DO NOTHING`, changes
/// nothing).
pub fn padded_chunks<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    items
        .chunks(LIST_LENGTHS[LIST_LENGTHS.len() - 1])
        .map(|chunk| {
            let n = *LIST_LENGTHS.iter().find(|&&n| n >= chunk.len()).expect("a chunk fits the longest list");
            let mut padded = chunk.to_vec();
            padded.resize(n, chunk[chunk.len() - 1].clone());
            padded
        })
        .collect()
}

/// `n` rows for `VALUES`, each as `row(i)` spells it (`(?1, ?{i + 2})`).
pub fn rows_sql(n: usize, row: impl Fn(usize) -> String) -> String {
    (0..n).map(row).collect::<Vec<_>>().join(", ")
}

/// An `IN` list of `n` parameters numbered on from `?{after}`:
/// `list_sql(3, 1)` is `(?2, ?3, ?4)`.
pub fn list_sql(n: usize, after: usize) -> String {
    format!("({})", (after + 1..=after + n).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", "))
}

/// The connection of one transaction.
pub enum Db<'a> {
    Sqlite(&'a rusqlite::Connection),
    Pg(PgConn<'a>),
}

impl<'a> Db<'a> {
    /// Runs a statement; returns how many rows it changed.
    pub fn exec(&self, sql: &str, args: impl Args) -> SqlResult<usize> {
        self.prepare_cached(sql)?.execute(args)
    }

    /// The first row of a query (`Err(NoRows)` when there is none).
    pub fn row<T>(&self, sql: &str, args: impl Args, f: impl FnOnce(&Row<'_>) -> SqlResult<T>) -> SqlResult<T> {
        self.prepare_cached(sql)?.query_row(args, f)
    }

    /// Inserts a row; returns its new `id`.
    pub fn insert(&self, sql: &str, args: impl Args) -> SqlResult<i64> {
        self.row(&format!("{sql} RETURNING id"), args, |r| r.get(0))
    }

    /// The first row of a query (rusqlite's name).
    pub fn query_row<T>(&self, sql: &str, args: impl Args, f: impl FnOnce(&Row<'_>) -> SqlResult<T>) -> SqlResult<T> {
        self.row(sql, args, f)
    }

    /// A statement (cached by the connection).
    pub fn prepare(&self, sql: &str) -> SqlResult<Stmt<'_>> {
        self.prepare_cached(sql)
    }

    /// A statement to run many times (cached by the connection).
    pub fn prepare_cached(&self, sql: &str) -> SqlResult<Stmt<'_>> {
        match self {
            Db::Sqlite(c) => Ok(Stmt::Sqlite(c.prepare_cached(sql)?)),
            Db::Pg(p) => Ok(Stmt::Pg(p, p.prepare(sql)?)),
        }
    }

    /// Runs `sql` for `keys` a list at a time (see [`padded_chunks`]):
    /// `{list}` in it stands for an `IN` list of the keys, numbered after
    /// `lead`'s parameters. Returns every row mapped with `f`; a key
    /// repeated to pad a list may give its rows twice.
    pub fn query_list<K: Arg + Clone, T>(
        &self,
        sql: &str,
        lead: &[&dyn Arg],
        keys: &[K],
        mut f: impl FnMut(&Row<'_>) -> SqlResult<T>,
    ) -> SqlResult<Vec<T>> {
        let mut out = Vec::new();
        for chunk in padded_chunks(keys) {
            let mut args: Vec<&dyn Arg> = lead.to_vec();
            args.extend(chunk.iter().map(|k| k as &dyn Arg));
            let sql = sql.replace("{list}", &list_sql(chunk.len(), lead.len()));
            for row in self.prepare_cached(&sql)?.query_map(&args[..], &mut f)? {
                out.push(row?);
            }
        }
        Ok(out)
    }

    /// Whether each statement is a round trip to another process (where one
    /// statement doing the work of two is worth it).
    pub fn remote(&self) -> bool {
        matches!(self, Db::Pg(_))
    }

    /// Takes `lock` for the rest of this write transaction, if it has not
    /// already: from here on, this transaction's statements see what every
    /// earlier holder committed, and no other write changes those rows
    /// until it ends. A lock wanted out of order is only tried; when busy,
    /// [`SqlError::Busy`] has the write run again, taking it first.
    pub fn enter(&self, lock: Lock) -> SqlResult<()> {
        match self {
            Db::Sqlite(_) => Ok(()),
            Db::Pg(p) => p.enter(lock.key()),
        }
    }

    /// Begins a savepoint: what follows until [`Db::rollback_to`] can be
    /// undone alone.
    pub fn savepoint(&self) -> SqlResult<Savepoint> {
        self.execute_batch("SAVEPOINT op")?;
        Ok(Savepoint { held: self.held() })
    }

    /// Keeps what was done since the savepoint.
    pub fn release(&self, _: Savepoint) -> SqlResult<()> {
        self.execute_batch("RELEASE op")
    }

    /// Undoes what was done since the savepoint. Locks taken since go too
    /// (PostgreSQL releases them with the savepoint), so they are taken
    /// again when next entered.
    pub fn rollback_to(&self, point: Savepoint) -> SqlResult<()> {
        self.execute_batch("ROLLBACK TO op; RELEASE op")?;
        if let (Db::Pg(PgConn { locks: Some(locks), .. }), Some(held)) = (self, point.held) {
            locks.borrow_mut().held = held;
        }
        Ok(())
    }

    fn held(&self) -> Option<std::collections::BTreeSet<i64>> {
        match self {
            Db::Pg(PgConn { locks: Some(locks), .. }) => Some(locks.borrow().held.clone()),
            _ => None,
        }
    }

    /// Runs statements without parameters or results (savepoints, several
    /// statements at once).
    pub fn execute_batch(&self, sql: &str) -> SqlResult<()> {
        match self {
            Db::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Db::Pg(p) => Ok(p.runtime.block_on(p.client.batch_execute(sql))?),
        }
    }
}

/// A prepared statement.
pub enum Stmt<'a> {
    Sqlite(rusqlite::CachedStatement<'a>),
    Pg(&'a PgConn<'a>, tokio_postgres::Statement),
}

/// Parameters as tokio-postgres takes them.
fn pg_params<'v>(vals: &'v [Val<'v>]) -> Vec<&'v (dyn tokio_postgres::types::ToSql + Sync)> {
    vals.iter().map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync)).collect()
}

impl Stmt<'_> {
    pub fn execute(&mut self, args: impl Args) -> SqlResult<usize> {
        match self {
            Stmt::Sqlite(s) => Ok(s.execute(rusqlite::params_from_iter(args.vals()))?),
            Stmt::Pg(p, st) => {
                let vals = args.vals();
                Ok(p.runtime.block_on(p.client.execute(st, &pg_params(&vals)))? as usize)
            }
        }
    }

    pub fn query_row<T>(&mut self, args: impl Args, f: impl FnOnce(&Row<'_>) -> SqlResult<T>) -> SqlResult<T> {
        match self {
            Stmt::Sqlite(s) => {
                let mut rows = s.query(rusqlite::params_from_iter(args.vals()))?;
                match rows.next()? {
                    Some(r) => f(&Row::Sqlite(r)),
                    None => Err(SqlError::NoRows),
                }
            }
            Stmt::Pg(p, st) => {
                let vals = args.vals();
                match p.runtime.block_on(p.client.query(st, &pg_params(&vals)))?.first() {
                    Some(r) => f(&Row::Pg(r)),
                    None => Err(SqlError::NoRows),
                }
            }
        }
    }

    /// Every row, mapped (collect the iterator into a `SqlResult<Vec<_>>`).
    pub fn query_map<T>(
        &mut self,
        args: impl Args,
        mut f: impl FnMut(&Row<'_>) -> SqlResult<T>,
    ) -> SqlResult<std::vec::IntoIter<SqlResult<T>>> {
        let mut out = Vec::new();
        match self {
            Stmt::Sqlite(s) => {
                let mut rows = s.query(rusqlite::params_from_iter(args.vals()))?;
                while let Some(r) = rows.next()? {
                    out.push(f(&Row::Sqlite(r)));
                }
            }
            Stmt::Pg(p, st) => {
                let vals = args.vals();
                for r in p.runtime.block_on(p.client.query(st, &pg_params(&vals)))? {
                    out.push(f(&Row::Pg(&r)));
                }
            }
        }
        Ok(out.into_iter())
    }
}

impl SqlError {
    /// A transaction that lost a race with another (serialization failure,
    /// deadlock) and may simply run again.
    pub fn is_retryable(&self) -> bool {
        match self {
            SqlError::Pg(e) => e.code().is_some_and(|c| {
                *c == tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED
            }),
            SqlError::Busy => true,
            _ => false,
        }
    }
}

/// Whether `e` is a transaction that lost a race and may run again.
pub fn lost_race(e: &crate::error::Error) -> bool {
    match e {
        crate::error::Error::Internal(e) => e.downcast_ref::<SqlError>().is_some_and(SqlError::is_retryable),
        _ => false,
    }
}

impl From<SqlError> for crate::error::Error {
    fn from(e: SqlError) -> Self {
        if let SqlError::Pg(pg) = &e
            && std::error::Error::source(pg).is_some_and(|s| s.is::<NulInText>())
        {
            return crate::error::Error::bad_request("names, paths and tokens cannot hold the NUL character");
        }
        crate::error::Error::Internal(anyhow::Error::new(e).context("database"))
    }
}
