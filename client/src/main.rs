//! `ferry`: the sync client's command line and daemon.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use ferry_client::config::{Config, Dirs};
use ferry_client::remote::Remote;
use ferry_shared::RelPath;
use ferry_shared::api::CommitOp;

#[derive(Parser)]
#[command(name = "ferry", version, about = "Ferry: keep a folder in sync across your devices")]
struct Cli {
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
    /// Log out: revoke this device's token and forget it.
    Logout,
    /// Keep the folder in sync until stopped (runs in the foreground).
    Daemon,
    /// Show what the daemon is doing.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Pause syncing.
    Pause,
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
    /// List conflict copies in the folder.
    Conflicts {
        #[arg(long)]
        json: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(run(cli.command))
}

fn default_device() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|s| s.trim().to_owned()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "device".to_owned())
}

/// A path given on the command line: relative to the synced folder, or an
/// absolute path inside it.
fn folder_path(config: &Config, p: &str) -> anyhow::Result<RelPath> {
    let path = PathBuf::from(p);
    let rel = if path.is_absolute() {
        path.strip_prefix(&config.folder)
            .with_context(|| format!("{p} is not inside the synced folder {}", config.folder.display()))?
            .to_string_lossy()
            .into_owned()
    } else {
        p.to_owned()
    };
    Ok(RelPath::parse_non_root(&rel)?)
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
            let config = Config { server, user, folder, device, max_deletes: 1000 };
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
        Command::Status { json } => {
            use ferry_client::control::{Request, request};
            let v = request(&dirs.control_socket(), &Request::Status).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("state: {}", v["state"].as_str().unwrap_or("?"));
                if let Some(r) = v["reason"].as_str() {
                    println!("  {r}");
                }
                println!(
                    "folder: {}  server: {}",
                    v["folder"].as_str().unwrap_or(""),
                    v["server"].as_str().unwrap_or("")
                );
                println!(
                    "pending: {} uploads, {} downloads ({} bytes)",
                    v["pending_uploads"], v["pending_downloads"], v["pending_download_bytes"]
                );
                println!("files synced: {}", v["files"]);
                if let Some(errs) = v["recent_errors"].as_array().filter(|e| !e.is_empty()) {
                    println!("recent errors:");
                    for e in errs.iter().rev().take(5) {
                        println!("  {}", e.as_str().unwrap_or(""));
                    }
                }
            }
        }
        #[cfg(unix)]
        Command::Pause => {
            ferry_client::control::request(&dirs.control_socket(), &ferry_client::control::Request::Pause).await?;
            println!("paused");
        }
        #[cfg(unix)]
        Command::Resume { confirm_deletes } => {
            let req = ferry_client::control::Request::Resume { confirm_deletes };
            ferry_client::control::request(&dirs.control_socket(), &req).await?;
            println!("resumed");
        }
        #[cfg(not(unix))]
        Command::Status { .. } | Command::Pause | Command::Resume { .. } => {
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
        Command::Conflicts { json } => {
            let (config, _) = dirs.load()?;
            let root = config.folder.clone();
            let (tree, _) = tokio::task::spawn_blocking(move || ferry_client::scan::scan(&root)).await??;
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
