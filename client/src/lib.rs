//! Ferry's sync client: the engine behind the `ferry` binary.
//!
//! - [`tree`]: the three trees (remote, local, synced) as plain values.
//! - [`planner`]: the pure function from the trees to a [`planner::Plan`].
//! - more modules (state, remote, scan, executor, daemon) arrive with the
//!   client issue.

pub mod planner;
pub mod tree;
