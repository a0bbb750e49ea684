//! The invariants checked after quiescence ([`World::check`]), and what a
//! violation report shows of the server's journal.

use std::collections::HashSet;

use ferry_client::sync::tree::ContentHash;
use ferry_shared::RelPath;
use ferry_shared::api::{ChangeOp, EntryKind};

use crate::disk::{self, Digest, digest_tree};
use crate::{Violation, World};

impl World {
    /// The server's journals, a line a change (for violation reports).
    pub(crate) fn journal_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for u in 0..self.users {
            let Ok(journal) = self.server.journal(u) else { return vec!["  (journal unreadable)".into()] };
            out.extend(journal.iter().map(|ch| {
                let e = &ch.entry;
                let from = ch.from.as_ref().map(|f| format!(" from {f}")).unwrap_or_default();
                let hash = &e.hash[..e.hash.len().min(8)];
                let share = e.share.as_ref().map(|m| format!(" share {} {:?}", m.id, m.role)).unwrap_or_default();
                format!(
                    "  journal of user{u}: {:?} {}{from} id {} rev {} {:?} {hash}{share}",
                    ch.op, e.path, e.id, e.rev, e.kind
                )
            }));
        }
        out
    }

    /// User `u`'s live tree on the server, from their journal.
    /// Returns it with every file content the journal ever named.
    fn server_tree(&self, u: usize) -> anyhow::Result<(Digest, HashSet<ContentHash>)> {
        let mut tree = Digest::new();
        let mut history = HashSet::new();
        for ch in self.server.journal(u)? {
            let e = &ch.entry;
            let hash = ContentHash::parse(&e.hash).unwrap_or(ContentHash([0xff; 32]));
            if e.kind == EntryKind::File {
                history.insert(hash);
            }
            match ch.op {
                ChangeOp::Add | ChangeOp::Modify | ChangeOp::Mkdir => {
                    tree.insert(e.path.clone(), (e.kind, hash, e.executable));
                }
                ChangeOp::Delete | ChangeOp::Rmdir => {
                    for k in ferry_client::sync::tree::subtree(&tree, &e.path) {
                        tree.remove(&k);
                    }
                }
                ChangeOp::Move => {
                    if let Some(from) = &ch.from {
                        for k in ferry_client::sync::tree::subtree(&tree, from) {
                            let v = tree.remove(&k).expect("listed");
                            tree.insert(k.rebase(from, &e.path)?, v);
                        }
                    }
                    tree.insert(e.path.clone(), (e.kind, hash, e.executable));
                }
            }
        }
        tree.remove(&RelPath::root());
        Ok((tree, history))
    }

    /// The invariants, after quiescence.
    pub(crate) fn check(&mut self) -> Result<(), Violation> {
        if let Some(alarm) = self.ledger.false_alarms.first() {
            return Err(self.violation(format!("the mass-deletion guard fired on deletions nobody made: {alarm}")));
        }
        let mut trees = Vec::new();
        let mut history = HashSet::new();
        for u in 0..self.users {
            let (tree, h) = self.server_tree(u).map_err(|e| self.violation(format!("reading the server: {e:#}")))?;
            trees.push(tree);
            history.extend(h);
        }
        // A viewer's edits never reach the owner.
        if self.users > 1 {
            let (_, owners) = self.server_tree(0).map_err(|e| self.violation(format!("reading the server: {e:#}")))?;
            if let Some(h) = self.viewer_writes.iter().find(|h| owners.contains(*h)) {
                let hex = h.to_hex();
                let at = self.server.journal(0).ok().and_then(|j| {
                    j.into_iter()
                        .find(|c| c.entry.hash == hex)
                        .map(|c| format!(" (at {}, rev {})", c.entry.path, c.entry.rev))
                });
                return Err(self.violation(format!(
                    "user1 wrote {hex} in a folder shared with them read-only, and it reached its owner{}",
                    at.unwrap_or_default()
                )));
            }
        }
        let all: Vec<&Digest> = trees.iter().collect();
        for dev in &self.devices {
            let server = all[dev.user];
            let fs = dev.disk.user();
            let local = digest_tree(&fs);
            // What this disk cannot hold stays on the server only (by the
            // disk model's rules: an engine refusing more fails here).
            let server: Digest = server.iter().filter(|(p, _)| fs.holds(p)).map(|(p, v)| (p.clone(), *v)).collect();
            if local != server {
                let mut diff = Vec::new();
                for (p, v) in &server {
                    match local.get(p) {
                        None => diff.push(format!("  only on the server: {p} {v:?}")),
                        Some(l) if l != v => diff.push(format!("  differs: {p} server {v:?} device {l:?}")),
                        _ => {}
                    }
                }
                diff.extend(
                    local.keys().filter(|p| !server.contains_key(*p)).map(|p| format!("  only on the device: {p}")),
                );
                if let Some(e) = dev.engine.as_ref() {
                    let keys: std::collections::BTreeSet<&RelPath> =
                        server.keys().chain(local.keys()).filter(|p| server.get(*p) != local.get(*p)).collect();
                    for k in keys {
                        diff.push(format!("  {k}: engine remote {:?} synced {:?}", e.rtree.get(k), e.stree.get(k)));
                    }
                }
                diff.extend(self.journal_lines());
                return Err(self.violation(format!("{} and the server differ:\n{}", dev.name, diff.join("\n"))));
            }
            if fs.live_temps() > 0 {
                return Err(self.violation(format!("{} has {} partial downloads left", dev.name, fs.live_temps())));
            }
            for (path, data) in &fs.placed {
                if data.is_empty() {
                    continue;
                }
                let h = disk::content_hash(data);
                if !self.ledger.written.contains(&h) {
                    return Err(self.violation(format!(
                        "{} showed a file at {path} that no user wrote ({} bytes): partial or corrupt",
                        dev.name,
                        data.len()
                    )));
                }
                // Only committed content is placed (a pending upload never shows).
                if !history.contains(&h) {
                    return Err(self.violation(format!(
                        "{} showed a file at {path} that was never committed ({} bytes)",
                        dev.name,
                        data.len()
                    )));
                }
            }
        }
        // Strict: what users wrote and did not destroy themselves is live
        // (at its path or in a conflict copy); in history only is lost.
        let live: HashSet<ContentHash> = trees.iter().flat_map(|t| t.values().map(|v| v.1)).collect();
        let mut lost: Vec<String> = self
            .ledger
            .must_survive
            .iter()
            .filter(|(h, _)| !live.contains(*h))
            .map(|(h, what)| format!("{what}{}", if history.contains(h) { " (in history only)" } else { "" }))
            .collect();
        if !lost.is_empty() {
            lost.sort();
            return Err(self.violation(format!("lost what users wrote: {lost:?}\n{}", self.journal_lines().join("\n"))));
        }
        Ok(())
    }
}
