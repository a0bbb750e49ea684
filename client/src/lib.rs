//! Ferry's sync client: the engine behind the `ferry` binary, in rooms.
//!
//! - [`sync`]: the sync core — the three trees, the pure planner, the
//!   engine that executes plans, the scan, the persisted state, and the
//!   seams through which the core reaches disk, server and clock.
//! - [`net`]: the server's HTTP API as a client, and bandwidth limits.
//! - [`daemon`]: the running daemon — its control loop and events, the file
//!   watcher, the control socket, the status it reports, its desktop
//!   notifications, its log file.
//! - [`cli`]: the terminal — `ferry`'s verbs and their views.
//! - [`tray`]: the tray icon and menu (`ferry tray`, a client of the daemon
//!   like the terminal).
//! - [`config`]: where configuration and state live; [`alloc`]: handing
//!   freed memory back to the OS after a burst of work.
//!
//! Arrows point down only: `cli` and `tray` use `daemon` and `config`,
//! which use `sync`, which uses `net`.

pub mod alloc;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod net;
pub mod sync;
pub mod tray;
