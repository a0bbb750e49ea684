//! The server as the engine sees it: a typed HTTP client for the API.
//! Errors carry the server's status and [`ErrorCode`], so callers match
//! on codes, not on words.

use std::time::Duration;

use ferry_shared::BlockId;
use ferry_shared::api::{
    ChangesResponse, CommitOp, CommitRequest, CommitResponse, ErrorBody, ErrorCode, ListRevisionsRequest,
    ListRevisionsResponse, LoginResponse, MissingBlocksRequest, MissingBlocksResponse, PendingAnnounce,
    PendingAnnounced, PendingList, PollResponse,
};
use ferry_shared::block::{self, BlockEncoding, ENCODING_HEADER};

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("cannot reach the server: {0}")]
    Network(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the server answered {status}: {message}")]
    Http { status: u16, code: Option<ErrorCode>, message: String },
    #[error("the server sent a bad block: {0}")]
    BadBlock(#[from] block::DecodeError),
}

impl RemoteError {
    /// The token was revoked or is unknown: log in again.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, RemoteError::Http { status: 401, .. })
    }

    /// The server's journal does not reach our cursor (`cursor_reset`).
    pub fn is_cursor_reset(&self) -> bool {
        matches!(self, RemoteError::Http { code: Some(ErrorCode::CursorReset), .. })
    }
}

impl RemoteError {
    /// A transport failure described in words (no reqwest error behind it).
    pub fn network(message: &str) -> RemoteError {
        RemoteError::Network(message.into())
    }
}

impl From<reqwest::Error> for RemoteError {
    fn from(e: reqwest::Error) -> Self {
        RemoteError::Network(Box::new(e))
    }
}

/// The error an answer with a failing `status` and this body stands for
/// (`{"error":{"code","message"}}`, or plain text from something in between).
pub fn error_from_body(status: u16, text: &str) -> RemoteError {
    let (code, message) = match serde_json::from_str::<ErrorBody>(text) {
        Ok(b) => (Some(b.error.code), b.error.message),
        Err(_) => (None, text.to_owned()),
    };
    RemoteError::Http { status, code, message }
}

/// Decodes the answer to a batch fetch of `want`: the same blocks in the
/// same order, each checked against its id.
pub fn decode_fetched(body: &[u8], want: &[BlockId]) -> Result<Vec<(BlockId, Vec<u8>)>> {
    let bad = |message: String| RemoteError::Http { status: 502, code: None, message };
    let frames = block::read_frames(body).map_err(|e| bad(e.to_string()))?;
    if frames.len() != want.len() || frames.iter().zip(want).any(|(f, w)| f.0 != *w) {
        return Err(bad("the server sent other blocks than asked".into()));
    }
    frames.into_iter().map(|(id, enc, bytes)| Ok((id, block::decode(&id, enc, bytes)?))).collect()
}

pub type Result<T, E = RemoteError> = std::result::Result<T, E>;

/// A changes page before each record is validated on its own.
#[derive(serde::Deserialize)]
pub struct RawChanges {
    pub changes: Vec<serde_json::Value>,
    pub cursor: i64,
    pub has_more: bool,
}

/// Validates each record of a page (paths through the shared path rules).
pub fn parse_changes(raw: RawChanges) -> (ChangesResponse, Vec<String>) {
    let mut refused = Vec::new();
    let changes = raw
        .changes
        .into_iter()
        .filter_map(|v| match serde_json::from_value::<ferry_shared::api::Change>(v.clone()) {
            Ok(c) if !block::is_content_hash(&c.entry.hash) => {
                refused.push(format!("refused a change from the server for {}: malformed content hash", c.entry.path));
                None
            }
            Ok(c) => Some(c),
            Err(e) => {
                let path = v["entry"]["path"].as_str().unwrap_or("?").chars().take(200).collect::<String>();
                refused.push(format!("refused a change from the server for {path:?}: {e}"));
                None
            }
        })
        .collect();
    (ChangesResponse { changes, cursor: raw.cursor, has_more: raw.has_more }, refused)
}

#[derive(Clone)]
pub struct Remote {
    http: reqwest::Client,
    /// The server's address, shared by clones: `ferry server URL` moves
    /// every one of them at once (see [`Remote::set_base`]).
    base: std::sync::Arc<tokio::sync::watch::Sender<String>>,
    token: String,
    traffic: std::sync::Arc<Counters>,
    /// Bandwidth limits of block uploads and downloads (shared by clones).
    limits: std::sync::Arc<Limits>,
}

/// Block uploads and downloads each have a limit (see [`crate::net::bucket`]).
#[derive(Debug, Default)]
pub struct Limits {
    pub up: crate::net::bucket::Limiter,
    pub down: crate::net::bucket::Limiter,
}

/// Bytes this client moved, counted at the HTTP layer: bodies plus an
/// estimate of [`HEADER_BYTES`] of headers per request and per answer.
#[derive(Debug, Default)]
struct Counters {
    sent: std::sync::atomic::AtomicU64,
    received: std::sync::atomic::AtomicU64,
    /// Of `received`: block bodies (as they travel, compressed or not).
    blocks: std::sync::atomic::AtomicU64,
}

/// What a client has sent and received so far (see [`Remote::traffic`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    pub sent: u64,
    pub received: u64,
    /// Block data received (part of `received`).
    pub block_bytes_received: u64,
}

/// What a request's headers cost on the wire, roughly.
const HEADER_BYTES: u64 = 200;

async fn check(resp: reqwest::Response) -> Result<reqwest::Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let text = resp.text().await.unwrap_or_default();
    Err(error_from_body(status.as_u16(), &text))
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(16)
        .build()
        .expect("HTTP client")
}

impl Remote {
    pub fn new(base: &str, token: &str) -> Remote {
        Remote {
            http: client(),
            base: std::sync::Arc::new(tokio::sync::watch::channel(base.trim_end_matches('/').to_owned()).0),
            token: token.to_owned(),
            traffic: Default::default(),
            limits: Default::default(),
        }
    }

    /// The server's address now.
    pub fn base(&self) -> String {
        self.base.borrow().clone()
    }

    /// Sends every clone's next request to `base` (the server moved).
    pub fn set_base(&self, base: &str) {
        self.base.send_replace(base.trim_end_matches('/').to_owned());
    }

    /// Changes when the server's address does (a long poll held by the old
    /// address ends then).
    pub fn moves(&self) -> tokio::sync::watch::Receiver<String> {
        self.base.subscribe()
    }

    /// Limits block uploads and downloads to these rates (bytes per second;
    /// `None`: unlimited), for every clone of this client, from now on.
    pub fn set_limits(&self, up: Option<u64>, down: Option<u64>) {
        self.limits.up.set(up);
        self.limits.down.set(down);
    }

    /// `(upload, download)` limits now.
    pub fn limits(&self) -> (Option<u64>, Option<u64>) {
        (self.limits.up.rate(), self.limits.down.rate())
    }

    /// Reads a block answer's body, held to the download limit.
    async fn block_body(&self, resp: reqwest::Response) -> Result<bytes::Bytes> {
        let mut resp = check(resp).await?;
        if self.limits.down.rate().is_none() {
            let body = resp.bytes().await?;
            self.count_blocks(body.len());
            return Ok(body);
        }
        // Counted as it comes (`ferry status` shows the rate).
        self.count_blocks(0);
        let mut out = bytes::BytesMut::new();
        while let Some(chunk) = resp.chunk().await? {
            self.limits.down.take(chunk.len()).await;
            out.extend_from_slice(&chunk);
            self.count_block_bytes(chunk.len());
        }
        Ok(out.freeze())
    }

    /// Counts a block answer: its headers and `n` bytes of body.
    fn count_blocks(&self, n: usize) {
        self.traffic.received.fetch_add(HEADER_BYTES, std::sync::atomic::Ordering::Relaxed);
        self.count_block_bytes(n);
    }

    fn count_block_bytes(&self, n: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.traffic.received.fetch_add(n as u64, Relaxed);
        self.traffic.blocks.fetch_add(n as u64, Relaxed);
    }

    /// A block upload body, held to the upload limit (sent in pieces, with
    /// its length announced), counted as sent: at once when unlimited, piece
    /// by piece as the limit lets them go.
    fn upload_body(&self, body: Vec<u8>) -> reqwest::Body {
        if self.limits.up.rate().is_none() {
            self.count(body.len());
            return body.into();
        }
        let (limits, traffic) = (std::sync::Arc::clone(&self.limits), std::sync::Arc::clone(&self.traffic));
        let body = bytes::Bytes::from(body);
        let pieces = futures_util::stream::unfold(0usize, move |at| {
            let (limits, traffic, body) =
                (std::sync::Arc::clone(&limits), std::sync::Arc::clone(&traffic), body.clone());
            async move {
                if at >= body.len() {
                    return None;
                }
                let end = (at + crate::net::bucket::PIECE).min(body.len());
                limits.up.take(end - at).await;
                traffic.sent.fetch_add((end - at) as u64, std::sync::atomic::Ordering::Relaxed);
                Some((Ok::<_, std::io::Error>(body.slice(at..end)), end))
            }
        });
        reqwest::Body::wrap_stream(pieces)
    }

    pub async fn login(base: &str, user: &str, password: &str, device: &str) -> Result<LoginResponse> {
        let resp = client()
            .post(format!("{}/auth/login", base.trim_end_matches('/')))
            .json(&serde_json::json!({"username": user, "password": password, "device_name": device}))
            .send()
            .await?;
        Ok(check(resp).await?.json().await?)
    }

    /// Bytes this client has sent to and received from the server so far.
    pub fn traffic(&self) -> Traffic {
        use std::sync::atomic::Ordering::Relaxed;
        Traffic {
            sent: self.traffic.sent.load(Relaxed),
            received: self.traffic.received.load(Relaxed),
            block_bytes_received: self.traffic.blocks.load(Relaxed),
        }
    }

    /// Counts a request body as sent (its headers are counted by `req`).
    fn count(&self, body: usize) {
        self.traffic.sent.fetch_add(body as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Reads an answer's body, counting it.
    async fn body(&self, resp: reqwest::Response) -> Result<bytes::Bytes> {
        let body = check(resp).await?.bytes().await?;
        self.traffic.received.fetch_add(body.len() as u64 + HEADER_BYTES, std::sync::atomic::Ordering::Relaxed);
        Ok(body)
    }

    /// Reads an answer's JSON body, counting it.
    async fn json_body<T: serde::de::DeserializeOwned>(&self, resp: reqwest::Response) -> Result<T> {
        let body = self.body(resp).await?;
        serde_json::from_slice(&body).map_err(|e| RemoteError::Http {
            status: 502,
            code: None,
            message: format!("the server's answer is not what was expected: {e}"),
        })
    }

    /// A request with a JSON body, counted.
    fn json<T: serde::Serialize>(&self, method: reqwest::Method, path: &str, body: &T) -> reqwest::RequestBuilder {
        let bytes = serde_json::to_vec(body).expect("serializable");
        self.count(bytes.len());
        self.req(method, path).header(reqwest::header::CONTENT_TYPE, "application/json").body(bytes)
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.count(HEADER_BYTES as usize);
        self.http
            .request(method, format!("{}{path}", self.base.borrow().as_str()))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(300))
    }

    pub async fn logout(&self) -> Result<()> {
        check(self.req(reqwest::Method::POST, "/auth/logout").send().await?).await?;
        Ok(())
    }

    /// Changes since `cursor`. A record the client must not apply (a path
    /// outside the shared path rules: `..`, absolute, NUL, overlong, ...) is
    /// left out and returned in `refused`, so one bad record cannot stop the
    /// rest from syncing and can never reach the disk.
    pub async fn changes(&self, cursor: i64, limit: u32, edits: bool) -> Result<(ChangesResponse, Vec<String>)> {
        let mode = if edits { "edit" } else { "full" };
        let resp = self
            .req(reqwest::Method::GET, &format!("/changes?cursor={cursor}&limit={limit}&blocks={mode}"))
            .send()
            .await?;
        let raw: RawChanges = self.json_body(resp).await?;
        Ok(parse_changes(raw))
    }

    /// Long poll: returns when the journal passes `cursor` or the
    /// pending-upload sequence passes `pending`, or after `timeout`.
    pub async fn poll(&self, cursor: i64, pending: i64, timeout: Duration) -> Result<PollResponse> {
        let secs = timeout.as_secs();
        let resp = self
            .req(reqwest::Method::GET, &format!("/changes/poll?cursor={cursor}&pending={pending}&timeout={secs}"))
            .timeout(timeout + Duration::from_secs(30))
            .send()
            .await?;
        self.json_body(resp).await
    }

    pub async fn missing(&self, ids: &[BlockId]) -> Result<Vec<BlockId>> {
        let mut missing = Vec::new();
        if ids.is_empty() {
            return Ok(missing);
        }
        for chunk in ids.chunks(ferry_shared::api::MAX_MISSING_QUERY) {
            let resp = self
                .json(reqwest::Method::POST, "/blocks/missing", &MissingBlocksRequest { ids: chunk.to_vec() })
                .send()
                .await?;
            missing.extend(self.json_body::<MissingBlocksResponse>(resp).await?.missing);
        }
        Ok(missing)
    }

    /// Uploads many blocks in one request (a body of `block::write_frame`s).
    pub async fn put_batch(&self, body: Vec<u8>) -> Result<()> {
        let len = body.len();
        let resp = self
            .req(reqwest::Method::POST, "/blocks/batch")
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(self.upload_body(body))
            .send()
            .await?;
        check(resp).await?;
        Ok(())
    }

    /// Downloads many blocks in one request; each is checked against its id.
    pub async fn fetch(&self, ids: &[BlockId]) -> Result<Vec<(BlockId, Vec<u8>)>> {
        let resp = self
            .json(reqwest::Method::POST, "/blocks/fetch", &MissingBlocksRequest { ids: ids.to_vec() })
            .send()
            .await?;
        let body = self.block_body(resp).await?;
        let want = ids.to_vec();
        tokio::task::spawn_blocking(move || decode_fetched(&body, &want)).await.expect("decode task")
    }

    /// Downloads a block and checks its content against its id.
    pub async fn get_block(&self, id: &BlockId) -> Result<Vec<u8>> {
        self.get_block_waiting(id, 0).await
    }

    /// Downloads a block, waiting up to `wait_secs` for it to be uploaded
    /// (a pending upload is sending it); `None` when it did not come.
    pub async fn wait_block(&self, id: &BlockId, wait_secs: u64) -> Result<Option<Vec<u8>>> {
        match self.get_block_waiting(id, wait_secs).await {
            Ok(b) => Ok(Some(b)),
            Err(RemoteError::Http { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn get_block_waiting(&self, id: &BlockId, wait_secs: u64) -> Result<Vec<u8>> {
        let path = if wait_secs > 0 { format!("/blocks/{id}?wait={wait_secs}") } else { format!("/blocks/{id}") };
        let resp = self.req(reqwest::Method::GET, &path).send().await?;
        let encoding = resp
            .headers()
            .get(ENCODING_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(BlockEncoding::parse)
            .unwrap_or(BlockEncoding::Zstd);
        let bytes = self.block_body(resp).await?;
        let id = *id;
        let plain =
            tokio::task::spawn_blocking(move || block::decode(&id, encoding, &bytes)).await.expect("decode task")?;
        Ok(plain)
    }

    /// Announces a file whose blocks are being sent (see `PendingAnnounce`).
    pub async fn announce(&self, a: &PendingAnnounce) -> Result<PendingAnnounced> {
        let resp = self.json(reqwest::Method::POST, "/uploads/pending", a).send().await?;
        self.json_body(resp).await
    }

    /// Drops this device's announcement `id`, or all of them.
    pub async fn drop_pending(&self, id: Option<i64>) -> Result<()> {
        let path = id.map_or_else(|| "/uploads/pending".to_owned(), |id| format!("/uploads/pending/{id}"));
        match self.body(self.req(reqwest::Method::DELETE, &path).send().await?).await {
            Ok(_) | Err(RemoteError::Http { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The uploads being announced in this namespace.
    pub async fn pending(&self) -> Result<PendingList> {
        let resp = self.req(reqwest::Method::GET, "/uploads/pending").send().await?;
        self.json_body(resp).await
    }

    pub async fn commit(&self, ops: Vec<CommitOp>) -> Result<CommitResponse> {
        let resp = self.json(reqwest::Method::POST, "/commit", &CommitRequest { ops }).send().await?;
        self.json_body(resp).await
    }

    /// Makes a read-only link to a file or folder.
    pub async fn create_link(
        &self,
        path: &ferry_shared::RelPath,
        expires_in: Option<u64>,
        password: Option<String>,
    ) -> Result<ferry_shared::api::Link> {
        let req = ferry_shared::api::LinkRequest { path: path.clone(), expires_in, password };
        let resp = self.json(reqwest::Method::POST, "/links", &req).send().await?;
        self.json_body(check(resp).await?).await
    }

    /// Recent activity, newest first (`before`: the page after an earlier one).
    pub async fn activity(&self, limit: u32, before: Option<i64>) -> Result<ferry_shared::api::ActivityPage> {
        let mut path = format!("/activity?limit={limit}");
        if let Some(b) = before {
            path.push_str(&format!("&before={b}"));
        }
        let resp = self.req(reqwest::Method::GET, &path).send().await?;
        self.json_body(check(resp).await?).await
    }

    pub async fn share(
        &self,
        path: &ferry_shared::RelPath,
        with: &str,
        role: ferry_shared::api::MemberRole,
    ) -> Result<ferry_shared::api::Share> {
        let req = ferry_shared::api::ShareRequest { path: path.clone(), with: with.to_owned(), role };
        let resp = self.json(reqwest::Method::POST, "/shares", &req).send().await?;
        self.json_body(check(resp).await?).await
    }

    pub async fn shares(&self) -> Result<ferry_shared::api::ShareList> {
        let resp = self.req(reqwest::Method::GET, "/shares").send().await?;
        self.json_body(check(resp).await?).await
    }

    /// Removes `user` from share `id` (yourself: you leave), or with `None`
    /// everyone but the owner.
    pub async fn remove_share_member(&self, id: i64, user: Option<&str>) -> Result<()> {
        let path = match user {
            Some(u) => format!("/shares/{id}/members/{}", url_segment(u)),
            None => format!("/shares/{id}"),
        };
        check(self.req(reqwest::Method::DELETE, &path).send().await?).await?;
        Ok(())
    }

    pub async fn links(&self) -> Result<ferry_shared::api::LinkList> {
        let resp = self.req(reqwest::Method::GET, "/links").send().await?;
        self.json_body(check(resp).await?).await
    }

    pub async fn revoke_link(&self, id: i64) -> Result<()> {
        check(self.req(reqwest::Method::DELETE, &format!("/links/{id}")).send().await?).await?;
        Ok(())
    }

    /// What was deleted in this user's tree, most recently deleted first.
    pub async fn trash(&self, limit: u32) -> Result<ferry_shared::api::TrashList> {
        let resp = self.req(reqwest::Method::GET, &format!("/trash?limit={limit}")).send().await?;
        self.json_body(check(resp).await?).await
    }

    /// Brings a deleted file or folder back to where it was.
    pub async fn restore_deleted(&self, path: &ferry_shared::RelPath) -> Result<ferry_shared::api::Entry> {
        let req = ferry_shared::api::PathRequest { path: path.clone() };
        let resp = self.json(reqwest::Method::POST, "/trash/restore", &req).send().await?;
        self.json_body(check(resp).await?).await
    }

    pub async fn revisions(&self, path: &ferry_shared::RelPath, limit: u32) -> Result<ListRevisionsResponse> {
        let resp = self
            .req(reqwest::Method::POST, "/files/list_revisions")
            .json(&ListRevisionsRequest { path: path.clone(), limit: Some(limit) })
            .send()
            .await?;
        Ok(check(resp).await?.json().await?)
    }
}

/// A user name as one URL path segment.
fn url_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malicious_paths_are_refused_one_by_one() {
        let entry = |path: &str| {
            serde_json::json!({"seq": 1, "op": "add", "entry": {"id": 1, "path": path, "kind": "file", "rev": 1,
                "size": 0, "mtime": 0, "executable": false, "hash": "", "deleted": false, "modified": 0, "device": "d"},
                "blocks": []})
        };
        let long = "x".repeat(300);
        let bad = ["../escape", "/etc/passwd", "a/../../b", "a\u{0}b", long.as_str(), "a//b"];
        let mut changes: Vec<serde_json::Value> = bad.iter().map(|p| entry(p)).collect();
        // Names only Windows cannot store are ordinary names of the namespace
        // (a client whose disk cannot hold them keeps them off it).
        changes.push(entry("CON"));
        changes.push(entry("C:/x"));
        changes.push(entry("good/file.txt"));
        let (page, refused) = parse_changes(RawChanges { changes, cursor: 9, has_more: false });
        assert_eq!(refused.len(), bad.len() - 1, "{refused:?}"); // "/etc/passwd" is the relative "etc/passwd"
        let paths: Vec<&str> = page.changes.iter().map(|c| c.entry.path.as_str()).collect();
        assert_eq!(paths, ["etc/passwd", "CON", "C:/x", "good/file.txt"]);
        assert_eq!(page.cursor, 9);
        // A normalization twin arrives in the one form the disk is written
        // in (NFC): it names the same file, never a second one beside it.
        let (page, refused) =
            parse_changes(RawChanges { changes: vec![entry("cafe\u{301}.txt")], cursor: 10, has_more: false });
        assert!(refused.is_empty());
        assert_eq!(page.changes[0].entry.path.as_str(), "caf\u{e9}.txt");
    }
}
