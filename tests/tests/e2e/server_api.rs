//! End-to-end tests of the server's HTTP API: the real `ferry-server` binary on
//! 127.0.0.1, spoken to over real HTTP (no mocks). Each test starts its own
//! server with a fresh data directory.
//!
//! Run with `cargo build -p ferry-server && cargo test -p ferry-tests --test e2e server_api::`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferry_shared::api::{
    BlockEdit, BlockList, ChangeOp, ChangesResponse, CommitOp, CommitResponse, Entry, EntryKind, ErrorBody, ErrorCode,
    ErrorDetail, ListRevisionsResponse, LoginResponse, MissingBlocksResponse, OpResult, PollResponse,
    ResumableStartResponse, Revision,
};
use ferry_shared::block::{self, BlockEncoding, ENCODING_HEADER};
use ferry_shared::{BlockId, RelPath};
use ferry_tests::{Client, Server, add_user, pseudo_random, url_path};
use futures_util::{StreamExt, TryStreamExt};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, CONTENT_TYPE, ETAG, LOCATION, RANGE};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type TestResult = anyhow::Result<()>;

const MTIME: i64 = 1_700_000_000_000;
/// Generous bound for anything that should answer "at once" (not a speed
/// assertion: only there so a hang fails the test instead of blocking it).
const DEADLINE: Duration = Duration::from_secs(25);

// ---------------------------------------------------------------------------
// Helpers

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

/// A raw HTTP/1.1 exchange: lets a test announce a `Content-Length` without
/// sending the body (the server must refuse from the header alone).
/// Returns the status, the raw header block and the body.
async fn raw_http(server: &Server, head: &str) -> anyhow::Result<(u16, String, Vec<u8>)> {
    let addr = server.url.strip_prefix("http://").context("http url")?.to_owned();
    let head = head.to_owned();
    tokio::time::timeout(DEADLINE, async move {
        let mut s = tokio::net::TcpStream::connect(&addr).await?;
        s.write_all(head.as_bytes()).await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let headers = String::from_utf8_lossy(&buf[..end]).into_owned();
                let len: usize = headers
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                    .context("response without content-length")?
                    .parse()?;
                if buf.len() >= end + 4 + len {
                    let status: u16 = headers.split(' ').nth(1).context("status line")?.parse()?;
                    return Ok((status, headers, buf[end + 4..end + 4 + len].to_vec()));
                }
            }
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                bail!("connection closed early: {}", String::from_utf8_lossy(&buf));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .context("raw HTTP exchange timed out")?
}

/// Checks a raw error body's shape and code.
fn raw_error(body: &[u8], code: &str) -> anyhow::Result<()> {
    let v: Value = serde_json::from_slice(body).with_context(|| String::from_utf8_lossy(body).into_owned())?;
    assert_eq!(v["error"]["code"], json!(code), "{v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    Ok(())
}

// ---------------------------------------------------------------------------
// 1. Login and logout

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_logout_and_bad_credentials() -> TestResult {
    let server = Server::start()?;
    let http = reqwest::Client::new();
    let login = |user: &str, password: &str, device: &str| {
        http.post(format!("{}/auth/login", server.url))
            .json(&json!({"username": user, "password": password, "device_name": device}))
            .send()
    };

    let a: LoginResponse = expect_json(login("alice", "password-alice", "laptop").await?, 200).await?;
    assert!(a.token.len() >= 32, "token too short: {}", a.token);
    assert!(a.user_id > 0 && a.device_id > 0);
    // The same device name is the same device, with a new token.
    let a2: LoginResponse = expect_json(login("alice", "password-alice", "laptop").await?, 200).await?;
    assert_eq!((a2.user_id, a2.device_id), (a.user_id, a.device_id));
    assert_ne!(a2.token, a.token);
    let phone: LoginResponse = expect_json(login("alice", "password-alice", "phone").await?, 200).await?;
    assert_ne!(phone.device_id, a.device_id);
    let b: LoginResponse = expect_json(login("bob", "password-bob", "laptop").await?, 200).await?;
    assert_ne!(b.user_id, a.user_id);

    // Wrong password, unknown user, a user's name with another's password: all 401, same answer.
    let wrong = expect_error(login("alice", "password-bob", "laptop").await?, 401, "unauthorized").await?;
    let unknown = expect_error(login("mallory", "password-mallory", "laptop").await?, 401, "unauthorized").await?;
    assert_eq!(wrong.message, unknown.message, "the answer must not reveal which user names exist");
    expect_error(login("alice", "", "laptop").await?, 401, "unauthorized").await?;
    expect_error(login("alice", "password-alice", "  ").await?, 400, "bad_request").await?;

    // The token works; logout revokes exactly that token.
    let get_changes = |token: &str| http.get(format!("{}/changes", server.url)).bearer_auth(token).send();
    assert_eq!(get_changes(&a.token).await?.status(), StatusCode::OK);
    let out = http.post(format!("{}/auth/logout", server.url)).bearer_auth(&a.token).send().await?;
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    expect_error(get_changes(&a.token).await?, 401, "unauthorized").await?;
    let again = http.post(format!("{}/auth/logout", server.url)).bearer_auth(&a.token).send().await?;
    expect_error(again, 401, "unauthorized").await?;
    // Other tokens of the same user and device are untouched.
    assert_eq!(get_changes(&a2.token).await?.status(), StatusCode::OK);
    assert_eq!(get_changes(&phone.token).await?.status(), StatusCode::OK);
    assert_eq!(get_changes(&b.token).await?.status(), StatusCode::OK);
    Ok(())
}

// ---------------------------------------------------------------------------
// 2. Authentication on every endpoint

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_requires_a_valid_token() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "dev1").await?;
    let id = BlockId::of(b"some block");
    let missing_body = json!({"ids": [id]}).to_string();
    let commit_body = json!({"ops": [{"op": "mkdir", "path": "d"}]}).to_string();
    let block_path = format!("/blocks/{id}");
    let endpoints: Vec<(reqwest::Method, String, Option<String>)> = vec![
        (reqwest::Method::POST, "/blocks/missing".into(), Some(missing_body)),
        (reqwest::Method::PUT, block_path.clone(), Some("some block".into())),
        (reqwest::Method::GET, block_path.clone(), None),
        (reqwest::Method::POST, "/commit".into(), Some(commit_body)),
        (reqwest::Method::GET, "/changes?cursor=0".into(), None),
        (reqwest::Method::GET, "/changes/poll?cursor=0&timeout=1".into(), None),
        (reqwest::Method::POST, "/files/upload?uploadType=media&path=x.txt".into(), Some("hello".into())),
        (
            reqwest::Method::POST,
            "/files/upload?uploadType=resumable".into(),
            Some(json!({"path": "x.txt", "size": 5}).to_string()),
        ),
        (
            reqwest::Method::PUT,
            format!("/files/upload?uploadType=resumable&upload_id={}", "0".repeat(32)),
            Some("hello".into()),
        ),
        (reqwest::Method::GET, "/files/download?path=x.txt".into(), None),
        (reqwest::Method::GET, "/files/list_revisions?path=x.txt".into(), None),
        (reqwest::Method::POST, "/files/list_revisions".into(), Some(json!({"path": "x.txt"}).to_string())),
        (reqwest::Method::POST, "/links".into(), Some(json!({"path": "x.txt"}).to_string())),
        (reqwest::Method::GET, "/links".into(), None),
        (reqwest::Method::GET, "/activity".into(), None),
        (reqwest::Method::DELETE, "/links/1".into(), None),
        (reqwest::Method::POST, "/auth/logout".into(), None),
    ];
    let bad_auth: [Option<&str>; 5] = [
        None,
        Some("Bearer garbage-token"),
        Some("Bearer "),
        Some("Basic YWxpY2U6cGFzc3dvcmQtYWxpY2U="),
        Some(alice.token.as_str()),
    ];
    for (method, path, body) in &endpoints {
        for auth in bad_auth {
            let mut req = alice.http.request(method.clone(), format!("{}{path}", server.url));
            if let Some(a) = auth {
                req = req.header(reqwest::header::AUTHORIZATION, a);
            }
            if let Some(b) = body {
                req = req.header(CONTENT_TYPE, "application/json").body(b.clone());
            }
            let resp = req.send().await?;
            let e = expect_error(resp, 401, "unauthorized")
                .await
                .with_context(|| format!("{method} {path} with Authorization {auth:?}"))?;
            assert!(e.head.is_none() && e.missing.is_empty());
        }
    }
    // The same requests with the real token are not refused (the 401s above
    // came from authentication, not from something else).
    let ok = alice.get("/changes?cursor=0").send().await?;
    assert_eq!(ok.status(), StatusCode::OK);
    let ok = alice.post("/blocks/missing").json(&json!({"ids": [id]})).send().await?;
    let m: MissingBlocksResponse = expect_json(ok, 200).await?;
    assert_eq!(m.missing, vec![id]);
    // Other error answers share the JSON shape: an unknown endpoint, a bad block id.
    expect_error(alice.get("/no/such/endpoint").send().await?, 404, "not_found").await?;
    expect_error(alice.get("/blocks/not-hex").send().await?, 400, "bad_request").await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// 3. Cross-user isolation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_cannot_see_or_use_each_others_data() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "dev1").await?;
    let bob = Client::user(&server, "bob", "dev1").await?;
    let secret = b"alice's secret content, not for bob".repeat(20);
    let secret_id = BlockId::of(&secret);
    let entry = put_file(&alice, "secret.txt", &secret, None).await?;
    let never_uploaded = BlockId::of(b"nobody uploaded this");

    // Alice can fetch her block; bob cannot, and cannot tell it from one that
    // does not exist anywhere.
    let resp = alice.get(&format!("/blocks/{secret_id}")).send().await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let enc = BlockEncoding::parse(&header(&resp, ENCODING_HEADER.parse()?).context("encoding header")?)
        .context("encoding")?;
    assert_eq!(block::decode(&secret_id, enc, &resp.bytes().await?)?, secret);
    let e1 = expect_error(bob.get(&format!("/blocks/{secret_id}")).send().await?, 404, "not_found").await?;
    let e2 = expect_error(bob.get(&format!("/blocks/{never_uploaded}")).send().await?, 404, "not_found").await?;
    assert_eq!(e1.message, e2.message);

    // /blocks/missing answers from the caller's own blocks only.
    let m: MissingBlocksResponse =
        expect_json(bob.post("/blocks/missing").json(&json!({"ids": [secret_id, never_uploaded]})).send().await?, 200)
            .await?;
    assert_eq!(m.missing, vec![secret_id, never_uploaded]);
    let m: MissingBlocksResponse = expect_json(
        alice.post("/blocks/missing").json(&json!({"ids": [secret_id, never_uploaded]})).send().await?,
        200,
    )
    .await?;
    assert_eq!(m.missing, vec![never_uploaded]);

    // Bob cannot commit a file made of alice's block.
    let r = commit_one(&bob, put_op("stolen.txt", None, secret.len(), vec![secret_id])).await?;
    let e = op_error(&r, 400, ErrorCode::MissingBlocks);
    assert_eq!(e.missing, vec![secret_id]);
    expect_error(download(&bob, "stolen.txt").await?, 404, "not_found").await?;

    // Bob cannot see alice's file or its history.
    expect_error(download(&bob, "secret.txt").await?, 404, "not_found").await?;
    expect_error(revisions_get(&bob, "secret.txt").await?, 404, "not_found").await?;
    expect_error(revisions_post(&bob, "secret.txt").await?, 404, "not_found").await?;
    let bob_changes = changes(&bob, 0, 1000).await?;
    assert!(bob_changes.changes.is_empty(), "bob sees alice's journal: {bob_changes:?}");

    // Bob's own file at the same path: he gets his content, and alice's
    // revision number does not reach alice's content through his path.
    let bob_entry = put_file(&bob, "secret.txt", b"bob's own file", None).await?;
    assert_ne!(bob_entry.id, entry.id);
    assert_eq!(download_ok(&bob, "secret.txt").await?, b"bob's own file");
    let url = with_query("/files/download", &[("path", "secret.txt"), ("rev", &entry.rev.to_string())]);
    expect_error(bob.get(&url).send().await?, 404, "not_found").await?;
    assert_eq!(download_ok(&alice, "secret.txt").await?, secret);
    let r = commit_one(&bob, CommitOp::Restore { path: rp("secret.txt"), rev: entry.rev }).await?;
    op_error(&r, 404, ErrorCode::NotFound);
    assert_eq!(download_ok(&bob, "secret.txt").await?, b"bob's own file");
    // Alice's files are untouched by bob's same-named file.
    assert_eq!(download_ok(&alice, "secret.txt").await?, secret);

    // Bob cannot use alice's resumable upload session.
    let start = alice
        .post("/files/upload?uploadType=resumable")
        .json(&json!({"path": "upload.bin", "size": 10}))
        .send()
        .await?;
    let location = url_path(&header(&start, LOCATION).context("Location")?).to_owned();
    let _: ResumableStartResponse = expect_json(start, 200).await?;
    let bob_nr = no_redirects(&bob)?;
    let resp = bob_nr.put(&location).header(CONTENT_RANGE, "bytes 0-9/10").body(vec![7u8; 10]).send().await?;
    expect_error(resp, 404, "not_found").await?;
    let resp = bob_nr.put(&location).header(CONTENT_RANGE, "bytes */10").send().await?;
    expect_error(resp, 404, "not_found").await?;
    // The session is intact for alice: nothing was received.
    let alice_nr = no_redirects(&alice)?;
    let resp = alice_nr.put(&location).header(CONTENT_RANGE, "bytes */10").send().await?;
    assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(header(&resp, RANGE), None, "bob's bytes must not have landed in alice's session");
    expect_error(download(&bob, "upload.bin").await?, 404, "not_found").await?;

    // Proof of possession: once bob uploads the same content himself, he may use it.
    assert_eq!(bob.upload_block(&secret).await?, secret_id);
    let resp = bob.get(&format!("/blocks/{secret_id}")).send().await?;
    assert_eq!(resp.status(), StatusCode::OK);
    ok_entry(&commit_one(&bob, put_op("mine-now.txt", None, secret.len(), vec![secret_id])).await?);
    assert_eq!(download_ok(&bob, "mine-now.txt").await?, secret);
    Ok(())
}

// ---------------------------------------------------------------------------
// 4. Blocks

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_upload_encodings_and_verification() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "dev1").await?;
    let missing = |ids: Vec<BlockId>| {
        let alice = alice.clone();
        async move {
            let resp = alice.post("/blocks/missing").json(&json!({ "ids": ids })).send().await?;
            anyhow::Ok(expect_json::<MissingBlocksResponse>(resp, 200).await?.missing)
        }
    };

    // zstd (the default encoding, header given or not).
    let text = b"compressible text, compressible text, compressible text. ".repeat(500);
    let enc = block::encode(&text);
    assert_eq!(enc.encoding, BlockEncoding::Zstd);
    let text2 = b"more compressible text without the header! ".repeat(300);
    let enc2 = block::encode(&text2);
    assert_eq!(missing(vec![enc.id, enc2.id]).await?, vec![enc.id, enc2.id]);
    let resp = alice
        .put(&format!("/blocks/{}", enc.id))
        .header(ENCODING_HEADER, "zstd")
        .body(enc.bytes.clone())
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(missing(vec![enc.id, enc2.id]).await?, vec![enc2.id]);
    let resp = alice.put(&format!("/blocks/{}", enc2.id)).body(enc2.bytes.clone()).send().await?;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(missing(vec![enc.id, enc2.id]).await?, Vec::<BlockId>::new());
    // Uploading again is harmless.
    let resp = alice
        .put(&format!("/blocks/{}", enc.id))
        .header(ENCODING_HEADER, "zstd")
        .body(enc.bytes.clone())
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::CREATED);
    // Downloaded as stored.
    let resp = alice.get(&format!("/blocks/{}", enc.id)).send().await?;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, ENCODING_HEADER.parse()?).as_deref(), Some("zstd"));
    assert_eq!(block::decode(&enc.id, BlockEncoding::Zstd, &resp.bytes().await?)?, text);

    // Raw.
    let random = pseudo_random(100_000, 4);
    let raw_id = BlockId::of(&random);
    assert_eq!(missing(vec![raw_id]).await?, vec![raw_id]);
    let resp =
        alice.put(&format!("/blocks/{raw_id}")).header(ENCODING_HEADER, "raw").body(random.clone()).send().await?;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(missing(vec![raw_id]).await?.is_empty());
    let resp = alice.get(&format!("/blocks/{raw_id}")).send().await?;
    assert_eq!(header(&resp, ENCODING_HEADER.parse()?).as_deref(), Some("raw"));
    assert_eq!(resp.bytes().await?.to_vec(), random);

    // Content that does not match the id is refused, in either encoding.
    let claimed = BlockId::of(b"the content the id promises");
    let resp =
        alice.put(&format!("/blocks/{claimed}")).header(ENCODING_HEADER, "raw").body("other content").send().await?;
    expect_error(resp, 400, "bad_block").await?;
    let wrong = block::encode(&b"other content, zstd encoded ".repeat(50));
    let resp =
        alice.put(&format!("/blocks/{claimed}")).header(ENCODING_HEADER, "zstd").body(wrong.bytes).send().await?;
    expect_error(resp, 400, "bad_block").await?;
    let resp = alice
        .put(&format!("/blocks/{claimed}"))
        .header(ENCODING_HEADER, "zstd")
        .body("not a zstd frame")
        .send()
        .await?;
    expect_error(resp, 400, "bad_block").await?;
    // A body meant for another id (the right bytes, the wrong name).
    let resp =
        alice.put(&format!("/blocks/{claimed}")).header(ENCODING_HEADER, "raw").body(random.clone()).send().await?;
    expect_error(resp, 400, "bad_block").await?;
    assert_eq!(missing(vec![claimed]).await?, vec![claimed], "a refused block must not count as uploaded");
    expect_error(alice.get(&format!("/blocks/{claimed}")).send().await?, 404, "not_found").await?;

    // Bad ids and encodings.
    let resp = alice.put("/blocks/abc").header(ENCODING_HEADER, "raw").body("x").send().await?;
    expect_error(resp, 400, "bad_request").await?;
    let resp =
        alice.put(&format!("/blocks/{raw_id}")).header(ENCODING_HEADER, "gzip").body(random.clone()).send().await?;
    expect_error(resp, 400, "bad_request").await?;
    let resp = alice.post("/blocks/missing").json(&json!({"ids": ["nothex"]})).send().await?;
    assert!(resp.status().is_client_error(), "{}", resp.status());
    Ok(())
}

// ---------------------------------------------------------------------------
// 5. Commit semantics

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_put_modify_and_concurrent_conflict() -> TestResult {
    let server = Server::start()?;
    let dev1 = Client::user(&server, "alice", "dev1").await?;
    let dev2 = Client::user(&server, "alice", "dev2").await?;

    // New file: parent_rev null.
    let v1 = b"version one".to_vec();
    let e1 = put_file(&dev1, "notes/doc.txt", &v1, None).await?;
    assert_eq!(e1.path.as_str(), "notes/doc.txt");
    assert_eq!((e1.kind, e1.size, e1.deleted), (EntryKind::File, v1.len() as u64, false));
    assert_eq!(e1.mtime, MTIME);
    assert_eq!(e1.device, "dev1");
    assert_eq!(e1.hash, block::content_hash(v1.len() as u64, [&BlockId::of(&v1)]));
    assert_eq!(download_ok(&dev2, "notes/doc.txt").await?, v1);

    // Modify with the right parent_rev.
    let v2 = b"version two, a bit longer".to_vec();
    let e2 = put_file(&dev2, "notes/doc.txt", &v2, Some(e1.rev)).await?;
    assert_eq!(e2.id, e1.id, "a modification keeps the file id");
    assert!(e2.rev > e1.rev);
    assert_eq!(e2.device, "dev2");
    assert_eq!(download_ok(&dev1, "notes/doc.txt").await?, v2);

    // A stale parent_rev is a conflict naming the current head.
    let r = dev1.put_small("notes/doc.txt", b"based on v1", Some(e1.rev)).await?;
    let e = op_error(&r, 409, ErrorCode::Conflict);
    let head = e.head.as_ref().context("conflict without head")?;
    assert_eq!((head.id, head.rev, head.size), (e2.id, e2.rev, e2.size));
    assert_eq!(download_ok(&dev1, "notes/doc.txt").await?, v2);

    // Put at an existing path with parent_rev null: conflict.
    let r = dev1.put_small("notes/doc.txt", b"I think this is new", None).await?;
    let e = op_error(&r, 409, ErrorCode::Conflict);
    assert_eq!(e.head.as_ref().context("head")?.rev, e2.rev);

    // Two devices race against the same head: exactly one wins.
    let (a, b) = (b"device one's edit".to_vec(), b"device two's edit, different".to_vec());
    let (ida, idb) = (dev1.upload_block(&a).await?, dev2.upload_block(&b).await?);
    let (ra, rb) = tokio::join!(
        dev1.commit(vec![put_op("notes/doc.txt", Some(e2.rev), a.len(), vec![ida])]),
        dev2.commit(vec![put_op("notes/doc.txt", Some(e2.rev), b.len(), vec![idb])]),
    );
    let (ra, rb) = (ra?.results.remove(0), rb?.results.remove(0));
    let statuses = [ra.status, rb.status];
    assert!(statuses == [200, 409] || statuses == [409, 200], "{ra:?} {rb:?}");
    let (winner, loser, content, device) =
        if ra.status == 200 { (&ra, &rb, &a, "dev1") } else { (&rb, &ra, &b, "dev2") };
    let won = ok_entry(winner);
    assert_eq!(won.device, device);
    let e = op_error(loser, 409, ErrorCode::Conflict);
    let head = e.head.as_ref().context("conflict without head")?;
    assert_eq!((head.id, head.rev, &head.hash, &head.device), (won.id, won.rev, &won.hash, &won.device));
    assert_eq!(&download_ok(&dev1, "notes/doc.txt").await?, content);
    let revs: ListRevisionsResponse = expect_json(revisions_get(&dev1, "notes/doc.txt").await?, 200).await?;
    assert_eq!(revs.revisions.iter().map(|r| r.rev).collect::<Vec<_>>(), vec![won.rev, e2.rev, e1.rev]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_delete_move_mkdir_rmdir() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "dev1").await?;

    // Delete.
    let f = put_file(&alice, "a/b/gone.txt", b"short-lived", None).await?;
    let r = commit_one(&alice, CommitOp::Delete { path: rp("a/b/gone.txt"), parent_rev: Some(f.rev + 1000) }).await?;
    assert_eq!(op_error(&r, 409, ErrorCode::Conflict).head.as_ref().context("head")?.rev, f.rev);
    let r = commit_one(&alice, CommitOp::Delete { path: rp("a/b/gone.txt"), parent_rev: Some(f.rev) }).await?;
    let d = ok_entry(&r);
    assert!(d.deleted && d.rev > f.rev && d.id == f.id);
    expect_error(download(&alice, "a/b/gone.txt").await?, 404, "not_found").await?;
    let r = commit_one(&alice, CommitOp::Delete { path: rp("a/b/gone.txt"), parent_rev: None }).await?;
    op_error(&r, 404, ErrorCode::NotFound);
    // Deleting a folder with `delete` is refused.
    let r = commit_one(&alice, CommitOp::Delete { path: rp("a/b"), parent_rev: None }).await?;
    op_error(&r, 409, ErrorCode::Conflict);

    // Move to another folder (created on the way), then rename in place.
    let content = pseudo_random(5000, 11);
    let x = put_file(&alice, "x.txt", &content, None).await?;
    let r =
        commit_one(&alice, CommitOp::Move { from: rp("x.txt"), to: rp("dir2/y.txt"), parent_rev: Some(x.rev) }).await?;
    let moved = ok_entry(&r).clone();
    assert_eq!(moved.id, x.id, "a move keeps the file id");
    assert_ne!(moved.rev, x.rev, "a move makes a new revision");
    assert_eq!((moved.path.as_str(), &moved.hash, moved.size), ("dir2/y.txt", &x.hash, x.size));
    expect_error(download(&alice, "x.txt").await?, 404, "not_found").await?;
    assert_eq!(download_ok(&alice, "dir2/y.txt").await?, content);
    let r =
        commit_one(&alice, CommitOp::Move { from: rp("dir2/y.txt"), to: rp("dir2/z.txt"), parent_rev: Some(x.rev) })
            .await?;
    op_error(&r, 409, ErrorCode::Conflict);
    let r = commit_one(
        &alice,
        CommitOp::Move { from: rp("dir2/y.txt"), to: rp("dir2/z.txt"), parent_rev: Some(moved.rev) },
    )
    .await?;
    let renamed = ok_entry(&r).clone();
    assert_eq!(renamed.id, x.id);
    assert!(renamed.rev > moved.rev);
    assert_eq!(download_ok(&alice, "dir2/z.txt").await?, content);
    expect_error(download(&alice, "dir2/y.txt").await?, 404, "not_found").await?;
    // Moving onto an existing name is a conflict.
    put_file(&alice, "dir2/taken.txt", b"taken", None).await?;
    let r = commit_one(&alice, CommitOp::Move { from: rp("dir2/z.txt"), to: rp("dir2/taken.txt"), parent_rev: None })
        .await?;
    op_error(&r, 409, ErrorCode::Conflict);
    // The journal tells where it came from.
    let all = changes(&alice, 0, 1000).await?;
    let moves: Vec<_> = all.changes.iter().filter(|c| c.op == ChangeOp::Move).collect();
    assert_eq!(moves.len(), 2, "{all:?}");
    assert_eq!(moves[0].from.as_ref().map(RelPath::as_str), Some("x.txt"));
    assert_eq!(moves[0].entry.path.as_str(), "dir2/y.txt");
    assert_eq!(moves[1].from.as_ref().map(RelPath::as_str), Some("dir2/y.txt"));
    assert_eq!(moves[1].entry.path.as_str(), "dir2/z.txt");
    // History follows the file through moves.
    let revs: ListRevisionsResponse = expect_json(revisions_get(&alice, "dir2/z.txt").await?, 200).await?;
    assert_eq!(revs.revisions.iter().map(|r| r.rev).collect::<Vec<_>>(), vec![renamed.rev, moved.rev, x.rev]);

    // Mkdir is idempotent.
    let before = cursor_of(&alice).await?;
    let m1 = ok_entry(&commit_one(&alice, CommitOp::Mkdir { path: rp("docs") }).await?).clone();
    assert_eq!((m1.kind, m1.path.as_str()), (EntryKind::Dir, "docs"));
    let m2 = ok_entry(&commit_one(&alice, CommitOp::Mkdir { path: rp("docs") }).await?).clone();
    assert_eq!((m2.id, m2.rev), (m1.id, m1.rev));
    assert_eq!(cursor_of(&alice).await?, before + 1, "a repeated mkdir must not journal anything");
    // Mkdir where a file is: conflict.
    let r = commit_one(&alice, CommitOp::Mkdir { path: rp("dir2/taken.txt") }).await?;
    op_error(&r, 409, ErrorCode::Conflict);
    // Putting a file where a folder is: conflict.
    let r = alice.put_small("docs", b"not a folder", None).await?;
    op_error(&r, 409, ErrorCode::Conflict);

    // Rmdir: refused while not empty, fine once empty.
    let sub = ok_entry(&commit_one(&alice, CommitOp::Mkdir { path: rp("docs/sub") }).await?).clone();
    let r = commit_one(&alice, CommitOp::Rmdir { path: rp("docs"), parent_rev: None }).await?;
    op_error(&r, 409, ErrorCode::NotEmpty);
    let r = commit_one(&alice, CommitOp::Rmdir { path: rp("docs/sub"), parent_rev: Some(sub.rev) }).await?;
    assert!(ok_entry(&r).deleted);
    let r = commit_one(&alice, CommitOp::Rmdir { path: rp("docs"), parent_rev: Some(m1.rev) }).await?;
    let gone = ok_entry(&r);
    assert!(gone.deleted && gone.kind == EntryKind::Dir);
    // Rmdir on a file is refused.
    let r = commit_one(&alice, CommitOp::Rmdir { path: rp("dir2/taken.txt"), parent_rev: None }).await?;
    op_error(&r, 409, ErrorCode::Conflict);
    assert_eq!(download_ok(&alice, "dir2/taken.txt").await?, b"taken");
    let tail = changes(&alice, before, 1000).await?;
    let ops: Vec<ChangeOp> = tail.changes.iter().map(|c| c.op).collect();
    assert_eq!(ops, vec![ChangeOp::Mkdir, ChangeOp::Mkdir, ChangeOp::Rmdir, ChangeOp::Rmdir]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_refuses_case_and_normalization_twins() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "dev1").await?;

    let readme = put_file(&alice, "README.md", b"the readme", None).await?;
    let r = alice.put_small("Readme.md", b"a case twin", None).await?;
    let e = op_error(&r, 409, ErrorCode::Conflict);
    let head = e.head.as_ref().context("head")?;
    assert_eq!((head.id, head.rev), (readme.id, readme.rev));
    assert_eq!(head.path.as_str(), "README.md", "the head must name the existing file's real path");
    let r = commit_one(&alice, CommitOp::Mkdir { path: rp("readme.MD") }).await?;
    op_error(&r, 409, ErrorCode::Conflict);
    put_file(&alice, "other.txt", b"other", None).await?;
    let r = commit_one(&alice, CommitOp::Move { from: rp("other.txt"), to: rp("ReadMe.md"), parent_rev: None }).await?;
    op_error(&r, 409, ErrorCode::Conflict);
    assert_eq!(download_ok(&alice, "README.md").await?, b"the readme");
    assert_eq!(download_ok(&alice, "other.txt").await?, b"other");

    // NFC name exists; its NFD spelling is the same name.
    let nfc = "caf\u{e9}.txt";
    let nfd = "cafe\u{301}.txt";
    let cafe = put_file(&alice, nfc, b"coffee", None).await?;
    let id = alice.upload_block(b"decomposed coffee").await?;
    let raw = json!({"ops": [{"op": "put", "path": nfd, "parent_rev": null, "size": 17, "mtime": MTIME,
        "blocks": {"full": [id]}}]});
    let resp: CommitResponse = expect_json(alice.post("/commit").json(&raw).send().await?, 200).await?;
    let e = op_error(&resp.results[0], 409, ErrorCode::Conflict);
    assert_eq!(e.head.as_ref().context("head")?.id, cafe.id);
    // An NFD file name in another case, under an NFD folder that is the NFC one.
    let raw = json!({"ops": [{"op": "put", "path": "CAFE\u{301}.TXT", "parent_rev": null, "size": 17, "mtime": MTIME,
        "blocks": {"full": [id]}}]});
    let resp: CommitResponse = expect_json(alice.post("/commit").json(&raw).send().await?, 200).await?;
    op_error(&resp.results[0], 409, ErrorCode::Conflict);
    // The NFD spelling reaches the NFC file.
    assert_eq!(download_ok(&alice, nfd).await?, b"coffee");
    let all = changes(&alice, 0, 1000).await?;
    let names: Vec<&str> = all.changes.iter().map(|c| c.entry.path.as_str()).collect();
    assert_eq!(names, vec!["README.md", "other.txt", nfc], "twins must not reach the journal");

    // A case-only rename of the file itself is allowed.
    let r =
        commit_one(&alice, CommitOp::Move { from: rp("README.md"), to: rp("Readme.md"), parent_rev: Some(readme.rev) })
            .await?;
    assert_eq!(ok_entry(&r).id, readme.id);
    assert_eq!(ok_entry(&r).path.as_str(), "Readme.md");
    let renamed_rev = ok_entry(&r).rev;

    // Changing the file through another spelling of its path changes the file
    // under its stored name: no device ever sees a second spelling.
    let r = alice.put_small("README.MD", b"edited via another case", Some(renamed_rev)).await?;
    assert_eq!(ok_entry(&r).id, readme.id);
    assert_eq!(ok_entry(&r).path.as_str(), "Readme.md");
    let r = commit_one(&alice, CommitOp::Mkdir { path: rp("Docs") }).await?;
    ok_entry(&r);
    let r = alice.put_small("DOCS/inner.txt", b"inner", None).await?;
    assert_eq!(ok_entry(&r).path.as_str(), "Docs/inner.txt");
    let tail = changes(&alice, all.cursor, 1000).await?;
    let names: Vec<&str> = tail.changes.iter().map(|c| c.entry.path.as_str()).collect();
    assert_eq!(names, vec!["Readme.md", "Readme.md", "Docs", "Docs/inner.txt"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_batch_of_1000_puts_in_one_request() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "dev1").await?;
    let contents: Vec<Vec<u8>> = (0..1000).map(|i| format!("small file number {i}\n").into_bytes()).collect();
    let ids: Vec<BlockId> =
        futures_util::stream::iter(contents.iter()).map(|c| alice.upload_block(c)).buffered(16).try_collect().await?;
    let ops: Vec<CommitOp> = contents
        .iter()
        .zip(&ids)
        .enumerate()
        .map(|(i, (c, id))| put_op(&format!("batch/f{i:04}.txt"), None, c.len(), vec![*id]))
        .collect();
    let before = cursor_of(&alice).await?;
    // One request.
    let resp = alice.commit(ops).await?;
    assert_eq!(resp.results.len(), 1000);
    let mut file_ids = std::collections::HashSet::new();
    for (i, r) in resp.results.iter().enumerate() {
        let e = ok_entry(r);
        assert_eq!(e.path.as_str(), format!("batch/f{i:04}.txt"));
        assert_eq!(e.size, contents[i].len() as u64);
        assert!(file_ids.insert(e.id), "duplicate file id");
    }
    // Results are in order: revisions increase.
    assert!(resp.results.windows(2).all(|w| w[0].entry.as_ref().unwrap().rev < w[1].entry.as_ref().unwrap().rev));
    // 1000 adds and the folder's mkdir.
    let page = changes(&alice, before, 5000).await?;
    assert_eq!(page.changes.len(), 1001);
    assert_eq!(page.changes[0].op, ChangeOp::Mkdir);
    assert_eq!(page.changes.iter().filter(|c| c.op == ChangeOp::Add).count(), 1000);
    assert_eq!(page.cursor, before + 1001);
    for i in [0usize, 1, 499, 998, 999] {
        assert_eq!(download_ok(&alice, &format!("batch/f{i:04}.txt")).await?, contents[i]);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_batch_with_one_failure_keeps_the_others() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "dev1").await?;
    let existing = put_file(&alice, "exists.txt", b"original", None).await?;
    let (n1, n2, clash) = (b"new one".to_vec(), b"new two".to_vec(), b"clash".to_vec());
    let (id1, id2, idc) =
        (alice.upload_block(&n1).await?, alice.upload_block(&n2).await?, alice.upload_block(&clash).await?);
    let never = BlockId::of(b"never uploaded");
    let before = cursor_of(&alice).await?;
    let resp = alice
        .commit(vec![
            put_op("new1.txt", None, n1.len(), vec![id1]),
            put_op("exists.txt", None, clash.len(), vec![idc]),
            CommitOp::Delete { path: rp("no-such-file.txt"), parent_rev: None },
            CommitOp::Mkdir { path: rp("newdir") },
            put_op("sub/missing.txt", None, 14, vec![never]),
            put_op("newdir/new2.txt", None, n2.len(), vec![id2]),
        ])
        .await?;
    let r = &resp.results;
    assert_eq!(r.len(), 6);
    ok_entry(&r[0]);
    assert_eq!(op_error(&r[1], 409, ErrorCode::Conflict).head.as_ref().context("head")?.rev, existing.rev);
    op_error(&r[2], 404, ErrorCode::NotFound);
    ok_entry(&r[3]);
    assert_eq!(op_error(&r[4], 400, ErrorCode::MissingBlocks).missing, vec![never]);
    ok_entry(&r[5]);
    assert_eq!(download_ok(&alice, "new1.txt").await?, n1);
    assert_eq!(download_ok(&alice, "newdir/new2.txt").await?, n2);
    assert_eq!(download_ok(&alice, "exists.txt").await?, b"original");
    // The failed put did not leave its folder behind.
    let tail = changes(&alice, before, 1000).await?;
    let paths: Vec<&str> = tail.changes.iter().map(|c| c.entry.path.as_str()).collect();
    assert_eq!(paths, vec!["new1.txt", "newdir", "newdir/new2.txt"]);
    assert_eq!(tail.cursor, before + 3);
    expect_error(download(&alice, "sub/missing.txt").await?, 404, "not_found").await?;
    // "sub" does not exist, so making it is a new journal record.
    ok_entry(&commit_one(&alice, CommitOp::Mkdir { path: rp("sub") }).await?);
    assert_eq!(cursor_of(&alice).await?, before + 4);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_restore_old_revision() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "dev1").await?;
    let v1 = pseudo_random(3000, 1);
    let v2 = pseudo_random(5000, 2);
    let e1 = put_file(&alice, "r.bin", &v1, None).await?;
    let e2 = put_file(&alice, "r.bin", &v2, Some(e1.rev)).await?;
    let r = commit_one(&alice, CommitOp::Restore { path: rp("r.bin"), rev: e1.rev }).await?;
    let e3 = ok_entry(&r).clone();
    assert_eq!(e3.id, e1.id);
    assert!(e3.rev > e2.rev, "a restore makes a new head");
    assert_eq!((e3.size, &e3.hash), (e1.size, &e1.hash));
    assert_eq!(download_ok(&alice, "r.bin").await?, v1);
    // History is kept: all three revisions, and the middle one still downloads.
    let revs: ListRevisionsResponse = expect_json(revisions_get(&alice, "r.bin").await?, 200).await?;
    assert_eq!(revs.revisions.iter().map(|r| r.rev).collect::<Vec<_>>(), vec![e3.rev, e2.rev, e1.rev]);
    let url = with_query("/files/download", &[("path", "r.bin"), ("rev", &e2.rev.to_string())]);
    let resp = alice.get(&url).send().await?;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await?.to_vec(), v2);
    let last = changes(&alice, 0, 1000).await?.changes.pop().context("journal")?;
    assert_eq!(last.op, ChangeOp::Modify);
    assert_eq!(last.entry.rev, e3.rev);
    assert_eq!(last.blocks.as_ref().map(|b| b.iter().map(|r| r.id).collect::<Vec<_>>()), Some(vec![BlockId::of(&v1)]));

    // Restore of a deleted file brings it back.
    let r = commit_one(&alice, CommitOp::Delete { path: rp("r.bin"), parent_rev: Some(e3.rev) }).await?;
    let deleted = ok_entry(&r).clone();
    expect_error(download(&alice, "r.bin").await?, 404, "not_found").await?;
    let r = commit_one(&alice, CommitOp::Restore { path: rp("r.bin"), rev: e2.rev }).await?;
    assert!(!ok_entry(&r).deleted);
    assert_eq!(download_ok(&alice, "r.bin").await?, v2);
    // A deletion, or another file's revision, cannot be restored.
    let r = commit_one(&alice, CommitOp::Restore { path: rp("r.bin"), rev: deleted.rev }).await?;
    op_error(&r, 400, ErrorCode::BadRequest);
    let other = put_file(&alice, "other.bin", b"other", None).await?;
    let r = commit_one(&alice, CommitOp::Restore { path: rp("r.bin"), rev: other.rev }).await?;
    op_error(&r, 404, ErrorCode::NotFound);
    assert_eq!(download_ok(&alice, "r.bin").await?, v2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_block_list_edit_and_size_mismatch() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "dev1").await?;
    let parts: Vec<Vec<u8>> = (0..4).map(|i| pseudo_random(40_000 + i * 1000, 100 + i as u64)).collect();
    let mut ids = Vec::new();
    for p in &parts {
        ids.push(alice.upload_block(p).await?);
    }
    let (a, b, c, d) = (&parts[0], &parts[1], &parts[2], &parts[3]);
    let full = [a.as_slice(), b, c].concat();
    let r = commit_one(&alice, put_op("big.bin", None, full.len(), ids[..3].to_vec())).await?;
    let e1 = ok_entry(&r).clone();
    assert_eq!(download_ok(&alice, "big.bin").await?, full);

    // Replace the middle block: copy A, add D, copy C.
    let edited = [a.as_slice(), d, c].concat();
    let op = CommitOp::Put {
        path: rp("big.bin"),
        parent_rev: Some(e1.rev),
        size: edited.len() as u64,
        mtime: MTIME,
        executable: true,
        blocks: BlockList::Edit(vec![
            BlockEdit::Copy { start: 0, count: 1 },
            BlockEdit::Add(vec![ids[3]]),
            BlockEdit::Copy { start: 2, count: 1 },
        ]),
    };
    let r = commit_one(&alice, op).await?;
    let e2 = ok_entry(&r).clone();
    assert_eq!(e2.size, edited.len() as u64);
    assert!(e2.executable);
    assert_eq!(e2.hash, block::content_hash(edited.len() as u64, [&ids[0], &ids[3], &ids[2]]));
    assert_eq!(download_ok(&alice, "big.bin").await?, edited);
    let last = changes(&alice, 0, 1000).await?.changes.pop().context("journal")?;
    let refs = last.blocks.context("blocks in the change")?;
    assert_eq!(
        refs.iter().map(|r| (r.id, r.size as usize)).collect::<Vec<_>>(),
        vec![(ids[0], a.len()), (ids[3], d.len()), (ids[2], c.len())]
    );
    // Ranges across the edited blocks come out right too.
    let start = a.len() - 10;
    let end = a.len() + d.len() + 10;
    let resp = alice.get("/files/download?path=big.bin").header(RANGE, format!("bytes={start}-{end}")).send().await?;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.bytes().await?.to_vec(), edited[start..=end]);

    // Copying past the parent's end is refused; so is an edit without a parent.
    let bad = CommitOp::Put {
        path: rp("big.bin"),
        parent_rev: Some(e2.rev),
        size: 0,
        mtime: MTIME,
        executable: false,
        blocks: BlockList::Edit(vec![BlockEdit::Copy { start: 2, count: 5 }]),
    };
    op_error(&commit_one(&alice, bad).await?, 400, ErrorCode::BadRequest);
    let orphan = CommitOp::Put {
        path: rp("new.bin"),
        parent_rev: None,
        size: a.len() as u64,
        mtime: MTIME,
        executable: false,
        blocks: BlockList::Edit(vec![BlockEdit::Add(vec![ids[0]])]),
    };
    op_error(&commit_one(&alice, orphan).await?, 400, ErrorCode::BadRequest);

    // Size that does not match the blocks.
    let r = commit_one(&alice, put_op("wrong-size.bin", None, a.len() + 1, vec![ids[0]])).await?;
    op_error(&r, 400, ErrorCode::BadRequest);
    let r = commit_one(&alice, put_op("big.bin", Some(e2.rev), 1, vec![ids[0]])).await?;
    op_error(&r, 400, ErrorCode::BadRequest);
    expect_error(download(&alice, "wrong-size.bin").await?, 404, "not_found").await?;
    assert_eq!(download_ok(&alice, "big.bin").await?, edited);
    Ok(())
}

// ---------------------------------------------------------------------------
// 6. Path rejection

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_paths_are_rejected() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "dev1").await?;
    let id = alice.upload_block(b"payload").await?;
    let long = "x".repeat(300);
    let bad_paths = ["../x", "a//b", "a/./b", "a\u{0}b", "a\u{1b}b", long.as_str(), "a/../../etc/passwd", "dir/"];
    for p in bad_paths {
        let ops = [
            json!({"op": "put", "path": p, "parent_rev": null, "size": 7, "mtime": MTIME, "blocks": {"full": [id]}}),
            json!({"op": "mkdir", "path": p}),
            json!({"op": "delete", "path": p, "parent_rev": null}),
            json!({"op": "move", "from": "ok.txt", "to": p, "parent_rev": null}),
        ];
        for op in ops {
            let resp = alice.post("/commit").json(&json!({ "ops": [op] })).send().await?;
            let e = expect_error(resp, 400, "bad_request").await?;
            assert!(e.message.contains("path"), "the message says what is wrong: {}", e.message);
        }
    }
    // Nothing was created.
    let all = changes(&alice, 0, 1000).await?;
    assert!(all.changes.is_empty() && all.cursor == 0, "{all:?}");

    // The file API answers invalid_path.
    let evil = "../etc/passwd";
    expect_error(download(&alice, evil).await?, 400, "invalid_path").await?;
    expect_error(simple_upload(&alice, evil, b"root::0:0").await?, 400, "invalid_path").await?;
    expect_error(simple_upload(&alice, "a//b", b"x").await?, 400, "invalid_path").await?;
    expect_error(revisions_get(&alice, evil).await?, 400, "invalid_path").await?;
    expect_error(revisions_get(&alice, "/").await?, 400, "invalid_path").await?;
    expect_error(revisions_post(&alice, evil).await?, 400, "bad_request").await?;
    // Malformed JSON and a wrong method get the JSON error shape too.
    let resp = alice.post("/commit").header("content-type", "application/json").body("{not json").send().await?;
    expect_error(resp, 400, "bad_request").await?;
    let resp = alice.post("/commit").json(&json!({"ops": [{"op": "teleport", "path": "a"}]})).send().await?;
    expect_error(resp, 400, "bad_request").await?;
    let resp = alice.post("/files/upload?uploadType=resumable").json(&json!({"path": evil, "size": 3})).send().await?;
    expect_error(resp, 400, "bad_request").await?;
    let resp = alice.post("/files/upload?uploadType=resumable").json(&json!({"path": "", "size": 3})).send().await?;
    expect_error(resp, 400, "invalid_path").await?;
    let all = changes(&alice, 0, 1000).await?;
    assert!(all.changes.is_empty() && all.cursor == 0, "{all:?}");
    // A valid path still works (the rejections are about the paths).
    put_file(&alice, "ok.txt", b"payload", None).await?;
    assert_eq!(cursor_of(&alice).await?, 1);
    // The namespace is platform-neutral: names Windows cannot store are
    // ordinary names (a client whose disk cannot hold one keeps it off).
    let foreign =
        ["What?.txt", "Meeting: notes.md", "say \"hi\".txt", "CON", "aux.txt", "dot.", "space ", "a\\b", "<|*>"];
    for name in foreign {
        put_file(&alice, name, b"payload", None).await?;
        assert_eq!(download_ok(&alice, name).await?, b"payload", "{name}");
    }
    let all = changes(&alice, 1, 1000).await?;
    let names: Vec<&str> = all.changes.iter().map(|c| c.entry.path.as_str()).collect();
    assert_eq!(names, foreign);
    Ok(())
}

// ---------------------------------------------------------------------------
// 7. Changes and long polling

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_paged_with_a_monotonic_cursor() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "dev1").await?;
    let empty = changes(&alice, 0, 2).await?;
    assert_eq!((empty.changes.len(), empty.cursor, empty.has_more), (0, 0, false));
    let mut entries = Vec::new();
    for i in 0..5 {
        entries.push(put_file(&alice, &format!("p{i}.txt"), format!("content {i}").as_bytes(), None).await?);
    }
    let mut cursor = 0;
    let mut pages = Vec::new();
    let mut seen = Vec::new();
    loop {
        let page = changes(&alice, cursor, 2).await?;
        assert!(page.changes.len() <= 2);
        assert!(page.cursor > cursor || (page.changes.is_empty() && page.cursor == cursor), "cursor went back");
        if let Some(last) = page.changes.last() {
            assert_eq!(page.cursor, last.seq);
        }
        for c in &page.changes {
            assert!(c.seq > cursor, "change {} at or before cursor {cursor}", c.seq);
        }
        seen.extend(page.changes.iter().cloned());
        pages.push((page.changes.len(), page.has_more));
        cursor = page.cursor;
        if !page.has_more {
            break;
        }
        assert!(pages.len() < 10, "paging does not end");
    }
    assert_eq!(pages, vec![(2, true), (2, true), (1, false)]);
    assert_eq!(seen.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    for (c, e) in seen.iter().zip(&entries) {
        assert_eq!(c.op, ChangeOp::Add);
        assert_eq!(&c.entry, e);
        assert_eq!(c.blocks.as_ref().map(Vec::len), Some(1));
    }
    assert_eq!(cursor, 5);
    let after = changes(&alice, cursor, 2).await?;
    assert_eq!((after.changes.len(), after.cursor, after.has_more), (0, 5, false));
    // Pages from the middle.
    let mid = changes(&alice, 3, 1000).await?;
    assert_eq!(mid.changes.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![4, 5]);
    assert!(!mid.has_more);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_times_out_wakes_up_and_answers_old_cursors() -> TestResult {
    let server = Server::start()?;
    let dev_a = Client::user(&server, "alice", "devA").await?;
    let dev_b = Client::user(&server, "alice", "devB").await?;
    let bob = Client::user(&server, "bob", "dev1").await?;
    put_file(&dev_b, "first.txt", b"first", None).await?;
    let cursor = cursor_of(&dev_a).await?;
    assert_eq!(cursor, 1);

    // Nothing new: {"changes": false} once the 1 s timeout ends.
    let t0 = Instant::now();
    let p = tokio::time::timeout(DEADLINE, poll(&dev_a, cursor, 1)).await??;
    assert_eq!(p, PollResponse { changes: false, cursor, pending: 0 });
    assert!(t0.elapsed() >= Duration::from_millis(950), "answered before its timeout: {:?}", t0.elapsed());

    // An old cursor answers at once (well before its 30 s timeout).
    let p = tokio::time::timeout(DEADLINE, poll(&dev_a, 0, 30)).await.context("poll with an old cursor waited")??;
    assert_eq!(p, PollResponse { changes: true, cursor, pending: 0 });

    // Another user's commit does not wake alice.
    let a = dev_a.clone();
    let quiet = tokio::spawn(async move { poll(&a, cursor, 2).await });
    put_file(&bob, "bobs.txt", b"bob", None).await?;
    let p = tokio::time::timeout(DEADLINE, quiet).await???;
    assert_eq!(p, PollResponse { changes: false, cursor, pending: 0 });

    // A poll held by device A is woken by a commit from device B.
    let a = dev_a.clone();
    let mut held = tokio::spawn(async move { poll(&a, cursor, 30).await });
    // The poll must still be waiting (it has nothing to report yet).
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut held).await.is_err(),
        "the poll answered without a change"
    );
    let e = put_file(&dev_b, "second.txt", b"second", None).await?;
    let p = tokio::time::timeout(DEADLINE, held)
        .await
        .context("the poll was not woken by the commit (it would only end at its 30 s timeout)")???;
    assert_eq!(p, PollResponse { changes: true, cursor: cursor + 1, pending: 0 });
    let page = changes(&dev_a, cursor, 1000).await?;
    assert_eq!(page.changes.len(), 1);
    assert_eq!(page.changes[0].entry, e);

    // A bad cursor type is a client error, not a hang.
    let resp = dev_a.get("/changes/poll?cursor=abc&timeout=1").send().await?;
    assert!(resp.status().is_client_error());
    Ok(())
}

// ---------------------------------------------------------------------------
// 8. File API

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_api_simple_upload_download_and_ranges() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "dev1").await?;
    let data = pseudo_random(300_000, 21);
    let path = "docs/report.bin";
    let url = with_query("/files/upload", &[("uploadType", "media"), ("path", path), ("mtime", "1234")]);
    let created: Entry = expect_json(alice.post(&url).body(data.clone()).send().await?, 201).await?;
    assert_eq!(
        (created.path.as_str(), created.size, created.mtime, created.kind),
        (path, 300_000, 1234, EntryKind::File)
    );
    assert_eq!(created.device, "dev1");

    let resp = download(&alice, path).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let etag1 = header(&resp, ETAG).context("ETag")?;
    assert!(etag1.starts_with('"') && etag1.ends_with('"'), "{etag1}");
    assert_eq!(header(&resp, reqwest::header::ACCEPT_RANGES).as_deref(), Some("bytes"));
    assert_eq!(resp.content_length(), Some(data.len() as u64));
    assert_eq!(resp.bytes().await?.to_vec(), data);

    // Overwrite: 200, same file, new revision, new ETag.
    let data2 = pseudo_random(500_000, 22);
    let replaced: Entry = expect_json(simple_upload(&alice, path, &data2).await?, 200).await?;
    assert_eq!(replaced.id, created.id);
    assert!(replaced.rev > created.rev);
    assert_eq!(replaced.size, data2.len() as u64);
    let resp = download(&alice, path).await?;
    let etag2 = header(&resp, ETAG).context("ETag")?;
    assert_ne!(etag1, etag2);
    assert_eq!(resp.bytes().await?.to_vec(), data2);
    // The upload and a commit-based client agree: same blocks in the journal.
    let last = changes(&alice, 0, 1000).await?.changes.pop().context("journal")?;
    assert_eq!(last.blocks.context("blocks")?.iter().map(|b| u64::from(b.size)).sum::<u64>(), data2.len() as u64);

    let n = data2.len();
    let range = |spec: String| alice.get(&with_query("/files/download", &[("path", path)])).header(RANGE, spec).send();
    // A single range.
    let resp = range("bytes=100-199".into()).await?;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&resp, CONTENT_RANGE).as_deref(), Some(format!("bytes 100-199/{n}").as_str()));
    assert_eq!(resp.bytes().await?.to_vec(), data2[100..200]);
    // A long range (across server-made blocks).
    let resp = range("bytes=1000-450000".into()).await?;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.bytes().await?.to_vec(), data2[1000..=450_000]);
    // Suffix and open-ended ranges.
    let resp = range("bytes=-500".into()).await?;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&resp, CONTENT_RANGE), Some(format!("bytes {}-{}/{n}", n - 500, n - 1)));
    assert_eq!(resp.bytes().await?.to_vec(), data2[n - 500..]);
    let resp = range(format!("bytes={}-", n - 10)).await?;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.bytes().await?.to_vec(), data2[n - 10..]);
    // Out of range: 416 with the size.
    let resp = range(format!("bytes={n}-")).await?;
    assert_eq!(header(&resp, CONTENT_RANGE), Some(format!("bytes */{n}")));
    expect_error(resp, 416, "range_not_satisfiable").await?;
    let resp = range(format!("bytes={}-{}", n + 10, n + 20)).await?;
    expect_error(resp, 416, "range_not_satisfiable").await?;
    // An old revision by number still downloads.
    let old = with_query("/files/download", &[("path", path), ("rev", &created.rev.to_string())]);
    let resp = alice.get(&old).send().await?;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await?.to_vec(), data);

    // Empty file.
    let empty: Entry = expect_json(simple_upload(&alice, "empty.txt", b"").await?, 201).await?;
    assert_eq!(empty.size, 0);
    assert!(download_ok(&alice, "empty.txt").await?.is_empty());
    // Mistakes.
    expect_error(alice.post("/files/upload?uploadType=media").body("x").send().await?, 400, "bad_request").await?;
    expect_error(alice.post("/files/upload?uploadType=bogus&path=a").body("x").send().await?, 400, "bad_request")
        .await?;
    let stream = futures_util::stream::iter([Ok::<_, std::io::Error>(b"chunked".to_vec())]);
    let resp = alice
        .post(&with_query("/files/upload", &[("uploadType", "media"), ("path", "chunked.txt")]))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await?;
    expect_error(resp, 411, "length_required").await?;
    // Writing with a stale parent_rev through the file API is a conflict.
    let url = with_query(
        "/files/upload",
        &[("uploadType", "media"), ("path", path), ("parent_rev", &created.rev.to_string())],
    );
    let e = expect_error(alice.post(&url).body("stale").send().await?, 409, "conflict").await?;
    assert_eq!(e.head.context("head")?.rev, replaced.rev);
    assert_eq!(download_ok(&alice, path).await?, data2);
    Ok(())
}

/// RFC 9110 §13 on downloads, and `If-Match` on the file API's writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_api_conditional_requests() -> TestResult {
    use reqwest::header::{IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, LAST_MODIFIED};
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "dev1").await?;
    let path = "cond/file.bin";
    let v1 = pseudo_random(100_000, 41);
    expect_json::<Entry>(simple_upload(&alice, path, &v1).await?, 201).await?;
    let resp = download(&alice, path).await?;
    let tag1 = header(&resp, ETAG).context("ETag")?;
    let modified = header(&resp, LAST_MODIFIED).context("Last-Modified")?;
    let get = |h: Vec<(reqwest::header::HeaderName, String)>| {
        let mut req = alice.get(&with_query("/files/download", &[("path", path)]));
        for (k, v) in h {
            req = req.header(k, v);
        }
        req.send()
    };

    // If-None-Match: exact, weak, a list, `*`: 304 with the validators, no body.
    for inm in [tag1.clone(), format!("W/{tag1}"), format!("\"nope\", {tag1}"), "*".to_owned()] {
        let resp = get(vec![(IF_NONE_MATCH, inm.clone())]).await?;
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED, "If-None-Match: {inm}");
        assert_eq!(header(&resp, ETAG).as_deref(), Some(tag1.as_str()));
        assert!(resp.bytes().await?.is_empty());
    }
    assert_eq!(get(vec![(IF_NONE_MATCH, "\"other\"".into())]).await?.status(), StatusCode::OK);
    // If-Modified-Since: not modified since its own Last-Modified; an older date sends it.
    assert_eq!(get(vec![(IF_MODIFIED_SINCE, modified.clone())]).await?.status(), StatusCode::NOT_MODIFIED);
    let old = "Sat, 01 Jan 2000 00:00:00 GMT".to_owned();
    assert_eq!(get(vec![(IF_MODIFIED_SINCE, old.clone())]).await?.status(), StatusCode::OK);
    // If-None-Match wins over If-Modified-Since.
    let resp = get(vec![(IF_NONE_MATCH, "\"other\"".into()), (IF_MODIFIED_SINCE, modified.clone())]).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    // If-Match (strong) and If-Unmodified-Since.
    assert_eq!(get(vec![(IF_MATCH, tag1.clone())]).await?.status(), StatusCode::OK);
    assert_eq!(get(vec![(IF_MATCH, "*".into())]).await?.status(), StatusCode::OK);
    expect_error(get(vec![(IF_MATCH, "\"stale\"".into())]).await?, 412, "precondition_failed").await?;
    expect_error(get(vec![(IF_MATCH, format!("W/{tag1}"))]).await?, 412, "precondition_failed").await?;
    expect_error(get(vec![(IF_UNMODIFIED_SINCE, old.clone())]).await?, 412, "precondition_failed").await?;
    assert_eq!(get(vec![(IF_UNMODIFIED_SINCE, modified.clone())]).await?.status(), StatusCode::OK);
    expect_error(get(vec![(IF_MATCH, "not a tag".into())]).await?, 412, "precondition_failed").await?;

    // If-Range: the range only while the tag still matches, else the whole file.
    let resp = get(vec![(RANGE, "bytes=0-9".into()), (IF_RANGE, tag1.clone())]).await?;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.bytes().await?.to_vec(), v1[..10]);
    for stale in ["\"stale\"".to_owned(), format!("W/{tag1}"), old.clone()] {
        let resp = get(vec![(RANGE, "bytes=0-9".into()), (IF_RANGE, stale.clone())]).await?;
        assert_eq!(resp.status(), StatusCode::OK, "If-Range: {stale}");
        assert_eq!(resp.bytes().await?.to_vec(), v1, "If-Range: {stale}");
    }
    // A date is too coarse to tell two revisions of one second apart: the whole file.
    let resp = get(vec![(RANGE, "bytes=0-9".into()), (IF_RANGE, modified.clone())]).await?;
    assert_eq!(resp.status(), StatusCode::OK);

    // The file changes: the old tag no longer matches anywhere.
    let v2 = pseudo_random(50_000, 42);
    expect_json::<Entry>(simple_upload(&alice, path, &v2).await?, 200).await?;
    let resp = get(vec![(RANGE, "bytes=0-9".into()), (IF_RANGE, tag1.clone())]).await?;
    assert_eq!(resp.status(), StatusCode::OK, "a resumed download must not mix two revisions");
    let tag2 = header(&resp, ETAG).context("ETag")?;
    assert_eq!(resp.bytes().await?.to_vec(), v2);
    assert_eq!(get(vec![(IF_NONE_MATCH, tag1.clone())]).await?.status(), StatusCode::OK);
    expect_error(get(vec![(IF_MATCH, tag1.clone())]).await?, 412, "precondition_failed").await?;

    // Writes: If-Match guards a media upload and a resumable session.
    let media = with_query("/files/upload", &[("uploadType", "media"), ("path", path)]);
    let resp = alice.post(&media).header(IF_MATCH, tag1.clone()).body(b"lost update".to_vec()).send().await?;
    expect_error(resp, 412, "precondition_failed").await?;
    assert_eq!(download_ok(&alice, path).await?, v2);
    let resp = alice.post(&media).header(IF_MATCH, tag2.clone()).body(b"v3".to_vec()).send().await?;
    let v3: Entry = expect_json(resp, 200).await?;
    assert_eq!(download_ok(&alice, path).await?, b"v3");
    let resp = alice
        .post("/files/upload?uploadType=resumable")
        .header(IF_MATCH, tag2.clone())
        .json(&json!({"path": path, "size": 2}))
        .send()
        .await?;
    expect_error(resp, 412, "precondition_failed").await?;
    let new_file = with_query("/files/upload", &[("uploadType", "media"), ("path", "cond/new.bin")]);
    let resp = alice.post(&new_file).header(IF_MATCH, "*").body(b"x".to_vec()).send().await?;
    expect_error(resp, 412, "precondition_failed").await?;
    // If-None-Match: * creates only.
    let resp = alice.post(&media).header(IF_NONE_MATCH, "*").body(b"clobber".to_vec()).send().await?;
    expect_error(resp, 412, "precondition_failed").await?;
    let resp = alice.post(&new_file).header(IF_NONE_MATCH, "*").body(b"fresh".to_vec()).send().await?;
    expect_json::<Entry>(resp, 201).await?;
    // A session started under If-Match commits only onto that revision.
    let tag3 = header(&download(&alice, path).await?, ETAG).context("ETag")?;
    let resp = alice
        .post("/files/upload?uploadType=resumable")
        .header(IF_MATCH, tag3)
        .json(&json!({"path": path, "size": 2}))
        .send()
        .await?;
    let location = url_path(&header(&resp, LOCATION).context("Location")?).to_owned();
    expect_json::<Entry>(simple_upload(&alice, path, b"v4").await?, 200).await?;
    let resp = alice.put(&location).header(CONTENT_RANGE, "bytes 0-1/2").body(b"v5".to_vec()).send().await?;
    expect_error(resp, 409, "conflict").await?;
    assert_eq!(download_ok(&alice, path).await?, b"v4");
    assert!(v3.rev > 0);
    Ok(())
}

/// The activity feed: who did what, from which device, when; newest first, paged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_says_who_did_what() -> TestResult {
    use ferry_shared::api::{ActivityPage, ChangeOp};
    let server = Server::start()?;
    let laptop = Client::user(&server, "alice", "laptop").await?;
    let phone = Client::user(&server, "alice", "phone").await?;
    let bob = Client::user(&server, "bob", "desk").await?;
    let a = put_file(&laptop, "notes/a.txt", b"one", None).await?;
    put_file(&phone, "notes/a.txt", b"two", Some(a.rev)).await?;
    let moved = CommitOp::Move { from: rp("notes/a.txt"), to: rp("notes/b.txt"), parent_rev: None };
    ok_entry(&commit_one(&laptop, moved).await?);
    ok_entry(&commit_one(&phone, CommitOp::Delete { path: rp("notes/b.txt"), parent_rev: None }).await?);

    let page: ActivityPage = expect_json(laptop.get("/activity").send().await?, 200).await?;
    let seen: Vec<(ChangeOp, &str, &str)> =
        page.events.iter().map(|e| (e.op, e.path.as_str(), e.device.as_str())).collect();
    assert_eq!(
        seen,
        [
            (ChangeOp::Delete, "notes/b.txt", "phone"),
            (ChangeOp::Move, "notes/b.txt", "laptop"),
            (ChangeOp::Modify, "notes/a.txt", "phone"),
            (ChangeOp::Add, "notes/a.txt", "laptop"),
            (ChangeOp::Mkdir, "notes", "laptop"),
        ]
    );
    assert!(page.events.iter().all(|e| e.user == "alice" && e.time > 1_700_000_000_000));
    assert_eq!(page.events[1].from.as_ref().map(|f| f.as_str()), Some("notes/a.txt"));
    assert_eq!(page.before, None);
    // Paged: two at a time, each page older than the last.
    let p1: ActivityPage = expect_json(laptop.get("/activity?limit=2").send().await?, 200).await?;
    let before = p1.before.context("a next page")?;
    let p2: ActivityPage =
        expect_json(laptop.get(&format!("/activity?limit=2&before={before}")).send().await?, 200).await?;
    assert_eq!(p2.events[0].seq, page.events[2].seq);
    // Bob sees none of it.
    let bobs: ActivityPage = expect_json(bob.get("/activity").send().await?, 200).await?;
    assert!(bobs.events.is_empty());
    expect_error(laptop.get("/activity?limit=0").send().await?, 400, "bad_request").await?;
    Ok(())
}

/// A cursor past the end of the journal (a server restored from an older
/// backup) is refused with a code the daemon acts on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_past_the_journal_is_refused() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "dev1").await?;
    put_file(&alice, "a.txt", b"a", None).await?;
    let head = cursor_of(&alice).await?;
    for url in [format!("/changes?cursor={}", head + 1), format!("/changes/poll?cursor={}&timeout=1", head + 5)] {
        let e = expect_error(alice.get(&url).send().await?, 409, "cursor_reset").await?;
        assert!(e.message.contains("list from cursor 0"), "{}", e.message);
    }
    expect_error(alice.get("/changes?cursor=-1").send().await?, 400, "bad_request").await?;
    assert_eq!(changes(&alice, head, 10).await?.cursor, head);
    Ok(())
}

/// A large resumable upload is ingested while its chunks arrive; a chunk
/// cut off mid-way, a resent overlap and a restart in between still give
/// exactly the bytes sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_api_large_resumable_upload_ingested_while_it_arrives() -> TestResult {
    let mut server = Server::start()?;
    let mut alice = no_redirects(&Client::user(&server, "alice", "dev1").await?)?;
    let data = pseudo_random(40 * 1024 * 1024 + 777, 47);
    let total = data.len();
    let resp = alice
        .post("/files/upload?uploadType=resumable")
        .json(&json!({"path": "large.bin", "size": total}))
        .send()
        .await?;
    let start: ResumableStartResponse = expect_json(resp, 200).await?;
    let location = url_path(&start.upload_url).to_owned();
    let put = |c: &Client, from: usize, to: usize| {
        c.put(&location).header(CONTENT_RANGE, format!("bytes {from}-{}/{total}", to - 1)).body(data[from..to].to_vec())
    };
    let mb = 1024 * 1024;
    assert_eq!(put(&alice, 0, 12 * mb).send().await?.status(), StatusCode::PERMANENT_REDIRECT);
    // A chunk whose connection drops after 3 MiB: what arrived is kept.
    let cut = futures_util::stream::iter(vec![
        Ok::<_, std::io::Error>(data[12 * mb..15 * mb].to_vec()),
        Err(std::io::Error::other("the connection dropped")),
    ]);
    let _ = alice
        .put(&location)
        .header(CONTENT_RANGE, format!("bytes {}-{}/{total}", 12 * mb, 20 * mb - 1))
        .body(reqwest::Body::wrap_stream(cut))
        .send()
        .await;
    // (The server may still be finishing that request: 409 until it has.)
    let deadline = Instant::now() + Duration::from_secs(30);
    let resp = loop {
        let resp = alice.put(&location).header(CONTENT_RANGE, format!("bytes */{total}")).send().await?;
        if resp.status() != StatusCode::CONFLICT || Instant::now() > deadline {
            break resp;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let have = header(&resp, RANGE).context("Range")?;
    let have: usize = have.trim_start_matches("bytes=0-").parse::<usize>()? + 1;
    assert!((12 * mb..=15 * mb).contains(&have), "kept {have}");
    // Resent with an overlap, then a restart, then the rest.
    assert_eq!(put(&alice, have - 1000, 30 * mb).send().await?.status(), StatusCode::PERMANENT_REDIRECT);
    server.restart()?;
    alice.url = server.url.clone();
    assert_eq!(put(&alice, 30 * mb, 35 * mb).send().await?.status(), StatusCode::PERMANENT_REDIRECT);
    let entry: Entry = expect_json(put(&alice, 35 * mb, total).send().await?, 200).await?;
    assert_eq!(entry.size, total as u64);
    assert_eq!(download_ok(&alice, "large.bin").await?, data);
    // Without a restart too: every chunk followed from the first.
    let resp = alice
        .post("/files/upload?uploadType=resumable")
        .json(&json!({"path": "again.bin", "size": total}))
        .send()
        .await?;
    let start: ResumableStartResponse = expect_json(resp, 200).await?;
    let again = url_path(&start.upload_url).to_owned();
    let waits = |log: &str| log.matches("ingest caught up; waiting for bytes").count();
    let before = waits(&server.log());
    for (from, to) in [(0, 16 * mb), (16 * mb, 32 * mb), (32 * mb, total)] {
        if from == 16 * mb {
            // The ingest reads all there is, then waits for the next chunk.
            let deadline = Instant::now() + Duration::from_secs(30);
            while waits(&server.log()) == before {
                assert!(Instant::now() < deadline, "the ingest never caught up:\n{}", server.log());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let resp = alice
            .put(&again)
            .header(CONTENT_RANGE, format!("bytes {from}-{}/{total}", to - 1))
            .body(data[from..to].to_vec())
            .send()
            .await?;
        assert!(resp.status() == StatusCode::PERMANENT_REDIRECT || resp.status() == StatusCode::OK);
    }
    assert_eq!(download_ok(&alice, "again.bin").await?, data);
    let log = server.log();
    assert_eq!(log.matches("upload ingested while it arrived").count(), 2, "both, also after the restart:\n{log}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_api_resumable_upload_survives_restart() -> TestResult {
    let mut server = Server::start()?;
    let mut alice = no_redirects(&Client::user(&server, "alice", "dev1").await?)?;
    let data = pseudo_random(3 * 1024 * 1024 + 12_345, 31);
    let total = data.len();
    let half = total / 2;

    let resp = alice
        .post("/files/upload?uploadType=resumable")
        .json(&json!({"path": "big/upload.bin", "size": total, "mtime": 4321}))
        .send()
        .await?;
    let location = header(&resp, LOCATION).context("Location header")?;
    let start: ResumableStartResponse = expect_json(resp, 200).await?;
    assert_eq!(start.upload_url, location);
    // Absolute, as Google's clients need it (they use it as it is).
    assert!(location.starts_with(&format!("{}/files/upload?", server.url)), "{location}");
    let location = url_path(&location).to_owned();
    assert!(start.expires > 1_700_000_000_000);

    // Nothing yet: 308 without Range.
    let resp = alice.put(&location).header(CONTENT_RANGE, format!("bytes */{total}")).send().await?;
    assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(header(&resp, RANGE), None);

    // First half.
    let resp = alice
        .put(&location)
        .header(CONTENT_RANGE, format!("bytes 0-{}/{total}", half - 1))
        .body(data[..half].to_vec())
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
    let expected_range = format!("bytes=0-{}", half - 1);
    assert_eq!(header(&resp, RANGE).as_deref(), Some(expected_range.as_str()));
    let resp = alice.put(&location).header(CONTENT_RANGE, format!("bytes */{total}")).send().await?;
    assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(header(&resp, RANGE).as_deref(), Some(expected_range.as_str()));
    // A gap is refused with what the server has (a tiny body: the server
    // answers without reading it).
    let resp = alice
        .put(&location)
        .header(CONTENT_RANGE, format!("bytes {}-{}/{total}", half + 10, half + 19))
        .body(data[half + 10..half + 20].to_vec())
        .send()
        .await?;
    assert_eq!(header(&resp, RANGE).as_deref(), Some(expected_range.as_str()));
    expect_error(resp, 416, "range_not_satisfiable").await?;
    // A wrong total is refused.
    let resp = alice.put(&location).header(CONTENT_RANGE, format!("bytes */{}", total + 1)).send().await?;
    expect_error(resp, 400, "bad_request").await?;
    expect_error(download(&alice, "big/upload.bin").await?, 404, "not_found").await?;

    // The session survives a restart.
    server.restart()?;
    alice.url = server.url.clone();
    let resp = alice.put(&location).header(CONTENT_RANGE, format!("bytes */{total}")).send().await?;
    assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT, "{}", server.log());
    assert_eq!(header(&resp, RANGE).as_deref(), Some(expected_range.as_str()));

    // A resent overlap is skipped, not duplicated.
    let mid = half + 1024 * 1024;
    let resp = alice
        .put(&location)
        .header(CONTENT_RANGE, format!("bytes {}-{}/{total}", half - 4096, mid - 1))
        .body(data[half - 4096..mid].to_vec())
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(header(&resp, RANGE), Some(format!("bytes=0-{}", mid - 1)));

    // The rest completes the upload.
    let resp = alice
        .put(&location)
        .header(CONTENT_RANGE, format!("bytes {mid}-{}/{total}", total - 1))
        .body(data[mid..].to_vec())
        .send()
        .await?;
    // 200, as Google Cloud Storage answers the last chunk.
    let entry: Entry = expect_json(resp, 200).await?;
    assert_eq!((entry.path.as_str(), entry.size, entry.mtime), ("big/upload.bin", total as u64, 4321));
    assert_eq!(download_ok(&alice, "big/upload.bin").await?, data);
    // A client that lost that answer asks, and learns it is done (also
    // with the total unknown, as Google's `recover()` asks).
    for range in [format!("bytes */{total}"), "bytes */*".to_owned()] {
        let resp = alice.put(&location).header(CONTENT_RANGE, range).send().await?;
        assert_eq!(expect_json::<Entry>(resp, 200).await?, entry);
    }
    // Sending the last chunk again commits nothing new.
    let resp = alice
        .put(&location)
        .header(CONTENT_RANGE, format!("bytes {mid}-{}/{total}", total - 1))
        .body(data[mid..].to_vec())
        .send()
        .await?;
    assert_eq!(expect_json::<Entry>(resp, 200).await?.rev, entry.rev);
    // Unknown or malformed session ids.
    let resp = alice
        .put(&format!("/files/upload?uploadType=resumable&upload_id={}", "ab".repeat(16)))
        .header(CONTENT_RANGE, "bytes */10")
        .send()
        .await?;
    expect_error(resp, 404, "not_found").await?;
    let resp = alice
        .put("/files/upload?uploadType=resumable&upload_id=../../x")
        .header(CONTENT_RANGE, "bytes */10")
        .send()
        .await?;
    expect_error(resp, 404, "not_found").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_api_size_limit_and_quota() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "dev1").await?;
    let too_big = ferry_shared::MAX_FILE_SIZE + 1;

    // Resumable: more than 10 GiB is refused at the start.
    let resp = alice
        .post("/files/upload?uploadType=resumable")
        .json(&json!({"path": "huge.bin", "size": too_big}))
        .send()
        .await?;
    expect_error(resp, 413, "payload_too_large").await?;
    // Simple upload: refused from the Content-Length alone.
    let head = format!(
        "POST /files/upload?uploadType=media&path=huge.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Content-Length: {too_big}\r\nConnection: close\r\n\r\n",
        alice.token
    );
    let (status, _, body) = raw_http(&server, &head).await?;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    raw_error(&body, "payload_too_large")?;

    // A user with a 1 MiB quota.
    add_user(&server.data, "small", "password-small", Some("1MiB"))?;
    let small = Client::user(&server, "small", "dev1").await?;
    let first: Entry = expect_json(simple_upload(&small, "a.bin", &pseudo_random(300_000, 41)).await?, 201).await?;
    assert_eq!(first.size, 300_000);
    let head = format!(
        "POST /files/upload?uploadType=media&path=b.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        small.token,
        2 * 1024 * 1024
    );
    let (status, _, body) = raw_http(&server, &head).await?;
    assert_eq!(status, 507, "{}", String::from_utf8_lossy(&body));
    raw_error(&body, "quota_exceeded")?;
    // Over quota together with what is stored (300 000 + 800 000 > 1 MiB).
    let (status, _, body) = raw_http(&server, &head.replace("b.bin", "c.bin").replace("2097152", "800000")).await?;
    assert_eq!(status, 507, "{}", String::from_utf8_lossy(&body));
    raw_error(&body, "quota_exceeded")?;
    let resp = small
        .post("/files/upload?uploadType=resumable")
        .json(&json!({"path": "d.bin", "size": 800_000}))
        .send()
        .await?;
    expect_error(resp, 507, "quota_exceeded").await?;
    for p in ["b.bin", "c.bin", "d.bin"] {
        expect_error(download(&small, p).await?, 404, "not_found").await?;
    }
    // What fits still fits.
    let ok: Entry = expect_json(simple_upload(&small, "e.bin", &pseudo_random(700_000, 43)).await?, 201).await?;
    assert_eq!(ok.size, 700_000);
    Ok(())
}

/// Unfinished resumable uploads count against the quota (their bytes are
/// on the server's disk), and one user may have only so many open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_uploads_count_against_the_quota() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "dev1").await?;
    let six_gib = 6u64 << 30;
    let start = |path: &'static str| {
        alice.post("/files/upload?uploadType=resumable").json(&json!({"path": path, "size": six_gib})).send()
    };
    expect_json::<ResumableStartResponse>(start("one.bin").await?, 200).await?;
    let e = expect_error(start("two.bin").await?, 507, "quota_exceeded").await?;
    assert!(e.message.contains("quota"), "{}", e.message);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_revisions_newest_first() -> TestResult {
    let server = Server::start()?;
    let dev1 = Client::user(&server, "alice", "dev1").await?;
    let dev2 = Client::user(&server, "alice", "dev2").await?;
    let e1 = put_file(&dev1, "hist.txt", b"one", None).await?;
    let e2 = put_file(&dev2, "hist.txt", b"two two", Some(e1.rev)).await?;
    let e3: Entry = expect_json(simple_upload(&dev1, "hist.txt", b"three three three").await?, 200).await?;
    let expected: Vec<(i64, u64, &str, &str, i64)> =
        [&e3, &e2, &e1].iter().map(|e| (e.rev, e.size, e.hash.as_str(), e.device.as_str(), e.modified)).collect();
    assert_eq!(expected.iter().map(|e| e.3).collect::<Vec<_>>(), vec!["dev1", "dev2", "dev1"]);

    let check = |revs: &[Revision]| {
        let got: Vec<(i64, u64, &str, &str, i64)> =
            revs.iter().map(|r| (r.rev, r.size, r.hash.as_str(), r.device.as_str(), r.modified)).collect();
        assert_eq!(got, expected);
        assert!(revs.iter().all(|r| !r.deleted && r.modified > 0 && r.hash.len() == 64));
        assert!(revs.windows(2).all(|w| w[0].modified >= w[1].modified));
    };
    // GET and POST answer the same, with the documented fields.
    let raw: Value = expect_json(revisions_get(&dev1, "hist.txt").await?, 200).await?;
    for r in raw["revisions"].as_array().context("revisions array")? {
        for key in ["rev", "size", "hash", "modified", "mtime", "device", "deleted"] {
            assert!(r.get(key).is_some(), "revision without {key}: {r}");
        }
    }
    let get: ListRevisionsResponse = serde_json::from_value(raw)?;
    check(&get.revisions);
    let post: ListRevisionsResponse = expect_json(revisions_post(&dev2, "hist.txt").await?, 200).await?;
    assert_eq!(post, get);
    // limit
    let resp = dev1.get("/files/list_revisions?path=hist.txt&limit=2").send().await?;
    let two: ListRevisionsResponse = expect_json(resp, 200).await?;
    assert_eq!(two.revisions.iter().map(|r| r.rev).collect::<Vec<_>>(), vec![e3.rev, e2.rev]);
    let resp = dev1.post("/files/list_revisions").json(&json!({"path": "hist.txt", "limit": 1})).send().await?;
    let one: ListRevisionsResponse = expect_json(resp, 200).await?;
    assert_eq!(one.revisions.iter().map(|r| r.rev).collect::<Vec<_>>(), vec![e3.rev]);
    // After a delete the newest revision is the deletion, and history stays listed.
    let r = commit_one(&dev1, CommitOp::Delete { path: rp("hist.txt"), parent_rev: Some(e3.rev) }).await?;
    let del = ok_entry(&r).clone();
    let after: ListRevisionsResponse = expect_json(revisions_get(&dev1, "hist.txt").await?, 200).await?;
    assert_eq!(after.revisions.len(), 4);
    assert_eq!((after.revisions[0].rev, after.revisions[0].deleted), (del.rev, true));
    check(&after.revisions[1..]);
    expect_error(revisions_get(&dev1, "never-existed.txt").await?, 404, "not_found").await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// 9. Restart persistence

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_restart() -> TestResult {
    let mut server = Server::start()?;
    let mut alice = Client::user(&server, "alice", "dev1").await?;
    let mut bob = Client::user(&server, "bob", "dev1").await?;
    let small = b"a small file".to_vec();
    let big = pseudo_random(2 * 1024 * 1024 + 7, 51);
    let e1 = put_file(&alice, "keep/small.txt", &small, None).await?;
    put_file(&alice, "keep/small.txt", b"a small file, edited", Some(e1.rev)).await?;
    let _: Entry = expect_json(simple_upload(&alice, "keep/big.bin", &big).await?, 201).await?;
    ok_entry(
        &commit_one(&alice, CommitOp::Move { from: rp("keep/big.bin"), to: rp("moved/big.bin"), parent_rev: None })
            .await?,
    );
    put_file(&bob, "bob.txt", b"bob's", None).await?;
    let before = changes(&alice, 0, 5000).await?;
    let revs_before: ListRevisionsResponse = expect_json(revisions_get(&alice, "keep/small.txt").await?, 200).await?;
    let bob_before = changes(&bob, 0, 5000).await?;

    server.restart()?;
    alice.url = server.url.clone();
    bob.url = server.url.clone();

    // The old tokens still work and everything reads back the same.
    let after = changes(&alice, 0, 5000).await?;
    assert_eq!(after, before);
    assert_eq!(changes(&bob, 0, 5000).await?, bob_before);
    let revs_after: ListRevisionsResponse = expect_json(revisions_get(&alice, "keep/small.txt").await?, 200).await?;
    assert_eq!(revs_after, revs_before);
    assert_eq!(download_ok(&alice, "keep/small.txt").await?, b"a small file, edited");
    assert_eq!(download_ok(&alice, "moved/big.bin").await?, big);
    let url = with_query("/files/download", &[("path", "keep/small.txt"), ("rev", &e1.rev.to_string())]);
    let resp = alice.get(&url).send().await?;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await?.to_vec(), small);
    // The cursor is unchanged: a poll with it has nothing to report.
    let p = tokio::time::timeout(DEADLINE, poll(&alice, before.cursor, 1)).await??;
    assert_eq!(p, PollResponse { changes: false, cursor: before.cursor, pending: 0 });
    // The journal continues where it was.
    put_file(&alice, "after.txt", b"after the restart", None).await?;
    let tail = changes(&alice, before.cursor, 5000).await?;
    assert_eq!(tail.changes.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![before.cursor + 1]);
    // Logging in again works too.
    let again = Client::user(&server, "alice", "dev2").await?;
    assert_eq!(download_ok(&again, "after.txt").await?, b"after the restart");
    Ok(())
}

// ---------------------------------------------------------------------------
// 10. Quota through commits

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_over_quota_is_refused() -> TestResult {
    let server = Server::start()?;
    add_user(&server.data, "small", "password-small", Some("1MiB"))?;
    let small = Client::user(&server, "small", "dev1").await?;
    let (a, b, c) = (pseudo_random(150_000, 61), pseudo_random(950_000, 62), pseudo_random(880_000, 63));
    let ea = put_file(&small, "a.bin", &a, None).await?;
    // 150 000 + 950 000 > 1 MiB: the upload itself is refused, as uploaded
    // blocks count against the quota until they are committed.
    let err = small.put_small("b.bin", &b, None).await.expect_err("the upload is past the quota");
    assert!(err.to_string().contains("507") && err.to_string().contains("quota_exceeded"), "{err}");
    expect_error(download(&small, "b.bin").await?, 404, "not_found").await?;
    // Replacing counts only the difference once committed: 880 000 fits.
    let ec = put_file(&small, "a.bin", &c, Some(ea.rev)).await?;
    // Now even a small new file on top of 880 000 bytes is too much.
    let err =
        small.put_small("tiny-but-too-much.bin", &pseudo_random(200_000, 64), None).await.expect_err("past the quota");
    assert!(err.to_string().contains("507"), "{err}");
    // Restoring the smaller revision frees space; deleting frees it all.
    ok_entry(&commit_one(&small, CommitOp::Restore { path: rp("a.bin"), rev: ea.rev }).await?);
    let r = commit_one(&small, CommitOp::Delete { path: rp("a.bin"), parent_rev: None }).await?;
    ok_entry(&r);
    let eb = put_file(&small, "b.bin", &b, None).await?;
    assert_eq!(eb.size, b.len() as u64);
    assert_eq!(download_ok(&small, "b.bin").await?, b);
    // Restoring the 880 000-byte revision next to b.bin would exceed the quota:
    // its blocks are on the server, so this is the commit's own check.
    let r = commit_one(&small, CommitOp::Restore { path: rp("a.bin"), rev: ec.rev }).await?;
    op_error(&r, 507, ErrorCode::QuotaExceeded);
    // The same puts are fine for a user with the default quota.
    let alice = Client::user(&server, "alice", "dev1").await?;
    put_file(&alice, "a.bin", &a, None).await?;
    put_file(&alice, "b.bin", &b, None).await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// 11. OpenAPI

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_lists_the_api() -> TestResult {
    let server = Server::start()?;
    let resp = reqwest::get(format!("{}/openapi.json", server.url)).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let doc: Value = resp.json().await?;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with('3')), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().context("paths object")?;
    for p in ["/files/upload", "/commit", "/changes/poll", "/auth/login", "/blocks/{id}", "/files/download"] {
        assert!(paths.contains_key(p), "{p} missing from {:?}", paths.keys().collect::<Vec<_>>());
    }
    assert!(paths["/files/upload"].get("post").is_some() && paths["/files/upload"].get("put").is_some());
    // The documented parameters are the ones the server's own upload URLs use.
    let params: Vec<&str> = paths["/files/upload"]["put"]["parameters"]
        .as_array()
        .context("parameters")?
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(params.contains(&"uploadType") && params.contains(&"upload_id"), "{params:?}");
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    Ok(())
}

// ---------------------------------------------------------------------------
// Pending uploads (streaming sync)

/// An upload announced before its blocks are up: other devices see it in
/// the list and their long polls wake; a block still being uploaded can be
/// waited for; it never shows in the journal or at its path; the commit at
/// its path drops it; only its own device may drop it; a block list that
/// does not add up is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_uploads_are_announced_waited_for_and_dropped() -> TestResult {
    let server = Server::start()?;
    let dev_a = Client::user(&server, "alice", "devA").await?;
    let dev_b = Client::user(&server, "alice", "devB").await?;
    let bob = Client::user(&server, "bob", "dev1").await?;
    let data = pseudo_random(3000, 9);
    let b = block::encode(&data);
    let announce = json!({"path": "big.bin", "parent_rev": null, "size": 3000, "blocks": [{"id": b.id, "size": 3000}]});

    // B holds a poll that watches pending uploads too.
    let list: Value = expect_json(dev_b.get("/uploads/pending").send().await?, 200).await?;
    assert_eq!((list["pending"].as_array().map(Vec::len), list["seq"].as_i64()), (Some(0), Some(0)));
    let cursor = cursor_of(&dev_b).await?;
    let held = {
        let b = dev_b.clone();
        tokio::spawn(async move {
            let resp = b.get(&format!("/changes/poll?cursor={cursor}&pending=0&timeout=30")).send().await?;
            expect_json::<PollResponse>(resp, 200).await
        })
    };
    let a: Value = expect_json(dev_a.post("/uploads/pending").json(&announce).send().await?, 200).await?;
    let id = a["id"].as_i64().context("an id")?;
    let woke = tokio::time::timeout(DEADLINE, held).await.context("the announcement did not wake the poll")???;
    assert_eq!(woke, PollResponse { changes: false, cursor, pending: 1 });
    let list: Value = expect_json(dev_b.get("/uploads/pending").send().await?, 200).await?;
    let p = &list["pending"][0];
    assert_eq!((p["id"].as_i64(), p["path"].as_str(), p["device"].as_str()), (Some(id), Some("big.bin"), Some("devA")));
    assert_eq!(p["hash"].as_str(), Some(block::content_hash(3000, [&b.id]).as_str()));
    // Another user sees nothing; the journal has nothing; nothing is at the path.
    let theirs: Value = expect_json(bob.get("/uploads/pending").send().await?, 200).await?;
    assert_eq!(theirs["pending"].as_array().map(Vec::len), Some(0));
    assert_eq!(cursor_of(&dev_b).await?, cursor);
    expect_error(download(&dev_b, "big.bin").await?, 404, "not_found").await?;

    // B waits for the block; it arrives when A uploads it.
    let waiting = {
        let (client, bid) = (dev_b.clone(), b.id);
        tokio::spawn(async move { client.get(&format!("/blocks/{bid}?wait=30")).send().await })
    };
    // The server says the fetch is waiting (it looked, found nothing); only
    // then is the block uploaded, so the answer below is a wake-up.
    let since = std::time::Instant::now();
    while !server.log().contains("a fetch waits for a block") {
        assert!(since.elapsed() < DEADLINE, "the fetch never waited:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!waiting.is_finished(), "the wait answered before the block was there");
    dev_a.upload_block(&data).await?;
    let resp = tokio::time::timeout(DEADLINE, waiting).await.context("the waiting fetch was not woken")???;
    assert_eq!(resp.status(), StatusCode::OK);
    let enc = resp.headers().get(ENCODING_HEADER).and_then(|v| v.to_str().ok()).and_then(BlockEncoding::parse);
    assert_eq!(block::decode(&b.id, enc.context("an encoding")?, &resp.bytes().await?)?, data);
    // Without a wait, a block the account lacks is 404 at once.
    let other = BlockId::of(b"not uploaded");
    expect_error(dev_b.get(&format!("/blocks/{other}?wait=0")).send().await?, 404, "not_found").await?;

    // Only its own device drops it; the commit at its path drops it too.
    expect_error(dev_b.delete(&format!("/uploads/pending/{id}")).send().await?, 404, "not_found").await?;
    let r = dev_a.commit(vec![put_op("big.bin", None, 3000, vec![b.id])]).await?;
    ok_entry(&r.results[0]);
    let list: Value = expect_json(dev_b.get("/uploads/pending").send().await?, 200).await?;
    assert_eq!(list["pending"].as_array().map(Vec::len), Some(0));
    assert_eq!(list["seq"].as_i64(), Some(2));
    // Announce again, then drop all of A's.
    expect_json::<Value>(dev_a.post("/uploads/pending").json(&announce).send().await?, 200).await?;
    let resp = dev_a.delete("/uploads/pending").send().await?;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let list: Value = expect_json(dev_b.get("/uploads/pending").send().await?, 200).await?;
    assert_eq!((list["pending"].as_array().map(Vec::len), list["seq"].as_i64()), (Some(0), Some(4)));

    // Refused: sizes that do not add up, the root, no token.
    let bad = json!({"path": "x", "size": 10, "blocks": [{"id": b.id, "size": 3000}]});
    expect_error(dev_a.post("/uploads/pending").json(&bad).send().await?, 400, "bad_request").await?;
    let root = json!({"path": "", "size": 3000, "blocks": [{"id": b.id, "size": 3000}]});
    expect_error(dev_a.post("/uploads/pending").json(&root).send().await?, 400, "bad_request").await?;
    let anon = reqwest::Client::new().get(format!("{}/uploads/pending", server.url)).send().await?;
    expect_error(anon, 401, "unauthorized").await?;
    Ok(())
}
