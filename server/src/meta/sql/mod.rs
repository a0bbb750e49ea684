//! The metadata rules, written once in SQL both backends run: one module
//! per part of [`crate::meta::MetaStore`], each implementing its trait for
//! [`SqlStore`] over any [`Backend`].
//!
//! # Tree
//! `files` holds the head state of every file and folder: parent id, name,
//! case-folded name key, head revision, deleted flag. Names are unique per
//! folder among live rows on the name key. Deleted rows stay (their history
//! stays reachable by path); re-creating a deleted path revives its row, so
//! history continues. `file_versions` rows are immutable; a block list is a
//! blob of `(32-byte id, u32 LE size)` records.
//!
//! # Parts
//! `accounts`, `blocks`, `tree` (paths to rows), `commit` (the operations
//! and the reads of files and history), `journal`, `links`, `pending`
//! (uploads in progress), `shares`, `trash` and `uploads` (resumable
//! sessions). [`db`] is the connection they speak through.

use crate::error::Result;

mod accounts;
mod blocks;
mod commit;
pub mod db;
mod journal;
mod links;
mod pending;
pub mod schema;
mod shares;
mod trash;
mod tree;
mod uploads;

use db::Db;

/// Writes that contend for the same rows, taken in turn: those of one
/// namespace (commits, shares, pending uploads: its counter rows and its
/// tree) or of one account (its quota row).
#[derive(Debug, Clone, Copy)]
pub enum Turn {
    Any,
    Namespace(i64),
    Account(i64),
}

/// What a backend gives the rules: transactions.
pub trait Backend: Send + Sync + 'static {
    /// Runs `f` in a write transaction; returns once it is durable. A
    /// failed `f` changes nothing. `f` may run more than once (a backend
    /// whose transactions run side by side runs again one that lost a
    /// race); only the last run's changes stay. Writes of the same
    /// [`Turn`] may be made to wait for each other rather than race.
    fn write<R: Send + 'static>(&self, turn: Turn, f: impl Fn(&Db<'_>) -> Result<R> + Send + 'static) -> Result<R>;
    /// Runs `f` in a read-only transaction (one consistent snapshot).
    fn read<R>(&self, f: impl FnOnce(&Db<'_>) -> Result<R>) -> Result<R>;
}

/// The metadata store over a backend.
pub struct SqlStore<B> {
    backend: B,
}

impl<B: Backend> SqlStore<B> {
    pub fn new(backend: B) -> Self {
        SqlStore { backend }
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    fn write<R: Send + 'static>(&self, f: impl Fn(&Db<'_>) -> Result<R> + Send + 'static) -> Result<R> {
        self.backend.write(Turn::Any, f)
    }

    /// A write taking its turn (see [`Turn`]).
    fn write_in<R: Send + 'static>(&self, turn: Turn, f: impl Fn(&Db<'_>) -> Result<R> + Send + 'static) -> Result<R> {
        self.backend.write(turn, f)
    }

    fn read<R>(&self, f: impl FnOnce(&Db<'_>) -> Result<R>) -> Result<R> {
        self.backend.read(f)
    }
}
