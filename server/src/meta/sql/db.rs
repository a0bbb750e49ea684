//! The database as the rules see it: one connection inside a transaction,
//! statements with `?N` parameters, rows read by column index. Each backend
//! supplies the connection; the SQL is written once in the dialect both
//! speak (`ON CONFLICT`, `RETURNING`, `CASE`, recursive CTEs; integers are
//! 64-bit, byte strings are blobs).
//!
//! The API follows rusqlite's names (`exec`, `row`, `prepare_cached`,
//! `query_map`, `optional`) so the rules read like ordinary rusqlite code.

use rusqlite::types::{ToSqlOutput, ValueRef};

pub use super::cache::TxCache;

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
    /// The connection broke while the transaction was committing: whether
    /// it was, nobody can say (not to be run again).
    #[error("the database connection broke while committing")]
    CommitUnknown,
    /// A statement sent ahead failed earlier in this transaction.
    #[error("an earlier statement of this transaction failed")]
    Earlier { retryable: bool },
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

impl Val<'_> {
    /// The type PostgreSQL is told a parameter has, for statements sent
    /// without being prepared (a NULL's is left to it).
    fn pg_type(&self) -> tokio_postgres::types::Type {
        use tokio_postgres::types::Type;
        match self {
            Val::Null => Type::UNKNOWN,
            Val::Int(_) => Type::INT8,
            Val::Text(_) => Type::TEXT,
            Val::Blob(_) => Type::BYTEA,
        }
    }
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

/// A [`Val`] that owns its text or bytes (the parameters of a statement
/// sent ahead, see [`Db::exec_later`]).
#[derive(Debug)]
enum OwnedVal {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<Val<'_>> for OwnedVal {
    fn from(v: Val<'_>) -> Self {
        match v {
            Val::Null => OwnedVal::Null,
            Val::Int(i) => OwnedVal::Int(i),
            Val::Text(t) => OwnedVal::Text(t.to_owned()),
            Val::Blob(b) => OwnedVal::Blob(b.to_vec()),
        }
    }
}

impl tokio_postgres::types::ToSql for OwnedVal {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let v = match self {
            OwnedVal::Null => Val::Null,
            OwnedVal::Int(i) => Val::Int(*i),
            OwnedVal::Text(t) => Val::Text(t),
            OwnedVal::Blob(b) => Val::Blob(b),
        };
        v.to_sql(ty, out)
    }

    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// Whether `sql` may write (a statement that begins with `WITH` is taken to).
fn is_write(sql: &str) -> bool {
    let first = sql.trim_start().split(|c: char| !c.is_ascii_alphabetic()).next().unwrap_or("");
    ["INSERT", "UPDATE", "DELETE", "WITH", "CREATE", "DROP", "ALTER"].contains(&first)
}

/// Whether `sql` writes the tree (rows of `files`): what a transaction
/// cached of it is then stale. (A statement that begins with `WITH` is
/// taken to.)
fn writes_tree(sql: &str) -> bool {
    let mut words = sql.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| !w.is_empty());
    let table = match words.next() {
        Some("INSERT") | Some("DELETE") => words.nth(1),
        Some("UPDATE") => words.next(),
        Some("WITH") => return true,
        _ => return false,
    };
    table == Some("files")
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
    level: Level,
}

/// Which of the nested savepoints: a backend's around each write of a
/// group, a commit's around its operations, an operation's.
#[derive(Clone, Copy)]
enum Level {
    Write,
    Outer,
    Op,
}

impl Level {
    /// The savepoint's name.
    fn name(self) -> &'static str {
        match self {
            Level::Write => "write",
            Level::Outer => "outer_op",
            Level::Op => "op",
        }
    }
}

/// A statement whose answer can wait: sent with the next one that is
/// waited on, in the same round trip (see [`Db::exec_later`]).
enum Later {
    Exec(tokio_postgres::Statement, Vec<OwnedVal>),
    /// A statement with lists among its parameters: what was gathered
    /// ([`PgConn::send_gathered`]), or one for many keys at once
    /// ([`Db::exec_later_each`]).
    Lists(tokio_postgres::Statement, Vec<Param>),
    Batch(std::borrow::Cow<'static, str>),
}

/// A table a write adds rows to without awaiting them (see [`Db::add_row`]).
pub struct Table {
    /// The insert's head: `INSERT INTO t(a, b)`.
    pub insert: &'static str,
    /// Each column's type as PostgreSQL names it (`int8`, `text`, `bytea`).
    pub types: &'static [&'static str],
}

impl Table {
    /// The insert of one row, `?1` to `?N`.
    fn one(&self) -> String {
        format!("{} VALUES {}", self.insert, list_sql(self.types.len(), 0))
    }

    /// The insert of many, each column's values a list (`?N::type[]`),
    /// numbered on from `?{after}`.
    fn many(&self, after: usize) -> String {
        let lists: Vec<String> =
            self.types.iter().enumerate().map(|(i, t)| format!("?{}::{t}[]", after + i + 1)).collect();
        format!("{} SELECT * FROM unnest({})", self.insert, lists.join(", "))
    }

    /// The table's name: `INSERT INTO t(…)`'s `t`.
    fn name(&self) -> &'static str {
        let rest = self.insert.trim_start_matches("INSERT INTO ");
        rest.split(['(', ' ']).next().unwrap_or(rest)
    }
}

/// A column a write sets without awaiting it, by the row's id (see
/// [`Db::set_later`]).
pub struct Counter {
    pub table: &'static str,
    pub column: &'static str,
}

impl Counter {
    /// The update of one row: its id `?{after + 1}`, the value the next.
    fn set(&self, after: usize) -> String {
        format!("UPDATE {} SET {} = ?{} WHERE id = ?{}", self.table, self.column, after + 2, after + 1)
    }
}

/// What a write has gathered to go ahead of its next other statement:
/// rows per table, a list per column, and the last value of each counter.
#[derive(Default)]
struct Gathered {
    rows: Vec<(&'static Table, Vec<Column>)>,
    sets: Vec<(&'static Counter, i64, i64)>,
}

/// A parameter of a gathered statement: a value, or a list.
#[derive(Debug)]
enum Param {
    Val(OwnedVal),
    List(Column),
}

impl tokio_postgres::types::ToSql for Param {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Param::Val(v) => v.to_sql(ty, out),
            Param::List(c) => c.to_sql(ty, out),
        }
    }

    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// One column's values for [`Later::Lists`]: an array parameter.
#[derive(Debug, Default)]
struct Column(Vec<OwnedVal>);

impl tokio_postgres::types::ToSql for Column {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use tokio_postgres::types::{Kind, Type};
        let Kind::Array(member) = ty.kind() else {
            return Err(format!("a list for a parameter of type {ty}").into());
        };
        let unexpected = |v: &OwnedVal| format!("{v:?} in a list of {member}");
        match *member {
            Type::INT8 => {
                let list = self.0.iter().map(|v| match v {
                    OwnedVal::Int(i) => Ok(Some(*i)),
                    OwnedVal::Null => Ok(None),
                    v => Err(unexpected(v)),
                });
                list.collect::<Result<Vec<Option<i64>>, String>>()?.to_sql(ty, out)
            }
            Type::TEXT => {
                let list = self.0.iter().map(|v| match v {
                    OwnedVal::Text(t) if t.contains('\0') => Err(None),
                    OwnedVal::Text(t) => Ok(Some(t.as_str())),
                    OwnedVal::Null => Ok(None),
                    v => Err(Some(unexpected(v))),
                });
                match list.collect::<Result<Vec<Option<&str>>, Option<String>>>() {
                    Ok(list) => list.to_sql(ty, out),
                    Err(None) => Err(Box::new(NulInText)),
                    Err(Some(e)) => Err(e.into()),
                }
            }
            Type::BYTEA => {
                let list = self.0.iter().map(|v| match v {
                    OwnedVal::Blob(b) => Ok(Some(b.as_slice())),
                    OwnedVal::Null => Ok(None),
                    v => Err(unexpected(v)),
                });
                list.collect::<Result<Vec<Option<&[u8]>>, String>>()?.to_sql(ty, out)
            }
            _ => Err(format!("a list of {member} (cast it in the query)").into()),
        }
    }

    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// A PostgreSQL connection inside a transaction, used from a blocking
/// thread (each statement waits on the connection's own runtime).
pub struct PgConn<'a> {
    client: &'a crate::meta::postgres::PgClient,
    /// A write's locks; `None` where [`Db::enter`] has nothing to take (a
    /// read, or a write that runs alone).
    locks: Option<&'a std::cell::RefCell<Locks>>,
    /// Statements to send ahead of the next one waited on.
    later: std::cell::RefCell<Vec<Later>>,
    /// Set once a statement sent ahead failed: the transaction is undone
    /// as a whole (whether it may simply run again).
    failed: std::cell::Cell<Option<bool>>,
    /// Ids of new `files` and `file_versions` rows taken ahead (see
    /// [`Db::new_ids`]; each handed out from the end, and dropped when a
    /// lock is taken), and how many the next take asks for.
    ids: std::cell::RefCell<(Vec<i64>, Vec<i64>)>,
    take: std::cell::Cell<i64>,
    /// Rows and counters to send ahead of the next other statement.
    gathered: std::cell::RefCell<Gathered>,
}

impl<'a> PgConn<'a> {
    pub fn new(client: &'a crate::meta::postgres::PgClient, locks: Option<&'a std::cell::RefCell<Locks>>) -> Self {
        PgConn {
            client,
            locks,
            later: Default::default(),
            failed: Default::default(),
            ids: Default::default(),
            take: std::cell::Cell::new(1),
            gathered: Default::default(),
        }
    }

    /// Queues `l` to go with the next statement waited on, after what was
    /// gathered before it.
    fn push(&self, l: Later) -> SqlResult<()> {
        self.send_gathered()?;
        self.later.borrow_mut().push(l);
        Ok(())
    }

    /// Queues what was gathered in one statement: each table's rows (a
    /// list per column) and each counter's last value, every part but the
    /// last in a `WITH` of its own. (Their order among themselves does not
    /// matter: each other statement comes after all of them.) The parts of
    /// one statement all see the rows as they were before it, and each may
    /// change a row once: a counter of a table the statement already
    /// touches (a file's head, where files are added) goes in another
    /// statement after it.
    fn send_gathered(&self) -> SqlResult<()> {
        let Gathered { mut rows, mut sets } = std::mem::take(&mut *self.gathered.borrow_mut());
        // (One text for the same tables, whatever order they came in.)
        rows.sort_by_key(|(table, _)| table.insert);
        sets.sort_by_key(|(counter, key, _)| (counter.table, counter.column, *key));
        // Each statement's parts, parameters and the tables it touches.
        let mut statements: Vec<(Vec<String>, Vec<Param>, Vec<&str>)> = Vec::new();
        if !rows.is_empty() {
            let mut first = (Vec::new(), Vec::new(), Vec::new());
            for (table, columns) in rows {
                first.0.push(table.many(first.1.len()));
                first.1.extend(columns.into_iter().map(Param::List));
                first.2.push(table.name());
            }
            statements.push(first);
        }
        for (counter, key, value) in sets {
            // The first statement that leaves its table alone.
            let at = match statements.iter().position(|(_, _, tables)| !tables.contains(&counter.table)) {
                Some(at) => at,
                None => {
                    statements.push(Default::default());
                    statements.len() - 1
                }
            };
            let (parts, params, tables) = &mut statements[at];
            parts.push(counter.set(params.len()));
            params.extend([Param::Val(OwnedVal::Int(key)), Param::Val(OwnedVal::Int(value))]);
            tables.push(counter.table);
        }
        for (parts, params, _) in statements {
            let (last, with) = parts.split_last().expect("a statement has a part");
            let sql = match with {
                [] => last.clone(),
                with => {
                    let with: Vec<String> = with.iter().enumerate().map(|(i, p)| format!("w{i} AS ({p})")).collect();
                    format!("WITH {} {last}", with.join(", "))
                }
            };
            let st = self.prepare(&sql)?;
            self.later.borrow_mut().push(Later::Lists(st, params));
        }
        Ok(())
    }

    /// Runs `f` and awaits it, with the statements sent ahead of it in the
    /// same round trip (they go first, in order); the first of theirs that
    /// failed is the error.
    fn wait<T>(&self, f: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>) -> SqlResult<T> {
        if let Some(retryable) = self.failed.get() {
            return Err(SqlError::Earlier { retryable });
        }
        self.send_gathered()?;
        let later = std::mem::take(&mut *self.later.borrow_mut());
        if later.is_empty() {
            return Ok(self.client.block_on(f)?);
        }
        type Sent<'s> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, tokio_postgres::Error>> + 's>>;
        let client = self.client;
        let sent = later.iter().map(|l| -> Sent<'_> {
            match l {
                Later::Exec(st, vals) => Box::pin(client.execute_raw(st, vals.iter())),
                Later::Lists(st, params) => Box::pin(client.execute_raw(st, params.iter())),
                Later::Batch(sql) => Box::pin(async move { client.batch_execute(sql).await.map(|()| 0) }),
            }
        });
        // Polled in order: each is sent before the next, and `f` last.
        let (sent, r) = self.client.block_on(futures_util::future::join(futures_util::future::join_all(sent), f));
        if let Some(Err(e)) = sent.into_iter().find(Result::is_err) {
            let e = SqlError::from(e);
            self.failed.set(Some(e.is_retryable()));
            return Err(e);
        }
        Ok(r?)
    }

    /// The connection's statement for `sql`: one prepared before is at hand
    /// without a round trip, so the statements sent ahead still wait for
    /// the next one waited on. (A new one is prepared ahead of them: its
    /// plan does not depend on what they change.)
    fn prepare(&self, sql: &str) -> SqlResult<tokio_postgres::Statement> {
        if let Some(retryable) = self.failed.get() {
            return Err(SqlError::Earlier { retryable });
        }
        Ok(self.client.prepare_cached(&dollar_params(sql))?)
    }

    fn enter(&self, key: i64) -> SqlResult<()> {
        let Some(locks) = self.locks else { return Ok(()) };
        let mut locks = locks.borrow_mut();
        if locks.held.contains(&key) {
            return Ok(());
        }
        if locks.held.last().is_none_or(|&top| key > top) {
            // In order: waiting cannot close a cycle of these locks.
            self.wait(self.client.execute("SELECT pg_advisory_xact_lock($1)", &[&key]))?;
        } else {
            let got = self.wait(self.client.query_one("SELECT pg_try_advisory_xact_lock($1)", &[&key]))?;
            if !got.get::<_, bool>(0) {
                locks.wanted.insert(key);
                return Err(SqlError::Busy);
            }
        }
        locks.held.insert(key);
        // Ids taken before this lock may be lower than those its last
        // holder used: rows written under it take theirs from here on, so
        // that a file's revisions keep ascending.
        *self.ids.borrow_mut() = Default::default();
        Ok(())
    }

    /// Sends `sql` with the next statement waited on.
    fn later_batch(&self, sql: impl Into<std::borrow::Cow<'static, str>>) -> SqlResult<()> {
        self.push(Later::Batch(sql.into()))
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

/// The connection of one transaction, and what the transaction has read
/// that its later statements may use again ([`TxCache`]).
pub struct Db<'a> {
    conn: Conn<'a>,
    cache: std::cell::RefCell<TxCache>,
    /// Statements run that write (see [`Db::writes`]).
    writes: std::cell::Cell<u64>,
}

enum Conn<'a> {
    Sqlite(&'a rusqlite::Connection),
    Pg(PgConn<'a>),
}

impl<'a> Db<'a> {
    pub fn sqlite(conn: &'a rusqlite::Connection) -> Self {
        Db { conn: Conn::Sqlite(conn), cache: Default::default(), writes: Default::default() }
    }

    pub fn pg(conn: PgConn<'a>) -> Self {
        Db { conn: Conn::Pg(conn), cache: Default::default(), writes: Default::default() }
    }

    /// How many statements that write this transaction has run so far:
    /// a step that failed with the count unchanged wrote nothing, and
    /// needs no savepoint to be undone.
    pub fn writes(&self) -> u64 {
        self.writes.get()
    }

    fn count(&self, sql: &str) {
        if is_write(sql) {
            self.writes.set(self.writes.get() + 1);
        }
    }

    /// What this transaction has read and may use again. Rules that write
    /// what they cached keep it true; [`Db::rollback_to`] empties it.
    pub fn cache(&self) -> std::cell::RefMut<'_, TxCache> {
        self.cache.borrow_mut()
    }

    /// Runs a statement whose answer is not needed: on PostgreSQL it is
    /// sent now and its answer awaited with the next statement waited on
    /// (one round trip for both); on SQLite it runs now. If it fails, the
    /// whole transaction fails.
    pub fn exec_later(&self, sql: &str, args: impl Args) -> SqlResult<()> {
        if writes_tree(sql) {
            self.cache().tree_changed();
        }
        self.send_later(sql, args)
    }

    fn send_later(&self, sql: &str, args: impl Args) -> SqlResult<()> {
        self.count(sql);
        match &self.conn {
            Conn::Sqlite(_) => self.exec(sql, args).map(drop),
            Conn::Pg(p) => {
                let st = p.prepare(sql)?;
                let vals: Vec<OwnedVal> = args.vals().into_iter().map(OwnedVal::from).collect();
                p.push(Later::Exec(st, vals))
            }
        }
    }

    /// [`Db::exec_later`] of `one` (`?1` the lead, `?2` a key) for each of
    /// `keys`: on PostgreSQL, `many` once for all of them, its `?2` their
    /// list (`= ANY(?2::type[])`); on SQLite, `one` for each. Not for the
    /// tree.
    pub fn exec_later_each<K: Arg>(&self, one: &str, many: &str, lead: i64, keys: &[K]) -> SqlResult<()> {
        debug_assert!(!writes_tree(one) && !writes_tree(many), "{one}");
        match &self.conn {
            Conn::Pg(p) if keys.len() > 1 => {
                self.count(many);
                let st = p.prepare(many)?;
                let keys = Column(keys.iter().map(|k| OwnedVal::from(k.val())).collect());
                p.push(Later::Lists(st, vec![Param::Val(OwnedVal::Int(lead)), Param::List(keys)]))
            }
            _ => keys.iter().try_for_each(|k| self.send_later(one, params![lead, k])),
        }
    }

    /// [`Db::exec_later`] of `sql`, which writes the tree; `keep` keeps the
    /// cache true, where otherwise the tree's part would go.
    pub fn exec_tree(&self, sql: &str, args: impl Args, keep: impl FnOnce(&mut TxCache)) -> SqlResult<()> {
        self.send_later(sql, args)?;
        keep(&mut self.cache());
        Ok(())
    }

    /// [`Db::insert`] of a row of the tree; `keep` keeps the cache true
    /// with the new row's id.
    pub fn insert_tree(&self, sql: &str, args: impl Args, keep: impl FnOnce(&mut TxCache, i64)) -> SqlResult<i64> {
        let id = self.statement(&format!("{sql} RETURNING id"), false)?.query_row(args, |r| r.get(0))?;
        keep(&mut self.cache(), id);
        Ok(id)
    }

    /// Ids for a new row of `files` (when `file`) and of `file_versions`,
    /// known before the rows are sent, so that inserting them needs no
    /// answer ([`Db::exec_later`]): on PostgreSQL, taken from the tables'
    /// sequences ahead, more at a time as the transaction needs more (ids
    /// left unused are gaps, as a rolled-back insert leaves). `None` on
    /// SQLite, whose inserts answer with their ids at no cost.
    pub fn new_ids(&self, file: bool) -> SqlResult<Option<(Option<i64>, i64)>> {
        let Conn::Pg(p) = &self.conn else { return Ok(None) };
        let mut ids = p.ids.borrow_mut();
        if ids.1.is_empty() || (file && ids.0.is_empty()) {
            let n = p.take.get();
            p.take.set((n * 2).min(256));
            let st = p.prepare(
                "SELECT nextval(pg_get_serial_sequence('files', 'id')), \
                 nextval(pg_get_serial_sequence('file_versions', 'id')) FROM generate_series(1, CAST(?1 AS BIGINT))",
            )?;
            let (mut files, mut versions) = (Vec::new(), Vec::new());
            for r in p.wait(p.client.query(&st, &[&n]))? {
                files.push(r.try_get::<_, i64>(0)?);
                versions.push(r.try_get::<_, i64>(1)?);
            }
            // Handed out from the end, in ascending order: those left from
            // before first (they are lower), then these.
            let (file_ids, version_ids) = &mut *ids;
            for (pool, mut fresh) in [(file_ids, files), (version_ids, versions)] {
                fresh.sort_unstable_by(|a, b| b.cmp(a));
                fresh.append(pool);
                *pool = fresh;
            }
        }
        let file = if file { ids.0.pop() } else { None };
        Ok(Some((file, ids.1.pop().expect("taken above"))))
    }

    /// Expects `writes` writes in this transaction (a group's): the first
    /// take of ids for new rows ([`Db::new_ids`]) asks for as many, where
    /// otherwise takes grow from one, a round trip each.
    pub fn expect_writes(&self, writes: usize) {
        if let Conn::Pg(p) = &self.conn {
            p.take.set(p.take.get().max(writes.min(256) as i64));
        }
    }

    /// Adds a row to `table` (its values `args`, in the table's columns),
    /// not awaiting it: on PostgreSQL, rows gather and go, with the
    /// counters set, in one statement ahead of the next other statement
    /// (a `WITH` part for each table and counter); on SQLite it goes in
    /// at once. If it fails, the whole transaction fails.
    pub fn add_row(&self, table: &'static Table, args: impl Args) -> SqlResult<()> {
        if writes_tree(table.insert) {
            self.cache().tree_changed();
        }
        self.gather(table, args)
    }

    /// [`Db::add_row`] of a row of the tree; `keep` keeps the cache true,
    /// where otherwise the tree's part would go.
    pub fn add_tree_row(
        &self,
        table: &'static Table,
        args: impl Args,
        keep: impl FnOnce(&mut TxCache),
    ) -> SqlResult<()> {
        self.gather(table, args)?;
        keep(&mut self.cache());
        Ok(())
    }

    fn gather(&self, table: &'static Table, args: impl Args) -> SqlResult<()> {
        let Conn::Pg(p) = &self.conn else {
            return self.statement(&table.one(), false)?.execute(args).map(drop);
        };
        self.count(table.insert);
        let vals = args.vals();
        debug_assert_eq!(vals.len(), table.types.len(), "{}", table.insert);
        let mut gathered = p.gathered.borrow_mut();
        let at = match gathered.rows.iter().position(|(t, _)| std::ptr::eq(*t, table)) {
            Some(at) => at,
            None => {
                gathered.rows.push((table, table.types.iter().map(|_| Column::default()).collect()));
                gathered.rows.len() - 1
            }
        };
        for (column, v) in gathered.rows[at].1.iter_mut().zip(vals) {
            column.0.push(OwnedVal::from(v));
        }
        Ok(())
    }

    /// Sets `counter`'s column of row `key` to `value`, not awaiting it. On
    /// PostgreSQL only the last value of each row goes, ahead of the next
    /// other statement, with the rows gathered. (The cache is left as it
    /// is: a rule that sets a row of the tree keeps it true.)
    pub fn set_later(&self, counter: &'static Counter, key: i64, value: i64) -> SqlResult<()> {
        let Conn::Pg(p) = &self.conn else {
            return self.statement(&counter.set(0), false)?.execute([key, value]).map(drop);
        };
        self.writes.set(self.writes.get() + 1);
        let mut gathered = p.gathered.borrow_mut();
        match gathered.sets.iter_mut().find(|(c, k, _)| std::ptr::eq(*c, counter) && *k == key) {
            Some(set) => set.2 = value,
            None => gathered.sets.push((counter, key, value)),
        }
        Ok(())
    }

    /// Begins the transaction with the first statement sent (PostgreSQL).
    pub(in crate::meta) fn begin_later(&self, begin: String) -> SqlResult<()> {
        match &self.conn {
            Conn::Pg(p) => p.later_batch(begin),
            Conn::Sqlite(_) => Ok(()),
        }
    }

    /// Commits, with the statements sent ahead in the same round trip
    /// (PostgreSQL).
    pub(in crate::meta) fn commit(&self) -> SqlResult<()> {
        match &self.conn {
            Conn::Sqlite(_) => Ok(()),
            Conn::Pg(p) => match p.wait(p.client.batch_execute("COMMIT")) {
                Err(SqlError::Pg(e)) if broken(&e) => Err(SqlError::CommitUnknown),
                r => r,
            },
        }
    }

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
        self.statement(sql, writes_tree(sql))
    }

    /// A statement; `tracked` if running it makes the tree's cache stale.
    fn statement(&self, sql: &str, tracked: bool) -> SqlResult<Stmt<'_>> {
        self.count(sql);
        let inner = match &self.conn {
            Conn::Sqlite(c) => StmtInner::Sqlite(c.prepare_cached(sql)?),
            Conn::Pg(p) => StmtInner::Pg(p, p.prepare(sql)?),
        };
        Ok(Stmt { inner, cache: tracked.then_some(&self.cache) })
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
            match &self.conn {
                // A list of more than one key is planned for these keys,
                // not prepared once for any: a plan made before PostgreSQL
                // has statistics of a young table can read the list as a
                // filter over every row of the account, which a list of
                // parameters (unlike one of values) checks one by one (20 ms
                // for 256 keys over 3,000 blocks, against 0.7). One round
                // trip all the same, but planned each time; a single key is
                // always found through the index, and prepared once.
                Conn::Pg(p) if chunk.len() > 1 => {
                    self.count(&sql);
                    let vals: Vec<Val<'_>> = args.iter().map(|a| a.val()).collect();
                    let typed: Vec<(&(dyn tokio_postgres::types::ToSql + Sync), tokio_postgres::types::Type)> =
                        vals.iter().map(|v| (v as &(dyn tokio_postgres::types::ToSql + Sync), v.pg_type())).collect();
                    for r in p.wait(p.client.query_typed(&dollar_params(&sql), &typed))? {
                        out.push(f(&Row::Pg(&r))?);
                    }
                }
                _ => {
                    for row in self.prepare_cached(&sql)?.query_map(&args[..], &mut f)? {
                        out.push(row?);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Whether each statement is a round trip to another process (where one
    /// statement doing the work of two is worth it).
    pub fn remote(&self) -> bool {
        matches!(self.conn, Conn::Pg(_))
    }

    /// Takes `lock` for the rest of this write transaction, if it has not
    /// already: from here on, this transaction's statements see what every
    /// earlier holder committed, and no other write changes those rows
    /// until it ends. A lock wanted out of order is only tried; when busy,
    /// [`SqlError::Busy`] has the write run again, taking it first.
    pub fn enter(&self, lock: Lock) -> SqlResult<()> {
        match &self.conn {
            Conn::Sqlite(_) => Ok(()),
            Conn::Pg(p) => p.enter(lock.key()),
        }
    }

    /// Begins a savepoint: what follows until [`Db::rollback_to`] can be
    /// undone alone.
    pub fn savepoint(&self) -> SqlResult<Savepoint> {
        self.savepoint_at(Level::Op)
    }

    /// A savepoint that others ([`Db::savepoint`]) may be taken inside.
    pub fn outer_savepoint(&self) -> SqlResult<Savepoint> {
        self.savepoint_at(Level::Outer)
    }

    /// A savepoint around one write of several that share a transaction
    /// (the other two may be taken inside).
    pub(in crate::meta) fn write_savepoint(&self) -> SqlResult<Savepoint> {
        self.savepoint_at(Level::Write)
    }

    fn savepoint_at(&self, level: Level) -> SqlResult<Savepoint> {
        self.batch_later(format!("SAVEPOINT {}", level.name()))?;
        Ok(Savepoint { held: self.held(), level })
    }

    /// Keeps what was done since the savepoint.
    pub fn release(&self, point: Savepoint) -> SqlResult<()> {
        self.batch_later(format!("RELEASE {}", point.level.name()))
    }

    /// [`Db::execute_batch`] of statements whose answer can wait (see
    /// [`Db::exec_later`]).
    fn batch_later(&self, sql: String) -> SqlResult<()> {
        match &self.conn {
            Conn::Sqlite(c) => Ok(c.execute_batch(&sql)?),
            Conn::Pg(p) => p.later_batch(sql),
        }
    }

    /// Undoes what was done since the savepoint. Locks taken since go too
    /// (PostgreSQL releases them with the savepoint), so they are taken
    /// again when next entered.
    pub fn rollback_to(&self, point: Savepoint) -> SqlResult<()> {
        let name = point.level.name();
        self.execute_batch(&format!("ROLLBACK TO {name}; RELEASE {name}"))?;
        *self.cache() = TxCache::default();
        if let (Conn::Pg(PgConn { locks: Some(locks), .. }), Some(held)) = (&self.conn, point.held) {
            locks.borrow_mut().held = held;
        }
        Ok(())
    }

    fn held(&self) -> Option<std::collections::BTreeSet<i64>> {
        match &self.conn {
            Conn::Pg(PgConn { locks: Some(locks), .. }) => Some(locks.borrow().held.clone()),
            _ => None,
        }
    }

    /// Runs statements without parameters or results (savepoints, several
    /// statements at once).
    pub fn execute_batch(&self, sql: &str) -> SqlResult<()> {
        *self.cache() = TxCache::default();
        self.count(sql);
        match &self.conn {
            Conn::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Conn::Pg(p) => p.wait(p.client.batch_execute(sql)),
        }
    }

    /// Whether rows of namespace `ns` stay as this transaction reads them
    /// until it ends: SQLite's one writer, a read's snapshot, a write that
    /// runs alone, or one that holds the namespace's lock.
    pub fn holds(&self, ns: i64) -> bool {
        match &self.conn {
            Conn::Sqlite(_) | Conn::Pg(PgConn { locks: None, .. }) => true,
            Conn::Pg(PgConn { locks: Some(locks), .. }) => locks.borrow().held.contains(&Lock::Namespace(ns).key()),
        }
    }
}

/// A prepared statement.
pub struct Stmt<'a> {
    inner: StmtInner<'a>,
    /// For a statement that writes the tree: the cache it makes stale.
    cache: Option<&'a std::cell::RefCell<TxCache>>,
}

enum StmtInner<'a> {
    Sqlite(rusqlite::CachedStatement<'a>),
    Pg(&'a PgConn<'a>, tokio_postgres::Statement),
}

/// Parameters as tokio-postgres takes them.
fn pg_params<'v>(vals: &'v [Val<'v>]) -> Vec<&'v (dyn tokio_postgres::types::ToSql + Sync)> {
    vals.iter().map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync)).collect()
}

impl Stmt<'_> {
    /// After a statement that wrote the tree, what was cached of it goes.
    fn wrote(&self) {
        if let Some(c) = self.cache {
            c.borrow_mut().tree_changed();
        }
    }

    pub fn execute(&mut self, args: impl Args) -> SqlResult<usize> {
        let r = match &mut self.inner {
            StmtInner::Sqlite(s) => Ok(s.execute(rusqlite::params_from_iter(args.vals()))?),
            StmtInner::Pg(p, st) => {
                let vals = args.vals();
                Ok(p.wait(p.client.execute(st, &pg_params(&vals)))? as usize)
            }
        };
        self.wrote();
        r
    }

    pub fn query_row<T>(&mut self, args: impl Args, f: impl FnOnce(&Row<'_>) -> SqlResult<T>) -> SqlResult<T> {
        let r = match &mut self.inner {
            StmtInner::Sqlite(s) => {
                let mut rows = s.query(rusqlite::params_from_iter(args.vals()))?;
                match rows.next()? {
                    Some(r) => f(&Row::Sqlite(r)),
                    None => Err(SqlError::NoRows),
                }
            }
            StmtInner::Pg(p, st) => {
                let vals = args.vals();
                match p.wait(p.client.query(st, &pg_params(&vals)))?.first() {
                    Some(r) => f(&Row::Pg(r)),
                    None => Err(SqlError::NoRows),
                }
            }
        };
        self.wrote();
        r
    }

    /// Every row, mapped (collect the iterator into a `SqlResult<Vec<_>>`).
    pub fn query_map<T>(
        &mut self,
        args: impl Args,
        mut f: impl FnMut(&Row<'_>) -> SqlResult<T>,
    ) -> SqlResult<std::vec::IntoIter<SqlResult<T>>> {
        let mut out = Vec::new();
        match &mut self.inner {
            StmtInner::Sqlite(s) => {
                let mut rows = s.query(rusqlite::params_from_iter(args.vals()))?;
                while let Some(r) = rows.next()? {
                    out.push(f(&Row::Sqlite(r)));
                }
            }
            StmtInner::Pg(p, st) => {
                let vals = args.vals();
                for r in p.wait(p.client.query(st, &pg_params(&vals)))? {
                    out.push(f(&Row::Pg(&r)));
                }
            }
        }
        self.wrote();
        Ok(out.into_iter())
    }
}

impl SqlError {
    /// A transaction that lost a race with another (serialization failure,
    /// deadlock) and may simply run again.
    pub fn is_retryable(&self) -> bool {
        match self {
            SqlError::Pg(e) => {
                e.code().is_some_and(|c| {
                    *c == tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
                        || *c == tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED
                }) || broken(e)
            }
            SqlError::Busy => true,
            SqlError::Earlier { retryable } => *retryable,
            _ => false,
        }
    }
}

/// Whether `e` says the connection is gone (its server process ended, or
/// the socket closed): a transaction not yet committing left nothing, and
/// may run again on another connection.
pub fn broken(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.is_closed()
        || e.code().is_some_and(|c| {
            *c == SqlState::ADMIN_SHUTDOWN || *c == SqlState::CRASH_SHUTDOWN || *c == SqlState::CANNOT_CONNECT_NOW
        })
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_tables_rows_go_one_at_a_time_or_as_lists() {
        use super::{Counter, Table, dollar_params};
        static T: Table = Table { insert: "INSERT INTO t(a, b)", types: &["int8", "text"] };
        assert_eq!(T.one(), "INSERT INTO t(a, b) VALUES (?1, ?2)");
        assert_eq!(dollar_params(&T.many(0)), "INSERT INTO t(a, b) SELECT * FROM unnest($1::int8[], $2::text[])");
        assert_eq!(T.many(3), "INSERT INTO t(a, b) SELECT * FROM unnest(?4::int8[], ?5::text[])");
        assert_eq!(T.name(), "t");
        let c = Counter { table: "files", column: "head" };
        assert_eq!(c.set(2), "UPDATE files SET head = ?4 WHERE id = ?3");
    }

    #[test]
    fn statements_that_write_the_tree_are_told_apart() {
        use super::writes_tree;
        assert!(writes_tree("INSERT INTO files(ns) VALUES (?1)"));
        assert!(writes_tree("  UPDATE files SET head = ?1"));
        assert!(writes_tree("DELETE FROM files WHERE id = ?1"));
        assert!(writes_tree("WITH RECURSIVE t AS (SELECT 1) SELECT * FROM t"));
        assert!(!writes_tree("INSERT INTO file_versions(file) VALUES ((SELECT id FROM files))"));
        assert!(!writes_tree("SELECT id FROM files"));
        assert!(!writes_tree("UPDATE users SET used = 0"));
        assert!(super::is_write("  UPDATE users SET used = 0"));
        assert!(!super::is_write("SELECT pg_advisory_xact_lock(1)"));
        assert!(!super::is_write("SAVEPOINT op"));
    }
}
