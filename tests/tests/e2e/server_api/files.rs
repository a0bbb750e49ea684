//! The file API: simple upload, download with ranges, conditional requests, and
//! a file's revisions, newest first.

use anyhow::Context;
use ferry_shared::api::{CommitOp, Entry, EntryKind, ListRevisionsResponse, Revision};
use ferry_tests::{Client, Server, pseudo_random, url_path};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, ETAG, LOCATION, RANGE};
use serde_json::{Value, json};

use super::{
    TestResult, changes, commit_one, download, download_ok, expect_error, expect_json, header, ok_entry, put_file,
    revisions_get, revisions_post, rp, simple_upload, with_query,
};

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
