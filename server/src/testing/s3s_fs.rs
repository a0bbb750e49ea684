//! A real S3 server for tests: `s3s-fs` (pinned 0.14.1) on a free port of
//! 127.0.0.1, serving a temporary folder, killed on drop.
//!
//! The binary is `$FERRY_S3S_FS`, else `tools/bin/s3s-fs` under
//! `$CARGO_TARGET_DIR` or the workspace's `target/` (where `.ci/run`
//! installs it). Without it a test skips, saying so on stderr and in
//! `$FERRY_SKIP_LOG`; under `CI=true` it fails instead, with the command
//! that installs it.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex, Weak};

use super::skip;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "ferry-test-access";
pub const SECRET_KEY: &str = "ferry-test-secret";
/// The bucket every instance starts with.
pub const BUCKET: &str = "ferry-test";
pub const INSTALL: &str = "cargo install s3s-fs@0.14.1 --features binary --locked --root target/tools";

/// How long s3s-fs may take to answer after it is started.
const START_DEADLINE: Duration = Duration::from_secs(30);

pub struct S3sFs {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The folder served: each folder in it is a bucket, each object a file.
    pub root: PathBuf,
    log: PathBuf,
    /// Removed when dropped.
    dir: PathBuf,
}

impl S3sFs {
    /// A running s3s-fs with an empty [`BUCKET`], or `None` when the binary
    /// is missing and `test` may skip.
    pub fn start(test: &str) -> Option<S3sFs> {
        let bin = match binary() {
            Ok(bin) => bin,
            Err(why) => {
                skip(test, &why);
                return None;
            }
        };
        let dir = std::env::temp_dir().join(format!("ferry-s3-{}-{}", std::process::id(), rand::random::<u32>()));
        let root = dir.join("s3");
        std::fs::create_dir_all(root.join(BUCKET)).expect("the bucket's folder");
        let log = dir.join("s3s-fs.log");
        // The port is free when picked; another process may take it before
        // s3s-fs binds it (s3s-fs then exits): pick again.
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let out = std::fs::File::create(&log).expect("the log file");
            let mut child = Command::new(&bin)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
                .arg(&root)
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("the log file"))
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
            match wait_until_answering(&mut child, port) {
                Ok(()) => {
                    let endpoint = format!("http://127.0.0.1:{port}");
                    return Some(S3sFs { child, endpoint, root, log, dir });
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = format!("{e}; its log:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
                }
            }
        }
        panic!("s3s-fs did not start: {last}")
    }

    /// The instance the tests of this process share (each uses a prefix of
    /// its own in [`BUCKET`]), started if none runs; `None` when the binary
    /// is missing and `test` may skip.
    pub fn shared(test: &str) -> Option<Arc<S3sFs>> {
        static SHARED: Mutex<Weak<S3sFs>> = Mutex::new(Weak::new());
        let mut shared = SHARED.lock().expect("s3s-fs lock poisoned");
        if let Some(s) = shared.upgrade() {
            return Some(s);
        }
        let s = Arc::new(S3sFs::start(test)?);
        *shared = Arc::downgrade(&s);
        Some(s)
    }

    /// What s3s-fs logged so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the server now (an outage); later requests find nobody.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until something answers HTTP on `port` while `child` runs.
fn wait_until_answering(child: &mut Child, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + START_DEADLINE;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("s3s-fs exited ({status})"));
        }
        if answers_http(addr) {
            // (Someone else's server on the port: s3s-fs failed to bind.)
            return match child.try_wait() {
                Ok(None) => Ok(()),
                _ => Err(format!("s3s-fs exited: port {port} was taken")),
            };
        }
        if Instant::now() > deadline {
            return Err(format!("s3s-fs did not answer on {addr} within {START_DEADLINE:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether an HTTP server answers a request at `addr` within a second.
fn answers_http(addr: SocketAddr) -> bool {
    let Ok(mut conn) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else { return false };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
    if conn.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 7];
    conn.read_exact(&mut head).is_ok() && &head == b"HTTP/1."
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).expect("a free port").port()
}

/// The s3s-fs binary, or why there is none.
fn binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("FERRY_S3S_FS") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("FERRY_S3S_FS={} is no file (install s3s-fs with `{INSTALL}`)", p.display()))
        };
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_owned();
    let mut targets = Vec::new();
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        targets.push(workspace.join(t)); // (an absolute path replaces the workspace)
    }
    targets.push(workspace.join("target"));
    let candidates: Vec<PathBuf> = targets.iter().map(|t| t.join("tools/bin/s3s-fs")).collect();
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        format!(
            "s3s-fs is not installed (looked at {}, and FERRY_S3S_FS is unset); install it from the workspace with `{INSTALL}`",
            tried.join(", ")
        )
    })
}
