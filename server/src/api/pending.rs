//! Pending uploads: a device sending a large file announces its block list
//! first, so other devices fetch the blocks as they land (`GET
//! /blocks/{id}?wait=`) and have little left to fetch at the commit. An
//! announcement is never a head: the file shows at its path only once
//! committed. See `ferry_shared::api::PendingAnnounce`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ferry_shared::api::{ErrorBody, MAX_PENDING_BLOCKS, PendingAnnounce, PendingAnnounced, PendingList};

use super::body::JsonBody;
use super::{AppState, Auth, blocking};
use crate::error::{Error, Result};
use crate::meta::now_ms;

/// How long an announcement lives: ten minutes, plus the time its bytes
/// take at 1 MB/s (an uploader that dies is forgotten after that; one that
/// comes back drops its announcements at once).
fn lifetime_ms(size: u64) -> i64 {
    600_000 + (size / 1_000) as i64
}

/// Announce a file whose blocks are being uploaded.
#[utoipa::path(post, path = "/uploads/pending", request_body = PendingAnnounce,
    responses((status = 200, body = PendingAnnounced),
        (status = 400, body = ErrorBody, description = "no file path, too many blocks, or blocks that do not add up to the size"),
        (status = 429, body = ErrorBody, description = "this device announces too many uploads at once"),
        (status = 413, body = ErrorBody, description = "the file is larger than 10 GiB")),
    security(("bearer" = [])))]
pub async fn announce(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(a): JsonBody<PendingAnnounce>,
) -> Result<Json<PendingAnnounced>> {
    if a.path.is_root() {
        return Err(Error::bad_request("a pending upload needs a file path"));
    }
    if a.size > ferry_shared::MAX_FILE_SIZE {
        return Err(Error::client(
            ferry_shared::api::ErrorCode::PayloadTooLarge,
            "files larger than 10 GiB are not accepted",
        ));
    }
    if a.blocks.len() > MAX_PENDING_BLOCKS {
        return Err(Error::bad_request(format!("at most {MAX_PENDING_BLOCKS} blocks")));
    }
    let total: u64 = a.blocks.iter().map(|b| u64::from(b.size)).sum();
    if total != a.size {
        return Err(Error::bad_request(format!("size is {} but the blocks add up to {total} bytes", a.size)));
    }
    let expires = now_ms() + lifetime_ms(a.size);
    let stores = Arc::clone(&state.stores);
    let id = blocking(move || stores.announce_pending(&caller, a, expires)).await?;
    Ok(Json(PendingAnnounced { id: id.0, expires }))
}

/// The uploads other devices are announcing (the caller's own are left out).
#[utoipa::path(get, path = "/uploads/pending", responses((status = 200, body = PendingList)), security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, Auth(caller): Auth) -> Result<Json<PendingList>> {
    let meta = Arc::clone(&state.stores.meta);
    Ok(Json(blocking(move || meta.pending_uploads(caller.ns, caller.device_id, now_ms())).await?))
}

/// Drop one of this device's announcements (the upload failed or the file
/// changed again).
#[utoipa::path(delete, path = "/uploads/pending/{id}", params(("id" = i64, Path, description = "announcement id")),
    responses((status = 204, description = "dropped"),
        (status = 404, body = ErrorBody, description = "no such announcement of this device")),
    security(("bearer" = [])))]
pub async fn drop_one(State(state): State<AppState>, Auth(caller): Auth, Path(id): Path<i64>) -> Result<StatusCode> {
    drop_pending(&state, caller, Some(id)).await
}

/// Drop all of this device's announcements (a restarted daemon does this first).
#[utoipa::path(delete, path = "/uploads/pending", responses((status = 204, description = "dropped")), security(("bearer" = [])))]
pub async fn drop_all(State(state): State<AppState>, Auth(caller): Auth) -> Result<StatusCode> {
    drop_pending(&state, caller, None).await
}

async fn drop_pending(state: &AppState, caller: crate::meta::Caller, id: Option<i64>) -> Result<StatusCode> {
    let stores = Arc::clone(&state.stores);
    blocking(move || stores.drop_pending(&caller, id.map(crate::meta::PendingId))).await?;
    Ok(StatusCode::NO_CONTENT)
}
