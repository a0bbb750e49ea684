//! The HTTP API: one `fn router(state)`, thin handlers per area, bearer-token
//! auth as an extractor, and the OpenAPI document generated from the code.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::routing::{MethodRouter, delete, get, post, put};
use axum::{Json, Router};

use crate::blockstore::BlockStore;
use crate::crypto::Vault;
use crate::error::Error;
use crate::notify::Notifier;
use crate::store::{Caller, MetaStore};

pub mod auth;
pub mod blocks;
pub mod body;
pub mod changes;
pub mod commit;
pub mod conditional;
pub mod doc;
pub mod files;
pub mod links;
pub mod pending;
pub mod shares;
pub mod trash;
pub mod web;

/// Settings the handlers need.
#[derive(Debug, Clone)]
pub struct Limits {
    /// How long a resumable upload session lives, in milliseconds.
    pub upload_expiry_ms: i64,
    /// The URL clients reach this server at (`--public-url`), for absolute
    /// URLs in answers; without it, the request's `Host` is used.
    pub public_url: Option<String>,
    /// Whether this server terminates TLS itself (the scheme of its URLs).
    pub tls: bool,
    /// Longest a long poll or a block wait is held (`--poll-max-secs`):
    /// below a proxy's idle timeout, say.
    pub poll_max: std::time::Duration,
}

pub struct Inner {
    pub meta: Arc<dyn MetaStore>,
    pub blocks: Arc<dyn BlockStore>,
    pub vault: Vault,
    pub notifier: Notifier,
    pub limits: Limits,
    /// Where resumable uploads keep their bytes until complete.
    pub uploads_dir: PathBuf,
    /// Upload sessions with a request in progress (one at a time each).
    pub busy_uploads: Mutex<HashSet<String>>,
    /// Resumable uploads being ingested while their bytes arrive.
    pub ingests: crate::upload::Ingests,
    /// Failed logins per user name.
    pub logins: crate::limit::LoginLimiter,
}

pub type AppState = Arc<Inner>;

/// Runs blocking work (the metadata store, the block store, chunking) off
/// the async threads; every handler reaches the stores through it.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Error> + Send + 'static) -> Result<T, Error> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Internal(anyhow::anyhow!("worker failed: {e}")))?
}

/// The authenticated caller of a request (`Authorization: Bearer TOKEN`).
pub struct Auth(pub Caller);

impl FromRequestParts<AppState> for Auth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        // A bearer token (daemons, scripts), else a browser's session cookie.
        let token = match bearer(parts) {
            Some(t) => t,
            None => web::session_token(parts)?.ok_or_else(Error::unauthorized)?,
        };
        let hash = crate::passwords::token_hash(token);
        let meta = Arc::clone(&state.meta);
        let caller = blocking(move || meta.authenticate(hash)).await?;
        caller.map(Auth).ok_or_else(Error::unauthorized)
    }
}

pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let token = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer "))?.trim();
    (!token.is_empty()).then_some(token)
}

async fn not_found() -> Error {
    Error::not_found("no such endpoint; see /openapi.json")
}

/// Gives every error answer the JSON body `{"error":{"code","message"}}`,
/// including axum's own rejections (malformed JSON, missing query
/// parameters, body limits, wrong methods), which are plain text.
async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
    use axum::response::IntoResponse;
    use ferry_shared::api::{ErrorBody, ErrorCode};

    let resp = next.run(req).await;
    let status = resp.status();
    // JSON already, or a page made for a person (a link's password form).
    let is_json_or_page = resp
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json") || v.as_bytes().starts_with(b"text/html"));
    if !(status.is_client_error() || status.is_server_error()) || is_json_or_page {
        return resp;
    }
    let code = match status.as_u16() {
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        409 => ErrorCode::Conflict,
        411 => ErrorCode::LengthRequired,
        412 => ErrorCode::PreconditionFailed,
        413 => ErrorCode::PayloadTooLarge,
        415 => ErrorCode::UnsupportedMediaType,
        416 => ErrorCode::RangeNotSatisfiable,
        429 => ErrorCode::TooManyRequests,
        503 => ErrorCode::Unavailable,
        507 => ErrorCode::QuotaExceeded,
        s if s >= 500 => ErrorCode::Internal,
        _ => ErrorCode::BadRequest,
    };
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024).await.unwrap_or_default();
    let mut message = String::from_utf8_lossy(&text).trim().to_owned();
    if message.is_empty() {
        message = status.canonical_reason().unwrap_or("error").to_owned();
    }
    if status == axum::http::StatusCode::UNPROCESSABLE_ENTITY {
        // Well-formed JSON of the wrong shape (or with an invalid path) is a bad request.
        parts.status = axum::http::StatusCode::BAD_REQUEST;
    }
    parts.headers.remove(CONTENT_TYPE);
    parts.headers.remove(CONTENT_LENGTH);
    (parts, Json(ErrorBody::new(code, message))).into_response()
}

/// A route whose bodies may be at most `max` bytes: a larger announced
/// `Content-Length` is refused (413) before any of the body is read, and a
/// body without one is cut off at the limit.
fn limited(route: MethodRouter<AppState>, max: usize) -> MethodRouter<AppState> {
    route.layer(DefaultBodyLimit::max(max)).layer(axum::middleware::from_fn_with_state(max, refuse_announced_over))
}

async fn refuse_announced_over(
    axum::extract::State(max): axum::extract::State<usize>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let announced = req.headers().get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    if announced.is_some_and(|n: u64| n > max as u64) {
        let msg = format!("the body is larger than this endpoint takes ({max} bytes)");
        return Error::client(ferry_shared::api::ErrorCode::PayloadTooLarge, msg).into_response();
    }
    next.run(req).await
}

pub fn router(state: AppState) -> Router {
    let block_limit = ferry_shared::block::MAX_BLOCK_SIZE + 64 * 1024;
    let small = 64 << 10;
    Router::new()
        .route("/auth/login", limited(post(auth::login), small))
        .route("/auth/logout", limited(post(auth::logout), small))
        .route("/auth/session", limited(post(web::login).get(web::current).delete(web::logout), small))
        .route("/account", get(auth::account))
        .route("/blocks/missing", limited(post(blocks::missing), 4 << 20))
        .route("/blocks/batch", limited(post(blocks::batch), ferry_shared::block::MAX_BATCH_BYTES + 4096 * 64))
        .route("/blocks/fetch", limited(post(blocks::fetch), 4 << 20))
        .route("/blocks/{id}", limited(put(blocks::put_block).get(blocks::get_block), block_limit))
        .route("/commit", limited(post(commit::commit), 64 << 20))
        .route("/changes", get(changes::changes))
        .route("/changes/poll", get(changes::poll))
        .route("/activity", get(changes::activity))
        .route(
            "/uploads/pending",
            limited(post(pending::announce).get(pending::list).delete(pending::drop_all), 64 << 20),
        )
        .route("/uploads/pending/{id}", limited(delete(pending::drop_one), small))
        // Uploads stream their bodies and check sizes themselves (up to 10 GiB).
        .route("/files/upload", post(files::upload_start).put(files::upload_put))
        .route("/files/download", get(files::download))
        .route("/files/list", get(files::list))
        .route("/files/delete", limited(post(files::delete), small))
        .route("/files/zip", get(files::zip))
        .route("/trash", get(trash::list))
        .route("/trash/restore", limited(post(trash::restore), small))
        .route("/files/list_revisions", limited(get(files::list_revisions_get).post(files::list_revisions_post), small))
        .route("/links", limited(post(links::create).get(links::list), small))
        .route("/links/{id}", limited(delete(links::revoke), small))
        .route("/shares", limited(post(shares::create).get(shares::list), small))
        .route("/shares/{id}", limited(delete(shares::unshare), small))
        .route("/shares/{id}/members/{user}", limited(put(shares::set_role).delete(shares::remove_member), small))
        .route("/l/{token}", limited(get(links::open_root).post(links::give_password), small))
        .route("/l/{token}/{*path}", get(links::open_path))
        .route("/openapi.json", get(doc::openapi_json))
        .route("/health", get(|| async { "ok" }))
        .route("/", get(web::asset))
        .route("/app/{*file}", get(web::asset))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn(web::security_headers))
        .with_state(state)
}
