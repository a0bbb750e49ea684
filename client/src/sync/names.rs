//! What the local disk can hold: the one place the client decides it.
//!
//! The server's namespace is platform-neutral: any name in Unicode NFC
//! without `/` or control characters (see `ferry_shared::path`). A disk may
//! refuse some of those: Windows, and FAT, exFAT or NTFS volumes mounted on
//! Linux, cannot store `<>:"|?*\`, a name ending in a dot or a space, or a
//! reserved device name such as `CON` or `COM1`. The engine keeps such an
//! entry (with everything under it) off this disk, lists it in `ferry status`
//! with the reason, and never reads its absence here as a deletion.
//!
//! Names are never rewritten on disk: a name spelled in another Unicode
//! normalization (NFD, as macOS writes and Mac-made zip files carry) is
//! mapped to its NFC form, the server's name, by the disk layer
//! (`seams::LocalDisk`); see ARCHITECTURE.md.

use std::path::Path;

use ferry_shared::RelPath;

/// Which names a disk can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NameRules {
    /// Linux and macOS file systems: every name the server has.
    #[default]
    Posix,
    /// Windows, and FAT, exFAT and NTFS volumes anywhere.
    Windows,
}

/// Environment variable that forces the rules (`windows` or `posix`) instead
/// of detecting them from the folder's file system.
pub const RULES_ENV: &str = "FERRY_NAME_RULES";

impl NameRules {
    /// Why this disk cannot hold `name`, or `None` when it can.
    pub fn refuses(self, name: &str) -> Option<String> {
        match self {
            NameRules::Posix => None,
            NameRules::Windows => windows_refuses(name),
        }
    }

    /// Why this disk cannot hold `path` (some segment of it), or `None`.
    pub fn refuses_path(self, path: &RelPath) -> Option<String> {
        if self == NameRules::Posix {
            return None;
        }
        path.segments().find_map(|s| self.refuses(s))
    }

    /// The rules for a sync folder: Windows' on Windows; elsewhere
    /// [`RULES_ENV`] if set, else those of the file system the folder (or
    /// its nearest existing parent) is on.
    pub fn detect(folder: &Path) -> NameRules {
        // On Windows `\` and `:` separate paths: nothing may lift its rules.
        if cfg!(windows) {
            return NameRules::Windows;
        }
        match std::env::var(RULES_ENV).ok().as_deref().map(str::trim) {
            Some("windows") => return NameRules::Windows,
            Some("posix") => return NameRules::Posix,
            Some(other) if !other.is_empty() => {
                tracing::warn!(value = other, "{RULES_ENV} is neither 'windows' nor 'posix'; detecting the rules");
            }
            _ => {}
        }
        match os::fs_type(folder) {
            Some(t) if WINDOWS_FILE_SYSTEMS.contains(&t.as_str()) => NameRules::Windows,
            _ => NameRules::Posix,
        }
    }
}

/// File systems (as Linux names them) with Windows' naming rules.
const WINDOWS_FILE_SYSTEMS: [&str; 6] = ["vfat", "msdos", "exfat", "ntfs", "ntfs3", "fuseblk"];

fn windows_refuses(name: &str) -> Option<String> {
    if let Some(c) = name.chars().find(|c| matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*' | '\\')) {
        return Some(format!("this folder's file system (Windows rules) cannot store {c:?} in a name"));
    }
    if name.ends_with(' ') || name.ends_with('.') {
        return Some("this folder's file system (Windows rules) cannot store a name ending in a dot or a space".into());
    }
    let stem = name.split('.').next().unwrap_or("").trim_end().to_ascii_uppercase();
    let reserved = matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.len() == 4
            && stem.as_bytes()[3].is_ascii_digit()
            && stem.as_bytes()[3] != b'0');
    if reserved {
        return Some(format!("Windows reserves the name {stem} for a device"));
    }
    None
}

#[cfg(target_os = "linux")]
mod os {
    use std::path::{Path, PathBuf};

    /// The type of the file system `path` is on (`ext4`, `vfat`, ...), from
    /// `/proc/self/mountinfo`: the mount with the longest mount point above it.
    pub fn fs_type(path: &Path) -> Option<String> {
        let mut p = path.to_path_buf();
        let canonical = loop {
            if let Ok(c) = std::fs::canonicalize(&p) {
                break c;
            }
            if !p.pop() {
                return None;
            }
        };
        let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let mut best: Option<(PathBuf, String)> = None;
        for line in info.lines() {
            let (mount, fs) = parse_line(line)?;
            if canonical.starts_with(&mount)
                && best.as_ref().is_none_or(|(b, _)| mount.as_os_str().len() >= b.as_os_str().len())
            {
                best = Some((mount, fs));
            }
        }
        best.map(|(_, fs)| fs)
    }

    /// `(mount point, file system type)` of a mountinfo line.
    fn parse_line(line: &str) -> Option<(PathBuf, String)> {
        let fields: Vec<&str> = line.split(' ').collect();
        let mount = unescape(fields.get(4)?);
        let dash = fields.iter().position(|f| *f == "-")?;
        Some((PathBuf::from(mount), (*fields.get(dash + 1)?).to_owned()))
    }

    /// mountinfo writes space, tab, newline and backslash as `\NNN` (octal).
    fn unescape(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\'
                && let Some(Ok(v)) = s.get(i + 1..i + 4).map(|o| u8::from_str_radix(o, 8))
            {
                out.push(v);
                i += 4;
                continue;
            }
            out.push(b[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn mountinfo_lines() {
            let line = "36 35 98:0 / /media/me/USB\\040DISK rw,noatime master:1 - vfat /dev/sdb1 rw";
            assert_eq!(parse_line(line), Some((PathBuf::from("/media/me/USB DISK"), "vfat".to_owned())));
            assert!(fs_type(Path::new("/")).is_some());
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod os {
    /// Not detected here: only Linux mounts Windows file systems unnoticed.
    pub fn fs_type(_path: &std::path::Path) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_refuses_what_it_cannot_store() {
        let w = NameRules::Windows;
        for name in [
            "What?.txt",
            "Meeting: notes.md",
            "say \"hi\".txt",
            "a\\b",
            "x*",
            "<a>",
            "p|q",
            "CON",
            "con.txt",
            "COM1",
            "lpt9.log",
            "name.",
            "name ",
        ] {
            assert!(w.refuses(name).is_some(), "{name}");
            assert_eq!(NameRules::Posix.refuses(name), None, "{name}");
        }
        for name in ["ok.txt", "COM0", "CONSOLE", "-leading-dash.txt", "100%.txt", "caf\u{e9}", ".hidden"] {
            assert_eq!(w.refuses(name), None, "{name}");
        }
        let p = RelPath::parse("fine/Why?/x.txt").unwrap();
        assert!(w.refuses_path(&p).unwrap().contains('?'));
        assert_eq!(NameRules::Posix.refuses_path(&p), None);
    }
}
