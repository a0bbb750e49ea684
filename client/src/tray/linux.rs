//! The tray on Linux: tray-icon's ksni backend (a StatusNotifierItem over
//! D-Bus, its own worker thread, no GTK). One thread owns the icon and
//! rebuilds the menu on each status line; helper threads watch the
//! daemon's status and the menu's clicks.

use std::path::{Component, Path, PathBuf};
use std::sync::mpsc;

use anyhow::Context;
use tray_icon::menu::{IsMenuItem, Menu, MenuEvent, MenuItem, PredefinedMenuItem, Submenu};
use tray_icon::{Icon, TrayIconBuilder};

use super::model::{self, Action, Item, View};
use crate::config::Dirs;
use crate::daemon::control::{self, Request};
use crate::daemon::status::Status;

enum Msg {
    /// A status line from the daemon (`None`: it is not running).
    Status(Option<Box<Status>>),
    /// Recent changes, newest first.
    Recent(Vec<String>),
    Click(String),
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn icon(kind: model::IconKind) -> anyhow::Result<Icon> {
    Ok(Icon::from_rgba(super::draw_icon(kind, 22), 22, 22)?)
}

fn build(items: &[Item]) -> anyhow::Result<Menu> {
    fn add(items: &[Item], push: &mut dyn FnMut(&dyn IsMenuItem) -> tray_icon::menu::Result<()>) -> anyhow::Result<()> {
        for i in items {
            match i {
                Item::Entry { id, label, enabled } => push(&MenuItem::with_id(id.as_str(), label, *enabled, None))?,
                Item::Separator => push(&PredefinedMenuItem::separator())?,
                Item::Submenu { label, enabled, items } => {
                    let sub = Submenu::new(label, *enabled);
                    add(items, &mut |x| sub.append(x))?;
                    push(&sub)?;
                }
            }
        }
        Ok(())
    }
    let menu = Menu::new();
    add(items, &mut |x| menu.append(x))?;
    Ok(menu)
}

/// Follows the daemon's status over the control socket (again after it
/// restarts), and the recent changes on the server when the journal moves.
fn watch_status(dirs: Dirs, tx: mpsc::Sender<Msg>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
    let remote = dirs.load().ok().map(|(c, t)| crate::net::remote::Remote::new(&c.server, &t));
    rt.block_on(async move {
        let mut cursor = None;
        loop {
            if let Ok(stream) = tokio::net::UnixStream::connect(dirs.control_socket()).await {
                let (r, mut w) = stream.into_split();
                let ask = format!("{}\n", serde_json::to_string(&Request::Watch).unwrap_or_default());
                if w.write_all(ask.as_bytes()).await.is_ok() {
                    let mut lines = tokio::io::BufReader::new(r).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let Ok(status) = serde_json::from_str::<Status>(&line) else { continue };
                        let now = Some(status.cursor);
                        if tx.send(Msg::Status(Some(Box::new(status)))).is_err() {
                            return;
                        }
                        if now != cursor {
                            cursor = now;
                            if let Some(page) = match &remote {
                                Some(r) => r.activity(10, None).await.ok(),
                                None => None,
                            } {
                                let recent = page.events.into_iter().map(|e| e.path.to_string()).collect();
                                let _ = tx.send(Msg::Recent(recent));
                            }
                        }
                    }
                }
            }
            if tx.send(Msg::Status(None)).is_err() {
                return;
            }
            // The daemon is not there (yet): look again in a while.
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
    });
}

fn open(target: &Path) {
    match std::process::Command::new("xdg-open").arg(target).spawn() {
        // Waited for on the side, so it leaves no zombie behind.
        Ok(mut child) => drop(std::thread::Builder::new().name("tray-open".into()).spawn(move || child.wait())),
        Err(e) => tracing::warn!(error = %e, target = %target.display(), "cannot open (is xdg-open installed?)"),
    }
}

/// What a click on `rel` (a path in the folder, from the daemon or the
/// server) shows: the file itself, selected, while it is there, or else the
/// nearest folder inside `folder` that is. `None` for a path that would
/// leave the folder.
fn reveal_target(folder: &Path, rel: &str) -> Option<Result<PathBuf, PathBuf>> {
    if rel.is_empty() || !Path::new(rel).components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    let full = folder.join(rel);
    if full.exists() {
        return Some(Ok(full));
    }
    let there = full.ancestors().take_while(|p| p.starts_with(folder)).find(|p| p.is_dir());
    Some(Err(there.unwrap_or(folder).to_owned()))
}

/// Shows `rel` in the file manager (see [`reveal_target`]), on a thread of
/// its own: the menu never waits for the desktop.
fn reveal(folder: &Path, rel: &str) {
    match reveal_target(folder, rel) {
        None => tracing::warn!(path = rel, "not a path inside the folder; not shown"),
        Some(Err(nearest)) => open(&nearest),
        Some(Ok(file)) => {
            let shown = std::thread::Builder::new().name("tray-reveal".into()).spawn(move || {
                match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt.block_on(crate::daemon::desktop::show_in_folder(&file)),
                    Err(e) => tracing::warn!(error = %e, "cannot show the file"),
                }
            });
            if let Err(e) = shown {
                tracing::warn!(error = %e, "cannot show the file");
            }
        }
    }
}

/// Runs the tray until Quit (or the process is stopped).
pub fn run(dirs: Dirs) -> anyhow::Result<()> {
    let (config, _) = dirs.load()?;
    let offset = super::local_offset();
    let (tx, rx) = mpsc::channel();
    {
        let (dirs, tx) = (dirs.clone(), tx.clone());
        std::thread::Builder::new().name("tray-status".into()).spawn(move || watch_status(dirs, tx))?;
    }
    {
        let tx = tx.clone();
        std::thread::Builder::new().name("tray-clicks".into()).spawn(move || {
            while let Ok(e) = MenuEvent::receiver().recv() {
                if tx.send(Msg::Click(e.id.0)).is_err() {
                    return;
                }
            }
        })?;
    }
    let mut view = View::default();
    let tray = match TrayIconBuilder::new()
        .with_id("ferry")
        .with_title("Ferry")
        .with_tooltip(model::status_line(&view, offset))
        .with_icon(icon(view.icon())?)
        .with_menu(Box::new(build(&model::menu(&view, offset))?))
        .build()
    {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "no tray (no session bus or tray host?); syncing goes on without it");
            return Ok(());
        }
    };
    tracing::info!("tray up");
    let control = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut shown = None;
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Status(s) => {
                view = View {
                    recent: std::mem::take(&mut view.recent),
                    ..s.as_deref().map(View::from_status).unwrap_or_default()
                }
            }
            Msg::Recent(r) => view.recent = r,
            Msg::Click(id) => {
                let request = match Action::of(&id, now_ms(), offset) {
                    Some(Action::Quit) => break,
                    Some(Action::OpenFolder) => {
                        open(&config.folder);
                        None
                    }
                    Some(Action::OpenWeb) => {
                        open(Path::new(&config.server));
                        None
                    }
                    Some(Action::Reveal(p)) => {
                        reveal(&config.folder, &p);
                        None
                    }
                    Some(Action::Preferences) => {
                        open(&dirs.config_file());
                        None
                    }
                    Some(Action::PauseUntil(u)) => Some(Request::Pause { until: Some(u) }),
                    Some(Action::Resume) => Some(Request::Resume { confirm_deletes: false }),
                    None => None,
                };
                if let Some(r) = request
                    && let Err(e) = control.block_on(control::command(&dirs.control_socket(), &r))
                {
                    tracing::warn!(error = format!("{e:#}"), "the daemon did not take it");
                }
                continue;
            }
        }
        let menu = model::menu(&view, offset);
        if shown.as_ref() == Some(&(menu.clone(), view.icon())) {
            continue;
        }
        tray.set_menu(Some(Box::new(build(&menu)?)));
        tray.set_icon(Some(icon(view.icon())?)).context("setting the icon")?;
        let _ = tray.set_tooltip(Some(model::status_line(&view, offset)));
        shown = Some((menu, view.icon()));
    }
    tracing::info!("tray quits");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_click_shows_the_file_or_the_nearest_folder_inside() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("Ferry");
        std::fs::create_dir_all(folder.join("docs")).unwrap();
        std::fs::write(folder.join("docs/plan.txt"), b"p").unwrap();
        assert_eq!(reveal_target(&folder, "docs/plan.txt"), Some(Ok(folder.join("docs/plan.txt"))));
        // Deleted since: the nearest folder that is still there.
        assert_eq!(reveal_target(&folder, "docs/gone/old.txt"), Some(Err(folder.join("docs"))));
        // Never above the folder, even when the folder itself is gone.
        let missing = dir.path().join("elsewhere");
        assert_eq!(reveal_target(&missing, "a/b.txt"), Some(Err(missing.clone())));
        for bad in ["../x", "/etc/passwd", "docs/../../x", ""] {
            assert_eq!(reveal_target(&folder, bad), None, "{bad}");
        }
    }
}
