//! The trash: what was deleted in the caller's own tree, and bringing it
//! back (see `meta::sqlite::trash`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use ferry_shared::api::{Entry, ErrorBody, PathRequest, TrashList};
use serde::Deserialize;

use super::body::JsonBody;
use super::{AppState, Auth, blocking};
use crate::error::{Error, Result};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrashQuery {
    /// Most items to return (default 500, at most 5000).
    #[param(minimum = 1, maximum = 5000)]
    pub limit: Option<u32>,
}

/// Deleted files and folders, most recently deleted first: who deleted
/// each and when. A folder stands for what was deleted with it.
#[utoipa::path(get, path = "/trash", operation_id = "list_trash", params(TrashQuery),
    responses((status = 200, body = TrashList), (status = 400, body = ErrorBody, description = "limit out of range")),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Query(q): Query<TrashQuery>,
) -> Result<Json<TrashList>> {
    let limit = q.limit.unwrap_or(500);
    if !(1..=5000).contains(&limit) {
        return Err(Error::bad_request("limit must be 1 to 5000"));
    }
    let meta = Arc::clone(&state.stores.meta);
    Ok(Json(TrashList { items: blocking(move || meta.trash(caller.ns, limit)).await? }))
}

/// Restore a deleted file or folder (with what was deleted inside it) to
/// where it was; folders above it are made again if they are gone.
#[utoipa::path(post, path = "/trash/restore", operation_id = "restore_deleted", request_body = PathRequest,
    responses((status = 200, body = Entry, description = "restored"),
        (status = 404, body = ErrorBody, description = "nothing deleted at that path"),
        (status = 409, body = ErrorBody, description = "another item is at that path now"),
        (status = 507, body = ErrorBody, description = "the account's quota would be exceeded")),
    security(("bearer" = [])))]
pub async fn restore(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(req): JsonBody<PathRequest>,
) -> Result<Json<Entry>> {
    if req.path.is_root() {
        return Err(Error::bad_request("give the path of a deleted file or folder"));
    }
    let st = Arc::clone(&state);
    let outcome = blocking(move || st.stores.restore_deleted(&caller, &req.path)).await?;
    Ok(Json(outcome.results.into_iter().next().expect("one result")?))
}
