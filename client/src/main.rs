//! `ferry`: the sync client's command line and daemon.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use ferry_client::config::{Config, Dirs};
use ferry_client::net::remote::Remote;
use ferry_shared::RelPath;
use ferry_shared::api::CommitOp;

#[derive(Parser)]
#[command(name = "ferry", version, about = "Ferry: keep a folder in sync across your devices")]
struct Cli {
    /// On an error, show its details (and a backtrace with RUST_BACKTRACE=1).
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
        up: Option<ferry_client::net::limit::Rate>,
        #[arg(long)]
        down: Option<ferry_client::net::limit::Rate>,
        /// Hours these limits apply, local time: 09:00-18:00, or 22:00-06:00
        /// past midnight.
        #[arg(long, value_name = "HH:MM-HH:MM")]
        between: Option<ferry_client::net::limit::Window>,
        /// Days of `--between`: mon-fri, sat,sun, mon,wed,fri (default: daily).
        #[arg(long, requires = "between")]
        days: Option<ferry_client::net::limit::Days>,
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
        keep: ferry_client::cli::resolve::Keep,
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

/// `ferry exclude` / `ferry include`: the config's list, and the daemon told.
async fn exclude_folder(dirs: &Dirs, path: &str, exclude: bool) -> anyhow::Result<()> {
    let (mut config, token) = dirs.load()?;
    let rel = folder_path(&config, path)?;
    if rel.is_root() {
        bail!("give a folder inside the synced folder, not all of it (`ferry pause` stops syncing)");
    }
    let listed = config.excluded.iter().position(|x| *x == rel);
    match (exclude, listed) {
        (true, Some(_)) => bail!("{rel} is excluded already (`ferry include {path}` brings it back)"),
        (true, None) => {
            if let Some(outer) = config.excluded.iter().find(|x| rel.starts_with(x)) {
                bail!("{rel} is inside {outer}, which is excluded already");
            }
            if !config.folder.join(rel.as_str()).is_dir() {
                bail!("{rel} is not a folder in {}: give a folder that is synced here", config.folder.display());
            }
            config.excluded.retain(|x| !x.starts_with(&rel));
            config.excluded.push(rel.clone());
        }
        (false, Some(i)) => {
            config.excluded.remove(i);
        }
        (false, None) => bail!("{rel} is not excluded (`ferry status` lists what is)"),
    }
    dirs.save(&config, &token)?;
    #[cfg(unix)]
    let req = ferry_client::daemon::control::Request::Excluded { paths: config.excluded.clone() };
    #[cfg(unix)]
    let told = ferry_client::daemon::control::request(&dirs.control_socket(), &req).await.is_ok();
    #[cfg(not(unix))]
    let told = false;
    let when = if told { "" } else { " (when the daemon starts)" };
    if exclude {
        println!(
            "excluded {rel}: its copy here goes once all of it is on the server{when}; nothing is deleted on the server"
        );
    } else {
        println!("included {rel}: it comes back to this device{when}");
    }
    Ok(())
}

fn parse_role(s: &str) -> Result<ferry_shared::api::MemberRole, String> {
    use ferry_shared::api::MemberRole;
    match s {
        "editor" => Ok(MemberRole::Editor),
        "viewer" => Ok(MemberRole::Viewer),
        _ => Err(format!("{s:?}: the role is editor or viewer")),
    }
}

/// The server's message of a refused request, as a sentence.
fn refused(what: &str, e: ferry_client::net::remote::RemoteError) -> anyhow::Error {
    match e {
        ferry_client::net::remote::RemoteError::Http { message, .. } => anyhow::anyhow!("could not {what}: {message}"),
        e => anyhow::anyhow!("could not {what}: {e}"),
    }
}

/// The share whose folder is at `rel` in this user's tree.
async fn share_at(remote: &Remote, rel: &ferry_shared::RelPath) -> anyhow::Result<ferry_shared::api::Share> {
    let shares = remote.shares().await.map_err(|e| refused("list your shares", e))?;
    let key = |p: &ferry_shared::RelPath| ferry_shared::path::name_key(p.as_str()).into_owned();
    shares.shares.into_iter().find(|s| key(&s.path) == key(rel)).with_context(|| {
        format!("{rel} is not a shared folder (ferry shares lists them; give the shared folder itself)")
    })
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

fn main() -> std::process::ExitCode {
    ferry_client::alloc::use_one_heap();
    let cli = Cli::parse();
    let verbose = cli.verbose;
    match start(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A sentence with what to do; the details (a backtrace) only when asked for.
        Err(e) if verbose => {
            eprintln!("ferry: {e:?}");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("ferry: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn start(cli: Cli) -> anyhow::Result<()> {
    init_logging(&cli.command);
    // Few threads: each one keeps memory (stack, allocator arena) once used.
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).max_blocking_threads(8).enable_all().build()?;
    let r = rt.block_on(async {
        tokio::select! {
            r = run(cli.command) => r,
            // Ctrl-C or SIGTERM: stop (a daemon resumes from its saved state next time).
            _ = ferry_server::serve::shutdown_signal() => Ok(()),
        }
    });
    // Blocking work still under way (the tray's loop, a file being hashed)
    // gets a moment, not forever: a signal means stop. Nothing is lost by
    // it — files are written to a temp file and renamed, state in SQLite
    // transactions.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    r
}

/// Logs go to stderr; the daemon's also to a rotating file in the state
/// directory (`ferry logs` reads it).
fn init_logging(command: &Command) {
    use ferry_client::daemon::logs;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let file = matches!(command, Command::Daemon | Command::Quickstart { .. })
        .then(|| Dirs::locate().ok())
        .flatten()
        .and_then(|d| logs::RotatingFile::open(&logs::log_file(&d.state), logs::MAX_BYTES).ok())
        .map(|f| tracing_subscriber::fmt::layer().with_ansi(false).with_writer(std::sync::Mutex::new(f)));
    tracing_subscriber::registry().with(filter).with(stderr).with(file).init();
}

fn default_device() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|s| s.trim().to_owned()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "device".to_owned())
}

/// Starts the embedded server on `listen` in this process and waits until it answers.
async fn start_embedded_server(data: PathBuf, listen: std::net::SocketAddr) -> anyhow::Result<String> {
    let server = tokio::spawn(ferry_server::serve::serve(ferry_server::serve::ServeOptions::new(data, listen)));
    let url = format!("http://{listen}");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if server.is_finished() {
            return match server.await {
                Ok(Err(e)) => Err(e.context(format!("starting the embedded server on {listen} (use --listen)"))),
                _ => bail!("the embedded server stopped"),
            };
        }
        if http.get(format!("{url}/health")).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(url);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    bail!("the embedded server did not answer on {url}")
}

async fn quickstart(dirs: Dirs, folder: Option<PathBuf>, listen: std::net::SocketAddr) -> anyhow::Result<()> {
    if dirs.config_file().exists() {
        let (config, token) = dirs.load()?;
        if let Some(data) = &config.embedded_server {
            let addr = config.server.trim_start_matches("http://").parse().unwrap_or(listen);
            start_embedded_server(data.clone(), addr).await?;
        }
        println!("Ferry is syncing {} with {}", config.folder.display(), config.server);
        return ferry_client::daemon::run(dirs, config, token).await;
    }
    let folder = match folder {
        Some(f) => f,
        None => directories::UserDirs::new().context("no home directory; pass --folder")?.home_dir().join("Ferry"),
    };
    std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    let folder = std::fs::canonicalize(&folder)?;
    let data = dirs.state.join("server");
    let creds = ferry_server::admin::quickstart_user(&data, "me")?;
    let url = start_embedded_server(data.clone(), listen).await?;
    let device = default_device();
    let login = Remote::login(&url, &creds.user, &creds.password, &device).await?;
    let config = Config { embedded_server: Some(data), ..Config::new(url.clone(), creds.user.clone(), folder, device) };
    dirs.save(&config, &login.token)?;
    println!("Ferry is syncing {}", config.folder.display());
    println!("  server (web API): {url}   API description: {url}/openapi.json");
    println!("  credentials (user and password): {}", creds.path.display());
    println!("  another device: ferry login --server {url} --user {} --password-stdin --folder DIR", creds.user);
    ferry_client::daemon::run(dirs, config, login.token).await
}

/// A path given on the command line: relative to the synced folder, or an
/// absolute path inside it.
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

async fn run(command: Command) -> anyhow::Result<()> {
    let dirs = Dirs::locate()?;
    match command {
        Command::Login { server, user, password_stdin, folder, device } => {
            if !password_stdin {
                bail!("pass --password-stdin and write the password on standard input");
            }
            let mut password = String::new();
            std::io::stdin().lock().read_line(&mut password)?;
            let password = password.trim_end_matches(['\n', '\r']);
            let device = device.unwrap_or_else(default_device);
            std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
            let folder = std::fs::canonicalize(&folder)?;
            let login = Remote::login(&server, &user, password, &device)
                .await
                .with_context(|| format!("logging in to {server} as {user}"))?;
            let config = Config::new(server, user, folder, device);
            dirs.save(&config, &login.token)?;
            println!(
                "logged in as {} on {} (device {}); syncing {}",
                config.user,
                config.server,
                config.device,
                config.folder.display()
            );
            println!("start syncing with: ferry daemon");
        }
        Command::Quickstart { folder, listen } => quickstart(dirs, folder, listen).await?,
        Command::Logout => {
            let (config, token) = dirs.load()?;
            if let Err(e) = Remote::new(&config.server, &token).logout().await {
                eprintln!("warning: could not revoke the token on the server: {e}");
            }
            std::fs::remove_file(dirs.token_file())?;
            println!("logged out of {}", config.server);
        }
        Command::Daemon => {
            let (config, token) = dirs.load()?;
            ferry_client::daemon::run(dirs, config, token).await?;
        }
        #[cfg(unix)]
        Command::Status { json, once } => {
            use ferry_client::daemon::control::{Request, request};
            use std::io::IsTerminal;
            if !json && !once && std::io::stdout().is_terminal() {
                return ferry_client::cli::live::live(&dirs.control_socket()).await;
            }
            let v = request(&dirs.control_socket(), &Request::Status).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for l in ferry_client::cli::live::lines(&v) {
                    println!("{l}");
                }
            }
        }
        #[cfg(unix)]
        Command::Wait { timeout } => {
            ferry_client::cli::wait::wait(&dirs.control_socket(), timeout.map(std::time::Duration::from_secs)).await?;
        }
        #[cfg(unix)]
        Command::Pause { for_ } => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
            let until = for_.map(|s| now + (s as i64) * 1000);
            ferry_client::daemon::control::request(
                &dirs.control_socket(),
                &ferry_client::daemon::control::Request::Pause { until },
            )
            .await?;
            match until {
                Some(u) => {
                    println!("paused until {} UTC; `ferry resume` resumes now", ferry_shared::time::utc_string(u))
                }
                None => println!("paused (also after a restart) until `ferry resume`"),
            }
        }
        #[cfg(unix)]
        Command::Resume { confirm_deletes } => {
            let req = ferry_client::daemon::control::Request::Resume { confirm_deletes };
            ferry_client::daemon::control::request(&dirs.control_socket(), &req).await?;
            println!("resumed");
        }
        #[cfg(not(unix))]
        Command::Status { .. } | Command::Wait { .. } | Command::Pause { .. } | Command::Resume { .. } => {
            bail!("the control socket is not available on this platform yet")
        }
        Command::History { path, limit, json } => {
            let (config, token) = dirs.load()?;
            let rel = folder_path(&config, &path)?;
            let revs = Remote::new(&config.server, &token).revisions(&rel, limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&revs)?);
            } else {
                println!("{:>10}  {:>12}  {:<24}  device", "rev", "size", "modified (UTC ms)");
                for r in revs.revisions {
                    let what = if r.deleted { "deleted".to_owned() } else { r.size.to_string() };
                    println!("{:>10}  {:>12}  {:<24}  {}", r.rev, what, r.modified, r.device);
                }
            }
        }
        Command::Restore { path, rev } => {
            let (config, token) = dirs.load()?;
            let rel = folder_path(&config, &path)?;
            let resp =
                Remote::new(&config.server, &token).commit(vec![CommitOp::Restore { path: rel.clone(), rev }]).await?;
            match resp.results.into_iter().next() {
                Some(r) if r.entry.is_some() => {
                    println!("restored {rel} to revision {rev}; the daemon brings it to this device")
                }
                Some(r) => bail!("could not restore: {}", r.error.map(|e| e.message).unwrap_or_default()),
                None => bail!("the server gave no answer"),
            }
        }
        Command::Trash { limit, json } => {
            let (config, token) = dirs.load()?;
            let trash =
                Remote::new(&config.server, &token).trash(limit).await.map_err(|e| refused("list the trash", e))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&trash)?);
            } else if trash.items.is_empty() {
                println!("the trash is empty");
            } else {
                for t in trash.items {
                    let what = match t.kind {
                        ferry_shared::api::EntryKind::Dir => {
                            format!(
                                "{}/  ({} item{}, {} bytes)",
                                t.path,
                                t.items,
                                if t.items == 1 { "" } else { "s" },
                                t.size
                            )
                        }
                        _ => format!("{}  ({} bytes)", t.path, t.size),
                    };
                    println!("{} UTC  {} ({})  {what}", ferry_shared::time::utc_string(t.deleted), t.user, t.device);
                }
                println!("bring one back with: ferry restore-deleted PATH");
            }
        }
        Command::RestoreDeleted { path } => {
            let (config, token) = dirs.load()?;
            let rel = folder_path(&config, &path)?;
            if rel.is_root() {
                bail!("give the path of a deleted file or folder (ferry trash lists them)");
            }
            Remote::new(&config.server, &token)
                .restore_deleted(&rel)
                .await
                .map_err(|e| refused(&format!("restore {rel}"), e))?;
            println!("restored {rel}; the daemon brings it to this device");
        }
        Command::Link { path, expires, password_stdin } => {
            let (config, token) = dirs.load()?;
            let rel = folder_path(&config, &path)?;
            let password = if password_stdin {
                let mut pw = String::new();
                std::io::stdin().lock().read_line(&mut pw)?;
                let pw = pw.trim_end_matches(['\n', '\r']).to_owned();
                if pw.is_empty() {
                    bail!("the password on stdin is empty: write one, or leave out --password-stdin");
                }
                Some(pw)
            } else {
                None
            };
            let link =
                Remote::new(&config.server, &token).create_link(&rel, expires, password).await.map_err(
                    |e| match &e {
                        ferry_client::net::remote::RemoteError::Http { status: 404, .. } => {
                            anyhow::anyhow!("{rel} is not on the server (yet?): wait until it is synced (ferry wait)")
                        }
                        _ => anyhow::anyhow!("could not make the link: {e}"),
                    },
                )?;
            println!("{}", link.url);
        }
        Command::Share { path, with, role } => {
            let (config, token) = dirs.load()?;
            let rel = folder_path(&config, &path)?;
            let share = Remote::new(&config.server, &token)
                .share(&rel, &with, role)
                .await
                .map_err(|e| refused(&format!("share {rel}"), e))?;
            let role = ferry_shared::api::ShareRole::from(role);
            println!("shared {} with {with} as {}; it syncs to their devices", share.path, role.as_str());
        }
        Command::Unshare { path, with } => {
            let (config, token) = dirs.load()?;
            let rel = folder_path(&config, &path)?;
            let remote = Remote::new(&config.server, &token);
            let share = share_at(&remote, &rel).await?;
            remote
                .remove_share_member(share.id, with.as_deref())
                .await
                .map_err(|e| refused(&format!("unshare {rel}"), e))?;
            match with {
                Some(u) => println!("{u} is no longer in {rel}; it leaves their devices, your files stay"),
                None => println!("{rel} is no longer shared; it leaves the others' devices, your files stay"),
            }
        }
        Command::Leave { path } => {
            let (config, token) = dirs.load()?;
            let rel = folder_path(&config, &path)?;
            let remote = Remote::new(&config.server, &token);
            let share = share_at(&remote, &rel).await?;
            if share.role == ferry_shared::api::ShareRole::Owner {
                bail!("you own {rel}: stop sharing it with `ferry unshare {path}` instead");
            }
            remote
                .remove_share_member(share.id, Some(&config.user))
                .await
                .map_err(|e| refused(&format!("leave {rel}"), e))?;
            println!("left {rel}; it leaves your devices, {}'s files stay", share.owner);
        }
        Command::Shares { json } => {
            let (config, token) = dirs.load()?;
            let shares = Remote::new(&config.server, &token).shares().await.map_err(|e| refused("list shares", e))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&shares)?);
            } else if shares.shares.is_empty() {
                println!("no shared folders; share one with: ferry share PATH --with USER");
            } else {
                for s in shares.shares {
                    let others: Vec<String> = s
                        .members
                        .iter()
                        .filter(|m| m.role != ferry_shared::api::ShareRole::Owner)
                        .map(|m| format!("{} ({})", m.user, m.role.as_str()))
                        .collect();
                    if s.role == ferry_shared::api::ShareRole::Owner {
                        let with = if others.is_empty() { "nobody yet".to_owned() } else { others.join(", ") };
                        println!("{}  yours, shared with {with}", s.path);
                    } else {
                        println!("{}  shared with you by {} as {}", s.path, s.owner, s.role.as_str());
                    }
                }
            }
        }
        Command::Links { json } => {
            let (config, token) = dirs.load()?;
            let links = Remote::new(&config.server, &token).links().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&links)?);
            } else if links.links.is_empty() {
                println!("no links; make one with: ferry link PATH");
            } else {
                for l in links.links {
                    let path = l.path.map_or_else(|| "(deleted)".to_owned(), |p| p.to_string());
                    let mut notes = Vec::new();
                    if let Some(by) = &l.by {
                        notes.push(format!("made by {by}"));
                    }
                    if l.password {
                        notes.push("password".to_owned());
                    }
                    if let Some(e) = l.expires {
                        notes.push(format!("expires {e} (Unix ms)"));
                    }
                    println!("{:>5}  {path}  {}  {}", l.id, l.url, notes.join(", "));
                }
            }
        }
        Command::Unlink { link } => {
            let (config, token) = dirs.load()?;
            let remote = Remote::new(&config.server, &token);
            let id = match link.parse::<i64>() {
                Ok(id) => id,
                Err(_) => {
                    let token_of = |u: &str| u.trim_end_matches('/').rsplit("/l/").next().map(str::to_owned);
                    let want = token_of(&link);
                    remote
                        .links()
                        .await?
                        .links
                        .into_iter()
                        .find(|l| token_of(&l.url) == want)
                        .map(|l| l.id)
                        .with_context(|| format!("{link} is not one of your links (see ferry links)"))?
                }
            };
            remote.revoke_link(id).await.map_err(|e| match &e {
                ferry_client::net::remote::RemoteError::Http { status: 404, .. } => {
                    anyhow::anyhow!("you have no link {id} (see ferry links)")
                }
                _ => anyhow::anyhow!("could not revoke the link: {e}"),
            })?;
            println!("revoked link {id}: it answers 404 from now on");
        }
        Command::Activity { limit, json } => {
            use ferry_shared::api::{ChangeOp, EntryKind};
            let (config, token) = dirs.load()?;
            let page = Remote::new(&config.server, &token).activity(limit, None).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else if page.events.is_empty() {
                println!("nothing has happened yet");
            } else {
                for e in page.events {
                    let what = match (e.op, e.kind) {
                        (ChangeOp::Add, _) => "added".to_owned(),
                        (ChangeOp::Modify, _) => "edited".to_owned(),
                        (ChangeOp::Delete | ChangeOp::Rmdir, _) => "deleted".to_owned(),
                        (ChangeOp::Mkdir, _) => "made folder".to_owned(),
                        (ChangeOp::Move, _) => {
                            format!("moved {} →", e.from.as_ref().map_or("?", |f| f.as_str()))
                        }
                    };
                    let slash = if e.kind == EntryKind::Dir { "/" } else { "" };
                    println!(
                        "{} UTC  {} ({})  {what} {}{slash}",
                        ferry_shared::time::utc_string(e.time),
                        e.user,
                        e.device,
                        e.path
                    );
                }
            }
        }
        Command::Exclude { path } => exclude_folder(&dirs, &path, true).await?,
        Command::Include { path } => exclude_folder(&dirs, &path, false).await?,
        Command::Limit { up, down, between, days, no_schedule } => {
            use ferry_client::net::limit::show_rate;
            let (mut config, token) = dirs.load()?;
            if let Some(between) = between {
                if up.is_none() && down.is_none() {
                    bail!("give the limits for {between}: --up RATE and/or --down RATE (`off` for none)");
                }
                let days = days.unwrap_or(ferry_client::net::limit::Days::ALL);
                // The same window again changes only the rates given.
                let same = config.limit_schedule.filter(|s| s.between == between && s.days == days);
                config.limit_schedule = Some(ferry_client::net::limit::Schedule {
                    up: up.map_or(same.and_then(|s| s.up), |r| r.0),
                    down: down.map_or(same.and_then(|s| s.down), |r| r.0),
                    between,
                    days,
                });
            } else {
                if let Some(u) = up {
                    config.limit_up = u.0;
                }
                if let Some(d) = down {
                    config.limit_down = d.0;
                }
            }
            if no_schedule {
                config.limit_schedule = None;
            }
            if up.is_some() || down.is_some() || no_schedule {
                dirs.save(&config, &token)?;
                #[cfg(unix)]
                let req = ferry_client::daemon::control::Request::Limits(config.limits());
                #[cfg(unix)]
                if ferry_client::daemon::control::request(&dirs.control_socket(), &req).await.is_err() {
                    println!("(the daemon is not running: the limits apply when it starts)");
                }
            }
            let l = config.limits();
            println!("uploads: {}, downloads: {}", show_rate(l.up), show_rate(l.down));
            if let Some(s) = l.schedule {
                let now = if l.at(&jiff::Zoned::now()).2 { " (now)" } else { "" };
                println!("{s}{now}");
            }
        }
        Command::Logs { lines, follow } => {
            let path = ferry_client::daemon::logs::log_file(&dirs.state);
            let tail = ferry_client::daemon::logs::tail(&path, lines).with_context(|| {
                format!("no log at {}: the daemon writes it once it runs (`ferry daemon`)", path.display())
            })?;
            for l in tail {
                println!("{l}");
            }
            if follow {
                tokio::task::spawn_blocking(move || ferry_client::daemon::logs::follow(&path, std::io::stdout()))
                    .await??;
            }
        }
        Command::Tray => {
            let dirs = dirs.clone();
            tokio::task::spawn_blocking(move || ferry_client::desktop::tray::run(dirs)).await??;
        }
        Command::Doctor { json } => {
            let checks = ferry_client::cli::doctor::run(&dirs).await;
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
                bail!("{problems} problem(s) found; each has its fix above");
            }
        }
        Command::Resolve { path, keep } => {
            let (config, token) = dirs.load()?;
            let rel = folder_path(&config, &path)?;
            let done =
                ferry_client::cli::resolve::resolve(&Remote::new(&config.server, &token), &config.folder, &rel, keep)
                    .await?;
            println!("{done}; the daemon syncs it");
        }
        Command::Conflicts { json } => {
            let (config, _) = dirs.load()?;
            let root = config.folder.clone();
            let (tree, _) = tokio::task::spawn_blocking(move || ferry_client::sync::scan::scan(&root)).await??;
            let conflicts: Vec<&str> =
                tree.keys().map(|p| p.as_str()).filter(|p| p.contains(" (conflicted copy from ")).collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&conflicts)?);
            } else if conflicts.is_empty() {
                println!("no conflict copies");
            } else {
                for c in conflicts {
                    println!("{c}");
                }
                println!("keep what you want and delete or rename the copies; that syncs like any change");
            }
        }
    }
    Ok(())
}
