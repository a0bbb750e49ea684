//! Durable file writes: temp file + fsync + rename + directory fsync.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Writes `bytes` to `path` atomically and durably: a reader sees either the
/// old content or the new one, and after return the new one survives a crash.
pub fn write_atomic(path: &Path, tmp_dir: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = tempfile_in(tmp_dir)?;
    tmp.1.write_all(bytes)?;
    tmp.1.sync_data()?;
    fs::rename(&tmp.0, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn tempfile_in(dir: &Path) -> io::Result<(std::path::PathBuf, File)> {
    for _ in 0..16 {
        let name: u64 = rand::random();
        let p = dir.join(format!(".tmp-{name:016x}"));
        match OpenOptions::new().write(true).create_new(true).open(&p) {
            Ok(f) => return Ok((p, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("could not create a temporary file"))
}

/// fsyncs a directory so that renames and new entries in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Creates a new, empty file only its owner may read (mode 0600 on Unix),
/// open for writing.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}

/// Creates a new file readable only by its owner (mode 0600 on Unix) with `bytes`.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = create_private_file(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Creates a directory (and its parents) that only its owner can enter (mode
/// 0700 on Unix) if it does not exist; an existing one is left as it is.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    if dir.exists() {
        return Ok(());
    }
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).with_context(|| format!("creating {}", dir.display()))
}

/// Takes group and other access away from an existing file or folder
/// (Unix; elsewhere nothing). Returns whether it had any.
pub fn make_private(path: &Path) -> io::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7700))?;
            return Ok(true);
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(false)
}
