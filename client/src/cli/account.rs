//! `ferry login`, `logout`, `quickstart` and `daemon`: who this device is,
//! and running the daemon in the foreground.

use std::path::PathBuf;

use anyhow::{Context, bail};

use super::stdin_line;
use crate::config::{Config, Dirs};
use crate::net::remote::Remote;

pub async fn login(
    dirs: &Dirs,
    server: String,
    user: String,
    password_stdin: bool,
    folder: PathBuf,
    device: Option<String>,
) -> anyhow::Result<()> {
    if !password_stdin {
        bail!("pass --password-stdin and write the password on standard input");
    }
    let password = stdin_line()?;
    let device = device.unwrap_or_else(default_device);
    std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    let folder = std::fs::canonicalize(&folder)?;
    let login = Remote::login(&server, &user, &password, &device)
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
    Ok(())
}

pub async fn logout(dirs: &Dirs) -> anyhow::Result<()> {
    let (config, token) = dirs.load()?;
    if let Err(e) = Remote::new(&config.server, &token).logout().await {
        eprintln!("warning: could not revoke the token on the server: {e}");
    }
    std::fs::remove_file(dirs.token_file())?;
    println!("logged out of {}", config.server);
    Ok(())
}

pub async fn daemon(dirs: Dirs) -> anyhow::Result<()> {
    let (config, token) = dirs.load()?;
    crate::daemon::run(dirs, config, token).await
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

pub async fn quickstart(dirs: Dirs, folder: Option<PathBuf>, listen: std::net::SocketAddr) -> anyhow::Result<()> {
    if dirs.config_file().exists() {
        let (config, token) = dirs.load()?;
        if let Some(data) = &config.embedded_server {
            let addr = config.server.trim_start_matches("http://").parse().unwrap_or(listen);
            start_embedded_server(data.clone(), addr).await?;
        }
        println!("Ferry is syncing {} with {}", config.folder.display(), config.server);
        return crate::daemon::run(dirs, config, token).await;
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
    crate::daemon::run(dirs, config, login.token).await
}
