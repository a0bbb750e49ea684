//! Ferry's end-to-end tests as one test binary: the real `ferry-server` and
//! `ferry` processes on 127.0.0.1, driven through `ferry_tests` (the harness
//! in `tests/src/`). A module an area, and the tests are named by it: run
//! one area with `cargo test -p ferry-tests --test e2e sync::`, one test with
//! `cargo test -p ferry-tests --test e2e -- --exact sync::nested_folder_moves`.
//!
//! One binary rather than one per area, as each would link the whole stack
//! again. The tests share this process, so none changes what is the
//! process's own (its environment, current directory or umask): what a
//! child process needs it gets through its `Command`.

mod clients;
mod crash;
mod desktop;
mod hostile;
mod installer;
mod lifecycle;
mod limits;
mod links;
mod notifications;
mod permissions;
mod security;
mod server_api;
mod sharing;
mod sync;
mod sync_core;
mod tray;
mod web;
