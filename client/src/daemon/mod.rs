//! `ferry daemon`: one control loop over a closed set of events.
//!
//! Events come from the long poll (the server's journal moved), the file
//! watcher (something changed on disk; a hint, the scan is the truth), a
//! periodic rescan, and the control socket. Each wake-up runs a sync round.
//! Network loss means "offline" and a retry with backoff and jitter from the
//! saved cursor, never a deletion. A sync folder that vanishes (an unplugged
//! disk, a renamed folder) or cannot be read means state `error` with the
//! reason: the daemon stays up, looks again every few seconds, and resumes
//! by itself when the folder and its marker are back.

#[cfg(unix)]
pub mod control;
pub mod desktop;
pub mod events;
pub mod limits;
pub mod logs;
pub mod status;
pub mod watcher;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use self::status::{Status, SyncState};
use crate::config::{Config, Dirs};
use crate::net::remote::Remote;
use crate::sync::engine::{Engine, Error as EngineError, FolderUnavailable, Prefetches, prefetch_round};
use crate::sync::seams::{LocalDisk, SystemClock};
use crate::sync::state::State;
pub use events::{Control, Event};

/// A pause the user asked for: kept in the state directory, so it holds
/// across restarts; a timed one ends by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct UserPause {
    until: Option<i64>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl UserPause {
    fn load(dirs: &Dirs) -> Option<UserPause> {
        let p: UserPause = serde_json::from_str(&std::fs::read_to_string(dirs.pause_file()).ok()?).ok()?;
        p.until.is_none_or(|u| u > now_ms()).then_some(p)
    }

    fn save(this: Option<UserPause>, dirs: &Dirs) {
        let r = match this {
            Some(p) => crate::sync::seams::write_file(
                &dirs.pause_file(),
                serde_json::to_string(&p).unwrap_or_default().as_bytes(),
                false,
            ),
            None => std::fs::remove_file(dirs.pause_file())
                .or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) }),
        };
        if let Err(e) = r {
            tracing::warn!(error = format!("{e:#}"), "cannot keep the pause across restarts");
        }
    }

    fn reason(&self) -> String {
        match self.until {
            Some(u) => format!(
                "paused by the user until {} UTC (`ferry resume` resumes now)",
                ferry_shared::time::utc_string(u)
            ),
            None => "paused by the user (`ferry resume` resumes)".to_owned(),
        }
    }
}

/// Quiet period after the last disk event before a round starts.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// When to look again at files that were still being written.
const DEFERRED_RETRY: Duration = Duration::from_millis(100);
/// Full rescan even without events (missed watcher events, clock games).
const RESCAN: Duration = Duration::from_secs(300);
/// How often a missing sync folder is looked for (one read of its marker).
const FOLDER_RETRY: Duration = Duration::from_secs(2);

fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(500) * 2u32.saturating_pow(attempt.min(7));
    let capped = base.min(Duration::from_secs(60));
    let jitter = rand::random::<f64>() * 0.5 + 0.75;
    capped.mul_f64(jitter)
}

fn set_excluded<D: crate::sync::seams::Disk, A: crate::sync::seams::Api, C: crate::sync::seams::Clock>(
    engine: &mut Engine<D, A, C>,
    status: &Mutex<Status>,
    paths: Vec<ferry_shared::RelPath>,
) {
    if let Ok(mut s) = status.lock() {
        s.excluded = paths.iter().map(ToString::to_string).collect();
    }
    engine.excluded = paths;
}

fn set_paused_until(status: &Mutex<Status>, until: Option<i64>) {
    if let Ok(mut s) = status.lock() {
        s.paused_until = until;
    }
}

fn set_state(status: &Mutex<Status>, state: SyncState, reason: Option<String>) {
    if let Ok(mut s) = status.lock() {
        s.state = state;
        s.reason = reason;
    }
    crate::daemon::status::changed();
}

pub async fn run(dirs: Dirs, config: Config, token: String) -> anyhow::Result<()> {
    let status = Arc::new(Mutex::new(Status::new(config.folder.display().to_string(), config.server.clone())));
    let remote = Remote::new(&config.server, &token);
    let (limits, limits_rx) = tokio::sync::watch::channel(config.limits());
    let limits = Arc::new(limits);
    {
        // Set before the first transfer; `follow` keeps them up to date.
        let (up, down, _) = config.limits().at(&jiff::Zoned::now());
        remote.set_limits(up, down);
    }
    tokio::spawn(limits::follow(remote.clone(), Arc::clone(&status), limits_rx));
    let seams = (LocalDisk::new(config.folder.clone()), remote.clone(), SystemClock);
    let mut engine = Engine::open(
        seams,
        config.device.clone(),
        &dirs.state_db(),
        (config.max_deletes, config.max_delete_share),
        status.clone(),
    )?;
    set_excluded(&mut engine, &status, config.excluded.clone());
    if let Some(n) = std::env::var("FERRY_STREAM_MIN").ok().and_then(|v| v.parse().ok()) {
        engine.stream_min = n;
    }
    tracing::info!(folder = %config.folder.display(), server = %config.server, "syncing");

    let (tx, mut rx) = mpsc::channel::<Event>(1024);
    let (cursor_tx, cursor_rx) = watch::channel(engine.cursor);
    let (pending_tx, pending_rx) = watch::channel(0i64);
    tokio::spawn(poller(remote.clone(), cursor_rx, pending_tx, tx.clone(), Arc::clone(&status)));
    // Started once the folder is there: a start-up removes stale temp files.
    let mut prefetch = Some(Prefetcher {
        prefetches: engine.prefetches.clone(),
        disk: engine.disk.clone(),
        remote: remote.clone(),
        state: Mutex::new(State::open(&dirs.state_db())?),
        device: config.device.clone(),
    });
    let mut pending_rx = Some(pending_rx);
    #[cfg(unix)]
    tokio::spawn(crate::daemon::control::serve(
        dirs.control_socket(),
        Arc::clone(&status),
        tx.clone(),
        Arc::clone(&limits),
        remote.clone(),
    ));
    let notices = Arc::new(tokio::sync::Notify::new());
    tokio::spawn(crate::daemon::desktop::notifier(Arc::clone(&status), Arc::clone(&notices), config.notifications));
    // Set up once the folder is there (and again each time it comes back).
    let mut _watcher: Option<notify::RecommendedWatcher> = None;
    let mut folder_ok = false;

    let mut user_pause = UserPause::load(&dirs);
    let mut paused = user_pause.is_some();
    if let Some(p) = &user_pause {
        set_state(&status, SyncState::Paused, Some(p.reason()));
        set_paused_until(&status, p.until);
    }
    let mut failures = 0u32;
    // Something deferred (files still being written, deletions settling):
    // when to look again.
    let mut deferred: Option<Duration> = None;
    loop {
        // A timed pause that has run out.
        if let Some(UserPause { until: Some(u) }) = user_pause
            && u <= now_ms()
        {
            tracing::info!("the pause ended");
            user_pause = None;
            UserPause::save(None, &dirs);
            paused = false;
            set_paused_until(&status, None);
        }
        if !paused && !folder_ok {
            // Start-up, or the folder was gone: only a look at its marker
            // until it is back, then a fresh start (partial downloads a
            // vanished folder kept are removed, the watcher set up again).
            match engine.check_root() {
                Ok(()) => {
                    // Another disk may be mounted there now: its own name rules.
                    engine.disk.detect_rules();
                    // Prefetches of a folder that was gone are not to be trusted.
                    engine.prefetches.drop_all(&engine.disk).await;
                    let stale = engine.remove_stale_temp_files().await.unwrap_or(0);
                    if stale > 0 {
                        tracing::info!(stale, "removed partial downloads left by an earlier run");
                    }
                    if let Err(e) = engine.drop_stale_announcements().await {
                        tracing::debug!(error = format!("{e:#}"), "dropping an earlier run's announcements; later");
                    }
                    _watcher = match crate::daemon::watcher::start(&config.folder, tx.clone()) {
                        Ok(w) => Some(w),
                        Err(e) => {
                            tracing::warn!(error = format!("{e:#}"), "cannot watch the folder; rescanning instead");
                            None
                        }
                    };
                    folder_ok = true;
                    if let (Some(p), Some(rx)) = (prefetch.take(), pending_rx.take()) {
                        tokio::spawn(p.run(rx, tx.clone()));
                    }
                }
                Err(EngineError::FolderUnavailable(e)) => {
                    tracing::warn!(error = %e, "the sync folder is unavailable");
                    set_state(&status, SyncState::Error, Some(e.to_string()));
                }
                Err(e) => return Err(e.into()),
            }
        }
        if !paused && folder_ok {
            deferred = None;
            set_state(&status, SyncState::Syncing, None);
            let round = async {
                engine.refresh_remote().await?;
                let _ = cursor_tx.send(engine.cursor);
                engine.sync_round().await
            };
            match round.await {
                Ok(stats) => {
                    let _ = cursor_tx.send(engine.cursor);
                    // What the round's scan and plan used goes back to the OS.
                    crate::alloc::release_free_memory();
                    // Files still being written: not idle, look again shortly.
                    deferred = (stats.deferred > 0)
                        .then(|| DEFERRED_RETRY.max(Duration::from_millis(stats.recheck_ms.max(0) as u64)));
                    let state = if deferred.is_some() { SyncState::Syncing } else { SyncState::Idle };
                    set_state(&status, state, None);
                    notices.notify_one();
                    if stats.errors > 0 {
                        // Try again after a backoff, not only on the next event.
                        failures += 1;
                        tracing::debug!(errors = stats.errors, "round finished with errors; retrying later");
                    } else {
                        failures = 0;
                    }
                }
                Err(EngineError::FolderUnavailable(e @ FolderUnavailable::Missing(_))) => {
                    tracing::warn!(error = %e, "the sync folder is unavailable");
                    set_state(&status, SyncState::Error, Some(e.to_string()));
                    folder_ok = false;
                    _watcher = None;
                }
                Err(EngineError::FolderUnavailable(e)) => {
                    failures += 1;
                    tracing::warn!(error = %e, "cannot read the sync folder; retrying");
                    set_state(&status, SyncState::Error, Some(e.to_string()));
                }
                Err(EngineError::MassDelete(e)) => {
                    tracing::warn!(error = %e, "paused");
                    paused = true;
                    set_state(&status, SyncState::Paused, Some(e.to_string()));
                }
                Err(e) if !e.is_retryable() => {
                    let e = anyhow::Error::from(e);
                    set_state(&status, SyncState::Error, Some(format!("{e:#}")));
                    return Err(e);
                }
                Err(e) => {
                    failures += 1;
                    // The error with its causes, as one line.
                    let e = format!("{:#}", anyhow::Error::from(e));
                    tracing::warn!(error = e, "sync round failed; retrying");
                    set_state(&status, SyncState::Offline, Some(e.clone()));
                    if let Ok(mut s) = status.lock() {
                        s.error(e);
                    }
                }
            }
        }
        // Wait for a reason to run again.
        let retry = if paused {
            user_pause.and_then(|p| p.until).map(|u| Duration::from_millis((u - now_ms()).max(0) as u64))
        } else if !folder_ok {
            Some(FOLDER_RETRY)
        } else if deferred.is_some() {
            deferred
        } else {
            (failures > 0).then(|| backoff(failures))
        };
        let event = tokio::select! {
            e = rx.recv() => e,
            _ = tokio::time::sleep(retry.unwrap_or(RESCAN)) => Some(Event::Local),
        };
        let Some(event) = event else { return Ok(()) };
        let mut pending = vec![event];
        // Debounce: wait for a quiet moment, draining what arrives meanwhile.
        if matches!(pending[0], Event::Local) {
            loop {
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(e)) => pending.push(e),
                    Ok(None) => return Ok(()),
                    Err(_) => break,
                }
            }
        }
        while let Ok(e) = rx.try_recv() {
            pending.push(e);
        }
        for e in pending {
            if let Event::Control(c) = e {
                match c {
                    Control::Pause { until } => {
                        let p = UserPause { until };
                        paused = true;
                        user_pause = Some(p);
                        UserPause::save(user_pause, &dirs);
                        set_state(&status, SyncState::Paused, Some(p.reason()));
                        set_paused_until(&status, until);
                    }
                    Control::Excluded(paths) => set_excluded(&mut engine, &status, paths),
                    Control::Resume { confirm_deletes } => {
                        paused = false;
                        if user_pause.take().is_some() {
                            UserPause::save(None, &dirs);
                        }
                        set_paused_until(&status, None);
                        engine.deletes_confirmed = confirm_deletes;
                    }
                }
            }
        }
    }
}

/// Holds one long poll at a time; wakes the loop when the journal moves,
/// and the prefetcher when uploads are announced or dropped.
async fn poller(
    remote: Remote,
    mut cursor: watch::Receiver<i64>,
    pending: watch::Sender<i64>,
    tx: mpsc::Sender<Event>,
    status: Arc<Mutex<Status>>,
) {
    let mut failures = 0u32;
    // The server moved (`ferry server URL`): a poll held by the old address,
    // or a wait after failures there, ends at once.
    let mut moves = remote.moves();
    loop {
        let at = *cursor.borrow_and_update();
        let seen = *pending.borrow();
        moves.mark_unchanged();
        let polled = tokio::select! {
            r = remote.poll(at, seen, Duration::from_secs(60)) => r,
            _ = moves.changed() => {
                failures = 0;
                continue;
            }
        };
        match polled {
            Ok(p) => {
                failures = 0;
                if p.pending != seen {
                    pending.send_replace(p.pending);
                }
                if p.changes {
                    if tx.send(Event::Remote).await.is_err() {
                        return;
                    }
                    // Wait until the loop has taken the changes in.
                    if cursor.changed().await.is_err() {
                        return;
                    }
                }
            }
            Err(e) if e.is_cursor_reset() => {
                // The loop's round lists again from 0 (see `Engine::refresh_remote`).
                if tx.send(Event::Remote).await.is_err() || cursor.changed().await.is_err() {
                    return;
                }
            }
            Err(e) => {
                failures += 1;
                tracing::debug!(error = %e, "long poll failed");
                set_state(&status, SyncState::Offline, Some(e.to_string()));
                tokio::select! {
                    _ = tokio::time::sleep(backoff(failures)) => {}
                    _ = moves.changed() => failures = 0,
                }
                // Back online? Let the loop try a round.
                let _ = tx.send(Event::Remote).await;
            }
        }
    }
}

/// Fetches files other devices are still uploading (streaming sync), beside
/// the loop: announcements wake it through the long poll.
struct Prefetcher {
    prefetches: Prefetches<LocalDisk>,
    disk: LocalDisk,
    remote: Remote,
    /// Its own connection to the state database (for local copies of blocks).
    state: Mutex<State>,
    device: String,
}

/// How long the server holds a request for a block still being uploaded.
const BLOCK_WAIT_SECS: u64 = 30;

impl Prefetcher {
    async fn run(self, mut pending: watch::Receiver<i64>, tx: mpsc::Sender<Event>) {
        let mut failures = 0u32;
        loop {
            let started = tokio::time::Instant::now();
            let r =
                prefetch_round(&self.prefetches, &self.disk, &self.remote, &self.state, &self.device, BLOCK_WAIT_SECS)
                    .await;
            if self.prefetches.has_orphans() {
                // A round that finds nothing to do drops them.
                let _ = tx.try_send(Event::Remote);
            }
            match r {
                // Blocks not there yet: look again (the wait was the server's).
                Ok(true) => {
                    failures = 0;
                    tokio::time::sleep_until(started + Duration::from_secs(1)).await;
                }
                Ok(false) => {
                    failures = 0;
                    if pending.changed().await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    failures += 1;
                    tracing::debug!(error = format!("{e:#}"), "prefetching; retrying");
                    tokio::time::sleep(backoff(failures)).await;
                }
            }
        }
    }
}
