//! Blocks: uploads in every encoding, verified against their ids; and uploads
//! announced before their blocks are up (streaming sync), with fetches that
//! wait for a block.

use std::time::Duration;

use anyhow::Context;
use ferry_shared::BlockId;
use ferry_shared::api::{MissingBlocksResponse, PollResponse};
use ferry_shared::block::{self, BlockEncoding, ENCODING_HEADER};
use ferry_tests::{Client, Server, pseudo_random};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{DEADLINE, TestResult, cursor_of, download, expect_error, expect_json, header, ok_entry, put_op};

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

/// Many blocks in one fetch come back framed in the order asked, repeats
/// included; one the account lacks is a 404; an answer that could not be
/// sent whole is a 413 before anything is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_fetched_many_at_once() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "dev1").await?;
    let bob = Client::user(&server, "bob", "dev1").await?;
    let put = |who: &Client, enc: &block::EncodedBlock| {
        let req = who.put(&format!("/blocks/{}", enc.id)).body(enc.bytes.clone());
        let encoding = if enc.encoding == BlockEncoding::Zstd { "zstd" } else { "raw" };
        async move {
            let resp = req.header(ENCODING_HEADER, encoding).send().await?;
            assert_eq!(resp.status(), StatusCode::CREATED);
            anyhow::Ok(())
        }
    };
    let plain: Vec<Vec<u8>> = (0..4u64).map(|n| pseudo_random(1000 + 700 * n as usize, n)).collect();
    let encoded: Vec<block::EncodedBlock> = plain.iter().map(|p| block::encode(p)).collect();
    for enc in &encoded {
        put(&alice, enc).await?;
    }
    let order = [3, 0, 3, 1, 2];
    let ids: Vec<BlockId> = order.iter().map(|&i| encoded[i].id).collect();
    let resp = alice.post("/blocks/fetch").json(&json!({ "ids": ids })).send().await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.bytes().await?;
    let frames = block::read_frames(&body)?;
    assert_eq!(frames.len(), order.len());
    for ((id, encoding, bytes), &i) in frames.into_iter().zip(&order) {
        assert_eq!(id, encoded[i].id);
        assert_eq!(block::decode(&id, encoding, bytes)?, plain[i]);
    }

    // Bob's block is not Alice's to fetch, even beside her own.
    let secret = block::encode(b"bob's own block");
    put(&bob, &secret).await?;
    let resp = alice.post("/blocks/fetch").json(&json!({ "ids": [encoded[0].id, secret.id] })).send().await?;
    expect_error(resp, 404, "not_found").await?;

    // 12 MiB that do not compress, asked three times: more than one answer holds.
    let big = block::encode(&pseudo_random(12 << 20, 99));
    put(&alice, &big).await?;
    let resp = alice.post("/blocks/fetch").json(&json!({ "ids": [big.id, big.id] })).send().await?;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await?.len(), 2 * (block::FRAME_HEADER + big.bytes.len()));
    let resp = alice.post("/blocks/fetch").json(&json!({ "ids": [big.id, big.id, big.id] })).send().await?;
    expect_error(resp, 413, "payload_too_large").await?;
    Ok(())
}

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
