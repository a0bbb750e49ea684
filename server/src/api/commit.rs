//! Commits: a batch of operations, each checked against its `parent_rev` and
//! answered on its own, all in one transaction.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use ferry_shared::api::{CommitOp, CommitRequest, CommitResponse, ErrorBody, ErrorCode, MAX_COMMIT_OPS, OpResult};

use super::blocking;
use super::body::JsonBody;
use super::{AppState, Auth};
use crate::error::{Error, Result};

/// Apply a batch of operations (put, delete, move, mkdir, rmdir, restore).
#[utoipa::path(post, path = "/commit", request_body = CommitRequest,
    responses((status = 200, body = CommitResponse, description = "one result per operation"),
        (status = 400, body = ErrorBody, description = "no operations or too many, an invalid path, or blocks \
            the account has not uploaded (`missing_blocks` lists them)"),
        (status = 413, body = ErrorBody, description = "a file larger than 10 GiB"),
        (status = 507, body = ErrorBody, description = "the account's quota would be exceeded")),
    security(("bearer" = [])))]
pub async fn commit(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(req): JsonBody<CommitRequest>,
) -> Result<Json<CommitResponse>> {
    if req.ops.is_empty() || req.ops.len() > MAX_COMMIT_OPS {
        return Err(Error::bad_request(format!("a commit has 1 to {MAX_COMMIT_OPS} operations")));
    }
    if req.ops.iter().any(|op| matches!(op, CommitOp::Put { size, .. } if *size > ferry_shared::MAX_FILE_SIZE)) {
        return Err(Error::client(ErrorCode::PayloadTooLarge, "files larger than 10 GiB are not accepted"));
    }
    let stores = Arc::clone(&state.stores);
    let outcome = blocking(move || stores.commit(&caller, req.ops, Vec::new())).await?;
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
