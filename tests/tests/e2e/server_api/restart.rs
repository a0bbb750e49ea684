//! Restart persistence: tokens, files, history and the journal survive a server
//! restart.

use ferry_shared::api::{CommitOp, Entry, ListRevisionsResponse, PollResponse};
use ferry_tests::{Client, Server, pseudo_random};
use reqwest::StatusCode;

use super::{
    DEADLINE, TestResult, changes, commit_one, download_ok, expect_json, ok_entry, poll, put_file, revisions_get, rp,
    simple_upload, with_query,
};

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
