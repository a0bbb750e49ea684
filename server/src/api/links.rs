//! Read-only share links. The owner makes, lists and revokes them (bearer
//! token); anyone holding one opens `/l/TOKEN`: a file downloads (with
//! `Range` and the validators), a folder shows a minimal page to browse and
//! download files, and `?zip=1` streams the folder as a zip in bounded
//! memory. A link sees only what is under it: sub-paths go through the
//! shared path rules (no `..`) and are joined below the link's item.
//!
//! A link that does not exist, is revoked, has expired or whose item is
//! gone answers the same 404. A password (argon2id) is asked by a form that
//! sets a cookie only this server can make (a MAC of the link and its
//! password hash), or sent as `X-Ferry-Link-Password`; wrong ones are
//! throttled like logins.

use std::io::Write;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use ferry_shared::api::{EntryKind, ErrorBody, ErrorCode, Link, LinkList, LinkRequest};
use ferry_shared::path::RelPath;

use super::body::JsonBody;
use super::files::{absolute_url, send_file};
use super::{AppState, Auth, blocking};
use crate::error::{Error, Result};
use crate::meta::{LinkId, LinkRecord, NsId, UserId, now_ms};

/// The longest `expires_in`: 100 years, in seconds.
const MAX_EXPIRES_IN: u64 = 100 * 365 * 24 * 3600;

/// Header a script sends a link's password in.
pub const PASSWORD_HEADER: &str = "x-ferry-link-password";

fn link_of(state: &AppState, headers: &HeaderMap, r: LinkRecord) -> Link {
    Link {
        id: r.id.0,
        url: absolute_url(state, headers, &format!("/l/{}", r.token)),
        path: r.shown,
        kind: r.kind,
        created: r.created,
        expires: r.expires,
        password: r.pw_hash.is_some(),
        by: r.by,
    }
}

/// Make a read-only link to a file or folder.
#[utoipa::path(post, path = "/links", operation_id = "create_link", request_body = LinkRequest,
    responses((status = 201, body = Link),
        (status = 400, body = ErrorBody, description = "an invalid path, expires_in out of range, an empty password"),
        (status = 404, body = ErrorBody, description = "nothing at the path")),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Auth(caller): Auth,
    headers: HeaderMap,
    JsonBody(req): JsonBody<LinkRequest>,
) -> Result<(StatusCode, Json<Link>)> {
    if req.path.is_root() {
        return Err(Error::bad_request("link a file or a folder, not the whole namespace"));
    }
    let expires = match req.expires_in {
        Some(0) => return Err(Error::bad_request("expires_in must be at least 1 second")),
        Some(s) if s > MAX_EXPIRES_IN => return Err(Error::bad_request("expires_in is at most 100 years")),
        Some(s) => Some(now_ms() + (s as i64) * 1000),
        None => None,
    };
    if req.password.as_deref().is_some_and(str::is_empty) {
        return Err(Error::bad_request("the password is empty: give one, or none"));
    }
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let pw_hash = match req.password {
        Some(pw) => Some(crate::passwords::work().hash(pw).await.map_err(|b| Error::busy(b.to_string()))??),
        None => None,
    };
    let st = Arc::clone(&state);
    let rec = blocking(move || st.stores.meta.create_link(&caller, &req.path, &token, expires, pw_hash)).await?;
    Ok((StatusCode::CREATED, Json(link_of(&state, &headers, rec))))
}

/// The links you made (with where their items are now).
#[utoipa::path(get, path = "/links", operation_id = "list_links", responses((status = 200, body = LinkList)), security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, Auth(caller): Auth, headers: HeaderMap) -> Result<Json<LinkList>> {
    let meta = Arc::clone(&state.stores.meta);
    let recs = blocking(move || meta.links(caller.user_id)).await?;
    Ok(Json(LinkList { links: recs.into_iter().map(|r| link_of(&state, &headers, r)).collect() }))
}

/// Revoke a link: it answers 404 from now on.
#[utoipa::path(delete, path = "/links/{id}", operation_id = "revoke_link", params(("id" = i64, Path, description = "link id")),
    responses((status = 204, description = "revoked"), (status = 404, body = ErrorBody, description = "no such link of yours")),
    security(("bearer" = [])))]
pub async fn revoke(State(state): State<AppState>, Auth(caller): Auth, Path(id): Path<i64>) -> Result<StatusCode> {
    let meta = Arc::clone(&state.stores.meta);
    blocking(move || meta.revoke_link(caller.user_id, LinkId(id))).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OpenQuery {
    /// On a folder: `1` streams it as a zip (`0`: the page).
    #[param(minimum = 0, maximum = 1)]
    pub zip: Option<u8>,
}

#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct PasswordForm {
    pub password: String,
}

fn gone() -> Error {
    Error::not_found("no such link (it may have been revoked or have expired)")
}

/// The link named by `token` if it is live, and its item's path now.
async fn live_link(state: &AppState, token: String) -> Result<(LinkRecord, RelPath)> {
    if token.len() > 100 {
        return Err(gone());
    }
    let meta = Arc::clone(&state.stores.meta);
    let rec = blocking(move || meta.link(&token)).await?.ok_or_else(gone)?;
    if rec.expires.is_some_and(|e| e <= now_ms()) {
        return Err(gone());
    }
    let path = rec.path.clone().ok_or_else(gone)?;
    Ok((rec, path))
}

fn cookie_name(rec: &LinkRecord) -> String {
    format!("ferry_link_{}", rec.id)
}

/// How long a given password opens a link in that browser.
const COOKIE_SECS: i64 = 86_400;

/// `EXPIRES.MAC`: the MAC covers the link, its password hash (a new
/// password ends every cookie) and the expiry, which the server checks.
fn cookie_value(state: &AppState, rec: &LinkRecord, expires: i64) -> String {
    let pw = rec.pw_hash.as_deref().unwrap_or("");
    let mac = hex::encode(state.stores.vault.mac(format!("link {} {pw} {expires}", rec.id).as_bytes()));
    format!("{expires}.{mac}")
}

fn has_cookie(state: &AppState, rec: &LinkRecord, headers: &HeaderMap) -> bool {
    let name = cookie_name(rec);
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).any(|c| {
        let Some((k, v)) = c.trim().split_once('=') else { return false };
        let Some(expires) = v.split_once('.').and_then(|(e, _)| e.parse::<i64>().ok()) else { return false };
        k == name && expires > now_ms() && constant_time_eq(v.as_bytes(), cookie_value(state, rec, expires).as_bytes())
    })
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks a password against the link, throttled per link like logins
/// (by a throttle of their own: logins cannot trip it).
async fn check_password(state: &AppState, rec: &LinkRecord, password: String) -> Result<()> {
    let attempt = state
        .link_passwords
        .begin(&rec.id.to_string(), std::time::Instant::now())
        .map_err(|wait| Error::RateLimited { retry_after: wait })?;
    let ok = match crate::passwords::work().verify(password, rec.pw_hash.clone()).await {
        Ok(ok) => ok,
        Err(busy) => {
            attempt.cancel();
            return Err(Error::busy(busy.to_string()));
        }
    };
    attempt.finish(ok);
    if ok { Ok(()) } else { Err(Error::client(ErrorCode::Unauthorized, "wrong password for this link")) }
}

/// Lets a request through a link's password: its cookie, or the header.
async fn unlock(state: &AppState, rec: &LinkRecord, headers: &HeaderMap, token: &str) -> Result<Option<Response>> {
    if rec.pw_hash.is_none() || has_cookie(state, rec, headers) {
        return Ok(None);
    }
    if let Some(pw) = headers.get(PASSWORD_HEADER).and_then(|v| v.to_str().ok()) {
        check_password(state, rec, pw.to_owned()).await?;
        return Ok(None);
    }
    Ok(Some(page(StatusCode::UNAUTHORIZED, "Password needed", &password_form(token, false))))
}

fn password_form(token: &str, wrong: bool) -> String {
    let note = if wrong { "<p><strong>That password is not right.</strong></p>" } else { "" };
    format!(
        "<h1>This link asks for a password</h1>{note}<form method=\"post\" action=\"/l/{}\">\
         <label>Password <input type=\"password\" name=\"password\" autofocus required></label> \
         <button type=\"submit\">Open</button></form>",
        escape(token)
    )
}

/// Opens a link: the file, or the folder's page (`?zip=1`: the folder as a zip).
#[utoipa::path(get, path = "/l/{token}", operation_id = "open_link",
    params(("token" = String, Path, description = "the link's token"), OpenQuery,
        ("Range" = Option<String>, Header, description = "one range of a file")),
    responses(
        (status = 200, description = "the file, the folder's page (HTML) or its zip", content(
            (super::doc::Binary = "application/octet-stream"), (String = "text/html"), (super::doc::Binary = "application/zip"))),
        (status = 206, body = super::doc::Binary, content_type = "application/octet-stream", description = "a range of the file"),
        (status = 304, description = "not modified"),
        (status = 401, body = String, content_type = "text/html", description = "a password is needed (a form to give it)"),
        (status = 404, body = ErrorBody, description = "no such link, revoked, expired, or its item is gone"),
        (status = 416, body = ErrorBody, description = "the range is outside the file"),
        (status = 429, body = ErrorBody, description = "too many wrong passwords"),
        (status = 503, body = ErrorBody, description = "too many folders are being zipped: try again shortly")))]
pub async fn open_root(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Query(q): Query<OpenQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    open(state, token, String::new(), q, headers).await
}

/// Opens a file or folder under a folder link.
#[utoipa::path(get, path = "/l/{token}/{path}", operation_id = "open_link_path",
    params(("token" = String, Path, description = "the link's token"),
        ("path" = String, Path, description = "a path under the linked folder"), OpenQuery),
    responses(
        (status = 200, description = "the file, the folder's page (HTML) or its zip", content(
            (super::doc::Binary = "application/octet-stream"), (String = "text/html"), (super::doc::Binary = "application/zip"))),
        (status = 206, body = super::doc::Binary, content_type = "application/octet-stream", description = "a range of the file"),
        (status = 304, description = "not modified"),
        (status = 400, body = ErrorBody, description = "a path out of the link (`..`) or otherwise invalid"),
        (status = 401, body = String, content_type = "text/html", description = "a password is needed"),
        (status = 404, body = ErrorBody, description = "no such link or nothing at that path under it"),
        (status = 416, body = ErrorBody, description = "the range is outside the file"),
        (status = 429, body = ErrorBody, description = "too many wrong passwords"),
        (status = 503, body = ErrorBody, description = "too many folders are being zipped: try again shortly")))]
pub async fn open_path(
    State(state): State<AppState>,
    Path((token, rest)): Path<(String, String)>,
    Query(q): Query<OpenQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    open(state, token, rest, q, headers).await
}

/// Gives a link's password; a right one sets the cookie and goes back to the link.
#[utoipa::path(post, path = "/l/{token}", operation_id = "give_link_password", params(("token" = String, Path, description = "the link's token")),
    request_body(content = PasswordForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "the password is right: back to the link, with its cookie"),
        (status = 401, body = String, content_type = "text/html", description = "wrong password (the form again)"),
        (status = 404, body = ErrorBody, description = "no such link"),
        (status = 429, body = ErrorBody, description = "too many wrong passwords")))]
pub async fn give_password(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Form(form): Form<PasswordForm>,
) -> Result<Response> {
    let (rec, _) = live_link(&state, token.clone()).await?;
    if rec.pw_hash.is_none() {
        return Ok(see_other(&token));
    }
    match check_password(&state, &rec, form.password).await {
        Ok(()) => {
            let mut resp = see_other(&token);
            let secure = if state.limits.tls { "; Secure" } else { "" };
            let expires = now_ms() + COOKIE_SECS * 1000;
            let cookie = format!(
                "{}={}; Path=/l/{token}; HttpOnly; SameSite=Strict; Max-Age={COOKIE_SECS}{secure}",
                cookie_name(&rec),
                cookie_value(&state, &rec, expires)
            );
            resp.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).map_err(|_| gone())?);
            Ok(resp)
        }
        Err(Error::Client { code: ErrorCode::Unauthorized, .. }) => {
            Ok(page(StatusCode::UNAUTHORIZED, "Password needed", &password_form(&token, true)))
        }
        Err(e) => Err(e),
    }
}

fn see_other(token: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/l/{token}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

async fn open(state: AppState, token: String, rest: String, q: OpenQuery, headers: HeaderMap) -> Result<Response> {
    if q.zip.is_some_and(|z| z > 1) {
        return Err(Error::bad_request("zip is 1 (the folder as a zip) or 0"));
    }
    let (rec, base) = live_link(&state, token.clone()).await?;
    if let Some(form) = unlock(&state, &rec, &headers, &token).await? {
        return Ok(form);
    }
    // Only what is under the link: the rest goes through the path rules.
    let rest = RelPath::parse(rest.trim_end_matches('/'))?;
    if rec.kind == EntryKind::File && !rest.is_root() {
        return Err(Error::not_found("a file link has nothing under it"));
    }
    let mut target = base.clone();
    for seg in rest.segments() {
        target = target.join(seg)?;
    }
    let (meta, ns, t) = (Arc::clone(&state.stores.meta), rec.ns, target.clone());
    let found = blocking(move || {
        // Never through a shared folder its maker may only view.
        if !meta.link_reaches(ns, &t)? {
            return Err(Error::not_found("not here"));
        }
        match meta.file_version(ns, &t, None) {
            Ok(fv) => Ok(Ok(fv)),
            Err(Error::Client { code: ErrorCode::NotFound, .. }) => {
                let mut entries = meta.list_folder(ns, &t)?;
                entries.retain(|e| !read_only_mount(e));
                Ok(Err(entries))
            }
            Err(e) => Err(e),
        }
    })
    .await
    // Said without the owner's path above the link.
    .map_err(|e| match e {
        Error::Client { code: ErrorCode::NotFound, .. } => {
            Error::not_found(format!("nothing at '{rest}' under this link"))
        }
        e => e,
    })?;
    let name = target.name().unwrap_or("files").to_owned();
    match found {
        Ok(fv) => {
            let mut resp = send_file(state, fv, &headers)?;
            let h = resp.headers_mut();
            h.insert(header::CONTENT_DISPOSITION, attachment(&name));
            h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
            Ok(resp)
        }
        Err(_) if q.zip == Some(1) => {
            // A link's zips count against its maker.
            let places = zip_places(&state, rec.owner)?;
            let mut resp = Response::new(zip_stream(state, ns, target, ZipOf::Link, places));
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/zip"));
            h.insert(header::CONTENT_DISPOSITION, attachment(&format!("{name}.zip")));
            h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            Ok(resp)
        }
        Err(entries) => {
            let here = rest.segments().fold(format!("/l/{}", encode(&token)), |acc, s| format!("{acc}/{}", encode(s)));
            let mut html =
                format!("<h1>{}</h1><p><a href=\"{here}?zip=1\">Download all (.zip)</a></p><ul>", escape(&name));
            if !rest.is_root() {
                let up = here.rsplit_once('/').map_or(here.as_str(), |(p, _)| p);
                html.push_str(&format!("<li><a href=\"{up}\">..</a></li>"));
            }
            for e in entries {
                let n = e.path.name().unwrap_or_default();
                let (slash, size) = if e.kind == EntryKind::Dir {
                    ("/", String::new())
                } else {
                    ("", format!(" — {} bytes", e.size))
                };
                html.push_str(&format!("<li><a href=\"{here}/{}\">{}{slash}</a>{size}</li>", encode(n), escape(n)));
            }
            html.push_str("</ul>");
            Ok(page(StatusCode::OK, &name, &html))
        }
    }
}

pub(crate) fn attachment(name: &str) -> HeaderValue {
    // A name that reads otherwise than it is (a right-to-left override)
    // would be saved so on the downloader's disk: saved as it shows.
    let name = ferry_shared::path::visible(name);
    let name = name.as_ref();
    let ascii: String =
        name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' { c } else { '_' }).collect();
    HeaderValue::from_str(&format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{}", encode(name)))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// A small page, safe to show: no script at all, and the link's token not
/// passed on to other sites.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{} — Ferry</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem}}\
         li{{margin:.3rem 0}}@media(prefers-color-scheme:dark){{body{{background:#111;color:#eee}}a{{color:#8bf}}}}</style>\
         </head><body>{body}</body></html>",
        escape(title)
    );
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `s` for a page: HTML-escaped, and characters that hide themselves shown
/// (see `ferry_shared::path::visible`).
fn escape(s: &str) -> String {
    let s = ferry_shared::path::visible(s);
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a path segment (all but RFC 3986's unreserved characters).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Bytes on their way from the zip writer's thread to the response body:
/// sent in 256 KiB pieces through a channel of four, so a slow client
/// holds the writer back instead of memory growing; a client that reads
/// nothing for [`STALLED`] is dropped, so it cannot hold the thread.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
    rt: tokio::runtime::Handle,
}

const PIECE: usize = 256 << 10;
const STALLED: std::time::Duration = std::time::Duration::from_secs(20);
/// Zips written at once (each holds a blocking thread while it runs).
static ZIPS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(8);

/// The places a zip for `user` holds while it is written: one of the
/// server's [`ZIPS`] and one of the user's [`super::MAX_ZIPS_PER_USER`]
/// (so one user's unread zips cannot hold them all).
pub(crate) struct ZipPlaces {
    _server: tokio::sync::SemaphorePermit<'static>,
    _user: crate::limit::Place<UserId>,
}

pub(crate) fn zip_places(state: &AppState, user: UserId) -> Result<ZipPlaces> {
    let mine = state.zips.try_take(user, super::MAX_ZIPS_PER_USER).ok_or_else(|| {
        Error::busy(format!(
            "{} zips of yours (or through your links) are being written: try again shortly",
            super::MAX_ZIPS_PER_USER
        ))
    })?;
    let permit = ZIPS.try_acquire().map_err(|_| {
        Error::client(ErrorCode::Unavailable, "too many folders are being zipped right now: try again shortly")
    })?;
    Ok(ZipPlaces { _server: permit, _user: mine })
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE)));
        self.rt
            .block_on(self.tx.send_timeout(Ok(piece), STALLED))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= PIECE {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// A shared folder mounted here that its member may only view: a link
/// never shows it (its maker may not publish it).
fn read_only_mount(e: &ferry_shared::api::Entry) -> bool {
    e.share.as_ref().is_some_and(|m| !m.role.can_write())
}

/// Whose zip is written: the account's own (everything it may read), or a
/// link's (what its maker may publish).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ZipOf {
    Account,
    Link,
}

pub(crate) fn zip_stream(state: AppState, ns: NsId, root: RelPath, of: ZipOf, places: ZipPlaces) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let err_tx = tx.clone();
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _places = places;
        let w = ChannelWriter { tx, buf: Vec::with_capacity(PIECE), rt };
        if let Err(e) = write_zip(&state, ns, &root, of, w) {
            tracing::warn!(error = %e, "zip of a linked folder stopped");
            let _ = err_tx.try_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    Body::from_stream(stream)
}

/// A modification time as a zip stores it (local time is unknown here: UTC;
/// none outside the format's years 1980–2107).
fn zip_time(ms: i64) -> Option<zip::DateTime> {
    let (y, m, d, h, mi, s) = ferry_shared::time::utc(ms);
    let n = |v: i64| u8::try_from(v).ok();
    zip::DateTime::from_date_and_time(u16::try_from(y).ok()?, n(m)?, n(d)?, n(h)?, n(mi)?, n(s)?).ok()
}

/// Writes every live file and folder under `root`, depth first, stored
/// (most files are compressed already; stored is fast and predictable).
fn write_zip(state: &AppState, ns: NsId, root: &RelPath, of: ZipOf, w: ChannelWriter) -> anyhow::Result<()> {
    use zip::write::SimpleFileOptions;
    let runtime = tokio::runtime::Handle::current();
    let mut zip = zip::ZipWriter::new_stream(w);
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut folders = vec![(root.clone(), String::new())];
    while let Some((folder, prefix)) = folders.pop() {
        for e in state.stores.meta.list_folder(ns, &folder)? {
            if of == ZipOf::Link && read_only_mount(&e) {
                continue;
            }
            let name = format!("{prefix}{}", e.path.name().unwrap_or_default());
            let path = folder.join(e.path.name().unwrap_or_default())?;
            if e.kind == EntryKind::Dir {
                zip.add_directory(format!("{name}/"), options)?;
                folders.push((path, format!("{name}/")));
                continue;
            }
            let fv = match state.stores.meta.file_version(ns, &path, None) {
                Ok(fv) => fv,
                Err(Error::Client { code: ErrorCode::NotFound, .. }) => continue, // deleted meanwhile
                Err(e) => return Err(anyhow::anyhow!("{e}")),
            };
            let mut file_options = options.large_file(fv.entry.size >= u64::from(u32::MAX));
            if let Some(t) = zip_time(fv.entry.mtime) {
                file_options = file_options.last_modified_time(t);
            }
            zip.start_file(name, file_options)?;
            for (id, _) in fv.blocks {
                let plain = runtime.block_on(state.stores.read_plain(id)).map_err(|e| anyhow::anyhow!("{e}"))?;
                zip.write_all(&plain)?;
            }
        }
    }
    let mut w = zip.finish()?.into_inner();
    w.flush()?;
    Ok(())
}
