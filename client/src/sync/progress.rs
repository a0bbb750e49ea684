//! What the engine tells the world as it works, through one narrow trait:
//! the daemon keeps it in its status (`ferry status`, the tray, `ferry
//! wait`); a simulation or a test keeps what it wants. The engine never
//! sees who listens.

use crate::net::remote::Traffic;

/// Takes the engine's reports. Called from the engine's task, briefly: an
/// implementation must not block.
pub trait Progress: Send + Sync {
    fn report(&self, report: Report);
}

/// Files and bytes left to move.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pending {
    pub uploads: usize,
    pub upload_bytes: u64,
    pub downloads: usize,
    pub download_bytes: u64,
}

/// One thing the engine reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The shared folders here, described (`path: shared by OWNER, ROLE`).
    Shares(Vec<String>),
    /// The server's journal is read up to this cursor.
    Cursor(i64),
    /// News of shared folders for the person (shared with them, access
    /// removed, read-only edits kept aside).
    ShareNews(String),
    /// Items in the folder that are not synced, with the reason.
    NotSynced(Vec<String>),
    /// Items on the server this disk cannot hold (`path: reason`).
    KeptOffDisk(Vec<String>),
    /// A conflict copy was made (its path in the folder).
    Conflict(String),
    /// One item failed; the round goes on, and it is tried again later.
    Error(String),
    /// What the plan about to run moves.
    Planned(Pending),
    /// Work done since the plan started (to count off what is left).
    Done { done: Pending, traffic: Traffic },
    /// A round ended: nothing is left pending.
    RoundEnd { at_ms: i64, files: usize, traffic: Traffic },
}
