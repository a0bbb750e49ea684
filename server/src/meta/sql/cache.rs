//! What one transaction has read and may use again: the rows of the tree
//! it looked up by name, the journal sequences it took, the accounts'
//! quota and use. A commit of a thousand files into one folder walks the
//! same folders a thousand times; on PostgreSQL each walk is a round trip
//! per segment.
//!
//! Only what stays true until the transaction ends is kept: rows of a
//! namespace the transaction holds ([`Db::holds`](super::db::Db::holds)),
//! a sequence or a quota row it has locked by writing it. A statement that
//! writes the tree empties the tree's part ([`TxCache::tree_changed`])
//! unless the rule that ran it says what changed ([`Db::exec_tree`]
//! (super::db::Db::exec_tree)); a savepoint rolled back empties it all.

use std::collections::{HashMap, HashSet};

use ferry_shared::api::EntryKind;

use super::tree::Node;

/// A name in a folder: namespace, parent row, name key.
type Slot = (i64, i64, String);

#[derive(Default)]
pub struct TxCache {
    /// The row a name in a folder finds: the live one, else the newest
    /// deleted one; `None` when there is none.
    children: HashMap<Slot, Option<Node>>,
    /// Where each row kept in `children` is.
    slots: HashMap<i64, Slot>,
    /// Folders this transaction made: every row in them is in `children`
    /// (a name not there finds nothing).
    made: HashSet<(i64, i64)>,
    /// Each namespace's journal sequence as this transaction last read or
    /// set it, holding the namespace.
    seqs: HashMap<i64, i64>,
    /// Each account's `(quota, used)` as this transaction last saw or set it.
    usage: HashMap<i64, (i64, i64)>,
}

impl TxCache {
    /// Rows of the tree were written: what was kept of it may be stale.
    pub fn tree_changed(&mut self) {
        self.children.clear();
        self.slots.clear();
        self.made.clear();
    }

    /// What a lookup of `key` in folder `parent` of `ns` found, if kept.
    pub(super) fn child(&self, ns: i64, parent: i64, key: &str) -> Option<Option<Node>> {
        match self.children.get(&(ns, parent, key.to_owned())) {
            Some(found) => Some(found.clone()),
            None => self.made.contains(&(ns, parent)).then_some(None),
        }
    }

    /// Keeps what a lookup found (the live row, else the newest deleted one).
    pub(super) fn found(&mut self, ns: i64, parent: i64, key: String, node: Option<Node>) {
        if let Some(n) = &node {
            self.slots.insert(n.id, (ns, parent, key.clone()));
        }
        self.children.insert((ns, parent, key), node);
    }

    /// A row was made (live) at `key` in its folder.
    pub(super) fn created(&mut self, ns: i64, key: String, node: Node) {
        let parent = node.parent;
        if node.kind == EntryKind::Dir {
            self.made.insert((ns, node.id));
        }
        self.found(ns, parent, key, Some(node));
    }

    /// Row `id`'s head moved to `head`, nothing else of it changed.
    pub(super) fn head_moved(&mut self, id: i64, head: i64) {
        if let Some(slot) = self.slots.get(&id)
            && let Some(Some(n)) = self.children.get_mut(slot)
            && n.id == id
        {
            n.head = head;
        }
    }

    /// The sequence the next journal entry of `ns` takes, if this
    /// transaction has read or taken one there.
    pub(super) fn next_seq(&mut self, ns: i64) -> Option<i64> {
        let seq = self.seqs.get_mut(&ns)?;
        *seq += 1;
        Some(*seq)
    }

    /// `ns`'s journal sequence is `seq`, read by a transaction that holds
    /// the namespace (no other write moves it until this one ends).
    pub(super) fn seq_read(&mut self, ns: i64, seq: i64) {
        self.seqs.entry(ns).or_insert(seq);
    }

    /// `ns`'s journal sequence was set to `seq` by this transaction.
    pub(super) fn seq_taken(&mut self, ns: i64, seq: i64) {
        self.seqs.insert(ns, seq);
    }

    /// `user`'s `(quota, used)`, if this transaction has read it.
    pub(super) fn usage(&self, user: i64) -> Option<(i64, i64)> {
        self.usage.get(&user).copied()
    }

    pub(super) fn usage_read(&mut self, user: i64, quota: i64, used: i64) {
        self.usage.insert(user, (quota, used));
    }

    /// `user`'s use changed by `delta` (never below zero, as the statement
    /// that writes it).
    pub(super) fn used_changed(&mut self, user: i64, delta: i64) {
        if let Some((_, used)) = self.usage.get_mut(&user) {
            *used = (*used + delta).max(0);
        }
    }
}
