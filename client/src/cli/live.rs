//! `ferry status`: what the daemon is doing, as text. In a terminal it is a
//! live view (files and bytes left, the rate, the time left) redrawn in
//! place until Ctrl-C; piped, or with `--once`, it is printed once.

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::daemon::control::status;
use crate::daemon::status::{Status, SyncState};
use crate::net::schedule::show_rate;
use indicatif::{DecimalBytes, HumanDuration};

/// How often the view asks the daemon (a display refresh, not a sync
/// mechanism).
const REFRESH: Duration = Duration::from_millis(500);

/// The rate is what moved over this much time.
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// The status as lines of text (what `ferry status` prints when piped).
pub fn lines(s: &Status) -> Vec<String> {
    let mut out = vec![format!("state: {}", s.state.as_str())];
    if let Some(r) = &s.reason {
        out.push(format!("  {r}"));
    }
    out.push(format!("folder: {}  server: {}", s.folder, s.server));
    out.push(format!(
        "pending: {} uploads ({} bytes), {} downloads ({} bytes)",
        s.pending_uploads, s.pending_upload_bytes, s.pending_downloads, s.pending_download_bytes
    ));
    out.push(format!("files synced: {}", s.files));
    if s.limit_up.is_some() || s.limit_down.is_some() || s.limit_schedule.is_some() {
        out.push(format!("bandwidth now: uploads {}, downloads {}", show_rate(s.limit_up), show_rate(s.limit_down)));
        if let Some(schedule) = &s.limit_schedule {
            out.push(format!("  schedule: {schedule}"));
        }
    }
    for (items, title) in [
        (&s.shares, "shared folders:"),
        (&s.excluded, "folders not synced to this device (`ferry include PATH` brings one back):"),
        (&s.share_news, "news of shared folders:"),
        (&s.kept_off_disk, "on the server but kept off this disk (it cannot hold the name):"),
        (&s.not_synced, "in the folder but not synced:"),
    ] {
        if !items.is_empty() {
            out.push(title.to_owned());
            out.extend(items.iter().map(|e| format!("  {e}")));
        }
    }
    if !s.recent_errors.is_empty() {
        out.push("recent errors:".to_owned());
        out.extend(s.recent_errors.iter().rev().take(5).map(|e| format!("  {e}")));
    }
    out
}

/// The bytes moved over the last [`RATE_WINDOW`].
#[derive(Default)]
struct Rate {
    samples: VecDeque<(Instant, u64)>,
}

impl Rate {
    /// Takes the bytes moved so far; returns bytes per second lately.
    fn add(&mut self, at: Instant, moved: u64) -> Option<f64> {
        self.samples.push_back((at, moved));
        while self.samples.len() > 2 && at.duration_since(self.samples[0].0) > RATE_WINDOW {
            self.samples.pop_front();
        }
        let (t0, b0) = *self.samples.front()?;
        let dt = at.duration_since(t0).as_secs_f64();
        (dt >= 0.9).then(|| moved.saturating_sub(b0) as f64 / dt)
    }
}

/// `1 file`, `3 files`.
fn files(n: u64) -> String {
    format!("{n} file{}", if n == 1 { "" } else { "s" })
}

/// The live view's head: the state in words, what is left, how fast, how long.
pub fn progress(s: &Status, rate: Option<f64>) -> Vec<String> {
    let reason = s.reason.as_deref().unwrap_or("");
    let files = (s.pending_uploads + s.pending_downloads) as u64;
    let bytes = s.pending_upload_bytes + s.pending_download_bytes;
    let head = match s.state {
        SyncState::Idle if files == 0 => format!("Up to date: {}", self::files(s.files as u64)),
        SyncState::Paused => format!("Paused: {reason}"),
        SyncState::Offline => format!("Offline: {reason} (retrying)"),
        SyncState::Error => format!("Stopped: {reason}"),
        SyncState::Idle | SyncState::Syncing => {
            format!("Syncing: {}, {} left", self::files(files), DecimalBytes(bytes))
        }
    };
    let mut out = vec![head];
    if files > 0 {
        out.push(format!(
            "  ↑ {} ({})   ↓ {} ({})",
            self::files(s.pending_uploads as u64),
            DecimalBytes(s.pending_upload_bytes),
            self::files(s.pending_downloads as u64),
            DecimalBytes(s.pending_download_bytes)
        ));
        out.push(match rate {
            Some(r) if r >= 1.0 => {
                let eta = Duration::from_secs_f64((bytes as f64 / r).min(360_000.0));
                format!("  {}/s, about {} left", DecimalBytes(r as u64), HumanDuration(eta))
            }
            _ => "  measuring the rate…".to_owned(),
        });
    }
    out
}

/// Redraws the view in place until Ctrl-C (or the daemon goes away).
pub async fn live(socket: &Path) -> anyhow::Result<()> {
    let term = console::Term::stdout();
    let mut rate = Rate::default();
    let mut drawn = 0;
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        // Ctrl-C also leaves while the daemon is slow to answer.
        let v = tokio::select! {
            _ = &mut stop => return Ok(()),
            v = status(socket) => v?,
        };
        let moved = v.bytes_sent + v.bytes_received;
        let r = rate.add(Instant::now(), moved);
        let (rows, width) = term.size();
        let width = width as usize;
        let mut frame = progress(&v, r);
        frame.push(String::new());
        frame.extend(lines(&v).into_iter().skip(1));
        // No taller than the screen, so the next frame clears all of it.
        frame.truncate((rows as usize).saturating_sub(2).max(3));
        frame.push("(Ctrl-C to leave; `ferry status --once` prints everything)".to_owned());
        term.clear_last_lines(drawn)?;
        for l in &frame {
            // One screen line each, so the next frame clears exactly this one.
            term.write_line(&console::truncate_str(l, width.max(20), "…"))?;
        }
        drawn = frame.len();
        tokio::select! {
            _ = &mut stop => return Ok(()),
            () = tokio::time::sleep(REFRESH) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_and_the_time_left() {
        let mut r = Rate::default();
        let t = Instant::now();
        assert_eq!(r.add(t, 0), None, "no rate from one sample");
        assert_eq!(r.add(t + Duration::from_secs(2), 4_000_000), Some(2_000_000.0));
        // Old samples leave the window.
        r.add(t + Duration::from_secs(8), 4_000_000);
        assert_eq!(r.add(t + Duration::from_secs(10), 4_000_000), Some(0.0));
        let v = Status {
            pending_uploads: 2,
            pending_upload_bytes: 20_000_000,
            pending_downloads: 1,
            pending_download_bytes: 4_000_000,
            files: 10,
            ..Status::new(String::new(), String::new())
        };
        let p = progress(&v, Some(2_000_000.0));
        assert_eq!(p[0], "Syncing: 3 files, 24.00 MB left");
        assert!(p[1].contains("↑ 2 files (20.00 MB)") && p[1].contains("↓ 1 file (4.00 MB)"), "{p:?}");
        assert_eq!(p[2], "  2.00 MB/s, about 12 seconds left");
        let idle = Status { state: SyncState::Idle, files: 10, ..Status::new(String::new(), String::new()) };
        assert_eq!(progress(&idle, None), ["Up to date: 10 files"]);
    }
}
