//! The engine's errors: what went wrong, with the path or request it was
//! about, and whether trying again later can help ([`Error::is_retryable`]).
//! An error is never a reason to delete: at worst a round waits.

use std::io;

use crate::net::remote::RemoteError;
use crate::sync::state::StateError;

/// What stopped a round, or one item of it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The sync folder cannot be synced now (missing, unreadable).
    #[error(transparent)]
    FolderUnavailable(#[from] FolderUnavailable),
    /// A mass deletion waits for the person's confirmation.
    #[error(transparent)]
    MassDelete(#[from] MassDelete),
    /// The server could not be reached, or refused a request.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The state database.
    #[error(transparent)]
    State(#[from] StateError),
    /// The disk, with what was being done (and to which path).
    #[error("{what}: {source}")]
    Disk {
        what: String,
        #[source]
        source: io::Error,
    },
    /// The disk, at a step whose path the message of the error names.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A name that is no valid path (a conflict copy's name too long).
    #[error(transparent)]
    Path(#[from] ferry_shared::path::PathError),
    /// The server refused one operation of a commit, or answered something
    /// that does not add up.
    #[error("{0}")]
    Refused(String),
    /// What the plan expected no longer holds on disk (something is in the
    /// way, or vanished): the next round plans again.
    #[error("{0}")]
    Changed(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Trying again later can help: everything but a revoked or unknown
    /// token (log in again). A folder that is unavailable is looked for
    /// again, a mass deletion waits for the person, and a refused or
    /// changed item is planned again in the next round.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Error::Remote(e) if e.is_unauthorized())
    }
}

/// Attaches what was being done to a disk error.
pub(crate) trait OnDisk<T> {
    fn on_disk(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> OnDisk<T> for io::Result<T> {
    fn on_disk(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Disk { what: what(), source })
    }
}

/// The sync folder cannot be synced right now; the daemon stays up, says so
/// in its status, and tries again.
#[derive(Debug, thiserror::Error)]
pub enum FolderUnavailable {
    /// Missing, without its marker, unreadable at the top, or another
    /// folder: checked again every few seconds (a cheap look at the marker).
    #[error("{0}")]
    Missing(String),
    /// Present, but a scan could not read all of it: retried with a backoff.
    #[error("{0}")]
    Unreadable(String),
}

/// A mass deletion waiting for confirmation.
#[derive(Debug, thiserror::Error)]
#[error(
    "{count} items would be deleted on the server at once; check the folder, then run `ferry resume --confirm-deletes`"
)]
pub struct MassDelete {
    pub count: usize,
}
