//! What was: `ferry history` and `restore` (a file's revisions), `trash`
//! and `restore-deleted` (what was deleted), `activity` (who did what).

use anyhow::bail;
use ferry_shared::api::{ChangeOp, CommitOp, EntryKind};

use super::{folder_path, refused, remote};
use crate::config::Dirs;

pub async fn history(dirs: &Dirs, path: &str, limit: u32, json: bool) -> anyhow::Result<()> {
    let (config, remote) = remote(dirs)?;
    let rel = folder_path(&config, path)?;
    let revs = remote.revisions(&rel, limit).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&revs)?);
        return Ok(());
    }
    println!("{:>10}  {:>12}  {:<24}  device", "rev", "size", "modified (UTC ms)");
    for r in revs.revisions {
        let what = if r.deleted { "deleted".to_owned() } else { r.size.to_string() };
        println!("{:>10}  {:>12}  {:<24}  {}", r.rev, what, r.modified, r.device);
    }
    Ok(())
}

pub async fn restore(dirs: &Dirs, path: &str, rev: i64) -> anyhow::Result<()> {
    let (config, remote) = remote(dirs)?;
    let rel = folder_path(&config, path)?;
    let resp = remote.commit(vec![CommitOp::Restore { path: rel.clone(), rev }]).await?;
    match resp.results.into_iter().next() {
        Some(r) if r.entry.is_some() => {
            println!("restored {rel} to revision {rev}; the daemon brings it to this device")
        }
        Some(r) => bail!("could not restore: {}", r.error.map(|e| e.message).unwrap_or_default()),
        None => bail!("the server gave no answer"),
    }
    Ok(())
}

pub async fn trash(dirs: &Dirs, limit: u32, json: bool) -> anyhow::Result<()> {
    let (_, remote) = remote(dirs)?;
    let trash = remote.trash(limit).await.map_err(|e| refused("list the trash", e))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&trash)?);
        return Ok(());
    }
    if trash.items.is_empty() {
        println!("the trash is empty");
        return Ok(());
    }
    for t in trash.items {
        let what = match t.kind {
            EntryKind::Dir => {
                format!("{}/  ({} item{}, {} bytes)", t.path, t.items, if t.items == 1 { "" } else { "s" }, t.size)
            }
            _ => format!("{}  ({} bytes)", t.path, t.size),
        };
        println!("{} UTC  {} ({})  {what}", ferry_shared::time::utc_string(t.deleted), t.user, t.device);
    }
    println!("bring one back with: ferry restore-deleted PATH");
    Ok(())
}

pub async fn restore_deleted(dirs: &Dirs, path: &str) -> anyhow::Result<()> {
    let (config, remote) = remote(dirs)?;
    let rel = folder_path(&config, path)?;
    if rel.is_root() {
        bail!("give the path of a deleted file or folder (ferry trash lists them)");
    }
    remote.restore_deleted(&rel).await.map_err(|e| refused(&format!("restore {rel}"), e))?;
    println!("restored {rel}; the daemon brings it to this device");
    Ok(())
}

pub async fn activity(dirs: &Dirs, limit: u32, json: bool) -> anyhow::Result<()> {
    let (_, remote) = remote(dirs)?;
    let page = remote.activity(limit, None).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&page)?);
        return Ok(());
    }
    if page.events.is_empty() {
        println!("nothing has happened yet");
        return Ok(());
    }
    for e in page.events {
        let what = match e.op {
            ChangeOp::Add => "added".to_owned(),
            ChangeOp::Modify => "edited".to_owned(),
            ChangeOp::Delete | ChangeOp::Rmdir => "deleted".to_owned(),
            ChangeOp::Mkdir => "made folder".to_owned(),
            ChangeOp::Move => format!("moved {} →", e.from.as_ref().map_or("?", |f| f.as_str())),
        };
        let slash = if e.kind == EntryKind::Dir { "/" } else { "" };
        println!("{} UTC  {} ({})  {what} {}{slash}", ferry_shared::time::utc_string(e.time), e.user, e.device, e.path);
    }
    Ok(())
}
