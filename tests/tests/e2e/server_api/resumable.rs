//! Resumable uploads of the file API: a large one ingested while it arrives,
//! and one resumed across a server restart.

use std::time::{Duration, Instant};

use anyhow::Context;
use ferry_shared::api::{Entry, ResumableStartResponse};
use ferry_tests::{Client, Server, pseudo_random, url_path};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, LOCATION, RANGE};
use serde_json::json;

use super::{TestResult, download, download_ok, expect_error, expect_json, header, no_redirects};

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
    // The cut request may reach the server only now (its bytes were in
    // flight): 409 while it writes, and what it writes is these bytes too.
    let deadline = Instant::now() + Duration::from_secs(30);
    let resp = loop {
        let resp = put(&alice, have - 1000, 30 * mb).send().await?;
        if resp.status() != StatusCode::CONFLICT || Instant::now() > deadline {
            break resp;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
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
