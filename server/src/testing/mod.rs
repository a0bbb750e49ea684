//! Real servers for tests: a throwaway PostgreSQL cluster, and an S3
//! server ([`s3s_fs`]).
//!
//! PostgreSQL's own binaries (`initdb`, `pg_ctl`; Debian puts them in
//! `/usr/lib/postgresql/15/bin`, `FERRY_PG_BIN` names another folder) start
//! a cluster in a temporary folder on a free port; each test takes a fresh
//! database of it. `initdb` refuses root: as root the cluster is made and
//! run as the `postgres` user. The cluster stops and its folder goes when
//! the last test holding it is done.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

use anyhow::{Context, bail};

pub mod s3s_fs;

/// A running cluster (stopped when dropped).
pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
    databases: AtomicU32,
}

static SHARED: Mutex<Weak<PgCluster>> = Mutex::new(Weak::new());

impl PgCluster {
    /// The folder with `initdb` and `pg_ctl`, if this machine has one.
    pub fn binaries() -> Option<PathBuf> {
        let candidates = std::env::var_os("FERRY_PG_BIN").map(PathBuf::from).into_iter().chain(
            ["/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin"]
                .map(PathBuf::from),
        );
        candidates.into_iter().find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
    }

    /// The cluster the tests of this process share, started if none runs.
    /// `Ok(None)` when this machine has no PostgreSQL binaries.
    pub fn shared() -> anyhow::Result<Option<Arc<PgCluster>>> {
        let mut shared = SHARED.lock().expect("cluster lock poisoned");
        if let Some(c) = shared.upgrade() {
            return Ok(Some(c));
        }
        let Some(bin) = Self::binaries() else { return Ok(None) };
        let c = Arc::new(Self::start(&bin, None)?);
        *shared = Arc::downgrade(&c);
        Ok(Some(c))
    }

    /// A cluster of its own that takes connections over TLS only, with the
    /// certificate `cert` and its key `key` (PEM files). `Ok(None)` when
    /// this machine has no PostgreSQL binaries.
    pub fn start_tls(cert: &Path, key: &Path) -> anyhow::Result<Option<PgCluster>> {
        let Some(bin) = Self::binaries() else { return Ok(None) };
        Ok(Some(Self::start(&bin, Some((cert, key)))?))
    }

    fn start(bin: &Path, tls: Option<(&Path, &Path)>) -> anyhow::Result<PgCluster> {
        let as_postgres = is_root();
        let base = std::env::temp_dir().join(format!("ferry-pg-{}-{}", std::process::id(), rand::random::<u32>()));
        std::fs::create_dir_all(&base)?;
        let dir = base.join("data");
        if as_postgres {
            // The folder is the postgres user's; every folder above it is
            // traversable (the temp folder is).
            run(Command::new("chown").arg("postgres:postgres").arg(&base))?;
        }
        let mut cluster =
            PgCluster { dir: dir.clone(), bin: bin.to_owned(), port: 0, as_postgres, databases: 0.into() };
        run(cluster.pg("initdb").args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "-D"]).arg(&dir))
            .context("initdb")?;
        // A port nobody holds now (the server binds it a moment later).
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        // Tests need no durability across a power cut; benchmarks do
        // (`FERRY_PG_DURABLE=1` keeps PostgreSQL's defaults).
        let fast = if std::env::var("FERRY_PG_DURABLE").is_ok_and(|v| v == "1") {
            ""
        } else {
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        };
        // (`FERRY_PG_OPTIONS` adds server options, to profile a benchmark:
        // `-c shared_preload_libraries=pg_stat_statements`, say.)
        let mut more = std::env::var("FERRY_PG_OPTIONS").unwrap_or_default();
        if let Some((cert, key)) = tls {
            // The server's copies, its user's (it refuses a key others can read).
            std::fs::copy(cert, base.join("server.crt")).context("the certificate")?;
            std::fs::copy(key, base.join("server.key")).context("the key")?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(base.join("server.key"), std::fs::Permissions::from_mode(0o600))?;
            }
            if as_postgres {
                run(Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(base.join("server.crt"))
                    .arg(base.join("server.key")))?;
            }
            // TLS from 127.0.0.1, and nothing else over TCP.
            std::fs::write(
                dir.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 reject\n",
            )?;
            more.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                base.join("server.crt").display(),
                base.join("server.key").display()
            ));
        }
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 {fast} -c max_connections=200 {more}",
            base.display()
        );
        cluster.port = port;
        run(cluster
            .pg("pg_ctl")
            .args(["-w", "-t", "60", "-l"])
            .arg(base.join("log"))
            .arg("-D")
            .arg(&dir)
            .args(["-o", &options, "start"]))
        .with_context(|| {
            format!("starting PostgreSQL: {}", std::fs::read_to_string(base.join("log")).unwrap_or_default())
        })?;
        Ok(cluster)
    }

    /// A command of the cluster's binaries, as the user that owns it.
    fn pg(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    /// The URL of the cluster's `postgres` database.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A new, empty database; returns its URL.
    pub fn fresh_db(&self) -> anyhow::Result<String> {
        let name = format!("t{}", self.databases.fetch_add(1, Ordering::Relaxed));
        self.admin(format!("CREATE DATABASE {name}"))?;
        Ok(format!("postgres://postgres@127.0.0.1:{}/{name}", self.port))
    }

    /// Drops the database at `url` (one of [`PgCluster::fresh_db`]'s), its
    /// connections cut.
    pub fn drop_db(&self, url: &str) -> anyhow::Result<()> {
        let name = url.rsplit('/').next().context("a database URL")?;
        self.admin(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    }

    /// Ends the server process of every connection to the database at
    /// `url`, as a restart would (the clients find out when they next use
    /// them).
    pub fn break_connections(&self, url: &str) -> anyhow::Result<()> {
        let name = url.rsplit('/').next().context("a database URL")?;
        self.admin(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        ))
    }

    /// Runs `sql` on the cluster's `postgres` database, on a thread of its
    /// own (tests call this from async code too).
    fn admin(&self, sql: String) -> anyhow::Result<()> {
        let admin = self.admin_url();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                // (TLS when the cluster offers it, as the server's connections.)
                let target = crate::meta::postgres::tls::Target::parse(&admin)?;
                let (client, conn) = target.config.connect(target.tls).await?;
                let task = tokio::spawn(conn);
                client.batch_execute(&sql).await?;
                drop(client);
                let _ = task.await;
                anyhow::Ok(())
            })
        })
        .join()
        .map_err(|_| anyhow::anyhow!("a statement on the cluster panicked"))?
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.pg("pg_ctl").args(["-m", "immediate", "-D"]).arg(&self.dir).arg("stop").output();
        if let Some(base) = self.dir.parent() {
            let _ = std::fs::remove_dir_all(base);
        }
    }
}

fn is_root() -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // The owner of a file this process just made is this process's user.
        let probe = std::env::temp_dir().join(format!("ferry-uid-{}", std::process::id()));
        let uid = std::fs::write(&probe, b"").and_then(|()| std::fs::metadata(&probe)).map(|m| m.uid());
        let _ = std::fs::remove_file(&probe);
        uid.is_ok_and(|u| u == 0)
    }
    #[cfg(not(unix))]
    {
        false
    }
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Skips the calling test because `why` (a tool or a privilege it needs is
/// missing), saying so on stderr and in `$FERRY_SKIP_LOG` (which `.ci/run`
/// prints at the end). Under `CI=true` nothing may skip: this panics.
pub fn skip(test: &str, why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{test} cannot run: {why} (CI=true: no test may skip; .ci/run installs what tests need)");
    }
    eprintln!("skipped {test}: {why}");
    if let Ok(log) = std::env::var("FERRY_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
            let _ = writeln!(f, "{test}: {why}");
        }
    }
}
