//! Test support: start the real `ferry-server` binary on 127.0.0.1 with a
//! temporary data directory, and talk to it over real HTTP.
//!
//! The binary is found next to the test executable (`target/<profile>/`), or
//! at `$FERRY_SERVER_BIN`. `cargo test --workspace` builds it first (the
//! server package's own integration test depends on it).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferry_shared::api::{CommitOp, CommitRequest, CommitResponse, LoginResponse};

pub mod counting;
pub mod proxy;

/// Path of a workspace binary (`ferry-server`, later `ferry`).
pub fn binary(name: &str) -> PathBuf {
    if let Ok(p) = std::env::var(format!("{}_BIN", name.to_uppercase().replace('-', "_"))) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let p = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(p.exists(), "{} not found: run `cargo build -p ferry-server` (or `cargo test --workspace`)", p.display());
    p
}

pub use ferry_server::testing::skip;

/// A running `ferry-server` with its own data directory.
pub struct Server {
    pub url: String,
    pub data: PathBuf,
    /// What its metadata and blocks are in, with `FERRY_TEST_BACKEND`.
    backends: Backends,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
    stderr_log: PathBuf,
}

impl Server {
    /// Starts a server on a fresh data directory with users `alice` and `bob`
    /// (password `password-<name>`).
    pub fn start() -> anyhow::Result<Server> {
        Self::start_args(&[])
    }

    /// [`Server::start`] with more `serve` arguments.
    pub fn start_args(extra: &[&str]) -> anyhow::Result<Server> {
        let tmp = tempfile::tempdir()?;
        let data = tmp.path().join("data");
        // (Its backends, if any, stay up from the first user on.)
        let _backends = backends(&data)?;
        for user in ["alice", "bob"] {
            add_user(&data, user, &format!("password-{user}"), None)?;
        }
        let mut s = Server::start_with(&data, extra)?;
        s._tmp = Some(tmp);
        Ok(s)
    }

    /// Starts a server on an existing data directory (restart tests).
    pub fn start_on(data: &Path) -> anyhow::Result<Server> {
        Self::start_with(data, &[])
    }

    pub fn start_with(data: &Path, extra: &[&str]) -> anyhow::Result<Server> {
        Self::start_listening(data, "127.0.0.1:0", extra)
    }

    /// [`Server::start_with`] with more environment variables.
    pub fn start_env(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Server> {
        Self::start_listening_env(data, "127.0.0.1:0", extra, env)
    }

    fn start_listening(data: &Path, listen: &str, extra: &[&str]) -> anyhow::Result<Server> {
        Self::start_listening_env(data, listen, extra, &[])
    }

    fn start_listening_env(data: &Path, listen: &str, extra: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Server> {
        std::fs::create_dir_all(data)?;
        let backends = backends(data)?;
        let stderr_log = data.join(format!("server-{}.log", rand_suffix()));
        let mut cmd = Command::new(binary("ferry-server"));
        s3_env(&mut cmd);
        let mut child = cmd
            .args(["serve", "--listen", listen, "--data"])
            .arg(data)
            .args(&backends.args)
            .args(extra)
            .env("RUST_LOG", "info,ferry_server=debug")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_log)?)
            .spawn()
            .context("starting ferry-server")?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                bail!("ferry-server did not start: {}", std::fs::read_to_string(&stderr_log).unwrap_or_default());
            }
        };
        let url = line.rsplit(' ').next().context("listening line")?.to_owned();
        Ok(Server { url, data: data.to_owned(), backends, child: Some(child), _tmp: None, stderr_log })
    }

    /// Grows this single-node server (SQLite and a block folder) the way
    /// README says: stopped, copied into a fresh PostgreSQL database and S3
    /// prefix by `ferry-server migrate-to`, and served from there (the same
    /// data folder and master key) at a new address. Returns what
    /// migrate-to printed.
    pub fn grow_into_postgres_and_s3(&mut self) -> anyhow::Result<String> {
        use ferry_server::testing::{PgCluster, s3s_fs};
        anyhow::ensure!(self.backends.args.is_empty(), "migrate-to copies a single-node server");
        let cluster = PgCluster::shared()?.context("no PostgreSQL binaries (initdb, pg_ctl)")?;
        let s3 = s3s_fs::S3sFs::shared("grow_into_postgres_and_s3")
            .with_context(|| format!("s3s-fs is not installed ({})", s3s_fs::INSTALL))?;
        self.stop()?;
        let db = cluster.fresh_db()?;
        let spec =
            format!("s3://{}?endpoint={}&region=us-east-1&prefix=g{}", s3s_fs::BUCKET, s3.endpoint, rand_suffix());
        let mut cmd = Command::new(binary("ferry-server"));
        s3_env(&mut cmd);
        let out = cmd.args(["migrate-to", "--data"]).arg(&self.data).args(["--db", &db, "--blocks", &spec]).output()?;
        if !out.status.success() {
            bail!("migrate-to failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let args = ["--db".to_owned(), db, "--blocks".to_owned(), spec];
        std::fs::write(self.data.join("test-backends"), args.join("\n"))?;
        self.take_over(Server::start_on(&self.data)?);
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Stops the server with SIGTERM (graceful) and waits for it.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            #[cfg(unix)]
            {
                let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if child.try_wait()?.is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    child.kill()?;
                    child.wait()?;
                    bail!("ferry-server did not stop within 30 s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Stops and starts again on the same data directory and returns the new URL.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        self.take_over(Server::start_on(&self.data)?);
        Ok(())
    }

    /// Stops and starts again on the same data directory and the same
    /// address, so that running daemons find it again.
    pub fn restart_same_port(&mut self) -> anyhow::Result<()> {
        let addr = self.url.rsplit("://").next().context("server URL")?.to_owned();
        self.stop()?;
        self.take_over(Server::start_listening(&self.data, &addr, &[])?);
        Ok(())
    }

    /// `kill -9`s the server and starts it again on the same data directory
    /// and address: only what it had made durable survives.
    pub fn crash_and_restart(&mut self) -> anyhow::Result<()> {
        let addr = self.url.rsplit("://").next().context("server URL")?.to_owned();
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        self.take_over(Server::start_listening(&self.data, &addr, &[])?);
        Ok(())
    }

    /// Becomes `next` (a new process on the same data directory), keeping
    /// this value's temporary directory.
    fn take_over(&mut self, next: Server) {
        let mut next = std::mem::ManuallyDrop::new(next);
        self.url = std::mem::take(&mut next.url);
        self.child = next.child.take();
        self.backends = std::mem::take(&mut next.backends);
        self.stderr_log = std::mem::take(&mut next.stderr_log);
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The server process's resident memory now and at its peak, in MiB
    /// (Linux: `VmRSS` and `VmHWM` of `/proc/PID/status`).
    pub fn memory_mib(&self) -> anyhow::Result<(u64, u64)> {
        let pid = self.pid().context("the server is not running")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let line = status.lines().find(|l| l.starts_with(name)).with_context(|| format!("no {name}"))?;
            let kib: u64 = line.split_whitespace().nth(1).context("a number")?.parse()?;
            Ok(kib / 1024)
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What the servers of these tests run on, from `FERRY_TEST_BACKEND`:
/// `postgres-s3` puts each one's metadata in a database of its own in a
/// throwaway PostgreSQL cluster and its blocks under a prefix of its own in
/// a real S3 server (s3s-fs); `postgres` or `s3` only the one (for
/// benchmarks that tell the two apart); unset, SQLite and a folder in its
/// data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendChoice {
    pub postgres: bool,
    pub s3: bool,
}

impl BackendChoice {
    /// Read from `FERRY_TEST_BACKEND`; a value it does not know panics (a
    /// typo must not run the tests on SQLite unnoticed).
    pub fn from_env() -> BackendChoice {
        let (postgres, s3) = match std::env::var("FERRY_TEST_BACKEND").as_deref() {
            Err(_) | Ok("") | Ok("sqlite") => (false, false),
            Ok("postgres-s3") => (true, true),
            Ok("postgres") => (true, false),
            Ok("s3") => (false, true),
            Ok(other) => panic!("FERRY_TEST_BACKEND={other}: expected postgres-s3, postgres, s3 or sqlite"),
        };
        BackendChoice { postgres, s3 }
    }

    /// How a benchmark names it.
    pub fn name(self) -> &'static str {
        match (self.postgres, self.s3) {
            (true, true) => "PostgreSQL + S3",
            (true, false) => "PostgreSQL + a folder",
            (false, true) => "SQLite + S3",
            (false, false) => "SQLite + a folder",
        }
    }
}

/// The servers that a test's servers run on (kept up while it holds them).
#[derive(Clone, Default)]
pub struct Backends {
    _cluster: Option<std::sync::Arc<ferry_server::testing::PgCluster>>,
    _s3: Option<std::sync::Arc<ferry_server::testing::s3s_fs::S3sFs>>,
    /// `serve` and `user` arguments naming them.
    args: Vec<String>,
}

/// The backends of the server in `data`: made on first use and kept (in the
/// data directory) for its restarts and its `user` commands; a server that
/// grew ([`Server::grow_into_postgres_and_s3`]) keeps the ones it grew into.
fn backends(data: &Path) -> anyhow::Result<Backends> {
    let file = data.join("test-backends");
    let kept: Option<Vec<String>> =
        std::fs::read_to_string(&file).ok().map(|text| text.lines().map(str::to_owned).collect());
    let choice = match &kept {
        Some(args) => BackendChoice {
            postgres: args.iter().any(|a| a == "--db"),
            s3: args.iter().any(|a| a.starts_with("s3://")),
        },
        None => BackendChoice::from_env(),
    };
    if choice == (BackendChoice { postgres: false, s3: false }) {
        return Ok(Backends::default());
    }
    use ferry_server::testing::{PgCluster, s3s_fs};
    let cluster = match choice.postgres {
        false => None,
        true => Some(PgCluster::shared()?.context(
            "FERRY_TEST_BACKEND names PostgreSQL, but this machine has no PostgreSQL binaries (initdb, pg_ctl)",
        )?),
    };
    let s3 = match choice.s3 {
        false => None,
        true => Some(s3s_fs::S3sFs::shared("FERRY_TEST_BACKEND names S3").with_context(|| {
            format!("FERRY_TEST_BACKEND names S3, but s3s-fs is not installed ({})", s3s_fs::INSTALL)
        })?),
    };
    std::fs::create_dir_all(data)?;
    let args = match kept {
        Some(args) => args,
        None => {
            let mut args = Vec::new();
            if let Some(cluster) = &cluster {
                args.extend(["--db".to_owned(), cluster.fresh_db()?]);
            }
            if let Some(s3) = &s3 {
                let prefix = rand_suffix();
                let spec =
                    format!("s3://{}?endpoint={}&region=us-east-1&prefix=s{prefix}", s3s_fs::BUCKET, s3.endpoint);
                args.extend(["--blocks".to_owned(), spec]);
            }
            std::fs::write(&file, args.join("\n"))?;
            args
        }
    };
    Ok(Backends { _cluster: cluster, _s3: s3, args })
}

/// The credentials of the tests' S3 server, for a server process.
fn s3_env(cmd: &mut Command) {
    use ferry_server::testing::s3s_fs;
    cmd.env("AWS_ACCESS_KEY_ID", s3s_fs::ACCESS_KEY).env("AWS_SECRET_ACCESS_KEY", s3s_fs::SECRET_KEY);
}

fn rand_suffix() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!("{}-{}", std::process::id(), NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// `ferry-server user add` on a data directory.
pub fn add_user(data: &Path, name: &str, password: &str, quota: Option<&str>) -> anyhow::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(data)?;
    let backends = backends(data)?;
    let mut cmd = Command::new(binary("ferry-server"));
    cmd.args(["user", "add", name, "--password-stdin", "--data"]).arg(data);
    // (Its metadata's place, `--db URL`, if any.)
    if backends.args.first().is_some_and(|a| a == "--db") {
        cmd.args(&backends.args[..2]);
    }
    if let Some(q) = quota {
        cmd.args(["--quota", q]);
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    child.stdin.take().expect("piped").write_all(format!("{password}\n").as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("user add {name} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A logged-in HTTP client for one device.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub url: String,
    pub token: String,
    pub login: Option<LoginResponse>,
}

impl Client {
    pub async fn login(url: &str, user: &str, password: &str, device: &str) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
        let resp = http
            .post(format!("{url}/auth/login"))
            .json(&serde_json::json!({"username": user, "password": password, "device_name": device}))
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("login {user}: {} {}", resp.status(), resp.text().await?);
        }
        let login: LoginResponse = resp.json().await?;
        Ok(Client { http, url: url.to_owned(), token: login.token.clone(), login: Some(login) })
    }

    /// Logs in as one of the users [`Server::start`] creates.
    pub async fn user(server: &Server, user: &str, device: &str) -> anyhow::Result<Client> {
        Self::login(&server.url, user, &format!("password-{user}"), device).await
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.url)).bearer_auth(&self.token)
    }
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.url)).bearer_auth(&self.token)
    }
    pub fn put(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.put(format!("{}{path}", self.url)).bearer_auth(&self.token)
    }
    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.delete(format!("{}{path}", self.url)).bearer_auth(&self.token)
    }

    /// Uploads one plaintext block (zstd-encoded as the protocol wants).
    pub async fn upload_block(&self, data: &[u8]) -> anyhow::Result<ferry_shared::BlockId> {
        let b = ferry_shared::block::encode(data);
        let resp = self
            .put(&format!("/blocks/{}", b.id))
            .header(ferry_shared::block::ENCODING_HEADER, b.encoding.as_str())
            .body(b.bytes)
            .send()
            .await?;
        if resp.status() != reqwest::StatusCode::CREATED {
            bail!("upload block: {} {}", resp.status(), resp.text().await?);
        }
        Ok(b.id)
    }

    /// Commits `path` as 100,000 copies of one small block, then returns the
    /// body of an edit bomb: a few KiB of block-list edits copying that
    /// list 400 times (10 GiB, 40 million blocks if the server expanded it).
    pub async fn edit_bomb(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        use ferry_shared::api::{BlockEdit, BlockList};
        let path = ferry_shared::RelPath::parse(path)?;
        let n = 100_000;
        let block = self.upload_block(&vec![7u8; ferry_shared::chunk::MIN_CHUNK]).await?;
        let parent = CommitOp::Put {
            path: path.clone(),
            parent_rev: None,
            size: (n * ferry_shared::chunk::MIN_CHUNK) as u64,
            mtime: 0,
            executable: false,
            blocks: BlockList::Full(vec![block; n]),
        };
        let rev = self.commit(vec![parent]).await?.results[0].entry.as_ref().context("the parent")?.rev;
        let bomb = CommitOp::Put {
            path,
            parent_rev: Some(rev),
            size: 10 << 30,
            mtime: 0,
            executable: false,
            blocks: BlockList::Edit(vec![BlockEdit::Copy { start: 0, count: n as u32 }; 400]),
        };
        Ok(serde_json::to_vec(&CommitRequest { ops: vec![bomb] })?)
    }

    pub async fn commit(&self, ops: Vec<CommitOp>) -> anyhow::Result<CommitResponse> {
        let resp = self.post("/commit").json(&CommitRequest { ops }).send().await?;
        if !resp.status().is_success() {
            bail!("commit: {} {}", resp.status(), resp.text().await?);
        }
        Ok(resp.json().await?)
    }

    /// Uploads `data` as one block (it must be ≤ 16 MiB) and commits it at `path`.
    pub async fn put_small(
        &self,
        path: &str,
        data: &[u8],
        parent_rev: Option<i64>,
    ) -> anyhow::Result<ferry_shared::api::OpResult> {
        let blocks = if data.is_empty() { vec![] } else { vec![self.upload_block(data).await?] };
        let op = CommitOp::Put {
            path: ferry_shared::RelPath::parse(path)?,
            parent_rev,
            size: data.len() as u64,
            mtime: 1_700_000_000_000,
            executable: false,
            blocks: ferry_shared::api::BlockList::Full(blocks),
        };
        Ok(self.commit(vec![op]).await?.results.remove(0))
    }
}

/// The path and query of an absolute URL (`http://host:port/x?y` → `/x?y`).
pub fn url_path(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    after_scheme.find('/').map_or("/", |i| &after_scheme[i..])
}

/// Deterministic pseudo-random bytes (xorshift), for test and bench data.
pub fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// A running `ferry daemon` with its own `FERRY_HOME` and folder.
pub struct Daemon {
    pub home: PathBuf,
    pub folder: PathBuf,
    pub device: String,
    /// Extra environment of the daemon process.
    pub env: Vec<(String, String)>,
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    /// Logs in (`ferry login`) as `user` of a [`Server::start`] server and starts the daemon.
    /// `dir` holds the device's home and folder.
    pub fn start(server: &Server, user: &str, device: &str, dir: &Path) -> anyhow::Result<Daemon> {
        Daemon::start_at(&server.url, user, device, dir)
    }

    /// [`Daemon::start`] with the server at `url` (say, a [`proxy::Proxy`] in front of one).
    pub fn start_at(url: &str, user: &str, device: &str, dir: &Path) -> anyhow::Result<Daemon> {
        Daemon::start_with_env(url, user, device, dir, &[])
    }

    /// [`Daemon::start_at`] with extra environment for the daemon process.
    pub fn start_with_env(
        url: &str,
        user: &str,
        device: &str,
        dir: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Daemon> {
        Daemon::start_with_password(url, user, &format!("password-{user}"), device, dir, env)
    }

    /// [`Daemon::start_with_env`] for a user whose password is `password`.
    pub fn start_with_password(
        url: &str,
        user: &str,
        password: &str,
        device: &str,
        dir: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Daemon> {
        use std::io::Write;
        let home = dir.join(format!("home-{device}"));
        let folder = dir.join(format!("folder-{device}"));
        let mut login = Command::new(binary("ferry"))
            .args(["login", "--server", url, "--user", user, "--password-stdin", "--device", device, "--folder"])
            .arg(&folder)
            .env("FERRY_HOME", &home)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        login.stdin.take().expect("piped").write_all(format!("{password}\n").as_bytes())?;
        let out = login.wait_with_output()?;
        if !out.status.success() {
            bail!("ferry login failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let folder = std::fs::canonicalize(&folder)?;
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let mut d = Daemon { home, folder, device: device.to_owned(), env, child: None, log: PathBuf::new() };
        d.restart()?;
        Ok(d)
    }

    /// Starts the daemon process (again).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.log = self.home.join(format!("daemon-{}.log", rand_suffix()));
        let child = Command::new(binary("ferry"))
            .arg("daemon")
            .env("FERRY_HOME", &self.home)
            .env("RUST_LOG", std::env::var("FERRY_TEST_LOG").unwrap_or_else(|_| "info,ferry_client=debug".into()))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&self.log)?)
            .spawn()
            .context("starting ferry daemon")?;
        self.child = Some(child);
        Ok(())
    }

    /// `kill -9`: no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs a `ferry` subcommand with this device's home; returns stdout.
    pub fn ferry(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(binary("ferry")).args(args).env("FERRY_HOME", &self.home).output()?;
        if !out.status.success() {
            bail!("ferry {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `ferry status --json`.
    pub fn status(&self) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_str(&self.ferry(&["status", "--json"])?)?)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.folder.join(rel)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until `cond` holds, checking every 10 ms, or fails after `timeout`
/// with `what` in the message.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every file under `root` (relative path → content), skipping Ferry's marker.
pub fn snapshot(root: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).expect("under root").to_string_lossy().into_owned();
            if rel == ".ferry-root" || rel.contains(".ferry-tmp-") {
                continue;
            }
            match e.file_type() {
                Ok(t) if t.is_dir() => {
                    out.insert(format!("{rel}/"), Vec::new());
                    walk(root, &p, out);
                }
                Ok(t) if t.is_file() => {
                    out.insert(rel, std::fs::read(&p).unwrap_or_default());
                }
                _ => {}
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// A private D-Bus session bus (`dbus-daemon --session`): the process and
/// its address, for `DBUS_SESSION_BUS_ADDRESS`.
pub fn dbus_session() -> (Child, String) {
    use std::io::BufRead;
    let mut daemon = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--print-address=1"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("dbus-daemon (Debian's dbus-daemon package; .ci/run installs it)");
    let mut address = String::new();
    std::io::BufReader::new(daemon.stdout.take().expect("piped")).read_line(&mut address).expect("bus address");
    (daemon, address.trim().to_owned())
}

/// What the person's desktop would be, on a private bus: a file manager
/// that takes `ShowItems` and, with `notifications`, a notification service
/// that gives each notification an id and then "clicks" it (again every
/// 200 ms, as a person would until something happens). Returns the URIs
/// the file manager was asked to show.
pub fn stand_in_desktop(
    rt: &tokio::runtime::Runtime,
    address: &str,
    notifications: bool,
) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use futures_util::TryStreamExt;
    let shown = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let conn = rt
        .block_on(async {
            let b = zbus::connection::Builder::address(address).name("org.freedesktop.FileManager1");
            if notifications { b.name("org.freedesktop.Notifications") } else { b }.build().await
        })
        .expect("a connection to the private bus");
    let out = std::sync::Arc::clone(&shown);
    rt.spawn(async move {
        let mut stream = zbus::MessageStream::from(&conn);
        let mut next_id = 0u32;
        while let Ok(Some(msg)) = stream.try_next().await {
            let h = msg.header();
            if h.message_type() != zbus::message::Type::MethodCall {
                continue;
            }
            match h.member().map(|m| m.as_str()) {
                Some("Notify") => {
                    next_id += 1;
                    let id = next_id;
                    conn.reply(&h, &(id,)).await.expect("reply");
                    let (conn, out) = (conn.clone(), std::sync::Arc::clone(&out));
                    tokio::spawn(async move {
                        while out.lock().unwrap().is_empty() {
                            let path = "/org/freedesktop/Notifications";
                            let i = "org.freedesktop.Notifications";
                            let _ = conn.emit_signal(None::<&str>, path, i, "ActionInvoked", &(id, "default")).await;
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    });
                }
                Some("ShowItems") => {
                    let (uris, _startup): (Vec<String>, String) = msg.body().deserialize().expect("ShowItems body");
                    out.lock().unwrap().extend(uris);
                    conn.reply(&h, &()).await.expect("reply");
                }
                _ => {
                    let _ = conn.reply_error(&h, "org.freedesktop.DBus.Error.UnknownMethod", &"not here").await;
                }
            }
        }
    });
    shown
}
