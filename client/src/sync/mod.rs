//! The sync core: what is where (the three trees), what to do about it (the
//! pure planner), and doing it (the engine), reaching disk, server and
//! clock only through [`seams`].
//!
//! - [`tree`]: the three trees (remote, local, synced) as plain values.
//! - [`planner`]: the pure function from the trees to a [`planner::Plan`].
//! - [`engine`]: pulls the journal, scans, plans and executes (uploads,
//!   downloads, moves, deletions, conflict copies).
//! - [`seams`]: the traits through which the engine reaches disk, server and
//!   clock, and their production implementations.
//! - [`scan`]: the local tree, read from disk.
//! - [`names`]: which names the local disk can hold.
//! - [`state`]: the persisted trees and cursor (SQLite).
//! - [`progress`]: what the engine reports as it works, through one trait.

pub mod engine;
pub mod names;
pub mod planner;
pub mod progress;
pub mod scan;
pub mod seams;
pub mod state;
pub mod tree;
