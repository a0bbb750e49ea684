//! The three trees the engine reconciles, as plain values: what the server
//! has (remote), what is on disk (local), and what both last agreed on
//! (synced, the merge base). No I/O here.

use std::collections::BTreeMap;

use ferry_shared::RelPath;
use ferry_shared::api::{BlockRef, EntryKind, FileId, RevId};

/// A file or folder on the server, as the journal last described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteNode {
    pub id: FileId,
    pub rev: RevId,
    pub kind: EntryKind,
    pub size: u64,
    pub mtime: i64,
    pub executable: bool,
    /// Content hash (`ferry_shared::block::content_hash`); empty for folders.
    pub hash: String,
    pub blocks: Vec<BlockRef>,
}

/// What a scan saw of a path on disk. Files are compared by this identity,
/// never re-hashed unless it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalNode {
    pub kind: EntryKind,
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    pub inode: u64,
    pub executable: bool,
}

/// The last state both sides agreed on for a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncedNode {
    pub id: FileId,
    pub rev: RevId,
    pub kind: EntryKind,
    /// The local file's identity when it was last synced.
    pub local: LocalNode,
    pub hash: String,
}

pub type RemoteTree = BTreeMap<RelPath, RemoteNode>;
pub type LocalTree = BTreeMap<RelPath, LocalNode>;
pub type SyncedTree = BTreeMap<RelPath, SyncedNode>;

impl SyncedNode {
    /// True when the disk still shows what was synced (same identity).
    pub fn matches_local(&self, l: &LocalNode) -> bool {
        if self.kind != l.kind {
            return false;
        }
        match l.kind {
            EntryKind::Dir => true,
            EntryKind::File => {
                self.local.size == l.size
                    && self.local.mtime_ns == l.mtime_ns
                    && self.local.inode == l.inode
                    && self.local.executable == l.executable
            }
        }
    }

    /// True when the server still has the synced revision.
    pub fn matches_remote(&self, r: &RemoteNode) -> bool {
        self.id == r.id && self.rev == r.rev
    }
}
