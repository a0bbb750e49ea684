//! Login and logout, a valid token on every endpoint, and users who cannot see
//! or use each other's data.

use anyhow::Context;
use ferry_shared::BlockId;
use ferry_shared::api::{CommitOp, ErrorCode, LoginResponse, MissingBlocksResponse, ResumableStartResponse};
use ferry_shared::block::{self, BlockEncoding, ENCODING_HEADER};
use ferry_tests::{Client, Server, url_path};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use serde_json::json;

use super::{
    TestResult, changes, commit_one, download, download_ok, expect_error, expect_json, header, no_redirects, ok_entry,
    op_error, put_file, put_op, revisions_get, revisions_post, rp, with_query,
};

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
