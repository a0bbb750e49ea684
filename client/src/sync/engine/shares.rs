//! Shared folders on this device. The journal says where each is mounted
//! (a folder entry carrying `share`: its id, this user's role, its owner);
//! the engine keeps that map and fits each plan to it:
//!
//! - Removing a folder someone shared with you removes it from your tree
//!   only (you leave it): the server hears one removal of the folder, never
//!   the deletion of each file in it, which would delete them for everyone.
//! - In a folder shared with you read-only, a change made here is never
//!   sent (the server would refuse it): a new or edited file or folder moves
//!   out of the share, to `NAME (your edits)/…` beside it, as a conflict
//!   copy, and the server's version comes back; a deletion or a move is
//!   undone by downloading again.

use std::collections::{BTreeMap, HashSet};

use ferry_shared::RelPath;
use ferry_shared::api::{EntryKind, Mount, ShareRole};

use crate::sync::planner::{Op, Plan};
use crate::sync::tree::{SyncedTree, subtree};

/// Shared folders by where they are in this tree.
pub type Mounts = BTreeMap<RelPath, Mount>;

pub fn encode(mounts: &Mounts) -> String {
    let list: Vec<(&RelPath, &Mount)> = mounts.iter().collect();
    serde_json::to_string(&list).unwrap_or_default()
}

pub fn decode(json: &str) -> Mounts {
    serde_json::from_str::<Vec<(RelPath, Mount)>>(json).map(|l| l.into_iter().collect()).unwrap_or_default()
}

/// Lines for `ferry status`.
pub fn describe(mounts: &Mounts) -> Vec<String> {
    mounts
        .iter()
        .map(|(p, m)| match m.role {
            ShareRole::Owner => format!("{p}: yours, shared"),
            r => format!("{p}: shared with you by {} ({})", m.owner, r.as_str()),
        })
        .collect()
}

/// The mount `path` is strictly inside, if any.
fn mount_of<'a>(mounts: &'a Mounts, path: &RelPath) -> Option<(&'a RelPath, &'a Mount)> {
    mounts.iter().find(|(m, _)| path != *m && path.starts_with(m))
}

/// Where a change at `path` inside read-only mount `mount` is kept:
/// `MOUNT (your edits)/…` beside the mount.
fn outside(mount: &RelPath, path: &RelPath) -> Option<RelPath> {
    let aside = mount.parent()?.join(&format!("{} (your edits)", mount.name()?)).ok()?;
    path.rebase(mount, &aside).ok()
}

/// Fits `plan` to the shared folders (see the module doc). Returns the
/// mounts this plan leaves.
pub fn fit_plan(plan: &mut Plan, mounts: &Mounts, stree: &SyncedTree) -> Vec<RelPath> {
    if mounts.is_empty() {
        return Vec::new();
    }
    // Leaving: the folder's removal alone goes to the server.
    let leaving: Vec<RelPath> = mounts
        .iter()
        .filter(|(p, m)| {
            m.role != ShareRole::Owner
                && plan
                    .ops
                    .iter()
                    .any(|o| matches!(o, Op::DeleteRemote { path, kind: EntryKind::Dir, .. } if path == *p))
        })
        .map(|(p, _)| p.clone())
        .collect();
    let before = plan.ops.len();
    plan.ops.retain(
        |o| !matches!(o, Op::DeleteRemote { path, .. } if leaving.iter().any(|m| path != m && path.starts_with(m))),
    );
    plan.remote_deletes -= before - plan.ops.len();
    // Read-only: nothing goes to the server from inside.
    let mut moved_out: Vec<RelPath> = Vec::new();
    let mut forgotten: HashSet<RelPath> = HashSet::new();
    let mut out = Vec::with_capacity(plan.ops.len());
    for op in std::mem::take(&mut plan.ops) {
        let read_only = |p: &RelPath| mount_of(mounts, p).filter(|(_, m)| m.role == ShareRole::Viewer);
        match op {
            Op::Upload { ref path, .. } | Op::MkdirRemote { ref path } => match read_only(path) {
                Some((m, _)) => {
                    if moved_out.iter().any(|d| path.starts_with(d)) {
                        continue; // goes with the folder moved out
                    }
                    if let Some(to) = outside(m, path) {
                        if matches!(op, Op::MkdirRemote { .. }) {
                            moved_out.push(path.clone());
                        }
                        out.push(Op::KeepOutside { path: path.clone(), to });
                    }
                }
                None => out.push(op),
            },
            Op::DeleteRemote { ref path, .. } if read_only(path).is_some() => {
                plan.remote_deletes -= 1;
                if forgotten.insert(path.clone()) {
                    out.push(Op::Forget { path: path.clone() });
                }
            }
            Op::MoveRemote { ref from, ref to, .. } if read_only(from).is_some() || read_only(to).is_some() => {
                // Undone: the item is new where it went (kept or sent from
                // there next round) and downloaded again where it was.
                for k in subtree(stree, from) {
                    if forgotten.insert(k.clone()) {
                        out.push(Op::Forget { path: k });
                    }
                }
            }
            op => out.push(op),
        }
    }
    plan.ops = out;
    leaving
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::parse(s).unwrap()
    }

    fn mounts(role: ShareRole) -> Mounts {
        [(p("Team"), Mount { id: 1, role, owner: "alice".into() })].into_iter().collect()
    }

    #[test]
    fn removing_a_shared_folder_leaves_it_without_deleting_its_files() {
        let mut plan = Plan {
            ops: vec![
                Op::DeleteRemote { path: p("Team/a.txt"), rev: 3, kind: EntryKind::File },
                Op::DeleteRemote { path: p("Team/sub"), rev: 4, kind: EntryKind::Dir },
                Op::DeleteRemote { path: p("Team"), rev: 2, kind: EntryKind::Dir },
                Op::DeleteRemote { path: p("mine.txt"), rev: 5, kind: EntryKind::File },
            ],
            remote_deletes: 4,
        };
        let left = fit_plan(&mut plan, &mounts(ShareRole::Editor), &SyncedTree::new());
        assert_eq!(left, vec![p("Team")]);
        assert_eq!(plan.remote_deletes, 2);
        assert_eq!(plan.ops.len(), 2, "{:?}", plan.ops);
        // The owner deleting their own shared folder deletes it as usual.
        let mut plan = Plan {
            ops: vec![
                Op::DeleteRemote { path: p("Team/a.txt"), rev: 3, kind: EntryKind::File },
                Op::DeleteRemote { path: p("Team"), rev: 2, kind: EntryKind::Dir },
            ],
            remote_deletes: 2,
        };
        assert!(fit_plan(&mut plan, &mounts(ShareRole::Owner), &SyncedTree::new()).is_empty());
        assert_eq!(plan.ops.len(), 2);
    }

    #[test]
    fn a_viewers_changes_are_kept_outside_and_never_sent() {
        let mut plan = Plan {
            ops: vec![
                Op::Upload { path: p("Team/a.txt"), parent_rev: Some(3), size: 1 },
                Op::MkdirRemote { path: p("Team/new") },
                Op::Upload { path: p("Team/new/b.txt"), parent_rev: None, size: 1 },
                Op::DeleteRemote { path: p("Team/c.txt"), rev: 5, kind: EntryKind::File },
                Op::Upload { path: p("mine.txt"), parent_rev: None, size: 1 },
            ],
            remote_deletes: 1,
        };
        fit_plan(&mut plan, &mounts(ShareRole::Viewer), &SyncedTree::new());
        assert_eq!(
            plan.ops,
            vec![
                Op::KeepOutside { path: p("Team/a.txt"), to: p("Team (your edits)/a.txt") },
                Op::KeepOutside { path: p("Team/new"), to: p("Team (your edits)/new") },
                Op::Forget { path: p("Team/c.txt") },
                Op::Upload { path: p("mine.txt"), parent_rev: None, size: 1 },
            ]
        );
        assert_eq!(plan.remote_deletes, 0);
    }
}
