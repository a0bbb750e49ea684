//! The simulated network and the real server behind it.
//!
//! Every request a device makes goes into one queue and waits there until the
//! scheduler delivers it, drops it, or loses its answer; delivery runs the
//! real `ferry-server` router (real handlers, real SQLite, real block store)
//! in-process, one request at a time, so the order of events is the
//! scheduler's alone and a seed replays exactly.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use ferry_client::net::remote::{self, RawChanges, RemoteError, Traffic};
use ferry_client::sync::seams::Api;
use ferry_server::api::AppState;
use ferry_server::meta::{Caller, Seq};
use ferry_server::serve::ServeOptions;
use ferry_shared::BlockId;
use ferry_shared::api::{
    ChangesResponse, CommitOp, CommitRequest, CommitResponse, MAX_MISSING_QUERY, MissingBlocksRequest,
    MissingBlocksResponse, PendingAnnounce, PendingAnnounced, PendingList,
};
use ferry_shared::block::{BlockEncoding, ENCODING_HEADER};
use tower::ServiceExt;

/// A request as it travels.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    pub uri: String,
    pub token: String,
    pub json: bool,
    pub body: Vec<u8>,
}

/// The server's answer.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub encoding: Option<String>,
    pub body: Vec<u8>,
}

#[derive(Default)]
struct Slot {
    result: Option<Result<Resp, RemoteError>>,
    waker: Option<Waker>,
}

/// A request waiting in the network.
pub struct InFlight {
    pub device: usize,
    pub req: Req,
    slot: Arc<Mutex<Slot>>,
}

impl InFlight {
    /// Hands the device its answer (or a failure) and wakes it.
    pub fn complete(self, result: Result<Resp, RemoteError>) {
        let mut slot = self.slot.lock().expect("slot poisoned");
        slot.result = Some(result);
        if let Some(w) = slot.waker.take() {
            w.wake();
        }
    }
}

/// All requests in flight, in the order they were sent.
#[derive(Default)]
pub struct Net {
    pub queue: Vec<InFlight>,
}

pub type SharedNet = Arc<Mutex<Net>>;

/// The network failure a dropped request or answer shows.
pub fn connection_lost() -> RemoteError {
    RemoteError::network("connection reset (simulated)")
}

struct Answer(Arc<Mutex<Slot>>);

impl Future for Answer {
    type Output = Result<Resp, RemoteError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = self.0.lock().expect("slot poisoned");
        match slot.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// The engine's [`Api`] over the simulated network.
#[derive(Clone)]
pub struct SimApi {
    pub device: usize,
    token: String,
    net: SharedNet,
    sent: Arc<AtomicU64>,
}

impl SimApi {
    pub fn new(device: usize, token: String, net: SharedNet) -> SimApi {
        SimApi { device, token, net, sent: Arc::default() }
    }

    async fn call(&self, method: Method, uri: String, json: bool, body: Vec<u8>) -> Result<Resp, RemoteError> {
        self.sent.fetch_add(body.len() as u64 + 200, Ordering::Relaxed);
        let slot = Arc::new(Mutex::new(Slot::default()));
        let req = Req { method, uri, token: self.token.clone(), json, body };
        self.net.lock().expect("net poisoned").queue.push(InFlight { device: self.device, req, slot: slot.clone() });
        let resp = Answer(slot).await?;
        if (200..300).contains(&resp.status) {
            Ok(resp)
        } else {
            Err(remote::error_from_body(resp.status, &String::from_utf8_lossy(&resp.body)))
        }
    }

    async fn call_json<T: serde::Serialize>(&self, method: Method, uri: &str, body: &T) -> Result<Resp, RemoteError> {
        self.call(method, uri.to_owned(), true, serde_json::to_vec(body).expect("serializable")).await
    }
}

fn json<T: serde::de::DeserializeOwned>(resp: &Resp) -> Result<T, RemoteError> {
    serde_json::from_slice(&resp.body).map_err(|e| RemoteError::Http {
        status: 502,
        code: None,
        message: format!("bad answer: {e}"),
    })
}

impl Api for SimApi {
    async fn changes(
        &self,
        cursor: i64,
        limit: u32,
        edits: bool,
    ) -> Result<(ChangesResponse, Vec<String>), RemoteError> {
        let mode = if edits { "edit" } else { "full" };
        let uri = format!("/changes?cursor={cursor}&limit={limit}&blocks={mode}");
        let resp = self.call(Method::GET, uri, false, Vec::new()).await?;
        Ok(remote::parse_changes(json::<RawChanges>(&resp)?))
    }

    async fn missing(&self, ids: &[BlockId]) -> Result<Vec<BlockId>, RemoteError> {
        let mut missing = Vec::new();
        for chunk in ids.chunks(MAX_MISSING_QUERY) {
            let req = MissingBlocksRequest { ids: chunk.to_vec() };
            let resp = self.call_json(Method::POST, "/blocks/missing", &req).await?;
            missing.extend(json::<MissingBlocksResponse>(&resp)?.missing);
        }
        Ok(missing)
    }

    async fn put_batch(&self, body: Vec<u8>) -> Result<(), RemoteError> {
        self.call(Method::POST, "/blocks/batch".into(), false, body).await?;
        Ok(())
    }

    async fn fetch(&self, ids: &[BlockId]) -> Result<Vec<(BlockId, Vec<u8>)>, RemoteError> {
        let resp = self.call_json(Method::POST, "/blocks/fetch", &MissingBlocksRequest { ids: ids.to_vec() }).await?;
        remote::decode_fetched(&resp.body, ids)
    }

    async fn get_block(&self, id: &BlockId) -> Result<Vec<u8>, RemoteError> {
        let resp = self.call(Method::GET, format!("/blocks/{id}"), false, Vec::new()).await?;
        let encoding = resp.encoding.as_deref().and_then(BlockEncoding::parse).unwrap_or(BlockEncoding::Zstd);
        Ok(ferry_shared::block::decode(id, encoding, &resp.body)?)
    }

    async fn commit(&self, ops: Vec<CommitOp>) -> Result<CommitResponse, RemoteError> {
        let resp = self.call_json(Method::POST, "/commit", &CommitRequest { ops }).await?;
        json(&resp)
    }

    async fn wait_block(&self, id: &BlockId, _wait_secs: u64) -> Result<Option<Vec<u8>>, RemoteError> {
        // Never waits: the server runs inside the scheduler, one request at
        // a time. A block not there yet ends the prefetch for now.
        match self.get_block(id).await {
            Ok(b) => Ok(Some(b)),
            Err(RemoteError::Http { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn announce(&self, a: &PendingAnnounce) -> Result<PendingAnnounced, RemoteError> {
        json(&self.call_json(Method::POST, "/uploads/pending", a).await?)
    }

    async fn drop_pending(&self, id: Option<i64>) -> Result<(), RemoteError> {
        let uri = id.map_or_else(|| "/uploads/pending".to_owned(), |id| format!("/uploads/pending/{id}"));
        match self.call(Method::DELETE, uri, false, Vec::new()).await {
            Ok(_) | Err(RemoteError::Http { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn pending(&self) -> Result<PendingList, RemoteError> {
        json(&self.call(Method::GET, "/uploads/pending".into(), false, Vec::new()).await?)
    }

    fn traffic(&self) -> Traffic {
        Traffic { sent: self.sent.load(Ordering::Relaxed), ..Traffic::default() }
    }
}

/// A seed's PostgreSQL database, dropped with it (a run of many seeds
/// would otherwise fill the cluster's disk).
pub struct SeedDb {
    cluster: Arc<ferry_server::testing::PgCluster>,
    url: String,
}

impl SeedDb {
    pub fn new() -> anyhow::Result<SeedDb> {
        let Some(cluster) = ferry_server::testing::PgCluster::shared()? else {
            anyhow::bail!("--postgres needs PostgreSQL's binaries (initdb, pg_ctl; FERRY_PG_BIN names their folder)");
        };
        let url = cluster.fresh_db()?;
        Ok(SeedDb { cluster, url })
    }
}

impl Drop for SeedDb {
    fn drop(&mut self) {
        if let Err(e) = self.cluster.drop_db(&self.url) {
            eprintln!("dropping {}: {e:#}", self.url);
        }
    }
}

/// The real server, in-process, restartable from its data directory.
pub struct SimServer {
    opts: ServeOptions,
    state: Option<(AppState, axum::Router)>,
    rt: tokio::runtime::Runtime,
    /// Each user's first device, as the server knows it (their journal is
    /// their root namespace's).
    pub callers: Vec<Caller>,
    /// A token of each user (for what they do outside a device: sharing).
    tokens: Vec<String>,
    /// Its PostgreSQL database, if any: declared last, dropped after the
    /// stores that use it.
    _db: Option<SeedDb>,
}

impl SimServer {
    /// Starts a server in `data` with users `user0`, `user1`, … and the
    /// devices of each: `users[u]` is `[(device name, token)]`.
    pub fn start(data: &Path, users: &[Vec<(String, String)>], db: Option<SeedDb>) -> anyhow::Result<SimServer> {
        let opts = ServeOptions {
            upload_expiry: Duration::from_secs(3600),
            db: db.as_ref().map(|d| d.url.clone()),
            ..ServeOptions::new(data.to_owned(), ([127, 0, 0, 1], 0).into())
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let mut server = SimServer { opts, state: None, rt, callers: Vec::new(), tokens: Vec::new(), _db: db };
        let state = server.open()?;
        for (u, devices) in users.iter().enumerate() {
            let user = state.stores.meta.add_user(&format!("user{u}"), "not a password hash", 1 << 40)?;
            for (device, token) in devices {
                state.stores.meta.create_token(user, device, ferry_server::passwords::token_hash(token))?;
            }
            let (_, token) = devices.first().expect("a device");
            server.callers.push(
                state
                    .stores
                    .meta
                    .authenticate(ferry_server::passwords::token_hash(token))?
                    .expect("the token just made"),
            );
            server.tokens.push(token.clone());
        }
        Ok(server)
    }

    /// A request user `u` makes outside their devices (sharing), run
    /// through the real router at once.
    pub fn request(&self, u: usize, method: Method, uri: &str, body: Option<serde_json::Value>) -> Resp {
        let req = Req {
            method,
            uri: uri.to_owned(),
            token: self.tokens[u].clone(),
            json: body.is_some(),
            body: body.map(|b| serde_json::to_vec(&b).expect("json")).unwrap_or_default(),
        };
        self.handle(&req)
    }

    fn open(&mut self) -> anyhow::Result<AppState> {
        let state = ferry_server::serve::open_state(&self.opts)?;
        let router = ferry_server::api::router(Arc::clone(&state));
        self.state = Some((Arc::clone(&state), router));
        Ok(state)
    }

    /// Stops and starts the server: only what it made durable survives.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.state = None;
        self.open()?;
        Ok(())
    }

    pub fn state(&self) -> &AppState {
        &self.state.as_ref().expect("server running").0
    }

    pub fn data_dir(&self) -> PathBuf {
        self.opts.data.clone()
    }

    /// Runs one request through the real router.
    pub fn handle(&self, req: &Req) -> Resp {
        let (_, router) = self.state.as_ref().expect("server running");
        let mut b = Request::builder()
            .method(req.method.clone())
            .uri(&req.uri)
            .header("authorization", format!("Bearer {}", req.token));
        if req.json {
            b = b.header("content-type", "application/json");
        }
        let request = b.body(Body::from(req.body.clone())).expect("a valid request");
        self.rt.block_on(async {
            let resp = router.clone().oneshot(request).await.expect("the router is infallible");
            let status = resp.status();
            let encoding = resp.headers().get(ENCODING_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap_or_default().to_vec();
            Resp { status: status.as_u16(), encoding, body }
        })
    }

    /// User `u`'s whole journal, read straight from the store.
    pub fn journal(&self, u: usize) -> anyhow::Result<Vec<ferry_shared::api::Change>> {
        let meta = &self.state().stores.meta;
        let mut out = Vec::new();
        let mut cursor = 0;
        loop {
            let page = meta.changes(self.callers[u].ns, Seq(cursor), 5000, false)?;
            out.extend(page.changes);
            cursor = page.cursor;
            if !page.has_more {
                return Ok(out);
            }
        }
    }

    pub fn cursor(&self, u: usize) -> anyhow::Result<i64> {
        Ok(self.state().stores.meta.cursor(self.callers[u].ns)?.0)
    }
}

/// A 503, as an overloaded server answers.
pub fn unavailable() -> Resp {
    let body = serde_json::to_vec(&ferry_shared::api::ErrorBody::new(
        ferry_shared::api::ErrorCode::Unavailable,
        "overloaded (simulated)",
    ))
    .expect("serializable");
    Resp { status: StatusCode::SERVICE_UNAVAILABLE.as_u16(), encoding: None, body }
}
