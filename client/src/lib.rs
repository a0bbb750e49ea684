//! Ferry's sync client: the engine behind the `ferry` binary.
//!
//! - [`tree`]: the three trees (remote, local, synced) as plain values.
//! - [`planner`]: the pure function from the trees to a [`planner::Plan`].
//! - [`engine`]: pulls the journal, scans, plans and executes (uploads,
//!   downloads, moves, deletions, conflict copies).
//! - [`seams`]: the traits through which the engine reaches disk, server and
//!   clock, and their production implementations.
//! - [`scan`], [`watch`]: the local tree and the watcher that hints at changes.
//! - [`names`]: which names the local disk can hold.
//! - [`state`]: the persisted trees and cursor (SQLite).
//! - [`remote`]: the HTTP API client.
//! - [`daemon`], [`control`], [`status`]: the running daemon and its socket;
//!   `wait` (Unix): `ferry wait`'s progress display.
//! - [`config`]: where configuration and state live.
//! - [`alloc`]: handing freed memory back to the OS after a burst of work.

pub mod alloc;
pub mod config;
#[cfg(unix)]
pub mod control;
pub mod daemon;
pub mod desktop;
pub mod doctor;
pub mod engine;
pub mod limit;
#[cfg(unix)]
pub mod live;
pub mod logs;
pub mod names;
pub mod planner;
pub mod remote;
pub mod resolve;
pub mod scan;
pub mod seams;
pub mod state;
pub mod status;
pub mod tray;
pub mod tree;
#[cfg(unix)]
pub mod wait;
pub mod watch;
