//! Ferry's sync client: the engine behind the `ferry` binary, in rooms.
//!
//! - [`sync`]: the sync core — the three trees, the pure planner, the
//!   engine that executes plans, the scan, the persisted state, and the
//!   seams through which the core reaches disk, server and clock.
//! - [`net`]: the server's HTTP API as a client, and bandwidth limits.
//! - [`daemon`]: the running daemon — its control loop and events, the file
//!   watcher, the control socket, the status it reports, its log file.
//! - [`cli`]: the terminal — `ferry`'s verbs and their views.
//! - [`desktop`]: notifications and the tray.
//! - [`config`]: where configuration and state live; [`alloc`]: handing
//!   freed memory back to the OS after a burst of work.

pub mod alloc;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod desktop;
pub mod net;
pub mod sync;
