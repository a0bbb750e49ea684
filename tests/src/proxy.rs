//! A hostile server for tests: a proxy in front of the real `ferry-server`
//! that can tamper with what a client receives — change records with paths
//! that climb out of the folder or are otherwise unsafe, and blocks whose
//! bytes do not match their id. The client must refuse both and lose nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

/// Paths a hostile server might send, each of which every client must
/// refuse: escapes, absolute paths, NUL and control characters, empty and
/// dot segments, an overlong name and a path too deep. (Names only Windows
/// cannot store, such as `what?.txt` or `CON`, are ordinary names of the
/// namespace: see `sync_core.rs`.)
pub fn hostile_paths() -> Vec<String> {
    let mut paths: Vec<String> = [
        "../escape.txt",
        "../../escape.txt",
        "a/../../escape.txt",
        "/../escape.txt",
        "nul\u{0}byte.txt",
        "ctl\u{1}char",
        "a//b.txt",
        ".",
        "..",
        "x/./escape.txt",
    ]
    .iter()
    .map(|p| (*p).to_owned())
    .collect();
    paths.push(format!("{}.txt", "overlong".repeat(40)));
    paths.push(format!("{}deep.txt", "d/".repeat(300)));
    paths
}

#[derive(Default)]
pub struct Tamper {
    /// Add a hostile record for each of [`hostile_paths`] to every page of changes.
    pub inject_paths: AtomicBool,
    /// Flip a byte in every block the client downloads.
    pub corrupt_blocks: AtomicBool,
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    tamper: Arc<Tamper>,
}

/// The proxy, serving on 127.0.0.1 until dropped.
pub struct Proxy {
    pub url: String,
    pub tamper: Arc<Tamper>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Starts a proxy to `upstream` on the current tokio runtime.
    pub async fn start(upstream: &str) -> anyhow::Result<Proxy> {
        let tamper = Arc::new(Tamper::default());
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            http: reqwest::Client::new(),
            tamper: Arc::clone(&tamper),
        });
        let app = axum::Router::new().fallback(forward).with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Proxy { url, tamper, task })
    }
}

async fn forward(State(s): State<Arc<Shared>>, req: Request) -> Response {
    match relay(&s, req).await {
        Ok(r) => r,
        Err(e) => Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(Body::from(format!("proxy: {e:#}")))
            .expect("response"),
    }
}

async fn relay(s: &Shared, req: Request) -> anyhow::Result<Response> {
    let (parts, body) = req.into_parts();
    let path_q = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let body = axum::body::to_bytes(body, usize::MAX).await?;
    let mut out = s.http.request(parts.method.clone(), format!("{}{path_q}", s.upstream)).body(body);
    for (k, v) in &parts.headers {
        if k != header::HOST && k != header::CONTENT_LENGTH {
            out = out.header(k, v);
        }
    }
    let resp = out.send().await?;
    let status = resp.status();
    let headers: HeaderMap = resp.headers().clone();
    let mut bytes = resp.bytes().await?;
    if status.is_success() {
        if path == "/changes" && s.tamper.inject_paths.load(Ordering::SeqCst) {
            bytes = inject(&bytes)?;
        }
        let is_block = path == "/blocks/fetch" || (path.starts_with("/blocks/") && parts.method == "GET");
        if is_block && s.tamper.corrupt_blocks.load(Ordering::SeqCst) && !bytes.is_empty() {
            let mut v = bytes.to_vec();
            let last = v.len() - 1;
            v[last] ^= 0x55;
            bytes = v.into();
        }
    }
    let mut r = Response::builder().status(status);
    for (k, v) in &headers {
        if k != header::CONTENT_LENGTH && k != header::TRANSFER_ENCODING {
            r = r.header(k, v);
        }
    }
    let mut r = r.body(Body::from(bytes.clone()))?;
    r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    Ok(r)
}

/// Adds one hostile copy of the page's first record per hostile path (a
/// record of a file that does not exist: it cannot be downloaded).
fn inject(page: &Bytes) -> anyhow::Result<Bytes> {
    let mut v: serde_json::Value = serde_json::from_slice(page)?;
    let Some(changes) = v["changes"].as_array_mut() else { return Ok(page.clone()) };
    let Some(first) = changes.first().cloned() else { return Ok(page.clone()) };
    for (i, p) in hostile_paths().into_iter().enumerate() {
        let mut c = first.clone();
        c["op"] = "add".into();
        c["entry"]["path"] = p.into();
        c["entry"]["id"] = (1_000_000 + i as i64).into();
        c["entry"]["kind"] = "file".into();
        changes.push(c);
    }
    Ok(serde_json::to_vec(&v)?.into())
}
