//! The three trees the engine reconciles, as plain values: what the server
//! has (remote), what is on disk (local), and what both last agreed on
//! (synced, the merge base). No I/O here.

use std::collections::BTreeMap;
use std::ops::Bound;

use ferry_shared::RelPath;
use ferry_shared::api::{EntryKind, FileId, RevId};

/// A file's content hash (`ferry_shared::block::content_digest`: size and
/// block ids), kept as 32 bytes; [`ContentHash::NONE`] for folders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    pub const NONE: ContentHash = ContentHash([0; 32]);

    /// From the hex spelling the server uses; `""` is [`ContentHash::NONE`].
    pub fn parse(hex: &str) -> Option<ContentHash> {
        if hex.is_empty() {
            return Some(ContentHash::NONE);
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex, &mut out).ok()?;
        Some(ContentHash(out))
    }

    /// The hex spelling (`""` for [`ContentHash::NONE`]).
    pub fn to_hex(&self) -> String {
        if *self == ContentHash::NONE { String::new() } else { hex::encode(self.0) }
    }
}

/// A file or folder on the server, as the journal last described it. Its
/// block list stays in the state database (loaded when a download or an
/// edit needs it), so a tree of 100,000 files stays small in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteNode {
    pub id: FileId,
    pub rev: RevId,
    pub kind: EntryKind,
    pub size: u64,
    pub mtime: i64,
    pub executable: bool,
    pub hash: ContentHash,
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
    pub hash: ContentHash,
}

/// The keys at or under `prefix`, in order: two range lookups, not a walk
/// of the whole tree (`a/…` sorts between `a/` and `a0`, since `0` follows `/`).
pub fn subtree<V>(tree: &BTreeMap<RelPath, V>, prefix: &RelPath) -> Vec<RelPath> {
    if prefix.is_root() {
        return tree.keys().cloned().collect();
    }
    let (lo, hi) = (format!("{prefix}/"), format!("{prefix}0"));
    let children = tree.range::<str, _>((Bound::Included(lo.as_str()), Bound::Excluded(hi.as_str())));
    tree.get_key_value(prefix.as_str()).into_iter().chain(children).map(|(k, _)| k.clone()).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtree_is_the_prefix_and_everything_under_it() {
        let tree: BTreeMap<RelPath, ()> = ["a", "a b", "a-x", "a.txt", "a/c", "a/c/d", "a/z", "a0", "ab", "b"]
            .iter()
            .map(|p| (RelPath::parse(p).unwrap(), ()))
            .collect();
        let got = |p: &str| -> Vec<String> {
            subtree(&tree, &RelPath::parse(p).unwrap()).iter().map(|k| k.to_string()).collect()
        };
        assert_eq!(got("a"), ["a", "a/c", "a/c/d", "a/z"]);
        assert_eq!(got("a/c"), ["a/c", "a/c/d"]);
        assert_eq!(got("zz"), Vec::<String>::new());
        assert_eq!(got("").len(), tree.len());
    }

    #[test]
    fn content_hash_round_trips_through_hex() {
        let h = ContentHash([7; 32]);
        assert_eq!(ContentHash::parse(&h.to_hex()), Some(h));
        assert_eq!(ContentHash::parse(""), Some(ContentHash::NONE));
        assert_eq!(ContentHash::NONE.to_hex(), "");
        assert_eq!(ContentHash::parse("xyz"), None);
        assert_eq!(ContentHash::parse(&"ab".repeat(31)), None);
    }
}
