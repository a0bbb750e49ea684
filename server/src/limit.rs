//! Throttles and caps: failed logins wait longer and longer (per name and
//! address, per address, per name), and work in flight is counted per key
//! (connections per address, uploads per user, zips per user) so that no
//! one client takes what all share.
//!
//! # Logins
//! A [`LoginLimiter`] lets the first `free` failures of a key cost nothing;
//! then each attempt waits 1 s, 2 s, 4 s, … up to [`MAX_WAIT`] after the
//! last failure. Attempts in flight count as failures until they finish,
//! so parallel guesses gain nothing. [`Logins`] holds three:
//! - a name from one address: [`PAIR_FREE`] failures, the guessing of one
//!   password from one place;
//! - an address, across every name: [`ADDRESS_FREE`] failures (a
//!   success does not clear it, so an attacker's own account resets
//!   nothing), the spraying of many names from one place;
//! - a name, across every address: [`NAME_FREE`] failures, guessing from
//!   many places. It holds back only addresses that have themselves failed
//!   for the name: the right password from anywhere else still gets in,
//!   so nobody can lock a user out by failing on purpose.
//!
//! Names that do not exist are throttled the same way (the answers do not
//! tell them apart). A success clears the name's records; an hour without
//! failures clears any key. Tokens of devices already logged in are not
//! affected.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Failures of one name from one address before attempts must wait.
pub const PAIR_FREE: u32 = 5;
/// Failures from one address, all names together, before attempts wait.
pub const ADDRESS_FREE: u32 = 50;
/// Failures of one name, all addresses together, before addresses that
/// failed for it must wait.
pub const NAME_FREE: u32 = 100;
/// Shares one user may offer to names that are no user's before each
/// more waits (the answer says whether a name exists).
pub const UNKNOWN_NAMES_FREE: u32 = 20;
/// The longest wait between attempts.
pub const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// A key quiet for this long starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// Keys remembered at most per limiter (the oldest are dropped first).
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    in_flight: u32,
    last_failure: Instant,
}

/// Failed attempts per key, with growing waits.
#[derive(Debug)]
pub struct LoginLimiter {
    free: u32,
    /// Whether a success clears the key's failures.
    cleared_by_success: bool,
    keys: Mutex<HashMap<String, Record>>,
}

/// An attempt allowed to go ahead; report how it went with [`Attempt::finish`].
#[must_use]
pub struct Attempt<'a> {
    limiter: &'a LoginLimiter,
    key: String,
    done: bool,
}

impl LoginLimiter {
    pub fn new(free: u32, cleared_by_success: bool) -> Self {
        LoginLimiter { free, cleared_by_success, keys: Mutex::default() }
    }

    fn wait_after(&self, failures: u32) -> Duration {
        match failures.checked_sub(self.free) {
            None => Duration::ZERO,
            Some(n) => Duration::from_secs(1u64 << n.min(20)).min(MAX_WAIT),
        }
    }

    /// How long `key` must wait before its next attempt (zero: it may go).
    pub fn wait(&self, key: &str, now: Instant) -> Duration {
        let keys = self.keys.lock().expect("limiter poisoned");
        match keys.get(key) {
            Some(r) if now.duration_since(r.last_failure) < FORGET_AFTER || r.in_flight > 0 => {
                let n = r.failures + r.in_flight;
                if n >= self.free {
                    (r.last_failure + self.wait_after(n)).saturating_duration_since(now)
                } else {
                    Duration::ZERO
                }
            }
            _ => Duration::ZERO,
        }
    }

    /// Failures `key` has on record (forgotten after an hour).
    pub fn failures(&self, key: &str, now: Instant) -> u32 {
        let keys = self.keys.lock().expect("limiter poisoned");
        keys.get(key).filter(|r| now.duration_since(r.last_failure) < FORGET_AFTER).map_or(0, |r| r.failures)
    }

    /// Starts an attempt for `key`, or says how long it must wait.
    pub fn begin(&self, key: &str, now: Instant) -> Result<Attempt<'_>, Duration> {
        let mut keys = self.keys.lock().expect("limiter poisoned");
        if keys.len() >= MAX_KEYS {
            keys.retain(|_, r| r.in_flight > 0 || now.duration_since(r.last_failure) < FORGET_AFTER);
            if keys.len() >= MAX_KEYS
                && let Some(oldest) = keys.iter().filter(|(_, r)| r.in_flight == 0).min_by_key(|(_, r)| r.last_failure)
            {
                let k = oldest.0.clone();
                keys.remove(&k);
            }
        }
        let r = keys.entry(key.to_owned()).or_insert(Record { failures: 0, in_flight: 0, last_failure: now });
        if r.in_flight == 0 && now.duration_since(r.last_failure) >= FORGET_AFTER {
            r.failures = 0;
        }
        let ready_at = r.last_failure + self.wait_after(r.failures + r.in_flight);
        if r.failures + r.in_flight >= self.free && now < ready_at {
            return Err(ready_at - now);
        }
        r.in_flight += 1;
        Ok(Attempt { limiter: self, key: key.to_owned(), done: false })
    }

    /// Ends an attempt: `Some(ok)` for a password checked, `None` for one
    /// never checked (another throttle held it back).
    fn end(&self, key: &str, ok: Option<bool>, now: Instant) {
        let mut keys = self.keys.lock().expect("limiter poisoned");
        let Some(r) = keys.get_mut(key) else { return };
        r.in_flight = r.in_flight.saturating_sub(1);
        let Some(ok) = ok else {
            if r.in_flight == 0 && r.failures == 0 {
                keys.remove(key);
            }
            return;
        };
        if ok {
            if !self.cleared_by_success {
                if r.in_flight == 0 && r.failures == 0 {
                    keys.remove(key);
                }
            } else if r.in_flight == 0 {
                keys.remove(key);
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
        self.limiter.end(&self.key, Some(ok), Instant::now());
    }

    /// Gives the place back without a verdict (the password was not checked).
    pub fn cancel(mut self) {
        self.done = true;
        self.limiter.end(&self.key, None, Instant::now());
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        // An attempt that ended in an error counts as a failure.
        if !self.done {
            self.limiter.end(&self.key, Some(false), Instant::now());
        }
    }
}

/// The login throttles (see the module's documentation).
#[derive(Debug)]
pub struct Logins {
    pair: LoginLimiter,
    address: LoginLimiter,
    name: LoginLimiter,
}

impl Default for Logins {
    fn default() -> Self {
        Logins {
            pair: LoginLimiter::new(PAIR_FREE, true),
            address: LoginLimiter::new(ADDRESS_FREE, false),
            name: LoginLimiter::new(NAME_FREE, true),
        }
    }
}

/// A login attempt let through every throttle that applies to it.
#[must_use]
pub struct LoginAttempt<'a>(Vec<Attempt<'a>>);

impl LoginAttempt<'_> {
    pub fn finish(self, ok: bool) {
        for a in self.0 {
            a.finish(ok);
        }
    }

    /// The password was not checked (the server was busy): no verdict.
    pub fn cancel(self) {
        self.0.into_iter().for_each(Attempt::cancel);
    }
}

impl Logins {
    /// Starts a login as `name` from `address`, or says how long to wait.
    pub fn begin<'a>(
        &'a self,
        name: &str,
        address: Option<IpAddr>,
        now: Instant,
    ) -> Result<LoginAttempt<'a>, Duration> {
        let addr = address.map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        let pair_key = format!("{addr} {name}");
        // The name's own throttle holds back only addresses that failed for it.
        let name_wait = self.name.wait(name, now);
        if !name_wait.is_zero() && self.pair.failures(&pair_key, now) > 0 {
            return Err(name_wait);
        }
        let mut attempts = Vec::with_capacity(3);
        let mut take = |limiter: &'a LoginLimiter, key: &str| match limiter.begin(key, now) {
            Ok(a) => {
                attempts.push(a);
                Ok(())
            }
            Err(wait) => Err(wait),
        };
        let r = take(&self.pair, &pair_key)
            .and_then(|()| take(&self.address, &addr))
            .and_then(|()| if name_wait.is_zero() { take(&self.name, name) } else { Ok(()) });
        match r {
            Ok(()) => Ok(LoginAttempt(attempts)),
            Err(wait) => {
                // Held back before any check: what was taken is given back as it was.
                attempts.into_iter().for_each(Attempt::cancel);
                Err(wait)
            }
        }
    }
}

/// Work in flight per key, each at most some number at once: a guard
/// holds a place until it is dropped.
#[derive(Debug)]
pub struct InFlight<K: Hash + Eq + Clone>(Arc<Mutex<HashMap<K, usize>>>);

impl<K: Hash + Eq + Clone> Default for InFlight<K> {
    fn default() -> Self {
        InFlight(Arc::default())
    }
}

/// A place taken in an [`InFlight`]; given back on drop.
#[derive(Debug)]
pub struct Place<K: Hash + Eq + Clone> {
    map: Arc<Mutex<HashMap<K, usize>>>,
    key: K,
}

impl<K: Hash + Eq + Clone> InFlight<K> {
    /// A place for `key` if it has fewer than `max` (0: no cap).
    pub fn try_take(&self, key: K, max: usize) -> Option<Place<K>> {
        let mut map = self.0.lock().expect("in-flight map poisoned");
        let n = map.entry(key.clone()).or_insert(0);
        if max > 0 && *n >= max {
            if *n == 0 {
                map.remove(&key);
            }
            return None;
        }
        *n += 1;
        Some(Place { map: Arc::clone(&self.0), key })
    }

    /// How many `key` holds now.
    pub fn count(&self, key: &K) -> usize {
        self.0.lock().expect("in-flight map poisoned").get(key).copied().unwrap_or(0)
    }
}

impl<K: Hash + Eq + Clone> Drop for Place<K> {
    fn drop(&mut self) {
        let mut map = self.map.lock().expect("in-flight map poisoned");
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("an address"))
    }

    #[test]
    fn waits_grow_after_the_free_failures_and_a_success_clears_them() {
        let l = LoginLimiter::new(PAIR_FREE, true);
        let t0 = Instant::now();
        for _ in 0..PAIR_FREE {
            l.begin("alice", t0).expect("free").finish(false);
        }
        // The sixth attempt waits about a second after the last failure.
        let wait = l.begin("alice", Instant::now()).err().expect("must wait");
        assert!(wait > Duration::from_millis(500) && wait <= Duration::from_secs(1), "{wait:?}");
        // Other keys are not affected.
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
        let l = LoginLimiter::new(PAIR_FREE, true);
        let now = Instant::now();
        let held: Vec<Attempt<'_>> = (0..PAIR_FREE).map(|_| l.begin("x", now).expect("free")).collect();
        assert!(l.begin("x", now).is_err(), "parallel guesses must not get past the limit");
        drop(held); // dropped unfinished: failures
        assert!(l.begin("x", Instant::now()).is_err());
        assert_eq!(l.wait_after(PAIR_FREE + 40), MAX_WAIT);
    }

    #[test]
    fn nobody_locks_a_user_out_and_one_address_sprays_little() {
        let l = Logins::default();
        let now = Instant::now();
        // An attacker fails for alice from many addresses until her name's
        // own throttle is past its free failures.
        for i in 0..NAME_FREE {
            let a = ip(&format!("10.0.{}.{}", i / 200, i % 200));
            l.begin("alice", a, now).expect("the first try of each address").finish(false);
        }
        // Those addresses now wait; one that never failed for her gets in.
        assert!(l.begin("alice", ip("10.0.0.1"), now).is_err());
        l.begin("alice", ip("192.168.1.7"), now).expect("alice from her own address").finish(true);
        // Bob's name is untouched.
        l.begin("bob", ip("10.0.0.1"), now).expect("bob").finish(true);
        // One address trying many names is held back after its free failures.
        for i in 0..ADDRESS_FREE {
            l.begin(&format!("user{i}"), ip("172.16.0.9"), now).expect("free").finish(false);
        }
        assert!(l.begin("someone-else", ip("172.16.0.9"), now).is_err(), "spraying names from one address");
        // A success there clears nothing of the address's record.
        assert!(l.begin("bob", ip("172.16.0.9"), now).is_err());
    }

    #[test]
    fn places_are_capped_per_key_and_given_back() {
        let f: InFlight<i64> = InFlight::default();
        let a = f.try_take(1, 2).expect("first");
        let _b = f.try_take(1, 2).expect("second");
        assert!(f.try_take(1, 2).is_none());
        assert!(f.try_take(2, 2).is_some(), "another key");
        drop(a);
        assert_eq!(f.count(&1), 1);
        assert!(f.try_take(1, 2).is_some());
        assert!(f.try_take(3, 0).is_some(), "0 is no cap");
    }
}
