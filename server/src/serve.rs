//! Start-up: open the data directory, bind, serve (HTTP or HTTPS), shut down
//! gracefully (in-flight requests finish, long polls are released).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::api::{self, AppState, Inner, Limits};
use crate::crypto::Vault;
use crate::meta::now_ms;
use crate::notify::LocalNotifier;
use crate::stores::Stores;

/// Options of `ferry-server serve`, validated.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub data: PathBuf,
    /// PostgreSQL for the metadata (`postgres://…`); `None`: SQLite in `data`.
    pub db: Option<String>,
    pub listen: SocketAddr,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub insecure_http: bool,
    pub upload_expiry: Duration,
    /// The URL clients reach this server at, when it differs from what they
    /// send in `Host` with this server's scheme (behind a TLS proxy).
    pub public_url: Option<String>,
    /// Longest a long poll is held (the API's own limit is 300 s).
    pub poll_max: Duration,
    /// Connections one address may hold open at once (0: no cap); trusted
    /// proxies are not capped.
    pub max_conns_per_address: usize,
    /// Proxies in front whose `X-Forwarded-For` names the client (for the
    /// login throttles), and whose connections are not capped.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Where blocks are stored (see [`crate::blocks::open`]): none, the
    /// folder `DATA/blocks`.
    pub blocks: Option<String>,
    /// Bytes of recent blocks kept in memory in front of a bucket.
    pub block_cache: u64,
}

/// Memory kept for recent blocks in front of a bucket, by default.
pub const DEFAULT_BLOCK_CACHE_MIB: u64 = 256;

impl ServeOptions {
    /// The defaults: plain HTTP (loopback only), uploads kept a week, long
    /// polls up to 300 s, 512 connections per address.
    pub fn new(data: PathBuf, listen: SocketAddr) -> Self {
        ServeOptions {
            data,
            db: None,
            listen,
            tls: None,
            insecure_http: false,
            upload_expiry: Duration::from_secs(7 * 24 * 3600),
            public_url: None,
            poll_max: Duration::from_secs(300),
            max_conns_per_address: DEFAULT_CONNS_PER_ADDRESS,
            trusted_proxies: Vec::new(),
            blocks: None,
            block_cache: DEFAULT_BLOCK_CACHE_MIB << 20,
        }
    }
}

/// Connections one address may hold by default: a household or office
/// behind one address, each device with a long poll and a few transfers.
pub const DEFAULT_CONNS_PER_ADDRESS: usize = 512;

/// The data directory's layout.
pub fn db_path(data: &std::path::Path) -> PathBuf {
    data.join("ferry.db")
}

/// Opens the data directory (creating it on first start).
pub fn open_state(opts: &ServeOptions) -> anyhow::Result<AppState> {
    crate::fsutil::create_private_dir(&opts.data)?;
    // Unfinished uploads are plaintext: their folder and files are the
    // server's alone (0700, 0600).
    let uploads_dir = opts.data.join("uploads");
    crate::fsutil::create_private_dir(&uploads_dir)?;
    crate::fsutil::make_private(&uploads_dir)?;
    let meta = crate::admin::open_meta(Some(&opts.data), opts.db.as_deref())?;
    let blocks = crate::blocks::open(opts.blocks.as_deref(), &opts.data, opts.block_cache)?;
    let vault = Vault::load_or_create(&opts.data)?;
    let notifier = Arc::new(LocalNotifier::default());
    Ok(Arc::new(Inner {
        stores: Arc::new(Stores { meta, blocks, vault, notifier }),
        limits: Limits {
            upload_expiry_ms: opts.upload_expiry.as_millis() as i64,
            public_url: opts.public_url.clone(),
            tls: opts.tls.is_some(),
            poll_max: opts.poll_max,
            trusted_proxies: opts.trusted_proxies.clone(),
        },
        uploads_dir,
        busy_uploads: Mutex::new(HashSet::new()),
        ingests: Default::default(),
        logins: Default::default(),
        link_passwords: crate::limit::LoginLimiter::new(crate::limit::PAIR_FREE, true),
        unknown_names: crate::limit::LoginLimiter::new(crate::limit::UNKNOWN_NAMES_FREE, false),
        uploads: Default::default(),
        zips: Default::default(),
    }))
}

/// Removes expired upload sessions and their bytes, and forgets blocks
/// uploaded as long ago that no commit used (they stop counting against
/// their accounts' quotas).
fn sweep_uploads(state: &AppState) -> crate::Result<usize> {
    let now = now_ms();
    let expired = state.stores.meta.expired_uploads(now)?;
    for id in &expired {
        let _ = std::fs::remove_file(state.uploads_dir.join(id));
        state.stores.meta.delete_upload(id)?;
    }
    let blocks = state.stores.meta.expire_uploaded_blocks(now - state.limits.upload_expiry_ms)?;
    if blocks > 0 {
        tracing::info!(blocks, "forgot uploaded blocks no commit used");
    }
    Ok(expired.len())
}

pub async fn serve(opts: ServeOptions) -> anyhow::Result<()> {
    if opts.tls.is_none() && !opts.listen.ip().is_loopback() && !opts.insecure_http {
        bail!(
            "refusing to serve plain HTTP on {}: give --tls-cert and --tls-key, listen on 127.0.0.1, \
             or pass --insecure-http (only behind a TLS-terminating proxy)",
            opts.listen
        );
    }
    // (Off the async threads: opening a store waits on its database.)
    let state = {
        let opts = opts.clone();
        tokio::task::spawn_blocking(move || open_state(&opts)).await.context("opening the stores")??
    };
    let listener = std::net::TcpListener::bind(opts.listen).with_context(|| format!("binding {}", opts.listen))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let scheme = if opts.tls.is_some() { "https" } else { "http" };
    // The one line on stdout: scripts and tests read the bound address here.
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "ferry-server listening on {scheme}://{addr}")?;
        out.flush()?;
    }
    tracing::info!(%addr, data = %opts.data.display(), "serving");

    let sweeper = {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            // Pending uploads each minute (their watchers learn at once),
            // resumable-upload sessions each hour.
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            for n in 0u64.. {
                tick.tick().await;
                let stores = Arc::clone(&state.stores);
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || stores.sweep_pending(now_ms())).await {
                    tracing::warn!(error = %e, "sweeping pending uploads");
                }
                if n % 60 != 0 {
                    continue;
                }
                let st = Arc::clone(&state);
                match tokio::task::spawn_blocking(move || sweep_uploads(&st)).await {
                    Ok(Ok(n)) if n > 0 => tracing::info!(n, "removed expired upload sessions"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "sweeping upload sessions"),
                    _ => {}
                }
            }
        })
    };

    let app = api::router(Arc::clone(&state)).layer(axum::middleware::from_fn(log_request));
    let shutdown_state = Arc::clone(&state);
    let shutdown = async move {
        ferry_shared::signal::shutdown().await;
        tracing::info!("shutting down: finishing in-flight requests");
        shutdown_state.stores.notifier.shutdown();
        shutdown_state.ingests.stop();
    };
    let tls = match &opts.tls {
        None => None,
        Some((cert, key)) => Some(tls_acceptor(cert, key)?),
    };
    let conns =
        Connections { cap: opts.max_conns_per_address, exempt: opts.trusted_proxies.clone(), open: Default::default() };
    accept_loop(tokio::net::TcpListener::from_std(listener)?, tls, conns, app, shutdown).await;
    sweeper.abort();
    tracing::info!("stopped");
    Ok(())
}

/// The TLS side of a connection: rustls with the given certificate chain
/// and key (PEM), HTTP/1.1.
fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let load = || -> anyhow::Result<rustls::ServerConfig> {
        let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_file(key)?;
        let mut config = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    };
    let config =
        load().with_context(|| format!("loading TLS certificate {} and key {}", cert.display(), key.display()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Open connections per address, capped.
struct Connections {
    cap: usize,
    exempt: Vec<std::net::IpAddr>,
    open: crate::limit::InFlight<std::net::IpAddr>,
}

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request's headers may take to arrive (bodies: `api::timed`).
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts connections until shutdown and serves each with hyper's
/// HTTP/1.1 directly (one task and the smallest buffers per connection,
/// which is what 10,000 idle long polls cost), over TLS when configured;
/// an address over its cap of open connections is turned away at once.
/// At shutdown, in-flight requests finish (30 s at most).
async fn accept_loop(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    conns: Connections,
    app: axum::Router,
    shutdown: impl Future<Output = ()>,
) {
    use hyper_util::server::graceful::GracefulShutdown;

    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    let refused = std::sync::atomic::AtomicU64::new(0);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off briefly, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let cap = if conns.exempt.contains(&peer.ip()) { 0 } else { conns.cap };
                let Some(place) = conns.open.try_take(peer.ip(), cap) else {
                    // Counted, and logged now and then (a flood must not flood the log).
                    let n = refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    if n.is_power_of_two() {
                        tracing::info!(address = %peer.ip(), refused = n, cap, "an address is over its cap of open connections");
                    }
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (app, builder, watcher, tls) = (app.clone(), builder.clone(), graceful.watcher(), tls.clone());
                tokio::spawn(async move {
                    let _place = place;
                    match tls {
                        None => serve_connection(stream, peer, app, builder, watcher).await,
                        Some(tls) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                            Ok(Ok(stream)) => serve_connection(stream, peer, app, builder, watcher).await,
                            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                            Err(_) => tracing::debug!("TLS handshake timed out"),
                        },
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections did not finish within 30 s of shutdown");
    }
}

/// Serves one connection's requests, each told where it came from ([`api::Peer`]).
async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    app: axum::Router,
    builder: hyper::server::conn::http1::Builder,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt;

    let app = app.map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(api::Peer(peer));
        req
    });
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Logs method, path (never the query or headers, which may carry tokens,
/// nor a share link's token), status and time.
async fn log_request(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let method = req.method().clone();
    let path = redact(req.uri().path());
    let start = std::time::Instant::now();
    let resp = next.run(req).await;
    tracing::debug!(%method, %path, status = resp.status().as_u16(), ms = start.elapsed().as_millis() as u64, "request");
    resp
}

/// A path fit for the log: a share link's token is a password.
fn redact(path: &str) -> String {
    match path.strip_prefix("/l/") {
        Some(rest) => match rest.split_once('/') {
            Some((_, under)) => format!("/l/…/{under}"),
            None => "/l/…".to_owned(),
        },
        None => path.to_owned(),
    }
}
