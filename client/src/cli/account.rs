//! `ferry login`, `logout`, `quickstart` and `daemon`: who this device is,
//! and running the daemon in the foreground.

use std::path::{Path, PathBuf};

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

/// `ferry server [URL]`: checks that URL is this device's server (it knows
/// the login; its journal reaches the device's cursor, or the device lists
/// again, deleting nothing), saves it, and tells a running daemon.
pub async fn server(dirs: &Dirs, url: Option<String>) -> anyhow::Result<()> {
    let (mut config, token) = dirs.load()?;
    let Some(url) = url else {
        println!("{}", config.server);
        return Ok(());
    };
    let url = url.trim_end_matches('/').to_owned();
    let parsed = reqwest::Url::parse(&url).with_context(|| format!("{url:?} is not a URL like https://host:port"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        bail!("{url:?} is not a server address: give one like https://ferry.example.com");
    }
    if url == config.server.trim_end_matches('/') {
        println!("this device syncs with {url} already");
        return Ok(());
    }
    let cursor = crate::sync::state::State::open(&dirs.state_db())
        .and_then(|s| s.cursor())
        .context("reading this device's place in the journal")?;
    match Remote::new(&url, &token).poll(cursor, 0, std::time::Duration::ZERO).await {
        Ok(_) => {}
        Err(e) if e.is_cursor_reset() => println!(
            "note: {url} has not seen all that this device has (restored from an older backup?); \
             the device lists everything again there, deleting nothing"
        ),
        Err(e) if e.is_unauthorized() => bail!(
            "{url} does not know this device's login, so it is not the server this device synced with \
             (or not a copy of it): nothing changed; to start over there, `ferry login --server {url}`"
        ),
        Err(e) => bail!("checking {url}: {e}; nothing changed"),
    }
    let old = std::mem::replace(&mut config.server, url.clone());
    // Moved off the server `ferry quickstart` runs in-process: it no longer
    // starts with the daemon (its data stays where it is).
    if let Some(data) = config.embedded_server.take() {
        println!("the server this device ran itself no longer starts with it (its data stays in {})", data.display());
    }
    dirs.save(&config, &token)?;
    #[cfg(unix)]
    let told = crate::daemon::control::command(
        &dirs.control_socket(),
        &crate::daemon::control::Request::Server { url: url.clone() },
    )
    .await
    .is_ok();
    #[cfg(not(unix))]
    let told = false;
    let when = if told { "" } else { " (when the daemon starts)" };
    println!("this device syncs with {url} now{when}, from where it was (was {old})");
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

/// The quickstart's own server: inside this process (the `embedded-server`
/// feature), or the `ferry-server` binary as a child that stops with it.
struct LocalServer {
    url: String,
    #[cfg(not(feature = "embedded-server"))]
    _child: server_process::Child,
}

/// The user quickstart creates on first start, and its password.
struct Credentials {
    path: PathBuf,
    user: String,
    password: String,
}

const QUICKSTART_USER: &str = "me";

/// Starts the server on `listen` with its data in `data` and waits until
/// it answers.
async fn start_server(data: &Path, listen: std::net::SocketAddr) -> anyhow::Result<LocalServer> {
    let url = format!("http://{listen}");
    #[cfg(feature = "embedded-server")]
    let mut running =
        tokio::spawn(ferry_server::serve::serve(ferry_server::serve::ServeOptions::new(data.to_owned(), listen)));
    #[cfg(not(feature = "embedded-server"))]
    let mut running = server_process::spawn(data, listen, QUICKSTART_USER)?;
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if let Some(why) = stopped(&mut running).await {
            return Err(why.context(format!("starting the server on {listen} (use --listen)")));
        }
        if http.get(format!("{url}/health")).send().await.is_ok_and(|r| r.status().is_success()) {
            #[cfg(feature = "embedded-server")]
            return Ok(LocalServer { url });
            #[cfg(not(feature = "embedded-server"))]
            return Ok(LocalServer { url, _child: running });
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    bail!("the server did not answer on {url}")
}

/// The first start: the quickstart user is created (with a generated
/// password saved beside the data), and the server started.
async fn first_start(data: &Path, listen: std::net::SocketAddr) -> anyhow::Result<(LocalServer, Credentials)> {
    #[cfg(feature = "embedded-server")]
    {
        let c = ferry_server::admin::quickstart_user(data, QUICKSTART_USER)?;
        let server = start_server(data, listen).await?;
        Ok((server, Credentials { path: c.path, user: c.user, password: c.password }))
    }
    #[cfg(not(feature = "embedded-server"))]
    {
        // `ferry-server quickstart` creates the user as it starts.
        let server = start_server(data, listen).await?;
        Ok((server, server_process::credentials(data)?))
    }
}

/// Why the server stopped, if it has.
#[cfg(feature = "embedded-server")]
async fn stopped(server: &mut tokio::task::JoinHandle<anyhow::Result<()>>) -> Option<anyhow::Error> {
    if !server.is_finished() {
        return None;
    }
    Some(match server.await {
        Ok(Err(e)) => e,
        _ => anyhow::anyhow!("the embedded server stopped"),
    })
}

#[cfg(not(feature = "embedded-server"))]
async fn stopped(child: &mut server_process::Child) -> Option<anyhow::Error> {
    child.exited()
}

/// `ferry-server` as a child process (a `ferry` built without the server).
#[cfg(not(feature = "embedded-server"))]
mod server_process {
    use std::path::{Path, PathBuf};

    use anyhow::Context;

    /// The child; killed when dropped (quickstart's server lives as long as
    /// quickstart does).
    pub struct Child(std::process::Child);

    impl Child {
        pub fn exited(&mut self) -> Option<anyhow::Error> {
            match self.0.try_wait() {
                Ok(None) => None,
                Ok(Some(status)) => Some(anyhow::anyhow!("ferry-server exited ({status}); its messages are above")),
                Err(e) => Some(e.into()),
            }
        }
    }

    impl Drop for Child {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// `ferry-server` beside this binary, else the one on PATH.
    fn binary() -> PathBuf {
        let name = format!("ferry-server{}", std::env::consts::EXE_SUFFIX);
        std::env::current_exe()
            .ok()
            .map(|me| me.with_file_name(&name))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from(name))
    }

    pub fn spawn(data: &Path, listen: std::net::SocketAddr, user: &str) -> anyhow::Result<Child> {
        let bin = binary();
        let child = std::process::Command::new(&bin)
            .arg("quickstart")
            .arg("--data")
            .arg(data)
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--user")
            .arg(user)
            .stdin(std::process::Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "starting {}: quickstart needs the Ferry server (install the ferry-server package, \
                     or log in to a server with `ferry login`)",
                    bin.display()
                )
            })?;
        Ok(Child(child))
    }

    /// The credentials `ferry-server quickstart` wrote beside its data.
    pub fn credentials(data: &Path) -> anyhow::Result<super::Credentials> {
        let path = data.join("credentials.txt");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::to_owned)
                .with_context(|| format!("no {name:?} line in {}", path.display()))
        };
        Ok(super::Credentials { user: field("user: ")?, password: field("password: ")?, path })
    }
}

pub async fn quickstart(dirs: Dirs, folder: Option<PathBuf>, listen: std::net::SocketAddr) -> anyhow::Result<()> {
    if dirs.config_file().exists() {
        let (config, token) = dirs.load()?;
        let _server = match &config.embedded_server {
            Some(data) => {
                let addr = config.server.trim_start_matches("http://").parse().unwrap_or(listen);
                Some(start_server(data, addr).await?)
            }
            None => None,
        };
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
    let (server, creds) = first_start(&data, listen).await?;
    let url = server.url.clone();
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
