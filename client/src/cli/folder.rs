//! What syncs here: `ferry exclude` and `include` (folders kept off this
//! device), `conflicts` (the conflict copies) and `resolve` (settling one).

use anyhow::bail;

use super::{folder_path, remote};
use crate::config::Dirs;

/// `ferry exclude` / `ferry include`: the config's list, and the daemon told.
pub async fn exclude(dirs: &Dirs, path: &str, exclude: bool) -> anyhow::Result<()> {
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
    let req = crate::daemon::control::Request::Excluded { paths: config.excluded.clone() };
    #[cfg(unix)]
    let told = crate::daemon::control::command(&dirs.control_socket(), &req).await.is_ok();
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

pub async fn conflicts(dirs: &Dirs, json: bool) -> anyhow::Result<()> {
    let (config, _) = dirs.load()?;
    let root = config.folder.clone();
    let (tree, _) = tokio::task::spawn_blocking(move || crate::sync::scan::scan(&root)).await??;
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
    Ok(())
}

pub async fn resolve(dirs: &Dirs, path: &str, keep: super::resolve::Keep) -> anyhow::Result<()> {
    let (config, remote) = remote(dirs)?;
    let rel = folder_path(&config, path)?;
    let done = super::resolve::resolve(&remote, &config.folder, &rel, keep).await?;
    println!("{done}; the daemon syncs it");
    Ok(())
}
