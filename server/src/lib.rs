//! `ferry-server`: the thin server of Ferry.
//!
//! - [`store`]: metadata (users, devices, tokens, files, versions, journal) behind
//!   the [`store::MetaStore`] trait; SQLite embedded by default.
//! - [`blockstore`]: encrypted blocks by id behind [`blockstore::BlockStore`];
//!   a local folder by default. [`crypto`] seals them with AES-256-GCM.
//! - [`notify`]: in-process wake-ups for long polls.
//! - [`api`]: the HTTP API (axum), one handler module per area; [`limit`]
//!   throttles failed logins.
//! - [`serve`]: start-up, TLS, graceful shutdown.

pub mod admin;
pub mod api;
pub mod blockstore;
pub mod crypto;
pub mod error;
pub mod fsutil;
pub mod limit;
pub mod notify;
pub mod passwords;
pub mod serve;
pub mod store;
pub mod upload;

pub use error::{Error, Result};
