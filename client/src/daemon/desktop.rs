//! Desktop notifications of what a person should know without looking:
//! new conflict copies, folders shared with them, access removed. A burst of them makes one notification (the
//! notifier waits [`BATCH`] after the first before it says anything); they
//! can be switched off in the config (`"notifications": false`); and a
//! failure to notify (no session bus, no notification service) is logged
//! once and never touches syncing.
//!
//! On Linux and the BSDs notifications go over D-Bus (`notify-rust` with
//! zbus: no GTK, no C library); elsewhere they are only logged for now.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::daemon::status::Status;

/// How long the notifier gathers a burst before it says anything.
pub const BATCH: Duration = Duration::from_secs(2);

/// What one notification says of new conflict copies (paths in the folder).
pub fn conflict_notice(new: &[String]) -> Option<(String, String)> {
    let keep = "both versions are kept; `ferry conflicts` lists the copies";
    // Names read as they are (no right-to-left override hides a part).
    let new: Vec<String> = new.iter().map(|p| ferry_shared::path::visible(p).into_owned()).collect();
    match &new[..] {
        [] => None,
        [one] => Some(("Ferry made a conflict copy".to_owned(), format!("{one}: {keep}"))),
        [first, rest @ ..] => Some((
            format!("Ferry made {} conflict copies", new.len()),
            format!("{first} and {} more: {keep}", rest.len()),
        )),
    }
}

/// What one notification says of news of shared folders.
pub fn share_notice(new: &[String]) -> Option<(String, String)> {
    let new: Vec<String> = new.iter().map(|p| ferry_shared::path::visible(p).into_owned()).collect();
    match &new[..] {
        [] => None,
        [one] => Some(("Ferry: shared folders".to_owned(), one.clone())),
        [first, rest @ ..] => Some((
            format!("Ferry: {} changes to shared folders", new.len()),
            format!("{first}; and {} more (`ferry status` lists them)", rest.len()),
        )),
    }
}

/// Shows a notification; with `reveal`, clicking it (or its "Show in
/// folder" action) opens that file's folder with the file selected.
#[cfg(all(unix, not(target_os = "macos")))]
async fn show(summary: &str, body: &str, reveal: Option<PathBuf>) -> anyhow::Result<()> {
    use notify_rust::{Notification, NotificationResponse};
    let mut n = Notification::new();
    n.appname("Ferry").summary(summary).body(body).icon("folder-sync");
    if reveal.is_some() {
        n.action("default", "Show in folder").action("show", "Show in folder");
    }
    let handle = n.show_async().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(file) = reveal {
        // Until the person clicks it or it closes; syncing does not wait.
        tokio::spawn(async move {
            let mut clicked = false;
            // Not forever: a service that never says it closed one would
            // keep this task and its bus connection.
            let waited = handle.wait_for_action_async(|r| {
                clicked = matches!(r, NotificationResponse::Default | NotificationResponse::Action(_));
            });
            let _ = tokio::time::timeout(Duration::from_secs(3600), waited).await;
            if clicked {
                show_in_folder(&file).await;
            }
        });
    }
    Ok(())
}

#[cfg(not(all(unix, not(target_os = "macos"))))]
async fn show(summary: &str, body: &str, _reveal: Option<PathBuf>) -> anyhow::Result<()> {
    tracing::info!(summary, body, "notification");
    Ok(())
}

/// Opens the file manager at `file`'s folder with `file` selected: the
/// desktop's `org.freedesktop.FileManager1.ShowItems` (GNOME Files, Nemo,
/// Caja, Dolphin, Thunar), or else the folder with `xdg-open`.
#[cfg(all(unix, not(target_os = "macos")))]
pub async fn show_in_folder(file: &Path) {
    let shown = async {
        let uri = reqwest::Url::from_file_path(file).map_err(|()| anyhow::anyhow!("not an absolute path"))?;
        let bus = zbus::Connection::session().await?;
        bus.call_method(
            Some("org.freedesktop.FileManager1"),
            "/org/freedesktop/FileManager1",
            Some("org.freedesktop.FileManager1"),
            "ShowItems",
            &(vec![uri.as_str()], ""),
        )
        .await?;
        anyhow::Ok(())
    };
    if let Err(e) = shown.await {
        let folder = file.parent().unwrap_or(file);
        tracing::info!(error = %e, folder = %folder.display(), "no file manager on the bus; opening the folder");
        let opened = std::process::Command::new("xdg-open").arg(folder).spawn();
        // Waited for (off the runtime), so it leaves no zombie behind.
        match tokio::task::spawn_blocking(move || opened.and_then(|mut c| c.wait())).await {
            Ok(Ok(s)) if s.success() => {}
            Ok(Ok(s)) => tracing::warn!(%s, folder = %folder.display(), "xdg-open could not open the folder"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, folder = %folder.display(), "cannot open the folder (is xdg-open installed?)")
            }
            Err(e) => tracing::warn!(error = %e, "xdg-open's waiter"),
        }
    }
}

/// Tells the person about conflict copies the daemon made, each burst
/// once; woken by `poke` after every sync round. With `show` off (the
/// person switched notifications off) each burst is only logged.
pub async fn notifier(status: Arc<Mutex<Status>>, poke: Arc<tokio::sync::Notify>, show_them: bool) {
    let lists =
        |s: &Arc<Mutex<Status>>| s.lock().map(|s| (s.conflicts.clone(), s.share_news.clone())).unwrap_or_default();
    let folder = status.lock().map(|s| PathBuf::from(&s.folder)).unwrap_or_default();
    let (c, n) = lists(&status);
    let mut seen = (c.len(), n.len());
    let mut warned = false;
    loop {
        poke.notified().await;
        let (c, n) = lists(&status);
        if c.len() <= seen.0 && n.len() <= seen.1 {
            seen = (seen.0.min(c.len()), seen.1.min(n.len()));
            continue;
        }
        tokio::time::sleep(BATCH).await;
        let (c, n) = lists(&status);
        let new = &c[seen.0.min(c.len())..];
        // The first new copy is the one shown in its folder.
        let reveal = new.first().map(|p| folder.join(p));
        let notices =
            [conflict_notice(new).map(|n| (n, reveal)), share_notice(&n[seen.1.min(n.len())..]).map(|n| (n, None))];
        // Logged whether shown or not: the end of a burst, which tests await.
        tracing::info!(
            "news burst: {} conflict copies, {} shared-folder news{}",
            new.len(),
            n.len().saturating_sub(seen.1),
            if show_them { "" } else { " (notifications are off: not shown)" }
        );
        seen = (c.len(), n.len());
        if !show_them {
            continue;
        }
        for ((summary, body), reveal) in notices.into_iter().flatten() {
            match show(&summary, &body, reveal).await {
                Ok(()) => tracing::debug!(%summary, "notified"),
                Err(e) if !warned => {
                    warned = true;
                    tracing::warn!(error = %e, "cannot show desktop notifications (syncing goes on)");
                }
                Err(e) => tracing::debug!(error = %e, "notification not shown"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_notification_per_burst() {
        assert_eq!(conflict_notice(&[]), None);
        let (s, b) = conflict_notice(&["a (conflicted copy).txt".to_owned()]).unwrap();
        assert_eq!(s, "Ferry made a conflict copy");
        assert!(b.starts_with("a (conflicted copy).txt: both versions are kept"), "{b}");
        let many: Vec<String> = (0..1000).map(|i| format!("f{i} (conflicted copy).txt")).collect();
        let (s, b) = conflict_notice(&many).unwrap();
        assert_eq!(s, "Ferry made 1000 conflict copies");
        assert!(b.starts_with("f0 (conflicted copy).txt and 999 more"), "{b}");
        assert_eq!(share_notice(&[]), None);
        let (s, b) = share_notice(&["alice shared Team with you (editor)".to_owned()]).unwrap();
        assert_eq!((s.as_str(), b.as_str()), ("Ferry: shared folders", "alice shared Team with you (editor)"));
        let (s, _) = share_notice(&["a".to_owned(), "b".to_owned()]).unwrap();
        assert_eq!(s, "Ferry: 2 changes to shared folders");
    }
}
