//! Folders shared between the simulation's two users: user 0 shares one of
//! its top-level folders with user 1 as editor or viewer, changes the role,
//! revokes; user 1 leaves (or, by its random operations, renames, moves or
//! deletes the shared folder on its disk). What user 1 writes inside a
//! folder shared with it read-only is remembered: it must never reach the
//! owner (`World::check`).

use axum::http::Method;
use ferry_shared::RelPath;
use ferry_shared::api::{EntryKind, ShareRole};
use rand::Rng;
use serde_json::json;

use crate::World;
use crate::disk::DiskPath;

impl World {
    /// The folders shared with user 1: `(where in their tree, role, id)`.
    pub(crate) fn shared_with_second(&self) -> Vec<(RelPath, ShareRole, i64)> {
        let meta = &self.server.state().stores.meta;
        meta.shares(&self.server.callers[1])
            .map(|l| l.into_iter().filter(|s| s.role != ShareRole::Owner).map(|s| (s.path, s.role, s.id)).collect())
            .unwrap_or_default()
    }

    /// Notes a write by user 1 inside a folder shared with them read-only.
    pub(crate) fn note_viewer_write(&mut self, d: usize, path: &DiskPath, h: ferry_client::sync::tree::ContentHash) {
        if self.users < 2 || self.devices[d].user != 1 {
            return;
        }
        if self.read_only_for_second(path) {
            self.viewer_writes.insert(h);
        }
    }

    /// User 1 moved these contents to `path`: where they may write, what
    /// they wrote in a read-only folder is theirs to send from there.
    pub(crate) fn note_viewer_move(
        &mut self,
        d: usize,
        path: &DiskPath,
        moved: Vec<ferry_client::sync::tree::ContentHash>,
    ) {
        if self.users < 2 || self.devices[d].user != 1 || self.viewer_writes.is_empty() {
            return;
        }
        if !self.read_only_for_second(path) {
            for h in moved {
                self.viewer_writes.remove(&h);
            }
        }
    }

    /// `path` (on user 1's disk) lies inside a folder shared with them read-only.
    fn read_only_for_second(&self, path: &DiskPath) -> bool {
        let Ok(rel) = RelPath::parse(&path.to_string()) else { return false };
        self.shared_with_second()
            .iter()
            .any(|(m, role, _)| *role == ShareRole::Viewer && rel != *m && rel.starts_with(m))
    }

    /// One sharing action, straight to the server (not through the
    /// simulated network: a person at the web app or the CLI).
    pub(crate) fn share_action(&mut self) -> anyhow::Result<()> {
        let shares = self.shared_with_second();
        let role = if self.rng.random_bool(0.5) { "editor" } else { "viewer" };
        let (who, what, resp) = if shares.is_empty() || self.rng.random_bool(0.2) {
            let top = self.server.state().stores.meta.list_folder(self.server.callers[0].ns, &RelPath::root())?;
            let dirs: Vec<RelPath> = top.into_iter().filter(|e| e.kind == EntryKind::Dir).map(|e| e.path).collect();
            if dirs.is_empty() {
                return Ok(());
            }
            let p = dirs[self.rng.random_range(0..dirs.len())].clone();
            let body = json!({"path": p, "with": "user1", "role": role});
            (0, format!("shares {p} with user1 as {role}"), self.server.request(0, Method::POST, "/shares", Some(body)))
        } else {
            let (p, _, id) = shares[self.rng.random_range(0..shares.len())].clone();
            let member = format!("/shares/{id}/members/user1");
            match self.rng.random_range(0..3) {
                0 => {
                    let body = json!({ "role": role });
                    (0, format!("makes user1 {role} of {p}"), self.server.request(0, Method::PUT, &member, Some(body)))
                }
                1 => (0, format!("revokes user1 from {p}"), self.server.request(0, Method::DELETE, &member, None)),
                _ => (1, format!("leaves {p}"), self.server.request(1, Method::DELETE, &member, None)),
            }
        };
        let ok = (200..300).contains(&resp.status);
        if ok {
            self.faults.share_changes += 1;
        }
        if ok && what.contains("editor") {
            // User 1 may write there now: what they wrote may go up.
            self.viewer_writes.clear();
        }
        self.log(format!("user{who} {what}: {}", resp.status));
        Ok(())
    }
}
