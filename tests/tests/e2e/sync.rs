//! End-to-end sync tests: the real `ferry-server` and two real `ferry daemon`
//! processes (devices A and B of the same user, each with its own home and
//! folder under one temporary directory), driven through the file system and
//! the `ferry` command line. Every condition is awaited with a deadline;
//! nothing sleeps to "give sync time".
//!
//! Run with `cargo build -p ferry -p ferry-server && cargo test -p ferry-tests --test e2e sync::`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferry_shared::BlockId;
use ferry_shared::api::{ChangeOp, ChangesResponse};
use ferry_shared::chunk::{ChunkParams, Chunker};
use ferry_tests::{Client, Daemon, Server, pseudo_random, snapshot, wait_until};
use serde_json::Value;

/// Deadline for ordinary convergence.
const T: Duration = Duration::from_secs(60);
/// Deadline for big files and many files.
const BIG_T: Duration = Duration::from_secs(120);
const MIB: usize = 1 << 20;

type Snapshot = BTreeMap<String, Vec<u8>>;

// ---------------------------------------------------------------------------
// Helpers

/// A server and two daemons of alice (devA, devB) under one temporary directory.
struct Pair {
    a: Daemon,
    b: Daemon,
    server: Server,
    dir: tempfile::TempDir,
    /// A token of alice's for reading the server's tree (`server_tree`).
    checker: std::sync::OnceLock<String>,
}

impl Pair {
    fn start() -> Pair {
        let server = Server::start().expect("server");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("staging")).expect("staging dir");
        let a = Daemon::start(&server, "alice", "devA", dir.path()).expect("daemon A");
        let b = Daemon::start(&server, "alice", "devB", dir.path()).expect("daemon B");
        Pair { a, b, server, dir, checker: std::sync::OnceLock::new() }
    }

    /// A scratch directory on the same file system, outside both folders
    /// (files are prepared there and renamed in, so they appear at once).
    fn staging(&self, name: &str) -> PathBuf {
        self.dir.path().join("staging").join(name)
    }

    /// The last lines of every log, for failure messages.
    fn logs(&self) -> String {
        fn tail(s: &str) -> String {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        }
        format!(
            "\n--- daemon A log ---\n{}\n--- daemon B log ---\n{}\n--- server log ---\n{}",
            tail(&self.a.log()),
            tail(&self.b.log()),
            tail(&self.server.log())
        )
    }

    /// `wait_until`, panicking with the logs on timeout.
    fn wait(&self, timeout: Duration, what: &str, cond: impl FnMut() -> bool) {
        if let Err(e) = wait_until(timeout, what, cond) {
            panic!("{e}{}", self.logs());
        }
    }

    /// Like [`Pair::wait`], but evaluates `cond` at most every `every` (for
    /// conditions that read a lot of files).
    fn wait_every(&self, timeout: Duration, every: Duration, what: &str, mut cond: impl FnMut() -> bool) {
        let mut last: Option<Instant> = None;
        self.wait(timeout, what, || {
            if last.is_some_and(|l| l.elapsed() < every) {
                return false;
            }
            last = Some(Instant::now());
            cond()
        })
    }

    /// Waits until both folders hold exactly `expected`, then checks the
    /// daemons' states and that nothing was written outside the folders.
    fn settle(&self, timeout: Duration, what: &str, expected: &Snapshot) {
        let every = if expected.len() > 500 { Duration::from_millis(500) } else { Duration::from_millis(50) };
        let mut last: Option<Instant> = None;
        let r = wait_until(timeout, what, || {
            if last.is_some_and(|l| l.elapsed() < every) {
                return false;
            }
            last = Some(Instant::now());
            snapshot(&self.a.folder) == *expected && snapshot(&self.b.folder) == *expected
        });
        if let Err(e) = r {
            panic!(
                "{e}\nA vs expected: {}\nB vs expected: {}{}",
                diff(&snapshot(&self.a.folder), expected),
                diff(&snapshot(&self.b.folder), expected),
                self.logs()
            );
        }
        assert_eq!(snapshot(&self.a.folder), snapshot(&self.b.folder));
        self.check_states();
        self.check_contained();
    }

    /// Waits until B and the server show what A shows now (A being where
    /// the edits were made): A's disk is the expectation, and the server's
    /// tree must agree with it, so a change A never sent (or the server
    /// lost) fails here even when B matches A.
    fn settle_on_a(&self, what: &str) -> Snapshot {
        let expected = snapshot(&self.a.folder);
        self.settle(T, what, &expected);
        let want: BTreeMap<String, String> = expected
            .iter()
            .map(|(k, v)| (nfc(k), if k.ends_with('/') { String::new() } else { content_hash(v) }))
            .collect();
        let mut last = BTreeMap::new();
        let ok = wait_until(T, &format!("the server to hold {what}"), || {
            last = self.server_tree();
            last == want
        });
        if ok.is_err() {
            let mut diff = Vec::new();
            for (k, v) in &want {
                match last.get(k) {
                    None => diff.push(format!("missing on the server: {k}")),
                    Some(s) if s != v => diff.push(format!("different on the server: {k}")),
                    _ => {}
                }
            }
            diff.extend(last.keys().filter(|k| !want.contains_key(*k)).map(|k| format!("only on the server: {k}")));
            panic!("the server and A differ after {what}:\n{}{}", diff.join("\n"), self.logs());
        }
        expected
    }

    /// alice's tree on the server: `path` → content hash, `dir/` → "".
    fn server_tree(&self) -> BTreeMap<String, String> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let token = match self.checker.get() {
                Some(t) => t.clone(),
                None => {
                    let c = Client::user(&self.server, "alice", "checker").await.expect("login");
                    self.checker.get_or_init(|| c.token).clone()
                }
            };
            let alice = Client { http: reqwest::Client::new(), url: self.server.url.clone(), token, login: None };
            let mut out = BTreeMap::new();
            let mut folders = vec![String::new()];
            while let Some(folder) = folders.pop() {
                let mut url = reqwest::Url::parse(&format!("{}/files/list", alice.url)).expect("url");
                url.query_pairs_mut().append_pair("path", &folder);
                let listing: Value = alice
                    .http
                    .get(url)
                    .bearer_auth(&alice.token)
                    .send()
                    .await
                    .expect("list")
                    .json()
                    .await
                    .expect("listing");
                for e in listing["entries"].as_array().expect("entries") {
                    let path = e["path"].as_str().expect("path").to_owned();
                    if e["kind"] == "dir" {
                        out.insert(format!("{path}/"), String::new());
                        folders.push(path);
                    } else {
                        out.insert(path, e["hash"].as_str().expect("hash").to_owned());
                    }
                }
            }
            out
        })
    }

    /// Both daemons come to rest: idle (or paused, when a test paused one),
    /// never in error.
    fn check_states(&self) {
        for d in [&self.a, &self.b] {
            let mut last = Value::Null;
            let rested = wait_until(T, "the daemon to come to rest", || {
                last = d.status().unwrap_or_default();
                matches!(last["state"].as_str(), Some("idle" | "paused"))
            });
            if rested.is_err() {
                panic!("a daemon did not come to rest after settling: {last}{}", self.logs());
            }
        }
    }

    /// Nothing besides the two homes, the two folders and the staging area
    /// appears in the parent directory; no Ferry temp file is left over in
    /// either folder (downloads are written beside their targets).
    fn check_contained(&self) {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .expect("read tempdir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["folder-devA", "folder-devB", "home-devA", "home-devB", "staging"]);
        let canonical = std::fs::canonicalize(self.dir.path()).expect("canonical tempdir");
        assert_eq!(self.a.folder, canonical.join("folder-devA"));
        assert_eq!(self.b.folder, canonical.join("folder-devB"));
        for folder in [&self.a.folder, &self.b.folder] {
            let temps = leftover_temps(folder);
            assert!(temps.is_empty(), "temp files left in {}: {temps:?}", folder.display());
        }
    }

    /// Pauses `d` and waits until its status says so.
    fn pause(&self, d: &Daemon) {
        d.ferry(&["pause"]).expect("ferry pause");
        self.wait(T, "the paused state", || d.status().is_ok_and(|s| s["state"] == "paused"));
    }
}

/// Keys missing, extra or different between two snapshots (for messages).
fn diff(got: &Snapshot, want: &Snapshot) -> String {
    let mut out = Vec::new();
    for (k, v) in want {
        match got.get(k) {
            None => out.push(format!("missing {k}")),
            Some(g) if g != v => out.push(format!("different {k} ({} bytes, want {})", g.len(), v.len())),
            _ => {}
        }
    }
    for k in got.keys().filter(|k| !want.contains_key(*k)) {
        out.push(format!("extra {k}"));
    }
    if out.len() > 30 {
        let n = out.len();
        out.truncate(30);
        out.push(format!("... {} more", n - 30));
    }
    if out.is_empty() { "same".into() } else { out.join(", ") }
}

fn write(path: &Path, data: impl AsRef<[u8]>) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create parent");
    }
    std::fs::write(path, data).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

fn read(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path).ok()
}

/// Ferry's temp files (`.ferry-tmp-…`, `.ferry-resolve-…`) anywhere under `dir`.
fn leftover_temps(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(".ferry-tmp-") || name.starts_with(".ferry-resolve-") {
            out.push(p);
        } else if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(leftover_temps(&p));
        }
    }
    out
}

/// A snapshot key as the server spells it (NFC; folders keep their `/`).
fn nfc(key: &str) -> String {
    let (path, slash) = key.strip_suffix('/').map_or((key, ""), |p| (p, "/"));
    let p = ferry_shared::RelPath::parse(path).map(|p| p.to_string()).unwrap_or_else(|_| path.to_owned());
    format!("{p}{slash}")
}

/// Ferry's content hash of `data` (what the server reports as `hash`).
fn content_hash(data: &[u8]) -> String {
    let params = ChunkParams::for_size(data.len() as u64);
    let ids: Vec<BlockId> = Chunker::new(data, params).map(|c| BlockId::of(&c.expect("in memory").data)).collect();
    ferry_shared::block::content_hash(data.len() as u64, &ids)
}

/// Writes `size` pseudo-random bytes in 8 MiB pieces; returns their blake3 hash.
fn write_big(path: &Path, size: usize, seed: u64) -> blake3::Hash {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create big file"));
    let mut h = blake3::Hasher::new();
    let (mut left, mut i) = (size, 0u64);
    while left > 0 {
        let n = left.min(8 * MIB);
        let piece = pseudo_random(n, seed.wrapping_mul(1000).wrapping_add(i));
        h.update(&piece);
        f.write_all(&piece).expect("write big file");
        left -= n;
        i += 1;
    }
    f.into_inner().expect("flush").sync_all().expect("fsync");
    h.finalize()
}

fn hash_file(path: &Path) -> Option<blake3::Hash> {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(path).ok()?).ok()?;
    Some(h.finalize())
}

fn file_len(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

/// Ferry temp files (partial downloads) directly in `dir`, with their sizes.
fn temp_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".ferry-tmp-"))
        .map(|e| (e.path(), e.metadata().map(|m| m.len()).unwrap_or(0)))
        .collect()
}

/// Path → blake3 of the content ("dir" for folders), streaming (for big files).
fn digest(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).expect("under root").to_string_lossy().into_owned();
            if rel == ".ferry-root" || rel.contains(".ferry-tmp-") {
                continue;
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.insert(format!("{rel}/"), "dir".to_owned());
                stack.push(p);
            } else if let Some(h) = hash_file(&p) {
                out.insert(rel, h.to_hex().to_string());
            }
        }
    }
    out
}

/// `ferry history PATH --json` from `d`: the revisions, newest first, or
/// `None` when the server has no file there.
fn history(d: &Daemon, path: &str) -> Option<Vec<Value>> {
    let out = d.ferry(&["history", path, "--json", "--limit", "100"]).ok()?;
    let v: Value = serde_json::from_str(&out).expect("history JSON");
    Some(v["revisions"].as_array().expect("revisions").clone())
}

/// The server's head hash at `path` (`None`: no file, or deleted).
fn server_hash(d: &Daemon, path: &str) -> Option<String> {
    let revs = history(d, path)?;
    let head = revs.first()?;
    if head["deleted"].as_bool() == Some(true) {
        return None;
    }
    head["hash"].as_str().map(str::to_owned)
}

fn server_deleted(d: &Daemon, path: &str) -> bool {
    match history(d, path) {
        None => true,
        Some(revs) => revs.first().is_none_or(|h| h["deleted"].as_bool() == Some(true)),
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

#[cfg(unix)]
fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).expect("stat").ino()
}

fn mtime(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).and_then(|m| m.modified()).expect("mtime")
}

/// Runs a test body that needs the async `Client` on a blocking thread of
/// the test's runtime (the body calls `Handle::block_on` for API requests).
async fn blocking(body: impl FnOnce() + Send + 'static) {
    if let Err(e) = tokio::task::spawn_blocking(body).await {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// The whole journal after `cursor` (GET /changes, all pages).
fn journal(client: &Client, mut cursor: i64) -> (Vec<ferry_shared::api::Change>, i64) {
    let rt = tokio::runtime::Handle::current();
    let mut all = Vec::new();
    loop {
        let page: ChangesResponse = rt
            .block_on(async {
                let resp = client.get(&format!("/changes?cursor={cursor}&limit=1000")).send().await?;
                anyhow::ensure!(resp.status().is_success(), "GET /changes: {}", resp.status());
                Ok(resp.json().await?)
            })
            .expect("GET /changes");
        all.extend(page.changes);
        cursor = page.cursor;
        if !page.has_more {
            return (all, cursor);
        }
    }
}

// ---------------------------------------------------------------------------
// 1. Files both ways

#[test]
fn files_are_created_modified_and_deleted_both_ways() {
    let p = Pair::start();
    // A → B
    write(&p.a.path("hello.txt"), "hello from A");
    p.wait(T, "hello.txt on B", || read(&p.b.path("hello.txt")).as_deref() == Some(b"hello from A"));
    p.settle_on_a("create on A");

    write(&p.a.path("hello.txt"), "hello from A, edited to be longer");
    p.wait(T, "the edit on B", || {
        read(&p.b.path("hello.txt")).as_deref() == Some(b"hello from A, edited to be longer")
    });
    p.settle_on_a("modify on A");

    std::fs::remove_file(p.a.path("hello.txt")).unwrap();
    p.wait(T, "hello.txt gone on B", || !p.b.path("hello.txt").exists());
    p.settle_on_a("delete on A");

    // B → A
    write(&p.b.path("from-b.txt"), "written on B");
    p.wait(T, "from-b.txt on A", || read(&p.a.path("from-b.txt")).as_deref() == Some(b"written on B"));
    write(&p.b.path("from-b.txt"), "rewritten on B, now longer");
    p.wait(T, "B's edit on A", || read(&p.a.path("from-b.txt")).as_deref() == Some(b"rewritten on B, now longer"));
    let expected: Snapshot = [("from-b.txt".to_owned(), b"rewritten on B, now longer".to_vec())].into();
    p.settle(T, "modify on B", &expected);

    std::fs::remove_file(p.b.path("from-b.txt")).unwrap();
    p.settle(T, "delete on B", &Snapshot::new());
}

/// `ferry wait` returns once the daemon has sent everything (plain output when piped).
#[cfg(unix)]
#[test]
fn wait_returns_once_everything_is_sent() {
    let p = Pair::start();
    p.a.ferry(&["wait", "--timeout", "60"]).expect("wait on a fresh daemon");
    let data = pseudo_random(3 << 20, 42);
    write(&p.a.path("w.bin"), &data);
    let out = p.a.ferry(&["wait", "--timeout", "60"]).expect("ferry wait");
    assert!(out.contains("up to date"), "{out}");
    assert_eq!(server_hash(&p.a, "w.bin"), Some(content_hash(&data)), "wait returned before the upload");
    // A paused daemon is reported, not waited on forever.
    p.a.ferry(&["pause"]).expect("pause");
    p.wait(T, "A paused", || p.a.status().is_ok_and(|s| s["state"] == "paused"));
    let err = p.a.ferry(&["wait", "--timeout", "60"]).expect_err("wait on a paused daemon");
    assert!(err.to_string().contains("paused"), "{err}");
}

// ---------------------------------------------------------------------------
// 2. Folders and metadata

#[test]
fn folders_empty_folders_executable_bit_and_mtime_are_kept() {
    let p = Pair::start();
    std::fs::create_dir_all(p.a.path("empty")).unwrap();
    std::fs::create_dir_all(p.a.path("n1/n2/n3/n4")).unwrap();
    write(&p.a.path("n1/n2/file.txt"), "deep");
    write(&p.a.path("n1/top.txt"), "top");

    // An executable script and a file with an old mtime, prepared outside and
    // moved in so that they appear with their final metadata.
    let script = p.staging("run.sh");
    write(&script, "#!/bin/sh\necho hi\n");
    #[cfg(unix)]
    set_mode(&script, 0o755);
    std::fs::rename(&script, p.a.path("run.sh")).unwrap();
    let old = p.staging("old.txt");
    write(&old, "from 2001");
    let when = std::time::UNIX_EPOCH + Duration::from_millis(1_000_000_000_123);
    std::fs::File::options().write(true).open(&old).unwrap().set_modified(when).unwrap();
    std::fs::rename(&old, p.a.path("old.txt")).unwrap();
    write(&p.a.path("plain.sh"), "not executable yet");

    let expected = p.settle_on_a("folders and files on B");
    assert!(expected.contains_key("empty/") && expected.contains_key("n1/n2/n3/n4/"), "{:?}", expected.keys());
    assert!(p.b.path("empty").is_dir() && std::fs::read_dir(p.b.path("empty")).unwrap().next().is_none());
    #[cfg(unix)]
    {
        assert!(is_executable(&p.b.path("run.sh")), "the executable bit did not reach B");
        assert!(!is_executable(&p.b.path("old.txt")));
        assert!(!is_executable(&p.b.path("plain.sh")));
    }
    let (ma, mb) = (mtime(&p.a.path("old.txt")), mtime(&p.b.path("old.txt")));
    assert_eq!(ma, when, "A's mtime was changed");
    let skew = mb.duration_since(ma).unwrap_or_else(|e| e.duration());
    assert!(skew <= Duration::from_secs(1), "mtime on B is {mb:?}, on A {ma:?}");

    // chmod alone is a change too, both ways.
    #[cfg(unix)]
    {
        set_mode(&p.a.path("plain.sh"), 0o755);
        p.wait(T, "chmod +x on B", || is_executable(&p.b.path("plain.sh")));
        set_mode(&p.b.path("run.sh"), 0o644);
        p.wait(T, "chmod -x on A", || !is_executable(&p.a.path("run.sh")));
        p.settle_on_a("chmod");
    }

    // rmdir of an empty folder, rm -r of a tree, mkdir on B.
    std::fs::remove_dir(p.a.path("empty")).unwrap();
    std::fs::remove_dir_all(p.a.path("n1")).unwrap();
    std::fs::create_dir_all(p.b.path("made-on-b/inner")).unwrap();
    p.wait(T, "B's folders on A", || p.a.path("made-on-b/inner").is_dir());
    p.wait(T, "rmdir on B", || !p.b.path("empty").exists() && !p.b.path("n1").exists());
    let expected = p.settle_on_a("rmdir and mkdir");
    assert!(!expected.keys().any(|k| k.starts_with("n1") || k.starts_with("empty")), "{:?}", expected.keys());
    assert!(expected.contains_key("made-on-b/inner/"));
}

// ---------------------------------------------------------------------------
// 3. Renames are moves

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renames_are_recorded_as_moves_without_uploads() {
    blocking(|| {
        let p = Pair::start();
        let rt = tokio::runtime::Handle::current();
        let api = rt.block_on(Client::user(&p.server, "alice", "journal-reader")).expect("login");
        write(&p.a.path("docs/report.txt"), pseudo_random(300_000, 3));
        write(&p.a.path("folder/a.txt"), "a");
        write(&p.a.path("folder/sub/b.txt"), "b");
        std::fs::create_dir_all(p.a.path("folder/empty")).unwrap();
        p.settle_on_a("initial files");
        let (_, cursor) = journal(&api, 0);
        #[cfg(unix)]
        let (ino_file, ino_b) = (inode(&p.b.path("docs/report.txt")), inode(&p.b.path("folder/sub/b.txt")));

        std::fs::rename(p.a.path("docs/report.txt"), p.a.path("docs/report-final.txt")).unwrap();
        std::fs::rename(p.a.path("folder"), p.a.path("renamed")).unwrap();
        p.wait(T, "the renames on B", || {
            p.b.path("docs/report-final.txt").exists() && p.b.path("renamed/sub/b.txt").exists()
        });
        let expected = p.settle_on_a("renames");
        assert!(expected.contains_key("renamed/empty/"));

        let (changes, _) = journal(&api, cursor);
        let summary: Vec<String> = changes
            .iter()
            .map(|c| format!("{:?} {} (from {:?})", c.op, c.entry.path, c.from.as_ref().map(|f| f.to_string())))
            .collect();
        let moved = |from: &str, to: &str| {
            changes.iter().any(|c| {
                c.op == ChangeOp::Move
                    && c.entry.path.as_str() == to
                    && c.from.as_ref().map(|f| f.as_str()) == Some(from)
            })
        };
        assert!(moved("docs/report.txt", "docs/report-final.txt"), "no move of the file: {summary:?}");
        assert!(moved("folder", "renamed"), "no move of the folder: {summary:?}");
        assert!(
            changes.iter().all(|c| !matches!(c.op, ChangeOp::Add | ChangeOp::Modify | ChangeOp::Delete)),
            "a rename caused uploads or deletions: {summary:?}"
        );
        // B moved its files too instead of downloading them again.
        #[cfg(unix)]
        {
            assert_eq!(inode(&p.b.path("docs/report-final.txt")), ino_file, "B downloaded it again{}", p.logs());
            assert_eq!(inode(&p.b.path("renamed/sub/b.txt")), ino_b, "B downloaded it again{}", p.logs());
        }
    })
    .await;
}

// ---------------------------------------------------------------------------
// 4. A big file

#[test]
fn a_256_mib_file_syncs_intact() {
    let p = Pair::start();
    let size = 256 * MIB;
    let staged = p.staging("big.bin");
    let want = write_big(&staged, size, 4);
    std::fs::rename(&staged, p.a.path("big.bin")).unwrap();
    let target = p.b.path("big.bin");
    // The download is renamed into place whole: once the size is right, so is the content.
    p.wait_every(BIG_T, Duration::from_millis(100), "big.bin on B", || file_len(&target) == Some(size as u64));
    assert_eq!(hash_file(&target), Some(want), "big.bin differs on B");
    assert_eq!(hash_file(&p.a.path("big.bin")), Some(want), "big.bin changed on A");
    assert_eq!(digest(&p.a.folder), digest(&p.b.folder));
    p.check_contained();
}

// ---------------------------------------------------------------------------
// 5. Many files

#[test]
fn five_thousand_small_files_sync() {
    let p = Pair::start();
    let mut expected = Snapshot::new();
    for d in 0..10 {
        expected.insert(format!("many/d{d}/"), Vec::new());
    }
    expected.insert("many/".into(), Vec::new());
    for i in 0..5000u64 {
        let rel = format!("many/d{}/f{i:04}.txt", i % 10);
        let mut data = format!("file {i}\n").into_bytes();
        data.extend(pseudo_random((i % 300) as usize, i));
        write(&p.a.path(&rel), &data);
        expected.insert(rel, data);
    }
    let count = |root: &Path| -> usize {
        (0..10).map(|d| std::fs::read_dir(root.join(format!("many/d{d}"))).map(|r| r.count()).unwrap_or(0)).sum()
    };
    p.wait_every(BIG_T, Duration::from_millis(250), "5000 files on B", || count(&p.b.folder) == 5000);
    p.settle(BIG_T, "5000 files", &expected);
}

// ---------------------------------------------------------------------------
// 6. Nested moves

#[test]
fn nested_folder_moves() {
    let p = Pair::start();
    write(&p.a.path("x/y/z/f1.txt"), "one");
    write(&p.a.path("x/y/z/deeper/f2.txt"), "two");
    write(&p.a.path("x/y/keep.txt"), "stays");
    std::fs::create_dir_all(p.a.path("w")).unwrap();
    write(&p.a.path("s1/a.txt"), "s1's");
    std::fs::create_dir_all(p.a.path("s1/empty")).unwrap();
    write(&p.a.path("s2/sub/b.txt"), "s2's");
    p.settle_on_a("initial tree");
    #[cfg(unix)]
    let (ino_f2, ino_a) = (inode(&p.b.path("x/y/z/deeper/f2.txt")), inode(&p.b.path("s1/a.txt")));

    // x/y/z into another folder; s1 into a subfolder of its sibling s2.
    std::fs::rename(p.a.path("x/y/z"), p.a.path("w/z")).unwrap();
    std::fs::rename(p.a.path("s1"), p.a.path("s2/sub/s1")).unwrap();
    p.wait(T, "the moves on B", || p.b.path("w/z/deeper/f2.txt").exists() && p.b.path("s2/sub/s1/a.txt").exists());
    let expected = p.settle_on_a("first moves");
    assert!(expected.contains_key("s2/sub/s1/empty/") && !expected.contains_key("x/y/z/"));
    #[cfg(unix)]
    {
        assert_eq!(inode(&p.b.path("w/z/deeper/f2.txt")), ino_f2, "B downloaded a moved file again");
        assert_eq!(inode(&p.b.path("s2/sub/s1/a.txt")), ino_a, "B downloaded a moved file again");
    }

    // Move w (holding z) back under x/y, and s2/sub up to the root, from B.
    std::fs::rename(p.b.path("w"), p.b.path("x/y/w")).unwrap();
    std::fs::rename(p.b.path("s2/sub"), p.b.path("sub")).unwrap();
    p.wait(T, "B's moves on A", || p.a.path("x/y/w/z/f1.txt").exists() && p.a.path("sub/s1/a.txt").exists());
    let expected = snapshot(&p.b.folder);
    p.settle(T, "second moves", &expected);
    assert_eq!(expected.get("x/y/w/z/deeper/f2.txt").map(Vec::as_slice), Some(&b"two"[..]));
    assert!(expected.contains_key("s2/") && !expected.contains_key("s2/sub/"));
}

// ---------------------------------------------------------------------------
// 7 + 13. Concurrent edits make a conflict copy; status and conflicts commands

/// `NAME (conflicted copy from DEVICE YYYY-MM-DD HHMMSS).EXT`
fn is_conflict_copy(name: &str, stem: &str, device: &str, ext: &str) -> bool {
    let Some(rest) = name.strip_prefix(&format!("{stem} (conflicted copy from {device} ")) else { return false };
    let Some(stamp) = rest.strip_suffix(&format!("){ext}")) else { return false };
    let b = stamp.as_bytes();
    b.len() == 17
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b' ',
            _ => c.is_ascii_digit(),
        })
}

#[test]
fn concurrent_edits_keep_both_versions() {
    let p = Pair::start();
    write(&p.a.path("notes.txt"), "base version");
    p.settle_on_a("the base version");

    p.pause(&p.b);
    assert_eq!(p.b.status().unwrap()["state"], "paused");
    let from_a = b"edited on A".to_vec();
    let from_b = b"edited on B, with other text".to_vec();
    write(&p.a.path("notes.txt"), &from_a);
    let want = content_hash(&from_a);
    p.wait(T, "A's edit on the server", || server_hash(&p.a, "notes.txt").as_deref() == Some(want.as_str()));
    write(&p.b.path("notes.txt"), &from_b);
    assert_eq!(p.b.status().unwrap()["state"], "paused");
    p.b.ferry(&["resume"]).expect("ferry resume");

    let copy_name = |snap: &Snapshot| -> Vec<String> {
        snap.keys().filter(|k| is_conflict_copy(k, "notes", "devB", ".txt")).cloned().collect()
    };
    p.wait_every(T, Duration::from_millis(50), "a converged conflict", || {
        let (sa, sb) = (snapshot(&p.a.folder), snapshot(&p.b.folder));
        sa == sb && sa.len() == 2 && copy_name(&sa).len() == 1
    });
    let snap = snapshot(&p.a.folder);
    let copies = copy_name(&snap);
    assert_eq!(snap.get("notes.txt"), Some(&from_a), "the server's version keeps the path");
    assert_eq!(snap.get(&copies[0]), Some(&from_b), "B's version is kept in the conflict copy");
    p.settle(T, "conflict", &snap);

    // `ferry conflicts` lists the copy on both devices.
    for d in [&p.a, &p.b] {
        let listed: Vec<String> = serde_json::from_str(&d.ferry(&["conflicts", "--json"]).unwrap()).unwrap();
        assert_eq!(listed, copies, "ferry conflicts on {}", d.device);
    }
    let status = p.b.status().unwrap();
    assert!(
        status["conflicts"].as_array().is_some_and(|c| c.iter().any(|x| x == copies[0].as_str())),
        "B's status does not mention the conflict: {status}"
    );
}

// ---------------------------------------------------------------------------
// 8. Edit wins over delete

#[test]
fn an_edit_wins_over_a_delete() {
    let p = Pair::start();
    write(&p.a.path("keep.txt"), "original");
    write(&p.a.path("other.txt"), "untouched");
    p.settle_on_a("the original");

    p.pause(&p.b);
    std::fs::remove_file(p.a.path("keep.txt")).unwrap();
    p.wait(T, "the deletion on the server", || server_deleted(&p.a, "keep.txt"));
    write(&p.b.path("keep.txt"), "edited on B while A deleted it");
    p.b.ferry(&["resume"]).expect("ferry resume");

    let expected: Snapshot = [
        ("keep.txt".to_owned(), b"edited on B while A deleted it".to_vec()),
        ("other.txt".to_owned(), b"untouched".to_vec()),
    ]
    .into();
    p.settle(T, "the edit on both", &expected);
}

/// The mass-deletion guard: a folder that vanishes (an unmounted disk)
/// deletes nothing and syncing goes on when it is back; 1,200 files removed
/// (even by a removal that stalls on the way) pause the daemon with nothing
/// deleted anywhere, until the person runs `ferry resume --confirm-deletes`.
#[test]
fn mass_deletions_wait_for_the_person() {
    let p = Pair::start();
    let staged = p.staging("many");
    std::fs::create_dir(&staged).unwrap();
    for i in 0..1200 {
        write(&staged.join(format!("f{i:04}.txt")), format!("file {i}"));
    }
    std::fs::rename(&staged, p.a.path("many")).unwrap();
    write(&p.a.path("keep.txt"), "stays");
    let count = |d: &Daemon| std::fs::read_dir(d.path("many")).map(|r| r.count()).unwrap_or(0);
    p.wait_every(BIG_T, Duration::from_millis(200), "1,200 files on B", || count(&p.b) == 1200);
    p.settle_on_a("1,200 files");

    // Unmounted: the folder is gone (moved away), then back.
    let away = p.staging("unmounted");
    std::fs::rename(&p.a.folder, &away).unwrap();
    // A write in the moved folder wakes the watcher: A looks, finds no folder.
    write(&away.join("moved.txt"), "written where the folder went");
    p.wait(T, "A to say its folder is missing", || p.a.log().contains("the sync folder is unavailable"));
    assert!(p.a.status().is_ok_and(|s| s["state"] == "error"), "A shows the missing folder");
    std::fs::rename(&away, &p.a.folder).unwrap();
    write(&p.a.path("after.txt"), "written once the folder was back");
    p.wait(T, "after.txt on B", || p.b.path("after.txt").exists());
    assert_eq!(count(&p.b), 1200, "an unmounted folder deleted files");

    // Emptied by a removal that stalls a third of the way (a slow disk, a
    // busy machine): A's watcher goes quiet and a round sees 400 deletions,
    // which wait for the rest; then all of it pauses, nothing deleted on the
    // server or on B.
    for i in 0..400 {
        std::fs::remove_file(p.a.path(&format!("many/f{i:04}.txt"))).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300)); // the stall, not a wait for anything
    std::fs::remove_dir_all(p.a.path("many")).unwrap();
    let mut last = Value::Null;
    p.wait(T, "A to pause for the deletions", || {
        last = p.a.status().unwrap_or_default();
        last["state"] == "paused"
    });
    assert!(last.to_string().contains("--confirm-deletes"), "the pause tells what to run: {last}");
    assert_eq!(count(&p.b), 1200, "B lost files before anyone confirmed");
    assert!(!server_deleted(&p.a, "many/f0000.txt"), "the server deleted before anyone confirmed");
    // Paused, A still sends nothing else: a new file stays on A.
    write(&p.a.path("while-paused.txt"), "waits");
    p.a.ferry(&["resume", "--confirm-deletes"]).expect("ferry resume --confirm-deletes");
    p.wait_every(T, Duration::from_millis(200), "the deletions on B", || count(&p.b) == 0);
    assert!(server_deleted(&p.a, "many/f0000.txt"));
    p.settle_on_a("the confirmed deletions");
    assert_eq!(read(&p.b.path("while-paused.txt")).as_deref(), Some(&b"waits"[..]));
    assert_eq!(read(&p.b.path("keep.txt")).as_deref(), Some(&b"stays"[..]));
}

// ---------------------------------------------------------------------------
// 9. Server restart during an upload

#[test]
fn server_restart_during_an_upload() {
    let mut p = Pair::start();
    write(&p.a.path("before.txt"), "before");
    p.settle_on_a("a first file");
    let size = 128 * MIB;
    let staged = p.staging("upload.bin");
    let want = write_big(&staged, size, 9);
    std::fs::rename(&staged, p.a.path("upload.bin")).unwrap();
    // Blocks are arriving: restart now.
    let block_puts = |log: String| {
        log.lines().filter(|l| l.contains("/blocks/batch") || (l.contains("PUT") && l.contains("/blocks/"))).count()
    };
    p.wait(BIG_T, "block uploads", || block_puts(p.server.log()) >= 3);
    p.server.restart_same_port().expect("server restart");
    write(&p.a.path("after.txt"), "written while the server came back");

    let target = p.b.path("upload.bin");
    p.wait_every(BIG_T, Duration::from_millis(100), "upload.bin on B", || file_len(&target) == Some(size as u64));
    assert_eq!(hash_file(&target), Some(want), "upload.bin differs on B");
    p.wait(T, "after.txt on B", || p.b.path("after.txt").exists());
    // The upload was cut by the restart: the rest of it went to the new server.
    assert!(block_puts(p.server.log()) > 0, "the upload had finished before the restart; the test proves nothing");
    assert_eq!(digest(&p.a.folder), digest(&p.b.folder));
    p.check_states();
    p.check_contained();
}

// ---------------------------------------------------------------------------
// 10. kill -9 during a download: never a partial file at the target

#[test]
fn killed_during_a_download_never_shows_a_partial_file() {
    let mut p = Pair::start();
    let size = 192 * MIB;
    let target = p.b.path("video.bin");
    let staged = p.staging("video.bin");
    let want = write_big(&staged, size, 10);

    // Watch the target the whole time: absent, or complete.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, target) = (Arc::clone(&stop), target.clone());
        std::thread::spawn(move || {
            let (mut seen, mut bad, mut checked) = (0u64, Vec::new(), false);
            while !stop.load(Ordering::Relaxed) {
                if let Ok(m) = std::fs::metadata(&target) {
                    seen += 1;
                    if m.len() != size as u64 {
                        bad.push(m.len());
                    } else if !checked {
                        checked = true;
                        if hash_file(&target) != Some(want) {
                            bad.push(u64::MAX);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            (seen, bad)
        })
    };

    std::fs::rename(&staged, p.a.path("video.bin")).unwrap();
    p.wait(BIG_T, "B downloading", || temp_files(&p.b.folder).iter().any(|(_, n)| *n >= 8 * MIB as u64));
    p.b.kill();
    assert!(!target.exists(), "the download finished before the kill; the test proves nothing");
    let leftovers = temp_files(&p.b.folder);
    assert!(!leftovers.is_empty());
    p.b.restart().expect("restart B");

    p.wait_every(BIG_T, Duration::from_millis(100), "video.bin on B after the restart", || {
        file_len(&target) == Some(size as u64)
    });
    assert_eq!(hash_file(&target), Some(want), "video.bin differs on B");
    stop.store(true, Ordering::Relaxed);
    let (seen, bad) = watcher.join().expect("watcher thread");
    assert!(seen > 0, "the watcher never saw the file");
    assert!(bad.is_empty(), "a partial file was visible at the target (sizes {bad:?}, MAX = wrong content)");
    assert_eq!(digest(&p.a.folder), digest(&p.b.folder));
    p.wait(T, "the partial download cleaned up", || {
        temp_files(&p.b.folder).iter().all(|(t, _)| !leftovers.iter().any(|(l, _)| l == t))
    });
    p.check_states();
    p.check_contained();
}

// ---------------------------------------------------------------------------
// 11. A device offline for a while catches up

#[test]
fn an_offline_device_catches_up() {
    let mut p = Pair::start();
    for i in 0..20 {
        write(&p.a.path(&format!("base/f{i:02}.txt")), format!("base {i}"));
    }
    write(&p.a.path("dir/inner/x.txt"), "x");
    p.settle_on_a("the base");

    p.b.kill();
    for i in 0..20 {
        write(&p.a.path(&format!("new/n{i:02}.txt")), pseudo_random(1000 + i, i as u64));
    }
    for i in 0..5 {
        write(&p.a.path(&format!("base/f{i:02}.txt")), format!("modified while B was away {i}"));
    }
    for i in 5..10 {
        std::fs::remove_file(p.a.path(&format!("base/f{i:02}.txt"))).unwrap();
    }
    for i in 10..13 {
        std::fs::rename(p.a.path(&format!("base/f{i:02}.txt")), p.a.path(&format!("base/renamed{i:02}.txt"))).unwrap();
    }
    std::fs::rename(p.a.path("dir"), p.a.path("dir-renamed")).unwrap();
    std::fs::create_dir_all(p.a.path("fresh/empty")).unwrap();
    let expected = snapshot(&p.a.folder);

    // Everything reached the server before B comes back.
    p.wait(T, "A's changes on the server", || {
        server_hash(&p.a, "new/n19.txt").is_some_and(|h| h == content_hash(&expected["new/n19.txt"]))
            && server_hash(&p.a, "base/f04.txt").is_some_and(|h| h == content_hash(&expected["base/f04.txt"]))
            && server_deleted(&p.a, "base/f09.txt")
            && server_hash(&p.a, "base/renamed12.txt").is_some()
            && server_hash(&p.a, "dir-renamed/inner/x.txt").is_some()
    });
    p.b.restart().expect("restart B");
    p.settle(T, "B caught up", &expected);
}

// ---------------------------------------------------------------------------
// 12. Nothing is written outside the folders

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_escapes_the_folders() {
    blocking(|| {
        let p = Pair::start();
        let rt = tokio::runtime::Handle::current();
        // Unusual but valid names sync, names Windows cannot store too (the
        // namespace is platform-neutral); a symbolic link stays local.
        let valid = ["..dots", "a..b", "-rf", " leading space", "ünïcødé.txt", "名前.txt", "semi;colon", "#hash"];
        for (i, name) in valid.iter().enumerate() {
            write(&p.a.path(name), format!("valid {i}"));
        }
        let deep: String = (0..40).map(|i| format!("d{i}/")).collect();
        write(&p.a.path(&format!("{deep}bottom.txt")), "deep");
        write(&p.a.path("trailing dot."), "not for Windows");
        write(&p.a.path("back\\slash"), "a name on Linux");
        write(&p.a.path("colon:name"), "a name on Linux");
        #[cfg(unix)]
        std::os::unix::fs::symlink("../../", p.a.path("escape-link")).unwrap();
        p.wait(T, "the deep file on B", || p.b.path(&format!("{deep}bottom.txt")).exists());
        for name in valid {
            p.wait(T, name, || p.b.path(name).exists());
        }

        // The server refuses a path that climbs out (checked on the wire, with a raw request).
        let api = rt.block_on(Client::user(&p.server, "alice", "raw")).expect("login");
        for path in ["../escape.txt", "a/../../escape", "/../escape", "a/./../b"] {
            let body = serde_json::json!({"ops": [{"op": "mkdir", "path": path}]});
            let (status, text) = rt.block_on(async {
                let r = api.post("/commit").json(&body).send().await.expect("POST /commit");
                (r.status(), r.text().await.unwrap_or_default())
            });
            let refused = status.is_client_error()
                || serde_json::from_str::<Value>(&text)
                    .is_ok_and(|v| v["results"][0]["status"].as_u64().is_some_and(|s| s >= 400));
            assert!(refused, "the server accepted {path:?}: {status} {text}");
        }
        write(&p.a.path("last.txt"), "the end");
        p.wait(T, "last.txt on B", || p.b.path("last.txt").exists());

        for name in ["trailing dot.", "back\\slash", "colon:name"] {
            p.wait(T, name, || p.b.path(name).exists());
        }
        let expected = snapshot(&p.a.folder);
        let b = snapshot(&p.b.folder);
        assert_eq!(b, expected, "{}", diff(&b, &expected));
        assert!(!p.b.path("escape-link").exists());
        p.check_contained();
        let stray: BTreeSet<String> = ["escape.txt", "escape"]
            .iter()
            .flat_map(|n| [p.dir.path().join(n), p.dir.path().parent().unwrap().join(n)])
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        assert!(stray.is_empty(), "{stray:?}");
    })
    .await;
}

// ---------------------------------------------------------------------------
// 13. History and restore

#[test]
fn history_lists_revisions_and_restore_brings_an_old_version_back() {
    let p = Pair::start();
    let versions = ["version one", "version two, longer", "version three, the longest of all"];
    for v in versions {
        // Saved whole, as editors save (written beside the folder, then
        // renamed in): written in place, the daemon may rightly find the
        // file emptied between two versions, and keep that as one more.
        let saving = p.staging("doc.txt");
        write(&saving, v);
        std::fs::rename(&saving, p.a.path("doc.txt")).expect("rename into the folder");
        p.wait(T, v, || read(&p.b.path("doc.txt")).as_deref() == Some(v.as_bytes()));
    }
    p.settle_on_a("three versions");

    let revs = history(&p.b, "doc.txt").expect("history from B");
    let hashes: Vec<&str> = revs.iter().map(|r| r["hash"].as_str().unwrap()).collect();
    let want: Vec<String> = versions.iter().rev().map(|v| content_hash(v.as_bytes())).collect();
    assert_eq!(hashes, want, "history (newest first): {revs:?}");
    let ids: Vec<i64> = revs.iter().map(|r| r["rev"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    assert!(revs.iter().all(|r| r["device"] == "devA" && r["deleted"] == false), "{revs:?}");
    // Also by absolute path.
    let abs = p.a.path("doc.txt").display().to_string();
    assert_eq!(history(&p.a, &abs).expect("history by absolute path").len(), 3);

    let first = ids[2].to_string();
    p.b.ferry(&["restore", "doc.txt", "--rev", &first]).expect("ferry restore");
    let expected: Snapshot = [("doc.txt".to_owned(), versions[0].as_bytes().to_vec())].into();
    p.settle(T, "the restored version on both", &expected);
    let revs = history(&p.a, "doc.txt").unwrap();
    assert_eq!(revs.len(), 4);
    assert_eq!(revs[0]["hash"], want[2].as_str());
}

/// A folder deleted on one device is one item in the trash (who, which
/// device, what was in it); `ferry restore-deleted` on the other brings all
/// of it back to both.
#[test]
fn trash_lists_a_deleted_folder_and_restore_deleted_brings_it_back() {
    let p = Pair::start();
    std::fs::create_dir_all(p.a.path("project/sub")).unwrap();
    write(&p.a.path("project/a.txt"), "first");
    write(&p.a.path("project/sub/b.txt"), "second file");
    let expected: Snapshot = [
        ("project/".to_owned(), Vec::new()),
        ("project/sub/".to_owned(), Vec::new()),
        ("project/a.txt".to_owned(), b"first".to_vec()),
        ("project/sub/b.txt".to_owned(), b"second file".to_vec()),
    ]
    .into();
    p.settle(T, "the folder on both", &expected);
    assert!(p.b.ferry(&["trash"]).unwrap().contains("the trash is empty"));

    std::fs::remove_dir_all(p.a.path("project")).unwrap();
    p.wait(T, "the folder gone from B", || !p.b.path("project").exists());
    p.settle_on_a("the deletion");
    let trash: Value = serde_json::from_str(&p.b.ferry(&["trash", "--json"]).unwrap()).unwrap();
    let items = trash["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "one item for the folder and what was in it: {trash}");
    assert_eq!(items[0]["path"], "project");
    assert_eq!((items[0]["items"].as_u64(), items[0]["size"].as_u64()), (Some(3), Some(16)), "{trash}");
    assert_eq!(items[0]["device"], "devA");
    let text = p.b.ferry(&["trash"]).unwrap();
    assert!(text.contains("(devA)  project/  (3 items, 16 bytes)"), "{text}");

    let err = p.b.ferry(&["restore-deleted", "never-there"]).unwrap_err().to_string();
    assert!(err.contains("nothing deleted at 'never-there'"), "{err}");
    let out = p.b.ferry(&["restore-deleted", "project"]).unwrap();
    assert!(out.contains("restored project"), "{out}");
    p.settle(T, "the folder back on both", &expected);
    assert!(p.a.ferry(&["trash"]).unwrap().contains("the trash is empty"));
}

// ---------------------------------------------------------------------------
// 14. Names that differ only by case never overwrite each other

#[test]
fn case_twins_keep_both_files() {
    let p = Pair::start();
    write(&p.a.path("Note.txt"), "first spelling");
    write(&p.a.path("NOTE.txt"), "second spelling");
    // Both contents end up on both devices: one under its name, the other as a
    // conflict copy (the server and other devices cannot hold case twins).
    p.wait(T, "both versions on B", || {
        let snap = snapshot(&p.b.folder);
        let values: Vec<&Vec<u8>> = snap.values().collect();
        snap.len() == 2
            && values.contains(&&b"first spelling".to_vec())
            && values.contains(&&b"second spelling".to_vec())
    });
    let snap = snapshot(&p.b.folder);
    assert!(snap.keys().any(|k| k.contains("(conflicted copy from devA ")), "{:?}", snap.keys());
    p.settle_on_a("the twins on both");
}

// ---------------------------------------------------------------------------
// 15. The server moves to another address

/// The server moves (a new host name, or the server `ferry-server
/// migrate-to` filled): `ferry server URL` on each device, and syncing goes
/// on from where it was, nothing listed again; an address that is not this
/// device's server is refused with the configuration unchanged.
#[test]
fn devices_follow_the_server_to_a_new_address() {
    let mut p = Pair::start();
    write(&p.a.path("before.txt"), "before the move");
    p.settle_on_a("a first file");

    // Refused: nothing listening there; a server that never knew this device.
    let err = p.a.ferry(&["server", "http://127.0.0.1:9"]).expect_err("an address nothing listens on");
    assert!(err.to_string().contains("nothing changed"), "{err}");
    let stranger = Server::start().expect("another server");
    let err = p.a.ferry(&["server", &stranger.url]).expect_err("a server that does not know the device");
    assert!(err.to_string().contains("does not know this device's login"), "{err}");
    let err = p.a.ferry(&["server", "ftp://example.com"]).expect_err("not a server address");
    assert!(err.to_string().contains("not a server address"), "{err}");
    assert_eq!(p.a.ferry(&["server"]).expect("ferry server").trim(), p.server.url);

    // The same server (its data) behind a new address.
    let old = p.server.url.clone();
    p.server.restart().expect("the server at a new address");
    assert_ne!(p.server.url, old);
    for d in [&p.a, &p.b] {
        let out = d.ferry(&["server", &p.server.url]).expect("ferry server URL");
        assert!(out.contains(&format!("syncs with {} now,", p.server.url)), "{out}");
        assert_eq!(d.ferry(&["server"]).expect("ferry server").trim(), p.server.url);
        let status = d.status().expect("status");
        assert_eq!(status["server"], p.server.url.as_str(), "{status}");
    }
    write(&p.a.path("after.txt"), "written after the move");
    p.settle_on_a("a file through the new address");
    for d in [&p.a, &p.b] {
        assert!(!d.log().contains("listing again"), "a device listed everything again:{}", p.logs());
    }
    // A restarted daemon goes to the new address (its configuration).
    p.b.restart().expect("restart B");
    write(&p.a.path("later.txt"), "after B restarted");
    p.settle_on_a("a file after the restart");
}
