//! Folders shared with other users: made, listed, changed and left. The
//! shared folder then syncs like any other; what a member may do in it is
//! checked by every write (viewers get 403).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ferry_shared::api::{ErrorBody, RoleRequest, Share, ShareList, ShareRequest};

use super::body::JsonBody;
use super::{AppState, Auth, blocking};
use crate::error::{Error, Result};
use crate::meta::ShareId;

/// Share a folder with another user as editor or viewer (or change the role
/// of someone already in it). The folder appears at the top of their tree.
#[utoipa::path(post, path = "/shares", operation_id = "share_folder", request_body = ShareRequest,
    responses((status = 201, body = Share),
        (status = 400, body = ErrorBody, description = "a file, the root, or the caller themselves"),
        (status = 403, body = ErrorBody, description = "shared with the caller by someone else: only its owner shares it"),
        (status = 404, body = ErrorBody, description = "no such folder or user"),
        (status = 409, body = ErrorBody, description = "inside a shared folder, or holding one (shares do not nest)"),
        (status = 429, body = ErrorBody, description = "too many names that are no user's: try again later",
            headers(("Retry-After" = u64, description = "seconds to wait")))),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(req): JsonBody<ShareRequest>,
) -> Result<(StatusCode, Json<Share>)> {
    if req.path.is_root() {
        return Err(Error::bad_request("share a folder, not your whole tree"));
    }
    // Names that are no user's are throttled per caller: the answer tells
    // who exists, so it is not to be asked at speed.
    let attempt = state
        .unknown_names
        .begin(&caller.user_id.to_string(), std::time::Instant::now())
        .map_err(|wait| Error::RateLimited { retry_after: wait })?;
    let meta = Arc::clone(&state.stores.meta);
    let with = req.with.clone();
    let known = blocking(move || Ok(meta.password_hash(&with)?.is_some())).await?;
    attempt.finish(known);
    let stores = Arc::clone(&state.stores);
    let share = blocking(move || stores.share(&caller, &req.path, &req.with, req.role.into())).await?;
    Ok((StatusCode::CREATED, Json(share)))
}

/// The shared folders you are in: yours and those shared with you, with
/// their members and roles.
#[utoipa::path(get, path = "/shares", operation_id = "list_shares", responses((status = 200, body = ShareList)),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, Auth(caller): Auth) -> Result<Json<ShareList>> {
    let meta = Arc::clone(&state.stores.meta);
    Ok(Json(ShareList { shares: blocking(move || meta.shares(&caller)).await? }))
}

/// Change a member's role (owner only).
#[utoipa::path(put, path = "/shares/{id}/members/{user}", operation_id = "set_share_role", request_body = RoleRequest,
    params(("id" = i64, Path, description = "share id"), ("user" = String, Path, description = "member's user name")),
    responses((status = 200, body = Share),
        (status = 403, body = ErrorBody, description = "not the owner"),
        (status = 404, body = ErrorBody, description = "no such share of yours, or no such member")),
    security(("bearer" = [])))]
pub async fn set_role(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((id, user)): Path<(i64, String)>,
    JsonBody(req): JsonBody<RoleRequest>,
) -> Result<Json<Share>> {
    let stores = Arc::clone(&state.stores);
    let share = blocking(move || stores.set_role(&caller, ShareId(id), &user, req.role.into())).await?;
    Ok(Json(share))
}

/// Remove a member (the owner revokes), or yourself (you leave). The
/// folder leaves their devices; the owner's files stay.
#[utoipa::path(delete, path = "/shares/{id}/members/{user}", operation_id = "remove_share_member",
    params(("id" = i64, Path, description = "share id"), ("user" = String, Path, description = "member's user name")),
    responses((status = 204, description = "removed"),
        (status = 403, body = ErrorBody, description = "not the owner (and not yourself)"),
        (status = 404, body = ErrorBody, description = "no such share of yours, or no such member")),
    security(("bearer" = [])))]
pub async fn remove_member(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((id, user)): Path<(i64, String)>,
) -> Result<StatusCode> {
    let stores = Arc::clone(&state.stores);
    blocking(move || stores.remove_member(&caller, ShareId(id), Some(&user))).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Stop sharing: every member but the owner is removed (owner only).
#[utoipa::path(delete, path = "/shares/{id}", operation_id = "unshare_folder",
    params(("id" = i64, Path, description = "share id")),
    responses((status = 204, description = "everyone else removed"),
        (status = 403, body = ErrorBody, description = "not the owner"),
        (status = 404, body = ErrorBody, description = "no such share of yours")),
    security(("bearer" = [])))]
pub async fn unshare(State(state): State<AppState>, Auth(caller): Auth, Path(id): Path<i64>) -> Result<StatusCode> {
    let stores = Arc::clone(&state.stores);
    blocking(move || stores.remove_member(&caller, ShareId(id), None)).await?;
    Ok(StatusCode::NO_CONTENT)
}
