//! `ferry-server`: the thin server of Ferry.
//!
//! - [`stores`]: the domain layer, the rules every backend shares (storing
//!   and reading blocks, publishing wake-ups after writes), above three
//!   seams, each a folder with its implementations side by side:
//!   - [`meta`]: metadata (users, devices, tokens, files, versions, journal,
//!     shares, links) behind [`meta::MetaStore`]: the rules once in
//!     `meta/sql`, over `meta/sqlite` (embedded) or `meta/postgres`;
//!   - [`blocks`]: sealed blocks by id behind [`blocks::BlockStore`];
//!     `blocks/local` a folder, `blocks/s3` a bucket. [`crypto`] seals them
//!     with AES-256-GCM;
//!   - [`notify`]: wake-ups for long polls behind [`notify::Notifier`];
//!     `notify/local` in-process.
//! - [`api`]: the HTTP API (axum), one handler module per area; [`limit`]
//!   throttles failed logins; [`upload`] ingests large uploads as they arrive.
//! - [`serve`]: start-up, TLS, graceful shutdown.
//! - [`migrate_to`]: `ferry-server migrate-to`, a single-node server's
//!   metadata and blocks copied into PostgreSQL and S3.

pub mod admin;
pub mod api;
pub mod blocks;
pub mod crypto;
pub mod error;
pub mod fsutil;
pub mod limit;
pub mod meta;
pub mod migrate_to;
pub mod notify;
pub mod passwords;
pub mod serve;
pub mod stores;
#[doc(hidden)]
pub mod testing;
pub mod upload;

pub use error::{Error, Result};
