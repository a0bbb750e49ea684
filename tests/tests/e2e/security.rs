//! The security suite beyond the per-endpoint auth matrix of
//! `server_api/auth.rs`: revoked tokens on every endpoint, another user's
//! blocks through the batch endpoints, login throttling, bodies refused
//! before they are read, and secrets that never reach a log. (A hostile
//! server is `hostile.rs`.)

use std::time::Duration;

use anyhow::Context;
use ferry_shared::BlockId;
use ferry_tests::{Client, Daemon, Server, wait_until};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type TestResult = anyhow::Result<()>;

/// Every endpoint that needs a token: method, path, JSON body.
fn endpoints(block: BlockId) -> Vec<(reqwest::Method, String, Option<Value>)> {
    use reqwest::Method;
    vec![
        (Method::POST, "/blocks/missing".into(), Some(json!({"ids": [block]}))),
        (Method::PUT, format!("/blocks/{block}"), None),
        (Method::GET, format!("/blocks/{block}"), None),
        (Method::POST, "/blocks/batch".into(), None),
        (Method::POST, "/blocks/fetch".into(), Some(json!({"ids": [block]}))),
        (Method::POST, "/commit".into(), Some(json!({"ops": [{"op": "mkdir", "path": "d"}]}))),
        (Method::GET, "/changes?cursor=0".into(), None),
        (Method::GET, "/changes/poll?cursor=0&timeout=1".into(), None),
        (Method::GET, format!("/blocks/{block}?wait=1"), None),
        (
            Method::POST,
            "/uploads/pending".into(),
            Some(json!({"path": "big.bin", "size": 13, "blocks": [{"id": block, "size": 13}]})),
        ),
        (Method::GET, "/uploads/pending".into(), None),
        (Method::DELETE, "/uploads/pending".into(), None),
        (Method::DELETE, "/uploads/pending/1".into(), None),
        (Method::POST, "/files/upload?uploadType=media&path=x.txt".into(), None),
        (Method::POST, "/files/upload?uploadType=resumable".into(), Some(json!({"path": "x.txt", "size": 5}))),
        (Method::PUT, format!("/files/upload?uploadType=resumable&upload_id={}", "0".repeat(32)), None),
        (Method::GET, "/files/download?path=x.txt".into(), None),
        (Method::GET, "/files/list_revisions?path=x.txt".into(), None),
        (Method::POST, "/files/list_revisions".into(), Some(json!({"path": "x.txt"}))),
        (Method::POST, "/links".into(), Some(json!({"path": "x.txt"}))),
        (Method::GET, "/links".into(), None),
        (Method::GET, "/activity".into(), None),
        (Method::DELETE, "/links/1".into(), None),
        (Method::POST, "/auth/logout".into(), None),
    ]
}

async fn error_code(resp: reqwest::Response) -> anyhow::Result<(u16, String)> {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.context("a JSON error body")?;
    Ok((status, body["error"]["code"].as_str().unwrap_or_default().to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_opens_nothing() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "laptop").await?;
    let gone = Client::user(&server, "alice", "old-phone").await?;
    let block = alice.upload_block(b"alice's block").await?;
    alice.put_small("x.txt", b"hello", None).await?;
    let resp = gone.post("/auth/logout").send().await?;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    for (method, path, body) in endpoints(block) {
        let mut req = gone.http.request(method.clone(), format!("{}{path}", server.url)).bearer_auth(&gone.token);
        req = match body {
            Some(b) => req.json(&b),
            None => req.body("hello"),
        };
        let (status, code) = error_code(req.send().await?).await.with_context(|| format!("{method} {path}"))?;
        assert_eq!((status, code.as_str()), (401, "unauthorized"), "{method} {path}");
    }
    // The other device's token still works.
    let resp = alice.get("/files/download?path=x.txt").send().await?;
    assert_eq!(resp.bytes().await?.as_ref(), b"hello");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_endpoints_do_not_reveal_another_users_blocks() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "laptop").await?;
    let bob = Client::user(&server, "bob", "laptop").await?;
    let secret = alice.upload_block(b"alice's secret block, not for bob").await?;
    let nobodys = BlockId::of(b"a block nobody stored");
    // A batch fetch of alice's block fails for bob exactly like one of a
    // block that exists nowhere, and carries no bytes.
    let mut answers = Vec::new();
    for id in [secret, nobodys] {
        let resp = bob.post("/blocks/fetch").json(&json!({"ids": [id]})).send().await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        answers.push((status, body["error"].clone()));
    }
    assert_eq!(answers[0].0, StatusCode::NOT_FOUND);
    assert_eq!(answers[0], answers[1], "the answers tell a stored block from a missing one");
    // Mixed with one of his own: still nothing.
    let own = bob.upload_block(b"bob's block").await?;
    let resp = bob.post("/blocks/fetch").json(&json!({"ids": [own, secret]})).send().await?;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // "missing" answers from bob's own blocks only.
    let resp = bob.post("/blocks/missing").json(&json!({"ids": [secret, nobodys, own]})).send().await?;
    let body: Value = resp.json().await?;
    assert_eq!(body["missing"], json!([secret, nobodys]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_throttled() -> TestResult {
    let server = Server::start()?;
    let http = reqwest::Client::new();
    let url = server.url.clone();
    let login = move |user: &'static str, password: &'static str| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            http.post(format!("{url}/auth/login"))
                .json(&json!({"username": user, "password": password, "device_name": "d"}))
                .send()
                .await
        }
    };
    for _ in 0..5 {
        let (status, code) = error_code(login("alice", "wrong").await?).await?;
        assert_eq!((status, code.as_str()), (401, "unauthorized"));
    }
    // Now every attempt for alice waits, even with the right password.
    let resp = login("alice", "password-alice").await?;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"].to_str()?.parse()?;
    assert!((1..=900).contains(&retry), "Retry-After {retry}");
    assert_eq!(error_code(resp).await?.1, "too_many_requests");
    // A name that does not exist is throttled the same way.
    for _ in 0..5 {
        assert_eq!(login("nobody", "x").await?.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(login("nobody", "x").await?.status(), StatusCode::TOO_MANY_REQUESTS);
    // Bob is not affected.
    assert_eq!(login("bob", "password-bob").await?.status(), StatusCode::OK);
    // After the wait, the right password works for alice again.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while login("alice", "password-alice").await?.status() != StatusCode::OK {
        assert!(std::time::Instant::now() < deadline, "alice still cannot log in");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Sends request headers announcing a body far over the endpoint's limit,
/// but no body: the answer must come anyway (the body is never read).
async fn announce(server: &Server, token: &str, method: &str, path: &str, len: u64) -> anyhow::Result<u16> {
    let addr = server.url.strip_prefix("http://").context("http url")?.to_owned();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    tokio::time::timeout(Duration::from_secs(30), async move {
        let mut s = tokio::net::TcpStream::connect(&addr).await?;
        s.write_all(head.as_bytes()).await?;
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await?;
        let line = String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_owned();
        let status: u16 = line.split(' ').nth(1).context("a status line")?.parse()?;
        anyhow::Ok(status)
    })
    .await
    .context("the server waited for a body it should have refused")?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused_before_they_are_read() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "laptop").await?;
    let block = BlockId::of(b"x");
    let cases = [
        ("POST", "/commit".to_owned(), 1u64 << 30),
        ("POST", "/blocks/missing".to_owned(), 1 << 30),
        ("POST", "/blocks/fetch".to_owned(), 1 << 30),
        ("POST", "/blocks/batch".to_owned(), 1 << 33),
        ("PUT", format!("/blocks/{block}"), 1 << 30),
        ("POST", "/files/upload?uploadType=media&path=big.bin".to_owned(), 11 << 30),
        ("POST", "/auth/login".to_owned(), 1 << 30),
    ];
    for (method, path, len) in cases {
        let status = announce(&server, &alice.token, method, &path, len).await.with_context(|| path.clone())?;
        assert_eq!(status, 413, "{method} {path} with a {len}-byte body");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_passwords_never_reach_a_log() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "laptop").await?;
    let forged = "f".repeat(64);
    alice.put_small("a.txt", b"hello", None).await?;
    // A share link's token and password are secrets too.
    let link: Value =
        alice.post("/links").json(&json!({"path": "a.txt", "password": "link-pass-456"})).send().await?.json().await?;
    let link_url = link["url"].as_str().context("the link's URL")?.to_owned();
    let link_token = link_url.rsplit('/').next().unwrap_or_default().to_owned();
    alice.http.get(&link_url).header("x-ferry-link-password", "link-pass-456").send().await?;
    alice.http.get(format!("{link_url}/under")).send().await?;
    for token in [alice.token.as_str(), forged.as_str()] {
        for path in ["/changes?cursor=0", "/files/download?path=a.txt", "/no/such/endpoint"] {
            alice.http.get(format!("{}{path}", server.url)).bearer_auth(token).send().await?;
        }
    }
    // A wrong password, and a token where a query parameter is expected.
    let _ = Client::login(&server.url, "alice", "a-wrong-password-123", "x").await;
    alice.get(&format!("/changes?cursor=0&token={}", alice.token)).send().await?;
    let resp = alice.post("/auth/logout").send().await?;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    // A daemon logs in, syncs and logs its work at debug level.
    let dir = tempfile::tempdir()?;
    let home = dir.path().to_owned();
    let d = tokio::task::spawn_blocking(move || -> anyhow::Result<(String, String)> {
        let server_url = server.url.clone();
        let d = Daemon::start_at(&server_url, "alice", "desk", &home)?;
        std::fs::write(d.path("f.txt"), "synced")?;
        wait_until(Duration::from_secs(60), "f.txt sent", || {
            d.status().map(|s| s["state"] == "idle" && s["files"].as_u64() >= Some(1)).unwrap_or(false)
        })?;
        let token = std::fs::read_dir(&d.home)?
            .filter_map(|e| e.ok())
            .flat_map(|e| walk(&e.path()))
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().contains("token")))
            .find_map(|p| std::fs::read_to_string(p).ok())
            .context("the daemon's token file")?;
        let logs = format!("{}\n{}", d.log(), server.log());
        Ok((token.trim().to_owned(), logs))
    })
    .await??;
    let (daemon_token, logs) = d;
    assert!(logs.len() > 1000, "the logs are too short to prove anything:\n{logs}");
    for secret in
        [alice.token.as_str(), forged.as_str(), daemon_token.as_str(), "a-wrong-password-123", "password-alice"]
            .into_iter()
            .chain([link_token.as_str(), "link-pass-456"])
    {
        assert!(!logs.contains(secret), "a log contains a secret ({}…)", &secret[..8.min(secret.len())]);
    }
    Ok(())
}

fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    if p.is_dir() {
        std::fs::read_dir(p).into_iter().flatten().filter_map(|e| e.ok()).flat_map(|e| walk(&e.path())).collect()
    } else {
        vec![p.to_owned()]
    }
}

/// Browser sessions: the cookie is HttpOnly and SameSite=Strict (Secure only
/// under TLS, see `lifecycle.rs`), works for reading, needs the session's
/// CSRF token for anything that changes something, ends at logout, and its
/// logins are throttled like the API's. The app's page runs no inline
/// script, and user content never renders in the app's origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_sessions_need_their_csrf_token() -> TestResult {
    let server = Server::start()?;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", server.url);
    let session = |user: &str, password: &str| {
        http.post(url("/auth/session")).json(&json!({"username": user, "password": password})).send()
    };
    assert_eq!(session("alice", "wrong").await?.status(), StatusCode::UNAUTHORIZED);
    let resp = session("alice", "password-alice").await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let set = resp.headers()["set-cookie"].to_str()?.to_owned();
    assert!(set.starts_with("ferry_session=") && set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    assert!(!set.contains("Secure"), "no Secure on plain HTTP (the browser would drop it): {set}");
    let cookie = set.split(';').next().unwrap_or_default().to_owned();
    let body: Value = resp.json().await?;
    let csrf = body["csrf"].as_str().unwrap_or_default().to_owned();
    assert!(csrf.len() >= 32, "{body}");
    assert_eq!(body["user"], "alice");

    // Reading needs only the cookie.
    let resp = http.get(url("/account")).header("cookie", &cookie).send().await?;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await?["user"], "alice");
    // Changing something needs the token too: missing or wrong, 403.
    let mkdir = |token: Option<&str>| {
        let mut req = http
            .post(url("/commit"))
            .header("cookie", &cookie)
            .json(&json!({"ops": [{"op": "mkdir", "path": "from-the-browser"}]}));
        if let Some(t) = token {
            req = req.header("x-csrf-token", t);
        }
        req.send()
    };
    assert_eq!(error_code(mkdir(None).await?).await?, (403, "forbidden".to_owned()));
    assert_eq!(mkdir(Some("not-the-token")).await?.status(), StatusCode::FORBIDDEN);
    let other = session("bob", "password-bob").await?.json::<Value>().await?;
    assert_eq!(mkdir(other["csrf"].as_str()).await?.status(), StatusCode::FORBIDDEN, "another session's token");
    let resp = mkdir(Some(&csrf)).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await?["results"][0]["status"], 200);
    // A bearer token needs no CSRF token (a page cannot send one).
    let alice = Client::user(&server, "alice", "laptop").await?;
    let resp = alice.post("/commit").json(&json!({"ops": [{"op": "mkdir", "path": "by-token"}]})).send().await?;
    assert_eq!(resp.status(), StatusCode::OK);

    // User content: an uploaded page or SVG downloads, sandboxed.
    alice.put_small("page.html", b"<script>alert(1)</script>", None).await?;
    let resp = http.get(url("/files/download?path=page.html")).header("cookie", &cookie).send().await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers();
    assert!(h["content-disposition"].to_str()?.starts_with("attachment"), "{h:?}");
    assert!(h["content-security-policy"].to_str()?.contains("sandbox"), "{h:?}");
    assert_eq!(h["x-content-type-options"], "nosniff");
    // The app: no inline script, not framed.
    let resp = http.get(url("/")).send().await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let csp = resp.headers()["content-security-policy"].to_str()?.to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(resp.text().await?.contains("<script type=\"module\" src=\"/app/app.js\">"));

    // Logging out needs the token, then the cookie opens nothing.
    let logout = |token: Option<&str>| {
        let mut req = http.delete(url("/auth/session")).header("cookie", &cookie);
        if let Some(t) = token {
            req = req.header("x-csrf-token", t);
        }
        req.send()
    };
    assert_eq!(logout(None).await?.status(), StatusCode::FORBIDDEN);
    let resp = logout(Some(&csrf)).await?;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(resp.headers()["set-cookie"].to_str()?.contains("Max-Age=0"));
    assert_eq!(http.get(url("/account")).header("cookie", &cookie).send().await?.status(), StatusCode::UNAUTHORIZED);

    // Throttled like the API's login: five failures, then even the right
    // password waits.
    for _ in 0..5 {
        assert_eq!(session("bob", "wrong").await?.status(), StatusCode::UNAUTHORIZED);
    }
    let resp = session("bob", "password-bob").await?;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().contains_key("retry-after"));
    Ok(())
}

/// A commit body asking for far more work than it carries is refused
/// before the work: 16 KB of edits once expanded to 40 million entries
/// (+2.6 GB); 320,000 unknown block ids once held every writer for 43 s.
/// Memory stays bounded, and another user's change goes through meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_cost_what_they_carry() -> TestResult {
    use ferry_shared::api::{BlockList, CommitOp, CommitRequest};
    use ferry_shared::chunk::MIN_CHUNK;
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "laptop").await?;
    let bob = Client::user(&server, "bob", "desk").await?;
    let body = alice.edit_bomb("base.bin").await?;
    let (_, peak_before) = server.memory_mib()?;
    assert!(body.len() < 20_000, "{} bytes", body.len());
    let resp = alice.post("/commit").header("content-type", "application/json").body(body).send().await?;
    let r: Value = resp.json().await?;
    assert_eq!(r["results"][0]["error"]["code"], "payload_too_large", "{r}");
    let (_, peak) = server.memory_mib()?;
    assert!(peak < peak_before + 200, "the server's peak memory grew from {peak_before} to {peak} MiB");

    // Unknown ids: answered as missing, and bob's mkdir is not held up.
    let ids: Vec<BlockId> = (0..320_000u32).map(|i| BlockId::of(&i.to_be_bytes())).collect();
    let stolen = CommitOp::Put {
        path: ferry_shared::RelPath::parse("stolen.bin")?,
        parent_rev: None,
        size: (ids.len() * MIN_CHUNK) as u64,
        mtime: 0,
        executable: false,
        blocks: BlockList::Full(ids),
    };
    let big = alice.post("/commit").json(&CommitRequest { ops: vec![stolen] }).send();
    let small = async {
        // Once the big request is on its way, bob commits.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = std::time::Instant::now();
        let r = bob.post("/commit").json(&json!({"ops": [{"op": "mkdir", "path": "meanwhile"}]})).send().await?;
        anyhow::Ok((r.status(), started.elapsed()))
    };
    let (big, small) = tokio::join!(big, small);
    let (status, took) = small?;
    assert_eq!(status, StatusCode::OK);
    assert!(took < Duration::from_secs(10), "bob's mkdir waited {took:?} behind the unknown ids");
    let r: Value = big?.json().await?;
    assert_eq!(r["results"][0]["error"]["code"], "missing_blocks", "{}", r["results"][0]["error"]["message"]);
    assert_eq!(r["results"][0]["error"]["missing"].as_array().map(Vec::len), Some(320_000));
    Ok(())
}

/// The server's address for raw connections (`host:port`).
fn addr_of(server: &Server) -> anyhow::Result<String> {
    Ok(server.url.strip_prefix("http://").context("http url")?.to_owned())
}

/// Opens a request that announces `len` body bytes and sends `sent` of
/// them, then holds the connection.
async fn slow_request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    len: u64,
    sent: &[u8],
) -> anyhow::Result<tokio::net::TcpStream> {
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let ty = if path.starts_with("/auth") { "application/json" } else { "application/octet-stream" };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: {ty}\r\nContent-Length: {len}\r\n\r\n"
    );
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(head.as_bytes()).await?;
    s.write_all(sent).await?;
    Ok(s)
}

/// The status of the answer on `s`, or `None` if it closed without one.
async fn status_of(s: &mut tokio::net::TcpStream, within: Duration) -> anyhow::Result<Option<u16>> {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(within, s.read(&mut buf)).await.context("no answer in time")?.unwrap_or(0);
    let line = String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_owned();
    Ok(line.split(' ').nth(1).and_then(|s| s.parse().ok()))
}

/// Slow bodies hold nothing for long: a user's uploads are capped, every
/// body must keep arriving (408 once it stalls, the connection closed),
/// and while 64 slow uploads of four users and 20 slow anonymous logins
/// are open, another user is served at once. (66 such uploads once took
/// every worker thread: the server answered only /health.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_hold_nothing_for_long() -> TestResult {
    let server = Server::start()?;
    for name in ["carol", "dave", "erin"] {
        ferry_tests::add_user(&server.data, name, &format!("password-{name}"), None)?;
    }
    let addr = addr_of(&server)?;
    let bob = Client::user(&server, "bob", "desk").await?;
    let mut held = Vec::new();
    for name in ["alice", "carol", "dave", "erin"] {
        let c = Client::login(&server.url, name, &format!("password-{name}"), "slow").await?;
        // Sixteen held open; then one more than a user may have in flight is
        // refused at once. (A probe racing ahead of a slow one takes its
        // place for a moment and the slow one is refused: one more is opened.)
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let (mut opened, mut want) = (0, 16);
        loop {
            while opened < want {
                let path = format!("/files/upload?uploadType=media&path=slow{opened}.bin");
                held.push(slow_request(&addr, "POST", &path, Some(&c.token), 1_000_000, b"0123456789").await?);
                opened += 1;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            let resp = c.post("/files/upload?uploadType=media&path=one-more.bin").body("x").send().await?;
            match resp.status() {
                StatusCode::TOO_MANY_REQUESTS => break,
                s => assert!(s.is_success(), "{name}'s probe: {s}"),
            }
            assert!(std::time::Instant::now() < deadline, "{name}'s 17th upload was never refused");
            want += 1;
        }
    }
    for _ in 0..20 {
        held.push(slow_request(&addr, "POST", "/auth/login", None, 10_000, b"{\"user").await?);
    }
    // Another user is served meanwhile, and the server says it is well.
    for i in 0..5 {
        let resp = tokio::time::timeout(Duration::from_secs(10), bob.get("/account").send())
            .await
            .context("another user's request waited behind the slow uploads")??;
        assert_eq!(resp.status(), StatusCode::OK);
        let name = format!("meanwhile{i}.txt");
        let put = bob.put_small(&name, b"x", None);
        let put = tokio::time::timeout(Duration::from_secs(10), put).await.context("bob's upload waited")??;
        assert!(put.entry.is_some(), "{:?}", put.error);
    }
    assert_eq!(reqwest::get(format!("{}/health", server.url)).await?.text().await?, "ok");
    // Each slow body is cut off (408) once it falls behind: the uploads
    // after 10 s, and nothing is left holding a place.
    for (i, s) in held.iter_mut().enumerate() {
        let status = status_of(s, Duration::from_secs(60)).await?;
        assert!(matches!(status, Some(408) | None), "slow request {i}: {status:?}");
    }
    let alice = Client::user(&server, "alice", "again").await?;
    let resp = alice.post("/files/upload?uploadType=media&path=after.txt").body("after").send().await?;
    assert_eq!(resp.status(), StatusCode::CREATED, "alice's places came back");
    assert!(!server.log().contains("ERROR"), "a cut-off upload is not an internal error:\n{}", server.log());
    Ok(())
}

/// The server's free failures per address and per name (`server/src/limit.rs`).
const ADDRESS_FREE: u32 = 50;
const NAME_FREE: u32 = 100;

/// Failed logins cost bounded memory however many arrive, and are
/// throttled per name and address, per address and per name, without
/// letting anyone lock a user out; a link's password has a throttle of its
/// own; logout takes the bearer scheme in any case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_bounded_and_nobody_locks_anyone_out() -> TestResult {
    // Behind a proxy (this test), which names each client.
    let server = Server::start_args(&["--trusted-proxy", "127.0.0.1"])?;
    let http = reqwest::Client::new();
    let url = server.url.clone();
    let login = |user: String, password: &'static str, from: String| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            http.post(format!("{url}/auth/login"))
                .header("x-forwarded-for", from)
                .json(&json!({"username": user, "password": password, "device_name": "d"}))
                .send()
                .await
        }
    };
    let (rss_before, _) = server.memory_mib()?;
    // 200 strangers' names from 200 addresses at once: every one answered
    // (401, or 429 when too many are being checked), memory bounded.
    let flood: Vec<_> =
        (0..200).map(|i| login(format!("stranger{i}"), "guess", format!("10.9.{}.{}", i / 250, i % 250))).collect();
    let bob = Client::user(&server, "bob", "desk").await?;
    let during = tokio::time::timeout(Duration::from_secs(30), bob.get("/account").send());
    let (answers, during) = tokio::join!(futures_util::future::join_all(flood), during);
    for a in answers {
        let status = a?.status().as_u16();
        assert!(matches!(status, 401 | 429), "{status}");
    }
    assert_eq!(during.context("bob waited behind the flood")??.status(), StatusCode::OK);
    let (rss, peak) = server.memory_mib()?;
    assert!(peak < rss_before + 250, "failed logins took {rss_before} → {peak} MiB (now {rss})");

    // One address trying many names is held back (even a right password).
    for i in 0..ADDRESS_FREE {
        assert_eq!(login(format!("spray{i}"), "x", "10.1.1.1".into()).await?.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(login("bob".into(), "password-bob", "10.1.1.1".into()).await?.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(login("bob".into(), "password-bob", "10.1.1.2".into()).await?.status(), StatusCode::OK);
    // Failures for alice from many addresses: those addresses wait, but
    // alice from her own gets in.
    for i in 0..NAME_FREE {
        let from = format!("10.2.{}.{}", i / 200, i % 200);
        assert_eq!(login("alice".into(), "wrong", from).await?.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        login("alice".into(), "password-alice", "10.2.0.0".into()).await?.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "an address that failed for alice waits"
    );
    assert_eq!(login("alice".into(), "password-alice", "192.168.7.7".into()).await?.status(), StatusCode::OK);

    // Logins named like a link throttle no link.
    let alice = Client::login(&server.url, "alice", "password-alice", "laptop").await;
    let alice = match alice {
        Ok(a) => a,
        // (This client sends no X-Forwarded-For: it is the proxy itself.)
        Err(e) => anyhow::bail!("alice from the proxy's own address: {e}"),
    };
    alice.put_small("doc.txt", b"linked", None).await?;
    let link: Value =
        alice.post("/links").json(&json!({"path": "doc.txt", "password": "pw-link"})).send().await?.json().await?;
    for _ in 0..10 {
        let who = format!("link:{}", link["id"]);
        login(who, "wrong", "10.3.0.1".into()).await?;
    }
    let url = link["url"].as_str().context("url")?;
    let resp = http.get(url).header("x-ferry-link-password", "pw-link").send().await?;
    assert_eq!(resp.status(), StatusCode::OK, "the link's password still opens it");

    // Logout with the scheme in lower case.
    let resp = http
        .post(format!("{}/auth/logout", server.url))
        .header("authorization", format!("bearer {}", alice.token))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(alice.get("/account").send().await?.status(), StatusCode::UNAUTHORIZED);
    Ok(())
}

/// A user's unread zips hold no more than their share of the server's:
/// past three (theirs and their links'), 429; another user's zip works;
/// a zip nobody reads is dropped after a short stall, and its place comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_zips_hold_little_for_long() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "laptop").await?;
    let bob = Client::user(&server, "bob", "desk").await?;
    let big = ferry_tests::pseudo_random(24 << 20, 3);
    let resp = alice.post("/files/upload?uploadType=media&path=big/data.bin").body(big).send().await?;
    assert_eq!(resp.status(), StatusCode::CREATED);
    bob.put_small("mine/b.txt", b"bob's", None).await?;
    let addr = addr_of(&server)?;
    let mut unread = Vec::new();
    for _ in 0..3 {
        let head = format!(
            "GET /files/zip?path=big HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\r\n",
            alice.token
        );
        // A small receive window (fixed, so the kernel cannot grow it to
        // tens of MiB): the zip cannot all sit in buffers, the writer stalls.
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(16 << 10)?;
        let mut s = socket.connect(addr.parse()?).await?;
        s.write_all(head.as_bytes()).await?;
        // The zip has begun (its status line is here): it holds its place.
        let mut first = [0u8; 12];
        tokio::time::timeout(Duration::from_secs(30), s.read_exact(&mut first)).await.context("no answer")??;
        let status = String::from_utf8_lossy(&first).into_owned();
        assert!(status.ends_with("200"), "an unread zip was answered {status:?}:\n{}", server.log());
        unread.push(s);
    }
    // They hold their places until they stall for 20 s: a fourth is refused.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = alice.get("/files/zip?path=big").send().await?.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "a fourth zip was never refused ({status}):\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resp = bob.get("/files/zip?path=mine").send().await?;
    assert_eq!(resp.status(), StatusCode::OK, "another user's zip");
    assert!(!resp.bytes().await?.is_empty());
    // Nobody reads alice's: they are dropped, and she may zip again.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let resp = alice.get("/files/zip?path=big").send().await?;
        if resp.status() == StatusCode::OK {
            assert!(resp.bytes().await?.len() > 24 << 20);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "alice's stalled zips kept their places");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(unread);
    Ok(())
}

/// Uploaded blocks count against the quota until a commit uses them: a
/// user with 1 MiB stores no 24 MiB batch (it once stored 96 MiB so and
/// `/account` said 104 bytes); batches that expand past what one request
/// may hold are refused before they are expanded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_count_against_the_quota_and_expand_within_bounds() -> TestResult {
    use ferry_shared::block;
    let server = Server::start()?;
    ferry_tests::add_user(&server.data, "tiny", "password-tiny", Some("1MiB"))?;
    let tiny = Client::login(&server.url, "tiny", "password-tiny", "d").await?;
    let batch = |blocks: Vec<Vec<u8>>| {
        let mut body = Vec::new();
        let mut ids = Vec::new();
        for b in blocks {
            let e = block::encode(&b);
            block::write_frame(&mut body, &e.id, e.encoding, &e.bytes);
            ids.push(e.id);
        }
        (body, ids)
    };
    let (body, ids) = batch((0..24).map(|i| ferry_tests::pseudo_random(1 << 20, 100 + i)).collect());
    let resp = tiny.post("/blocks/batch").body(body).send().await?;
    assert_eq!(error_code(resp).await?, (507, "quota_exceeded".to_owned()));
    let missing: Value = tiny.post("/blocks/missing").json(&json!({"ids": ids})).send().await?.json().await?;
    assert_eq!(missing["missing"].as_array().map(Vec::len), Some(24), "nothing of it was recorded");
    // Uploaded, not committed: counted.
    let first = ferry_tests::pseudo_random(900 << 10, 1);
    tiny.upload_block(&first).await?;
    let resp = tiny
        .put(&format!("/blocks/{}", BlockId::of(&[2u8; 200 << 10])))
        .body(block::encode(&[2u8; 200 << 10]).bytes)
        .send()
        .await?;
    assert_eq!(error_code(resp).await?, (507, "quota_exceeded".to_owned()));
    let r = tiny.put_small("first.bin", &first, None).await?;
    assert!(r.entry.is_some(), "{:?}", r.error);
    let account: Value = tiny.get("/account").send().await?.json().await?;
    assert_eq!(account["used"], 900 << 10);

    // 512 frames of 16 MiB of zeros (a few hundred KB of body): refused
    // once what they expand to passes 64 MiB.
    let alice = Client::user(&server, "alice", "laptop").await?;
    let zeros = block::encode(&vec![0u8; 16 << 20]);
    let mut body = Vec::new();
    for _ in 0..512 {
        block::write_frame(&mut body, &zeros.id, zeros.encoding, &zeros.bytes);
    }
    assert!(body.len() < 1 << 20, "{}", body.len());
    let resp = alice.post("/blocks/batch").body(body).send().await?;
    assert_eq!(error_code(resp).await?, (413, "payload_too_large".to_owned()));
    // A query that is not UTF-8 is refused, not read as U+FFFD.
    let resp = alice.get("/files/download?path=%ff%fe").send().await?;
    assert_eq!(error_code(resp).await?.0, 400);
    Ok(())
}

/// Whether a name is a user's shows in the answer to sharing with it, so
/// names that are no user's are throttled per caller: no enumeration at speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_names_cannot_be_enumerated_at_speed() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "laptop").await?;
    let r = alice.post("/commit").json(&json!({"ops": [{"op": "mkdir", "path": "team"}]})).send().await?;
    assert_eq!(r.status(), StatusCode::OK);
    let share = |with: String| alice.post("/shares").json(&json!({"path": "team", "with": with})).send();
    for i in 0..20 {
        assert_eq!(share(format!("guess{i}")).await?.status(), StatusCode::NOT_FOUND);
    }
    let resp = share("guess-more".into()).await?;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().contains_key("retry-after"));
    // Other users are not held back.
    let bob = Client::user(&server, "bob", "desk").await?;
    bob.post("/commit").json(&json!({"ops": [{"op": "mkdir", "path": "b"}]})).send().await?;
    let resp = bob.post("/shares").json(&json!({"path": "b", "with": "alice"})).send().await?;
    assert_eq!(resp.status(), StatusCode::CREATED);
    Ok(())
}

/// Blocks are sealed at rest: no stored file holds a known plaintext (random
/// bytes stored raw, and a text zstd would keep readable); `master.key` is
/// private; a key given in `FERRY_MASTER_KEY` is used instead of a file, and
/// without it the blocks cannot be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_are_encrypted_at_rest() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "laptop").await?;
    let random = ferry_tests::pseudo_random(3 << 20, 77);
    let text = "The quarterly numbers are in the drawer. ".repeat(20_000).into_bytes();
    for (path, data) in [("random.bin", &random), ("notes.txt", &text)] {
        let resp = alice.post(&format!("/files/upload?uploadType=media&path={path}")).body(data.clone()).send().await?;
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let needles: [&[u8]; 3] = [&random[1 << 20..(1 << 20) + 64], &random[..64], b"quarterly numbers are in the drawer"];
    let mut files = Vec::new();
    let mut stack = vec![server.data.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)?.flatten() {
            if e.file_type()?.is_dir() { stack.push(e.path()) } else { files.push(e.path()) }
        }
    }
    assert!(
        files.iter().any(|f| f.starts_with(server.data.join("blocks"))),
        "blocks are stored under blocks/: {files:?}"
    );
    for f in &files {
        let bytes = std::fs::read(f)?;
        for n in needles {
            assert!(!bytes.windows(n.len()).any(|w| w == n), "{} holds plaintext", f.display());
        }
    }
    let mode = std::fs::metadata(server.data.join("master.key"))?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "master.key is private");

    // A key from the environment: no key file; the same key reads the
    // blocks after a restart; without it, they cannot be read.
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    ferry_tests::add_user(&data, "alice", "password-alice", None)?;
    let key = "5e".repeat(32);
    let env = [("FERRY_MASTER_KEY", key.as_str())];
    let mut keyed = Server::start_env(&data, &[], &env)?;
    let c = Client::user(&keyed, "alice", "laptop").await?;
    let resp = c.post("/files/upload?uploadType=media&path=secret.bin").body(random.clone()).send().await?;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(!data.join("master.key").exists(), "a key from the environment is not written to disk");
    keyed.stop()?;
    let again = Server::start_env(&data, &[], &env)?;
    let c = Client { url: again.url.clone(), ..c };
    let resp = c.get("/files/download?path=secret.bin").send().await?;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await?.as_ref(), &random[..], "the same key reads the blocks");
    drop(again);
    let without = Server::start_on(&data)?;
    let c = Client { url: without.url.clone(), ..c };
    let resp = c.get("/files/download?path=secret.bin").send().await?;
    let readable = resp.status().is_success() && resp.bytes().await.is_ok_and(|b| b.as_ref() == &random[..]);
    assert!(!readable, "blocks sealed with the environment's key were read without it");
    Ok(())
}
