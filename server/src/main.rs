//! `ferry-server`: serve the API, and administer users.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use ferry_server::meta::MetaStore;
use ferry_server::meta::postgres::PostgresStore;
use ferry_server::migrate_to::{MigrateToOptions, human_bytes, migrate_to};
use ferry_server::passwords;
use ferry_server::serve::{self, ServeOptions};

#[derive(Parser)]
#[command(name = "ferry-server", version, about = "Ferry's server: file sync and storage you run yourself")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API: metadata in SQLite under --data or on PostgreSQL
    /// (--db), blocks in a folder under --data or where --blocks says.
    Serve {
        /// Data directory: database, blocks, master key, unfinished uploads.
        #[arg(long, env = "FERRY_DATA")]
        data: PathBuf,
        /// The metadata on PostgreSQL: postgres://USER@HOST:PORT/DATABASE
        /// (its schema is created or migrated at start). Without it, SQLite
        /// under --data.
        #[arg(long, env = "FERRY_DB")]
        db: Option<String>,
        /// Address to listen on (port 0 picks a free port; the bound address is printed).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// TLS certificate chain (PEM); serves HTTPS with --tls-key.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Allow plain HTTP on a non-loopback address (behind a TLS proxy only).
        #[arg(long)]
        insecure_http: bool,
        /// Hours an unfinished resumable upload is kept.
        #[arg(long, default_value_t = 24 * 7)]
        upload_expiry_hours: u64,
        /// The URL clients reach this server at (behind a TLS proxy, say
        /// https://files.example.com), for the absolute URLs it answers with.
        #[arg(long, env = "FERRY_PUBLIC_URL", value_parser = parse_public_url)]
        public_url: Option<String>,
        /// Longest a long poll is held, in seconds (keep it below the idle
        /// timeout of a proxy in front); clients poll again at once.
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=300))]
        poll_max_secs: u64,
        /// Connections one client address may hold open at once (0: no cap).
        #[arg(long, default_value_t = serve::DEFAULT_CONNS_PER_ADDRESS)]
        max_connections_per_address: usize,
        /// A proxy in front (repeatable): its X-Forwarded-For names the
        /// client, and its connections are not capped.
        #[arg(long = "trusted-proxy", value_name = "IP")]
        trusted_proxies: Vec<std::net::IpAddr>,
        /// Where blocks are stored: a folder (default DATA/blocks), or an
        /// S3-compatible bucket, s3://BUCKET?endpoint=https://HOST:PORT&region=R&prefix=FOLDER
        /// (endpoint, region, prefix optional), with credentials from
        /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
        #[arg(long, env = "FERRY_BLOCKS", value_name = "SPEC")]
        blocks: Option<String>,
        /// Memory for the blocks this node wrote or read lately, kept in
        /// front of a bucket so that other devices fetch them without a
        /// request to it (0: none). A folder needs none.
        #[arg(long, value_name = "MIB", default_value_t = serve::DEFAULT_BLOCK_CACHE_MIB)]
        block_cache_mib: u64,
    },
    /// Serve with embedded defaults for a first try: data under ./ferry-data,
    /// a user created on first start with a generated password saved beside it.
    Quickstart {
        #[arg(long, env = "FERRY_DATA", default_value = "ferry-data")]
        data: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Name of the user created on first start.
        #[arg(long, default_value = "me")]
        user: String,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Create or bring up to date the schema of a PostgreSQL database
    /// (several servers starting at once take turns; `serve` does this too).
    Migrate {
        /// postgres://USER@HOST:PORT/DATABASE
        #[arg(long, env = "FERRY_DB")]
        db: String,
    },
    /// Copy a single-node server (SQLite and blocks under --data) into
    /// PostgreSQL and S3: users, devices and their tokens, files, history,
    /// trash, shares, links and blocks, with the same ids.
    ///
    /// Stop the server first. The source is only read (one consistent
    /// snapshot) and never changed; the target database must be empty.
    /// Every block is read back from the target and checked against its
    /// id before the metadata is committed, in one transaction: a failure
    /// leaves the target database empty. Then start `serve --db … --blocks …`
    /// with the same master key (FERRY_MASTER_KEY, or DATA/master.key in
    /// its --data) and point devices at it: their tokens and cursors still
    /// hold, nothing is uploaded or listed again.
    #[command(name = "migrate-to")]
    MigrateTo {
        /// The single-node server's data directory (ferry.db, master.key, blocks/).
        #[arg(long, env = "FERRY_DATA")]
        data: PathBuf,
        /// The target: an empty PostgreSQL database,
        /// postgres://USER@HOST:PORT/DATABASE (its schema is created if needed).
        #[arg(long)]
        db: String,
        /// The target block storage: s3://BUCKET?endpoint=https://HOST:PORT&region=R&prefix=FOLDER
        /// (credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or a folder.
        #[arg(long, value_name = "SPEC")]
        blocks: String,
        /// Where the source's blocks are, if the server ran with --blocks
        /// (default: DATA/blocks).
        #[arg(long, value_name = "SPEC")]
        from_blocks: Option<String>,
        /// Blocks or packs copied at once.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
        parallel: u16,
    },
}

/// Where a command finds the metadata: SQLite under --data, or PostgreSQL.
#[derive(clap::Args)]
struct Store {
    /// Data directory (SQLite metadata).
    #[arg(long, env = "FERRY_DATA")]
    data: Option<PathBuf>,
    /// The metadata on PostgreSQL: postgres://USER@HOST:PORT/DATABASE.
    #[arg(long, env = "FERRY_DB")]
    db: Option<String>,
}

impl Store {
    fn open(&self) -> anyhow::Result<std::sync::Arc<dyn MetaStore>> {
        ferry_server::admin::open_meta(self.data.as_deref(), self.db.as_deref())
    }
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; the password is read from the first line of stdin.
    Add {
        name: String,
        #[arg(long)]
        password_stdin: bool,
        /// Storage quota, e.g. 10GiB, 500MiB or bytes.
        #[arg(long, default_value = "10GiB")]
        quota: String,
        #[command(flatten)]
        store: Store,
    },
    /// List users with their quota and usage.
    List {
        #[command(flatten)]
        store: Store,
    },
    /// Change a user's password (signs out all their devices).
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        store: Store,
    },
    /// Set a user's storage quota (e.g. 20GiB).
    Quota {
        name: String,
        quota: String,
        #[command(flatten)]
        store: Store,
    },
    /// Remove a user and their metadata.
    Remove {
        name: String,
        #[command(flatten)]
        store: Store,
    },
}

fn parse_size(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().with_context(|| format!("invalid size {s:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        other => bail!("unknown size unit {other:?} (use KiB, MiB, GiB or TiB)"),
    };
    n.checked_mul(mult).context("size too large")
}

fn read_password(password_stdin: bool) -> anyhow::Result<String> {
    if !password_stdin {
        bail!("pass --password-stdin and write the password on standard input");
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let pw = line.trim_end_matches(['\n', '\r']).to_owned();
    if pw.len() < 8 {
        bail!("the password must have at least 8 characters");
    }
    Ok(pw)
}

fn main() -> anyhow::Result<()> {
    // Two rustls crypto providers are compiled in; pick one before any TLS use.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,ferry_server=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            data,
            db,
            listen,
            tls_cert,
            tls_key,
            insecure_http,
            upload_expiry_hours,
            public_url,
            poll_max_secs,
            max_connections_per_address,
            trusted_proxies,
            blocks,
            block_cache_mib,
        } => {
            let opts = ServeOptions {
                tls: tls_cert.zip(tls_key),
                insecure_http,
                upload_expiry: Duration::from_secs(upload_expiry_hours * 3600),
                public_url,
                poll_max: Duration::from_secs(poll_max_secs),
                max_conns_per_address: max_connections_per_address,
                trusted_proxies,
                db,
                blocks,
                block_cache: block_cache_mib << 20,
                ..ServeOptions::new(data, listen)
            };
            runtime()?.block_on(serve::serve(opts))
        }
        Command::Quickstart { data, listen, user } => {
            let creds = ferry_server::admin::quickstart_user(&data, &user)?.path;
            eprintln!("Ferry quickstart: data in {}", data.display());
            eprintln!("  credentials: {} (user and password)", creds.display());
            eprintln!("  API description: /openapi.json at the address printed below");
            runtime()?.block_on(serve::serve(ServeOptions::new(data, listen)))
        }
        Command::User { command } => user_command(command),
        Command::MigrateTo { data, db, blocks, from_blocks, parallel } => {
            let opts = MigrateToOptions { data, db, blocks, from_blocks, parallel: parallel.into() };
            let stats = migrate_to(&opts, &|line: &str| eprintln!("{line}"))?;
            println!(
                "migrated {} users, {} files and folders, {} versions, {} blocks ({}) in {:.1} s",
                stats.users,
                stats.files,
                stats.versions,
                stats.blocks,
                human_bytes(stats.bytes),
                stats.elapsed.as_secs_f64()
            );
            println!(
                "next: start `ferry-server serve --db … --blocks …` with the same master key (FERRY_MASTER_KEY, or \
                 {} in its --data), and point each device at it with `ferry server URL`",
                opts.data.join("master.key").display()
            );
            Ok(())
        }
        Command::Migrate { db } => {
            let applied = PostgresStore::connect_only(&db)?.migrate()?;
            println!("the schema is up to date ({applied} versions applied)");
            Ok(())
        }
    }
}

fn parse_public_url(s: &str) -> Result<String, String> {
    let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !r.contains(['?', '#']) && r.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(s.trim_end_matches('/').to_owned())
        }
        _ => Err("give a URL like https://files.example.com (http or https, no query)".to_owned()),
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Blocking work is disk and SQLite; more threads than this only add memory.
        .max_blocking_threads(64)
        .build()
}

fn user_command(command: UserCommand) -> anyhow::Result<()> {
    let err = |e: ferry_server::Error| anyhow::anyhow!("{e}");
    match command {
        UserCommand::Add { name, password_stdin, quota, store } => {
            ferry_server::admin::valid_user_name(&name)?;
            let quota = parse_size(&quota)?;
            let pw = read_password(password_stdin)?;
            let store = store.open()?;
            let id = store.add_user(&name, &passwords::hash_password(&pw)?, quota).map_err(err)?;
            println!("added user {name} (id {id}, quota {quota} bytes)");
        }
        UserCommand::List { store } => {
            let store = store.open()?;
            for u in store.list_users().map_err(err)? {
                println!("{}\t{}\tused {} of {} bytes", u.id, u.name, u.used, u.quota);
            }
        }
        UserCommand::Passwd { name, password_stdin, store } => {
            let pw = read_password(password_stdin)?;
            let store = store.open()?;
            store.set_password(&name, &passwords::hash_password(&pw)?).map_err(err)?;
            println!("changed the password of {name}; their devices must log in again");
        }
        UserCommand::Quota { name, quota, store } => {
            let quota = parse_size(&quota)?;
            store.open()?.set_quota(&name, quota).map_err(err)?;
            println!("set the quota of {name} to {quota} bytes");
        }
        UserCommand::Remove { name, store } => {
            let store = store.open()?;
            store.remove_user(&name).map_err(err)?;
            println!("removed user {name}");
        }
    }
    Ok(())
}
