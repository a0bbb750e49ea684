//! `ferry wait`: waits until the daemon has nothing left to do, with a
//! progress bar in a terminal and plain lines when piped.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::daemon::control::status;
use crate::daemon::status::{Status, SyncState};

/// How often the daemon is asked (a display refresh, not a sync mechanism).
const REFRESH: Duration = Duration::from_millis(250);

struct Pending {
    uploads: u64,
    upload_bytes: u64,
    downloads: u64,
    download_bytes: u64,
}

impl Pending {
    fn of(s: &Status) -> Pending {
        Pending {
            uploads: s.pending_uploads as u64,
            upload_bytes: s.pending_upload_bytes,
            downloads: s.pending_downloads as u64,
            download_bytes: s.pending_download_bytes,
        }
    }

    fn describe(&self) -> String {
        format!(
            "↑ {} files ({}), ↓ {} files ({}) left",
            self.uploads,
            HumanBytes(self.upload_bytes),
            self.downloads,
            HumanBytes(self.download_bytes)
        )
    }
}

/// Returns once the daemon is idle with nothing pending (twice in a row, so a
/// change the watcher is still settling on is not missed).
pub async fn wait(socket: &Path, timeout: Option<Duration>) -> anyhow::Result<()> {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {wide_msg}")?
            .progress_chars("=> "),
    );
    let plain = bar.is_hidden();
    let started = Instant::now();
    let (mut total, mut last_pending, mut idle_checks) = (0u64, 0u64, 0);
    let mut last_line = String::new();
    loop {
        let v = status(socket).await?;
        let reason = v.reason.as_deref().unwrap_or("");
        let p = Pending::of(&v);
        let bytes = p.upload_bytes + p.download_bytes;
        if bytes > last_pending {
            total += bytes - last_pending; // more work arrived
        }
        last_pending = bytes;
        match v.state {
            SyncState::Paused => {
                bar.finish_and_clear();
                bail!("the daemon is paused ({reason}); `ferry resume` continues");
            }
            SyncState::Error => {
                bar.finish_and_clear();
                bail!("the daemon stopped: {reason}");
            }
            SyncState::Idle if p.uploads + p.downloads == 0 => idle_checks += 1,
            _ => idle_checks = 0,
        }
        if idle_checks >= 2 {
            bar.finish_and_clear();
            println!("up to date ({} files)", v.files);
            return Ok(());
        }
        let line = match v.state {
            SyncState::Offline => format!("offline: {reason} (retrying)"),
            _ => p.describe(),
        };
        if plain {
            if line != last_line && (p.uploads + p.downloads > 0 || v.state == SyncState::Offline) {
                println!("{line}");
            }
        } else {
            bar.set_length(total);
            bar.set_position(total.saturating_sub(bytes));
            bar.set_message(line.clone());
            bar.tick();
        }
        last_line = line;
        if let Some(t) = timeout
            && started.elapsed() > t
        {
            bar.finish_and_clear();
            bail!("still syncing after {} s: {last_line}", t.as_secs());
        }
        tokio::time::sleep(REFRESH).await;
    }
}
