//! The HTTP API: one `fn router(state)`, thin handlers per area, bearer-token
//! auth as an extractor, and the OpenAPI document generated from the code.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::routing::{MethodRouter, delete, get, post, put};
use axum::{Json, Router};

use crate::error::Error;
use crate::meta::Caller;

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
pub mod timed;
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
    /// Proxies whose `X-Forwarded-For` names the client (`--trusted-proxy`).
    pub trusted_proxies: Vec<IpAddr>,
}

/// Requests with large bodies (block batches, blocks, file uploads,
/// commits, announcements) one user may have in flight at once: a device
/// sends four batches at a time, a browser three files.
pub const MAX_UPLOADS_PER_USER: usize = 16;
/// Zips one user may have written at once, their links' included.
pub const MAX_ZIPS_PER_USER: usize = 3;

pub struct Inner {
    /// The stores and the rules above them.
    pub stores: Arc<crate::stores::Stores>,
    pub limits: Limits,
    /// Where resumable uploads keep their bytes until complete.
    pub uploads_dir: PathBuf,
    /// Upload sessions with a request in progress (one at a time each).
    pub busy_uploads: Mutex<HashSet<String>>,
    /// Resumable uploads being ingested while their bytes arrive.
    pub ingests: crate::upload::Ingests,
    /// Failed logins per name and address, address, and name.
    pub logins: crate::limit::Logins,
    /// Wrong passwords per share link (apart from logins: a login cannot
    /// trip a link's throttle).
    pub link_passwords: crate::limit::LoginLimiter,
    /// Shares offered to names that are no user's, per caller (they tell
    /// who exists: throttled like failed logins).
    pub unknown_names: crate::limit::LoginLimiter,
    /// Uploads in flight per user.
    pub uploads: crate::limit::InFlight<crate::meta::UserId>,
    /// Zips being written per user (a link's count against its maker).
    pub zips: crate::limit::InFlight<crate::meta::UserId>,
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
        // Already authenticated by a layer ([`one_upload_of_many`]).
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(Auth(caller.clone()));
        }
        // A bearer token (daemons, scripts), else a browser's session cookie.
        let token = match bearer(parts) {
            Some(t) => t,
            None => web::session_token(parts)?.ok_or_else(Error::unauthorized)?,
        };
        let hash = crate::passwords::token_hash(token);
        let meta = Arc::clone(&state.stores.meta);
        let caller = blocking(move || meta.authenticate(hash)).await?;
        caller.map(Auth).ok_or_else(Error::unauthorized)
    }
}

/// The address a connection came from, set on each of its requests by the
/// server's accept loop (absent when the router runs in-process).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// The client's address: the peer's, or, from a trusted proxy, the last
/// address its `X-Forwarded-For` names (the one the proxy added).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts, &state.limits.trusted_proxies)))
    }
}

pub(crate) fn client_ip(parts: &Parts, trusted: &[IpAddr]) -> Option<IpAddr> {
    let peer = parts.extensions.get::<Peer>()?.0.ip();
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let forwarded = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .last()
        .and_then(|a| a.trim().parse().ok());
    Some(forwarded.unwrap_or(peer))
}

pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    bearer_of(&parts.headers)
}

/// The token of an `Authorization: Bearer` header (the scheme in any case).
pub(crate) fn bearer_of(headers: &axum::http::HeaderMap) -> Option<&str> {
    let v = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// `ok`, or 503 when the server's worker pool (where every handler reaches
/// the stores) takes no job within two seconds: a server that answers this
/// but nothing else is reported as what it is.
async fn health() -> Result<&'static str, Error> {
    let probe = tokio::task::spawn_blocking(|| ());
    match tokio::time::timeout(std::time::Duration::from_secs(2), probe).await {
        Ok(Ok(())) => Ok("ok"),
        _ => Err(Error::client(
            ferry_shared::api::ErrorCode::Unavailable,
            "saturated: the server's worker pool took no job within 2 s",
        )),
    }
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
        408 => ErrorCode::RequestTimeout,
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

/// Refuses a query that is not UTF-8 once percent-decoded (`%ff%fe`), which
/// the query parser would otherwise turn into U+FFFD: a name is taken as
/// sent or not at all.
async fn utf8_queries(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    if req.uri().query().is_some_and(|q| percent_encoding::percent_decode_str(q).decode_utf8().is_err()) {
        return Error::bad_request("the query is not UTF-8 once percent-decoded: send names in UTF-8").into_response();
    }
    next.run(req).await
}

/// A route whose bodies may be at most `max` bytes: a larger announced
/// `Content-Length` is refused (413) before any of the body is read, and a
/// body without one is cut off at the limit.
fn limited(route: MethodRouter<AppState>, max: usize) -> MethodRouter<AppState> {
    route.layer(DefaultBodyLimit::max(max)).layer(axum::middleware::from_fn_with_state(max, refuse_announced_over))
}

/// A route whose bodies are large and come from a signed-in user: the
/// caller is authenticated before the body is read (401 costs no body),
/// and holds one of [`MAX_UPLOADS_PER_USER`] places while it is read and
/// handled (429 past that), so one user's slow or parallel bodies never
/// hold more than that much memory and work.
fn upload(route: MethodRouter<AppState>, state: &AppState, max: usize) -> MethodRouter<AppState> {
    limited(route.layer(axum::middleware::from_fn_with_state(Arc::clone(state), one_upload_of_many)), max)
}

async fn one_upload_of_many(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (mut parts, body) = req.into_parts();
    let caller = match Auth::from_request_parts(&mut parts, &state).await {
        Ok(Auth(c)) => c,
        Err(e) => return e.into_response(),
    };
    let Some(_place) = state.uploads.try_take(caller.user_id, MAX_UPLOADS_PER_USER) else {
        return Error::busy(format!(
            "{MAX_UPLOADS_PER_USER} uploads of yours are in progress: send this once one has finished"
        ))
        .into_response();
    };
    parts.extensions.insert(caller);
    next.run(axum::extract::Request::from_parts(parts, body)).await
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
    let upload = |route, max| upload(route, &state, max);
    Router::new()
        .route("/auth/login", limited(post(auth::login), small))
        .route("/auth/logout", limited(post(auth::logout), small))
        .route("/auth/session", limited(post(web::login).get(web::current).delete(web::logout), small))
        .route("/account", get(auth::account))
        .route("/blocks/missing", limited(post(blocks::missing), 4 << 20))
        .route("/blocks/batch", upload(post(blocks::batch), ferry_shared::block::MAX_BATCH_BYTES + 4096 * 64))
        .route("/blocks/fetch", limited(post(blocks::fetch), 4 << 20))
        .route("/blocks/{id}", upload(put(blocks::put_block), block_limit).merge(get(blocks::get_block)))
        .route("/commit", upload(post(commit::commit), 64 << 20))
        .route("/changes", get(changes::changes))
        .route("/changes/poll", get(changes::poll))
        .route("/activity", get(changes::activity))
        .route(
            "/uploads/pending",
            upload(post(pending::announce), 64 << 20)
                .merge(limited(get(pending::list).delete(pending::drop_all), small)),
        )
        .route("/uploads/pending/{id}", limited(delete(pending::drop_one), small))
        // Uploads stream their bodies and check sizes themselves (up to 10 GiB).
        .route("/files/upload", upload(post(files::upload_start).put(files::upload_put), usize::MAX))
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
        .route("/health", get(health))
        .route("/", get(web::asset))
        .route("/app/{*file}", get(web::asset))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(timed::bodies))
        .layer(axum::middleware::from_fn(utf8_queries))
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn(web::security_headers))
        .with_state(state)
}
