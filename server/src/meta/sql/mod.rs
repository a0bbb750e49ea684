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
mod cache;
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

use db::{Db, Lock};

/// How a write runs beside other writes.
///
/// A write reads and then writes, so whatever it reads that another write
/// may change must stay put until it ends. Under SQLite's single writer
/// that holds of itself. Where writes run side by side (PostgreSQL), a
/// write either runs [`Turn::Alone`], or holds the [`Lock`] of each
/// namespace and account whose rows it reads or writes: those named here
/// from its start, the rest from where it [`Db::enter`]s them.
#[derive(Debug, Clone)]
pub enum Turn {
    /// No other write runs meanwhile: writes that read widely (shares and
    /// their members, accounts, links, sweeps), all rare.
    Alone,
    /// Beside other writes, these locks held from the start.
    With(Vec<Lock>),
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
    fn read<R>(&self, f: impl Fn(&Db<'_>) -> Result<R>) -> Result<R>;
    /// Runs `f`, a read, where each statement may see a snapshot of its
    /// own: for reads of one statement (a backend may spare them the
    /// transaction's round trips) or of statements that need not agree.
    fn read_each<R>(&self, f: impl Fn(&Db<'_>) -> Result<R>) -> Result<R> {
        self.read(f)
    }
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

    /// A write that runs alone (see [`Turn::Alone`]).
    fn write<R: Send + 'static>(&self, f: impl Fn(&Db<'_>) -> Result<R> + Send + 'static) -> Result<R> {
        self.backend.write(Turn::Alone, f)
    }

    /// A write taking its turn (see [`Turn`]).
    fn write_in<R: Send + 'static>(&self, turn: Turn, f: impl Fn(&Db<'_>) -> Result<R> + Send + 'static) -> Result<R> {
        self.backend.write(turn, f)
    }

    fn read<R>(&self, f: impl Fn(&Db<'_>) -> Result<R>) -> Result<R> {
        self.backend.read(f)
    }

    /// A read whose statements need not share a snapshot (see
    /// [`Backend::read_each`]).
    fn read_each<R>(&self, f: impl Fn(&Db<'_>) -> Result<R>) -> Result<R> {
        self.backend.read_each(f)
    }
}
