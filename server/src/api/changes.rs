//! The change journal and long polling.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use ferry_shared::api::{ActivityPage, ChangesResponse, ErrorBody, POLL_DEFAULT_SECS, POLL_MAX_SECS, PollResponse};
use serde::Deserialize;

use super::blocking;
use super::{AppState, Auth};
use crate::error::{Error, Result};
use crate::meta::Seq;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesQuery {
    /// Journal position already seen (0 = from the beginning).
    #[serde(default)]
    #[param(minimum = 0)]
    pub cursor: i64,
    /// Page size (default 1000, at most 5000).
    #[param(minimum = 1, maximum = 5000)]
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
#[utoipa::path(get, path = "/changes", params(ChangesQuery),
    responses((status = 200, body = ChangesResponse),
        (status = 400, body = ErrorBody, description = "a negative or malformed cursor or limit"),
        (status = 409, body = ErrorBody, description = "`cursor_reset`: the cursor is past the end of the journal; \
            list from 0 again and merge with what you hold")),
    security(("bearer" = [])))]
pub async fn changes(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Query(q): Query<ChangesQuery>,
) -> Result<Json<ChangesResponse>> {
    let limit = q.limit.unwrap_or(1000);
    if !(1..=5000).contains(&limit) {
        return Err(Error::bad_request("limit must be 1 to 5000"));
    }
    let meta = Arc::clone(&state.stores.meta);
    let edits = q.blocks == Some(BlocksMode::Edit);
    Ok(Json(blocking(move || meta.changes(caller.ns, Seq(q.cursor), limit, edits)).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PollQuery {
    /// Journal position already seen.
    #[serde(default)]
    #[param(minimum = 0)]
    pub cursor: i64,
    /// Seconds to wait (default 60, at most 300).
    #[param(maximum = 300)]
    pub timeout: Option<u64>,
    /// The pending-upload sequence already seen: given, the poll also
    /// answers when uploads are announced or dropped.
    pub pending: Option<i64>,
}

/// Long poll: answers at once when the journal is past `cursor` (or the
/// pending-upload sequence past `pending`), else when such a change arrives
/// or the timeout ends (`{"changes": false}`).
#[utoipa::path(get, path = "/changes/poll", params(PollQuery),
    responses((status = 200, body = PollResponse),
        (status = 400, body = ErrorBody, description = "a negative or malformed cursor"),
        (status = 409, body = ErrorBody, description = "`cursor_reset`: the cursor is past the end of the journal")),
    security(("bearer" = [])))]
pub async fn poll(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Query(q): Query<PollQuery>,
) -> Result<Json<PollResponse>> {
    let timeout = match q.timeout.unwrap_or(POLL_DEFAULT_SECS) {
        t if t > POLL_MAX_SECS => {
            return Err(Error::bad_request(format!("timeout is at most {POLL_MAX_SECS} seconds")));
        }
        t => Duration::from_secs(t).min(state.limits.poll_max),
    };
    // Subscribe first, then read: a commit in between is seen either way.
    let mut rx = state.stores.notifier.subscribe(caller.ns);
    let mut shutdown = state.stores.notifier.shutdown_signal();
    let meta = Arc::clone(&state.stores.meta);
    let ns = caller.ns;
    let (head, pending) = blocking(move || meta.poll_state(ns)).await?;
    crate::meta::check_cursor(Seq(q.cursor), head)?;
    let (seq, pending) = (head.0, pending.0);
    let news = |(seq, pending): (i64, i64)| seq > q.cursor || q.pending.is_some_and(|p| pending > p);
    if news((seq, pending)) {
        let changes = seq > q.cursor;
        return Ok(Json(PollResponse { changes, cursor: if changes { seq } else { q.cursor }, pending }));
    }
    tracing::debug!(%ns, cursor = q.cursor, "long poll waiting");
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ActivityQuery {
    /// Most events to return (default 50, at most 500).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// Only events older than this (the `before` of the previous page).
    #[param(minimum = 1)]
    pub before: Option<i64>,
}

/// Recent activity, newest first: files and folders added, edited, moved
/// and deleted — who, from which device, when. The long poll
/// (`/changes/poll`) says when there is more.
#[utoipa::path(get, path = "/activity", params(ActivityQuery),
    responses((status = 200, body = ActivityPage),
        (status = 400, body = ErrorBody, description = "limit or before out of range")),
    security(("bearer" = [])))]
pub async fn activity(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Query(q): Query<ActivityQuery>,
) -> Result<Json<ActivityPage>> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(Error::bad_request("limit must be 1 to 500"));
    }
    if q.before.is_some_and(|b| b < 1) {
        return Err(Error::bad_request("before must be the `before` of an earlier page"));
    }
    let meta = Arc::clone(&state.stores.meta);
    let events = blocking(move || meta.activity(caller.ns, q.before.map(Seq), limit)).await?;
    let before = if events.len() == limit as usize { events.last().map(|e| e.seq) } else { None };
    Ok(Json(ActivityPage { events, before }))
}
