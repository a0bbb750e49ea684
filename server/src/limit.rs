//! Login throttling: a user name that keeps failing waits longer and longer
//! before it may try again, so passwords cannot be guessed at speed.
//!
//! The first [`FREE_FAILURES`] wrong passwords cost nothing; then each attempt
//! waits 1 s, 2 s, 4 s, … up to [`MAX_WAIT`] after the last failure. Attempts
//! in flight count as failures until they finish, so parallel guesses gain
//! nothing. Names that do not exist are throttled the same way (the answers
//! do not tell them apart). A success, or an hour without failures, clears a
//! name. Tokens of devices already logged in are not affected.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed before attempts must wait.
pub const FREE_FAILURES: u32 = 5;
/// The longest wait between attempts.
pub const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// A name quiet for this long starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// Names remembered at most (the oldest are dropped first).
const MAX_NAMES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    in_flight: u32,
    last_failure: Instant,
}

#[derive(Debug, Default)]
pub struct LoginLimiter {
    names: Mutex<HashMap<String, Record>>,
}

/// An attempt allowed to go ahead; report how it went with [`Attempt::finish`].
#[must_use]
pub struct Attempt<'a> {
    limiter: &'a LoginLimiter,
    name: String,
    done: bool,
}

fn wait_after(failures: u32) -> Duration {
    match failures.checked_sub(FREE_FAILURES) {
        None => Duration::ZERO,
        Some(n) => Duration::from_secs(1u64 << n.min(20)).min(MAX_WAIT),
    }
}

impl LoginLimiter {
    /// Starts an attempt for `name`, or says how long it must wait.
    pub fn begin(&self, name: &str, now: Instant) -> Result<Attempt<'_>, Duration> {
        let mut names = self.names.lock().expect("limiter poisoned");
        if names.len() >= MAX_NAMES {
            names.retain(|_, r| r.in_flight > 0 || now.duration_since(r.last_failure) < FORGET_AFTER);
            if names.len() >= MAX_NAMES
                && let Some(oldest) = names.iter().filter(|(_, r)| r.in_flight == 0).min_by_key(|(_, r)| r.last_failure)
            {
                let key = oldest.0.clone();
                names.remove(&key);
            }
        }
        let r = names.entry(name.to_owned()).or_insert(Record { failures: 0, in_flight: 0, last_failure: now });
        if r.in_flight == 0 && now.duration_since(r.last_failure) >= FORGET_AFTER {
            r.failures = 0;
        }
        let ready_at = r.last_failure + wait_after(r.failures + r.in_flight);
        if r.failures + r.in_flight >= FREE_FAILURES && now < ready_at {
            return Err(ready_at - now);
        }
        r.in_flight += 1;
        Ok(Attempt { limiter: self, name: name.to_owned(), done: false })
    }

    fn end(&self, name: &str, ok: bool, now: Instant) {
        let mut names = self.names.lock().expect("limiter poisoned");
        let Some(r) = names.get_mut(name) else { return };
        r.in_flight = r.in_flight.saturating_sub(1);
        if ok {
            if r.in_flight == 0 {
                names.remove(name);
            } else {
                r.failures = 0;
            }
        } else {
            r.failures = r.failures.saturating_add(1);
            r.last_failure = now;
        }
    }
}

impl Attempt<'_> {
    pub fn finish(mut self, ok: bool) {
        self.done = true;
        self.limiter.end(&self.name, ok, Instant::now());
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        // An attempt that ended in an error counts as a failure.
        if !self.done {
            self.limiter.end(&self.name, false, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_after_the_free_failures_and_a_success_clears_them() {
        let l = LoginLimiter::default();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES {
            l.begin("alice", t0).expect("free").finish(false);
        }
        // The sixth attempt waits about a second after the last failure.
        let wait = l.begin("alice", Instant::now()).err().expect("must wait");
        assert!(wait > Duration::from_millis(500) && wait <= Duration::from_secs(1), "{wait:?}");
        // Other names are not affected.
        l.begin("bob", Instant::now()).expect("bob is free").finish(true);
        // After the wait, one more try; a failure doubles the wait.
        let later = Instant::now() + Duration::from_secs(2);
        l.begin("alice", later).expect("after the wait").finish(false);
        let wait = l.begin("alice", Instant::now()).err().expect("must wait");
        assert!(wait > Duration::from_secs(1), "{wait:?}");
        // A success (after waiting) clears the record.
        let much_later = Instant::now() + Duration::from_secs(10);
        l.begin("alice", much_later).expect("after the wait").finish(true);
        l.begin("alice", Instant::now()).expect("cleared").finish(false);
    }

    #[test]
    fn attempts_in_flight_count_and_errors_are_failures() {
        let l = LoginLimiter::default();
        let now = Instant::now();
        let held: Vec<Attempt<'_>> = (0..FREE_FAILURES).map(|_| l.begin("x", now).expect("free")).collect();
        assert!(l.begin("x", now).is_err(), "parallel guesses must not get past the limit");
        drop(held); // dropped unfinished: failures
        assert!(l.begin("x", Instant::now()).is_err());
        assert_eq!(wait_after(FREE_FAILURES + 40), MAX_WAIT);
    }
}
