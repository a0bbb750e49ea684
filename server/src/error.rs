//! The server's error type, mapped exhaustively to an HTTP status and a stable
//! [`ErrorCode`]. Internal causes are logged, never sent to the client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ferry_shared::BlockId;
use ferry_shared::api::{Entry, ErrorBody, ErrorCode, ErrorDetail};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A client mistake: the code says which, the message says what to do.
    #[error("{message}")]
    Client { code: ErrorCode, message: String },
    /// `parent_rev` is not the head any more, or the name is taken.
    #[error("{message}")]
    Conflict { message: String, head: Option<Box<Entry>> },
    #[error("the account has not uploaded {} of the blocks", missing.len())]
    MissingBlocks { missing: Vec<BlockId> },
    /// Too many failed logins for this name: try again after this long.
    #[error("too many failed logins; try again in {} s", retry_after.as_secs().max(1))]
    RateLimited { retry_after: std::time::Duration },
    /// Too much of some work in flight (logins being checked, uploads,
    /// zips): try again in a moment (`Retry-After: 1`).
    #[error("{message}")]
    Busy { message: String },
    /// The block store failed (an S3 outage, a disk error): 503 with
    /// `Retry-After`, so clients try again; never an answer that says a
    /// block or file is missing. The cause is logged, not sent.
    #[error("block storage: {0}")]
    Storage(std::io::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `Retry-After` of a block storage failure: long enough not to hammer a
/// store that is down, short enough for a blip.
const STORAGE_RETRY_AFTER_SECS: u64 = 5;

impl Error {
    pub fn busy(message: impl Into<String>) -> Self {
        Error::Busy { message: message.into() }
    }
    pub fn client(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::Client { code, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::client(ErrorCode::BadRequest, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::client(ErrorCode::NotFound, message)
    }
    pub fn unauthorized() -> Self {
        Self::client(ErrorCode::Unauthorized, "missing, invalid or revoked token: log in again")
    }
    pub fn conflict(message: impl Into<String>, head: Option<Entry>) -> Self {
        Error::Conflict { message: message.into(), head: head.map(Box::new) }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Client { code, .. } => *code,
            Error::Conflict { .. } => ErrorCode::Conflict,
            Error::MissingBlocks { .. } => ErrorCode::MissingBlocks,
            Error::RateLimited { .. } | Error::Busy { .. } => ErrorCode::TooManyRequests,
            Error::Storage(_) => ErrorCode::Unavailable,
            Error::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The JSON detail sent to the client (internal causes stay in the log).
    pub fn detail(&self) -> ErrorDetail {
        let (message, head, missing) = match self {
            Error::Client { message, .. } => (message.clone(), None, Vec::new()),
            Error::Conflict { message, head } => (message.clone(), head.as_deref().cloned(), Vec::new()),
            Error::MissingBlocks { missing } => (self.to_string() + ": upload them first", None, missing.clone()),
            Error::RateLimited { .. } | Error::Busy { .. } => (self.to_string(), None, Vec::new()),
            Error::Storage(e) => {
                tracing::error!(error = %e, "block storage failed");
                ("block storage is unavailable right now; try again shortly".to_owned(), None, Vec::new())
            }
            Error::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "internal error");
                ("internal server error; the server log has details".to_owned(), None, Vec::new())
            }
        };
        ErrorDetail { code: self.code(), message, head, missing }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Internal(e.into())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Internal(e.into())
    }
}

impl From<ferry_shared::PathError> for Error {
    fn from(e: ferry_shared::PathError) -> Self {
        Error::client(ErrorCode::InvalidPath, format!("invalid path: {e}"))
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let detail = self.detail();
        let status = StatusCode::from_u16(detail.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, axum::Json(ErrorBody { error: detail })).into_response();
        let retry_after = match self {
            Error::RateLimited { retry_after } => Some(retry_after.as_secs_f64().ceil().max(1.0) as u64),
            Error::Busy { .. } => Some(1),
            Error::Storage(_) => Some(STORAGE_RETRY_AFTER_SECS),
            _ => None,
        };
        if let Some(secs) = retry_after {
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        resp
    }
}
