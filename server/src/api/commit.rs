//! Commits: a batch of operations, each checked against its `parent_rev` and
//! answered on its own, all in one transaction.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use ferry_shared::api::{CommitRequest, CommitResponse, MAX_COMMIT_OPS, OpResult};

use super::blocking;
use super::{AppState, Auth};
use crate::error::{Error, Result};

/// Apply a batch of operations (put, delete, move, mkdir, rmdir, restore).
#[utoipa::path(post, path = "/commit", request_body = CommitRequest,
    responses((status = 200, body = CommitResponse, description = "one result per operation")), security(("bearer" = [])))]
pub async fn commit(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Json(req): Json<CommitRequest>,
) -> Result<Json<CommitResponse>> {
    if req.ops.is_empty() || req.ops.len() > MAX_COMMIT_OPS {
        return Err(Error::bad_request(format!("a commit has 1 to {MAX_COMMIT_OPS} operations")));
    }
    let meta = Arc::clone(&state.meta);
    let ns = caller.ns;
    let outcome = blocking(move || meta.commit(&caller, req.ops, Vec::new())).await?;
    state.notifier.publish(ns, outcome.seq);
    if let Some(p) = outcome.pending {
        state.notifier.publish_pending(ns, p);
    }
    let results = outcome
        .results
        .into_iter()
        .map(|r| match r {
            Ok(entry) => OpResult { status: 200, entry: Some(entry), error: None },
            Err(e) => {
                let detail = e.detail();
                OpResult { status: detail.code.status(), entry: None, error: Some(detail) }
            }
        })
        .collect();
    Ok(Json(CommitResponse { results }))
}
