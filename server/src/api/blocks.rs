//! The block API: which blocks does my account lack, upload, download.
//!
//! Ownership is per account: "missing" answers from the caller's own blocks,
//! and a block stored by someone else must still be uploaded (proof of
//! possession) before the caller may reference or download it.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferry_shared::BlockId;
use ferry_shared::api::{
    BLOCK_WAIT_MAX_SECS, ErrorBody, ErrorCode, MAX_MISSING_QUERY, MissingBlocksRequest, MissingBlocksResponse,
};
use ferry_shared::block::{self, BlockEncoding, ENCODING_HEADER};

use super::blocking;
use super::body::JsonBody;
use super::doc::Binary;
use super::{AppState, Auth};
use crate::error::{Error, Result};
use crate::stores::Incoming;

fn parse_id(s: &str) -> Result<BlockId> {
    s.parse().map_err(|_| Error::bad_request("block id must be 64 hex digits"))
}

/// Which of these block ids does the caller's account lack?
#[utoipa::path(post, path = "/blocks/missing", request_body = MissingBlocksRequest,
    responses((status = 200, body = MissingBlocksResponse),
        (status = 400, body = ErrorBody, description = "a bad block id, or too many ids")),
    security(("bearer" = [])))]
pub async fn missing(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(req): JsonBody<MissingBlocksRequest>,
) -> Result<Json<MissingBlocksResponse>> {
    if req.ids.len() > MAX_MISSING_QUERY {
        return Err(Error::bad_request(format!("ask about at most {MAX_MISSING_QUERY} blocks at a time")));
    }
    let meta = Arc::clone(&state.stores.meta);
    let missing = blocking(move || meta.missing_blocks(caller.user_id, &req.ids)).await?;
    Ok(Json(MissingBlocksResponse { missing }))
}

/// Upload one block: the body is a zstd frame (or the raw bytes with
/// `ferry-block-encoding: raw`); the server checks it hashes to the id.
#[utoipa::path(put, path = "/blocks/{id}",
    params(("id" = BlockId, Path, description = "block id (hex)"),
        ("ferry-block-encoding" = Option<String>, Header, description = "`zstd` (the default) or `raw`")),
    request_body(content = Binary, content_type = "application/octet-stream"),
    responses((status = 201, description = "stored"),
        (status = 400, body = ErrorBody, description = "a bad id, encoding, or content that does not hash to the id"),
        (status = 413, body = ErrorBody, description = "the block is larger than blocks may be"),
        (status = 429, body = ErrorBody, description = "too many uploads of yours are in progress"),
        (status = 507, body = ErrorBody, description = "the account's quota would be exceeded (uploaded blocks no \
            commit has used yet count)")),
    security(("bearer" = [])))]
pub async fn put_block(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode> {
    let id = parse_id(&id)?;
    let encoding = match headers.get(ENCODING_HEADER) {
        None => BlockEncoding::Zstd,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(BlockEncoding::parse)
            .ok_or_else(|| Error::bad_request("ferry-block-encoding must be 'zstd' or 'raw'"))?,
    };
    state.stores.store_blocks(caller.user_id, Incoming::One(id, encoding, body)).await?;
    Ok(StatusCode::CREATED)
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetBlockQuery {
    /// Seconds to wait for a block the account does not have yet (one a
    /// pending upload is sending; at most 60). Without it, 404 at once.
    #[param(maximum = 60)]
    pub wait: Option<u64>,
}

/// Download one block the account owns, as stored (see `ferry-block-encoding`).
#[utoipa::path(get, path = "/blocks/{id}", params(("id" = BlockId, Path, description = "block id (hex)"), GetBlockQuery),
    responses((status = 200, body = Binary, content_type = "application/octet-stream",
            headers(("ferry-block-encoding" = String, description = "`zstd` or `raw`"))),
        (status = 400, body = ErrorBody, description = "a bad block id"),
        (status = 404, body = ErrorBody, description = "the account has no such block")),
    security(("bearer" = [])))]
pub async fn get_block(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    Query(q): Query<GetBlockQuery>,
) -> Result<Response> {
    let id = parse_id(&id)?;
    let wait = match q.wait.unwrap_or(0) {
        w if w > BLOCK_WAIT_MAX_SECS => {
            return Err(Error::bad_request(format!("wait is at most {BLOCK_WAIT_MAX_SECS} seconds")));
        }
        w => Duration::from_secs(w).min(state.limits.poll_max),
    };
    // Subscribe before looking, so a block stored in between wakes us.
    let mut stored = state.stores.notifier.subscribe_blocks(caller.user_id);
    let mut shutdown = state.stores.notifier.shutdown_signal();
    let find = || {
        let st = Arc::clone(&state);
        blocking(move || st.stores.meta.owned_block_location(caller.user_id, &id))
    };
    let mut loc = find().await?;
    if loc.is_none() && !wait.is_zero() {
        tracing::debug!(%id, secs = wait.as_secs(), "a fetch waits for a block");
        let deadline = tokio::time::Instant::now() + wait;
        while loc.is_none() {
            tokio::select! {
                r = stored.changed() => if r.is_err() { break },
                _ = tokio::time::sleep_until(deadline) => break,
                _ = shutdown.wait_for(|s| *s) => break,
            }
            loc = find().await?;
        }
    }
    let loc = loc.ok_or_else(|| Error::not_found("no such block"))?;
    let (encoding, bytes) = state.stores.read_block(id, loc).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::HeaderName::from_static(ENCODING_HEADER), encoding.as_str()),
        ],
        bytes,
    )
        .into_response())
}

/// Upload many blocks in one request: the body is a sequence of frames (see
/// `ferry_shared::block::write_frame`). Every block is checked against its id;
/// the new ones are stored together in one pack with one fsync.
#[utoipa::path(post, path = "/blocks/batch",
    request_body(content = Binary, content_type = "application/octet-stream"),
    responses((status = 201, description = "stored"),
        (status = 400, body = ErrorBody, description = "malformed frames, or a block that does not hash to its id"),
        (status = 413, body = ErrorBody, description = "too many bytes in one batch, or blocks that expand to more \
            than one batch may hold (64 MiB)"),
        (status = 429, body = ErrorBody, description = "too many uploads of yours are in progress"),
        (status = 507, body = ErrorBody, description = "the account's quota would be exceeded (uploaded blocks no \
            commit has used yet count)")),
    security(("bearer" = [])))]
pub async fn batch(State(state): State<AppState>, Auth(caller): Auth, body: Bytes) -> Result<StatusCode> {
    state.stores.store_blocks(caller.user_id, Incoming::Frames(body)).await?;
    Ok(StatusCode::CREATED)
}

/// Download many blocks the account owns in one request: the answer is a
/// sequence of frames in the order asked (404 if any is not the account's).
#[utoipa::path(post, path = "/blocks/fetch", request_body = MissingBlocksRequest,
    responses((status = 200, body = Binary, content_type = "application/octet-stream"),
        (status = 400, body = ErrorBody, description = "a bad block id, or too many ids"),
        (status = 404, body = ErrorBody, description = "a block the account does not have"),
        (status = 413, body = ErrorBody, description = "the blocks are too many bytes for one answer")),
    security(("bearer" = [])))]
pub async fn fetch(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(req): JsonBody<MissingBlocksRequest>,
) -> Result<Response> {
    if req.ids.len() > block::MAX_BATCH_BLOCKS {
        return Err(Error::bad_request(format!("fetch at most {} blocks at a time", block::MAX_BATCH_BLOCKS)));
    }
    let st = Arc::clone(&state);
    let ids = req.ids.clone();
    let found = blocking(move || st.stores.meta.owned_block_locations(caller.user_id, &ids)).await?;
    // The answer's size is known before anything is read: refused whole if
    // it could not be sent.
    let mut locs = Vec::with_capacity(found.len());
    let mut answer = 0usize;
    for (id, got) in req.ids.iter().zip(found) {
        let (loc, stored) = got.ok_or_else(|| Error::not_found("no such block"))?;
        answer += block::FRAME_HEADER + stored as usize;
        if answer > block::MAX_BATCH_BYTES {
            return Err(Error::client(ErrorCode::PayloadTooLarge, "ask for fewer blocks at a time"));
        }
        locs.push((*id, loc));
    }
    // One read of the store for them all: the blocks of one pack together.
    let blocks = state.stores.read_blocks(locs).await?;
    let mut body = Vec::with_capacity(answer);
    for (id, (encoding, bytes)) in req.ids.iter().zip(blocks) {
        block::write_frame(&mut body, id, encoding, &bytes);
    }
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}
