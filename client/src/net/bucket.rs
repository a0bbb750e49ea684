//! The token bucket that holds transfers to a byte rate: one per direction,
//! shared by every transfer in it (block uploads, block downloads). It
//! lends: a chunk may pass at once and the next waits until the rate has
//! paid for it, so the average holds the limit however the chunks come.
//! Small requests (the long poll, commits, journal pages) are not held back.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The size of the pieces a limited body is sent or read in.
pub const PIECE: usize = 64 << 10;

#[derive(Debug)]
struct Bucket {
    /// Bytes per second; `None`: unlimited.
    rate: Option<u64>,
    /// Bytes that may pass now (negative: owed).
    tokens: f64,
    last: Instant,
}

/// One direction's limit.
#[derive(Debug)]
pub struct Limiter {
    bucket: Mutex<Bucket>,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter { bucket: Mutex::new(Bucket { rate: None, tokens: 0.0, last: Instant::now() }) }
    }
}

impl Limiter {
    pub fn set(&self, rate: Option<u64>) {
        let mut b = self.bucket.lock().expect("limiter poisoned");
        b.rate = rate.filter(|r| *r > 0);
        b.tokens = 0.0;
        b.last = Instant::now();
    }

    pub fn rate(&self) -> Option<u64> {
        self.bucket.lock().expect("limiter poisoned").rate
    }

    /// How long `n` more bytes must wait (and takes them).
    fn charge(&self, n: usize) -> Duration {
        self.charge_at(n, Instant::now())
    }

    /// [`Limiter::charge`] at `now` (a test gives its own clock).
    fn charge_at(&self, n: usize, now: Instant) -> Duration {
        let mut b = self.bucket.lock().expect("limiter poisoned");
        let Some(rate) = b.rate else { return Duration::ZERO };
        let rate = rate as f64;
        // What the rate has paid since, keeping at most a quarter second's worth.
        let burst = (rate / 4.0).max(PIECE as f64);
        b.tokens = (b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate).min(burst);
        b.last = now;
        b.tokens -= n as f64;
        if b.tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-b.tokens / rate) }
    }

    /// Waits until `n` bytes may pass.
    pub async fn take(&self, n: usize) {
        let wait = self.charge(n);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_charges_what_passed() {
        let l = Limiter::default();
        assert_eq!(l.charge(1 << 30), Duration::ZERO, "unlimited");
        l.set(Some(1_000_000));
        let start = l.bucket.lock().expect("limiter").last;
        // Nothing paid yet: a second's worth waits a second.
        assert_eq!(l.charge_at(1_000_000, start), Duration::from_secs(1));
        // Two seconds on, at most a quarter second's worth was kept: the
        // next second's worth waits three quarters.
        let w = l.charge_at(1_000_000, start + Duration::from_secs(3));
        assert_eq!(w.as_millis(), 750, "{w:?}");
    }
}
