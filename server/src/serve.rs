//! Start-up: open the data directory, bind, serve (HTTP or HTTPS), shut down
//! gracefully (in-flight requests finish, long polls are released).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::api::{self, AppState, Inner, Limits};
use crate::blockstore::LocalBlockStore;
use crate::crypto::Vault;
use crate::notify::Notifier;
use crate::store::sqlite::SqliteStore;
use crate::store::{MetaStore, now_ms};

/// Options of `ferry-server serve`, validated.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub data: PathBuf,
    pub listen: SocketAddr,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub insecure_http: bool,
    pub upload_expiry: Duration,
    /// The URL clients reach this server at, when it differs from what they
    /// send in `Host` with this server's scheme (behind a TLS proxy).
    pub public_url: Option<String>,
    /// Longest a long poll is held (the API's own limit is 300 s).
    pub poll_max: Duration,
}

/// The data directory's layout.
pub fn db_path(data: &std::path::Path) -> PathBuf {
    data.join("ferry.db")
}

/// Opens the data directory (creating it on first start).
pub fn open_state(opts: &ServeOptions) -> anyhow::Result<AppState> {
    crate::fsutil::create_private_dir(&opts.data)?;
    let uploads_dir = opts.data.join("uploads");
    std::fs::create_dir_all(&uploads_dir)?;
    let meta: Arc<dyn MetaStore> =
        Arc::new(SqliteStore::open(&db_path(&opts.data)).map_err(|e| anyhow::anyhow!("{e}"))?);
    let blocks = Arc::new(LocalBlockStore::open(&opts.data.join("blocks"))?);
    let vault = Vault::load_or_create(&opts.data)?;
    Ok(Arc::new(Inner {
        meta,
        blocks,
        vault,
        notifier: Notifier::default(),
        limits: Limits {
            upload_expiry_ms: opts.upload_expiry.as_millis() as i64,
            public_url: opts.public_url.clone(),
            tls: opts.tls.is_some(),
            poll_max: opts.poll_max,
        },
        uploads_dir,
        busy_uploads: Mutex::new(HashSet::new()),
        ingests: Default::default(),
        logins: Default::default(),
    }))
}

/// Removes expired upload sessions and their bytes.
fn sweep_uploads(state: &AppState) -> crate::Result<usize> {
    let expired = state.meta.expired_uploads(now_ms())?;
    for id in &expired {
        let _ = std::fs::remove_file(state.uploads_dir.join(id));
        state.meta.delete_upload(id)?;
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
    let state = open_state(&opts)?;
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
                let st = Arc::clone(&state);
                match tokio::task::spawn_blocking(move || st.meta.sweep_pending(now_ms())).await {
                    Ok(Ok(changed)) => {
                        for (ns, seq) in changed {
                            state.notifier.publish_pending(ns, seq);
                        }
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "sweeping pending uploads"),
                    Err(_) => {}
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
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        shutdown_state.notifier.shutdown();
        shutdown_state.ingests.stop();
    };
    match &opts.tls {
        None => serve_http1(tokio::net::TcpListener::from_std(listener)?, app, shutdown).await,
        Some((cert, key)) => {
            let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .with_context(|| format!("loading TLS certificate {} and key {}", cert.display(), key.display()))?;
            let handle = axum_server::Handle::new();
            let h = handle.clone();
            tokio::spawn(async move {
                shutdown.await;
                h.graceful_shutdown(Some(Duration::from_secs(30)));
            });
            axum_server::from_tcp_rustls(listener, config)?.handle(handle).serve(app.into_make_service()).await?;
        }
    }
    sweeper.abort();
    tracing::info!("stopped");
    Ok(())
}

/// Serves plain HTTP/1.1 with hyper directly: one task and the smallest
/// buffers per connection, which is what 10,000 idle long polls cost.
async fn serve_http1(listener: tokio::net::TcpListener, app: axum::Router, shutdown: impl Future<Output = ()>) {
    use hyper_util::rt::TokioIo;
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(Duration::from_secs(60));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: back off briefly, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
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

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
