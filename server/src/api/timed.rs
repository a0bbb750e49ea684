//! Request bodies that must keep arriving: a body that sends nothing for
//! [`IDLE`], or falls below [`MIN_RATE`] on average after a grace of
//! [`GRACE`] (Apache's `mod_reqtimeout` rule: the deadline moves a second
//! later for every `MIN_RATE` bytes received), is cut off, and the request
//! is answered 408 and its connection closed. So a client that opens
//! uploads and sends a few bytes holds nothing for long: no connection,
//! no handler, and never a thread (no handler waits for the network on a
//! blocking thread).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use ferry_shared::api::ErrorCode;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::error::Error;

/// Longest pause between two pieces of a body.
pub const IDLE: Duration = Duration::from_secs(30);
/// Time a body gets before its average rate counts.
pub const GRACE: Duration = Duration::from_secs(10);
/// Lowest average rate of a body, in bytes per second.
pub const MIN_RATE: u64 = 1024;

/// A body cut off for arriving too slowly.
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived too slowly (nothing for {} s, or under {} bytes/s)", IDLE.as_secs(), MIN_RATE)]
pub struct TooSlow;

pin_project_lite::pin_project! {
    struct TimedBody {
        #[pin]
        inner: Body,
        #[pin]
        deadline: Sleep,
        started: Instant,
        received: u64,
        cut: Arc<AtomicBool>,
    }
}

impl TimedBody {
    fn new(inner: Body, cut: Arc<AtomicBool>) -> Self {
        let now = Instant::now();
        TimedBody { inner, deadline: tokio::time::sleep_until(deadline(now, 0, now)), started: now, received: 0, cut }
    }
}

/// When the body must have sent more: `IDLE` after its last piece, and no
/// later than the rate allows for what it has sent (a body behind the rate
/// is cut as soon as it pauses).
fn deadline(started: Instant, received: u64, now: Instant) -> Instant {
    (now + IDLE).min(started + GRACE + Duration::from_secs(received / MIN_RATE))
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let mut this = self.project();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.received += data.len() as u64;
                    let now = Instant::now();
                    this.deadline.as_mut().reset(deadline(*this.started, *this.received, now));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => match this.deadline.poll(cx) {
                Poll::Ready(()) => {
                    this.cut.store(true, Ordering::Relaxed);
                    Poll::Ready(Some(Err(axum::Error::new(TooSlow))))
                }
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware: every request body keeps to the rule above; a request
/// whose body was cut off is answered 408 whatever its handler made of
/// the error, and its connection closes.
pub async fn bodies(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let cut = Arc::new(AtomicBool::new(false));
    let req = req.map(|b| Body::new(TimedBody::new(b, Arc::clone(&cut))));
    let resp = next.run(req).await;
    if !cut.load(Ordering::Relaxed) {
        return resp;
    }
    tracing::debug!("a request body arrived too slowly: cut off");
    let mut resp = Error::client(ErrorCode::RequestTimeout, TooSlow.to_string()).into_response();
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_follows_the_rate_and_the_pauses() {
        let t0 = Instant::now();
        // Nothing yet: the grace.
        assert_eq!(deadline(t0, 0, t0), t0 + GRACE);
        // Fast: IDLE after the last piece.
        assert_eq!(deadline(t0, 100 << 20, t0 + Duration::from_secs(5)), t0 + Duration::from_secs(5) + IDLE);
        // A byte every few seconds: the rate's deadline, past the grace.
        let d = deadline(t0, 5, t0 + Duration::from_secs(9));
        assert_eq!(d, t0 + Duration::from_secs(10));
        // Behind the rate already: due (the next pause cuts it).
        let now = t0 + Duration::from_secs(60);
        assert!(deadline(t0, 10 * MIN_RATE, now) < now);
    }
}
