//! `ferry doctor`: checks what syncing needs, one line each, and for each
//! problem the command that fixes it: the configuration and login, the
//! server (reachable, its version, the token, the clocks), the folder
//! (there, writable, its marker), the disk (free space, inotify watches
//! for every folder in it) and the daemon (its control socket).

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::config::{Config, Dirs};

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: &'static str,
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// For a problem: the command (or step) that fixes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn ok(check: &'static str, detail: impl Into<String>) -> Check {
    Check { check, ok: true, detail: detail.into(), fix: None }
}

fn problem(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check { check, ok: false, detail: detail.into(), fix: Some(fix.into()) }
}

/// Clock difference to the server above which times in history mislead.
const MAX_SKEW: Duration = Duration::from_secs(60);

/// Runs every check (those that need what an earlier one failed to get
/// are left out).
/// `ferry doctor`: the checks, as lines (or JSON); an error when any failed.
pub async fn doctor(dirs: &Dirs, json: bool) -> anyhow::Result<()> {
    let checks = run(dirs).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        for c in &checks {
            let mark = if c.ok { "ok " } else { "!! " };
            println!("{mark} {:<8} {}", c.check, c.detail);
            if let Some(fix) = &c.fix {
                println!("             fix: {fix}");
            }
        }
    }
    let problems = checks.iter().filter(|c| !c.ok).count();
    if problems > 0 {
        anyhow::bail!("{problems} problem(s) found; each has its fix above");
    }
    Ok(())
}

pub async fn run(dirs: &Dirs) -> Vec<Check> {
    let mut out = Vec::new();
    let (config, token) = match dirs.load() {
        Ok(c) => {
            out.push(ok(
                "config",
                format!("{} (user {}, device {})", dirs.config_file().display(), c.0.user, c.0.device),
            ));
            c
        }
        Err(e) => {
            out.push(problem(
                "config",
                format!("{e:#}"),
                "ferry login --server URL --user NAME --password-stdin --folder DIR",
            ));
            return out;
        }
    };
    server_checks(&config, &token, &mut out).await;
    folder_checks(dirs, &config, &mut out);
    daemon_check(dirs, &mut out).await;
    out
}

async fn server_checks(config: &Config, token: &str, out: &mut Vec<Check>) {
    let http = match reqwest::Client::builder().timeout(Duration::from_secs(10)).build() {
        Ok(h) => h,
        Err(e) => return out.push(problem("server", format!("no HTTP client: {e}"), "report this as a bug")),
    };
    let base = config.server.trim_end_matches('/');
    let doc = match http.get(format!("{base}/openapi.json")).send().await {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => {
            return out.push(problem(
                "server",
                format!("{base} answered {} (is it a Ferry server?)", r.status()),
                "check the server URL in the config, or log in again with the right --server",
            ));
        }
        Err(e) => {
            return out.push(problem(
                "server",
                format!("cannot reach {base}: {e}"),
                "check the network and that ferry-server runs there (systemctl status ferry-server)",
            ));
        }
    };
    let server_time = doc
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|d| d.to_str().ok())
        .and_then(|d| httpdate::parse_http_date(d).ok());
    /// What the check reads of the server's API description.
    #[derive(serde::Deserialize)]
    struct ApiDoc {
        info: ApiInfo,
    }
    #[derive(serde::Deserialize)]
    struct ApiInfo {
        version: String,
    }
    let version = doc.json::<ApiDoc>().await.map(|d| d.info.version).unwrap_or_default();
    let mine = env!("CARGO_PKG_VERSION");
    let major_minor = |v: &str| v.split('.').take(2).collect::<Vec<_>>().join(".");
    if major_minor(&version) == major_minor(mine) {
        out.push(ok("server", format!("{base} is Ferry {version} (this client {mine})")));
    } else {
        out.push(problem(
            "server",
            format!("{base} is Ferry {version:?}, this client is {mine}"),
            "install the same version of ferry and ferry-server (installer/install.sh)",
        ));
    }
    match server_time.map(|t| t.duration_since(std::time::SystemTime::now())) {
        Some(Ok(ahead)) if ahead > MAX_SKEW => out.push(problem(
            "clock",
            format!("this machine's clock is {} s behind the server's", ahead.as_secs()),
            "sudo timedatectl set-ntp true",
        )),
        Some(Err(e)) if e.duration() > MAX_SKEW => out.push(problem(
            "clock",
            format!("this machine's clock is {} s ahead of the server's", e.duration().as_secs()),
            "sudo timedatectl set-ntp true",
        )),
        Some(_) => out.push(ok("clock", "within a minute of the server's")),
        None => out.push(ok("clock", "the server sent no time to compare with")),
    }
    match http.get(format!("{base}/activity?limit=1")).bearer_auth(token).send().await {
        Ok(r) if r.status().is_success() => {
            out.push(ok("login", format!("the token of device {} is valid", config.device)))
        }
        Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED => out.push(problem(
            "login",
            "the server does not know this device's token (logged out, or the password changed)",
            format!(
                "ferry login --server {base} --user {} --password-stdin --folder {}",
                config.user,
                config.folder.display()
            ),
        )),
        Ok(r) => out.push(problem("login", format!("the server answered {}", r.status()), "look at the server's log")),
        Err(e) => out.push(problem("login", format!("{e}"), "check the network")),
    }
}

fn folder_checks(dirs: &Dirs, config: &Config, out: &mut Vec<Check>) {
    let folder = &config.folder;
    if !folder.is_dir() {
        return out.push(problem(
            "folder",
            format!("{} is missing (an unmounted disk? a renamed folder?)", folder.display()),
            format!("mount or move it back to {}; nothing is deleted meanwhile", folder.display()),
        ));
    }
    let probe = folder.join(format!("{}doctor", crate::sync::scan::TEMP_PREFIX));
    match std::fs::write(&probe, b"").and_then(|()| std::fs::remove_file(&probe)) {
        Ok(()) => out.push(ok("folder", format!("{} is there and writable", folder.display()))),
        Err(e) => out.push(problem(
            "folder",
            format!("cannot write in {}: {e}", folder.display()),
            format!("sudo chown -R $(id -un) {}", folder.display()),
        )),
    }
    let marker = folder.join(crate::sync::scan::MARKER);
    let expected =
        crate::sync::state::State::open(&dirs.state_db()).ok().and_then(|s| s.get("folder_id").ok().flatten());
    match (std::fs::read_to_string(&marker).ok().map(|m| m.trim().to_owned()), expected) {
        (Some(m), Some(e)) if m == e => out.push(ok("marker", format!("{} is this folder's", marker.display()))),
        (Some(_), Some(_)) => out.push(problem(
            "marker",
            format!("{} belongs to another Ferry folder", folder.display()),
            "point the config's folder at the right one, or log in again with --folder",
        )),
        (None, Some(_)) => out.push(problem(
            "marker",
            format!("{} has lost its {} marker", folder.display(), crate::sync::scan::MARKER),
            "put the folder back as it was (the daemon waits, deleting nothing)",
        )),
        (_, None) => out.push(ok("marker", "made on the daemon's first start")),
    }
    disk_space(folder, out);
    inotify_watches(folder, out);
}

/// Free space on the folder's disk.
#[cfg(unix)]
fn disk_space(folder: &Path, out: &mut Vec<Check>) {
    let Ok(s) = rustix::fs::statvfs(folder) else { return };
    let free = s.f_bavail.saturating_mul(s.f_frsize);
    if free < 1 << 30 {
        out.push(problem(
            "disk",
            format!("{} MiB free on the folder's disk: downloads will stop when it is full", free >> 20),
            "free some space on that disk",
        ));
    } else {
        out.push(ok("disk", format!("{:.1} GiB free on the folder's disk", free as f64 / (1u64 << 30) as f64)));
    }
}

#[cfg(not(unix))]
fn disk_space(_folder: &Path, out: &mut Vec<Check>) {
    out.push(ok("disk", "free space not checked on this platform"));
}

/// inotify needs one watch per folder: the limit against the folder count.
fn inotify_watches(folder: &Path, out: &mut Vec<Check>) {
    let Ok(limit) = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches") else { return };
    let Ok(limit) = limit.trim().parse::<u64>() else { return };
    let dirs = ignore::WalkBuilder::new(folder)
        .standard_filters(false)
        .build()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_some_and(|t| t.is_dir()))
        .count() as u64;
    if dirs * 10 > limit * 9 {
        let want = (dirs * 2).next_power_of_two().max(524_288);
        out.push(problem(
            "watches",
            format!("{dirs} folders to watch, the system allows {limit} inotify watches: changes may be missed until a rescan"),
            format!(
                "echo fs.inotify.max_user_watches={want} | sudo tee /etc/sysctl.d/90-ferry.conf && sudo sysctl --system"
            ),
        ));
    } else {
        out.push(ok("watches", format!("{dirs} folders, {limit} inotify watches allowed")));
    }
}

async fn daemon_check(dirs: &Dirs, out: &mut Vec<Check>) {
    #[cfg(unix)]
    match crate::daemon::control::status(&dirs.control_socket()).await {
        Ok(s) => {
            let state = s.state.as_str();
            let reason = s.reason.map(|r| format!(": {r}")).unwrap_or_default();
            if s.state == crate::daemon::status::SyncState::Error {
                out.push(problem(
                    "daemon",
                    format!("running, in state error{reason}"),
                    "ferry status (its reason says what is wrong)",
                ));
            } else {
                out.push(ok("daemon", format!("running, {state}{reason}")));
            }
        }
        Err(_) => out.push(problem(
            "daemon",
            format!("not running (no answer at {})", dirs.control_socket().display()),
            "systemctl --user start ferry   (or: ferry daemon)",
        )),
    }
    #[cfg(not(unix))]
    let _ = (dirs, out);
}
