//! The daemon keeps the client's bandwidth limits to the configured ones
//! and their schedule: set at once on a change, and again at each edge of
//! the schedule's window — on a timer, not by polling.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::status::Status;
use crate::net::remote::Remote;
use crate::net::schedule::{Limits, show_rate};

/// The longest the daemon trusts its timer to the next edge: a suspended
/// machine, a changed clock or an edge in an hour a change of daylight
/// saving time skips or repeats is caught within this.
const RECHECK: Duration = Duration::from_secs(15 * 60);

/// Sets the limits `l` gives for the local time now, on the client and in
/// the status; returns that time.
pub fn apply(l: &Limits, remote: &Remote, status: &Mutex<Status>) -> jiff::Zoned {
    let now = jiff::Zoned::now();
    let (up, down, scheduled) = l.at(&now);
    if remote.limits() != (up, down) {
        remote.set_limits(up, down);
        tracing::info!(up = show_rate(up), down = show_rate(down), scheduled, "bandwidth limits");
    }
    if let Ok(mut s) = status.lock() {
        (s.limit_up, s.limit_down) = (up, down);
        s.limit_schedule = l.schedule.map(|s| format!("{s}{}", if scheduled { " (now)" } else { "" }));
    }
    crate::daemon::status::changed();
    now
}

/// Keeps the client's limits what `limits` says for the local time now: set
/// at once on a change, and again at each edge of the schedule's window.
pub async fn follow(remote: Remote, status: Arc<Mutex<Status>>, mut limits: tokio::sync::watch::Receiver<Limits>) {
    loop {
        let l = *limits.borrow_and_update();
        let now = apply(&l, &remote, &status);
        let wait = l
            .next_edge(&now)
            .map(|t| {
                Duration::from_millis((t.timestamp().as_millisecond() - now.timestamp().as_millisecond()).max(0) as u64)
            })
            .map_or(RECHECK, |w| w.min(RECHECK));
        tokio::select! {
            changed = limits.changed() => if changed.is_err() { return },
            // Without a schedule nothing changes until the config does.
            () = tokio::time::sleep(wait), if l.schedule.is_some() => {}
        }
    }
}
