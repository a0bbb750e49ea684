//! The web app: its files (embedded in the binary, served at `/` and
//! `/app/…` under a strict Content-Security-Policy), and browser sessions.
//!
//! A browser logs in with `POST /auth/session` and gets its token as an
//! HttpOnly, SameSite=Strict cookie (Secure when the server is reached
//! over TLS) instead of in the answer, so no script can read it. A request
//! that comes with the cookie and changes something must also carry the
//! session's CSRF token in `X-CSRF-Token` (a hash of the session token the
//! page got from the session answer). Bearer tokens are unchanged.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferry_shared::api::{ErrorBody, ErrorCode, Session, SessionRequest};

use super::body::JsonBody;
use super::{AppState, Auth, blocking};
use crate::error::{Error, Result};
use crate::passwords;

/// The session cookie's name.
pub const COOKIE: &str = "ferry_session";
/// The header a cookie-authenticated request that changes something carries.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a browser stays logged in.
const SESSION_SECS: u64 = 30 * 24 * 3600;

/// The page's Content-Security-Policy: its own scripts and styles only, no
/// inline script, previews from `blob:` URLs the page made.
const APP_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
    media-src 'self' blob:; connect-src 'self'; frame-src blob:; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'; manifest-src 'self'";

/// One file of the app.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! assets {
    ($($path:literal => $file:literal, $ty:literal;)*) => {
        &[$(Asset { path: $path, content_type: $ty, body: include_bytes!(concat!("../../web/", $file)) }),*]
    };
}

static ASSETS: &[Asset] = assets! {
    "/" => "index.html", "text/html; charset=utf-8";
    "/app/app.js" => "app.js", "text/javascript; charset=utf-8";
    "/app/api.js" => "api.js", "text/javascript; charset=utf-8";
    "/app/upload.js" => "upload.js", "text/javascript; charset=utf-8";
    "/app/account.js" => "account.js", "text/javascript; charset=utf-8";
    "/app/change.js" => "change.js", "text/javascript; charset=utf-8";
    "/app/dom.js" => "dom.js", "text/javascript; charset=utf-8";
    "/app/folder.js" => "folder.js", "text/javascript; charset=utf-8";
    "/app/format.js" => "format.js", "text/javascript; charset=utf-8";
    "/app/history.js" => "history.js", "text/javascript; charset=utf-8";
    "/app/items.js" => "items.js", "text/javascript; charset=utf-8";
    "/app/notifications.js" => "notifications.js", "text/javascript; charset=utf-8";
    "/app/pages.js" => "pages.js", "text/javascript; charset=utf-8";
    "/app/paths.js" => "paths.js", "text/javascript; charset=utf-8";
    "/app/place.js" => "place.js", "text/javascript; charset=utf-8";
    "/app/preview.js" => "preview.js", "text/javascript; charset=utf-8";
    "/app/router.js" => "router.js", "text/javascript; charset=utf-8";
    "/app/session.js" => "session.js", "text/javascript; charset=utf-8";
    "/app/sharing.js" => "sharing.js", "text/javascript; charset=utf-8";
    "/app/ui.js" => "ui.js", "text/javascript; charset=utf-8";
    "/app/upload-ui.js" => "upload-ui.js", "text/javascript; charset=utf-8";
    "/app/app.css" => "app.css", "text/css; charset=utf-8";
    "/app/icon.svg" => "icon.svg", "image/svg+xml";
    "/app/manifest.json" => "manifest.json", "application/manifest+json";
};

/// Serves the app's files: `/` and `/app/…`.
pub async fn asset(uri: axum::http::Uri, headers: HeaderMap) -> Response {
    let Some(a) = ASSETS.iter().find(|a| a.path == uri.path()) else {
        return Error::not_found("no such file of the web app").into_response();
    };
    let etag = format!("\"{}\"", &blake3::hash(a.body).to_hex()[..32]);
    let fresh = headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == etag.as_bytes());
    let mut resp = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { a.body.into_response() };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(a.content_type));
    h.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex"));
    // Always asked again (cheap, with the ETag): a new server's app is seen at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(APP_CSP));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

/// Every answer: no content sniffing. A file's bytes (downloads, previews)
/// also get a sandbox, so an uploaded HTML or SVG file opened directly runs
/// no script in the app's origin.
pub async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox; default-src 'none'"));
    }
    resp
}

/// The value of cookie `name`, if the request has it.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name && !v.is_empty()).then_some(v)
    })
}

/// The CSRF token of a session: derived from its token, which no other
/// site can read.
fn csrf_of(token: &str) -> String {
    blake3::derive_key("ferry 2026-12 browser session csrf", token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The session token of a request that comes with the cookie; for one
/// that changes something, only with the right `X-CSRF-Token`.
pub(crate) fn session_token(parts: &Parts) -> Result<Option<&str>> {
    let Some(token) = cookie(&parts.headers, COOKIE) else { return Ok(None) };
    if !matches!(parts.method, Method::GET | Method::HEAD) {
        let given = parts.headers.get(CSRF_HEADER).map(HeaderValue::as_bytes).unwrap_or_default();
        if !super::links::constant_time_eq(given, csrf_of(token).as_bytes()) {
            return Err(Error::client(
                ErrorCode::Forbidden,
                "this request needs the session's X-CSRF-Token header: reload the page",
            ));
        }
    }
    Ok(Some(token))
}

fn session_cookie(state: &AppState, headers: &HeaderMap, value: &str, max_age: u64) -> HeaderValue {
    let https = state.limits.tls
        || state.limits.public_url.as_deref().is_some_and(|u| u.starts_with("https:"))
        || headers.get("x-forwarded-proto").is_some_and(|v| v.as_bytes() == b"https");
    let secure = if https { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"))
        .expect("token is url-safe")
}

/// A device name for a browser, from its User-Agent: "Web (Chrome on Linux)".
fn browser_name(headers: &HeaderMap) -> String {
    let ua = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let browser = [("Firefox/", "Firefox"), ("Edg/", "Edge"), ("Chrome/", "Chrome"), ("Safari/", "Safari")]
        .iter()
        .find(|(k, _)| ua.contains(k))
        .map_or("a browser", |(_, n)| n);
    let os = [
        ("Android", "Android"),
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Windows", "Windows"),
        ("Mac OS", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(k, _)| ua.contains(k))
    .map(|(_, n)| format!(" on {n}"))
    .unwrap_or_default();
    format!("Web ({browser}{os})")
}

/// Log a browser in: the session is an HttpOnly cookie; the answer has the
/// CSRF token for requests that change something.
#[utoipa::path(post, path = "/auth/session", operation_id = "create_session", request_body = SessionRequest,
    responses((status = 200, body = Session, headers(("Set-Cookie" = String, description = "the session cookie"))),
        (status = 400, body = ErrorBody, description = "an over-long username"),
        (status = 401, body = ErrorBody, description = "wrong user name or password"),
        (status = 429, body = ErrorBody, description = "too many failed logins for this name or from this address, \
            or too many logins being checked at once",
            headers(("Retry-After" = u64, description = "seconds to wait")))))]
pub async fn login(
    State(state): State<AppState>,
    super::ClientIp(ip): super::ClientIp,
    headers: HeaderMap,
    JsonBody(req): JsonBody<SessionRequest>,
) -> Result<Response> {
    let device = browser_name(&headers);
    let user = req.username.clone();
    let signed = super::auth::sign_in(&state, ip, req.username, req.password, device.clone()).await?;
    let session = Session { user, user_id: signed.user_id, device, csrf: csrf_of(&signed.token) };
    let token = signed.token;
    let mut resp = Json(session).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, session_cookie(&state, &headers, &token, SESSION_SECS));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// The browser session this request comes with (401 if none): who, and
/// the CSRF token.
#[utoipa::path(get, path = "/auth/session", operation_id = "get_session",
    responses((status = 200, body = Session)), security(("cookie" = [])))]
pub async fn current(State(state): State<AppState>, Auth(caller): Auth, headers: HeaderMap) -> Result<Response> {
    let token = cookie(&headers, COOKIE).ok_or_else(Error::unauthorized)?.to_owned();
    let meta = Arc::clone(&state.stores.meta);
    let user = blocking(move || meta.user_info(caller.user_id)).await?;
    let session =
        Session { user: user.name, user_id: user.id.0, device: browser_name(&headers), csrf: csrf_of(&token) };
    let mut resp = Json(session).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Log the browser out: its session ends and the cookie is cleared.
#[utoipa::path(delete, path = "/auth/session", operation_id = "delete_session",
    params(("X-CSRF-Token" = Option<String>, Header,
        description = "the session's CSRF token: needed when the session cookie authenticates the request")),
    responses((status = 204, description = "logged out"),
        (status = 403, body = ErrorBody, description = "no or a wrong X-CSRF-Token")),
    security(("cookie" = [])))]
pub async fn logout(State(state): State<AppState>, Auth(_): Auth, headers: HeaderMap) -> Result<Response> {
    let token = cookie(&headers, COOKIE).ok_or_else(Error::unauthorized)?;
    let (meta, hash) = (Arc::clone(&state.stores.meta), passwords::token_hash(token));
    blocking(move || meta.revoke_token(hash)).await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(header::SET_COOKIE, session_cookie(&state, &headers, "gone", 0));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::ASSETS;

    /// The page is ES modules that import each other: every file of
    /// `server/web/` is served, and every module a script imports is one
    /// of them (one left out of `ASSETS` would stop the page loading).
    #[test]
    fn every_file_and_module_is_served() {
        let served = |file: &str| {
            ASSETS.iter().any(|a| a.path.strip_prefix("/app/") == Some(file) || (a.path == "/" && file == "index.html"))
        };
        for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/web")).unwrap() {
            let file = entry.unwrap().file_name().into_string().unwrap();
            assert!(served(&file), "server/web/{file} is not in ASSETS");
        }
        let mut imports = 0;
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            let text = std::str::from_utf8(a.body).unwrap();
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let module = line.split("'./").nth(1).and_then(|rest| rest.split('\'').next());
                let module = module.unwrap_or_else(|| panic!("{}: an import not of a sibling: {line}", a.path));
                assert!(served(module), "{} imports ./{module}, which is not in ASSETS", a.path);
                imports += 1;
            }
        }
        assert!(imports > 20, "imports found: {imports}");
    }
}
