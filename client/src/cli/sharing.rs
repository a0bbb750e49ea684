//! Sharing: `ferry share`, `unshare`, `leave` and `shares` (folders shared
//! with other users), `link`, `links` and `unlink` (read-only links).

use anyhow::{Context, bail};
use ferry_shared::RelPath;
use ferry_shared::api::{MemberRole, Share, ShareRole};

use super::{folder_path, refused, remote, stdin_line};
use crate::config::Dirs;
use crate::net::remote::{Remote, RemoteError};

/// The share whose folder is at `rel` in this user's tree.
async fn share_at(remote: &Remote, rel: &RelPath) -> anyhow::Result<Share> {
    let shares = remote.shares().await.map_err(|e| refused("list your shares", e))?;
    let key = |p: &RelPath| ferry_shared::path::name_key(p.as_str()).into_owned();
    shares.shares.into_iter().find(|s| key(&s.path) == key(rel)).with_context(|| {
        format!("{rel} is not a shared folder (ferry shares lists them; give the shared folder itself)")
    })
}

pub async fn share(dirs: &Dirs, path: &str, with: &str, role: MemberRole) -> anyhow::Result<()> {
    let (config, remote) = remote(dirs)?;
    let rel = folder_path(&config, path)?;
    let share = remote.share(&rel, with, role).await.map_err(|e| refused(&format!("share {rel}"), e))?;
    let role = ShareRole::from(role);
    println!("shared {} with {with} as {}; it syncs to their devices", share.path, role.as_str());
    Ok(())
}

pub async fn unshare(dirs: &Dirs, path: &str, with: Option<String>) -> anyhow::Result<()> {
    let (config, remote) = remote(dirs)?;
    let rel = folder_path(&config, path)?;
    let share = share_at(&remote, &rel).await?;
    remote.remove_share_member(share.id, with.as_deref()).await.map_err(|e| refused(&format!("unshare {rel}"), e))?;
    match with {
        Some(u) => println!("{u} is no longer in {rel}; it leaves their devices, your files stay"),
        None => println!("{rel} is no longer shared; it leaves the others' devices, your files stay"),
    }
    Ok(())
}

pub async fn leave(dirs: &Dirs, path: &str) -> anyhow::Result<()> {
    let (config, remote) = remote(dirs)?;
    let rel = folder_path(&config, path)?;
    let share = share_at(&remote, &rel).await?;
    if share.role == ShareRole::Owner {
        bail!("you own {rel}: stop sharing it with `ferry unshare {path}` instead");
    }
    remote.remove_share_member(share.id, Some(&config.user)).await.map_err(|e| refused(&format!("leave {rel}"), e))?;
    println!("left {rel}; it leaves your devices, {}'s files stay", share.owner);
    Ok(())
}

pub async fn shares(dirs: &Dirs, json: bool) -> anyhow::Result<()> {
    let (_, remote) = remote(dirs)?;
    let shares = remote.shares().await.map_err(|e| refused("list shares", e))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&shares)?);
        return Ok(());
    }
    if shares.shares.is_empty() {
        println!("no shared folders; share one with: ferry share PATH --with USER");
        return Ok(());
    }
    for s in shares.shares {
        let others: Vec<String> = s
            .members
            .iter()
            .filter(|m| m.role != ShareRole::Owner)
            .map(|m| format!("{} ({})", m.user, m.role.as_str()))
            .collect();
        if s.role == ShareRole::Owner {
            let with = if others.is_empty() { "nobody yet".to_owned() } else { others.join(", ") };
            println!("{}  yours, shared with {with}", s.path);
        } else {
            println!("{}  shared with you by {} as {}", s.path, s.owner, s.role.as_str());
        }
    }
    Ok(())
}

pub async fn link(dirs: &Dirs, path: &str, expires: Option<u64>, password_stdin: bool) -> anyhow::Result<()> {
    let (config, remote) = remote(dirs)?;
    let rel = folder_path(&config, path)?;
    let password = if password_stdin {
        let pw = stdin_line()?;
        if pw.is_empty() {
            bail!("the password on stdin is empty: write one, or leave out --password-stdin");
        }
        Some(pw)
    } else {
        None
    };
    let link = remote.create_link(&rel, expires, password).await.map_err(|e| match &e {
        RemoteError::Http { status: 404, .. } => {
            anyhow::anyhow!("{rel} is not on the server (yet?): wait until it is synced (ferry wait)")
        }
        _ => anyhow::anyhow!("could not make the link: {e}"),
    })?;
    println!("{}", link.url);
    Ok(())
}

pub async fn links(dirs: &Dirs, json: bool) -> anyhow::Result<()> {
    let (_, remote) = remote(dirs)?;
    let links = remote.links().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&links)?);
        return Ok(());
    }
    if links.links.is_empty() {
        println!("no links; make one with: ferry link PATH");
        return Ok(());
    }
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
    Ok(())
}

pub async fn unlink(dirs: &Dirs, link: &str) -> anyhow::Result<()> {
    let (_, remote) = remote(dirs)?;
    let id = match link.parse::<i64>() {
        Ok(id) => id,
        Err(_) => {
            let token_of = |u: &str| u.trim_end_matches('/').rsplit("/l/").next().map(str::to_owned);
            let want = token_of(link);
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
        RemoteError::Http { status: 404, .. } => anyhow::anyhow!("you have no link {id} (see ferry links)"),
        _ => anyhow::anyhow!("could not revoke the link: {e}"),
    })?;
    println!("revoked link {id}: it answers 404 from now on");
    Ok(())
}
