//! The daemon's log file in the state directory (`logs/ferry.log`), kept
//! small by rotation (at [`MAX_BYTES`] it becomes `ferry.log.1`, and so on
//! to [`KEEP`] old files), and `ferry logs [--follow]` to read it.

use std::fs::File;
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A log file is rotated at this size.
pub const MAX_BYTES: u64 = 10 << 20;
/// Old log files kept (`ferry.log.1` … `ferry.log.KEEP`).
pub const KEEP: usize = 3;

pub fn log_file(state_dir: &Path) -> PathBuf {
    state_dir.join("logs").join("ferry.log")
}

/// An append-only log file that rotates itself.
pub struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    max: u64,
}

impl RotatingFile {
    pub fn open(path: &Path, max: u64) -> io::Result<RotatingFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile { path: path.to_owned(), file, size, max })
    }

    fn numbered(&self, n: usize) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    fn rotate(&mut self) -> io::Result<()> {
        for n in (1..KEEP).rev() {
            let _ = std::fs::rename(self.numbered(n), self.numbered(n + 1));
        }
        std::fs::rename(&self.path, self.numbered(1))?;
        self.file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.size > 0 && self.size + buf.len() as u64 > self.max {
            // A log that cannot rotate keeps growing rather than losing lines.
            let _ = self.rotate();
        }
        self.file.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// The last `n` lines of the log (fewer if it is shorter).
pub fn tail(path: &Path, n: usize) -> io::Result<Vec<String>> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    // Enough of the end for `n` lines of ordinary length.
    let from = len.saturating_sub((n as u64 + 1) * 512);
    f.seek(SeekFrom::Start(from))?;
    let mut text = String::new();
    f.read_to_string(&mut text).or_else(|_| {
        // Not UTF-8 where the read began: read it again, lossily.
        f.seek(SeekFrom::Start(from))?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)?;
        text = String::from_utf8_lossy(&bytes).into_owned();
        Ok::<_, io::Error>(text.len())
    })?;
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    if from > 0 && !lines.is_empty() {
        lines.remove(0); // probably cut
    }
    let skip = lines.len().saturating_sub(n);
    Ok(lines.split_off(skip))
}

/// Prints what is appended to the log as it comes (across rotations),
/// woken by the file watcher, until the process is stopped.
pub fn follow(path: &Path, mut out: impl Write) -> anyhow::Result<()> {
    use notify::Watcher;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |e| {
        let _ = tx.send(e);
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
    let mut f = std::io::BufReader::new(File::open(path)?);
    f.seek(SeekFrom::End(0))?;
    let mut pos = f.stream_position()?;
    loop {
        let mut line = String::new();
        while f.read_line(&mut line)? > 0 {
            out.write_all(line.as_bytes())?;
            pos += line.len() as u64;
            line.clear();
        }
        out.flush()?;
        // Wait for the next change (a minute at most, in case one is missed).
        let _ = rx.recv_timeout(std::time::Duration::from_secs(60));
        while rx.try_recv().is_ok() {}
        // Rotated: the file at the path is a new one, read from its start.
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if len < pos {
            f = std::io::BufReader::new(File::open(path)?);
            pos = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_and_keeps_a_few() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/ferry.log");
        let mut f = RotatingFile::open(&path, 100).unwrap();
        for i in 0..50 {
            writeln!(f, "line {i:03} of the log").unwrap();
        }
        assert!(std::fs::metadata(&path).unwrap().len() <= 100);
        let old: Vec<_> = (1..=KEEP + 1).map(|n| dir.path().join(format!("logs/ferry.log.{n}"))).collect();
        assert!(old[..KEEP].iter().all(|p| p.exists()) && !old[KEEP].exists());
        assert_eq!(tail(&path, 2).unwrap().last().unwrap(), "line 049 of the log");
        assert_eq!(tail(&path, 2).unwrap().len(), 2);
    }
}
