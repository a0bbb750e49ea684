//! The journal: changes paged with a monotonic cursor, long polls, a cursor
//! past the journal, and the activity feed of who did what.

use std::time::{Duration, Instant};

use anyhow::Context;
use ferry_shared::api::{ChangeOp, CommitOp, PollResponse};
use ferry_tests::{Client, Server};

use super::{
    DEADLINE, TestResult, changes, commit_one, cursor_of, expect_error, expect_json, ok_entry, poll, put_file, rp,
};

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
