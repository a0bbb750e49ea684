//! The local tree: a walk of the sync folder that records each entry's
//! identity (size, mtime, inode, executable bit) without reading content.
//!
//! Symlinks are never followed (they are skipped and reported); names Ferry
//! cannot sync (not UTF-8, control characters) are skipped and reported;
//! temporary and system files are ignored. Unreadable folders make the scan
//! fail as a whole: a folder that cannot be read is never taken as empty,
//! which would read as "everything in it was deleted".
//!
//! Names are keyed by their NFC form (the server's); a name spelled
//! otherwise on disk (NFD) is recorded in [`ScanReport::spellings`] so the
//! disk layer finds it. Two names in one folder with the same NFC form are
//! twins: the one spelled in NFC (else the first in byte order) is scanned,
//! the others are reported in [`ScanReport::twins`] to be moved aside.

use std::path::Path;

use ferry_shared::RelPath;
use ferry_shared::api::EntryKind;

use crate::sync::tree::{LocalNode, LocalTree};

/// Name of the marker file in the folder root that proves it is the synced
/// folder (and not, say, an empty mount point).
pub const MARKER: &str = ".ferry-root";
/// Prefix of Ferry's own temporary files (partial downloads).
pub const TEMP_PREFIX: &str = ".ferry-tmp-";

/// Files nobody wants synced: editor swap and backup files, OS metadata.
pub fn is_ignored(name: &str) -> bool {
    name == MARKER
        || name.starts_with(TEMP_PREFIX)
        || name == ".DS_Store"
        || name == "Thumbs.db"
        || name == "desktop.ini"
        || name.starts_with(".~lock.")
        || name.starts_with("~$")
        || name.starts_with(".#")
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.ends_with(".part")
        || name.ends_with(".crdownload")
}

/// Why a scan could not complete.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// The folder has no marker (say a disk was unmounted since it was
    /// checked, leaving its empty mount point): never read as "all deleted".
    #[error("{0} has no {MARKER} marker (an unmounted disk? a renamed folder?)")]
    NoMarker(String),
}

/// What a scan found besides the tree.
#[derive(Debug, Default)]
pub struct ScanReport {
    pub skipped: Vec<String>,
    /// Ferry's own temporary files (partial downloads), absolute paths.
    pub temp_files: Vec<std::path::PathBuf>,
    /// Names on disk that are not in NFC: the path scanned (NFC) → the name
    /// of its last segment as spelled on disk.
    pub spellings: std::collections::HashMap<RelPath, String>,
    /// Names left out because a twin with the same NFC form was scanned.
    pub twins: Vec<Twin>,
}

/// A name on disk whose NFC form another name in its folder has: it is not
/// scanned, and the engine moves it aside under a name of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Twin {
    /// The path both names stand for (NFC); the scanned twin is there.
    pub path: RelPath,
    /// This one's name as spelled on disk.
    pub spelling: String,
}

pub fn local_node(meta: &std::fs::Metadata) -> LocalNode {
    let kind = if meta.is_dir() { EntryKind::Dir } else { EntryKind::File };
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    #[cfg(unix)]
    let (inode, executable) = {
        use std::os::unix::fs::MetadataExt;
        (meta.ino(), kind == EntryKind::File && meta.mode() & 0o111 != 0)
    };
    #[cfg(not(unix))]
    let (inode, executable) = (0u64, false);
    LocalNode { kind, size: if kind == EntryKind::File { meta.len() } else { 0 }, mtime_ns, inode, executable }
}

/// Name of the user's ignore file in the folder root (gitignore syntax).
pub const IGNORE_FILE: &str = ".ferryignore";

/// The rules of `ROOT/.ferryignore` (none when it is absent; a broken line is
/// reported and skipped, the rest still apply).
fn user_ignores(root: &Path, report: &mut ScanReport) -> ignore::gitignore::Gitignore {
    let mut b = ignore::gitignore::GitignoreBuilder::new(root);
    let file = root.join(IGNORE_FILE);
    if file.exists()
        && let Some(e) = b.add(&file)
    {
        report.skipped.push(format!("{}: {e}", file.display()));
    }
    b.build().unwrap_or_else(|_| ignore::gitignore::Gitignore::empty())
}

/// Walks `root` and returns every syncable file and folder under it.
pub fn scan(root: &Path) -> Result<(LocalTree, ScanReport), ScanError> {
    let mut found = Vec::new();
    let mut report = ScanReport::default();
    let rules = user_ignores(root, &mut report);
    // (path as scanned, where it is on disk)
    let mut stack = vec![(RelPath::root(), root.to_path_buf())];
    let mut marker = false;
    while let Some((dir, abs)) = stack.pop() {
        let entries =
            std::fs::read_dir(&abs).map_err(|source| ScanError::Io { path: abs.display().to_string(), source })?;
        // Entries by their NFC name: (spelling on disk, metadata).
        let mut by_name: std::collections::BTreeMap<RelPath, Vec<(String, std::fs::Metadata)>> = Default::default();
        for entry in entries {
            let entry = entry.map_err(|source| ScanError::Io { path: abs.display().to_string(), source })?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                report.skipped.push(format!("{}: name is not UTF-8", entry.path().display()));
                continue;
            };
            if is_ignored(name) {
                if name.starts_with(TEMP_PREFIX) {
                    report.temp_files.push(entry.path());
                }
                marker |= dir.is_root() && name == MARKER;
                continue;
            }
            let meta = match entry.metadata() {
                Ok(m) => m,
                // Vanished between listing and stat: the next scan sees it right.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(ScanError::Io { path: entry.path().display().to_string(), source }),
            };
            if meta.file_type().is_symlink() {
                report.skipped.push(format!("{}: symbolic links are not synced", entry.path().display()));
                continue;
            }
            if !meta.is_file() && !meta.is_dir() {
                continue;
            }
            let path = match dir.join(name) {
                Ok(p) => p,
                Err(e) => {
                    report.skipped.push(format!("{}: {e}", entry.path().display()));
                    continue;
                }
            };
            by_name.entry(path).or_default().push((name.to_owned(), meta));
        }
        for (path, mut spelled) in by_name {
            let nfc = path.name().unwrap_or_default().to_owned();
            // The NFC spelling keeps the name, else the first in byte order.
            spelled.sort_by(|a, b| (a.0 != nfc).cmp(&(b.0 != nfc)).then_with(|| a.0.cmp(&b.0)));
            let mut spelled = spelled.into_iter();
            let (name, meta) = spelled.next().expect("a name");
            report.twins.extend(spelled.map(|(spelling, _)| Twin { path: path.clone(), spelling }));
            if rules.matched(path.as_str(), meta.is_dir()).is_ignore() {
                continue;
            }
            let node = local_node(&meta);
            if node.kind == EntryKind::Dir {
                stack.push((path.clone(), abs.join(&name)));
            }
            if name != nfc {
                report.spellings.insert(path.clone(), name);
            }
            found.push((path, node));
        }
    }
    if !marker {
        return Err(ScanError::NoMarker(root.display().to_string()));
    }
    // Bulk-built: full nodes, about half the memory of a map grown by inserts.
    Ok((found.into_iter().collect(), report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_files_and_folders_and_skips_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f.txt"), "x").unwrap();
        std::fs::write(root.join("top"), "yy").unwrap();
        std::fs::write(root.join(".ferry-tmp-123"), "partial").unwrap();
        std::fs::write(root.join("doc.swp"), "swap").unwrap();
        std::fs::write(root.join(MARKER), "id").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        let (tree, report) = scan(root).unwrap();
        let paths: Vec<&str> = tree.keys().map(|p| p.as_str()).collect();
        assert_eq!(paths, ["a", "a/b", "a/b/f.txt", "top"]);
        assert_eq!(tree[&RelPath::parse("top").unwrap()].size, 2);
        #[cfg(unix)]
        assert!(report.skipped.iter().any(|s| s.contains("symbolic")));
    }

    #[test]
    fn names_in_nfd_are_scanned_under_their_nfc_form_and_twins_reported() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (nfc, nfd) = ("caf\u{e9}", "cafe\u{301}");
        std::fs::create_dir(root.join(format!("{nfd} dir"))).unwrap();
        std::fs::write(root.join(format!("{nfd} dir/{nfd}.txt")), "x").unwrap();
        std::fs::write(root.join(format!("{nfc}.md")), "nfc").unwrap();
        std::fs::write(root.join(format!("{nfd}.md")), "nfd").unwrap();
        std::fs::write(root.join("What?.txt"), "?").unwrap();
        std::fs::write(root.join(MARKER), "id").unwrap();
        let (tree, report) = scan(root).unwrap();
        let paths: Vec<&str> = tree.keys().map(|p| p.as_str()).collect();
        let (d, f, md) = (format!("{nfc} dir"), format!("{nfc} dir/{nfc}.txt"), format!("{nfc}.md"));
        assert_eq!(paths, ["What?.txt", d.as_str(), f.as_str(), md.as_str()]);
        assert_eq!(report.spellings[&RelPath::parse(&d).unwrap()], format!("{nfd} dir"));
        assert_eq!(report.spellings[&RelPath::parse(&f).unwrap()], format!("{nfd}.txt"));
        assert_eq!(report.spellings.len(), 2);
        assert_eq!(report.twins, vec![Twin { path: RelPath::parse(&md).unwrap(), spelling: format!("{nfd}.md") }]);
    }

    #[test]
    fn ferryignore_in_gitignore_syntax() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("build/out")).unwrap();
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(root.join("build/out/x.o"), "o").unwrap();
        std::fs::write(root.join("src/main.rs"), "fn main() {}").unwrap();
        std::fs::write(root.join("src/notes.log"), "log").unwrap();
        std::fs::write(root.join("keep.log"), "log").unwrap();
        std::fs::write(root.join(IGNORE_FILE), "build/\n*.log\n!keep.log\n").unwrap();
        std::fs::write(root.join(MARKER), "id").unwrap();
        let (tree, _) = scan(root).unwrap();
        std::fs::remove_file(root.join(MARKER)).unwrap();
        assert!(matches!(scan(root), Err(ScanError::NoMarker(_))), "an empty mount point is never an empty folder");
        let paths: Vec<&str> = tree.keys().map(|p| p.as_str()).collect();
        assert_eq!(paths, [".ferryignore", "keep.log", "src", "src/main.rs"]);
    }
}
