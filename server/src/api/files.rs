//! The seed's file API: simple and resumable upload, download with ranges,
//! revision listing. Whole files are chunked by the server with the shared CDC
//! rule (see `crate::upload`).

use std::io::{Seek, SeekFrom, Write};
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferry_shared::api::{
    BlockList, CommitOp, Entry, EntryKind, ErrorBody, ErrorCode, ListRevisionsRequest, ListRevisionsResponse, Listing,
    PathRequest, ResumableStartRequest, ResumableStartResponse, RevId,
};
use ferry_shared::path::RelPath;
use ferry_shared::range::{ContentRange, Unsatisfiable, parse_content_range, parse_range};
use ferry_shared::{BlockId, MAX_FILE_SIZE};
use futures_util::StreamExt;
use serde::Deserialize;

use super::blocking;
use super::body::JsonBody;
use super::conditional;
use super::doc::Binary;
use super::{AppState, Auth};
use crate::error::{Error, Result};
use crate::meta::{Caller, NewBlock, UploadSession, now_ms};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// `media` (the body is the file) or `resumable`.
    #[serde(rename = "uploadType")]
    #[param(rename = "uploadType", value_type = UploadType)]
    pub upload_type: String,
    /// Target path (simple upload; required there).
    #[param(value_type = Option<ferry_shared::path::NonRootPath>)]
    pub path: Option<String>,
    /// Replace only if this is still the head (simple upload).
    #[param(value_type = Option<i64>)]
    pub parent_rev: Option<RevId>,
    /// Modification time to record, Unix ms (simple upload).
    pub mtime: Option<i64>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResumeQuery {
    /// `resumable`.
    #[serde(rename = "uploadType")]
    #[param(rename = "uploadType", pattern = "^resumable$")]
    pub upload_type: String,
    /// The session id, as in the `Location` URL.
    #[param(pattern = "^[0-9a-fA-F]{32}$")]
    pub upload_id: String,
}

/// How a file is uploaded (documentation only: an unknown value gets a 400
/// that says which are known).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum UploadType {
    Media,
    Resumable,
}

/// The answer of `POST /files/upload`: a resumable session, or the file.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum UploadStarted {
    Session(ResumableStartResponse),
    File(Entry),
}

/// Unfinished resumable uploads one user may have open at once.
const MAX_OPEN_SESSIONS: u64 = 100;

fn too_large() -> Error {
    Error::client(ErrorCode::PayloadTooLarge, "files larger than 10 GiB are not accepted")
}

fn check_quota(state: &AppState, caller: &Caller, size: u64) -> Result<()> {
    let info = state.stores.meta.user_info(caller.user_id)?;
    if info.used.saturating_add(info.uploaded).saturating_add(size) > info.quota {
        return Err(Error::client(
            ErrorCode::QuotaExceeded,
            format!(
                "quota exceeded: {} of {} bytes used ({} by uploaded blocks not yet committed), the file needs {size}",
                info.used + info.uploaded,
                info.quota,
                info.uploaded
            ),
        ));
    }
    Ok(())
}

/// What a server-chunked file replaces.
#[derive(Debug, Clone, Copy)]
enum Over {
    /// Whatever is the head when it commits.
    Head,
    /// Only this revision (else 409).
    Rev(RevId),
    /// Nothing: the path must be free when it commits (`If-None-Match: *`).
    Nothing,
}

impl From<Option<RevId>> for Over {
    fn from(r: Option<RevId>) -> Over {
        r.map_or(Over::Head, Over::Rev)
    }
}

/// Commits a server-chunked file at `path`. Returns the entry and whether it is new.
fn commit_file(
    state: &AppState,
    caller: &Caller,
    path: &RelPath,
    over: Over,
    size: u64,
    mtime: Option<i64>,
    (ids, new_blocks): (Vec<BlockId>, Vec<NewBlock>),
) -> Result<(Entry, bool)> {
    // A put without parent_rev is refused where a file is (409).
    let parent_rev = match over {
        Over::Rev(r) => Some(r),
        Over::Nothing => None,
        Over::Head => match state.stores.meta.file_version(caller.ns, path, None) {
            Ok(v) => Some(v.entry.rev),
            Err(Error::Client { code: ErrorCode::NotFound, .. }) => None,
            Err(e) => return Err(e),
        },
    };
    let op = CommitOp::Put {
        path: path.clone(),
        parent_rev,
        size,
        mtime: mtime.unwrap_or_else(now_ms),
        executable: false,
        blocks: BlockList::Full(ids),
    };
    let outcome = state.stores.commit(caller, vec![op], new_blocks)?;
    let entry = outcome.results.into_iter().next().expect("one result")?;
    Ok((entry, parent_rev.is_none()))
}

/// The live file at `path`, if there is one.
fn head_entry(state: &AppState, caller: &Caller, path: &RelPath) -> Result<Option<Entry>> {
    match state.stores.meta.file_version(caller.ns, path, None) {
        Ok(v) => Ok(Some(v.entry)),
        Err(Error::Client { code: ErrorCode::NotFound, .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The absolute URL of `path_and_query` on this server, as clients must be
/// sent it in `Location` (Google's client uses it as it is): the configured
/// public URL, else the request's `Host` with this server's scheme.
pub(crate) fn absolute_url(state: &AppState, headers: &HeaderMap, path_and_query: &str) -> String {
    if let Some(base) = &state.limits.public_url {
        return format!("{}{path_and_query}", base.trim_end_matches('/'));
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)));
    match host {
        Some(host) => format!("{}://{host}{path_and_query}", if state.limits.tls { "https" } else { "http" }),
        None => path_and_query.to_owned(),
    }
}

fn created(entry: Entry, new: bool) -> Response {
    let status = if new { StatusCode::CREATED } else { StatusCode::OK };
    (status, Json(entry)).into_response()
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Start an upload: `uploadType=media` stores the body as the file at `path`;
/// `uploadType=resumable` takes `{"path","size"}` and answers with the session
/// URL in `Location`.
#[utoipa::path(post, path = "/files/upload",
    params(UploadQuery,
        ("If-Match" = Option<String>, Header, description = "write only if the file's ETag is still this one (`*`: if it exists)"),
        ("If-None-Match" = Option<String>, Header, description = "`*`: write only if no file is there (create only)"),
        ("If-Unmodified-Since" = Option<String>, Header, description = "write only if unchanged since (HTTP date)"),
        ("X-Upload-Content-Length" = Option<u64>, Header, description = "resumable: the file's size, if not in the body")),
    request_body(description = "resumable: the session request (JSON); media: the file's bytes",
        content((ResumableStartRequest = "application/json"), (Binary = "application/octet-stream"))),
    responses(
        (status = 200, body = UploadStarted,
            description = "resumable: the session (its absolute URL also in `Location`); media: the file replaced",
            headers(("Location" = Option<String>, description = "resumable: the session's URL, for the PUTs"))),
        (status = 201, body = Entry, description = "media: a new file"),
        (status = 400, body = ErrorBody, description = "no or a bad uploadType, path or size; an unreadable session request"),
        (status = 409, body = ErrorBody, description = "parent_rev is not the head any more, or a folder is at the path"),
        (status = 411, body = ErrorBody, description = "media: no Content-Length"),
        (status = 412, body = ErrorBody, description = "If-Match: the file changed"),
        (status = 413, body = ErrorBody, description = "the file is larger than 10 GiB"),
        (status = 429, body = ErrorBody, description = "resumable: too many unfinished sessions"),
        (status = 507, body = ErrorBody, description = "the account's quota would be exceeded (unfinished sessions count)")),
    security(("bearer" = [])))]
pub async fn upload_start(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    match q.upload_type.as_str() {
        "media" => {
            let path =
                RelPath::parse_non_root(q.path.as_deref().ok_or_else(|| Error::bad_request("path= is required"))?)?;
            // No Content-Length and not chunked means an empty body (RFC 9112 6.3).
            let size = content_length(&headers).or_else(|| body.size_hint().exact()).ok_or_else(|| {
                Error::client(ErrorCode::LengthRequired, "send Content-Length, or use uploadType=resumable")
            })?;
            if size > MAX_FILE_SIZE {
                return Err(too_large());
            }
            let create_only = headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes().trim_ascii() == b"*");
            let (st, c, p) = (Arc::clone(&state), caller.clone(), path.clone());
            let pinned = blocking(move || {
                let pinned = conditional::write(&headers, head_entry(&st, &c, &p)?.as_ref())?;
                check_quota(&st, &c, size)?;
                Ok(pinned)
            })
            .await?;
            let over = match q.parent_rev.or(pinned) {
                None if create_only => Over::Nothing,
                r => Over::from(r),
            };
            let blocks = receive_file(&state, &caller, body, size).await?;
            let (entry, new) = blocking(move || {
                commit_file(&state, &caller, &path, over, size, q.mtime, blocks).map_err(|e| match (over, e) {
                    (Over::Nothing, Error::Conflict { .. }) => Error::client(
                        ErrorCode::PreconditionFailed,
                        "If-None-Match: a file appeared at this path meanwhile",
                    ),
                    (_, e) => e,
                })
            })
            .await?;
            Ok(created(entry, new))
        }
        "resumable" => {
            let bytes = axum::body::to_bytes(body, 64 * 1024)
                .await
                .map_err(|_| Error::bad_request("the session request must be a small JSON body"))?;
            let req: ResumableStartRequest = serde_json::from_slice(&bytes)
                .map_err(|e| Error::bad_request(format!("invalid session request: {e}")))?;
            if req.path.is_root() {
                return Err(RelPath::parse_non_root("").unwrap_err().into());
            }
            // Google's clients announce the size in a header, not the body.
            let announced = headers.get("x-upload-content-length").map(|v| {
                v.to_str()
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or_else(|| Error::bad_request("X-Upload-Content-Length must be the file's size in bytes"))
            });
            let size = match (req.size, announced.transpose()?) {
                (Some(a), Some(b)) if a != b => {
                    return Err(Error::bad_request(format!("size {a} and X-Upload-Content-Length {b} disagree")));
                }
                (Some(n), _) | (None, Some(n)) => n,
                (None, None) => {
                    return Err(Error::bad_request(
                        "give the file's size: \"size\" in the body or an X-Upload-Content-Length header",
                    ));
                }
            };
            if size > MAX_FILE_SIZE {
                return Err(too_large());
            }
            let id = hex::encode(rand::random::<[u8; 16]>());
            let expires = now_ms() + state.limits.upload_expiry_ms;
            let url = absolute_url(&state, &headers, &format!("/files/upload?uploadType=resumable&upload_id={id}"));
            let mut session = UploadSession {
                id,
                user_id: caller.user_id,
                device_id: caller.device_id,
                path: req.path,
                size,
                received: 0,
                mtime: req.mtime,
                parent_rev: req.parent_rev.map(crate::meta::RevId),
                expires,
                done: None,
            };
            let st = Arc::clone(&state);
            blocking(move || {
                let pinned = conditional::write(&headers, head_entry(&st, &caller, &session.path)?.as_ref())?;
                session.parent_rev = session.parent_rev.or(pinned.map(crate::meta::RevId));
                // Bytes of unfinished sessions take space too.
                let (open, staged) = st.stores.meta.staged_uploads(caller.user_id, now_ms())?;
                if open >= MAX_OPEN_SESSIONS {
                    return Err(Error::client(
                        ErrorCode::TooManyRequests,
                        format!("{open} resumable uploads are open: finish some first (or let them expire)"),
                    ));
                }
                check_quota(&st, &caller, session.size.saturating_add(staged))?;
                let f = crate::fsutil::create_private_file(&st.uploads_dir.join(&session.id))?;
                f.sync_all()?;
                st.stores.meta.create_upload(&session)
            })
            .await?;
            let mut resp = Json(ResumableStartResponse { upload_url: url.clone(), expires }).into_response();
            resp.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&url).expect("checked host"));
            Ok(resp)
        }
        other => Err(Error::bad_request(format!("uploadType must be 'media' or 'resumable', not {other:?}"))),
    }
}

/// Whole-file bodies up to this size are read into memory, larger ones
/// staged in a private file while they arrive.
const IN_MEMORY: u64 = 8 << 20;

/// What a client that stopped sending is told (and the log, at debug
/// level: a flood of them must not flood it).
fn cut_off(e: impl std::fmt::Display) -> Error {
    tracing::debug!(error = %e, "an upload's body ended early");
    Error::bad_request("the upload ended before its last byte: send it again (or resume it)")
}

/// The body of a whole-file upload of `size` bytes, stored as blocks. It
/// is read as it arrives, on the async threads: no thread waits for the
/// client. A small one is chunked from memory; a larger one is written to
/// a private staging file piece by piece and ingested alongside (see
/// `upload::Ingests`), and the file is removed however the upload ends.
async fn receive_file(
    state: &AppState,
    caller: &Caller,
    body: Body,
    size: u64,
) -> Result<(Vec<BlockId>, Vec<NewBlock>)> {
    let too_long = || Error::bad_request(format!("the body is longer than its Content-Length ({size})"));
    let short = |n: u64| Error::bad_request(format!("received {n} bytes but {size} were announced"));
    if size <= IN_MEMORY {
        let mut stream = body.into_data_stream();
        let mut bytes = Vec::with_capacity(size as usize);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(cut_off)?;
            if (bytes.len() + chunk.len()) as u64 > size {
                return Err(too_long());
            }
            bytes.extend_from_slice(&chunk);
        }
        if bytes.len() as u64 != size {
            return Err(short(bytes.len() as u64));
        }
        let (st, user) = (Arc::clone(state), caller.user_id);
        return blocking(move || st.stores.store_stream(user, &bytes[..], size)).await;
    }
    let staged = Staged::new(state, format!("media-{}", hex::encode(rand::random::<[u8; 16]>())));
    let path = staged.path.clone();
    let mut file = blocking(move || Ok(crate::fsutil::create_private_file(&path)?)).await?;
    state.ingests.follow(&state.stores, &staged.id, caller.user_id, staged.path.clone(), 0, size);
    let mut stream = body.into_data_stream();
    let mut received = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(cut_off)?;
        if received + chunk.len() as u64 > size {
            return Err(too_long());
        }
        received += chunk.len() as u64;
        file = write_chunk(file, chunk).await?;
        state.ingests.written(&staged.id, received);
    }
    if received != size {
        return Err(short(received));
    }
    if let Some(blocks) = state.ingests.finish(&staged.id, size).await {
        return Ok(blocks);
    }
    let (st, user, path) = (Arc::clone(state), caller.user_id, staged.path.clone());
    blocking(move || {
        let file = std::fs::File::open(&path)?;
        st.stores.store_stream(user, std::io::BufReader::with_capacity(1 << 20, file), size)
    })
    .await
}

/// A staging file of an upload in progress: on drop (the upload done,
/// failed or cut off) its ingest stops and the file goes.
struct Staged {
    state: AppState,
    id: String,
    path: std::path::PathBuf,
}

impl Staged {
    fn new(state: &AppState, id: String) -> Staged {
        let path = state.uploads_dir.join(&id);
        Staged { state: Arc::clone(state), id, path }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        self.state.ingests.forget(&self.id);
        let _ = std::fs::remove_file(&self.path);
    }
}

fn resume_incomplete(received: u64) -> Response {
    let mut resp = StatusCode::PERMANENT_REDIRECT.into_response();
    if received > 0 {
        let v = HeaderValue::from_str(&format!("bytes=0-{}", received - 1)).expect("ascii");
        resp.headers_mut().insert(header::RANGE, v);
    }
    resp
}

/// Marks an upload session busy for the duration of one request.
struct BusyGuard(AppState, String);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.busy_uploads.lock().expect("busy set poisoned").remove(&self.1);
    }
}

/// Send bytes to a resumable session (`Content-Range: bytes A-B/TOTAL`), or ask
/// how much arrived (`bytes */TOTAL`, no body). Answers 308 with `Range` until
/// complete, then 200/201 with the new revision.
#[utoipa::path(put, path = "/files/upload",
    params(ResumeQuery,
        ("Content-Range" = String, Header, pattern = r"^bytes ([0-9]+-[0-9]+/[0-9]+|\*/([0-9]+|\*))$",
            description = "`bytes A-B/TOTAL` with bytes, `bytes */TOTAL` or `bytes */*` to ask")),
    request_body(content = Binary, content_type = "application/octet-stream"),
    responses(
        (status = 200, body = Entry, description = "complete: the new revision (also to any later request on the session)"),
        (status = 308, description = "incomplete",
            headers(("Range" = Option<String>, description = "`bytes=0-N`: the bytes the server has (none if absent)"))),
        (status = 400, body = ErrorBody, description = "no or a bad Content-Range or upload_id; a body longer than its range"),
        (status = 404, body = ErrorBody, description = "no such session (or it expired)"),
        (status = 409, body = ErrorBody, description = "another request is writing to this session, or the file changed"),
        (status = 416, body = ErrorBody, description = "the range starts past what the server has",
            headers(("Range" = Option<String>, description = "`bytes=0-N`: the bytes the server has"))),
        (status = 507, body = ErrorBody, description = "the account's quota would be exceeded")),
    security(("bearer" = [])))]
pub async fn upload_put(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Query(q): Query<ResumeQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    if q.upload_type != "resumable" {
        return Err(Error::bad_request("PUT /files/upload needs uploadType=resumable&upload_id=ID"));
    }
    let id = q.upload_id;
    let range = headers.get(header::CONTENT_RANGE).map(|v| {
        v.to_str().ok().and_then(parse_content_range).ok_or_else(|| {
            Error::bad_request("Content-Range must be 'bytes A-B/TOTAL', 'bytes */TOTAL' or 'bytes */*'")
        })
    });
    let range = range.ok_or_else(|| Error::bad_request("Content-Range is required"))?;
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::not_found("no such upload session"));
    }
    // One request at a time per session, and the session read under that
    // lock: what another request just wrote or finished is seen.
    if !state.busy_uploads.lock().expect("busy set poisoned").insert(id.clone()) {
        return Err(Error::conflict("another request is writing to this upload session", None));
    }
    let _guard = BusyGuard(Arc::clone(&state), id.clone());
    let st = Arc::clone(&state);
    let lookup_id = id.clone();
    let session = blocking(move || st.stores.meta.upload(&lookup_id))
        .await?
        .filter(|s| s.user_id == caller.user_id && s.expires > now_ms())
        .ok_or_else(|| Error::not_found("no such upload session (it may have expired): start a new one"))?;
    let range = range?;
    if let Some(entry) = session.done {
        // Finished: a client that lost the final answer learns it here
        // instead of sending the file again. Bytes it sent along are not
        // read, so this connection cannot carry another request.
        let mut resp = Json(entry).into_response();
        if matches!(range, ContentRange::Bytes { .. }) {
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        return Ok(resp);
    }
    let file_path = state.uploads_dir.join(&id);
    let mut received = session.received;
    match range {
        ContentRange::Query { total: Some(total) } | ContentRange::Bytes { total, .. } if total != session.size => {
            return Err(Error::bad_request(format!("the session's size is {}, not {total}", session.size)));
        }
        ContentRange::Query { .. } => {}
        ContentRange::Bytes { start, end, .. } => {
            if start > received {
                let mut resp = Error::client(
                    ErrorCode::RangeNotSatisfiable,
                    format!("the server has {received} bytes; resume from there"),
                )
                .into_response();
                if received > 0 {
                    resp.headers_mut().insert(
                        header::RANGE,
                        HeaderValue::from_str(&format!("bytes=0-{}", received - 1)).expect("ascii"),
                    );
                }
                return Ok(resp);
            }
            // Ingested while it arrives (large files; see `upload::Ingests`).
            if session.size >= INGEST_FROM {
                state.ingests.follow(&state.stores, &id, caller.user_id, file_path.clone(), received, session.size);
            }
            // Append what is new; bytes the server already has are skipped.
            let mut skip = received - start;
            let mut expected = end - start + 1;
            let mut file = std::fs::OpenOptions::new().write(true).open(&file_path)?;
            file.seek(SeekFrom::Start(received))?;
            let mut stream = body.into_data_stream();
            let mut write_err = None;
            while let Some(chunk) = stream.next().await {
                let Ok(mut chunk) = chunk else { break }; // connection lost: keep what arrived
                if chunk.len() as u64 > expected {
                    write_err = Some(Error::bad_request("the body is longer than its Content-Range"));
                    break;
                }
                expected -= chunk.len() as u64;
                if skip > 0 {
                    let n = skip.min(chunk.len() as u64);
                    chunk = chunk.slice(n as usize..);
                    skip -= n;
                }
                if !chunk.is_empty() {
                    file = match write_chunk(file, chunk).await {
                        Ok(f) => f,
                        Err(e) => {
                            // What the file holds past `received` may be
                            // written again differently.
                            state.ingests.forget(&id);
                            return Err(e);
                        }
                    };
                    received = file.stream_position()?;
                    state.ingests.written(&id, received);
                }
            }
            let st = Arc::clone(&state);
            let sid = id.clone();
            blocking(move || {
                file.sync_data()?;
                st.stores.meta.set_upload_received(&sid, received)
            })
            .await?;
            if let Some(e) = write_err {
                return Err(e);
            }
        }
    }
    if received < session.size {
        return Ok(resume_incomplete(received));
    }
    // Complete: chunk, store (done already if ingested while arriving),
    // commit, then forget the session.
    let ingested = state.ingests.finish(&id, session.size).await;
    let result = blocking(move || {
        let blocks = match ingested {
            Some(blocks) => blocks,
            None => {
                let file = std::fs::File::open(&file_path)?;
                state.stores.store_stream(
                    caller.user_id,
                    std::io::BufReader::with_capacity(1 << 20, file),
                    session.size,
                )?
            }
        };
        let over = Over::from(session.parent_rev.map(|r| r.0));
        let r = commit_file(&state, &caller, &session.path, over, session.size, session.mtime, blocks);
        match &r {
            // The session answers with its revision until it expires.
            Ok((entry, _)) => state.stores.meta.finish_upload(&session.id, entry)?,
            Err(Error::Internal(_) | Error::Storage(_)) => return r,
            Err(_) => state.stores.meta.delete_upload(&session.id)?,
        }
        let _ = std::fs::remove_file(&file_path);
        r
    })
    .await?;
    // 200 as Google Cloud Storage answers (its clients take no other).
    Ok(Json(result.0).into_response())
}

/// Resumable uploads of at least this size are ingested while they arrive.
const INGEST_FROM: u64 = 16 << 20;

async fn write_chunk(mut file: std::fs::File, chunk: Bytes) -> Result<std::fs::File> {
    blocking(move || {
        file.write_all(&chunk)?;
        Ok(file)
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DownloadQuery {
    #[param(value_type = ferry_shared::path::NonRootPath)]
    pub path: String,
    /// A revision of the file at `path` (default: the head).
    #[param(value_type = Option<i64>)]
    pub rev: Option<RevId>,
}

/// Download a file (or an old revision); supports one `Range`.
#[utoipa::path(get, path = "/files/download",
    params(DownloadQuery,
        ("Range" = Option<String>, Header, description = "one range, `bytes=A-B`, `bytes=A-` or `bytes=-N`"),
        ("If-Range" = Option<String>, Header, description = "serve the Range only if the ETag (or date) still matches"),
        ("If-Match" = Option<String>, Header, description = "412 unless the ETag matches"),
        ("If-None-Match" = Option<String>, Header, description = "304 if the ETag matches"),
        ("If-Modified-Since" = Option<String>, Header, description = "304 unless changed since (HTTP date)"),
        ("If-Unmodified-Since" = Option<String>, Header, description = "412 if changed since (HTTP date)")),
    responses(
        (status = 200, body = Binary, content_type = "application/octet-stream", description = "the file",
            headers(("ETag" = String), ("Last-Modified" = String), ("Accept-Ranges" = String))),
        (status = 206, body = Binary, content_type = "application/octet-stream", description = "the range asked for",
            headers(("ETag" = String), ("Last-Modified" = String), ("Content-Range" = String))),
        (status = 304, description = "not modified (If-None-Match, If-Modified-Since)",
            headers(("ETag" = String), ("Last-Modified" = String))),
        (status = 400, body = ErrorBody, description = "no or an invalid path; a malformed If-Match"),
        (status = 404, body = ErrorBody, description = "no file at this path (or no such revision of it)"),
        (status = 412, body = ErrorBody, description = "If-Match or If-Unmodified-Since: the file changed"),
        (status = 416, body = ErrorBody, description = "the range is outside the file",
            headers(("Content-Range" = String, description = "`bytes */SIZE`")))),
    security(("bearer" = [])))]
pub async fn download(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Query(q): Query<DownloadQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    let path = RelPath::parse_non_root(&q.path)?;
    let meta = Arc::clone(&state.stores.meta);
    let fv = blocking(move || meta.file_version(caller.ns, &path, q.rev.map(crate::meta::RevId))).await?;
    let name = fv.entry.path.name().unwrap_or("file").to_owned();
    let mut resp = send_file(state, fv, &headers)?;
    resp.headers_mut().insert(header::CONTENT_DISPOSITION, super::links::attachment(&name));
    Ok(resp)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FolderQuery {
    /// A folder (empty or absent: the top).
    #[serde(default)]
    #[param(value_type = ferry_shared::path::RelPath)]
    pub path: String,
}

/// A folder's live entries, by name (shared folders carry `share`).
#[utoipa::path(get, path = "/files/list", operation_id = "list_folder", params(FolderQuery),
    responses((status = 200, body = Listing), (status = 404, body = ErrorBody, description = "no folder at this path")),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Query(q): Query<FolderQuery>,
) -> Result<Json<Listing>> {
    let path = RelPath::parse(&q.path)?;
    let meta = Arc::clone(&state.stores.meta);
    let p = path.clone();
    let entries = blocking(move || meta.list_folder(caller.ns, &p)).await?;
    Ok(Json(Listing { path, entries }))
}

/// The operations deleting what is at `path`: a file, or a folder with all
/// in it, deepest first. A folder shared with the caller is left, never
/// emptied.
fn delete_ops(state: &AppState, caller: &Caller, path: &RelPath) -> Result<Vec<CommitOp>> {
    let parent = path.parent().expect("not root");
    let entry = state
        .stores
        .meta
        .list_folder(caller.ns, &parent)?
        .into_iter()
        .find(|e| e.path == *path)
        .ok_or_else(|| Error::not_found(format!("nothing at '{path}'")))?;
    let mut ops = Vec::new();
    let mut stack = vec![(entry, false)];
    while let Some((e, visited)) = stack.pop() {
        let path = e.path.clone();
        if e.kind == EntryKind::File {
            ops.push(CommitOp::Delete { path, parent_rev: Some(e.rev) });
            continue;
        }
        let leave = e.share.as_ref().is_some_and(|m| m.role != ferry_shared::api::ShareRole::Owner);
        if visited || leave {
            ops.push(CommitOp::Rmdir { path, parent_rev: Some(e.rev) });
            continue;
        }
        let children = state.stores.meta.list_folder(caller.ns, &path)?;
        stack.push((e, true));
        stack.extend(children.into_iter().map(|c| (c, false)));
    }
    Ok(ops)
}

/// Delete a file, or a folder with everything in it. Deleted items go to
/// the trash (`/trash`); a folder shared with you is left instead.
#[utoipa::path(post, path = "/files/delete", request_body = PathRequest,
    responses((status = 204, description = "deleted"),
        (status = 403, body = ErrorBody, description = "in a folder shared with you read-only"),
        (status = 404, body = ErrorBody, description = "nothing at this path"),
        (status = 409, body = ErrorBody, description = "something in it changed meanwhile: look again")),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(req): JsonBody<PathRequest>,
) -> Result<StatusCode> {
    if req.path.is_root() {
        return Err(Error::bad_request("the top folder cannot be deleted; delete what is in it"));
    }
    blocking(move || {
        let ops = delete_ops(&state, &caller, &req.path)?;
        let outcome = state.stores.commit(&caller, ops, Vec::new())?;
        // A folder that kept something says why that thing stayed.
        let mut errors: Vec<Error> = outcome.results.into_iter().filter_map(|r| r.err()).collect();
        errors.sort_by_key(|e| matches!(e, Error::Client { code: ErrorCode::NotEmpty, .. }));
        match errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(StatusCode::NO_CONTENT),
        }
    })
    .await
}

/// Download a folder as a zip, streamed (stored, not compressed).
#[utoipa::path(get, path = "/files/zip", params(FolderQuery),
    responses((status = 200, body = Binary, content_type = "application/zip", description = "the folder as a zip"),
        (status = 404, body = ErrorBody, description = "no folder at this path"),
        (status = 503, body = ErrorBody, description = "too many zips are being written: try again shortly")),
    security(("bearer" = [])))]
pub async fn zip(State(state): State<AppState>, Auth(caller): Auth, Query(q): Query<FolderQuery>) -> Result<Response> {
    let path = RelPath::parse(&q.path)?;
    let (meta, p) = (Arc::clone(&state.stores.meta), path.clone());
    // A folder, present now (the zip itself lists as it goes).
    blocking(move || meta.list_folder(caller.ns, &p)).await?;
    let places = super::links::zip_places(&state, caller.user_id)?;
    let name = path.name().unwrap_or("Ferry").to_owned();
    let mut resp =
        Response::new(super::links::zip_stream(state, caller.ns, path, super::links::ZipOf::Account, places));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/zip"));
    h.insert(header::CONTENT_DISPOSITION, super::links::attachment(&format!("{name}.zip")));
    Ok(resp)
}

/// Answers with a file revision: one `Range` (unless `If-Range` no longer
/// matches), the validators, and the preconditions of RFC 9110 evaluated;
/// blocks are read, opened and cut as the body streams.
pub fn send_file(state: AppState, fv: crate::meta::FileVersion, headers: &HeaderMap) -> Result<Response> {
    let size = fv.entry.size;
    let validators = conditional::Validators::of(&fv.entry);
    let use_range = match conditional::read(headers, &validators)? {
        conditional::Read::NotModified => return Ok(conditional::not_modified(&validators)),
        conditional::Read::Proceed { use_range } => use_range,
    };
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()).filter(|_| use_range) {
        None => None,
        Some(v) => match parse_range(v, size) {
            Ok(r) => r,
            Err(Unsatisfiable) => {
                let mut resp =
                    Error::client(ErrorCode::RangeNotSatisfiable, format!("the file has {size} bytes")).into_response();
                resp.headers_mut()
                    .insert(header::CONTENT_RANGE, HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"));
                return Ok(resp);
            }
        },
    };
    let (start, end) = range.unwrap_or((0, size.saturating_sub(1)));
    let len = if size == 0 { 0 } else { end - start + 1 };
    // Blocks overlapping [start, end], with where to cut each.
    let mut pieces = Vec::new();
    let mut offset = 0u64;
    for (id, bsize) in fv.blocks {
        let (b0, b1) = (offset, offset + u64::from(bsize));
        offset = b1;
        if len == 0 || b1 <= start || b0 > end {
            continue;
        }
        let from = start.saturating_sub(b0) as usize;
        let to = ((end + 1).min(b1) - b0) as usize;
        pieces.push((id, from, to));
    }
    // A few blocks read ahead of the one being sent.
    let stream = futures_util::stream::iter(pieces)
        .map(move |(id, from, to)| {
            let stores = Arc::clone(&state.stores);
            async move {
                let plain = stores.read_plain(id).await.map_err(|e| {
                    tracing::error!(error = %e, "download aborted");
                    std::io::Error::other(e.to_string())
                })?;
                Ok::<_, std::io::Error>(Bytes::from(plain).slice(from..to))
            }
        })
        .buffered(4);
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    validators.write(h);
    if range.is_some() {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        resp.headers_mut().insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")).expect("ascii"),
        );
    }
    Ok(resp)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RevisionsQuery {
    #[param(value_type = ferry_shared::path::NonRootPath)]
    pub path: String,
    /// Most revisions to return (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

async fn list_revisions(
    state: AppState,
    caller: Caller,
    path: RelPath,
    limit: Option<u32>,
) -> Result<Json<ListRevisionsResponse>> {
    if path.is_root() {
        return Err(RelPath::parse_non_root("").unwrap_err().into());
    }
    let limit = limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Error::bad_request("limit must be 1 to 1000"));
    }
    let meta = Arc::clone(&state.stores.meta);
    let revisions = blocking(move || meta.revisions(caller.ns, &path, limit)).await?;
    Ok(Json(ListRevisionsResponse { revisions }))
}

/// Revisions of the file at `path`, newest first.
#[utoipa::path(get, path = "/files/list_revisions", params(RevisionsQuery),
    responses((status = 200, body = ListRevisionsResponse),
        (status = 404, body = ErrorBody, description = "nothing was ever at this path, or it is a folder")),
    security(("bearer" = [])))]
pub async fn list_revisions_get(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Query(q): Query<RevisionsQuery>,
) -> Result<Json<ListRevisionsResponse>> {
    list_revisions(state, caller, RelPath::parse(&q.path)?, q.limit).await
}

/// Revisions of the file at `path`, newest first (JSON body, as in the seed).
#[utoipa::path(post, path = "/files/list_revisions", request_body = ListRevisionsRequest,
    responses((status = 200, body = ListRevisionsResponse),
        (status = 404, body = ErrorBody, description = "nothing was ever at this path, or it is a folder")),
    security(("bearer" = [])))]
pub async fn list_revisions_post(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(req): JsonBody<ListRevisionsRequest>,
) -> Result<Json<ListRevisionsResponse>> {
    list_revisions(state, caller, req.path, req.limit).await
}
