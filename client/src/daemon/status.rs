//! What the daemon reports through `ferry status`.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::sync::progress::{Progress, Report};

/// News of shared folders kept in the status (the oldest go first).
const MAX_NEWS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    Idle,
    Syncing,
    Paused,
    Offline,
    Error,
}

impl SyncState {
    /// As it reads in the status (`idle`, `syncing`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Idle => "idle",
            SyncState::Syncing => "syncing",
            SyncState::Paused => "paused",
            SyncState::Offline => "offline",
            SyncState::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub state: SyncState,
    /// Why the daemon is paused, offline or in error.
    pub reason: Option<String>,
    pub pending_uploads: usize,
    pub pending_upload_bytes: u64,
    pub pending_downloads: usize,
    pub pending_download_bytes: u64,
    /// Unix milliseconds of the last completed sync round.
    pub last_sync: Option<i64>,
    /// When a timed pause ends (Unix milliseconds).
    #[serde(default)]
    pub paused_until: Option<i64>,
    /// Bandwidth limits, bytes per second (none: unlimited).
    #[serde(default)]
    pub limit_up: Option<u64>,
    #[serde(default)]
    pub limit_down: Option<u64>,
    /// The limits' schedule, for people (`(now)` while its window is open).
    #[serde(default)]
    pub limit_schedule: Option<String>,
    /// Conflict copies made by this daemon (paths in the folder).
    pub conflicts: Vec<String>,
    /// Folders not synced to this device (`ferry exclude`).
    #[serde(default)]
    pub excluded: Vec<String>,
    /// Shared folders here: `path: shared by OWNER, ROLE` (or yours).
    #[serde(default)]
    pub shares: Vec<String>,
    /// What the person should hear of shares, oldest first: folders shared
    /// with them, access removed, read-only edits kept aside.
    #[serde(default)]
    pub share_news: Vec<String>,
    /// The most recent errors, newest last.
    pub recent_errors: Vec<String>,
    /// Items on the server this disk cannot hold (`path: reason`); they stay
    /// on the server and on other devices.
    #[serde(default)]
    pub kept_off_disk: Vec<String>,
    /// Items in the folder that are not synced (symbolic links, names that
    /// are not UTF-8 or hold control characters), with the reason.
    #[serde(default)]
    pub not_synced: Vec<String>,
    pub folder: String,
    pub server: String,
    pub cursor: i64,
    pub files: usize,
    /// Bytes sent to the server since the daemon started (bodies plus ~200
    /// bytes of headers per request).
    pub bytes_sent: u64,
    /// Bytes received from the server since the daemon started (bodies plus
    /// ~200 bytes of headers per answer).
    #[serde(default)]
    pub bytes_received: u64,
    /// Of `bytes_received`: block data (what downloads fetched).
    #[serde(default)]
    pub block_bytes_received: u64,
}

impl Status {
    pub fn new(folder: String, server: String) -> Status {
        Status {
            state: SyncState::Syncing,
            reason: None,
            pending_uploads: 0,
            pending_upload_bytes: 0,
            pending_downloads: 0,
            pending_download_bytes: 0,
            last_sync: None,
            paused_until: None,
            limit_up: None,
            limit_down: None,
            limit_schedule: None,
            conflicts: Vec::new(),
            shares: Vec::new(),
            excluded: Vec::new(),
            share_news: Vec::new(),
            recent_errors: Vec::new(),
            kept_off_disk: Vec::new(),
            not_synced: Vec::new(),
            folder,
            server,
            cursor: 0,
            files: 0,
            bytes_sent: 0,
            bytes_received: 0,
            block_bytes_received: 0,
        }
    }

    /// Takes in what the client has moved so far.
    pub fn set_traffic(&mut self, t: crate::net::remote::Traffic) {
        self.bytes_sent = t.sent;
        self.bytes_received = t.received;
        self.block_bytes_received = t.block_bytes_received;
    }

    pub fn error(&mut self, e: impl std::fmt::Display) {
        let msg = e.to_string();
        tracing::warn!(error = %msg, "sync error");
        self.recent_errors.push(msg);
        if self.recent_errors.len() > 20 {
            self.recent_errors.remove(0);
        }
    }
}

/// The engine's reports, kept in the status.
impl Progress for Mutex<Status> {
    fn report(&self, report: Report) {
        let Ok(mut s) = self.lock() else { return };
        match report {
            Report::Shares(shares) => s.shares = shares,
            Report::Cursor(cursor) => s.cursor = cursor,
            Report::ShareNews(news) => {
                s.share_news.push(news);
                let n = s.share_news.len();
                if n > MAX_NEWS {
                    s.share_news.drain(..n - MAX_NEWS);
                }
            }
            Report::NotSynced(items) => s.not_synced = items,
            Report::KeptOffDisk(items) => s.kept_off_disk = items,
            Report::Conflict(copy) => s.conflicts.push(copy),
            Report::Error(e) => s.error(e),
            Report::Planned(p) => {
                s.pending_uploads = p.uploads;
                s.pending_upload_bytes = p.upload_bytes;
                s.pending_downloads = p.downloads;
                s.pending_download_bytes = p.download_bytes;
            }
            Report::Done { done, traffic } => {
                s.pending_uploads = s.pending_uploads.saturating_sub(done.uploads);
                s.pending_upload_bytes = s.pending_upload_bytes.saturating_sub(done.upload_bytes);
                s.pending_downloads = s.pending_downloads.saturating_sub(done.downloads);
                s.pending_download_bytes = s.pending_download_bytes.saturating_sub(done.download_bytes);
                s.set_traffic(traffic);
            }
            Report::RoundEnd { at_ms, files, traffic } => {
                s.pending_uploads = 0;
                s.pending_downloads = 0;
                s.pending_upload_bytes = 0;
                s.pending_download_bytes = 0;
                s.last_sync = Some(at_ms);
                s.files = files;
                s.set_traffic(traffic);
            }
        }
    }
}

/// Bumped whenever the daemon's status changes in a way a watcher shows
/// (its state, the end of a round): what `ferry tray` waits on.
fn changes() -> &'static tokio::sync::watch::Sender<u64> {
    static CHANGES: std::sync::OnceLock<tokio::sync::watch::Sender<u64>> = std::sync::OnceLock::new();
    CHANGES.get_or_init(|| tokio::sync::watch::channel(0).0)
}

/// Says the status changed.
pub fn changed() {
    changes().send_modify(|v| *v = v.wrapping_add(1));
}

/// Wakes on each [`changed`].
pub fn subscribe() -> tokio::sync::watch::Receiver<u64> {
    changes().subscribe()
}
