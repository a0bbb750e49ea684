//! The web app as a person uses it: Debian's headless Chromium, driven by
//! `playwright-core` (`tests/web/e2e.mjs`), against the real `ferry-server`
//! and a real daemon. The script drives the browser; this side holds the
//! processes and answers its requests on stdin (restart the server mid-
//! upload, write a file on the daemon's disk, compare an uploaded file
//! with the original, make a folder of 10,000 entries).
//!
//! Needs `node`/`npm` and Debian's `chromium` (`.ci/run` installs it); the
//! npm package is installed into `tests/web/node_modules` on first run,
//! pinned by `tests/web/package-lock.json`. Screenshots go to
//! `target/web-artifacts/`. `FERRY_WEB_FIGURES=1` also prints the page
//! weight, the 10,000-entry render time and an uninterrupted 1 GiB upload's
//! throughput (measured, never asserted).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{Context, bail};
use ferry_shared::api::CommitOp;
use ferry_shared::path::RelPath;
use ferry_tests::{Client, Daemon, Server, add_user};

type TestResult = anyhow::Result<()>;

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("web")
}

/// `npm ci` once per lock file.
fn node_modules() -> anyhow::Result<()> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let lock = std::fs::read_to_string(web_dir().join("package-lock.json"))?;
    let stamp = web_dir().join("node_modules/.ferry-lock");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(lock.as_str()) {
        return Ok(());
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(web_dir())
        .output()
        .context("running npm ci in tests/web (node and npm are needed)")?;
    if !out.status.success() {
        bail!("npm ci in tests/web failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    std::fs::write(&stamp, lock)?;
    Ok(())
}

fn chromium() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("FERRY_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if !path.exists() {
        bail!("{} not found: install Debian's chromium (`apt install chromium`; .ci/run does)", path.display());
    }
    Ok(path)
}

/// A file of `size` pseudo-random bytes (BLAKE3's output stream: fast,
/// incompressible, reproducible).
fn random_file(path: &Path, size: u64, seed: &str) -> anyhow::Result<()> {
    let mut xof = blake3::Hasher::new().update(seed.as_bytes()).finalize_xof();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        xof.fill(&mut buf[..n]);
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    Ok(())
}

/// Whether the server's file at `path` has exactly the bytes of `local`
/// (both streamed).
async fn same_file(client: &Client, path: &str, local: &Path) -> anyhow::Result<bool> {
    use futures_util::StreamExt;
    let resp = client.get(&format!("/files/download?path={path}")).send().await?;
    if !resp.status().is_success() {
        return Ok(false);
    }
    let mut remote = blake3::Hasher::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        remote.update(&chunk?);
    }
    let mut mine = blake3::Hasher::new();
    let mut f = std::fs::File::open(local)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        mine.update(&buf[..n]);
    }
    Ok(remote.finalize() == mine.finalize())
}

#[test]
fn web_app_in_chromium() -> TestResult {
    let chromium = chromium()?;
    node_modules()?;
    let rt = tokio::runtime::Runtime::new()?;

    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    for user in ["alice", "bob"] {
        add_user(&data, user, &format!("password-{user}"), None)?;
    }
    add_user(&data, "carol", "password-carol", Some("1MiB"))?;
    let mut server = Server::start_with(&data, &[])?;
    let laptop = Daemon::start(&server, "alice", "laptop", &tmp.path().join("laptop"))?;
    let alice = rt.block_on(Client::user(&server, "alice", "test-check"))?;

    let files = tmp.path().join("files");
    std::fs::create_dir_all(&files)?;
    random_file(&files.join("big.bin"), 1 << 30, "ferry web 1 GiB")?;
    random_file(&files.join("mid.bin"), 96 << 20, "ferry web 96 MiB")?;
    // A folder for the folder picker.
    std::fs::create_dir_all(files.join("album/sub"))?;
    std::fs::write(files.join("album/a.txt"), "in the album\n")?;
    std::fs::write(files.join("album/sub/b.txt"), "deeper\n")?;
    if std::env::var_os("FERRY_WEB_FIGURES").is_some() {
        // New bytes for the throughput figure (the server has big.bin's).
        random_file(&files.join("fig.bin"), 1 << 30, "ferry web figure")?;
    }
    // Sparse: over the 10 GiB limit without taking the space.
    std::fs::File::create(files.join("huge.bin"))?.set_len(11 << 30)?;
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/web-artifacts");
    std::fs::create_dir_all(&artifacts)?;

    let mut child = Command::new("node")
        .arg(web_dir().join("e2e.mjs"))
        .env("FERRY_URL", &server.url)
        .env("FERRY_CHROMIUM", &chromium)
        .env("FERRY_FILES", &files)
        .env("FERRY_ARTIFACTS", &artifacts)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting node tests/web/e2e.mjs")?;
    // A hung browser ends the test instead of holding CI.
    let pid = child.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(std::time::Duration::from_secs(900)).is_err() {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    });
    let mut stdin = child.stdin.take().expect("piped");
    let lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    for line in lines {
        let line = line?;
        let Some(request) = line.strip_prefix("@@ferry ") else {
            println!("{line}");
            continue;
        };
        let req: serde_json::Value = serde_json::from_str(request)?;
        let reply = match req["cmd"].as_str().unwrap_or_default() {
            "restart" => {
                server.restart_same_port()?;
                serde_json::json!({})
            }
            "daemon_write" => {
                std::fs::write(laptop.path(req["path"].as_str().unwrap_or("x")), req["text"].as_str().unwrap_or(""))?;
                serde_json::json!({})
            }
            "same_file" => {
                let local = files.join(req["local"].as_str().unwrap_or_default());
                let same = rt.block_on(same_file(&alice, req["path"].as_str().unwrap_or_default(), &local))?;
                serde_json::json!({ "same": same })
            }
            "many" => {
                let count = req["count"].as_u64().unwrap_or(10_000);
                let ops = (1..=count)
                    .map(|i| RelPath::parse(&format!("many/entry-{i:05}")).map(|path| CommitOp::Mkdir { path }))
                    .collect::<Result<Vec<_>, _>>()?;
                let r = rt.block_on(alice.commit(ops))?;
                serde_json::json!({ "ok": r.results.iter().all(|r| r.status == 200) })
            }
            other => bail!("unknown request from the browser test: {other}"),
        };
        writeln!(stdin, "{reply}")?;
        stdin.flush()?;
    }
    let status = child.wait()?;
    let _ = done_tx.send(());
    let _ = watchdog.join();
    drop(laptop);
    if !status.success() {
        let log = server.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "the browser test failed ({status}); screenshots in target/web-artifacts; server log tail:\n{}",
            tail.join("\n")
        );
    }
    Ok(())
}
