//! The change journal of a namespace, read in pages, and the sequence
//! numbers the long poll watches.

use super::db::{OptionalExtension, params};
use ferry_shared::BlockId;
use ferry_shared::api::{ActivityEvent, BlockRef, BlocksEdit, Change, ChangeOp, ChangesResponse, EntryKind};
use ferry_shared::path::RelPath;

use super::tree::*;
use super::{Backend, SqlStore};
use crate::error::Result;
use crate::meta::{Journal, NsId, PendingSeq, Seq, check_cursor};

impl<B: Backend> Journal for SqlStore<B> {
    fn cursor(&self, ns: NsId) -> Result<Seq> {
        self.read(|c| Ok(c.row("SELECT seq FROM namespaces WHERE id = ?1", [ns], |r| r.get(0))?))
    }

    fn poll_state(&self, ns: NsId) -> Result<(Seq, PendingSeq)> {
        self.read(|c| {
            Ok(c.row("SELECT seq, pending_seq FROM namespaces WHERE id = ?1", [ns], |r| Ok((r.get(0)?, r.get(1)?)))?)
        })
    }

    fn changes(&self, ns: NsId, cursor: Seq, limit: u32, edits: bool) -> Result<ChangesResponse> {
        self.read(|c| {
            let head: Seq = c.row("SELECT seq FROM namespaces WHERE id = ?1", [ns], |r| r.get(0))?;
            check_cursor(cursor, head)?;
            let (cursor, head) = (cursor.0, head.0);
            let mut s = c.prepare_cached(
                "SELECT j.seq, j.op, j.file, j.rev, j.path, j.from_path, f.kind, f.mount FROM journal j
                 JOIN files f ON f.id = j.file WHERE j.ns = ?1 AND j.seq > ?2 ORDER BY j.seq LIMIT ?3",
            )?;
            struct Row {
                seq: i64,
                op: i64,
                file: i64,
                rev: i64,
                path: String,
                from: Option<String>,
                kind: i64,
                mount: Option<i64>,
            }
            let rows: Vec<Row> = s
                .query_map(params![ns, cursor, limit], |r| {
                    Ok(Row {
                        seq: r.get(0)?,
                        op: r.get(1)?,
                        file: r.get(2)?,
                        rev: r.get(3)?,
                        path: r.get(4)?,
                        from: r.get(5)?,
                        kind: r.get(6)?,
                        mount: r.get(7)?,
                    })
                })?
                .collect::<super::db::SqlResult<_>>()?;
            let mut changes = Vec::with_capacity(rows.len());
            let mut last = cursor;
            for Row { seq, op, file, rev, path, from, kind, mount } in rows {
                let op = op_of(op);
                let kind = kind_of(kind);
                let v = version(c, rev)?;
                let path = RelPath::parse(&path).map_err(|e| anyhow::anyhow!("journal path {path:?}: {e}"))?;
                let from = from.map(|f| RelPath::parse(&f)).transpose().map_err(|e| anyhow::anyhow!("{e}"))?;
                let refs = |l: &[(BlockId, u32)]| -> Vec<BlockRef> {
                    l.iter().map(|(id, size)| BlockRef { id: *id, size: *size }).collect()
                };
                let mut blocks = (kind == EntryKind::File && matches!(op, ChangeOp::Add | ChangeOp::Modify))
                    .then(|| refs(&v.blocks));
                let mut blocks_edit = None;
                if edits && kind == EntryKind::File && op == ChangeOp::Modify {
                    // The file's previous revision is the one its previous
                    // journal record named: a client that followed the journal holds its list.
                    let prev: Option<(i64, Vec<u8>, bool)> = c
                        .row(
                            "SELECT id, blocks, deleted FROM file_versions WHERE file = ?1 AND id < ?2
                             ORDER BY id DESC LIMIT 1",
                            params![file, rev],
                            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                        )
                        .optional()?;
                    if let (Some((prev_rev, prev_blocks, false)), Some(new)) = (prev, &blocks) {
                        let base = refs(&ferry_shared::block::decode_list(&prev_blocks));
                        blocks_edit = BlocksEdit::between(prev_rev, &base, new);
                        if blocks_edit.is_some() {
                            blocks = None;
                        }
                    }
                }
                let mut entry = entry_of(file, kind, &path, rev, &v);
                if mount.is_some() && op == ChangeOp::Mkdir {
                    entry.share = mount_info(c, file)?;
                }
                changes.push(Change { seq, op, entry, from, blocks, blocks_edit });
                last = seq;
            }
            let cursor = if changes.len() < limit as usize { head.max(last) } else { last };
            Ok(ChangesResponse { has_more: cursor < head, changes, cursor })
        })
    }

    fn activity(&self, ns: NsId, before: Option<Seq>, limit: u32) -> Result<Vec<ActivityEvent>> {
        self.read(|c| {
            let mut s = c.prepare_cached(
                "SELECT j.seq, j.op, f.kind, j.path, j.from_path, COALESCE(u.name, ''), COALESCE(d.name, ''), v.created
                 FROM journal j JOIN files f ON f.id = j.file JOIN file_versions v ON v.id = j.rev
                 LEFT JOIN devices d ON d.id = v.device LEFT JOIN users u ON u.id = d.user_id
                 WHERE j.ns = ?1 AND j.seq < ?2 AND j.path != '' ORDER BY j.seq DESC LIMIT ?3",
            )?;
            let rows = s.query_map(params![ns, before.map_or(i64::MAX, |s| s.0), limit], |r| {
                let path: String = r.get(3)?;
                let from: Option<String> = r.get(4)?;
                Ok(ActivityEvent {
                    seq: r.get(0)?,
                    op: op_of(r.get(1)?),
                    kind: kind_of(r.get(2)?),
                    path: RelPath::parse(&path).unwrap_or_default(),
                    from: from.and_then(|p| RelPath::parse(&p).ok()),
                    user: r.get(5)?,
                    device: r.get(6)?,
                    time: r.get(7)?,
                })
            })?;
            Ok(rows.collect::<super::db::SqlResult<_>>()?)
        })
    }
}
