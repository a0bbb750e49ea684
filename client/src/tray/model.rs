//! The tray's menu as data, from the daemon's status: a pure function, so
//! every state is tested without a desktop.

use crate::daemon::status::{Status, SyncState};

/// What the menu shows, taken from the daemon's status (`ferry status --json`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    /// `None`: the daemon is not running.
    pub state: Option<SyncState>,
    pub reason: Option<String>,
    pub pending_files: u64,
    pub pending_bytes: u64,
    pub paused_until: Option<i64>,
    pub conflicts: Vec<String>,
    /// Recent changes, newest first (`path` of each).
    pub recent: Vec<String>,
}

impl View {
    pub fn from_status(s: &Status) -> View {
        View {
            state: Some(s.state),
            reason: s.reason.clone(),
            pending_files: (s.pending_uploads + s.pending_downloads) as u64,
            pending_bytes: s.pending_upload_bytes + s.pending_download_bytes,
            paused_until: s.paused_until,
            conflicts: s.conflicts.clone(),
            recent: Vec::new(),
        }
    }

    /// The icon to show.
    pub fn icon(&self) -> IconKind {
        match self.state {
            None | Some(SyncState::Offline) => IconKind::Offline,
            Some(SyncState::Idle) => IconKind::Idle,
            Some(SyncState::Syncing) => IconKind::Syncing,
            Some(SyncState::Paused) => IconKind::Paused,
            Some(SyncState::Error) => IconKind::Error,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IconKind {
    Idle,
    Syncing,
    Paused,
    Offline,
    Error,
}

/// One menu entry: `id` says what a click does (see [`Action::of`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Entry { id: String, label: String, enabled: bool },
    Submenu { label: String, enabled: bool, items: Vec<Item> },
    Separator,
}

fn entry(id: &str, label: impl Into<String>) -> Item {
    Item::Entry { id: id.to_owned(), label: label.into(), enabled: true }
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GB", n as f64 / 1e9),
        n if n >= 1 << 20 => format!("{:.0} MB", n as f64 / 1e6),
        n if n >= 1 << 10 => format!("{:.0} KB", n as f64 / 1e3),
        n => format!("{n} bytes"),
    }
}

/// `HH:MM` of a Unix-milliseconds time, at `offset_secs` from UTC.
pub fn clock(ms: i64, offset_secs: i64) -> String {
    let (_, _, _, h, m, _) = ferry_shared::time::utc(ms + offset_secs * 1000);
    format!("{h:02}:{m:02}")
}

/// The first line: what the daemon is doing, in words.
pub fn status_line(v: &View, offset_secs: i64) -> String {
    match v.state {
        None => "Ferry is not running".to_owned(),
        Some(SyncState::Idle) => "Up to date".to_owned(),
        Some(SyncState::Syncing) if v.pending_files > 0 => {
            let files = if v.pending_files == 1 { "1 file".to_owned() } else { format!("{} files", v.pending_files) };
            format!("Syncing {files} — {} left", bytes(v.pending_bytes))
        }
        Some(SyncState::Syncing) => "Syncing…".to_owned(),
        Some(SyncState::Paused) => match v.paused_until {
            Some(u) => format!("Paused until {}", clock(u, offset_secs)),
            None => "Paused".to_owned(),
        },
        Some(SyncState::Offline) => "Offline — retrying".to_owned(),
        Some(SyncState::Error) => format!("Error: {}", v.reason.as_deref().unwrap_or("see ferry status")),
    }
}

/// The whole menu.
pub fn menu(v: &View, offset_secs: i64) -> Vec<Item> {
    let running = v.state.is_some();
    let mut items = vec![
        Item::Entry { id: "status".into(), label: status_line(v, offset_secs), enabled: false },
        Item::Separator,
        entry("open-folder", "Open folder"),
        entry("open-web", "Open web app"),
    ];
    // Labels show names as they read (no right-to-left override hides a part).
    let shown = |p: &String| ferry_shared::path::visible(p).into_owned();
    let recent: Vec<Item> = v.recent.iter().take(10).map(|p| entry(&format!("recent:{p}"), shown(p))).collect();
    items.push(Item::Submenu { label: "Recent changes".into(), enabled: !recent.is_empty(), items: recent });
    let conflicts: Vec<Item> = v.conflicts.iter().map(|p| entry(&format!("conflict:{p}"), shown(p))).collect();
    items.push(Item::Submenu {
        label: format!("Conflicts ({})", conflicts.len()),
        enabled: !conflicts.is_empty(),
        items: conflicts,
    });
    items.push(Item::Separator);
    if v.state == Some(SyncState::Paused) {
        items.push(entry("resume", "Resume"));
    } else if running {
        items.push(entry("pause-hour", "Pause for 1 hour"));
        items.push(entry("pause-tomorrow", "Pause until tomorrow"));
    }
    items.push(entry("preferences", "Preferences"));
    items.push(Item::Separator);
    items.push(entry("quit", "Quit"));
    items
}

/// What a click on the entry with this id does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    OpenFolder,
    OpenWeb,
    /// Open the folder holding this item (a path in the synced folder).
    Reveal(String),
    /// Pause until this time (Unix milliseconds).
    PauseUntil(i64),
    Resume,
    Preferences,
    Quit,
}

impl Action {
    pub fn of(id: &str, now_ms: i64, offset_secs: i64) -> Option<Action> {
        Some(match id {
            "open-folder" => Action::OpenFolder,
            "open-web" => Action::OpenWeb,
            "pause-hour" => Action::PauseUntil(now_ms + 3_600_000),
            "pause-tomorrow" => Action::PauseUntil(tomorrow_morning(now_ms, offset_secs)),
            "resume" => Action::Resume,
            "preferences" => Action::Preferences,
            "quit" => Action::Quit,
            _ => {
                let p = id.strip_prefix("recent:").or_else(|| id.strip_prefix("conflict:"))?;
                Action::Reveal(p.to_owned())
            }
        })
    }
}

/// 08:00 local time tomorrow, as Unix milliseconds.
pub fn tomorrow_morning(now_ms: i64, offset_secs: i64) -> i64 {
    let day = 86_400_000;
    let local = now_ms + offset_secs * 1000;
    let midnight = local - local.rem_euclid(day);
    midnight + day + 8 * 3_600_000 - offset_secs * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Entry { label, .. } | Item::Submenu { label, .. } => Some(label.clone()),
                Item::Separator => None,
            })
            .collect()
    }

    fn view(state: &str) -> View {
        let state = serde_json::from_value(serde_json::Value::String(state.into())).expect("a state");
        View { state: Some(state), ..View::default() }
    }

    #[test]
    fn every_state_has_its_line_icon_and_actions() {
        let idle = menu(&view("idle"), 0);
        assert_eq!(
            labels(&idle),
            [
                "Up to date",
                "Open folder",
                "Open web app",
                "Recent changes",
                "Conflicts (0)",
                "Pause for 1 hour",
                "Pause until tomorrow",
                "Preferences",
                "Quit"
            ]
        );
        assert_eq!(view("idle").icon(), IconKind::Idle);
        let syncing = View { pending_files: 3, pending_bytes: 12_000_000, ..view("syncing") };
        assert_eq!(status_line(&syncing, 0), "Syncing 3 files — 12 MB left");
        assert_eq!(syncing.icon(), IconKind::Syncing);
        // 14:00 UTC, shown at UTC+1.
        let paused = View {
            paused_until: Some(1_800_014_400_000 - 1_800_014_400_000 % 86_400_000 + 14 * 3_600_000),
            ..view("paused")
        };
        assert_eq!(status_line(&paused, 3600), "Paused until 15:00");
        let m = labels(&menu(&paused, 0));
        assert!(m.contains(&"Resume".to_owned()) && !m.contains(&"Pause for 1 hour".to_owned()), "{m:?}");
        assert_eq!(paused.icon(), IconKind::Paused);
        assert_eq!(status_line(&view("offline"), 0), "Offline — retrying");
        assert_eq!(view("offline").icon(), IconKind::Offline);
        let error = View { reason: Some("the folder is missing".into()), ..view("error") };
        assert_eq!(status_line(&error, 0), "Error: the folder is missing");
        assert_eq!(error.icon(), IconKind::Error);
        let gone = View::default();
        assert_eq!(status_line(&gone, 0), "Ferry is not running");
        assert!(!labels(&menu(&gone, 0)).iter().any(|l| l.starts_with("Pause") || l == "Resume"));
    }

    #[test]
    fn recent_changes_and_conflicts_open_their_folder() {
        let v = View {
            conflicts: vec!["a (conflicted copy from pc 2024-03-05 060708).txt".into()],
            recent: (0..15).map(|i| format!("f{i}.txt")).collect(),
            ..view("idle")
        };
        let m = menu(&v, 0);
        let sub = |label: &str| {
            m.iter()
                .find_map(|i| match i {
                    Item::Submenu { label: l, items, enabled } if l.starts_with(label) => {
                        Some((items.clone(), *enabled))
                    }
                    _ => None,
                })
                .unwrap()
        };
        assert_eq!(sub("Recent changes").0.len(), 10, "the last 10");
        let (conflicts, enabled) = sub("Conflicts (1)");
        assert!(enabled);
        let Item::Entry { id, .. } = &conflicts[0] else { panic!() };
        assert_eq!(Action::of(id, 0, 0), Some(Action::Reveal(v.conflicts[0].clone())));
        assert_eq!(Action::of("pause-hour", 1000, 0), Some(Action::PauseUntil(3_601_000)));
        assert_eq!(Action::of("quit", 0, 0), Some(Action::Quit));
        assert_eq!(Action::of("status", 0, 0), None);
    }

    #[test]
    fn tomorrow_morning_is_eight_oclock_local() {
        // 2024-03-05 23:30 UTC; at UTC+2 it is already the 6th, 01:30.
        let now = 1_709_681_400_000;
        assert_eq!(ferry_shared::time::utc_string(tomorrow_morning(now, 0)), "2024-03-06 08:00:00");
        assert_eq!(ferry_shared::time::utc_string(tomorrow_morning(now, 7200)), "2024-03-07 06:00:00");
    }
}
