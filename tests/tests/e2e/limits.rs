//! The edges of the disk: a sync folder on a full file system, and a 10 GiB
//! sparse file from one device to another.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ferry_tests::{Daemon, Server, add_user, pseudo_random, wait_until};

fn idle(d: &Daemon) -> bool {
    d.status()
        .map(|s| s["state"] == "idle" && s["pending_uploads"] == 0 && s["pending_downloads"] == 0)
        .unwrap_or(false)
}

fn recent_errors(d: &Daemon) -> String {
    d.status().map(|s| s["recent_errors"].to_string()).unwrap_or_default()
}

/// A small tmpfs, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    /// `None` where mounting is not allowed (not root, no CAP_SYS_ADMIN).
    fn mount(at: &Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(at.to_owned()))
    }

    fn grow(&self, size: &str) {
        let ok = Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(&self.0).status();
        assert!(ok.is_ok_and(|s| s.success()), "remounting {}", self.0.display());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_reported_and_retried_never_read_as_deletions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(disk) = SmallDisk::mount(&dir.path().join("small"), "12m") else {
        ferry_tests::skip(
            "a_full_disk_is_reported_and_retried_never_read_as_deletions",
            "a small tmpfs cannot be mounted here (needs root)",
        );
        return;
    };
    let server = Server::start().expect("server");
    let a = Daemon::start(&server, "alice", "A", dir.path()).expect("A");
    // B's folder and its state live on the small disk.
    let b = Daemon::start(&server, "alice", "B", &disk.0).expect("B");
    std::fs::write(b.path("mine.txt"), "B's own file").unwrap();
    wait_until(Duration::from_secs(60), "B's file on A", || a.path("mine.txt").exists()).unwrap();

    // 24 MiB of files for a 12 MiB disk.
    let files: Vec<(String, Vec<u8>)> = (0..8).map(|i| (format!("big-{i}.bin"), pseudo_random(3 << 20, i))).collect();
    for (name, data) in &files {
        std::fs::write(a.path(name), data).unwrap();
    }
    wait_until(Duration::from_secs(120), "B to report the full disk", || {
        recent_errors(&b).to_lowercase().contains("no space")
    })
    .unwrap();
    // What B shows is whole or absent; nothing was deleted anywhere.
    for (name, data) in &files {
        if let Ok(got) = std::fs::read(b.path(name)) {
            assert_eq!(&got, data, "{name} on B is partial");
        }
        assert_eq!(&std::fs::read(a.path(name)).unwrap(), data, "{name} changed on A");
    }
    assert_eq!(std::fs::read_to_string(b.path("mine.txt")).unwrap(), "B's own file");
    assert!(a.path("mine.txt").exists(), "a full disk on B deleted B's file on A");

    // Room again: B catches up by itself.
    disk.grow("64m");
    wait_until(Duration::from_secs(180), "B to catch up after the disk grew", || {
        idle(&b) && files.iter().all(|(name, data)| std::fs::read(b.path(name)).ok().as_ref() == Some(data))
    })
    .unwrap();
    drop((a, b));
}

/// BLAKE3 of a file, read in 8 MiB pieces.
fn hash_file(path: &Path) -> blake3::Hash {
    let mut f = std::fs::File::open(path).unwrap();
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 8 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            return h.finalize();
        }
        h.update(&buf[..n]);
    }
}

#[test]
fn a_10_gib_sparse_file_round_trips() {
    const SIZE: u64 = 10 << 30;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start().expect("server");
    add_user(&server.data, "carol", "password-carol", Some("20GiB")).expect("user with room for 10 GiB");
    let a = Daemon::start(&server, "carol", "A", dir.path()).expect("A");
    let b = Daemon::start(&server, "carol", "B", dir.path()).expect("B");

    // A disk image: mostly holes, data at the start, the middle and the end.
    let staging = dir.path().join("disk.img");
    let mut f = std::fs::File::create(&staging).unwrap();
    f.set_len(SIZE).unwrap();
    for (i, at) in [0, SIZE / 2 + 12_345, SIZE - (1 << 20)].into_iter().enumerate() {
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&pseudo_random(1 << 20, 100 + i as u64)).unwrap();
    }
    f.sync_all().unwrap();
    drop(f);
    let want = hash_file(&staging);
    std::fs::rename(&staging, a.path("disk.img")).unwrap();

    let got = b.path("disk.img");
    wait_until(Duration::from_secs(900), "the image on B", || {
        std::fs::metadata(&got).is_ok_and(|m| m.len() == SIZE) && idle(&b)
    })
    .unwrap_or_else(|e| panic!("{e}\nA: {}\nB: {}", recent_errors(&a), recent_errors(&b)));
    assert_eq!(hash_file(&got), want, "the image differs on B");
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let used = std::fs::metadata(&got).unwrap().blocks() * 512;
        assert!(used < 1 << 30, "B's copy takes {used} bytes on disk: the holes were written out");
    }
}
