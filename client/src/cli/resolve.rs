//! `ferry resolve PATH --keep mine|theirs|both`: settles a conflict copy
//! where a person sees it. The version not kept stays in the file's history
//! on the server (nothing is destroyed), so both must be on the server
//! first; the changes themselves are ordinary disk changes the daemon syncs.
//!
//! "Mine" is the conflict copy (the version this device had), "theirs" the
//! file at the original path (the version that won on the server).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ferry_shared::RelPath;

use crate::net::remote::Remote;
use crate::sync::tree::ContentHash;

/// What to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Keep {
    /// The conflict copy's version goes to the original path.
    Mine,
    /// The original stays; the copy goes (it stays in history).
    Theirs,
    /// Both stay: the copy gets a plain name.
    Both,
}

const MARK: &str = " (conflicted copy from ";

/// The original name of a conflict copy's name: `report (conflicted copy
/// from pc 2024-03-05 060708) 2.txt` → `report.txt`.
pub fn original_name(copy: &str) -> Option<String> {
    let i = copy.find(MARK)?;
    let close = copy[i..].find(')')? + i;
    let rest = &copy[close + 1..];
    // A numbered copy (" 2") before the extension.
    let rest = rest.trim_start_matches(|c: char| c == ' ' || c.is_ascii_digit());
    Some(format!("{}{rest}", &copy[..i]))
}

/// A free plain name for a kept copy: `report (2).txt`, `report (3).txt`, ….
fn plain_name(dir: &Path, original: &str) -> PathBuf {
    let (stem, ext) = match original.rfind('.') {
        Some(i) if i > 0 => (&original[..i], &original[i..]),
        _ => (original, ""),
    };
    (2..).map(|n| dir.join(format!("{stem} ({n}){ext}"))).find(|p| !p.exists()).expect("a free name")
}

fn local_hash(p: &Path) -> anyhow::Result<ContentHash> {
    let f = std::fs::File::open(p).with_context(|| format!("reading {}", p.display()))?;
    let size = f.metadata()?.len();
    Ok(crate::sync::seams::hash_content(std::io::BufReader::new(f), size)?.1)
}

/// Fails unless the server's head at `rel` has the content of the local file `p`.
async fn check_on_server(remote: &Remote, rel: &RelPath, p: &Path) -> anyhow::Result<()> {
    let mine = local_hash(p)?;
    let revs = remote.revisions(rel, 1).await.ok();
    let head = revs.as_ref().and_then(|r| r.revisions.first()).filter(|r| !r.deleted);
    if head.and_then(|h| ContentHash::parse(&h.hash)) != Some(mine) {
        bail!(
            "{rel} is not on the server as it is on this disk yet: wait until it is synced (`ferry wait`), then resolve"
        );
    }
    Ok(())
}

/// Writes `source`'s bytes over `target`: a temporary file beside it,
/// fsync'd, renamed into place.
fn replace_with(target: &Path, source: &Path) -> anyhow::Result<()> {
    let dir = target.parent().context("a file in a folder")?;
    let tmp = dir.join(format!(".ferry-resolve-{}", hex::encode(rand::random::<[u8; 8]>())));
    let result = (|| -> anyhow::Result<()> {
        let mut out = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        std::io::copy(&mut std::fs::File::open(source)?, &mut out)?;
        out.flush()?;
        out.sync_all()?;
        std::fs::rename(&tmp, target)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Resolves the conflict at `rel` (a conflict copy, or a file with exactly
/// one conflict copy beside it) in the folder `root`. Returns what it did.
pub async fn resolve(remote: &Remote, root: &Path, rel: &RelPath, keep: Keep) -> anyhow::Result<String> {
    let name = rel.name().context("give a file, not the folder")?;
    let parent = rel.parent().expect("not root");
    let dir = root.join(parent.as_str());
    let (copy, original) = match original_name(name) {
        Some(orig) => (rel.clone(), parent.join(&orig)?),
        None => {
            let stem = name.rfind('.').filter(|i| *i > 0).map_or(name, |i| &name[..i]);
            let mut copies: Vec<String> = std::fs::read_dir(&dir)
                .with_context(|| format!("reading {}", dir.display()))?
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(&format!("{stem}{MARK}")) && original_name(n).as_deref() == Some(name))
                .collect();
            copies.sort();
            match copies.as_slice() {
                [] => bail!("{rel} has no conflict copy beside it (`ferry conflicts` lists them)"),
                [one] => (parent.join(one)?, rel.clone()),
                many => bail!(
                    "{rel} has {} conflict copies: resolve each by its name:\n  {}",
                    many.len(),
                    many.join("\n  ")
                ),
            }
        }
    };
    let (copy_p, orig_p) = (root.join(copy.as_str()), root.join(original.as_str()));
    if !copy_p.is_file() {
        bail!("{copy} is not a file in the folder");
    }
    check_on_server(remote, &copy, &copy_p).await?;
    Ok(match keep {
        Keep::Mine => {
            if orig_p.exists() {
                check_on_server(remote, &original, &orig_p).await?;
            }
            replace_with(&orig_p, &copy_p)?;
            std::fs::remove_file(&copy_p)?;
            format!("kept your version at {original}; the other one is in its history (`ferry history {original}`)")
        }
        Keep::Theirs => {
            std::fs::remove_file(&copy_p)?;
            format!("kept {original} as it is; your version is in the history of {copy} (`ferry history`)")
        }
        Keep::Both => {
            let to = plain_name(&dir, original.name().expect("a name"));
            std::fs::rename(&copy_p, &to)?;
            let shown = to.strip_prefix(root).unwrap_or(&to).display().to_string();
            format!("kept both: {original} and {shown}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_names() {
        assert_eq!(
            original_name("report (conflicted copy from pc 2024-03-05 060708).txt").as_deref(),
            Some("report.txt")
        );
        assert_eq!(
            original_name("report (conflicted copy from pc 2024-03-05 060708) 2.txt").as_deref(),
            Some("report.txt")
        );
        assert_eq!(original_name("Makefile (conflicted copy from pc 2024-03-05 060708)").as_deref(), Some("Makefile"));
        assert_eq!(original_name("report.txt"), None);
    }
}
