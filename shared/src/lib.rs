//! Ferry's protocol vocabulary: what the client and the server must agree on.
//!
//! - [`chunk`]: content-defined chunking (fastcdc v2020) with the system's one
//!   size rule, and a streaming pipeline that chunks, hashes and compresses.
//! - [`block`]: block ids (BLAKE3 of the plaintext) and the zstd block codec.
//! - [`path`]: the one normalized form of a path inside a namespace.
//! - [`range`]: the `Range` and `Content-Range` headers of the file API.
//! - [`api`]: the serde wire types of every request and response, and the
//!   error codes.
//!
//! No I/O runtime lives here (no tokio, HTTP or database crates): both sides
//! build on these types, and the simulation in later issues runs them in-process.

pub mod api;
pub mod block;
pub mod chunk;
pub mod path;
pub mod range;
#[cfg(feature = "signal")]
pub mod signal;
pub mod time;

pub use block::BlockId;
pub use path::{PathError, RelPath};

/// Version of the wire protocol; sent by clients in `ferry-protocol` and
/// bumped on any incompatible change of the types in [`api`].
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest file Ferry stores (10 GiB).
pub const MAX_FILE_SIZE: u64 = 10 * 1024 * 1024 * 1024;
