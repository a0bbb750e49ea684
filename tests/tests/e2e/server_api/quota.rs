//! Size limits and quotas: uploads refused from their announced size,
//! unfinished uploads counted against the quota, commits past it refused.

use anyhow::{Context, bail};
use ferry_shared::api::{CommitOp, Entry, ErrorCode, ResumableStartResponse};
use ferry_tests::{Client, Server, add_user, pseudo_random};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{
    DEADLINE, TestResult, commit_one, download, download_ok, expect_error, expect_json, ok_entry, op_error, put_file,
    rp, simple_upload,
};

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
