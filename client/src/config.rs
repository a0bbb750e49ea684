//! Where the client keeps its configuration and state, and what it holds.
//!
//! `FERRY_HOME=DIR` puts everything under DIR (several clients on one
//! machine); otherwise the platform's config and data directories are used
//! (`directories`). The device token lives in its own file, mode 0600.

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::sync::seams::write_file;

/// The client's settings, as stored in `config.json`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Server URL, e.g. `https://ferry.example.org`.
    pub server: String,
    pub user: String,
    /// The synced folder (absolute).
    pub folder: PathBuf,
    /// This device's name, shown in history and conflict copies.
    pub device: String,
    /// A deletion of more than this many items at once waits for confirmation.
    #[serde(default = "default_max_deletes")]
    pub max_deletes: usize,
    /// ... and so does one of more than this share of the synced tree (when
    /// it is more than 50 items).
    #[serde(default = "default_max_delete_share")]
    pub max_delete_share: f64,
    /// Set by `ferry quickstart`: the data directory of the server the client
    /// runs in-process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded_server: Option<PathBuf>,
    /// Desktop notifications (new conflict copies); `false` turns them off.
    #[serde(default = "yes")]
    pub notifications: bool,
    /// Bandwidth limit of uploads, bytes per second (`ferry limit --up`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_up: Option<u64>,
    /// Bandwidth limit of downloads, bytes per second (`ferry limit --down`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_down: Option<u64>,
    /// Limits that apply instead inside a window of the week
    /// (`ferry limit --between 09:00-18:00 --days mon-fri`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_schedule: Option<crate::net::schedule::Schedule>,
    /// Folders not synced to this device (`ferry exclude`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<ferry_shared::RelPath>,
}

fn yes() -> bool {
    true
}

fn default_max_deletes() -> usize {
    1000
}

fn default_max_delete_share() -> f64 {
    0.5
}

impl Config {
    /// A new device's configuration, with the defaults.
    pub fn new(server: String, user: String, folder: PathBuf, device: String) -> Config {
        Config {
            server,
            user,
            folder,
            device,
            max_deletes: default_max_deletes(),
            max_delete_share: default_max_delete_share(),
            embedded_server: None,
            notifications: true,
            limit_up: None,
            limit_down: None,
            limit_schedule: None,
            excluded: Vec::new(),
        }
    }
}

impl Config {
    /// The bandwidth limits, with their schedule.
    pub fn limits(&self) -> crate::net::schedule::Limits {
        crate::net::schedule::Limits { up: self.limit_up, down: self.limit_down, schedule: self.limit_schedule }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("server", &self.server)
            .field("user", &self.user)
            .field("folder", &self.folder)
            .field("device", &self.device)
            .finish()
    }
}

/// The client's directories.
#[derive(Debug, Clone)]
pub struct Dirs {
    pub config: PathBuf,
    pub state: PathBuf,
}

impl Dirs {
    pub fn locate() -> anyhow::Result<Dirs> {
        // Empty counts as unset; a relative one is made absolute, so messages
        // name the real place.
        if let Some(home) = std::env::var_os("FERRY_HOME").filter(|h| !h.is_empty()) {
            let home = std::path::absolute(&home).with_context(|| format!("FERRY_HOME={}", home.display()))?;
            return Ok(Dirs { config: home.clone(), state: home.join("state") });
        }
        let pd = directories::ProjectDirs::from("org", "Ferry", "ferry")
            .context("no home directory found; set FERRY_HOME")?;
        Ok(Dirs { config: pd.config_dir().to_owned(), state: pd.data_local_dir().to_owned() })
    }

    pub fn config_file(&self) -> PathBuf {
        self.config.join("config.json")
    }
    pub fn token_file(&self) -> PathBuf {
        self.config.join("token")
    }
    pub fn state_db(&self) -> PathBuf {
        self.state.join("state.db")
    }
    pub fn control_socket(&self) -> PathBuf {
        self.state.join("control.sock")
    }
    /// Present while the user has paused syncing (kept across restarts).
    pub fn pause_file(&self) -> PathBuf {
        self.state.join("paused.json")
    }

    pub fn load(&self) -> anyhow::Result<(Config, String)> {
        let path = self.config_file();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}: log in first with `ferry login`", path.display()))?;
        let config: Config = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let token = std::fs::read_to_string(self.token_file()).context("reading the device token: log in again")?;
        if !config.folder.is_absolute() {
            bail!("the folder in {} must be an absolute path", path.display());
        }
        Ok((config, token.trim().to_owned()))
    }

    pub fn save(&self, config: &Config, token: &str) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.config)?;
        std::fs::create_dir_all(&self.state)?;
        write_file(&self.config_file(), serde_json::to_string_pretty(config)?.as_bytes(), false)?;
        Ok(write_file(&self.token_file(), token.as_bytes(), true)?)
    }
}
