//! The block API: which blocks does my account lack, upload, download.
//!
//! Ownership is per account: "missing" answers from the caller's own blocks,
//! and a block stored by someone else must still be uploaded (proof of
//! possession) before the caller may reference or download it.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferry_shared::BlockId;
use ferry_shared::api::{ErrorCode, MAX_MISSING_QUERY, MissingBlocksRequest, MissingBlocksResponse};
use ferry_shared::block::{self, BlockEncoding, ENCODING_HEADER};

use super::{AppState, Auth};
use crate::error::{Error, Result};
use crate::store::NewBlock;
use crate::upload::blocking;

fn parse_id(s: &str) -> Result<BlockId> {
    s.parse().map_err(|_| Error::bad_request("block id must be 64 hex digits"))
}

/// Which of these block ids does the caller's account lack?
#[utoipa::path(post, path = "/blocks/missing", request_body = MissingBlocksRequest,
    responses((status = 200, body = MissingBlocksResponse)), security(("bearer" = [])))]
pub async fn missing(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Json(req): Json<MissingBlocksRequest>,
) -> Result<Json<MissingBlocksResponse>> {
    if req.ids.len() > MAX_MISSING_QUERY {
        return Err(Error::bad_request(format!("ask about at most {MAX_MISSING_QUERY} blocks at a time")));
    }
    let meta = Arc::clone(&state.meta);
    let missing = blocking(move || meta.missing_blocks(caller.user_id, &req.ids)).await?;
    Ok(Json(MissingBlocksResponse { missing }))
}

/// Upload one block: the body is a zstd frame (or the raw bytes with
/// `ferry-block-encoding: raw`); the server checks it hashes to the id.
#[utoipa::path(put, path = "/blocks/{id}", params(("id" = String, Path, description = "block id (hex)")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201), (status = 400, body = ferry_shared::api::ErrorBody)), security(("bearer" = [])))]
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
    blocking(move || {
        let plain = block::decode(&id, encoding, &body).map_err(|e| match e {
            block::DecodeError::TooLarge => Error::client(ErrorCode::PayloadTooLarge, e.to_string()),
            _ => Error::client(ErrorCode::BadBlock, e.to_string()),
        })?;
        if !state.meta.block_stored(&id)? {
            state.blocks.put(&id, &state.vault.seal(&id, encoding, &body))?;
        }
        let nb = NewBlock { id, size: plain.len() as u32, stored_size: body.len() as u32 };
        state.meta.add_blocks(caller.user_id, &[nb])
    })
    .await?;
    Ok(StatusCode::CREATED)
}

/// Download one block the account owns, as stored (see `ferry-block-encoding`).
#[utoipa::path(get, path = "/blocks/{id}", params(("id" = String, Path, description = "block id (hex)")),
    responses((status = 200, content_type = "application/octet-stream"), (status = 404, body = ferry_shared::api::ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_block(State(state): State<AppState>, Auth(caller): Auth, Path(id): Path<String>) -> Result<Response> {
    let id = parse_id(&id)?;
    let (encoding, bytes) = blocking(move || {
        if !state.meta.owns_block(caller.user_id, &id)? {
            return Err(Error::not_found("no such block"));
        }
        let sealed = state.blocks.get(&id)?.ok_or_else(|| anyhow::anyhow!("block {id} is recorded but not stored"))?;
        Ok(state.vault.open(&id, &sealed)?)
    })
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::HeaderName::from_static(ENCODING_HEADER), encoding.as_str()),
        ],
        bytes,
    )
        .into_response())
}
