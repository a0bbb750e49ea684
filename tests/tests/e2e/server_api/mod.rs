//! End-to-end tests of the server's HTTP API: the real `ferry-server` binary on
//! 127.0.0.1, spoken to over real HTTP (no mocks). Each test starts its own
//! server with a fresh data directory. A module an area of the API; the
//! helpers they share are here.
//!
//! Run with `cargo build -p ferry-server && cargo test -p ferry-tests --test e2e server_api::`.

mod auth;
mod blocks;
mod changes;
mod commit;
mod files;
mod openapi;
mod paths;
mod quota;
mod restart;
mod resumable;

use std::time::Duration;

use anyhow::Context;
use ferry_shared::api::{
    BlockList, ChangesResponse, CommitOp, Entry, ErrorBody, ErrorCode, ErrorDetail, OpResult, PollResponse,
};
use ferry_shared::{BlockId, RelPath};
use ferry_tests::Client;
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

type TestResult = anyhow::Result<()>;

const MTIME: i64 = 1_700_000_000_000;
/// Generous bound for anything that should answer "at once" (not a speed
/// assertion: only there so a hang fails the test instead of blocking it).
const DEADLINE: Duration = Duration::from_secs(25);

fn rp(s: &str) -> RelPath {
    RelPath::parse(s).expect("valid test path")
}

fn put_op(path: &str, parent_rev: Option<i64>, size: usize, blocks: Vec<BlockId>) -> CommitOp {
    CommitOp::Put {
        path: rp(path),
        parent_rev,
        size: size as u64,
        mtime: MTIME,
        executable: false,
        blocks: BlockList::Full(blocks),
    }
}

/// `path?k=v&...` with the values form-encoded.
fn with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    let mut u = reqwest::Url::parse("http://x/").expect("static url");
    u.query_pairs_mut().extend_pairs(pairs);
    format!("{path}?{}", u.query().unwrap_or_default())
}

/// Asserts an error answer: the status, a JSON body of exactly the shape
/// `{"error":{"code":CODE,"message":"...",...}}`, and returns the detail.
async fn expect_error(resp: reqwest::Response, status: u16, code: &str) -> anyhow::Result<ErrorDetail> {
    let got = resp.status();
    let ctype = resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let text = resp.text().await?;
    assert_eq!(got.as_u16(), status, "unexpected status; body: {text}");
    assert!(ctype.starts_with("application/json"), "error content-type is {ctype:?}; body: {text}");
    let v: Value = serde_json::from_str(&text).with_context(|| format!("error body is not JSON: {text}"))?;
    let obj = v.as_object().with_context(|| format!("error body is not an object: {text}"))?;
    assert_eq!(obj.keys().collect::<Vec<_>>(), vec!["error"], "{text}");
    assert_eq!(v["error"]["code"], json!(code), "{text}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "no message: {text}");
    let body: ErrorBody = serde_json::from_value(v)?;
    assert_eq!(body.error.code.status(), status, "code {code} maps to another status");
    Ok(body.error)
}

async fn expect_json<T: DeserializeOwned>(resp: reqwest::Response, status: u16) -> anyhow::Result<T> {
    let got = resp.status();
    let text = resp.text().await?;
    assert_eq!(got.as_u16(), status, "unexpected status; body: {text}");
    serde_json::from_str(&text).with_context(|| format!("unexpected body: {text}"))
}

fn ok_entry(r: &OpResult) -> &Entry {
    assert_eq!(r.status, 200, "operation failed: {r:?}");
    assert!(r.error.is_none(), "{r:?}");
    r.entry.as_ref().expect("a successful operation has an entry")
}

fn op_error(r: &OpResult, status: u16, code: ErrorCode) -> &ErrorDetail {
    assert_eq!(r.status, status, "{r:?}");
    assert!(r.entry.is_none(), "{r:?}");
    let e = r.error.as_ref().expect("a failed operation has an error");
    assert_eq!(e.code, code, "{r:?}");
    assert!(!e.message.is_empty());
    e
}

async fn commit_one(c: &Client, op: CommitOp) -> anyhow::Result<OpResult> {
    let mut resp = c.commit(vec![op]).await?;
    assert_eq!(resp.results.len(), 1);
    Ok(resp.results.remove(0))
}

/// Uploads `data` as one block and puts it at `path`; returns the new entry.
async fn put_file(c: &Client, path: &str, data: &[u8], parent_rev: Option<i64>) -> anyhow::Result<Entry> {
    let r = c.put_small(path, data, parent_rev).await?;
    Ok(ok_entry(&r).clone())
}

async fn download(c: &Client, path: &str) -> anyhow::Result<reqwest::Response> {
    Ok(c.get(&with_query("/files/download", &[("path", path)])).send().await?)
}

async fn download_ok(c: &Client, path: &str) -> anyhow::Result<Vec<u8>> {
    let resp = download(c, path).await?;
    let status = resp.status();
    let bytes = resp.bytes().await?;
    assert_eq!(status, StatusCode::OK, "download {path}: {}", String::from_utf8_lossy(&bytes));
    Ok(bytes.to_vec())
}

async fn changes(c: &Client, cursor: i64, limit: u32) -> anyhow::Result<ChangesResponse> {
    let resp = c.get(&format!("/changes?cursor={cursor}&limit={limit}")).send().await?;
    expect_json(resp, 200).await
}

async fn cursor_of(c: &Client) -> anyhow::Result<i64> {
    let mut cursor = 0;
    loop {
        let page = changes(c, cursor, 5000).await?;
        cursor = page.cursor;
        if !page.has_more {
            return Ok(cursor);
        }
    }
}

async fn poll(c: &Client, cursor: i64, timeout: u64) -> anyhow::Result<PollResponse> {
    let resp = c.get(&format!("/changes/poll?cursor={cursor}&timeout={timeout}")).send().await?;
    expect_json(resp, 200).await
}

async fn revisions_get(c: &Client, path: &str) -> anyhow::Result<reqwest::Response> {
    Ok(c.get(&with_query("/files/list_revisions", &[("path", path)])).send().await?)
}

async fn revisions_post(c: &Client, path: &str) -> anyhow::Result<reqwest::Response> {
    Ok(c.post("/files/list_revisions").json(&json!({ "path": path })).send().await?)
}

async fn simple_upload(c: &Client, path: &str, data: &[u8]) -> anyhow::Result<reqwest::Response> {
    Ok(c.post(&with_query("/files/upload", &[("uploadType", "media"), ("path", path)]))
        .body(data.to_vec())
        .send()
        .await?)
}

/// The same device, but a client that never follows redirects (resumable
/// uploads answer 308 without `Location`; this makes sure nothing is followed).
fn no_redirects(c: &Client) -> anyhow::Result<Client> {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    Ok(Client { http, ..c.clone() })
}

fn header(resp: &reqwest::Response, name: reqwest::header::HeaderName) -> Option<String> {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}
