//! The terminal: `ferry`'s verbs, one function each, grouped by what they
//! touch. `main.rs` parses the command line into a [`Command`] and hands it
//! to [`run`].
//!
//! - [`account`]: login, logout, quickstart, the daemon in the foreground.
//! - [`control`] (Unix): verbs that talk to the running daemon over its
//!   socket — status (with [`live`]'s view), wait ([`wait`]), pause, resume.
//! - [`folder`]: what syncs here — exclude, include, conflicts, resolve
//!   ([`resolve`]).
//! - [`history`]: revisions, restore, the trash, activity.
//! - [`sharing`]: shared folders and links.
//! - [`limit`]: bandwidth limits; [`logs`]: the daemon's log; [`doctor`]:
//!   what syncing needs, checked.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use ferry_shared::RelPath;

use crate::config::{Config, Dirs};
use crate::net::remote::{Remote, RemoteError};

pub mod account;
#[cfg(unix)]
pub mod control;
pub mod doctor;
pub mod folder;
pub mod history;
pub mod limit;
#[cfg(unix)]
pub mod live;
pub mod logs;
pub mod resolve;
pub mod sharing;
#[cfg(unix)]
pub mod wait;

#[derive(Subcommand)]
pub enum Command {
    /// Log in to a server and choose the folder to sync.
    Login {
        #[arg(long)]
        server: String,
        #[arg(long)]
        user: String,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        folder: PathBuf,
        /// This device's name (default: the host name).
        #[arg(long)]
        device: Option<String>,
    },
    /// One command to get going on this machine: runs an embedded server
    /// (SQLite and a block folder under the state directory) unless one is
    /// configured, creates a user, logs in and syncs the folder.
    Quickstart {
        /// The folder to sync (default: ~/Ferry).
        #[arg(long)]
        folder: Option<PathBuf>,
        /// Where the embedded server listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
    },
    /// Log out: revoke this device's token and forget it.
    Logout,
    /// Show the server this device syncs with, or move it to URL: the same
    /// server at a new address, or the one `ferry-server migrate-to` filled.
    /// The new address must know this device's login; a running daemon
    /// goes on there at once, from where it was.
    Server {
        /// The server's new address (`https://…`).
        url: Option<String>,
    },
    /// Keep the folder in sync until stopped (runs in the foreground).
    Daemon,
    /// Show what the daemon is doing: in a terminal a live view (files and
    /// bytes left, rate, time left) until Ctrl-C; piped, printed once.
    Status {
        #[arg(long)]
        json: bool,
        /// Print once, also in a terminal.
        #[arg(long)]
        once: bool,
    },
    /// Wait until everything is synced (a progress bar in a terminal).
    Wait {
        /// Give up after this many seconds (exit status 1).
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// Pause syncing (kept across restarts): until `ferry resume`, or for a while.
    Pause {
        /// Resume by itself after this long: 30m, 2h, 1d.
        #[arg(long = "for", value_parser = parse_duration)]
        for_: Option<u64>,
    },
    /// Resume syncing.
    Resume {
        /// Allow a large deletion the daemon paused on.
        #[arg(long)]
        confirm_deletes: bool,
    },
    /// List the revisions of a file (path relative to the synced folder).
    History {
        path: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Make an old revision of a file the current one.
    Restore {
        path: String,
        #[arg(long)]
        rev: i64,
    },
    /// What was deleted (here, on other devices or in the web app): who
    /// deleted it and when, most recently deleted first.
    Trash {
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=5000))]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Bring a deleted file or folder (with what was in it) back to where
    /// it was; `ferry trash` lists what can come back.
    RestoreDeleted { path: String },
    /// Stop syncing a folder to this device: its local copy goes once all
    /// of it is on the server; nothing is deleted on the server.
    Exclude { path: String },
    /// Sync an excluded folder to this device again.
    Include { path: String },
    /// Limit the bandwidth of uploads and downloads (kept in the config,
    /// applied at once): `--up 2MB/s --down 10MB/s`, `off` to lift one.
    /// With `--between 09:00-18:00 [--days mon-fri]` the limits apply only
    /// then (local time), and the others outside those hours. Without
    /// options, shows the limits.
    Limit {
        #[arg(long)]
        up: Option<crate::net::schedule::Rate>,
        #[arg(long)]
        down: Option<crate::net::schedule::Rate>,
        /// Hours these limits apply, local time: 09:00-18:00, or 22:00-06:00
        /// past midnight.
        #[arg(long, value_name = "HH:MM-HH:MM")]
        between: Option<crate::net::schedule::Window>,
        /// Days of `--between`: mon-fri, sat,sun, mon,wed,fri (default: daily).
        #[arg(long, requires = "between")]
        days: Option<crate::net::schedule::Days>,
        /// Drop the schedule (the limits without it stay).
        #[arg(long, conflicts_with_all = ["between", "days"])]
        no_schedule: bool,
    },
    /// The daemon's log (in the state directory, rotated at 10 MiB).
    Logs {
        /// Lines from the end.
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: usize,
        /// Keep printing what is logged.
        #[arg(short, long)]
        follow: bool,
    },
    /// The tray icon and menu (beside a running daemon; the installer starts
    /// it at login).
    Tray,
    /// Check what syncing needs (config, server, clocks, folder, disk,
    /// inotify watches, daemon); each problem with the command that fixes it.
    Doctor {
        #[arg(long)]
        json: bool,
    },
    /// List conflict copies in the folder.
    Conflicts {
        #[arg(long)]
        json: bool,
    },
    /// Settle a conflict: keep your version (the conflict copy), theirs (the
    /// file at the original path) or both. The version not kept stays in
    /// the file's history on the server.
    Resolve {
        /// The conflict copy (or the file, if it has exactly one copy).
        path: String,
        #[arg(long, value_enum)]
        keep: crate::cli::resolve::Keep,
    },
    /// Make a read-only link to a file or folder and print its URL.
    Link {
        path: String,
        /// Stop working after this long: 30m, 12h, 7d, 2w.
        #[arg(long, value_parser = parse_duration)]
        expires: Option<u64>,
        /// Ask for a password, read from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Share a folder with another user on this server; it appears in
    /// their folder and syncs to all their devices.
    Share {
        path: String,
        /// The user to share with.
        #[arg(long)]
        with: String,
        /// editor (reads and writes) or viewer (reads only).
        #[arg(long, default_value = "editor", value_parser = parse_role)]
        role: ferry_shared::api::MemberRole,
    },
    /// Stop sharing a folder you own: with one user, or with everyone.
    Unshare {
        path: String,
        #[arg(long)]
        with: Option<String>,
    },
    /// Leave a folder someone shared with you: it goes from your devices,
    /// and stays theirs.
    Leave { path: String },
    /// The shared folders you are in: yours and those shared with you.
    Shares {
        #[arg(long)]
        json: bool,
    },
    /// List the links you made, and those others made into folders you share.
    Links {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a link, named by its URL or id.
    Unlink { link: String },
    /// What happened lately: files added, edited, moved and deleted — who,
    /// from which device, when (newest first).
    Activity {
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=500))]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
}

impl Command {
    /// True for the verbs that run the daemon (their logs also go to its file).
    pub fn runs_daemon(&self) -> bool {
        matches!(self, Command::Daemon | Command::Quickstart { .. })
    }
}

/// Runs one verb.
pub async fn run(command: Command) -> anyhow::Result<()> {
    let dirs = Dirs::locate()?;
    match command {
        Command::Login { server, user, password_stdin, folder, device } => {
            account::login(&dirs, server, user, password_stdin, folder, device).await
        }
        Command::Quickstart { folder, listen } => account::quickstart(dirs, folder, listen).await,
        Command::Logout => account::logout(&dirs).await,
        Command::Server { url } => account::server(&dirs, url).await,
        Command::Daemon => account::daemon(dirs).await,
        #[cfg(unix)]
        Command::Status { json, once } => control::status(&dirs, json, once).await,
        #[cfg(unix)]
        Command::Wait { timeout } => control::wait(&dirs, timeout).await,
        #[cfg(unix)]
        Command::Pause { for_ } => control::pause(&dirs, for_).await,
        #[cfg(unix)]
        Command::Resume { confirm_deletes } => control::resume(&dirs, confirm_deletes).await,
        #[cfg(not(unix))]
        Command::Status { .. } | Command::Wait { .. } | Command::Pause { .. } | Command::Resume { .. } => {
            bail!("the control socket is not available on this platform yet")
        }
        Command::History { path, limit, json } => history::history(&dirs, &path, limit, json).await,
        Command::Restore { path, rev } => history::restore(&dirs, &path, rev).await,
        Command::Trash { limit, json } => history::trash(&dirs, limit, json).await,
        Command::RestoreDeleted { path } => history::restore_deleted(&dirs, &path).await,
        Command::Activity { limit, json } => history::activity(&dirs, limit, json).await,
        Command::Link { path, expires, password_stdin } => sharing::link(&dirs, &path, expires, password_stdin).await,
        Command::Share { path, with, role } => sharing::share(&dirs, &path, &with, role).await,
        Command::Unshare { path, with } => sharing::unshare(&dirs, &path, with).await,
        Command::Leave { path } => sharing::leave(&dirs, &path).await,
        Command::Shares { json } => sharing::shares(&dirs, json).await,
        Command::Links { json } => sharing::links(&dirs, json).await,
        Command::Unlink { link } => sharing::unlink(&dirs, &link).await,
        Command::Exclude { path } => folder::exclude(&dirs, &path, true).await,
        Command::Include { path } => folder::exclude(&dirs, &path, false).await,
        Command::Conflicts { json } => folder::conflicts(&dirs, json).await,
        Command::Resolve { path, keep } => folder::resolve(&dirs, &path, keep).await,
        Command::Limit { up, down, between, days, no_schedule } => {
            limit::limit(&dirs, limit::Change { up, down, between, days, no_schedule }).await
        }
        Command::Logs { lines, follow } => logs::logs(&dirs, lines, follow).await,
        Command::Tray => {
            let dirs = dirs.clone();
            tokio::task::spawn_blocking(move || crate::tray::run(dirs)).await?
        }
        Command::Doctor { json } => doctor::doctor(&dirs, json).await,
    }
}

fn parse_role(s: &str) -> Result<ferry_shared::api::MemberRole, String> {
    use ferry_shared::api::MemberRole;
    match s {
        "editor" => Ok(MemberRole::Editor),
        "viewer" => Ok(MemberRole::Viewer),
        _ => Err(format!("{s:?}: the role is editor or viewer")),
    }
}

/// `30m`, `12h`, `7d`, `2w` (or plain seconds) as seconds.
fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().map_err(|_| format!("{s:?}: give a number and a unit, like 7d or 12h"))?;
    let secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("{s:?}: the unit is s, m, h, d or w (7d is a week)")),
    };
    match n.checked_mul(secs) {
        Some(0) | None => Err(format!("{s:?}: give a time from 1 s to 100 years")),
        Some(t) => Ok(t),
    }
}

/// The server's message of a refused request, as a sentence.
fn refused(what: &str, e: RemoteError) -> anyhow::Error {
    match e {
        RemoteError::Http { message, .. } => anyhow::anyhow!("could not {what}: {message}"),
        e => anyhow::anyhow!("could not {what}: {e}"),
    }
}

/// The configuration and a client of its server (the verbs that ask it).
fn remote(dirs: &Dirs) -> anyhow::Result<(Config, Remote)> {
    let (config, token) = dirs.load()?;
    let remote = Remote::new(&config.server, &token);
    Ok((config, remote))
}

/// A path given on the command line, as a path in the synced folder:
/// absolute, or relative to the current directory when that is inside the
/// folder (else to the folder itself).
fn folder_path(config: &Config, p: &str) -> anyhow::Result<RelPath> {
    let path = PathBuf::from(p);
    let cwd = std::env::current_dir().ok().filter(|d| d.starts_with(&config.folder));
    let full = match (path.is_absolute(), cwd) {
        (true, _) => path,
        (false, Some(cwd)) => cwd.join(path),
        (false, None) => config.folder.join(path),
    };
    // `.` and `..` resolved by their names (the item may not be on this disk).
    let mut clean = PathBuf::new();
    for c in full.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                clean.pop();
            }
            c => clean.push(c),
        }
    }
    let rel = clean.strip_prefix(&config.folder).map_err(|_| {
        anyhow::anyhow!(
            "{p} is not inside the synced folder {}: give a path inside it (or cd into it first)",
            config.folder.display()
        )
    })?;
    let rel = rel.to_str().with_context(|| format!("{p} is not valid UTF-8"))?;
    if rel.is_empty() {
        bail!("{p} is the synced folder itself: name a file or folder inside it");
    }
    Ok(RelPath::parse_non_root(rel)?)
}

/// The first line of standard input, without its line end.
fn stdin_line() -> anyhow::Result<String> {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}
