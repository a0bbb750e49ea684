//! Conditional requests (RFC 9110 §13): the validators of a file revision
//! (`ETag`, `Last-Modified`) and the preconditions a request states against
//! them, evaluated in the RFC's order. Parsing is the `headers` crate's.

use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, HeaderName, header};
use ferry_shared::api::{Entry, ErrorCode, RevId};
use headers::{ETag, HeaderMapExt, IfMatch, IfModifiedSince, IfNoneMatch, IfRange, IfUnmodifiedSince, LastModified};

use crate::error::{Error, Result};

/// The validators of one revision of a file.
pub struct Validators {
    pub etag: ETag,
    pub last_modified: SystemTime,
}

impl Validators {
    /// A strong tag (revision and content hash) and the revision's server time.
    pub fn of(entry: &Entry) -> Validators {
        let tag = format!("\"{}-{}\"", entry.rev, &entry.hash[..16.min(entry.hash.len())]);
        let etag = tag.parse().expect("a quoted tag of digits, hex and '-' is a valid ETag");
        let last_modified = SystemTime::UNIX_EPOCH + Duration::from_millis(entry.modified.max(0) as u64);
        Validators { etag, last_modified }
    }

    /// Sets `ETag` and `Last-Modified` on an answer.
    pub fn write(&self, h: &mut HeaderMap) {
        h.typed_insert(self.etag.clone());
        h.typed_insert(LastModified::from(self.last_modified));
    }
}

/// What a read (`GET`) may do after its preconditions.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// Answer; `use_range` is false when `If-Range` no longer matches, so a
    /// `Range` must be ignored and the whole file sent.
    Proceed { use_range: bool },
    /// `304 Not Modified`.
    NotModified,
}

fn failed(what: &str) -> Error {
    Error::client(
        ErrorCode::PreconditionFailed,
        format!("{what}: the file has changed since you last read it (see its ETag); read it again"),
    )
}

/// A precondition header that is present but cannot be read is refused: a
/// guard the server silently ignored would be worse than an error.
fn typed<H: headers::Header>(headers: &HeaderMap) -> Result<Option<H>> {
    let name: &HeaderName = H::name();
    if !headers.contains_key(name) {
        return Ok(None);
    }
    headers.typed_get::<H>().map(Some).ok_or_else(|| Error::bad_request(format!("malformed {name} header")))
}

/// Evaluates the preconditions of a `GET` (RFC 9110 §13.2.2).
pub fn read(headers: &HeaderMap, v: &Validators) -> Result<Read> {
    if let Some(m) = typed::<IfMatch>(headers)? {
        if !m.precondition_passes(&v.etag) {
            return Err(failed("If-Match"));
        }
    } else if let Some(u) = headers.typed_get::<IfUnmodifiedSince>()
        && !u.precondition_passes(v.last_modified)
    {
        return Err(failed("If-Unmodified-Since"));
    }
    if let Some(n) = headers.typed_get::<IfNoneMatch>() {
        if !n.precondition_passes(&v.etag) {
            return Ok(Read::NotModified);
        }
    } else if let Some(s) = headers.typed_get::<IfModifiedSince>()
        && !s.is_modified(v.last_modified)
    {
        return Ok(Read::NotModified);
    }
    // An `If-Range` that cannot be read, or does not match, means "send it
    // all". Only a strong tag can match: a date has one-second resolution,
    // and two revisions in one second would splice into one download.
    let use_range = match headers.get(header::IF_RANGE) {
        None => true,
        Some(raw) => {
            let is_tag = raw.as_bytes().first() == Some(&b'"');
            is_tag && headers.typed_get::<IfRange>().is_some_and(|r| !r.is_modified(Some(&v.etag), None))
        }
    };
    Ok(Read::Proceed { use_range })
}

/// Evaluates the preconditions of a write against the head of the path
/// (`None`: no file there): `If-Match` (passing, it yields the head's
/// revision to commit against, so a change in between is still caught as
/// 409), `If-Unmodified-Since`, and `If-None-Match` (`*`: create only).
pub fn write(headers: &HeaderMap, head: Option<&Entry>) -> Result<Option<RevId>> {
    let validators = head.map(Validators::of);
    let mut pinned = None;
    if let Some(m) = typed::<IfMatch>(headers)? {
        match (head, &validators) {
            (Some(e), Some(v)) if m.precondition_passes(&v.etag) => pinned = Some(e.rev),
            (Some(_), _) => return Err(failed("If-Match")),
            (None, _) => {
                return Err(Error::client(ErrorCode::PreconditionFailed, "If-Match: there is no file at this path"));
            }
        }
    } else if let (Some(u), Some(v)) = (headers.typed_get::<IfUnmodifiedSince>(), &validators)
        && !u.precondition_passes(v.last_modified)
    {
        return Err(failed("If-Unmodified-Since"));
    }
    if let Some(n) = typed::<IfNoneMatch>(headers)?
        && let Some(v) = &validators
        && !n.precondition_passes(&v.etag)
    {
        return Err(Error::client(
            ErrorCode::PreconditionFailed,
            "If-None-Match: a file with that tag (any file, for `*`) is at this path",
        ));
    }
    Ok(pinned)
}

/// `304 Not Modified` with the validators.
pub fn not_modified(v: &Validators) -> axum::response::Response {
    let mut resp = axum::response::Response::new(axum::body::Body::empty());
    *resp.status_mut() = axum::http::StatusCode::NOT_MODIFIED;
    v.write(resp.headers_mut());
    resp
}
