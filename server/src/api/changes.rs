//! The change journal and long polling.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use ferry_shared::api::{ChangesResponse, POLL_DEFAULT_SECS, POLL_MAX_SECS, PollResponse};
use serde::Deserialize;

use super::blocking;
use super::{AppState, Auth};
use crate::error::Result;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ChangesQuery {
    /// Journal position already seen (0 = from the beginning).
    #[serde(default)]
    pub cursor: i64,
    /// Page size (default 1000, at most 5000).
    pub limit: Option<u32>,
    /// `edit`: send a file modification's block list as an edit of its
    /// previous revision's list where that is shorter (`blocks_edit`);
    /// `full` (the default): every list in full.
    pub blocks: Option<BlocksMode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BlocksMode {
    Full,
    Edit,
}

/// Changes since `cursor`, oldest first, paged.
#[utoipa::path(get, path = "/changes", params(ChangesQuery), responses((status = 200, body = ChangesResponse)),
    security(("bearer" = [])))]
pub async fn changes(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Query(q): Query<ChangesQuery>,
) -> Result<Json<ChangesResponse>> {
    let limit = q.limit.unwrap_or(1000).clamp(1, 5000);
    let meta = Arc::clone(&state.meta);
    let edits = q.blocks == Some(BlocksMode::Edit);
    Ok(Json(blocking(move || meta.changes(caller.ns, q.cursor, limit, edits)).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PollQuery {
    /// Journal position already seen.
    #[serde(default)]
    pub cursor: i64,
    /// Seconds to wait (default 60, at most 300).
    pub timeout: Option<u64>,
    /// The pending-upload sequence already seen: given, the poll also
    /// answers when uploads are announced or dropped.
    pub pending: Option<i64>,
}

/// Long poll: answers at once when the journal is past `cursor` (or the
/// pending-upload sequence past `pending`), else when such a change arrives
/// or the timeout ends (`{"changes": false}`).
#[utoipa::path(get, path = "/changes/poll", params(PollQuery), responses((status = 200, body = PollResponse)),
    security(("bearer" = [])))]
pub async fn poll(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Query(q): Query<PollQuery>,
) -> Result<Json<PollResponse>> {
    let timeout = Duration::from_secs(q.timeout.unwrap_or(POLL_DEFAULT_SECS).min(POLL_MAX_SECS));
    // Subscribe first, then read: a commit in between is seen either way.
    let mut rx = state.notifier.subscribe(caller.ns);
    let mut shutdown = state.notifier.shutdown_signal();
    let meta = Arc::clone(&state.meta);
    let ns = caller.ns;
    let (seq, pending) = blocking(move || meta.poll_state(ns)).await?;
    let news = |(seq, pending): (i64, i64)| seq > q.cursor || q.pending.is_some_and(|p| pending > p);
    if news((seq, pending)) {
        let changes = seq > q.cursor;
        return Ok(Json(PollResponse { changes, cursor: if changes { seq } else { q.cursor }, pending }));
    }
    tracing::debug!(ns, cursor = q.cursor, "long poll waiting");
    let wait = async {
        loop {
            if rx.changed().await.is_err() {
                return None;
            }
            let now = *rx.borrow_and_update();
            if news(now) {
                return Some(now);
            }
        }
    };
    let woke = tokio::select! {
        r = tokio::time::timeout(timeout, wait) => r.ok().flatten(),
        _ = shutdown.wait_for(|s| *s) => None,
    };
    Ok(Json(match woke {
        Some((s, p)) => {
            let changes = s > q.cursor;
            PollResponse { changes, cursor: if changes { s } else { q.cursor }, pending: p.max(pending) }
        }
        None => PollResponse { changes: false, cursor: q.cursor, pending },
    }))
}
