//! The trash: deleted rows of a user's own tree, read back. A deleted row
//! keeps its parent and name, and its head is the deletion revision (when,
//! by which device); its last live revision has its content. What was
//! deleted inside a folder within [`WITH_FOLDER_MS`] before the folder
//! itself counts as deleted with it: it is listed and restored as part of
//! the folder, not on its own.

use std::collections::HashMap;

use super::db::{Db, params};
use ferry_shared::api::{EntryKind, TrashItem};
use ferry_shared::path::RelPath;

use super::tree::kind_of;
use crate::error::Result;

/// How long before a folder's deletion what was deleted inside it still
/// counts as deleted with the folder (a daemon deletes a folder's files
/// first, possibly over several commits, then the folder).
pub(super) const WITH_FOLDER_MS: i64 = 60_000;

struct Row {
    parent: i64,
    kind: EntryKind,
    path: String,
    deleted: i64,
    device: String,
    user: String,
    size: u64,
}

/// Deleted items of namespace `ns`, most recently deleted first, each
/// folder standing for what was deleted with it.
pub(super) fn trash(c: &Db<'_>, ns: i64, limit: u32) -> Result<Vec<TrashItem>> {
    let mut s = c.prepare_cached(
        "SELECT f.id, f.parent, f.kind, v.path, v.created, COALESCE(d.name, ''), COALESCE(u.name, ''),
                COALESCE((SELECT l.size FROM file_versions l WHERE l.file = f.id AND l.deleted = 0
                          ORDER BY l.id DESC LIMIT 1), 0)
         FROM files f JOIN file_versions v ON v.id = f.head
         LEFT JOIN devices d ON d.id = v.device LEFT JOIN users u ON u.id = d.user_id
         WHERE f.ns = ?1 AND f.deleted = 1 AND f.mount IS NULL",
    )?;
    let rows: HashMap<i64, Row> = s
        .query_map(params![ns], |r| {
            Ok((
                r.get(0)?,
                Row {
                    parent: r.get(1)?,
                    kind: kind_of(r.get(2)?),
                    path: r.get(3)?,
                    deleted: r.get(4)?,
                    device: r.get(5)?,
                    user: r.get(6)?,
                    size: r.get::<_, i64>(7)? as u64,
                },
            ))
        })?
        .collect::<super::db::SqlResult<_>>()?;
    // Deleted with its folder: the folder is deleted too, and not long after.
    let with_parent = |row: &Row| {
        rows.get(&row.parent).is_some_and(|p| p.kind == EntryKind::Dir && row.deleted >= p.deleted - WITH_FOLDER_MS)
    };
    let mut children: HashMap<i64, Vec<i64>> = HashMap::new();
    for (&id, row) in &rows {
        if with_parent(row) {
            children.entry(row.parent).or_default().push(id);
        }
    }
    let mut items = Vec::new();
    for (&id, row) in &rows {
        if with_parent(row) {
            continue;
        }
        let Ok(path) = RelPath::parse(&row.path) else { continue };
        let (mut size, mut count) = (if row.kind == EntryKind::File { row.size } else { 0 }, 0u64);
        let mut stack = children.get(&id).cloned().unwrap_or_default();
        while let Some(child) = stack.pop() {
            let r = &rows[&child];
            count += 1;
            if r.kind == EntryKind::File {
                size += r.size;
            }
            stack.extend(children.get(&child).into_iter().flatten());
        }
        items.push(TrashItem {
            path,
            kind: row.kind,
            size,
            items: count,
            deleted: row.deleted,
            user: row.user.clone(),
            device: row.device.clone(),
        });
    }
    items.sort_by(|a, b| b.deleted.cmp(&a.deleted).then_with(|| a.path.cmp(&b.path)));
    items.truncate(limit as usize);
    Ok(items)
}
