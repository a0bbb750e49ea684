//! The file watcher: a hint that something changed on disk. The scan that
//! follows is the truth, so a missed or coalesced event costs only latency.

use std::path::Path;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::events::Event;
use crate::sync::scan::{MARKER, TEMP_PREFIX};

/// Starts watching `root` recursively; events are sent as [`Event::Local`]
/// (Ferry's own temp files are left out). Keep the watcher alive.
pub fn start(root: &Path, tx: mpsc::Sender<Event>) -> anyhow::Result<notify::RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(ev) = res else {
            let _ = tx.try_send(Event::Local); // overflow or error: rescan
            return;
        };
        if matches!(ev.kind, notify::EventKind::Access(_)) {
            return;
        }
        let ours = !ev.paths.is_empty()
            && ev.paths.iter().all(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(TEMP_PREFIX) || n == MARKER)
            });
        if !ours {
            let _ = tx.try_send(Event::Local);
        }
    })?;
    watcher.watch(root, RecursiveMode::Recursive)?;
    Ok(watcher)
}
