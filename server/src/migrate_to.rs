//! `ferry-server migrate-to`: grows a single-node server (SQLite and a block
//! folder under its data directory) into PostgreSQL and S3-compatible
//! storage, so that a server begun with `quickstart` grows without anyone
//! uploading again, and devices resume where they were.
//!
//! # How
//! 1. The source is read on a read-only SQLite connection, in one read
//!    transaction: one consistent snapshot, and nothing in the source is
//!    written. Its schema version must be this binary's.
//! 2. The target's schema is created or migrated (as `ferry-server
//!    migrate`). Then one PostgreSQL transaction, holding the server-wide
//!    write lock, refuses unless every table of the target is empty, and
//!    copies:
//!    - the blocks first, row by row of the `blocks` table: a loose block
//!      is put as it is; packed blocks are put in new packs (the target
//!      store picks pack ids), a source pack at a time (up to
//!      [`PACK_BYTES`] a new pack), and their rows point at their new
//!      places. Every block is read back from the target, opened with the
//!      master key and checked against its BLAKE3 id and size before its
//!      row is written. A few transfers run at once; memory stays a few
//!      packs.
//!    - then every other table of the schema, row for row with the same
//!      ids (journal sequences and so cursors, file, revision and device
//!      ids, token hashes stay valid), in batched multi-row INSERTs, each
//!      SQLite value converted to the type of the PostgreSQL column. Tables
//!      and columns come from the target's `information_schema` and are
//!      checked against the source's.
//!    - then every identity sequence is moved past the copied ids, each
//!      table's row count is compared with the source's, and the
//!      transaction commits.
//!
//! A failure anywhere rolls back: the target's metadata stays empty and
//! the command may be run again. Objects already put stay in the target
//! store unreferenced (a loose block is found present the next time; a
//! pack is written anew).
//!
//! # What it does not do
//! Copy objects no block row references (the source's garbage), change or
//! delete anything in the source, or re-encrypt: blocks stay sealed with
//! the same master key, which the new server must be given.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use futures_util::StreamExt;
use rusqlite::OpenFlags;
use rusqlite::types::ValueRef;
use tokio::sync::mpsc;
use tokio_postgres::types::{IsNull, ToSql, Type};

use ferry_shared::BlockId;
use ferry_shared::block;

use crate::blocks::s3::{Limits, S3Spec};
use crate::blocks::{BlockLoc, BlockStore, LocalBlockStore, S3BlockStore};
use crate::crypto::Vault;
use crate::meta::postgres::{PostgresStore, WRITE_LOCK};
use crate::meta::sql::schema::MIGRATIONS;

/// Sealed bytes one new pack holds at most (as the server's own packs).
pub const PACK_BYTES: u64 = 8 << 20;
/// The longest stretch of a source pack read at once.
const READ_SPAN: u64 = 16 << 20;
/// Rows one INSERT writes at most (and never more than 65,535 parameters).
const BATCH_ROWS: usize = 500;
/// Bytes of values one INSERT writes at most (block lists can be long).
const BATCH_BYTES: usize = 4 << 20;
/// Tables that are the target's own bookkeeping (`migrate` sets them).
const BOOKKEEPING: &[&str] = &["ferry_schema"];
/// How often block progress is told.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// What to copy, and where to.
#[derive(Debug, Clone)]
pub struct MigrateToOptions {
    /// The single-node server's data directory (`ferry.db`, `master.key`,
    /// `blocks/`); only read.
    pub data: PathBuf,
    /// Where its blocks are when not `DATA/blocks` (the `--blocks` it ran
    /// with: a folder or `s3://…`).
    pub from_blocks: Option<String>,
    /// The target database, `postgres://USER@HOST:PORT/DATABASE`.
    pub db: String,
    /// The target block storage, `s3://BUCKET?…` (see
    /// [`crate::blocks::open`]) or a folder.
    pub blocks: String,
    /// Blocks (loose ones, or packs) copied at once.
    pub parallel: usize,
}

/// What was copied.
#[derive(Debug, Clone, Default)]
pub struct MigrateStats {
    pub users: u64,
    /// Files and folders (rows of `files`, deleted ones too).
    pub files: u64,
    /// File versions: history, deletions included.
    pub versions: u64,
    pub blocks: u64,
    /// Packs written to the target.
    pub packs: u64,
    /// Sealed bytes copied.
    pub bytes: u64,
    /// Rows copied, every table.
    pub rows: u64,
    pub elapsed: Duration,
}

/// Copies the single-node server at `opts.data` into `opts.db` and
/// `opts.blocks` (see the module's notes). `progress` is told what happens,
/// a line at a time.
pub fn migrate_to(opts: &MigrateToOptions, progress: &(dyn Fn(&str) + Sync)) -> anyhow::Result<MigrateStats> {
    let started = Instant::now();
    ensure!(opts.parallel >= 1, "--parallel must be at least 1");
    let vault = Arc::new(Vault::load(&opts.data)?);
    let source = Source::open(&opts.data)?;
    progress(&format!("source: {} (schema version {}), read-only", source.path.display(), MIGRATIONS.len()));
    // Creates or migrates the schema; refuses a database newer than this binary.
    drop(PostgresStore::connect(&opts.db).context("preparing the target database")?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("ferry-migrate")
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let mut stats = runtime.block_on(copy(opts, source, vault, progress))?;
    stats.elapsed = started.elapsed();
    Ok(stats)
}

// ---- The source ----

/// The source database, read-only, inside its one read transaction.
struct Source {
    conn: rusqlite::Connection,
    path: PathBuf,
}

impl Source {
    fn open(data: &Path) -> anyhow::Result<Source> {
        let path = crate::serve::db_path(data);
        if !path.is_file() {
            bail!("there is no Ferry database at {} (give the single-node server's --data folder)", path.display());
        }
        // Read-only: SQLite writes nothing to the database or its WAL.
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("opening {} read-only", path.display()))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        // One snapshot from the first read on, held until the copy is done.
        conn.execute_batch("PRAGMA query_only = 1; BEGIN")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let ours = MIGRATIONS.len() as i64;
        if version < ours {
            bail!(
                "the source database's schema is version {version}, older than this ferry-server's ({ours}): start \
                 the single-node server once with this ferry-server (it upgrades the schema), stop it, and run \
                 migrate-to again"
            );
        }
        if version > ours {
            bail!(
                "the source database's schema is version {version}, newer than this ferry-server knows ({ours}): \
                 run migrate-to with the ferry-server that wrote it, or a newer one"
            );
        }
        Ok(Source { conn, path })
    }

    /// The source's tables (not SQLite's own) and their columns.
    fn tables(&self) -> anyhow::Result<HashMap<String, Vec<String>>> {
        let names: Vec<String> = self
            .conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut out = HashMap::new();
        for name in names {
            let cols: Vec<String> = self
                .conn
                .prepare(&format!("PRAGMA table_info({})", quote(&name)))?
                .query_map([], |r| r.get(1))?
                .collect::<Result<_, _>>()?;
            out.insert(name, cols);
        }
        Ok(out)
    }

    fn count(&self, table: &str) -> anyhow::Result<u64> {
        let n: i64 = self.conn.query_row(&format!("SELECT count(*) FROM {}", quote(table)), [], |r| r.get(0))?;
        Ok(n as u64)
    }
}

/// `name` as an SQL identifier (both dialects).
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

// ---- The schema, as the target has it ----

/// A PostgreSQL column type the schema uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColType {
    Int8,
    Int4,
    Int2,
    Bool,
    Text,
    Bytes,
    Float8,
    Float4,
}

impl ColType {
    fn of(data_type: &str) -> Option<ColType> {
        Some(match data_type {
            "bigint" => ColType::Int8,
            "integer" => ColType::Int4,
            "smallint" => ColType::Int2,
            "boolean" => ColType::Bool,
            "text" | "character varying" | "character" => ColType::Text,
            "bytea" => ColType::Bytes,
            "double precision" => ColType::Float8,
            "real" => ColType::Float4,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
struct Column {
    name: String,
    ty: ColType,
    /// Its values come from a sequence (an identity or `serial` column).
    sequence: bool,
}

#[derive(Debug, Clone)]
struct Table {
    name: String,
    columns: Vec<Column>,
    /// An identity column is `GENERATED ALWAYS`: inserts must say
    /// `OVERRIDING SYSTEM VALUE` to keep the ids.
    always: bool,
}

impl Table {
    fn col(&self, name: &str) -> anyhow::Result<usize> {
        self.columns
            .iter()
            .position(|c| c.name == name)
            .with_context(|| format!("the target's table {} has no column {name}", self.name))
    }

    /// Rows one INSERT writes at most.
    fn max_rows(&self) -> usize {
        BATCH_ROWS.min(65_535 / self.columns.len().max(1))
    }

    fn insert_sql(&self, rows: usize) -> String {
        let cols: Vec<String> = self.columns.iter().map(|c| quote(&c.name)).collect();
        let n = self.columns.len();
        let mut sql = format!("INSERT INTO {} ({})", quote(&self.name), cols.join(", "));
        if self.always {
            sql += " OVERRIDING SYSTEM VALUE";
        }
        sql += " VALUES ";
        for r in 0..rows {
            if r > 0 {
                sql += ", ";
            }
            let params: Vec<String> = (1..=n).map(|i| format!("${}", r * n + i)).collect();
            sql += &format!("({})", params.join(", "));
        }
        sql
    }

    fn select_sql(&self) -> String {
        let cols: Vec<String> = self.columns.iter().map(|c| quote(&c.name)).collect();
        format!("SELECT {} FROM {}", cols.join(", "), quote(&self.name))
    }
}

/// The target's tables (its bookkeeping left out), by name.
async fn target_tables(tx: &tokio_postgres::Transaction<'_>) -> anyhow::Result<Vec<Table>> {
    let rows = tx
        .query(
            "SELECT c.table_name::text, c.column_name::text, c.data_type::text, c.is_identity::text,
                    coalesce(c.identity_generation::text, ''), coalesce(c.column_default::text, '')
             FROM information_schema.columns c
             JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
             WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
             ORDER BY c.table_name, c.ordinal_position",
            &[],
        )
        .await
        .context("reading the target's schema")?;
    let mut tables: Vec<Table> = Vec::new();
    for r in rows {
        let (table, name, data_type): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        if BOOKKEEPING.contains(&table.as_str()) {
            continue;
        }
        let (identity, generation, default): (String, String, String) = (r.get(3), r.get(4), r.get(5));
        let ty = ColType::of(&data_type).with_context(|| {
            format!("the target's column {table}.{name} is of type {data_type}, which migrate-to cannot fill")
        })?;
        let sequence = identity == "YES" || default.starts_with("nextval(");
        if tables.last().is_none_or(|t| t.name != table) {
            tables.push(Table { name: table.clone(), columns: Vec::new(), always: false });
        }
        let t = tables.last_mut().expect("just pushed");
        t.always |= identity == "YES" && generation == "ALWAYS";
        t.columns.push(Column { name, ty, sequence });
    }
    ensure!(!tables.is_empty(), "the target database has no tables after its schema was created");
    Ok(tables)
}

/// Refuses unless the source has the target's tables with the same columns.
fn same_schema(source: &HashMap<String, Vec<String>>, target: &[Table]) -> anyhow::Result<()> {
    let mut theirs: Vec<&String> = source.keys().collect();
    theirs.sort();
    let mut ours: Vec<&String> = target.iter().map(|t| &t.name).collect();
    ours.sort();
    if theirs != ours {
        bail!("the source's tables ({theirs:?}) are not the target's ({ours:?}) though both are at the same version");
    }
    for t in target {
        let mut a: Vec<&str> = source[&t.name].iter().map(String::as_str).collect();
        let mut b: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        a.sort_unstable();
        b.sort_unstable();
        if a != b {
            bail!("the source's table {} has columns {a:?}, the target's {b:?}", t.name);
        }
    }
    Ok(())
}

// ---- Values ----

/// A value on its way from SQLite to a PostgreSQL column of a known type.
#[derive(Debug, Clone)]
enum PgVal {
    Null,
    I64(i64),
    I32(i32),
    I16(i16),
    Bool(bool),
    Text(String),
    Bytes(Vec<u8>),
    F64(f64),
    F32(f32),
}

impl PgVal {
    /// The SQLite value `v` for a column of type `ty`.
    fn convert(v: ValueRef<'_>, ty: ColType) -> Result<PgVal, String> {
        let range = |i: i64| format!("{i} is out of range for a {ty:?} column");
        Ok(match (v, ty) {
            (ValueRef::Null, _) => PgVal::Null,
            (ValueRef::Integer(i), ColType::Int8) => PgVal::I64(i),
            (ValueRef::Integer(i), ColType::Int4) => PgVal::I32(i32::try_from(i).map_err(|_| range(i))?),
            (ValueRef::Integer(i), ColType::Int2) => PgVal::I16(i16::try_from(i).map_err(|_| range(i))?),
            // SQLite keeps booleans as 0 and 1.
            (ValueRef::Integer(0), ColType::Bool) => PgVal::Bool(false),
            (ValueRef::Integer(1), ColType::Bool) => PgVal::Bool(true),
            (ValueRef::Integer(i), ColType::Float8) => PgVal::F64(i as f64),
            (ValueRef::Integer(i), ColType::Float4) => PgVal::F32(i as f32),
            (ValueRef::Real(f), ColType::Float8) => PgVal::F64(f),
            (ValueRef::Real(f), ColType::Float4) => PgVal::F32(f as f32),
            (ValueRef::Text(t), ColType::Text) => {
                let s = std::str::from_utf8(t).map_err(|_| "text that is not UTF-8".to_owned())?;
                if s.contains('\0') {
                    return Err("text with a NUL character, which PostgreSQL cannot hold".to_owned());
                }
                PgVal::Text(s.to_owned())
            }
            (ValueRef::Blob(b) | ValueRef::Text(b), ColType::Bytes) => PgVal::Bytes(b.to_vec()),
            (v, ty) => return Err(format!("a {} value for a {ty:?} column", v.data_type())),
        })
    }

    /// Bytes it takes, roughly (for batch sizes).
    fn weight(&self) -> usize {
        match self {
            PgVal::Text(s) => s.len() + 8,
            PgVal::Bytes(b) => b.len() + 8,
            _ => 8,
        }
    }

    fn int(&self) -> Option<i64> {
        match *self {
            PgVal::I64(i) => Some(i),
            PgVal::I32(i) => Some(i.into()),
            PgVal::I16(i) => Some(i.into()),
            _ => None,
        }
    }

    /// An integer for a column of type `ty` (a block's new place).
    fn int_for(i: i64, ty: ColType) -> anyhow::Result<PgVal> {
        PgVal::convert(ValueRef::Integer(i), ty).map_err(|e| anyhow!(e))
    }
}

impl ToSql for PgVal {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            PgVal::Null => Ok(IsNull::Yes),
            PgVal::I64(v) => v.to_sql(ty, out),
            PgVal::I32(v) => v.to_sql(ty, out),
            PgVal::I16(v) => v.to_sql(ty, out),
            PgVal::Bool(v) => v.to_sql(ty, out),
            PgVal::Text(v) => v.to_sql(ty, out),
            PgVal::Bytes(v) => v.to_sql(ty, out),
            PgVal::F64(v) => v.to_sql(ty, out),
            PgVal::F32(v) => v.to_sql(ty, out),
        }
    }

    // Each value was converted for its column's type already.
    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// One row of `table` from a SQLite row, converted column by column.
fn row_of(table: &Table, n: u64, r: &rusqlite::Row<'_>) -> anyhow::Result<Vec<PgVal>> {
    let mut out = Vec::with_capacity(table.columns.len());
    for (i, c) in table.columns.iter().enumerate() {
        let v = PgVal::convert(r.get_ref(i)?, c.ty)
            .map_err(|e| anyhow!("the source's table {}, row {n}, column {}: {e}", table.name, c.name))?;
        out.push(v);
    }
    Ok(out)
}

// ---- Reading the source (a thread of its own) ----

/// A block as the source records it.
struct BlockRow {
    id: BlockId,
    /// Plaintext bytes.
    size: u64,
    loc: BlockLoc,
    values: Vec<PgVal>,
}

/// Blocks copied together: one loose block, or blocks of one source pack
/// (read with one ranged read, written as one new pack).
struct Unit {
    rows: Vec<BlockRow>,
}

impl Unit {
    fn span(&self) -> (u64, u64) {
        let mut start = u64::MAX;
        let mut end = 0;
        for r in &self.rows {
            if let BlockLoc::Packed { offset, len, .. } = r.loc {
                start = start.min(offset);
                end = end.max(offset + u64::from(len));
            }
        }
        (start, end)
    }

    fn sealed_bytes(&self) -> u64 {
        self.rows.iter().map(|r| if let BlockLoc::Packed { len, .. } = r.loc { u64::from(len) } else { 0 }).sum()
    }

    /// Whether a packed block at `loc` joins this unit.
    fn takes(&self, loc: BlockLoc) -> bool {
        let (BlockLoc::Packed { pack, offset, len }, Some(first)) = (loc, self.rows.first()) else { return false };
        let BlockLoc::Packed { pack: ours, .. } = first.loc else { return false };
        let (start, _) = self.span();
        pack == ours
            && self.sealed_bytes() + u64::from(len) <= PACK_BYTES
            && offset + u64::from(len) - start.min(offset) <= READ_SPAN
    }
}

/// Where the columns of a block's place are in a `blocks` row.
#[derive(Debug, Clone, Copy)]
struct BlockCols {
    id: usize,
    size: usize,
    pack: usize,
    offset: usize,
    len: usize,
}

enum Msg {
    Unit(Unit),
    UnitsDone,
    Rows { table: usize, rows: Vec<Vec<PgVal>> },
    TableDone { table: usize, rows: u64 },
    Done,
}

/// Sends the source's blocks, then every other table's rows, in batches.
/// Returns early (with `Ok`) when the receiver is gone.
fn read_source(
    conn: &rusqlite::Connection,
    tables: &[Table],
    blocks: usize,
    cols: BlockCols,
    tx: &mpsc::Sender<anyhow::Result<Msg>>,
) -> anyhow::Result<()> {
    let send = |m: Msg| tx.blocking_send(Ok(m)).is_ok();
    let t = &tables[blocks];
    // Loose blocks (no pack) first, then pack by pack in offset order.
    let mut stmt = conn.prepare(&format!(
        "{} ORDER BY {}, {}",
        t.select_sql(),
        quote(&t.columns[cols.pack].name),
        quote(&t.columns[cols.offset].name)
    ))?;
    let mut rows = stmt.query([])?;
    let mut unit = Unit { rows: Vec::new() };
    let mut n = 0u64;
    while let Some(r) = rows.next()? {
        n += 1;
        let values = row_of(t, n, r)?;
        let row = block_row(&values, cols).with_context(|| format!("the source's block record {n}"))?;
        let row = BlockRow { values, ..row };
        if !unit.takes(row.loc)
            && !unit.rows.is_empty()
            && !send(Msg::Unit(std::mem::replace(&mut unit, Unit { rows: Vec::new() })))
        {
            return Ok(());
        }
        unit.rows.push(row);
    }
    if !unit.rows.is_empty() && !send(Msg::Unit(unit)) {
        return Ok(());
    }
    if !send(Msg::UnitsDone) {
        return Ok(());
    }
    for (i, t) in tables.iter().enumerate().filter(|(i, _)| *i != blocks) {
        let mut stmt = conn.prepare(&t.select_sql())?;
        let mut rows = stmt.query([])?;
        let (mut batch, mut weight, mut n) = (Vec::new(), 0usize, 0u64);
        while let Some(r) = rows.next()? {
            n += 1;
            let row = row_of(t, n, r)?;
            weight += row.iter().map(PgVal::weight).sum::<usize>();
            batch.push(row);
            if batch.len() >= t.max_rows() || weight >= BATCH_BYTES {
                weight = 0;
                if !send(Msg::Rows { table: i, rows: std::mem::take(&mut batch) }) {
                    return Ok(());
                }
            }
        }
        if !batch.is_empty() && !send(Msg::Rows { table: i, rows: batch }) {
            return Ok(());
        }
        if !send(Msg::TableDone { table: i, rows: n }) {
            return Ok(());
        }
    }
    send(Msg::Done);
    Ok(())
}

/// A block's id, size and place from its row (values left empty).
fn block_row(values: &[PgVal], cols: BlockCols) -> anyhow::Result<BlockRow> {
    let id = match &values[cols.id] {
        PgVal::Bytes(b) => BlockId(b.as_slice().try_into().map_err(|_| anyhow!("a block id of {} bytes", b.len()))?),
        other => bail!("a block id that is no byte string: {other:?}"),
    };
    let int = |i: usize| values[i].int();
    let size = int(cols.size).with_context(|| format!("block {id} has no size"))?;
    let loc = match (int(cols.pack), int(cols.offset), int(cols.len)) {
        (None, _, _) => BlockLoc::Loose,
        (Some(pack), Some(offset), Some(len)) => BlockLoc::Packed {
            pack: pack as u64,
            offset: u64::try_from(offset).with_context(|| format!("block {id} at offset {offset}"))?,
            len: u32::try_from(len).with_context(|| format!("block {id} of length {len}"))?,
        },
        _ => bail!("block {id} is in a pack with no offset or length"),
    };
    Ok(BlockRow { id, size: size as u64, loc, values: Vec::new() })
}

// ---- Copying blocks ----

struct Blocks {
    from: Arc<dyn BlockStore>,
    /// The source store, for messages.
    from_name: String,
    to: Arc<dyn BlockStore>,
    vault: Arc<Vault>,
    cols: BlockCols,
    /// Types of the columns of a block's place.
    types: (ColType, ColType, ColType),
}

/// What one unit put in the target.
struct Copied {
    rows: Vec<Vec<PgVal>>,
    bytes: u64,
    packs: u64,
}

impl Blocks {
    async fn copy(&self, unit: Unit) -> anyhow::Result<Copied> {
        let first = &unit.rows[0];
        let missing = |what: String| {
            anyhow!(
                "{what} is recorded in the source's database but {} does not have it (give --from-blocks if the \
                 server kept its blocks elsewhere)",
                self.from_name
            )
        };
        match first.loc {
            BlockLoc::Loose => {
                let id = first.id;
                let sealed = self
                    .from
                    .get(id, BlockLoc::Loose)
                    .await
                    .with_context(|| format!("reading block {id} from {}", self.from_name))?
                    .ok_or_else(|| missing(format!("block {id}")))?;
                let bytes = sealed.len() as u64;
                self.to.put(id, sealed.clone()).await.with_context(|| format!("writing block {id} to the target"))?;
                let back = self
                    .to
                    .get(id, BlockLoc::Loose)
                    .await
                    .with_context(|| format!("reading block {id} back from the target"))?
                    .with_context(|| format!("block {id} is not in the target right after it was written"))?;
                let vault = Arc::clone(&self.vault);
                let size = first.size;
                tokio::task::spawn_blocking(move || verify(&vault, &id, size, &back, &sealed)).await??;
                Ok(Copied { rows: unit.rows.into_iter().map(|r| r.values).collect(), bytes, packs: 0 })
            }
            BlockLoc::Packed { pack, .. } => {
                let (start, end) = unit.span();
                let span_loc = BlockLoc::Packed { pack, offset: start, len: u32::try_from(end - start)? };
                let span = self
                    .from
                    .get(first.id, span_loc)
                    .await
                    .with_context(|| format!("reading pack {pack:016x} from {}", self.from_name))?
                    .ok_or_else(|| missing(format!("pack {pack:016x} (block {})", first.id)))?;
                let slice = |loc: BlockLoc| -> anyhow::Result<Vec<u8>> {
                    let BlockLoc::Packed { offset, len, .. } = loc else { bail!("a loose block among packed ones") };
                    let at = (offset - start) as usize;
                    Ok(span.get(at..at + len as usize).context("a block past the end of its pack")?.to_vec())
                };
                let sealed: Vec<Vec<u8>> = unit.rows.iter().map(|r| slice(r.loc)).collect::<anyhow::Result<_>>()?;
                let bytes: u64 = sealed.iter().map(|s| s.len() as u64).sum();
                let locs = self.to.put_pack(sealed).await.context("writing a pack to the target")?;
                ensure!(
                    locs.len() == unit.rows.len(),
                    "the target placed {} blocks of {}",
                    locs.len(),
                    unit.rows.len()
                );
                let BlockLoc::Packed { pack: new_pack, .. } = locs[0] else { bail!("the target stored a pack loose") };
                let whole = BlockLoc::Packed { pack: new_pack, offset: 0, len: u32::try_from(bytes)? };
                let back = self
                    .to
                    .get(first.id, whole)
                    .await
                    .with_context(|| format!("reading pack {new_pack:016x} back from the target"))?
                    .with_context(|| format!("pack {new_pack:016x} is not in the target right after it was written"))?;
                let vault = Arc::clone(&self.vault);
                let checks: Vec<(BlockId, u64, BlockLoc, BlockLoc)> =
                    unit.rows.iter().zip(&locs).map(|(r, l)| (r.id, r.size, r.loc, *l)).collect();
                tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                    for (id, size, old, new) in checks {
                        let (BlockLoc::Packed { offset: o, len, .. }, BlockLoc::Packed { offset: n, len: l2, .. }) =
                            (old, new)
                        else {
                            bail!("block {id} lost its pack");
                        };
                        ensure!(len == l2, "block {id} was written with {l2} bytes of {len}");
                        let sent = &span[(o - start) as usize..][..len as usize];
                        let stored = back.get(n as usize..n as usize + len as usize).context("a short pack")?;
                        verify(&vault, &id, size, stored, sent)?;
                    }
                    Ok(())
                })
                .await??;
                let (pack_ty, offset_ty, len_ty) = self.types;
                let mut rows = Vec::with_capacity(unit.rows.len());
                for (r, loc) in unit.rows.into_iter().zip(locs) {
                    let BlockLoc::Packed { pack, offset, len } = loc else { bail!("the target stored a block loose") };
                    let mut values = r.values;
                    values[self.cols.pack] = PgVal::int_for(pack as i64, pack_ty)?;
                    values[self.cols.offset] = PgVal::int_for(offset as i64, offset_ty)?;
                    values[self.cols.len] = PgVal::int_for(i64::from(len), len_ty)?;
                    rows.push(values);
                }
                Ok(Copied { rows, bytes, packs: 1 })
            }
        }
    }
}

/// Checks that `stored` (read back from the target) opens with the master
/// key to block `id` of `size` bytes; on failure says whether the source's
/// copy (`sent`) was already bad.
fn verify(vault: &Vault, id: &BlockId, size: u64, stored: &[u8], sent: &[u8]) -> anyhow::Result<()> {
    let check = |bytes: &[u8]| -> anyhow::Result<()> {
        let (encoding, opened) = vault.open(id, bytes)?;
        let plain = block::decode(id, encoding, &opened).map_err(|e| anyhow!("block {id}: {e}"))?;
        ensure!(plain.len() as u64 == size, "block {id} holds {} bytes, its record says {size}", plain.len());
        Ok(())
    };
    check(stored).map_err(|e| {
        if stored == sent {
            e.context(format!(
                "block {id} does not verify in the source either: it is damaged there, or was sealed with another \
                 master key than the one given"
            ))
        } else {
            e.context(format!("block {id} as read back from the target differs from what was written"))
        }
    })
}

// ---- Block stores ----

/// Patience for a bulk copy: longer than a serving node's (which must
/// answer while the bucket is out), shorter than forever.
fn bulk_limits() -> Limits {
    Limits {
        request_timeout: Duration::from_secs(120),
        connect_timeout: Duration::from_secs(10),
        max_retries: 5,
        retry_timeout: Duration::from_secs(60),
    }
}

/// The store `spec` names, checked: a bucket, or a folder (opened only to
/// read when `read_only`, nothing created or cleaned in it).
async fn open_blocks(spec: &str, read_only: bool) -> anyhow::Result<(Arc<dyn BlockStore>, Option<PathBuf>)> {
    if spec.starts_with("s3://") {
        let parsed = S3Spec::parse(spec)?;
        let store = S3BlockStore::new(object_store::aws::AmazonS3Builder::from_env(), &parsed, bulk_limits())?;
        store.check().await.with_context(|| {
            format!(
                "block storage {spec} is not usable (check the endpoint, the bucket, and the credentials in \
                 AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
            )
        })?;
        return Ok((Arc::new(store), None));
    }
    if spec.contains("://") {
        bail!("unsupported block storage {spec:?}: give a folder path or s3://BUCKET?endpoint=…");
    }
    let dir = PathBuf::from(spec);
    if read_only {
        return Ok((Arc::new(LocalBlockStore::open_existing(&dir)), Some(dir)));
    }
    let store = LocalBlockStore::open(&dir).with_context(|| format!("opening block folder {}", dir.display()))?;
    Ok((Arc::new(store), Some(dir)))
}

// ---- The copy ----

async fn copy(
    opts: &MigrateToOptions,
    source: Source,
    vault: Arc<Vault>,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<MigrateStats> {
    let target = crate::meta::postgres::tls::Target::parse(&opts.db)?;
    let (mut client, connection) =
        target.config.connect(target.tls).await.context("connecting to the target database")?;
    let connection = tokio::spawn(connection);
    let tx = client.transaction().await?;
    // A server already running on the target waits for the copy.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK]).await?;
    let tables = target_tables(&tx).await?;
    same_schema(&source.tables()?, &tables)?;
    refuse_unless_empty(&tx, &tables).await?;

    let mut counts = HashMap::new();
    for t in &tables {
        counts.insert(t.name.clone(), source.count(&t.name)?);
    }
    let n_blocks = counts["blocks"];

    let from_spec = match &opts.from_blocks {
        Some(s) => s.clone(),
        None => opts.data.join("blocks").to_string_lossy().into_owned(),
    };
    let (from, from_dir) = open_blocks(&from_spec, true).await.context("the source's block storage")?;
    if let Some(dir) = &from_dir
        && n_blocks > 0
        && !dir.is_dir()
    {
        bail!("the source records {n_blocks} blocks but {} is no folder (give --from-blocks)", dir.display());
    }
    let (to, to_dir) = open_blocks(&opts.blocks, false).await.context("the target's block storage")?;
    if let (Some(a), Some(b)) = (&from_dir, &to_dir)
        && a.canonicalize().ok() == b.canonicalize().ok()
    {
        bail!("the target's block folder is the source's ({}): give another", b.display());
    }
    progress(&format!(
        "target: {} (empty) and {}; copying {n_blocks} blocks, {} at once",
        redact(&opts.db),
        opts.blocks,
        opts.parallel
    ));

    let bt = tables.iter().position(|t| t.name == "blocks").context("the schema has no blocks table")?;
    let blocks_table = &tables[bt];
    let cols = BlockCols {
        id: blocks_table.col("id")?,
        size: blocks_table.col("size")?,
        pack: blocks_table.col("pack")?,
        offset: blocks_table.col("pack_offset")?,
        len: blocks_table.col("pack_len")?,
    };
    let types =
        (blocks_table.columns[cols.pack].ty, blocks_table.columns[cols.offset].ty, blocks_table.columns[cols.len].ty);
    let copier = Blocks { from, from_name: from_spec.clone(), to, vault, cols, types };

    // The reader: its own thread, the snapshot's connection moved to it.
    let (msg_tx, mut msg_rx) = mpsc::channel::<anyhow::Result<Msg>>(2 * opts.parallel.max(2));
    let reader = {
        let tables = tables.clone();
        std::thread::Builder::new().name("ferry-migrate-read".into()).spawn(move || {
            let conn = source.conn;
            if let Err(e) = read_source(&conn, &tables, bt, cols, &msg_tx) {
                let _ = msg_tx.blocking_send(Err(e));
            }
        })?
    };

    let mut stats = MigrateStats {
        users: counts.get("users").copied().unwrap_or(0),
        files: counts.get("files").copied().unwrap_or(0),
        versions: counts.get("file_versions").copied().unwrap_or(0),
        ..MigrateStats::default()
    };
    let mut ins = Inserter { tx: &tx, full: HashMap::new() };

    // Blocks: a few units in flight; rows written as units finish.
    {
        let units = futures_util::stream::unfold(&mut msg_rx, |rx| async move {
            match rx.recv().await {
                Some(Ok(Msg::Unit(u))) => Some((Ok(u), rx)),
                Some(Ok(Msg::UnitsDone)) => None,
                Some(Ok(_)) => Some((Err(anyhow!("the source reader sent rows before the blocks")), rx)),
                Some(Err(e)) => Some((Err(e), rx)),
                None => Some((Err(anyhow!("the source reader stopped")), rx)),
            }
        });
        let copier = &copier;
        let copied = units
            .map(|u| async move {
                match u {
                    Ok(u) => copier.copy(u).await,
                    Err(e) => Err(e),
                }
            })
            .buffer_unordered(opts.parallel);
        let mut copied = std::pin::pin!(copied);
        let mut pending: Vec<Vec<PgVal>> = Vec::new();
        let mut told = Instant::now();
        while let Some(c) = copied.next().await {
            let c = c?;
            stats.blocks += c.rows.len() as u64;
            stats.bytes += c.bytes;
            stats.packs += c.packs;
            pending.extend(c.rows);
            if pending.len() >= blocks_table.max_rows() {
                ins.insert(blocks_table, bt, &std::mem::take(&mut pending)).await?;
            }
            if told.elapsed() >= PROGRESS_EVERY {
                told = Instant::now();
                progress(&format!(
                    "blocks: {} of {n_blocks} copied and verified ({})",
                    stats.blocks,
                    human_bytes(stats.bytes)
                ));
            }
        }
        ins.insert(blocks_table, bt, &pending).await?;
    }
    progress(&format!(
        "blocks: {} copied and verified ({}, {} new packs)",
        stats.blocks,
        human_bytes(stats.bytes),
        stats.packs
    ));
    stats.rows += stats.blocks;

    // Every other table.
    let (mut so_far, mut told) = (0u64, Instant::now());
    loop {
        match msg_rx.recv().await {
            Some(Ok(Msg::Rows { table, rows })) => {
                ins.insert(&tables[table], table, &rows).await?;
                so_far += rows.len() as u64;
                if told.elapsed() >= PROGRESS_EVERY {
                    told = Instant::now();
                    let t = &tables[table].name;
                    progress(&format!("{t}: {so_far} of {} rows copied", counts[t]));
                }
            }
            Some(Ok(Msg::TableDone { table, rows })) => {
                stats.rows += rows;
                so_far = 0;
                progress(&format!("{}: {rows} rows copied", tables[table].name));
            }
            Some(Ok(Msg::Done)) => break,
            Some(Ok(_)) => bail!("the source reader sent blocks after the tables"),
            Some(Err(e)) => return Err(e),
            None => bail!("the source reader stopped"),
        }
    }
    drop(msg_rx);
    reader.join().map_err(|_| anyhow!("the source reader panicked"))?;

    // New rows of the target take ids after the copied ones.
    for t in &tables {
        for c in t.columns.iter().filter(|c| c.sequence) {
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence($1, $2), coalesce((SELECT max({}) FROM {}), 0) + 1, false)",
                quote(&c.name),
                quote(&t.name)
            );
            tx.execute(&sql, &[&quote(&t.name), &c.name]).await.with_context(|| format!("the ids of {}", t.name))?;
        }
    }
    // Every row arrived.
    for t in &tables {
        let n: i64 = tx.query_one(&format!("SELECT count(*) FROM {}", quote(&t.name)), &[]).await?.get(0);
        let want = counts[&t.name];
        ensure!(n as u64 == want, "the target's table {} has {n} rows after the copy, the source's {want}", t.name);
    }
    tx.commit().await.context("committing the copy")?;
    drop(client);
    let _ = connection.await;
    Ok(stats)
}

/// Refuses a target that holds anything: migrate-to makes a new server of
/// an old one, it does not merge two.
async fn refuse_unless_empty(tx: &tokio_postgres::Transaction<'_>, tables: &[Table]) -> anyhow::Result<()> {
    let users: i64 = tx.query_one("SELECT count(*) FROM users", &[]).await?.get(0);
    if users > 0 {
        bail!(
            "the target database is not empty: it has {users} users. migrate-to copies into an empty database only \
             (it does not merge servers); give a new database, or drop and re-create this one"
        );
    }
    for t in tables {
        let any: bool = tx.query_one(&format!("SELECT EXISTS (SELECT 1 FROM {})", quote(&t.name)), &[]).await?.get(0);
        if any {
            bail!(
                "the target database is not empty: its table {} has rows. migrate-to copies into an empty database \
                 only; give a new database, or drop and re-create this one",
                t.name
            );
        }
    }
    Ok(())
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let user = &url[s + 3..at];
            match user.split_once(':') {
                Some((name, _)) => format!("{}{name}:…{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// `n` bytes for people: `12.3 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} bytes") } else { format!("{v:.1} {}", UNITS[u]) }
}

/// Writes rows with multi-row INSERTs (the statement for a full batch of
/// each table prepared once).
struct Inserter<'a> {
    tx: &'a tokio_postgres::Transaction<'a>,
    full: HashMap<usize, tokio_postgres::Statement>,
}

impl Inserter<'_> {
    async fn insert(&mut self, table: &Table, key: usize, rows: &[Vec<PgVal>]) -> anyhow::Result<()> {
        for chunk in rows.chunks(table.max_rows()) {
            let params: Vec<&(dyn ToSql + Sync)> = chunk.iter().flatten().map(|v| v as &(dyn ToSql + Sync)).collect();
            let written = if chunk.len() == table.max_rows() {
                if !self.full.contains_key(&key) {
                    let stmt = self.tx.prepare(&table.insert_sql(chunk.len())).await?;
                    self.full.insert(key, stmt);
                }
                self.tx.execute(&self.full[&key], &params).await
            } else {
                self.tx.execute(&table.insert_sql(chunk.len()), &params).await
            };
            written.with_context(|| format!("writing {} rows of {} to the target", chunk.len(), table.name))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_take_the_column_type() {
        assert!(matches!(PgVal::convert(ValueRef::Integer(1), ColType::Bool), Ok(PgVal::Bool(true))));
        assert!(matches!(PgVal::convert(ValueRef::Integer(0), ColType::Bool), Ok(PgVal::Bool(false))));
        assert!(PgVal::convert(ValueRef::Integer(2), ColType::Bool).is_err());
        assert!(matches!(PgVal::convert(ValueRef::Integer(7), ColType::Int4), Ok(PgVal::I32(7))));
        assert!(PgVal::convert(ValueRef::Integer(1 << 40), ColType::Int4).is_err());
        assert!(matches!(PgVal::convert(ValueRef::Integer(3), ColType::Float8), Ok(PgVal::F64(3.0))));
        assert!(matches!(PgVal::convert(ValueRef::Null, ColType::Text), Ok(PgVal::Null)));
        assert!(PgVal::convert(ValueRef::Text(b"a\0b"), ColType::Text).is_err());
        assert!(matches!(PgVal::convert(ValueRef::Blob(b"ab"), ColType::Bytes), Ok(PgVal::Bytes(b)) if b == b"ab"));
        assert!(PgVal::convert(ValueRef::Blob(b"ab"), ColType::Int8).is_err());
    }

    #[test]
    fn insert_statements_number_their_parameters() {
        let t = Table {
            name: "t".into(),
            columns: vec![
                Column { name: "id".into(), ty: ColType::Int8, sequence: true },
                Column { name: "v".into(), ty: ColType::Text, sequence: false },
            ],
            always: true,
        };
        assert_eq!(t.insert_sql(2), r#"INSERT INTO "t" ("id", "v") OVERRIDING SYSTEM VALUE VALUES ($1, $2), ($3, $4)"#);
        assert_eq!(t.max_rows(), BATCH_ROWS);
    }

    #[test]
    fn units_keep_to_one_pack_and_bounded_size() {
        let row = |pack, offset, len| BlockRow {
            id: BlockId([0; 32]),
            size: 1,
            loc: BlockLoc::Packed { pack, offset, len },
            values: Vec::new(),
        };
        let unit = Unit { rows: vec![row(1, 0, 100)] };
        assert!(unit.takes(BlockLoc::Packed { pack: 1, offset: 100, len: 100 }));
        assert!(!unit.takes(BlockLoc::Packed { pack: 2, offset: 100, len: 100 }));
        assert!(!unit.takes(BlockLoc::Loose));
        assert!(!unit.takes(BlockLoc::Packed { pack: 1, offset: 100, len: PACK_BYTES as u32 }));
        assert!(!unit.takes(BlockLoc::Packed { pack: 1, offset: READ_SPAN, len: 100 }));
        assert!(!Unit { rows: Vec::new() }.takes(BlockLoc::Packed { pack: 1, offset: 0, len: 1 }));
        assert_eq!(Unit { rows: vec![row(1, 50, 10), row(1, 200, 5)] }.span(), (50, 205));
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(redact("postgres://ferry:secret@db:5432/ferry"), "postgres://ferry:…@db:5432/ferry");
        assert_eq!(redact("postgres://ferry@db/ferry"), "postgres://ferry@db/ferry");
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
    }
}
